"""What every searcher shares: the told history, a history-derived RNG, fresh-cell drawing.

A searcher's state after each ``tell`` is a function of its seed and the ordered
(arch, evaluation) history it was told, nothing else: its random numbers come from
``default_rng([seed, len(history), asks since the last tell])``. Re-telling the same
history to a new searcher with the same seed rebuilds it exactly, which is what resuming
a run (or, later, rebuilding a searcher from the trials in an Optuna storage) relies on.
"""
from __future__ import annotations

from typing import Callable, Optional, Sequence

import numpy as np

from nasflow.core import Arch, Evaluation

# A proposal that keeps hitting told cells is abandoned for a uniform sample after this many tries.
MAX_TRIES = 50


class BaseSearcher:
    name = ""
    # Candidates the loop's predictor ranks per step when a run does not say; None: the run spec's default.
    default_pool: Optional[int] = None
    # Whether the searcher starts from uniform samples that a zero-cost warm start replaces (``initial_design``).
    takes_warm_start = False
    # Constructor options a user may set (``--searcher-option KEY=VALUE``, ``RunSpec.searcher_options``).
    options: tuple[str, ...] = ()
    # True for a searcher that ranks its own candidates with ``ensemble=`` predictors (BANANAS): a run hands it
    # its predictors, explore share and refit cadence instead of ranking its proposals with a predictor
    takes_ensemble = False
    # Whether a multi-fidelity schedule (nasflow.schedulers) may wrap it: it is then told each cell's first result,
    # at the fidelity the schedule trained it to first
    takes_schedule = True
    # True for a searcher that takes ``objectives=`` (``nasflow.objectives.Objectives``) and searches for their
    # Pareto front; every other searcher optimises valid alone and a multi-objective run refuses it
    takes_objectives = False
    # How many of the run's predictors an ensemble searcher takes; None: the run's default (ENSEMBLE_MEMBERS)
    ensemble_size: Optional[int] = None

    def __init__(self, space, seed: int = 0, initial_design: Sequence[Arch] = ()):
        self.space = space
        self.seed = int(seed)
        # cells tried in this order wherever the searcher would start from uniform samples (a warm start)
        self.initial_design = list(initial_design)
        self.history: dict[Arch, Evaluation] = {}
        self._asks_since_tell = 0

    def tell(self, arch: Arch, evaluation: Evaluation) -> None:
        self.history[arch] = evaluation
        self._asks_since_tell = 0
        self._observe(arch, evaluation)

    def _observe(self, arch: Arch, evaluation: Evaluation) -> None:
        """Hook for searchers that keep more than the history."""

    def _rng(self) -> np.random.Generator:
        rng = np.random.default_rng([self.seed, len(self.history), self._asks_since_tell])
        self._asks_since_tell += 1
        return rng

    def _fresh(self, n: int, propose: Callable[[np.random.Generator], Arch], rng: np.random.Generator) -> list[Arch]:
        """``n`` distinct untold cells from ``propose``, falling back to uniform samples."""
        out: list[Arch] = []
        seen = set()
        for _ in range(n):
            for attempt in range(2 * MAX_TRIES):
                arch = propose(rng) if attempt < MAX_TRIES else self.space.sample(rng)
                if arch not in self.history and arch not in seen:
                    seen.add(arch)
                    out.append(arch)
                    break
        return out

    def _initial(self, n: int, rng: np.random.Generator) -> list[Arch]:
        """``n`` untold starting cells: the initial design's first, then uniform samples."""
        out = [a for a in self.initial_design if a not in self.history][:n]
        if len(out) < n:  # the design is used up: uniform samples, never one of its cells twice
            out += [a for a in self._fresh(n, self.space.sample, rng) if a not in out][: n - len(out)]
        return out

    def best(self, k: int = 1) -> list[Arch]:
        """The ``k`` told cells with the highest validation accuracy (ties: first told first)."""
        ranked = sorted(self.history.items(), key=lambda item: -item[1].valid)
        return [a for a, _ in ranked[:k]]
