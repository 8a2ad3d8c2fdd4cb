"""Plain (non-flow-aware) GNN encoders over the op-on-node DAG, pooled to one vector per cell.

Both read op ids as node features through an embedding table and pass messages both
ways along every edge (see graphs.py); FGP pre-training is what teaches them about flow.
"""
from __future__ import annotations

import dgl.function as fn
import torch
from torch import nn

from .graphs import CellBatch

ENCODERS = ("gin", "gatedgcn", "flow", "flan")


def mean_pool(h: torch.Tensor, batch: CellBatch) -> torch.Tensor:
    total = h.new_zeros(batch.num_graphs, h.shape[1]).index_add_(0, batch.graph_index, h)
    counts = torch.bincount(batch.graph_index, minlength=batch.num_graphs).clamp(min=1)
    return total / counts[:, None].to(h.dtype)


class GINLayer(nn.Module):
    """GIN: MLP((1 + eps) * h_v + sum of neighbours)."""

    def __init__(self, dim: int):
        super().__init__()
        self.eps = nn.Parameter(torch.zeros(1))
        self.mlp = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Linear(dim, dim))

    def forward(self, graph, h):
        with graph.local_scope():
            graph.ndata["h"] = h
            graph.update_all(fn.copy_u("h", "m"), fn.sum("m", "agg"))
            return self.mlp((1 + self.eps) * h + graph.ndata["agg"])


class GIN(nn.Module):
    """GIN layers; the cell embedding is the mean over nodes of all layers' outputs, concatenated."""

    def __init__(self, num_ops: int, dim: int = 64, layers: int = 3, dropout: float = 0.1):
        super().__init__()
        self.embed = nn.Embedding(num_ops, dim)
        self.layers = nn.ModuleList(GINLayer(dim) for _ in range(layers))
        self.dropout = nn.Dropout(dropout)
        self.out_dim = dim * layers

    def forward(self, batch: CellBatch) -> torch.Tensor:
        h = self.embed(batch.ops)
        outs = []
        for layer in self.layers:
            h = self.dropout(torch.relu(layer(batch.graph, h)))
            outs.append(h)
        return mean_pool(torch.cat(outs, dim=1), batch)


class ResGatedLayer(nn.Module):
    """Residual gated graph conv: W1 h_v + sum_u sigmoid(W3 h_v + W4 h_u) * W2 h_u."""

    def __init__(self, dim: int):
        super().__init__()
        self.self_map = nn.Linear(dim, dim)
        self.value = nn.Linear(dim, dim)
        self.gate_dst = nn.Linear(dim, dim)
        self.gate_src = nn.Linear(dim, dim)

    def forward(self, graph, h):
        with graph.local_scope():
            graph.ndata["k"] = self.gate_src(h)
            graph.ndata["q"] = self.gate_dst(h)
            graph.ndata["v"] = self.value(h)
            graph.apply_edges(fn.u_add_v("k", "q", "gate"))
            graph.edata["gate"] = torch.sigmoid(graph.edata["gate"])
            graph.update_all(fn.u_mul_e("v", "gate", "m"), fn.sum("m", "agg"))
            return self.self_map(h) + graph.ndata["agg"]


class GatedGCN(nn.Module):
    """Residual gated graph convs with a skip to the input embedding; mean-pooled."""

    def __init__(self, num_ops: int, dim: int = 64, layers: int = 3, dropout: float = 0.1, skip: float = 0.2):
        super().__init__()
        self.embed = nn.Embedding(num_ops, dim)
        self.layers = nn.ModuleList(ResGatedLayer(dim) for _ in range(layers))
        self.dropout = nn.Dropout(dropout)
        self.skip = skip
        self.out_dim = dim

    def forward(self, batch: CellBatch) -> torch.Tensor:
        h0 = self.embed(batch.ops)
        h = h0
        for layer in self.layers:
            # a fixed share of the op embedding in every layer keeps deep stacks from smoothing ops away
            h = self.dropout(torch.relu(self.skip * h0 + (1 - self.skip) * layer(batch.graph, h)))
        return mean_pool(h, batch)


def make_encoder(name: str, num_ops: int, dim: int, layers: int, dropout: float) -> nn.Module:
    if name == "gin":
        return GIN(num_ops, dim, layers, dropout)
    if name == "gatedgcn":
        return GatedGCN(num_ops, dim, layers, dropout)
    if name == "flow":  # imported here: flow_encoder imports mean_pool from this module
        from .flow_encoder import FlowEncoder

        return FlowEncoder(num_ops, dim, layers, dropout)
    if name == "flan":
        from .flan_encoder import FlanEncoder

        return FlanEncoder(num_ops, dim, layers, dropout)
    raise ValueError(f"unknown encoder {name!r}; choose one of {', '.join(ENCODERS)}")


def mlp_head(in_dim: int, hidden: int, out_dim: int) -> nn.Module:
    return nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, out_dim))
