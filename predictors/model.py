"""The score model: a cell encoder, optionally joined by graph-level features, into a score head."""
from __future__ import annotations

from typing import Optional

import numpy as np
import torch
from torch import nn

from nasflow.errors import DataError

from .encoders import make_encoder, mlp_head
from .unified import make_unified


def new_encoder(name: str, num_ops: int, dim: int, layers: int, dropout: float, unified: bool) -> nn.Module:
    """A freshly initialised encoder (draws from torch's global generator)."""
    encoder = make_encoder(name, num_ops, dim, layers, dropout)
    return make_unified(encoder) if unified else encoder


class ScoreModel(nn.Module):
    """Encoder embedding, optionally joined by ``extra`` graph-level features, into a score head.

    The extra features are standardised with the training cells' mean and std, kept as
    buffers so a saved model standardises new cells the same way.
    """

    def __init__(self, encoder: nn.Module, hidden: int, extra: int = 0):
        super().__init__()
        self.encoder = encoder
        self.head = mlp_head(encoder.out_dim + extra, hidden, 1)
        if extra:  # only then: checkpoints saved without features keep loading strictly
            self.register_buffer("extra_mean", torch.zeros(extra))
            self.register_buffer("extra_std", torch.ones(extra))

    def set_standardisation(self, features: torch.Tensor) -> None:
        self.extra_mean.copy_(features.mean(0))
        # a constant column carries no ranking information: leave it at zero, not NaN
        self.extra_std.copy_(features.std(0).nan_to_num(1.0).clamp(min=1e-6))

    def forward(self, batch, extra: Optional[torch.Tensor] = None):
        h = self.encoder(batch)
        if extra is not None:
            h = torch.cat([h, (extra - self.extra_mean) / self.extra_std], dim=1)
        return self.head(h).squeeze(1)


def zcp_inputs(space, archs, proxies, progress: bool = False) -> torch.Tensor:
    """The ``features=["zcp"]`` input of ``archs``: their vector of zero-cost proxy scores."""
    from nasflow.proxies import zcp_features

    values = zcp_features(space, archs, proxies, progress=progress)
    if not np.isfinite(values).all():
        raise DataError("a zero-cost proxy gave NaN or infinite scores; drop it from zcp_proxies")
    return torch.as_tensor(values, dtype=torch.float32)
