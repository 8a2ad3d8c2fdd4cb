"""Regularized evolution (Real et al., 2019).

The population is the ``population`` most recently told cells, so the oldest ages out
when a new one arrives, whatever its accuracy. Each child comes from its own
tournament: ``sample`` members drawn without replacement, the most accurate one mutated.
Until the population is full, cells are drawn uniformly, or taken from ``initial_design``
(a zero-cost warm start, ``nasflow.experiments.warm_start``).
"""
from __future__ import annotations

from nasflow.core import Arch

from . import SearcherError
from .base import BaseSearcher


class RegularizedEvolution(BaseSearcher):
    name = "evolution"
    takes_warm_start = True
    options = ("population", "sample")

    def __init__(self, space, seed: int = 0, population: int = 20, sample: int = 5, initial_design=()):
        super().__init__(space, seed, initial_design)
        if not isinstance(population, int) or population < 2:
            raise SearcherError(f"evolution population must be an integer >= 2, got {population!r}")
        if not isinstance(sample, int) or not 1 <= sample <= population:
            raise SearcherError(f"evolution tournament sample must be an integer in 1..{population}, got {sample!r}")
        self.population = population
        self.sample = sample

    def ask(self, n: int) -> list[Arch]:
        rng = self._rng()
        if len(self.history) < self.population:
            return self._initial(n, rng)
        members = list(self.history.items())[-self.population :]

        def child(rng):
            contestants = rng.choice(len(members), size=self.sample, replace=False)
            # ties go to the older member, as in a stable max
            winner = members[min(contestants, key=lambda i: (-members[i][1].valid, i))][0]
            return self.space.mutate(winner, rng)

        return self._fresh(n, child, rng)
