"""FGP pre-training and pairwise-ranking fine-tuning of an encoder.

Pre-training (no labels): the encoder's cell embedding feeds a projection head that must
reconstruct the cell's flow surrogate (MSE, weight ``flow_weight``) and a proxy head that
must rank cells by a zero-cost proxy (pairwise hinge, weight ``proxy_weight``).
Fine-tuning: a score head on the encoder, trained with the pairwise hinge loss on labels.

The flow target is standardised per column and the error averaged over its columns by
default; ``flow_target="raw"`` with ``flow_loss="sum"`` is the authors' form (squared error
summed over the raw surrogate's columns). Their NB-201 surrogate varies little between cells
(total variance ~0.001 against a squared norm ~0.8), so in their form the reconstruction
term is small next to the proxy term, while standardising blows its near-constant columns
up to unit variance.
"""
from __future__ import annotations

from typing import Callable, Optional, Sequence

import numpy as np
import torch
from torch import nn

from .encoders import mlp_head
from .graphs import GraphCache


def pairwise_hinge(scores: torch.Tensor, targets: torch.Tensor, margin: float) -> torch.Tensor:
    """Mean of relu(margin - (s_i - s_j)) over all pairs with target_i > target_j.

    This is the TA-GATES / FlowerFormer ranking loss; only the order of targets matters.
    """
    better = targets[:, None] > targets[None, :]
    if not bool(better.any()):
        return scores.sum() * 0.0
    diff = scores[:, None] - scores[None, :]
    return torch.relu(margin - diff[better]).mean()


FLOW_TARGETS = ("standardised", "raw")
FLOW_LOSSES = ("mean", "sum")


def standardise(x: np.ndarray) -> np.ndarray:
    """Zero mean, unit variance per column; constant columns become 0."""
    std = x.std(0)
    return (x - x.mean(0)) / np.where(std > 0, std, 1.0)


class PretrainHeads(nn.Module):
    def __init__(self, in_dim: int, hidden: int, flow_dim: int):
        super().__init__()
        self.flow = mlp_head(in_dim, hidden, flow_dim)
        self.proxy = mlp_head(in_dim, hidden, 1)


class PretextTask:
    """FGP's pretext loss on unlabeled cells: flow reconstruction plus proxy ranking.

    Holds the (optionally standardised) flow targets and proxy values of ``archs``, so
    pre-training and fine-tuning (which can keep the pretext task as a regulariser) share
    one definition of the loss.
    """

    def __init__(
        self,
        archs: Sequence,
        flow_targets: np.ndarray,
        proxy_values: Optional[np.ndarray],
        *,
        flow_weight: float,
        proxy_weight: float,
        margin: float,
        flow_target: str = "standardised",
        flow_loss: str = "mean",
    ):
        if flow_target not in FLOW_TARGETS or flow_loss not in FLOW_LOSSES:
            raise ValueError(f"flow_target must be one of {FLOW_TARGETS} and flow_loss one of {FLOW_LOSSES}")
        self.archs = list(archs)
        target = standardise(flow_targets) if flow_target == "standardised" else flow_targets
        self.flows = torch.as_tensor(target, dtype=torch.float32)
        self.flow_dim = flow_targets.shape[1]
        # "sum": squared error summed over the surrogate's columns, then averaged over cells
        self.reduce_columns = self.flow_dim if flow_loss == "sum" else 1
        self.use_proxy = proxy_values is not None and proxy_weight > 0
        self.proxies = torch.as_tensor(proxy_values, dtype=torch.float32) if self.use_proxy else None
        self.flow_weight, self.proxy_weight, self.margin = flow_weight, proxy_weight, margin

    def __len__(self) -> int:
        return len(self.archs)

    def loss(self, encoder: nn.Module, heads: PretrainHeads, graphs: GraphCache, idx: np.ndarray) -> torch.Tensor:
        """The weighted pretext loss of the cells at positions ``idx``."""
        emb = encoder(graphs.batch([self.archs[i] for i in idx]))
        loss = self.flow_weight * self.reduce_columns * ((heads.flow(emb) - self.flows[idx]) ** 2).mean()
        if self.use_proxy:
            loss = loss + self.proxy_weight * pairwise_hinge(heads.proxy(emb).squeeze(1), self.proxies[idx], self.margin)
        return loss


def fgp_pretrain(
    encoder: nn.Module,
    graphs: GraphCache,
    archs: Sequence,
    flow_targets: np.ndarray,
    proxy_values: Optional[np.ndarray],
    *,
    epochs: int,
    lr: float,
    batch_size: int,
    flow_weight: float,
    proxy_weight: float,
    margin: float,
    hidden: int,
    rng: np.random.Generator,
    flow_target: str = "standardised",
    flow_loss: str = "mean",
    progress: bool = False,
    on_epoch: Optional[Callable[[int, float], None]] = None,
) -> tuple[list[float], PretrainHeads]:
    """Pre-train ``encoder`` in place; returns the mean loss of every epoch and the heads.

    Torch's global RNG must already be seeded by the caller (head init, dropout).
    """
    from tqdm.auto import tqdm

    task = PretextTask(archs, flow_targets, proxy_values, flow_weight=flow_weight, proxy_weight=proxy_weight,
                       margin=margin, flow_target=flow_target, flow_loss=flow_loss)  # fmt: skip
    heads = PretrainHeads(encoder.out_dim, hidden, task.flow_dim)
    params = list(encoder.parameters()) + list(heads.parameters())
    optimiser = torch.optim.AdamW(params, lr=lr, weight_decay=1e-6)
    n = len(task)
    losses = []
    encoder.train()
    heads.train()
    bar = tqdm(range(epochs), desc="FGP pre-training", unit="epoch", disable=not progress)
    for epoch in bar:
        order = rng.permutation(n)
        total = 0.0
        for start in range(0, n, batch_size):
            idx = order[start : start + batch_size]
            loss = task.loss(encoder, heads, graphs, idx)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            total += float(loss) * len(idx)
        losses.append(total / n)
        bar.set_postfix(loss=f"{losses[-1]:.4f}")
        if on_epoch is not None:
            on_epoch(epoch, losses[-1])
    encoder.eval()
    heads.eval()
    return losses, heads
