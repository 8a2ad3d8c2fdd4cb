"""Every distinct NAS-Bench-101 cell (423,624), as compact numpy arrays cached on disk.

How: the unlabelled shapes up to isomorphism (``nb101_graphs``: 2,494 shapes of 2..7
vertices), on each the labellings that are distinct cells, and the official module hash of
each of those (``nb101_hash``): 423,624 hashes, every one computed once, and checked to be
unique (the count is also Burnside's, so a hash collision or a missed cell cannot pass).

Order: cells are sorted by their official hash (as bytes). The order needs nothing but the
hash to reproduce, ``index_of`` is one binary search, and the official tfrecord's table
(``nb101_records.load_records``, also sorted by hash) lists its cells in the same order.

The cache: one .npz under ``$NASFLOW_CACHE`` (``nasflow.cache`` rules: read without pickle, a
damaged file reported once and computed again, an unwritable directory only costs speed).
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable, Optional, Sequence

import numpy as np

from nasflow import cache as nasflow_cache
from nasflow.errors import ArchError, SpaceError

from .nb101 import INPUT, MAX_VERTICES, OPS, OUTPUT, NB101Arch, NB101Space
from .nb101_graphs import cell_counts, distinct_labellings, row_major_code
from .nb101_hash import INPUT_LABEL, OUTPUT_LABEL, Structure

CACHE_VERSION = 1
_COLUMNS = {"hash": "S32", "vertices": "uint8", "adjacency": "int64", "ops": "int8"}
_SPOT_CHECKS = 16  # cached cells hashed again on load: a cache whose cells and hashes disagree is rejected


def matrix_of_bits(n: int, bits: int) -> tuple:
    """The n x n matrix (rows of ints, as NB101Arch stores it) of a row-major adjacency bit code, entry [0][0]
    the most significant bit: the ``adjacency`` column of these cells and of ``nb101_records``' table."""
    flat = format(bits, f"0{n * n}b")
    return tuple(tuple(int(b) for b in flat[r * n: (r + 1) * n]) for r in range(n))


