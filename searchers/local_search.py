"""Local search (White, Nolen, Savani 2020: "Local search is state of the art for NAS benchmarks").

A climb starts at a cell (uniform, or the next of ``initial_design``) and queries the untried
neighbours of its centre in a random order; the first neighbour that beats the centre becomes the
centre (first improvement). When every neighbour of the centre has been tried and none beats it,
the centre is a local optimum and the next climb starts at a fresh cell.

The state (centre, whether a climb has ended) is derived in ``tell`` from the told history alone, as
``searchers.base`` requires, so re-telling a history rebuilds the searcher exactly. The order in which
a centre's neighbours are tried is a seeded permutation per centre, the same on every ask, so asks
before a tell (a pool for the predictor, several workers) see the same order.
"""
from __future__ import annotations

import zlib
from typing import Optional

import numpy as np

from nasflow.core import Arch, Evaluation

from .base import BaseSearcher


class LocalSearch(BaseSearcher):
    name = "local"
    takes_warm_start = True
    # a climb moves to the first neighbour that beats its centre: under Hyperband a centre told at full fidelity
    # beats every neighbour told at a low one, so every climb would stop at its first cell
    takes_schedule = False

    def __init__(self, space, seed: int = 0, initial_design=()):
        super().__init__(space, seed, initial_design)
        self.centre: Optional[Arch] = None  # None: the next told cell starts a climb
        self.climbs = 0  # climbs started so far
        self._order: dict[Arch, list[Arch]] = {}  # centre -> its neighbours in this seed's order

    def _observe(self, arch: Arch, evaluation: Evaluation) -> None:
        if self.centre is None:
            self.centre = arch
            self.climbs += 1
        elif evaluation.valid > self.history[self.centre].valid:
            self.centre = arch
        if not self._untried(self.centre):
            self.centre = None  # a local optimum: every neighbour tried, none better

    def _neighbours(self, centre: Arch) -> list[Arch]:
        if centre not in self._order:
            order = list(self.space.neighbours(centre))
            # crc32, not hash(): str hashes change between processes, and a resumed run must replay exactly
            rng = np.random.default_rng([self.seed, zlib.crc32(centre.key.encode())])
            self._order = {centre: [order[i] for i in rng.permutation(len(order))]}  # keep one: memory stays flat
        return self._order[centre]

    def _untried(self, centre: Arch) -> list[Arch]:
        return [a for a in self._neighbours(centre) if a not in self.history]

    def ask(self, n: int) -> list[Arch]:
        rng = self._rng()
        if self.centre is None:
            return self._initial(n, rng)
        return self._untried(self.centre)[:n]
