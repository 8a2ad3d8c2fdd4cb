"""The search spaces by name, for code that holds only a name (a run spec, a saved predictor's header).

The table holds module paths as strings and imports a space's module on first use, the way plugin
entry points do: the core names the spaces without depending on their code, and a new space is one
module in ``spaces/`` plus one line here.
"""
from __future__ import annotations

import importlib

from .errors import SpaceError

# name -> (module, class, one-line description); modules are imported on first use.
SPACES = {
    "nb201": ("nasflow.spaces.nb201", "NB201Space", "NAS-Bench-201 cell, 6 edges x 5 ops"),
    "nb101": ("nasflow.spaces.nb101", "NB101Space", "NAS-Bench-101 cell, <=7 vertices, <=9 edges, 3 ops"),
    "nas-bench-macro": ("nasflow.spaces.nas_bench_macro", "MacroSpace", "NAS-Bench-Macro, 8 layers x {identity, MB3_K3, MB6_K5} (6,561 strings)"),
    "darts": ("nasflow.spaces.darts", "DartsSpace", "DARTS / NB-301 normal + reduction cell, 4 nodes x 2 inputs, 7 ops"),
    "tnb101-micro": ("nasflow.spaces.tnb101_micro", "TNB101MicroSpace", "TransNAS-Bench-101 micro cell, 6 edges x 4 ops, 7 tasks"),
}


def get_space(name: str):
    """The search space registered as ``name`` (e.g. 'nb201')."""
    try:
        module, cls, _ = SPACES[name]
    except KeyError:
        raise SpaceError(f"unknown search space {name!r}; choose one of {', '.join(SPACES)}") from None
    return getattr(importlib.import_module(module), cls)()
