"""Random search: uniform samples of the space, never a told cell twice."""
from __future__ import annotations

from nasflow.core import Arch

from .base import BaseSearcher


class RandomSearch(BaseSearcher):
    name = "random"
    takes_objectives = True  # the same proposals with objectives: the run reports the front of what it queried

    def __init__(self, space, seed: int = 0, objectives=None):
        super().__init__(space, seed)
        self.objectives = objectives  # unused: uniform samples whatever is optimised

    def ask(self, n: int) -> list[Arch]:
        return self._fresh(n, self.space.sample, self._rng())
