"""Cells of four nodes whose six edges each carry one operation: the NAS-Bench-201 cell shape.

NAS-Bench-201 (five operations) and TransNAS-Bench-101's micro cell (four of the same five) share
it: node 0 is the cell's input, node 3 its output, and every node sums what its incoming edges
compute. What depends only on that shape and on the tuple of operations lives here: the edge
order, the arch string, sampling, mutation, neighbours, the op-on-node graph and the categorical
encoding. A space of such cells subclasses :class:`EdgeCellSpace` and says how six operation
names become its cell (``make``).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Callable, ClassVar, Optional, Sequence

import numpy as np

from nasflow.core import Arch, BaseSpace, CategoricalEncoding, CellGraph
from nasflow.errors import ArchError

# (from node, to node) of the six edges, in arch-string order: the edges into node 1, then 2, then 3.
EDGES = ((0, 1), (0, 2), (1, 2), (0, 3), (1, 3), (2, 3))
ARCH_STRING_FORM = "|op~0|+|op~0|op~1|+|op~0|op~1|op~2|"

_ARCH_RE = re.compile(r"^\|([^|~]+)~0\|\+\|([^|~]+)~0\|([^|~]+)~1\|\+\|([^|~]+)~0\|([^|~]+)~1\|([^|~]+)~2\|$")


def arch_string(ops: Sequence[str]) -> str:
    """NAS-Bench-201's arch string of the six edge operations (in EDGES order)."""
    o = ops
    return f"|{o[0]}~0|+|{o[1]}~0|{o[2]}~1|+|{o[3]}~0|{o[4]}~1|{o[5]}~2|"


def arch_string_ops(text) -> Optional[tuple[str, ...]]:
    """The six operation names of an arch string (in EDGES order), None where ``text`` is not one."""
    m = _ARCH_RE.match(text.strip()) if isinstance(text, str) else None
    return None if m is None else m.groups()


@dataclass(frozen=True, eq=False)
class EdgeCellArch(Arch):
    """A cell of this shape: the operation on each of the six edges, in EDGES order.

    A subclass sets ``space``, ``OPERATIONS`` (its space's operations), ``TITLE`` (the benchmark's name in
    messages) and ``key_of`` (the key of six operations), and defines ``search_space``.
    """

    ops: tuple[str, ...]
    _key: str = field(init=False, repr=False)
    OPERATIONS: ClassVar[tuple[str, ...]] = ()
    TITLE: ClassVar[str] = ""

    def __post_init__(self):
        if len(self.ops) != len(EDGES):
            raise ArchError(f"a {self.TITLE} cell has {len(EDGES)} edges, got {len(self.ops)} operations")
        for op in self.ops:
            if op not in self.OPERATIONS:
                raise ArchError(f"unknown {self.TITLE} operation {op!r}; expected one of {', '.join(self.OPERATIONS)}")
        object.__setattr__(self, "_key", self.key_of(self.ops))

    @staticmethod
    def key_of(ops: tuple[str, ...]) -> str:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def key(self) -> str:
        return self._key


def _graph_edges() -> tuple[tuple[int, int], ...]:
    """Edges of the op-on-node DAG: node 0 input, 1..6 the edge ops, 7 output.

    Edge op a feeds edge op b when a ends where b starts; ops leaving cell node 0 read
    the input and ops entering cell node 3 feed the output.
    """
    out = []
    for k, (src, dst) in enumerate(EDGES):
        if src == 0:
            out.append((0, k + 1))
        if dst == 3:
            out.append((k + 1, 7))
        for j, (src2, _) in enumerate(EDGES):
            if src2 == dst:
                out.append((k + 1, j + 1))
    return tuple(sorted(out))


GRAPH_EDGES = _graph_edges()


def categorical_encoding(ops: tuple[str, ...], make: Callable[[tuple[str, ...]], Arch]) -> CategoricalEncoding:
    """TPE's view of a cell: one categorical parameter per edge, named edge0..edge5 in EDGES order."""
    return CategoricalEncoding(
        choices={f"edge{k}": ops for k in range(len(EDGES))},
        decode=lambda params: make(tuple(params[f"edge{k}"] for k in range(len(EDGES)))),
        encode=lambda arch: {f"edge{k}": op for k, op in enumerate(arch.ops)},
    )


class EdgeCellSpace(BaseSpace):
    """Making, formatting, sampling, mutating, neighbours and graphs of a space of such cells.

    A subclass sets ``ops`` (its operations) and ``arch_class`` (its :class:`EdgeCellArch`).
    """

    ops: tuple[str, ...] = ()
    arch_class: type = EdgeCellArch

    def make(self, ops: Sequence[str]) -> EdgeCellArch:
        """The cell of six operation names, in EDGES order."""
        return self.arch_class(tuple(ops))

    def format(self, arch: EdgeCellArch) -> str:
        return arch.key

    def sample(self, rng: np.random.Generator) -> Arch:
        return self.make(tuple(self.ops[i] for i in rng.integers(len(self.ops), size=len(EDGES))))

    def mutate(self, arch: Arch, rng: np.random.Generator) -> Arch:
        """Change the operation of one edge to a different one."""
        edge = int(rng.integers(len(EDGES)))
        choices = [op for op in self.ops if op != arch.ops[edge]]
        ops = list(arch.ops)
        ops[edge] = choices[int(rng.integers(len(choices)))]
        return self.make(tuple(ops))

    def neighbours(self, arch: Arch) -> list[Arch]:
        out = []
        for edge in range(len(EDGES)):
            for op in self.ops:
                if op != arch.ops[edge]:
                    ops = list(arch.ops)
                    ops[edge] = op
                    out.append(self.make(tuple(ops)))
        return out

    def to_graph(self, arch: Arch) -> CellGraph:
        return CellGraph(ops=("input",) + tuple(arch.ops) + ("output",), edges=GRAPH_EDGES)