class Cells:
    """The distinct NAS-Bench-101 cells, sorted by official hash, as arrays (one row a cell).

    - ``hashes``: (N,) ``S32``, the official module hashes, strictly increasing.
    - ``vertices``: (N,) uint8, the number n of vertices of the pruned cell (2..7).
    - ``adjacency``: (N,) int64, the n x n pruned matrix as row-major bits, entry [0][0] the most
      significant bit: ``int(official adjacency string, 2)``, as ``nb101_records`` stores it.
    - ``ops``: (N, 5) int8, the inner vertices' ops as indices into ``OPS``, -1 past the n-2 inner ones.

    For graph building without Arch objects, ``matrices()`` unpacks the adjacency into padded 7x7
    arrays and ``node_labels()`` gives the matching node labels as indices into ``NB101Space.vocab``.
    """

    def __init__(self, arrays: dict):
        self.hashes = arrays["hash"]
        self.vertices = arrays["vertices"]
        self.adjacency = arrays["adjacency"]
        self.ops = arrays["ops"]
        # one tuple per distinct matrix / ops list: 423,624 archs share a few thousand of them
        self._matrices: dict = {}
        self._op_names: dict = {}
        self._every: Optional[tuple] = None

    def __len__(self) -> int:
        return len(self.hashes)

    def arch(self, i: int) -> NB101Arch:
        """The cell at row ``i`` (0 <= i < len), without hashing it again."""
        n, bits = int(self.vertices[i]), int(self.adjacency[i])
        matrix = self._matrices.get((n, bits))
        if matrix is None:
            matrix = self._matrices[(n, bits)] = matrix_of_bits(n, bits)
        codes = self.ops[i, : n - 2].tobytes()
        ops = self._op_names.get(codes)
        if ops is None:
            ops = self._op_names[codes] = (INPUT, *(OPS[c] for c in self.ops[i, : n - 2]), OUTPUT)
        return NB101Arch.from_record(matrix, ops, self.hashes[i].decode())

    def archs(self, indices: Optional[Iterable[int]] = None) -> list[NB101Arch]:
        """The cells at ``indices`` (all, in order, when None: made once, about 2 s, then copied)."""
        if indices is not None:
            return [self.arch(int(i)) for i in indices]
        if self._every is None:
            self._every = tuple(self.arch(i) for i in range(len(self)))
        return list(self._every)

    def index_of(self, hashes) -> np.ndarray:
        """Row of each hash (str or bytes, 32 hex digits) in this enumeration, -1 where it is not a cell."""
        h = np.asarray(hashes)
        if h.size == 0:
            return np.zeros(h.shape, dtype=np.int64)
        if h.dtype.kind not in "US":
            raise ArchError(f"NAS-Bench-101 hashes must be strings, got an array of {h.dtype}")
        # a longer string must not match by its first 32 characters, nor a non-ASCII one at all
        well_formed = np.char.str_len(h) == 32
        if h.dtype.kind == "U":
            h = np.char.encode(np.where(well_formed, h, ""), "ascii", errors="replace")
        keys = h.astype("S32")
        rows = np.minimum(np.searchsorted(self.hashes, keys), len(self) - 1)
        found = well_formed & (self.hashes[rows] == keys)
        return np.where(found, rows, -1).astype(np.int64)

    def matrices(self, indices=None) -> np.ndarray:
        """(k, 7, 7) uint8 adjacency of the cells at ``indices`` (all when None), each n x n matrix in the
        top-left corner: vertex n-1 is the output and rows/columns n.. are zero."""
        sel = slice(None) if indices is None else np.asarray(indices, dtype=np.int64)
        n = self.vertices[sel].astype(np.int64)
        bits = self.adjacency[sel]
        out = np.zeros((len(n), MAX_VERTICES, MAX_VERTICES), dtype=np.uint8)
        for r in range(MAX_VERTICES):
            for c in range(r + 1, MAX_VERTICES):
                inside = c < n
                shift = np.where(inside, n * n - 1 - (r * n + c), 0)
                out[:, r, c] = np.where(inside, bits >> shift & 1, 0)
        return out

    def node_labels(self, indices=None) -> np.ndarray:
        """(k, 7) int8 node labels of the cells at ``indices`` (all when None) as indices into
        ``NB101Space.vocab`` (input, output, then OPS), in vertex order as ``matrices()``; -1 past vertex n-1."""
        sel = slice(None) if indices is None else np.asarray(indices, dtype=np.int64)
        n = self.vertices[sel].astype(np.int64)
        ops = self.ops[sel]
        out = np.full((len(n), MAX_VERTICES), -1, dtype=np.int8)
        out[:, 0] = NB101Space.vocab.index(INPUT)
        out[:, 1:-1] = np.where(ops >= 0, ops + NB101Space.vocab.index(OPS[0]), -1)
        out[np.arange(len(n)), n - 1] = NB101Space.vocab.index(OUTPUT)
        return out


def enumerate_cells(max_vertices: int = MAX_VERTICES, progress: bool = False) -> dict[str, np.ndarray]:
    """Every distinct cell of up to ``max_vertices`` vertices, as the arrays of ``Cells``, sorted by hash."""
    from tqdm.auto import tqdm

    if not 2 <= max_vertices <= MAX_VERTICES:
        raise SpaceError(f"NAS-Bench-101 cells have 2..{MAX_VERTICES} vertices, not up to {max_vertices}")
    shapes, counts = cell_counts(max_vertices)
    total = int(counts.sum())  # Burnside's count: an independent check of the labellings listed below
    hashes, vertices, adjacency, ops = [], [], [], []
    with tqdm(total=total, desc="enumerating NAS-Bench-101", unit="cell", disable=not progress) as bar:
        for shape in shapes:
            n, labellings = shape.vertices, distinct_labellings(shape)
            for labelling in labellings.tolist():
                hashes.append(shape.structure.hash([INPUT_LABEL, *labelling, OUTPUT_LABEL]))
            vertices.append(np.full(len(labellings), n, dtype=np.uint8))
            adjacency.append(np.full(len(labellings), row_major_code(shape.matrix[None])[0], dtype=np.int64))
            padded = np.full((len(labellings), MAX_VERTICES - 2), -1, dtype=np.int8)
            padded[:, : n - 2] = labellings
            ops.append(padded)
            bar.update(len(labellings))
    keys = np.array(hashes, dtype="S32")
    order = np.argsort(keys, kind="stable")
    keys = keys[order]
    if len(keys) != total or (len(keys) > 1 and not np.all(keys[1:] > keys[:-1])):
        raise SpaceError(f"the NAS-Bench-101 enumeration gave {len(keys)} cells with {len(np.unique(keys))} "
                         f"distinct hashes, expected {total}: the hashing disagrees with the benchmark's")
    vertices, adjacency, ops = np.concatenate(vertices), np.concatenate(adjacency), np.concatenate(ops)
    return {"hash": keys, "vertices": vertices[order], "adjacency": adjacency[order], "ops": ops[order]}


