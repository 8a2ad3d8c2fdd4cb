"""Random search: uniform samples of the space, never a told cell twice."""
from __future__ import annotations

from nasflow.core import Arch

from .base import BaseSearcher


class RandomSearch(BaseSearcher):
    name = "random"

    def ask(self, n: int) -> list[Arch]:
        return self._fresh(n, self.space.sample, self._rng())
