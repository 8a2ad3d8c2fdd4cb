"""nasflow: neural architecture search with an FGP-pretrained plug-in performance predictor.

Heavy parts (torch, dgl) load on first use, so ``import nasflow`` stays cheap.
"""
from .core import Arch, CellGraph, Evaluation
from .errors import NasflowError

__version__ = "0.1.0"

# public name -> module that defines it; resolved lazily by __getattr__.
_LAZY = {
    "get_space": "nasflow.registry",
    "Predictor": "nasflow.predictors",
    "search": "nasflow.loop",
    "SearchResult": "nasflow.loop",
}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'nasflow' has no attribute {name!r}")


__all__ = ["Arch", "CellGraph", "Evaluation", "NasflowError", "__version__", *_LAZY]
