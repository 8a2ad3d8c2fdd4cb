"""DGL batched graphs of cells, built from flat per-cell arrays.

A cell's graph (op ids, undirected edge list) comes from ``space.to_graph``. Many cells are
held as one :class:`PackedCells` (flat arrays with per-cell offsets), and a batch of any of
them is a vectorised gather into one ``dgl.graph``: no per-cell graph objects, no
``dgl.batch``, so scoring all 423,624 NB-101 cells costs a few numpy calls per chunk.
:class:`GraphCache` keeps the arrays of the cells a predictor trains on by arch key, so
training epochs and repeated predictions never call ``to_graph`` again for them.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Mapping, Optional, Sequence

import dgl
import numpy as np
import torch

from nasflow.core import Arch

# Cells whose arrays a GraphCache keeps (~0.5 kB each): every cell of NB-201 and any training set fits;
# cells beyond it (scoring a whole 423,624-cell space) are packed for their call and then dropped.
CACHE_LIMIT = 65_536


@dataclass
class CellBatch:
    """A batch of cells as the encoders see it."""

    graph: dgl.DGLGraph
    ops: torch.Tensor  # (total nodes,) op ids
    graph_index: torch.Tensor  # (total nodes,) which cell each node belongs to
    num_graphs: int


def _ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Concatenation of ``arange(s, s + l)`` for every pair, without a Python loop."""
    total = int(lengths.sum())
    first = np.cumsum(lengths) - lengths  # where each range begins in the output
    return np.repeat(starts - first, lengths) + np.arange(total, dtype=np.int64)


def _converted(items, convert) -> list:
    """``[convert(x) for x in items]``, converting each distinct (hashable) item once."""
    done: dict = {}
    out = []
    for item in items:
        value = done.get(item)
        if value is None:
            value = done[item] = convert(item)
        out.append(value)
    return out


