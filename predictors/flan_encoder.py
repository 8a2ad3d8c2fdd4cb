"""A FLAN-style hybrid encoder: flow message passing plus dense attention over each cell.

After FLAN (Akhauri & Abdelfattah, ICML 2024), written for this project: each of FLAN's
layers averages a directed, residual, op-gated propagation along the DAG with a graph
attention layer whose output is gated by the node's op. Here the directed half is the
asynchronous flow layer of ``flow_encoder`` (forward then backward sweep in topological
order), and the attention half is multi-head self-attention among all nodes of the same
cell, with a learned per-head bias for how two nodes are related in the DAG (edge forward,
edge backward, none, self) so attention sees the structure without being limited to
neighbours. The two branches are averaged, as in FLAN's ensemble layer.

Batching: nodes of a cell are contiguous in a ``CellBatch``, so they are scattered into
a padded ``(cells, max nodes, dim)`` tensor; padding positions are masked out of every
softmax, so a cell's output never depends on the other cells of its batch. The padding
layout is computed once per batch and kept on it, as the flow plan is.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from .encoders import mean_pool
from .flow_encoder import FlowLayer, flow_plan
from .graphs import CellBatch

_LAYOUT_ATTR = "_dense_layout"
# relation of node j to node i in a cell: 0 unrelated, 1 edge j -> i, 2 edge i -> j, 3 i == j
_NUM_RELATIONS = 4


@dataclass
class DenseLayout:
    """Where each node of a batch sits in the padded per-cell tensor, and how nodes relate."""

    cell: torch.Tensor  # (total nodes,) cell index
    slot: torch.Tensor  # (total nodes,) position inside its cell
    max_nodes: int
    valid: torch.Tensor  # (cells, max_nodes) bool: a real node, not padding
    relation: torch.Tensor  # (cells, max_nodes, max_nodes) long, see _NUM_RELATIONS


def dense_layout(batch: CellBatch) -> DenseLayout:
    """The padding layout of ``batch`` (computed once, then kept on the batch)."""
    layout = getattr(batch, _LAYOUT_ATTR, None)
    if layout is not None:
        return layout
    cell = batch.graph_index.long()
    sizes = torch.bincount(cell, minlength=batch.num_graphs)
    first = torch.cumsum(sizes, 0) - sizes
    slot = torch.arange(cell.numel()) - first[cell]
    max_nodes = int(sizes.max()) if sizes.numel() else 0
    valid = torch.zeros(batch.num_graphs, max_nodes, dtype=torch.bool)
    valid[cell, slot] = True
    src, dst = batch.graph.edges()
    dag = src < dst  # the batch holds each edge both ways; cells number nodes topologically
    src, dst = src[dag].long(), dst[dag].long()
    relation = torch.zeros(batch.num_graphs, max_nodes, max_nodes, dtype=torch.long)
    relation[cell[dst], slot[dst], slot[src]] = 1  # dst's predecessor
    relation[cell[src], slot[src], slot[dst]] = 2  # src's successor
    diagonal = torch.arange(max_nodes)
    relation[:, diagonal, diagonal] = 3
    layout = DenseLayout(cell, slot, max_nodes, valid, relation)
    setattr(batch, _LAYOUT_ATTR, layout)
    return layout


class CellAttention(nn.Module):
    """Multi-head self-attention among the nodes of each cell, op-gated, residual + LayerNorm."""

    def __init__(self, dim: int, heads: int = 4):
        super().__init__()
        if dim % heads:
            heads = 1
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)
        self.relation_bias = nn.Parameter(torch.zeros(heads, _NUM_RELATIONS))
        self.op_gate = nn.Linear(dim, dim)
        self.norm = nn.LayerNorm(dim)

    def forward(self, layout: DenseLayout, h: torch.Tensor, op_emb: torch.Tensor) -> torch.Tensor:
        cells, n = layout.valid.shape
        dense = h.new_zeros(cells, n, h.shape[1]).index_put((layout.cell, layout.slot), h)
        q, k, v = self.qkv(dense).view(cells, n, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        logits = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])  # (cells, heads, n, n)
        logits = logits + self.relation_bias[:, layout.relation].permute(1, 0, 2, 3)
        # padded keys never receive weight; every cell has a real node, so no row is all -inf
        logits = logits.masked_fill(~layout.valid[:, None, None, :], -torch.inf)
        mixed = (torch.softmax(logits, dim=-1) @ v).transpose(1, 2).reshape(cells, n, -1)
        attended = self.out(mixed)[layout.cell, layout.slot]
        return self.norm(h + torch.sigmoid(self.op_gate(op_emb)) * attended)


class FlanLayer(nn.Module):
    """The mean of a flow layer and a cell-attention layer over the same input states."""

    def __init__(self, dim: int, heads: int = 4):
        super().__init__()
        self.flow = FlowLayer(dim)
        self.attention = CellAttention(dim, heads)

    def forward(self, plan, layout: DenseLayout, h: torch.Tensor, op_emb: torch.Tensor) -> torch.Tensor:
        return 0.5 * (self.flow(plan, h) + self.attention(layout, h, op_emb))


class FlanEncoder(nn.Module):
    """FLAN-style layers over op embeddings; the readout is the flow encoder's (mean over
    nodes of all layers' outputs, concatenated), so the comparison isolates the layer."""

    def __init__(self, num_ops: int, dim: int = 64, layers: int = 3, dropout: float = 0.1, heads: int = 4):
        super().__init__()
        self.embed = nn.Embedding(num_ops, dim)
        self.layers = nn.ModuleList(FlanLayer(dim, heads) for _ in range(layers))
        self.dropout = nn.Dropout(dropout)
        self.out_dim = dim * layers

    def forward(self, batch: CellBatch) -> torch.Tensor:
        plan, layout = flow_plan(batch), dense_layout(batch)
        op_emb = self.embed(batch.ops)
        h = op_emb
        outs = []
        for layer in self.layers:
            h = torch.relu(layer(plan, layout, self.dropout(h), op_emb))
            outs.append(h)
        return mean_pool(torch.cat(outs, dim=1), batch)
