"""Searchers: propose cells (``ask(n)``) and learn from evaluated ones (``tell``).

A new searcher is one module plus one line in SEARCHERS. Modules load on first use so
that listing searchers imports neither optuna nor scikit-learn.
"""
from __future__ import annotations

import importlib

from nasflow.errors import NasflowError

# name -> (module, class, one-line description)
SEARCHERS = {
    "random": ("nasflow.searchers.random_search", "RandomSearch", "uniform samples, no repeats"),
    "evolution": ("nasflow.searchers.evolution", "RegularizedEvolution", "regularized evolution (Real et al. 2019)"),
    "tpe": ("nasflow.searchers.tpe", "TPESearch", "Optuna TPE over the space's categorical encoding"),
    "bananas": ("nasflow.searchers.bananas", "Bananas", "BANANAS-style: ensemble + mutations of the best, UCB"),
    "local": ("nasflow.searchers.local_search", "LocalSearch", "local search (White et al. 2020): climbs, restarts"),
    "nsga2": ("nasflow.searchers.nsga2", "NSGA2", "NSGA-II: mutations of the non-dominated, least crowded cells"),
    "hvi": ("nasflow.searchers.hvi", "HypervolumeSearch", "predictor-guided: the cells of highest predicted hypervolume gain"),
}

# What `nasflow compare` runs when --searchers is not given: the single-objective searchers it always ran. nsga2
# and hvi search one objective too, but they exist for --objectives, and a default grid is 30 seeds x 3 predictors
# of each searcher listed here.
COMPARED_BY_DEFAULT = ("random", "evolution", "tpe", "bananas", "local")


class SearcherError(NasflowError, ValueError):
    """An unknown searcher or an invalid searcher option."""


def searcher_class(name: str) -> type:
    """The class of searcher ``name``, for what it declares (``default_pool``, ``takes_warm_start``, ``takes_ensemble``,
    ``takes_objectives``)."""
    try:
        module, cls, _ = SEARCHERS[name]
    except KeyError:
        raise SearcherError(f"unknown searcher {name!r}; choose one of {', '.join(SEARCHERS)}") from None
    return getattr(importlib.import_module(module), cls)


def get_searcher(name: str, space, seed: int = 0, **options):
    """A new searcher ``name`` over ``space`` with its own RNG seeded by ``seed``."""
    return searcher_class(name)(space, seed=seed, **options)
