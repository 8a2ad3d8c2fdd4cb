"""Unified encodings: one operation vocabulary for NAS-Bench-101 and NAS-Bench-201 cells,
plus a learned space embedding, so one encoder reads cells of both spaces.

A node's id in a unified ``CellBatch`` packs (space, op) as ``space.unified_id * len(VOCAB) + op``;
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

from .graphs import GraphCache, PackedCells

# Tokens are only ever appended: a token's index is its row of the op embedding in every saved predictor.
VOCAB = (
    "input", "output", "conv3x3", "conv1x1", "avgpool3x3", "maxpool3x3", "skip", "none",  # NB-101 and NB-201
    "sepconv3x3", "sepconv5x5", "dilconv3x3", "dilconv5x5",  # DARTS
    "mb3_k3", "mb6_k5", "mb3_k3_s2", "mb6_k5_s2",  # NAS-Bench-Macro's MobileNetV2 blocks, strided ones apart
)

# Rows of the space embedding. Each space declares its row (``space.unified_id``) and its labels' tokens
# (``space.unified_ops``). Rows, like tokens, are only appended; a predictor saved with fewer of either
# loads with the new rows at zero (``SpaceOpEmbedding``), which is what an untrained row would start at.
SPACE_ROWS = 5


def unified_ids(space) -> dict[str, int]:
    """``{space op label: packed node id}`` for every label in ``space.vocab``."""
    mapping, row = space.unified_ops, space.unified_id
    if mapping is None or row is None:
        raise SpaceError(f"space {space.name!r} has no unified vocabulary; use unified=False or declare "
                         f"unified_ops and unified_id in its module")
    if not 0 <= row < SPACE_ROWS:
        raise SpaceError(f"space {space.name!r} has unified_id {row}, but unified predictors have {SPACE_ROWS} space rows")
    missing = [op for op in space.vocab if op not in mapping]
    if missing:
        raise SpaceError(f"space {space.name!r} has node labels {missing} without a token in its unified_ops")
    unknown = sorted({token for token in mapping.values() if token not in VOCAB})
    if unknown:
        raise SpaceError(f"space {space.name!r} maps labels to {unknown}, which are not in the unified vocabulary {VOCAB}")
    offset = row * len(VOCAB)
    return {op: offset + VOCAB.index(token) for op, token in mapping.items()}


def is_unified(arch) -> bool:
    """Whether a unified predictor can read ``arch`` (its space declares a unified vocabulary)."""
    return isinstance(arch, Arch) and arch.search_space.unified_ops is not None


class SpaceOpEmbedding(nn.Module):
    """Embedding of packed (space, op) node ids: op embedding + space embedding (zero-initialised)."""

    def __init__(self, dim: int):
        super().__init__()
        self.op = nn.Embedding(len(VOCAB), dim)
        self.space = nn.Embedding(SPACE_ROWS, dim)
        nn.init.zeros_(self.space.weight)
        self._register_load_state_dict_pre_hook(self._pad_older_state)

    def _pad_older_state(self, state, prefix, *args):
        # a predictor saved before tokens or space rows were appended has fewer rows: its rows keep their
        # indices, and the appended ones start at zero, as a token or space it never saw
        for name, table in (("op.weight", self.op.weight), ("space.weight", self.space.weight)):
            saved = state.get(prefix + name)
            if saved is not None and saved.dim() == 2 and saved.shape[0] < table.shape[0] and saved.shape[1] == table.shape[1]:
                state[prefix + name] = torch.cat([saved, saved.new_zeros(table.shape[0] - saved.shape[0], saved.shape[1])])

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.op(ids % len(VOCAB)) + self.space(torch.div(ids, len(VOCAB), rounding_mode="floor"))


def make_unified(encoder: nn.Module) -> nn.Module:
    """Give ``encoder`` (any of ENCODERS: they all embed op ids with ``self.embed``) the unified embedding."""
    encoder.embed = SpaceOpEmbedding(encoder.embed.embedding_dim)
    return encoder


class UnifiedGraphCache(GraphCache):
    """A :class:`GraphCache` with packed unified node ids; it batches cells of every space that
    declares a unified vocabulary together (a cell's own space gives its graph), so one encoder
    sees them all at once."""

    def __init__(self, space):
        super().__init__(space, unified_ids(space))
        self.vocab = VOCAB
        self._per_space = {space.name: GraphCache(space, self.node_ids)}

    def __len__(self) -> int:
        return sum(len(c) for c in self._per_space.values())

    def _cache_of(self, arch: Arch) -> GraphCache:
        cache = self._per_space.get(arch.space)
        if cache is None:
            space = arch.search_space
            cache = self._per_space[arch.space] = GraphCache(space, unified_ids(space))
        return cache

    def cell_arrays(self, arch: Arch):
        return self._cache_of(arch).cell_arrays(arch)

    def pack(self, archs) -> PackedCells:
        if len({a.space for a in archs}) == 1:
            return self._cache_of(archs[0]).pack(archs)
        return PackedCells.from_entries([self.cell_arrays(a) for a in archs])


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
