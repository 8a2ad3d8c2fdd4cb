"""DGL batched graphs of cells, built from per-cell arrays cached by arch key.

A cell's graph (op ids, undirected edge list) is computed once from ``space.to_graph``;
a batch is then a concatenation with node offsets, so training epochs and repeated
predictions never call ``to_graph`` again and never go through ``dgl.batch``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Optional, Sequence

import dgl
import numpy as np
import torch

from nasflow.core import Arch


@dataclass
class CellBatch:
    """A batch of cells as the encoders see it."""

    graph: dgl.DGLGraph
    ops: torch.Tensor  # (total nodes,) op ids
    graph_index: torch.Tensor  # (total nodes,) which cell each node belongs to
    num_graphs: int


class GraphCache:
    """Per-arch graph arrays for one space, and batches assembled from them.

    ``node_ids`` maps each node label to the id an encoder embeds; by default a label's
    position in ``space.vocab`` (a unified cache packs (space, op) ids instead).
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
            g = self.space.to_graph(arch)
            ops = np.array([self.node_ids[o] for o in g.ops], dtype=np.int64)
            e = np.array(g.edges, dtype=np.int64).reshape(-1, 2)
            # Message passing runs both ways along every edge, as in the FGP encoders.
            src = np.concatenate([e[:, 0], e[:, 1]])
            dst = np.concatenate([e[:, 1], e[:, 0]])
            entry = self._cells[arch.key] = (ops, src, dst)
        return entry

    def batch(self, archs: Sequence[Arch]) -> CellBatch:
        cells = [self.cell_arrays(a) for a in archs]
        sizes = np.array([c[0].size for c in cells], dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        n_edges = np.array([c[1].size for c in cells], dtype=np.int64)
        edge_offsets = np.repeat(offsets, n_edges)
        src = np.concatenate([c[1] for c in cells]) + edge_offsets
        dst = np.concatenate([c[2] for c in cells]) + edge_offsets
        total = int(sizes.sum())
        graph = dgl.graph((torch.from_numpy(src), torch.from_numpy(dst)), num_nodes=total)
        ops = torch.from_numpy(np.concatenate([c[0] for c in cells]))
        graph_index = torch.from_numpy(np.repeat(np.arange(len(cells)), sizes))
        return CellBatch(graph, ops, graph_index, len(cells))