class PackedCells:
    """Graph arrays of many cells, concatenated in order with per-cell counts.

    ``ops``: op id of every node; ``src``/``dst``: every edge in both directions (a cell's
    DAG edges, then the same reversed), numbered within its cell. This is a ``CellBatch``'s
    layout before node offsets are added, so :meth:`batch` is a gather plus one addition.
    """

    def __init__(self, ops: np.ndarray, sizes: np.ndarray, src: np.ndarray, dst: np.ndarray, n_edges: np.ndarray):
        self.ops, self.sizes, self.src, self.dst, self.n_edges = ops, sizes, src, dst, n_edges
        self.node_start = np.cumsum(sizes) - sizes
        self.edge_start = np.cumsum(n_edges) - n_edges

    def __len__(self) -> int:
        return int(self.sizes.size)

    @classmethod
    def from_entries(cls, entries: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> "PackedCells":
        """Pack per-cell ``(op ids, src, dst)`` arrays (as :meth:`GraphCache.cell_arrays` gives them)."""
        if not entries:
            return cls.empty()
        sizes = np.fromiter((e[0].size for e in entries), np.int64, len(entries))
        n_edges = np.fromiter((e[1].size for e in entries), np.int64, len(entries))
        ops, src, dst = (np.concatenate([e[k] for e in entries]) for k in range(3))
        return cls(ops, sizes, src, dst, n_edges)

    @classmethod
    def from_graphs(cls, graphs: Sequence, node_ids: Mapping[str, int]) -> "PackedCells":
        """Pack ``space.to_graph`` results; each distinct label list and edge list is converted once."""
        if not graphs:
            return cls.empty()
        # a space has few distinct label lists and edge lists (NB-101: ~2,500 matrices for 423,624 cells)
        op_arrays = _converted((g.ops for g in graphs), lambda ops: np.array([node_ids[o] for o in ops], np.int64))
        edge_arrays = _converted((g.edges for g in graphs), lambda e: np.array(e, np.int64).reshape(-1, 2))
        sizes = np.fromiter((a.size for a in op_arrays), np.int64, len(graphs))
        dag_edges = np.fromiter((len(a) for a in edge_arrays), np.int64, len(graphs))
        ops = np.concatenate(op_arrays)
        flat = np.concatenate(edge_arrays)
        # Message passing runs both ways along every edge, as in the FGP encoders: each cell's block
        # holds its DAG edges, then the same edges reversed (the order cell_arrays gives).
        cell = np.repeat(np.arange(len(graphs)), dag_edges)
        first = np.cumsum(dag_edges) - dag_edges
        forward = np.arange(len(flat)) + first[cell]
        backward = forward + dag_edges[cell]
        src = np.empty(2 * len(flat), dtype=np.int64)
        dst = np.empty(2 * len(flat), dtype=np.int64)
        src[forward], dst[forward] = flat[:, 0], flat[:, 1]
        src[backward], dst[backward] = flat[:, 1], flat[:, 0]
        return cls(ops, sizes, src, dst, 2 * dag_edges)

    @classmethod
    def empty(cls) -> "PackedCells":
        nothing = np.zeros(0, dtype=np.int64)
        return cls(nothing, nothing, nothing, nothing, nothing)

    @classmethod
    def concat(cls, packs: Sequence["PackedCells"]) -> "PackedCells":
        return cls(*(np.concatenate([getattr(p, name) for p in packs]) for name in ("ops", "sizes", "src", "dst", "n_edges")))

    def take(self, idx) -> "PackedCells":
        """The cells at positions ``idx``, in that order."""
        idx = np.asarray(idx, dtype=np.int64)
        sizes, n_edges = self.sizes[idx], self.n_edges[idx]
        nodes = _ranges(self.node_start[idx], sizes)
        edges = _ranges(self.edge_start[idx], n_edges)
        return PackedCells(self.ops[nodes], sizes, self.src[edges], self.dst[edges], n_edges)

    def entry(self, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Cell ``i``'s ``(op ids, src, dst)`` (views into the packed arrays)."""
        n, e = self.node_start[i], self.edge_start[i]
        edges = slice(e, e + self.n_edges[i])
        return self.ops[n : n + self.sizes[i]], self.src[edges], self.dst[edges]

    def batch(self, idx=None) -> CellBatch:
        """One DGL graph of every cell (or of those at positions ``idx``, in that order)."""
        cells = self if idx is None else self.take(idx)
        offsets = np.repeat(cells.node_start, cells.n_edges)
        graph = dgl.graph((torch.from_numpy(cells.src + offsets), torch.from_numpy(cells.dst + offsets)),
                          num_nodes=int(cells.sizes.sum()))  # fmt: skip
        graph_index = torch.from_numpy(np.repeat(np.arange(len(cells)), cells.sizes))
        return CellBatch(graph, torch.from_numpy(cells.ops), graph_index, len(cells))


class GraphCache:
    """Per-arch graph arrays for one space, and batches assembled from them.

    ``node_ids`` maps each node label to the id an encoder embeds; by default a label's
    position in ``space.vocab`` (a unified cache packs (space, op) ids instead). It keeps
    the arrays of at most ``CACHE_LIMIT`` cells, so memory stays bounded however many cells
    pass through it.
    """

    def __init__(self, space, node_ids: Optional[Mapping[str, int]] = None):
        self.space = space
        self.vocab = tuple(space.vocab)
        self.node_ids = dict(node_ids) if node_ids is not None else {op: i for i, op in enumerate(self.vocab)}
        self._cells: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}

    def __len__(self) -> int:
        return len(self._cells)

    def cell_arrays(self, arch: Arch) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(node ids, edge sources, edge targets) of one cell, computed once."""
        entry = self._cells.get(arch.key)
        if entry is None:
            entry = PackedCells.from_graphs([self.space.to_graph(arch)], self.node_ids).entry(0)
            if len(self._cells) < CACHE_LIMIT:
                self._cells[arch.key] = entry
        return entry

    def pack(self, archs: Sequence[Arch]) -> PackedCells:
        """The graph arrays of ``archs`` in order: cached cells from the cache, new ones packed in bulk.

        Cells with one key (isomorphic cells) share the arrays of the first one seen, as the
        cache gives them: their node order, hence dropout's masks, never depends on which
        isomorphic matrix a caller happened to pass.
        """
        keys = [a.key for a in archs]
        known = [self._cells.get(k) for k in keys]
        new: dict[str, int] = {}  # key -> its first position among archs
        for i, entry in enumerate(known):
            if entry is None:
                new.setdefault(keys[i], i)
        if not new:
            return PackedCells.from_entries(known)
        fresh = PackedCells.from_graphs([self.space.to_graph(archs[i]) for i in new.values()], self.node_ids)
        room = max(0, CACHE_LIMIT - len(self._cells))
        for j, key in enumerate(itertools.islice(new, room)):
            # copies: a view would keep the whole packed chunk alive for one cached cell
            self._cells[key] = tuple(a.copy() for a in fresh.entry(j))
        if len(new) == len(archs):
            return fresh
        old = [i for i, entry in enumerate(known) if entry is not None]
        both = PackedCells.concat([PackedCells.from_entries([known[i] for i in old]), fresh])
        slot = {key: len(old) + j for j, key in enumerate(new)}
        position = np.empty(len(archs), dtype=np.int64)  # where each given cell sits in `both`
        position[old] = np.arange(len(old))
        for i, entry in enumerate(known):
            if entry is None:
                position[i] = slot[keys[i]]
        return both.take(position)

    def batch(self, archs: Sequence[Arch]) -> CellBatch:
        return self.pack(archs).batch()
