"""The unlabelled shapes of NAS-Bench-101 cells, up to isomorphism, and the labellings that are distinct on each.

A pruned cell of n vertices is an upper-triangular 0/1 matrix in which every vertex lies on
an input->output path (vertex 0 is then the only source, n-1 the only sink, so every
isomorphism fixes both) with at most 9 edges. Two matrices are the same shape when a
permutation of the inner vertices maps one onto the other; a shape's ``code`` is the
smallest row-major bit code (entry [0][0] the most significant bit) over the permutations
that keep the matrix upper-triangular, so isomorphic matrices get the same code.

A labelling gives each inner vertex one of the three ops (0, 1, 2 as in ``OPS``). On a shape
with automorphisms some labellings are the same cell; ``distinct_labellings`` keeps the one
of each orbit whose base-3 code is smallest. Shapes x distinct labellings are exactly the
distinct cells (the benchmark's hash separates all of them: the enumeration checks that its
423,624 hashes are unique), which lets ``uniform_cell`` draw a cell uniformly without
listing the space: a shape with probability proportional to its number of distinct cells,
then a labelling uniformly among that shape's distinct ones.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from .nb101 import MAX_EDGES, MAX_VERTICES
from .nb101_hash import Structure


@dataclass(frozen=True)
class Shape:
    """One unlabelled cell: its n x n matrix and the permutations of its vertices that map it onto itself."""

    matrix: np.ndarray  # (n, n) uint8, the smallest-code matrix of its isomorphism class
    automorphisms: np.ndarray  # (k, n) int64, each a permutation p with matrix[p][:, p] == matrix
    rows: tuple = field(init=False, repr=False)  # the matrix as NB101Arch stores it
    structure: Structure = field(init=False, repr=False)  # hashes its labellings

    def __post_init__(self):
        object.__setattr__(self, "rows", tuple(tuple(int(x) for x in r) for r in self.matrix))
        object.__setattr__(self, "structure", Structure(self.rows))

    @property
    def vertices(self) -> int:
        return len(self.matrix)


def row_major_code(matrices: np.ndarray) -> np.ndarray:
    """(m, n, n) 0/1 matrices -> int64 row-major bit codes, entry [0][0] the most significant bit."""
    n = matrices.shape[-1]
    weights = (1 << np.arange(n * n - 1, -1, -1, dtype=np.int64))
    return matrices.reshape(len(matrices), n * n).astype(np.int64) @ weights


def pruned_matrices(n: int, max_edges: int = MAX_EDGES) -> np.ndarray:
    """Every n-vertex upper-triangular matrix with <= ``max_edges`` edges and every vertex on an input->output path."""
    rows, cols = np.triu_indices(n, 1)
    codes = np.arange(1 << len(rows), dtype=np.int64)  # bit k: the edge (rows[k], cols[k])
    edges = np.zeros(len(codes), dtype=np.int8)
    for k in range(len(rows)):
        edges += (codes >> k & 1).astype(np.int8)
    codes = codes[edges <= max_edges]
    # in an upper-triangular matrix every vertex lies on an input->output path exactly when every vertex
    # but the output has an out-edge and every vertex but the input an in-edge
    for v in range(n):
        if v < n - 1:
            codes = codes[codes & int(sum(1 << k for k in np.flatnonzero(rows == v))) != 0]
        if v > 0:
            codes = codes[codes & int(sum(1 << k for k in np.flatnonzero(cols == v))) != 0]
    mats = np.zeros((len(codes), n, n), dtype=np.uint8)
    mats[:, rows, cols] = (codes[:, None] >> np.arange(len(rows)) & 1).astype(np.uint8)
    return mats


def _inner_permutations(n: int) -> np.ndarray:
    """Every permutation of the vertices that fixes the input and the output, the identity first."""
    inner = list(itertools.permutations(range(1, n - 1)))
    return np.array([(0, *p, n - 1) for p in inner], dtype=np.int64).reshape(len(inner), n)


@lru_cache(maxsize=None)
def shapes(n: int, max_edges: int = MAX_EDGES) -> tuple[Shape, ...]:
    """The n-vertex shapes, one per isomorphism class, in increasing ``code`` order."""
    mats = pruned_matrices(n, max_edges)
    perms = _inner_permutations(n)
    lower = np.tril(np.ones((n, n), dtype=bool))
    own = row_major_code(mats)  # the identity keeps every matrix upper-triangular
    best = own.copy()
    fixed = np.zeros((len(perms), len(mats)), dtype=bool)  # fixed[k, i]: perms[k] maps matrix i onto itself
    for k, p in enumerate(perms):
        permuted = mats[:, p][:, :, p]
        codes = row_major_code(permuted)
        fixed[k] = codes == own
        upper = ~(permuted.astype(bool) & lower).any(axis=(1, 2))
        best = np.where(upper & (codes < best), codes, best)
    keep = np.flatnonzero(best == own)  # each class's smallest-code matrix
    keep = keep[np.argsort(own[keep])]
    out = [Shape(mats[i], perms[fixed[:, i]]) for i in keep]
    return tuple(out)


def all_labellings(inner: int) -> np.ndarray:
    """(3**inner, inner) int8: every assignment of op codes 0..2 to the inner vertices, in base-3 code order."""
    return np.array(list(itertools.product(range(3), repeat=inner)), dtype=np.int8).reshape(3 ** inner, inner)


def _base3(labellings: np.ndarray) -> np.ndarray:
    k = labellings.shape[1]
    return labellings.astype(np.int64) @ (3 ** np.arange(k - 1, -1, -1, dtype=np.int64))


def distinct_labellings(shape: Shape) -> np.ndarray:
    """The labellings of ``shape`` that are different cells: the smallest base-3 code of each orbit, in code order."""
    inner = shape.vertices - 2
    labellings = all_labellings(inner)
    if len(shape.automorphisms) == 1:
        return labellings
    codes = _base3(labellings)
    smallest = codes.copy()
    for p in shape.automorphisms[1:]:
        # relabelling by an automorphism gives the same cell: inner vertex v takes the op of p[v]
        smallest = np.minimum(smallest, _base3(labellings[:, p[1:-1] - 1]))
    return labellings[codes == smallest]


def is_distinct_labelling(shape: Shape, labelling: np.ndarray) -> bool:
    """Whether ``labelling`` is the one ``distinct_labellings`` keeps for its orbit."""
    code = _base3(labelling[None, :])[0]
    return all(_base3(labelling[None, p[1:-1] - 1])[0] >= code for p in shape.automorphisms[1:])


@lru_cache(maxsize=None)
def cell_counts(max_vertices: int = MAX_VERTICES) -> tuple[tuple[Shape, ...], np.ndarray]:
    """Every shape up to ``max_vertices`` vertices and its number of distinct cells (Burnside's lemma:
    the mean over its automorphisms of 3 ** (cycles among the inner vertices))."""
    every = tuple(s for n in range(2, max_vertices + 1) for s in shapes(n))
    counts = np.array([sum(3 ** _inner_cycles(p) for p in s.automorphisms) // len(s.automorphisms)
                       for s in every], dtype=np.int64)
    return every, counts


def _inner_cycles(p: np.ndarray) -> int:
    seen, cycles = set(), 0
    for v in range(1, len(p) - 1):
        if v not in seen:
            cycles += 1
            while v not in seen:
                seen.add(v)
                v = int(p[v])
    return cycles


def uniform_cell(rng: np.random.Generator, max_vertices: int = MAX_VERTICES) -> tuple[Shape, list[int]]:
    """(shape, inner op codes) of a cell drawn uniformly among all distinct cells of up to ``max_vertices``."""
    every, counts = cell_counts(max_vertices)
    cumulative = _cumulative(max_vertices)
    shape = every[int(np.searchsorted(cumulative, rng.random() * cumulative[-1], side="right"))]
    while True:  # uniform over a shape's labellings, kept when it is its orbit's representative
        labelling = rng.integers(3, size=shape.vertices - 2).astype(np.int8)
        if is_distinct_labelling(shape, labelling):
            return shape, labelling.tolist()


@lru_cache(maxsize=None)
def _cumulative(max_vertices: int) -> np.ndarray:
    return np.cumsum(cell_counts(max_vertices)[1]).astype(np.float64)
