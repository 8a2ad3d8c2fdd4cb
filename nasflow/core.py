"""Core contracts every room meets through: cells, graphs, evaluations and protocols.

Spaces, oracles, searchers and predictors never import each other; they agree on the
types here. Nothing in this module imports torch.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Mapping, Optional, Protocol, Sequence, runtime_checkable

import numpy as np

from .errors import ArchError, BenchmarkError, SpaceError


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

    @property
    def search_space(self) -> "SearchSpace":  # pragma: no cover - abstract
        """The space of this cell: code holding only cells (a unified predictor scoring another
        space's cells) reaches that space's declarations through it, without importing spaces/."""
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
    ``fidelity`` is the epochs the answer stands for when it was asked at a fidelity
    (``Oracle.query(arch, fidelity)``); None: the oracle's full fidelity, as before fidelities existed.
    """

    valid: float
    test: Optional[float] = None
    cost: Optional[float] = None
    extra: dict = field(default_factory=dict)
    fidelity: Optional[int] = None

    def to_dict(self) -> dict:
        out = {**self.extra, "valid": self.valid, "test": self.test, "cost": self.cost}
        if self.fidelity is not None:
            out["fidelity"] = self.fidelity
        return out


@dataclass(frozen=True)
class CategoricalEncoding:
    """A cell as a fixed set of categorical parameters, for samplers over such sets (Optuna's TPE).

    ``choices``: parameter name -> its allowed values, in the order a sampler suggests them.
    ``decode(params)``: the cell of one value per parameter; raises an ``ArchError`` for a
    combination the space rejects. ``encode(arch)``: its inverse, the parameters of a cell
    (a parameter the cell leaves unused gets any allowed value).
    """

    choices: Mapping[str, tuple]
    decode: Callable[[Mapping[str, Any]], "Arch"]
    encode: Callable[["Arch"], dict]


@runtime_checkable
class SearchSpace(Protocol):
    """What the rest of nasflow uses from a space. Optional capabilities are declared as
    attributes that are None where the space lacks them (see :class:`BaseSpace`), never probed."""

    name: str
    size: Optional[int]  # number of distinct cells; None where it is not known
    ops: tuple[str, ...]  # the operations a cell chooses from
    vocab: tuple[str, ...]  # node labels of to_graph: "input", "output", then the ops
    datasets: tuple[str, ...]  # datasets its benchmarks have results for
    enumerable: bool  # whether enumerate() lists every cell (finite and small enough to list)
    small_network: tuple[int, int]  # (width, cells per stage) the training oracle uses by default
    # optional capabilities, None where absent
    categorical: Optional[CategoricalEncoding]  # cells as categorical parameters (TPE)
    unified_ops: Optional[Mapping[str, str]]  # node label -> token of the unified vocabulary (predictors.unified)
    unified_id: Optional[int]  # this space's row of a unified predictor's space embedding
    protocol_pool: Optional[int]  # training pool of the field's predictor protocol on this space
    network: Optional[Callable[..., Any]]  # (arch, num_classes, in_channels, width, cells) -> torch module
    network_counts: Optional[Callable[..., dict]]  # (archs, image_size=...) -> {"params", "flops"} in closed form
    arch_at: Optional[Callable[[int], Arch]]  # cell at an official index in 0..size-1

    def parse(self, text: str) -> Arch: ...
    def format(self, arch: Arch) -> str: ...
    def sample(self, rng: np.random.Generator) -> Arch: ...
    def mutate(self, arch: Arch, rng: np.random.Generator) -> Arch: ...
    def neighbours(self, arch: Arch) -> list[Arch]: ...
    def to_graph(self, arch: Arch) -> CellGraph: ...
    def enumerate(self) -> list[Arch]: ...
    def open_oracle(self, benchmark: Optional[str] = None, dataset: str = "cifar10", progress: bool = False): ...


class BaseSpace:
    """The defaults of a space's declared capabilities: a space module's class inherits them and
    overrides what it has, so callers test ``space.network is None`` instead of ``hasattr``."""

    name: str = ""
    size: Optional[int] = None
    datasets: tuple[str, ...] = ()
    enumerable = False
    small_network = (8, 1)
    categorical: Optional[CategoricalEncoding] = None
    unified_ops: Optional[Mapping[str, str]] = None
    unified_id: Optional[int] = None
    protocol_pool: Optional[int] = None
    network: Optional[Callable[..., Any]] = None
    network_counts: Optional[Callable[..., dict]] = None
    arch_at: Optional[Callable[[int], Arch]] = None

    def enumerate(self) -> list[Arch]:
        raise SpaceError(f"space {self.name!r} cannot list its cells; use the cells of a benchmark oracle instead")

    def open_oracle(self, benchmark: Optional[str] = None, dataset: str = "cifar10", progress: bool = False):
        raise SpaceError(f"space {self.name!r} has no benchmark tables; search it with the training oracle")


@runtime_checkable
class Oracle(Protocol):
    """``query`` is required; ``best`` (None where the oracle cannot know the optimum, e.g. it trains) and
    ``speed_summary`` (None where it trains nothing) are optional capabilities, declared, never probed.

    ``query(arch, fidelity)`` answers at ``fidelity`` epochs where the oracle has them: ``fidelities`` lists
    them ascending, the last being its full fidelity (``()``: only its full one, unnamed; None: any epoch count,
    it trains). ``query(arch)`` is the full fidelity, exactly as before fidelities existed. ``continues``:
    whether a cell asked at a higher fidelity after a lower one costs only the extra epochs (a table stands for
    a training continued from its checkpoint; an oracle that retrains from scratch costs the whole fidelity).
    ``for_schedule(max_epochs)`` (None where the oracle is used as it is, e.g. a table) gives the oracle a
    multi-fidelity schedule with top rung ``max_epochs`` queries: the training oracle's trains every cell on one
    schedule of that many epochs, so that a promotion ``continues``."""

    best: Optional[Callable[..., tuple[list[Arch], float]]]
    speed_summary: Optional[Callable[[], Optional[dict]]]
    for_schedule: Optional[Callable[[int], "Oracle"]]

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


def cell_index(index: Any, size: int, space: str) -> int:
    """``index`` as an int if it is an index of a space of ``size`` cells (``arch_at``), else a one-line ArchError."""
    if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or not 0 <= index < size:
        raise ArchError(f"{space} index must be an integer in 0..{size - 1}, got {index!r}")
    return int(index)


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


class FidelityError(BenchmarkError):
    """A fidelity (epoch count) the oracle has no answers at."""


class TabularOracle:
    """An oracle backed by a complete or partial table of evaluated cells.

    Subclasses load their file and call ``_set_table``; the lookup, ``best`` and the
    iteration over known cells are shared. A table with answers at lower fidelities declares
    them with ``_set_fidelities``; each is loaded on its first query, so a search at full
    fidelity never reads them.
    """

    fidelities: tuple[int, ...] = ()  # see Oracle: () answers its full fidelity only
    continues = True  # a table stands for a training continued from its checkpoint

    source: str = ""
    dataset: str = ""
    speed_summary = None  # a table trains nothing
    for_schedule = None  # a schedule queries a table at its fidelities as it is
    # one line saying what ``valid`` and ``test`` are where they are not the dataset's validation and test
    # splits (a table without a validation split); the run summary and ``nasflow info`` print it
    metric_note: Optional[str] = None

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

    def _set_fidelities(self, full: int, lower: Mapping[int, Callable[[], "TabularOracle"]]) -> None:
        """This table is at ``full`` epochs; ``lower`` maps each lower epoch count to a loader of its table."""
        self.fidelities = tuple(sorted(lower)) + (int(full),)
        self._lower_loaders = dict(lower)
        self._lower: dict[int, TabularOracle] = {}

    def query(self, arch: Arch, fidelity: Optional[int] = None) -> Evaluation:
        if fidelity is None:
            table = self._table
        elif self.fidelities and fidelity == self.fidelities[-1]:
            table = self._table
        elif fidelity in self.fidelities:
            if fidelity not in self._lower:
                self._lower[fidelity] = self._lower_loaders[fidelity]()
            table = self._lower[fidelity]._table
        else:
            have = ", ".join(map(str, self.fidelities)) if self.fidelities else "its full fidelity only"
            raise FidelityError(f"{self.source} has no accuracies at {fidelity} epochs; it has {have}")
        try:
            evaluation = table[arch]
        except KeyError:
            raise BenchmarkError(f"cell {arch} is not in {self.source}"
                                 + ("" if fidelity is None else f" at {fidelity} epochs")) from None
        return evaluation if fidelity is None else dataclasses.replace(evaluation, fidelity=int(fidelity))

    def best(self, metric: str = "valid") -> tuple[list[Arch], float]:
        """All cells tied at the best value of ``metric`` ('valid' or 'test'), and that value."""
        values = {a: getattr(e, metric) for a, e in self._table.items() if getattr(e, metric) is not None}
        if not values:
            raise BenchmarkError(f"{self.source} has no {metric} accuracies for {self.dataset}")
        top = max(values.values())
        return [a for a, v in values.items() if v == top], top
