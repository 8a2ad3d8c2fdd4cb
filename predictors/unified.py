"""Unified encodings: one operation vocabulary for NAS-Bench-101 and NAS-Bench-201 cells,
plus a learned space embedding, so one encoder reads cells of both spaces.

A node's id in a unified ``CellBatch`` packs (space, op) as ``space_id * len(VOCAB) + op``;
:class:`SpaceOpEmbedding` unpacks it into op embedding + space embedding. The encoders
stay unchanged: they call ``self.embed(batch.ops)`` as always.

The space embedding is added to every node, not to the pooled graph vector: within one
space a graph-level offset is the same constant for every cell, so it could hardly change
how the score head ranks that space's cells. At the nodes, message passing can let the
same token behave differently per space (an NB-101 conv vertex is conv-BN-ReLU with a
channel projection and its output concatenates; an NB-201 conv edge is ReLU-conv-BN and
its node sums). It starts at zero: a space the predictor was never trained on then goes
through the encoder exactly as its shared op tokens say (zero-shot transfer).
"""
from __future__ import annotations

import torch
from torch import nn

from nasflow.core import Arch
from nasflow.errors import NasflowError, SpaceError

from .graphs import GraphCache

VOCAB = ("input", "output", "conv3x3", "conv1x1", "avgpool3x3", "maxpool3x3", "skip", "none")

# Index of each space's embedding row; append new spaces, never reorder (saved weights use it).
SPACE_IDS = {"nb101": 0, "nb201": 1}

SPACE_OPS = {
    "nb101": {
        "input": "input",
        "output": "output",
        # conv-BN-ReLU and NB-201's ReLU-conv-BN are the same 3x3 / 1x1 convolution with the same
        # normalisation; the order of ReLU only shifts where the nonlinearity sits in the chain.
        "conv3x3-bn-relu": "conv3x3",
        "conv1x1-bn-relu": "conv1x1",
        # max and average pooling keep a token each: they are different functions (max passes the
        # strongest activation on, average smooths), and a shared token would claim they act alike.
        "maxpool3x3": "maxpool3x3",
    },
    "nb201": {
        "input": "input",
        "output": "output",
        "nor_conv_3x3": "conv3x3",
        "nor_conv_1x1": "conv1x1",
        "avg_pool_3x3": "avgpool3x3",
        # identity on an edge; NB-101 expresses the same thing as an input->output edge, which has
        # no node of its own, so "skip" is only ever seen in NB-201 cells
        "skip_connect": "skip",
        # a zeroed edge: the node is kept (the cell graph has a fixed shape) and the token says it
        # carries nothing; NB-101 removes such vertices instead
        "none": "none",
    },
}


def unified_ids(space) -> dict[str, int]:
    """``{space op label: packed node id}`` for every label in ``space.vocab``."""
    name = getattr(space, "name", space)
    if name not in SPACE_OPS:
        raise SpaceError(f"space {name!r} has no unified vocabulary; use unified=False or add it to predictors/unified.py")
    mapping = SPACE_OPS[name]
    missing = [op for op in getattr(space, "vocab", mapping) if op not in mapping]
    if missing:
        raise SpaceError(f"space {name!r} has node labels {missing} without a unified token in predictors/unified.py")
    offset = SPACE_IDS[name] * len(VOCAB)
    return {op: offset + VOCAB.index(token) for op, token in mapping.items()}


class SpaceOpEmbedding(nn.Module):
    """Embedding of packed (space, op) node ids: op embedding + space embedding (zero-initialised)."""

    def __init__(self, dim: int):
        super().__init__()
        self.op = nn.Embedding(len(VOCAB), dim)
        self.space = nn.Embedding(len(SPACE_IDS), dim)
        nn.init.zeros_(self.space.weight)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.op(ids % len(VOCAB)) + self.space(torch.div(ids, len(VOCAB), rounding_mode="floor"))


def make_unified(encoder: nn.Module) -> nn.Module:
    """Give ``encoder`` (any of ENCODERS: they all embed op ids with ``self.embed``) the unified embedding."""
    encoder.embed = SpaceOpEmbedding(encoder.embed.embedding_dim)
    return encoder


class UnifiedGraphCache(GraphCache):
    """A :class:`GraphCache` with packed unified node ids; it batches cells of every space in
    SPACE_OPS together (a cell's own space gives its graph), so one encoder sees both at once."""

    def __init__(self, space):
        super().__init__(space)
        self.vocab = VOCAB
        self._per_space: dict[str, GraphCache] = {}
        self._add_space(space)

    def _add_space(self, space) -> GraphCache:
        cache = GraphCache(space)
        cache._index = unified_ids(space)  # same graph arrays, packed unified ids as node labels
        self._per_space[space.name] = cache
        return cache

    def __len__(self) -> int:
        return sum(len(c) for c in self._per_space.values())

    def _cell(self, arch: Arch):
        cache = self._per_space.get(arch.space)
        if cache is None:
            from nasflow.spaces import get_space

            cache = self._add_space(get_space(arch.space))
        return cache._cell(arch)


def check_init_from(source, target) -> None:
    """Raise a one-line NasflowError unless ``target`` can start from ``source``'s fitted weights."""
    if not getattr(source, "is_fitted", False):
        raise NasflowError("init_from must be a fitted Predictor; fit it on the source labels first")
    for what in ("encoder", "dim", "layers"):
        if getattr(source, what) != getattr(target, what):
            raise NasflowError(f"init_from has {what}={getattr(source, what)!r} but this predictor "
                               f"{getattr(target, what)!r}; transfer needs the same encoder, dim and layers")  # fmt: skip
    def extra(p):
        return p.features, p.zcp_proxies if p.features else ()

    if extra(source) != extra(target):
        raise NasflowError("init_from was fitted with other graph-level features (features/zcp_proxies); use the same ones")
    if source.space.name != target.space.name and not (source.unified and target.unified):
        raise NasflowError(f"transfer from {source.space.name} to {target.space.name} needs unified=True on both predictors")
    if source.unified != target.unified:
        raise NasflowError("init_from and this predictor must both be unified=True or both unified=False")
