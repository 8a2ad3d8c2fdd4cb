"""Random search: samples of the space, never a told cell twice.

``draw`` (``--searcher-option draw=...``) picks the distribution:

- ``uniform`` (the default): every distinct cell equally likely (``space.sample``).
- ``encoding``: each parameter of the space's categorical encoding drawn uniformly (NB-101: 21 edge bits and 5
  ops), a combination the space rejects drawn again; on a partial table it decodes to the table's nearest cell
  (``nasflow.restricted``). This is how the peers' samplers reach NB-101's 20k table (Optuna's, Syne Tune's
  random proposals). It is not uniform over the cells: some labelled cells are the nearest to many encodings
  and are drawn far more often. On that table 6.2% of 3,000 draws are among its best 5% of cells, against 4.8%
  of uniform draws, and random + ASHA gains about 0.18 points of valid at 10,800 epochs (docs/RESULTS.md,
  issue 20).
"""
from __future__ import annotations

from nasflow.core import Arch
from nasflow.errors import ArchError

from . import SearcherError
from .base import BaseSearcher

DRAWS = ("uniform", "encoding")
ENCODING_TRIES = 10_000  # draws of the encoding before a space that rejects them all is given up on


class RandomSearch(BaseSearcher):
    name = "random"
    takes_objectives = True  # the same proposals with objectives: the run reports the front of what it queried
    options = ("draw",)

    def __init__(self, space, seed: int = 0, objectives=None, draw: str = "uniform"):
        super().__init__(space, seed)
        self.objectives = objectives  # unused: uniform samples whatever is optimised
        if draw not in DRAWS:
            raise SearcherError(f"random search draw must be one of {', '.join(DRAWS)}, got {draw!r}")
        if draw == "encoding" and space.categorical is None:
            raise SearcherError(f"space {space.name} has no categorical encoding to draw from; use draw=uniform")
        self.draw = draw

    def ask(self, n: int) -> list[Arch]:
        return self._fresh(n, self.space.sample if self.draw == "uniform" else self._from_encoding, self._rng())

    def _from_encoding(self, rng) -> Arch:
        choices = self.space.categorical.choices
        for _ in range(ENCODING_TRIES):
            params = {name: values[int(rng.integers(len(values)))] for name, values in choices.items()}
            try:
                return self.space.categorical.decode(params)
            except ArchError:
                continue  # e.g. an NB-101 matrix with more than 9 edges: drawn again, as the benchmark's authors did
        raise SearcherError(f"{ENCODING_TRIES:,d} draws of {self.space.name}'s encoding gave no valid cell")
