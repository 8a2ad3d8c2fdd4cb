"""A flow-aware encoder: asynchronous message passing along each cell's DAG.

The mechanism of FlowerFormer's flow encoder (Hwang et al., CVPR 2024), written for this
project: in every layer, nodes are updated in topological order, a node only after all
its predecessors and from their *already updated* states (the forward pass of the
network), then in reverse topological order along reversed edges, from the already
updated states of its successors (back-propagation). One layer therefore carries
information from the input node to the output node however long the path, which a
1-hop GNN layer cannot.

Batching: ``CellBatch`` graphs hold every DAG edge in both directions and cells number
their nodes topologically (``CellGraph``), so the DAG is the half with ``src < dst``.
All nodes of one topological level, across all cells of the batch, are updated at once
with one attention-weighted gather/scatter and one GRU step; the per-level node and edge
index lists are computed once per batch and kept on it, so a batch reused every epoch
does not recompute them. The Python loop runs over levels (at most 7 in NB-101, 5 in
NB-201), never over cells.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .encoders import mean_pool
from .graphs import CellBatch

_PLAN_ATTR = "_flow_plan"


@dataclass
class FlowPlan:
    """Which nodes and DAG edges each update step of a flow layer touches."""

    num_nodes: int
    roots: torch.Tensor  # nodes with no predecessor (forward pass starts there)
    sinks: torch.Tensor  # nodes with no successor (backward pass starts there)
    # forward: (nodes at level k, edges into them) for k = 1, 2, ...
    forward: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]
    # backward: (nodes at reverse level k, their successors, the nodes again per edge)
    backward: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]


def longest_path_levels(src: torch.Tensor, dst: torch.Tensor, num_nodes: int) -> torch.Tensor:
    """Level of every node: the length of the longest path reaching it from a root.

    A node's level exceeds all its predecessors' levels, so updating level by level
    follows the topological order. Relaxation over all edges of all cells at once; it
    settles after (longest path + 1) rounds.
    """
    level = torch.zeros(num_nodes, dtype=torch.long)
    for _ in range(num_nodes):
        proposed = level.scatter_reduce(0, dst, level[src] + 1, reduce="amax", include_self=True)
        if torch.equal(proposed, level):
            return level
        level = proposed
    raise ValueError("the cell graphs contain a cycle; flow encoding needs DAGs")


def _steps(level: torch.Tensor, node_of_edge: torch.Tensor, other_end: torch.Tensor):
    """(nodes, message sources, message targets) per level >= 1, in level order."""
    steps = []
    for k in range(1, int(level.max()) + 1 if level.numel() else 1):
        nodes = torch.nonzero(level == k).squeeze(1)
        edges = torch.nonzero(level[node_of_edge] == k).squeeze(1)
        steps.append((nodes, other_end[edges], node_of_edge[edges]))
    return steps


def flow_plan(batch: CellBatch) -> FlowPlan:
    """The level schedule of ``batch`` (computed once, then kept on the batch)."""
    plan = getattr(batch, _PLAN_ATTR, None)
    if plan is not None:
        return plan
    src, dst = batch.graph.edges()
    dag = src < dst
    src, dst = src[dag].long(), dst[dag].long()
    n = batch.graph.num_nodes()
    has_pred = torch.zeros(n, dtype=torch.bool)
    has_pred[dst] = True
    has_succ = torch.zeros(n, dtype=torch.bool)
    has_succ[src] = True
    forward_level = longest_path_levels(src, dst, n)
    backward_level = longest_path_levels(dst, src, n)
    plan = FlowPlan(
        num_nodes=n,
        roots=torch.nonzero(~has_pred).squeeze(1),
        sinks=torch.nonzero(~has_succ).squeeze(1),
        forward=_steps(forward_level, dst, src),
        backward=_steps(backward_level, src, dst),
    )
    setattr(batch, _PLAN_ATTR, plan)
    return plan


class FlowDirection(nn.Module):
    """One sweep (forward or backward) of asynchronous, attention-weighted updates.

    A node's message is the softmax-weighted sum of its predecessors' updated states
    (weights from the node's own input state and each predecessor's updated state); a
    GRU cell then mixes the node's input state with that message. Roots get the GRU of
    their input state alone.
    """

    def __init__(self, dim: int):
        super().__init__()
        # No bias: the scores feed a softmax over each node's predecessors, which ignores a shift
        # common to all of them, so a bias could never learn (its true gradient is zero).
        self.score = nn.Linear(2 * dim, 1, bias=False)
        # nn.Linear drew one number for the bias it had: draw it still, so a seed initialises
        # every later parameter as before and seeded predictors keep their numbers.
        torch.empty(1).uniform_()
        self.combine = nn.GRUCell(dim, dim)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # Files saved before the bias was removed hold it; it never changed an output (see __init__).
        state_dict.pop(prefix + "score.bias", None)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def forward(self, h_in: torch.Tensor, starts: torch.Tensor, steps) -> torch.Tensor:
        # Out-of-place index_put keeps autograd correct while each level reads the
        # states written by the levels before it.
        h = torch.zeros_like(h_in).index_put((starts,), self.combine(h_in[starts]))
        for nodes, senders, receivers in steps:
            if nodes.numel() == 0:
                continue
            sent = h[senders]
            logits = self.score(torch.cat([h_in[receivers], sent], dim=1)).squeeze(1)
            weights = _segment_softmax(logits, receivers, h.shape[0])
            message = torch.zeros_like(h).index_add_(0, receivers, weights[:, None] * sent)
            h = h.index_put((nodes,), self.combine(h_in[nodes], message[nodes]))
        return h


def _segment_softmax(logits: torch.Tensor, groups: torch.Tensor, num_groups: int) -> torch.Tensor:
    top = logits.new_full((num_groups,), -torch.inf).scatter_reduce(0, groups, logits, reduce="amax")
    e = torch.exp(logits - top[groups])
    return e / logits.new_zeros(num_groups).index_add_(0, groups, e)[groups]


class FlowLayer(nn.Module):
    """Forward sweep, then a backward sweep over the forward sweep's states."""

    def __init__(self, dim: int):
        super().__init__()
        self.forward_sweep = FlowDirection(dim)
        self.backward_sweep = FlowDirection(dim)

    def forward(self, plan: FlowPlan, h: torch.Tensor) -> torch.Tensor:
        h = self.forward_sweep(h, plan.roots, plan.forward)
        return self.backward_sweep(h, plan.sinks, plan.backward)


class FlowEncoder(nn.Module):
    """Flow layers over op embeddings; the cell embedding is the mean over nodes of all
    layers' outputs, concatenated (the same readout as GIN, so only the message passing
    differs between the two)."""

    def __init__(self, num_ops: int, dim: int = 64, layers: int = 3, dropout: float = 0.1):
        super().__init__()
        self.embed = nn.Embedding(num_ops, dim)
        self.layers = nn.ModuleList(FlowLayer(dim) for _ in range(layers))
        self.dropout = nn.Dropout(dropout)
        self.out_dim = dim * layers

    def forward(self, batch: CellBatch) -> torch.Tensor:
        plan = flow_plan(batch)
        h = self.embed(batch.ops)
        outs = []
        for layer in self.layers:
            h = torch.relu(layer(plan, self.dropout(h)))
            outs.append(h)
        return mean_pool(torch.cat(outs, dim=1), batch)
