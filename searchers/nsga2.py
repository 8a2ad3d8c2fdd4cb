"""NSGA-II (Deb et al., 2002) as a steady-state searcher over a space's mutations, for ``--objectives``.

The population is the ``population`` told cells that NSGA-II's survival keeps: sorted by non-dominated
rank, then by crowding distance within a rank (``nasflow.pareto``), over everything told so far (elitist,
as NSGA-II's parents-plus-offspring survival is). Each child is a mutation (the space's ``mutate``) of the
winner of a binary tournament on (rank, crowding). Until the population is full, cells are uniform samples.
Without objectives it optimises valid alone: ranks are then the order by accuracy.
"""
from __future__ import annotations

import numpy as np

from nasflow.core import Arch
from nasflow.pareto import crowding_distance, nondominated_ranks

from . import SearcherError
from .base import BaseSearcher


class NSGA2(BaseSearcher):
    name = "nsga2"
    takes_objectives = True
    takes_warm_start = True

    def __init__(self, space, seed: int = 0, objectives=None, population: int = 20, initial_design=()):
        super().__init__(space, seed, initial_design)
        if isinstance(population, bool) or not isinstance(population, int) or population < 2:
            raise SearcherError(f"nsga2 population must be an integer >= 2, got {population!r}")
        self.objectives = objectives
        self.population = population

    def points(self, archs: list[Arch]) -> np.ndarray:
        evaluations = [self.history[a] for a in archs]
        if self.objectives is None:
            return -np.array([[e.valid] for e in evaluations], dtype=np.float64)
        return self.objectives.points(archs, evaluations)

    def survivors(self) -> tuple[list[Arch], np.ndarray, np.ndarray]:
        """The population NSGA-II keeps of the told cells, with each member's rank and crowding distance."""
        archs = list(self.history)
        points = self.points(archs)
        ranks = nondominated_ranks(points)
        crowding = np.zeros(len(archs))
        for r in np.unique(ranks):
            members = np.flatnonzero(ranks == r)
            crowding[members] = crowding_distance(points[members])
        # rank first, then the larger crowding distance; ties: first told first (a stable sort)
        order = np.lexsort((-crowding, ranks))[: self.population]
        return [archs[i] for i in order], ranks[order], crowding[order]

    def ask(self, n: int) -> list[Arch]:
        rng = self._rng()
        if len(self.history) < self.population:
            return self._initial(n, rng)
        members, ranks, crowding = self.survivors()

        def child(rng):
            a, b = rng.choice(len(members), size=2, replace=False)
            better = a if (ranks[a], -crowding[a], a) < (ranks[b], -crowding[b], b) else b
            return self.space.mutate(members[better], rng)

        return self._fresh(n, child, rng)
