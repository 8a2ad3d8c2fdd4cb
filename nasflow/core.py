"""Core contracts every room meets through: cells, graphs, evaluations and protocols.

Spaces, oracles, searchers and predictors never import each other; they agree on the
types here. Nothing in this module imports torch.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator, Optional, Protocol, Sequence, runtime_checkable

import numpy as np

from .errors import BenchmarkError, SpaceError


class Arch:
    """An immutable, hashable cell of some search space.

    Subclasses define ``space`` (the registry name) and ``key`` (a string that identifies
    the cell uniquely within its space: NB-201's arch string, NB-101's module hash).
    Equality and hashing go through ``(space, key)`` so that equal cells compare equal
    even when they were written differently (e.g. isomorphic NB-101 matrices).
    """

    __slots__ = ()
    space: str = ""

    @property
    def key(self) -> str:  # pragma: no cover - abstract
        raise NotImplementedError

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Arch) and self.space == other.space and self.key == other.key

    def __hash__(self) -> int:
        return hash((self.space, self.key))

    def __str__(self) -> str:
        return self.key


@dataclass(frozen=True)
class CellGraph:
    """A cell as an encoder sees it: operation-on-node DAG.

    Nodes are in topological order (every edge goes from a lower to a higher index),
    node 0 is the input and the last node the output.
    """

    ops: tuple[str, ...]
    edges: tuple[tuple[int, int], ...]

    @property
    def num_nodes(self) -> int:
        return len(self.ops)


@dataclass(frozen=True)
class Evaluation:
    """What an oracle says about one cell.

    ``valid`` is what searchers optimise; ``test`` is what a run reports for the chosen
    cell (None where the benchmark has no test split). ``cost`` is the training time in
    seconds where known. ``extra`` holds anything else (params, flops, epochs, ...).
    """

    valid: float
    test: Optional[float] = None
    cost: Optional[float] = None
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {**self.extra, "valid": self.valid, "test": self.test, "cost": self.cost}


@runtime_checkable
class SearchSpace(Protocol):
    name: str
    size: int

    def parse(self, text: str) -> Arch: ...
    def format(self, arch: Arch) -> str: ...
    def sample(self, rng: np.random.Generator) -> Arch: ...
    def mutate(self, arch: Arch, rng: np.random.Generator) -> Arch: ...
    def neighbours(self, arch: Arch) -> list[Arch]: ...
    def to_graph(self, arch: Arch) -> CellGraph: ...


@runtime_checkable
class Oracle(Protocol):
    def query(self, arch: Arch) -> Evaluation: ...


@runtime_checkable
class Searcher(Protocol):
    def ask(self, n: int) -> list[Arch]: ...
    def tell(self, arch: Arch, evaluation: Evaluation) -> None: ...


def is_finite_number(x: Any) -> bool:
    return isinstance(x, (int, float, np.floating, np.integer)) and math.isfinite(float(x))


def exploring(n: int, k: int, share: float) -> bool:
    """Whether the step querying cells n+1..n+k is an exploration step: a ``share`` of the steps, evenly
    spaced (Bresenham), with no RNG, so a resumed or rebuilt run explores at the same steps."""
    return int((n + k) * share) > int(n * share)


def unique(archs: Iterable[Arch]) -> list[Arch]:
    """Order-preserving de-duplication."""
    seen: set = set()
    out = []
    for a in archs:
        if a not in seen:
            seen.add(a)
            out.append(a)
    return out


def graph_arrays(graphs: Sequence[CellGraph], vocab: Sequence[str], max_nodes: Optional[int] = None):
    """Pad a batch of graphs to dense arrays for vectorised code.

    Returns ``(op_ids, adj, mask)``: op ids ``(B, N)`` int64 (-1 on padding), adjacency
    ``(B, N, N)`` float32 with ``adj[b, u, v] = 1`` for an edge u -> v, and a node mask
    ``(B, N)`` bool. The output node stays the last real node of each graph.
    """
    index = {op: i for i, op in enumerate(vocab)}
    n = max_nodes or max(g.num_nodes for g in graphs)
    unknown = {op for g in graphs for op in g.ops} - index.keys()
    if unknown:
        raise SpaceError(f"operations {sorted(unknown)} are not in the vocabulary {list(vocab)}")
    op_ids = np.full((len(graphs), n), -1, dtype=np.int64)
    adj = np.zeros((len(graphs), n, n), dtype=np.float32)
    mask = np.zeros((len(graphs), n), dtype=bool)
    for b, g in enumerate(graphs):
        op_ids[b, : g.num_nodes] = [index[o] for o in g.ops]
        mask[b, : g.num_nodes] = True
        if g.edges:
            src, dst = zip(*g.edges)
            adj[b, list(src), list(dst)] = 1.0
    return op_ids, adj, mask


class TabularOracle:
    """An oracle backed by a complete or partial table of evaluated cells.

    Subclasses load their file and call ``_set_table``; the lookup, ``best`` and the
    iteration over known cells are shared.
    """

    source: str = ""
    dataset: str = ""

    def _set_table(self, table: dict[Arch, Evaluation]) -> None:
        self._table = table

    def __len__(self) -> int:
        return len(self._table)

    def __contains__(self, arch: Arch) -> bool:
        return arch in self._table

    def items(self) -> Iterator[tuple[Arch, Evaluation]]:
        return iter(self._table.items())

    def archs(self) -> list[Arch]:
        return list(self._table)

    def query(self, arch: Arch) -> Evaluation:
        try:
            return self._table[arch]
        except KeyError:
            raise BenchmarkError(f"cell {arch} is not in {self.source}") from None

    def best(self, metric: str = "valid") -> tuple[list[Arch], float]:
        """All cells tied at the best value of ``metric`` ('valid' or 'test'), and that value."""
        values = {a: getattr(e, metric) for a, e in self._table.items() if getattr(e, metric) is not None}
        if not values:
            raise BenchmarkError(f"{self.source} has no {metric} accuracies for {self.dataset}")
        top = max(values.values())
        return [a for a, v in values.items() if v == top], top
