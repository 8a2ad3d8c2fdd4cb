"""One search step, shared by the local loop, the distributed workers and BANANAS.

- ``RankedSearcher`` wraps any searcher behind the same ``ask``/``tell`` (as Optuna's
  ``PartialFixedSampler`` wraps a base sampler): it asks the searcher for a pool of fresh
  cells, ranks them with a predictor fitted on the told history and returns the best. Its
  state, like every searcher's, is a function of its seed and the history it was told.
- ``RefitSchedule``: which of the told cells a model of the history is fitted on, and so
  when it is refitted. The wrapper fits its predictor by it and BANANAS its ensemble.
- ``Trajectory``: the best-so-far after each query, for a local run and for a shared study.

Pure core: nothing here imports a space, searcher or predictor; they meet through the
protocols in ``nasflow.core``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Collection, Mapping, Optional

import numpy as np

from .core import Arch, Evaluation, exploring, unique

# How many times a step re-asks a searcher whose proposals are all taken already before it
# falls back to uniform samples of its own.
REASKS = 5


@dataclass(frozen=True)
class RefitSchedule:
    """Fit once ``warmup`` cells are told, then again after every ``every`` more tells.

    A fit always uses the first ``target(told)`` cells of the history, never cells told after
    the last due point, so the fitted model is a function of the told history alone: a rebuilt
    searcher, a resumed run and each of several workers replaying one study all fit the same.
    """

    warmup: int
    every: int

    def target(self, told: int) -> int:
        """How many of the first told cells the model should be fitted on (0: not yet)."""
        if told < self.warmup:
            return 0
        return self.warmup + (told - self.warmup) // self.every * self.every

    def due(self, history: Mapping[Arch, Evaluation], fitted_on: int) -> Optional[tuple[list[Arch], np.ndarray]]:
        """The cells and valid accuracies a model fitted on the first ``fitted_on`` told cells of ``history``
        should now be fitted on, or None when no fit is due (the loop's predictor and every ensemble searcher
        refit by this one rule)."""
        target = self.target(len(history))
        if target == fitted_on:
            return None
        archs = list(history)[:target]
        return archs, np.array([history[a].valid for a in archs], dtype=np.float64)


@dataclass(frozen=True)
class Query:
    """One oracle query and where the run stood after it."""

    n: int  # queries used so far, this one included
    arch: str
    valid: float
    test: Optional[float]
    best_valid: float
    best_test: Optional[float]
    best_arch: str
    seconds: float  # oracle time of this query (from the journal when replayed)
    wall: float  # seconds since the loop started, this session


class Trajectory:
    """The queries in the order they were answered, each with the best (by validation) so far."""

    def __init__(self):
        self.queries: list[Query] = []
        self._best: Optional[tuple[str, Evaluation]] = None

    def add(self, arch: str, evaluation: Evaluation, seconds: float, wall: float) -> Query:
        # strictly better only: of equal accuracies the first found stays the best
        if self._best is None or evaluation.valid > self._best[1].valid:
            self._best = (arch, evaluation)
        best_arch, best = self._best
        query = Query(n=len(self.queries) + 1, arch=arch, valid=evaluation.valid, test=evaluation.test,
                      best_valid=best.valid, best_test=best.test, best_arch=best_arch, seconds=seconds, wall=wall)
        self.queries.append(query)
        return query


class RankedSearcher:
    """``searcher`` with its proposals ranked by ``predictor``: the search step of every nasflow run.

    ``ask(n)`` asks the searcher for ``pool`` fresh cells (re-asking, then topping up with
    the space's uniform samples, so a searcher stuck on taken cells cannot stall a run),
    ranks them with the predictor and returns the best ``n``. The predictor is fitted on the
    told history by ``schedule``; until its first fit, and on a share ``explore`` of the steps
    (evenly spaced, ``nasflow.core.exploring``), the searcher's own first ``n`` proposals are
    returned: a predictor that keeps vetoing the one mutation out of a local optimum would
    otherwise stall the run there. Without a predictor it only keeps proposals fresh.

    ``pending`` cells of an ask are taken but not told (another worker is evaluating them):
    they are never proposed, and they count as queries for the exploring share, so workers
    together keep the spacing of one loop.
    """

    def __init__(self, searcher, space, predictor=None, pool: int = 1, schedule: Optional[RefitSchedule] = None,
                 explore: float = 0.0, seed: int = 0):
        self.searcher, self.space, self.predictor = searcher, space, predictor
        self.pool, self.explore, self.seed = pool, explore, seed
        self.schedule = schedule or RefitSchedule(warmup=1, every=1)
        self.history: dict[Arch, Evaluation] = {}
        self.fitted_on = 0  # how many of the first told cells the predictor was last fitted on

    def tell(self, arch: Arch, evaluation: Evaluation) -> None:
        self.history[arch] = evaluation
        self.searcher.tell(arch, evaluation)

    def ask(self, n: int, pending: Collection[Arch] = ()) -> list[Arch]:
        taken = {**dict.fromkeys(self.history), **dict.fromkeys(pending)}
        ranking = (self.predictor is not None and self.schedule.target(len(self.history)) > 0
                   and not exploring(len(taken), n, self.explore))
        if ranking:
            self._refit()
        candidates = self._fresh(self.pool if ranking else n, n, taken)
        if not ranking or len(candidates) <= n:
            return candidates[:n]
        scores = np.asarray(self.predictor.predict(candidates), dtype=np.float64)
        order = np.argsort(-scores, kind="stable")
        return [candidates[i] for i in order[:n]]

    def _refit(self) -> None:
        # a fit restarts from the predictor's initial weights, so one skipped on exploring steps costs nothing
        due = self.schedule.due(self.history, self.fitted_on)
        if due is None:
            return
        archs, values = due
        self.predictor.fit(archs, values)
        self.fitted_on = len(archs)

    def _fresh(self, asked: int, needed: int, taken: dict) -> list[Arch]:
        """At least ``needed`` untaken cells: the searcher's ``asked`` proposals, topped up if it is stuck."""
        candidates: list[Arch] = []
        for _ in range(REASKS):
            candidates = unique(candidates + [a for a in self.searcher.ask(asked) if a not in taken])
            if len(candidates) >= needed:
                return candidates
        rng = np.random.default_rng([int(self.seed), len(taken)])
        while len(candidates) < needed:
            arch = self.space.sample(rng)
            if arch not in taken and arch not in candidates:
                candidates.append(arch)
        return candidates
