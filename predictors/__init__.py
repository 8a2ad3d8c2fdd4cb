"""Performance predictors: DGL graph batching, GNN encoders, FGP pre-training, `Predictor`."""
import os

# DGL picks its backend from ~/.dgl/config.json and, on a machine that has none yet, prints
# "DGL backend not selected" to stderr: that would break the CLI's one-line errors. Every
# module here imports dgl after this package runs.
os.environ.setdefault("DGLBACKEND", "pytorch")

from .predictor import Predictor, convert_checkpoint  # noqa: E402

__all__ = ["Predictor", "convert_checkpoint"]
