"""Flow surrogate: a cheap, fixed-random picture of how information flows through a cell.

FGP (Kim, Hwang & Shin, NeurIPS 2025) pre-trains an encoder to reconstruct this vector.
A fixed random vector ``r`` enters at the input node and is propagated *forward* along
the DAG in topological order, each node transforming the sum of its predecessors'
states according to its operation; then the states flow *backward* along the reversed
edges, the way gradients do in back-propagation. Nothing is learned: all randomness is
drawn once from ``seed``, so the surrogate is a deterministic function of the cell.

Two node updates are offered:

- ``"mix"`` (the authors' form): ``h_v = a*m_v + (1-a)*relu([P[op_v], m_v] @ W)`` with
  ``m_v`` the summed message, ``P`` a random operation embedding and ``W`` a random
  matrix (both N(0, std)); the backward pass applies the same update on reversed edges.
- ``"operator"``: each operation is a random linear map (identity for the input, output
  and skip-like ops, zero for ``none``), ``h_v = tanh(M[op_v] @ m_v)`` forward and
  ``g_v = tanh(M[op_v]^T @ m_v)`` backward, so a ``none`` edge really cuts the flow in
  both directions and a skip really passes it on unchanged.

``"both"`` concatenates the two (each with the given readout), so pre-training must
reconstruct both pictures of the flow.

Readout ``"input"`` returns the backward state at the input node (what the authors use);
``"sum"`` returns ``[sum_v h_v, sum_v g_v]`` over real nodes (sum pooling, twice as wide);
``"ends"`` returns ``[h_output, g_input]``, what reaches the output going forward and the
input going backward (twice as wide). Pre-training on the operator variant read at the
input ranked NB-201 cells better than the sum readout (docs/RESULTS.md, issue 4).
Every cell of a batch is processed at once: the loops run over node positions only.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from .core import CellGraph, graph_arrays

VARIANTS = ("operator", "mix", "both")
READOUTS = ("sum", "input", "ends")
# Operations that pass their input on unchanged / cut it, by the names the spaces use.
IDENTITY_OPS = frozenset({"input", "output", "skip_connect", "identity", "skip"})
ZERO_OPS = frozenset({"none", "zero"})


def flow_surrogate(space, archs: Sequence, **options) -> np.ndarray:
    """Flow surrogates of ``archs`` in ``space`` as a ``(len(archs), width)`` float32 array.

    ``options`` are those of :func:`flow_surrogate_graphs` (dim, variant, readout, seed,
    alpha, std). ``width`` is ``dim`` for ``readout="input"`` and ``2*dim`` for "sum".
    """
    return flow_surrogate_graphs([space.to_graph(a) for a in archs], space.vocab, **options)


def flow_surrogate_graphs(
    graphs: Sequence[CellGraph],
    vocab: Sequence[str],
    dim: int = 32,
    variant: str = "operator",
    readout: str = "sum",
    seed: int = 0,
    alpha: float = 0.5,
    std: float = 0.1,
) -> np.ndarray:
    """Flow surrogates of ready-made graphs whose node labels are in ``vocab``.

    ``dim``: state width; ``variant``: "operator" or "mix"; ``readout``: "sum" or
    "input"; ``seed``: draws every random vector and matrix; ``alpha``, ``std``: the mix
    variant's residual share and init scale.
    """
    if variant not in VARIANTS:
        raise ValueError(f"unknown flow variant {variant!r}; choose one of {', '.join(VARIANTS)}")
    if readout not in READOUTS:
        raise ValueError(f"unknown flow readout {readout!r}; choose one of {', '.join(READOUTS)}")
    if dim < 1:
        raise ValueError(f"flow dimension must be positive, got {dim}")
    if variant == "both":
        parts = [flow_surrogate_graphs(graphs, vocab, dim, v, readout, seed, alpha, std) for v in ("operator", "mix")]
        return np.concatenate(parts, axis=1)
    width = dim if readout == "input" else 2 * dim
    if len(graphs) == 0:
        return np.zeros((0, width), dtype=np.float32)
    op_ids, adj, mask = graph_arrays(graphs, vocab)
    adj = adj.astype(np.float64)
    rng = np.random.default_rng(seed)
    r = rng.uniform(0.0, 1.0, size=dim)
    if variant == "mix":
        update_fwd = update_bwd = _mix_update(rng, op_ids, len(vocab), dim, alpha, std)
    else:
        update_fwd, update_bwd = _operator_updates(rng, op_ids, vocab, dim)

    b, n = op_ids.shape
    fwd = np.zeros((b, n, dim))
    fwd[:, 0] = r
    for v in range(1, n):
        incoming = adj[:, :, v]
        message = np.einsum("bu,buk->bk", incoming, fwd)
        has_pred = incoming.sum(1, keepdims=True) > 0
        fwd[:, v] = np.where(has_pred, update_fwd(v, message), 0.0)

    # Backward starts from the forward states: the output keeps its forward state (it has
    # no successors), every other node is overwritten by what flows back into it.
    bwd = fwd.copy()
    for v in range(n - 2, -1, -1):
        outgoing = adj[:, v, :]
        message = np.einsum("bw,bwk->bk", outgoing, bwd)
        has_succ = outgoing.sum(1, keepdims=True) > 0
        bwd[:, v] = np.where(has_succ, update_bwd(v, message), bwd[:, v])

    if readout == "input":
        out = bwd[:, 0]
    elif readout == "ends":
        output_node = mask.sum(1) - 1  # the output is the last real node of every graph
        out = np.concatenate([fwd[np.arange(b), output_node], bwd[:, 0]], axis=1)
    else:
        m = mask[:, :, None]
        out = np.concatenate([(fwd * m).sum(1), (bwd * m).sum(1)], axis=1)
    return out.astype(np.float32)


def _mix_update(rng, op_ids, n_ops, dim, alpha, std):
    op_embedding = rng.normal(0.0, std, size=(n_ops, dim))
    weight = rng.normal(0.0, std, size=(2 * dim, dim))
    # padding nodes (op id -1) never receive messages, so their embedding is irrelevant
    node_embedding = op_embedding[np.maximum(op_ids, 0)]

    def update(v, message):
        mixed = np.concatenate([node_embedding[:, v], message], axis=1) @ weight
        return alpha * message + (1 - alpha) * np.maximum(mixed, 0.0)

    return update


def _operator_updates(rng, op_ids, vocab, dim):
    # Scaled so a random map roughly preserves the norm of what it transforms.
    maps = rng.normal(0.0, 1.0 / np.sqrt(dim), size=(len(vocab), dim, dim))
    for i, op in enumerate(vocab):
        if op in IDENTITY_OPS:
            maps[i] = np.eye(dim)
        elif op in ZERO_OPS:
            maps[i] = 0.0
    node_op = np.maximum(op_ids, 0)
    rows = np.arange(op_ids.shape[0])
    n_ops = len(vocab)
    # Every operation's map side by side, so one matmul applies all of them to a message;
    # then each cell keeps its node's. Column o*dim+i of fwd_all holds row i of map o.
    fwd_all = maps.transpose(2, 0, 1).reshape(dim, n_ops * dim)
    bwd_all = maps.transpose(1, 0, 2).reshape(dim, n_ops * dim)

    def forward(v, message):
        return np.tanh((message @ fwd_all).reshape(-1, n_ops, dim)[rows, node_op[:, v]])

    def backward(v, message):
        return np.tanh((message @ bwd_all).reshape(-1, n_ops, dim)[rows, node_op[:, v]])

    return forward, backward