def cache_file(max_vertices: int = MAX_VERTICES, directory=None) -> Path:
    """Where ``load_cells`` keeps the enumeration of cells up to ``max_vertices`` vertices."""
    return nasflow_cache.entry(None, f"nb101-cells-{max_vertices}v", CACHE_VERSION, ".npz", directory=directory)


def _problem(arrays: dict, max_vertices: int) -> Optional[str]:
    """Why cached arrays cannot be the enumeration, or None when they pass every cheap check."""
    if arrays.keys() != _COLUMNS.keys() or any(arrays[k].dtype != np.dtype(t) for k, t in _COLUMNS.items()):
        return "not a NAS-Bench-101 enumeration"
    total = int(cell_counts(max_vertices)[1].sum())
    h, n, bits, ops = arrays["hash"], arrays["vertices"], arrays["adjacency"], arrays["ops"]
    if (h.shape != (total,) or n.shape != (total,) or bits.shape != (total,)
            or ops.shape != (total, MAX_VERTICES - 2)):
        return f"not {total:,d} cells of up to {max_vertices} vertices"
    if not np.all(h[1:] > h[:-1]):
        return "hashes not sorted and unique"
    inner = np.arange(MAX_VERTICES - 2)[None, :] < (n.astype(np.int64) - 2)[:, None]
    if (n.min() < 2 or n.max() > max_vertices or bits.min() < 0 or np.any(bits >= 1 << (n.astype(np.int64) ** 2))
            or np.any(np.where(inner, (ops < 0) | (ops >= len(OPS)), ops != -1))):
        return "vertex counts, matrices or ops out of range"
    cells = Cells(arrays)
    for i in np.linspace(0, total - 1, min(_SPOT_CHECKS, total)).astype(np.int64):
        a = cells.arch(int(i))
        labels = [INPUT_LABEL, *(OPS.index(op) for op in a.ops[1:-1]), OUTPUT_LABEL]
        if Structure(a.matrix).hash(labels) != a.key:
            return f"cell {int(i)} does not have its hash"
    return None


_loaded: dict = {}  # cache file -> Cells: arch_at and sample call load_cells once per cell


def load_cells(progress: bool = False, max_vertices: int = MAX_VERTICES, directory=None) -> Cells:
    """All distinct cells of up to ``max_vertices`` vertices: from the disk cache, else enumerated (about a
    minute for the full space; ``progress`` shows a bar) and cached. Memoised in the process per cache file."""
    target = cache_file(max_vertices, directory)
    cells = _loaded.get(target)
    if cells is not None:
        return cells
    arrays = nasflow_cache.load_npz(target)
    if arrays is not None:
        why = _problem(arrays, max_vertices)
        if why is not None:
            nasflow_cache.report_damaged(target, why)
            arrays = None
    if arrays is None:
        arrays = enumerate_cells(max_vertices, progress)
        nasflow_cache.write(target, lambda f: np.savez(f, **arrays))
    cells = _loaded[target] = Cells(arrays)
    return cells


def hash_of(matrix: Sequence[Sequence[int]], op_codes: Sequence[int]) -> str:
    """The official hash of a pruned cell given its matrix and its inner vertices' op codes (indices into OPS)."""
    return Structure(matrix).hash([INPUT_LABEL, *map(int, op_codes), OUTPUT_LABEL])
