"""A search space cut down to the cells of a partial benchmark table.

A table that labels only some cells of its space (NB-101's 20,001 of 423,624) can still be
searched: every proposal of a searcher must then be one of its cells, or the first one outside
would end the run. ``RestrictedSpace`` wraps the space and keeps every way a searcher reaches a
cell inside the table:

- ``sample``: uniform over the table's cells; ``enumerate`` is the table, ``size`` its length.
- ``neighbours``: the space's own neighbours that are in the table. ``mutate`` picks one of them
  uniformly; a cell with no neighbour in the table moves to a random in-table cell at the smallest
  edit distance in the space's categorical encoding (the number of parameters that differ: op
  changes on NB-201, edge flips and op changes of the padded matrix on NB-101), so a searcher
  stays local where the table allows it. A space without a categorical encoding falls back to a
  uniform in-table cell.
- ``categorical`` (TPE): a suggestion that decodes to a cell outside the table (or to no cell)
  becomes the in-table cell nearest to it in that same distance, ties broken by a draw seeded
  with the suggestion itself, so equal suggestions give the same cell. Rejecting such
  suggestions instead would fail 19 of 20 valid TPE suggestions on the 20k NB-101 table (20,001 of 423,624 cells).

Everything else (parsing, graphs, networks, unified vocabulary, oracles) is the wrapped space's:
predictors and proxies see the same cells as without the restriction.
Pure core: the wrapped space comes in as an object, so nothing here imports ``spaces/``.
"""
from __future__ import annotations

import hashlib
from typing import Optional, Sequence

import numpy as np

from .core import Arch, BaseSpace, CategoricalEncoding, CellGraph, TabularOracle, unique
from .errors import ArchError, SpaceError

# What the restricted space takes over unchanged from the space it wraps.
DELEGATED = ("name", "ops", "vocab", "datasets", "small_network", "unified_ops", "unified_id", "protocol_pool",
             "network", "network_counts")


class RestrictedSpace(BaseSpace):
    """``space`` restricted to ``cells`` (e.g. the cells a partial table labels), described by ``source``."""

    enumerable = True

    def __init__(self, space, cells: Sequence[Arch], source: str = ""):
        self.inner = space
        self.source = source
        self.cells = unique(cells)
        if not self.cells:
            raise SpaceError(f"cannot restrict {space.name} to no cells{' of ' + source if source else ''}")
        self.size = len(self.cells)
        self.index = {arch: i for i, arch in enumerate(self.cells)}
        for name in DELEGATED:
            setattr(self, name, getattr(space, name))
        self.arch_at = self.cells.__getitem__
        inner = space.categorical
        self.categorical = None if inner is None else CategoricalEncoding(inner.choices, self._decode, inner.encode)
        self._near: dict[Arch, list[Arch]] = {}  # in-table neighbours: searchers mutate the same parents again and again
        self._nearest: dict[Arch, np.ndarray] = {}  # for cells without in-table neighbours: the nearest cells
        self._codes: Optional[np.ndarray] = None

    def __repr__(self) -> str:
        return f"RestrictedSpace({self.name}, {self.size:,d} of {self.inner.size} cells)"

    @property
    def fingerprint(self) -> str:
        """Which cells these are, whatever their order: a resumed run must search the very same ones."""
        keys = "\n".join(sorted(arch.key for arch in self.cells))
        return hashlib.sha256(keys.encode()).hexdigest()[:16]

    def summary(self) -> dict:
        """The restriction as a run's config records it."""
        return {"cells": self.size, "of": self.inner.size, "fingerprint": self.fingerprint, "source": self.source}

    # ------------------------------------------------------------------ the wrapped space's, unchanged
    def parse(self, text: str) -> Arch:
        return self.inner.parse(text)

    def format(self, arch: Arch) -> str:
        return self.inner.format(arch)

    def to_graph(self, arch: Arch) -> CellGraph:
        return self.inner.to_graph(arch)

    def open_oracle(self, benchmark=None, dataset: str = "cifar10", progress: bool = False):
        return self.inner.open_oracle(benchmark, dataset, progress=progress)

    # ------------------------------------------------------------------ kept inside the cells
    def enumerate(self) -> list[Arch]:
        return list(self.cells)

    def __contains__(self, arch: Arch) -> bool:
        return arch in self.index

    def sample(self, rng: np.random.Generator) -> Arch:
        return self.cells[int(rng.integers(self.size))]

    def neighbours(self, arch: Arch) -> list[Arch]:
        near = self._near.get(arch)
        if near is None:
            near = self._near[arch] = [a for a in self.inner.neighbours(arch) if a in self.index]
        return list(near)

    def mutate(self, arch: Arch, rng: np.random.Generator) -> Arch:
        near = self.neighbours(arch)
        if near:
            return near[int(rng.integers(len(near)))]
        if self.size == 1 and arch in self.index:
            raise SpaceError(f"{self.source or 'the table'} holds one cell only: it has no other to mutate to")
        if self.categorical is None:
            while True:
                other = self.sample(rng)
                if other != arch:
                    return other
        ties = self._nearest.get(arch)
        if ties is None:
            distance = self._distances(self._code(self.categorical.encode(arch)))
            if arch in self.index:
                distance[self.index[arch]] = np.iinfo(distance.dtype).max
            ties = self._nearest[arch] = np.flatnonzero(distance == distance.min())
        return self.cells[int(ties[rng.integers(len(ties))])]

    # ------------------------------------------------------------------ nearest cells in the categorical encoding
    def _code(self, params) -> np.ndarray:
        """The choice index of each parameter (-1 for a value the encoding does not offer)."""
        choices = self.categorical.choices
        return np.array([choices[name].index(params[name]) if params[name] in choices[name] else -1
                         for name in choices], dtype=np.int16)

    def _distances(self, code: np.ndarray) -> np.ndarray:
        """How many parameters of each table cell differ from ``code``, all cells in one vectorised pass."""
        if self._codes is None:
            encode, choices = self.inner.categorical.encode, self.categorical.choices
            position = {name: {value: k for k, value in enumerate(values)} for name, values in choices.items()}
            self._codes = np.array([[position[name][p[name]] for name in choices] for p in map(encode, self.cells)],
                                   dtype=np.int16)
        return (self._codes != code).sum(axis=1, dtype=np.int32)

    def _decode(self, params) -> Arch:
        try:
            arch = self.inner.categorical.decode(params)
        except ArchError:
            arch = None
        if arch is not None and arch in self.index:
            return arch
        code = self._code(params)
        distance = self._distances(code)
        ties = np.flatnonzero(distance == distance.min())
        # seeded by the suggestion: equal suggestions give equal cells, so a searcher's state stays a function of its history
        pick = np.random.default_rng((code.astype(np.int64) + 1).tolist()).integers(len(ties))
        return self.cells[int(ties[pick])]


def restrict_to_table(space, oracle):
    """``space`` restricted to the cells of ``oracle`` where it is a table holding fewer cells than the
    space has, else ``space`` itself: a complete table (or a training oracle) searches the whole space."""
    size = space.size
    if isinstance(oracle, TabularOracle) and size is not None and len(oracle) < size:
        return RestrictedSpace(space, oracle.archs(), oracle.source)
    return space


def restriction_of(space) -> Optional[dict]:
    """What a run's config records about a restricted space (None for a whole space)."""
    return space.summary() if isinstance(space, RestrictedSpace) else None
