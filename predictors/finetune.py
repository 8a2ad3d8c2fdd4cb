"""Fine-tuning a score model on labeled cells, as plain functions outside the model (the shape of
DGL's GIN example: ``train()`` and ``evaluate()`` next to the module, not in it)."""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch

from .fgp import pairwise_hinge
from .graphs import GraphCache
from .model import ScoreModel


@dataclass(frozen=True)
class Labeled:
    """Cells, their labels and (with ``features``) their graph-level inputs."""

    archs: list
    values: np.ndarray
    extra: Optional[torch.Tensor] = None


def evaluate(model: ScoreModel, batch, extra: Optional[torch.Tensor], values: np.ndarray) -> float:
    """Kendall tau of the model's scores on a batch against its labels; -1 where it is undefined."""
    from nasflow.metrics import kendall_tau

    model.eval()
    with torch.no_grad():
        tau = kendall_tau(model(batch, extra).numpy(), values)
    return -1.0 if np.isnan(tau) else tau


def fine_tune(model: ScoreModel, graphs: GraphCache, train: Labeled, val: Optional[Labeled], *, epochs: int, lr: float,
              weight_decay: float, batch_size: int, margin: float, rng: np.random.Generator,
              progress: bool = False) -> list[float]:  # fmt: skip
    """Train ``model`` in place with the pairwise hinge loss; returns the validation tau of every epoch.

    With ``val``, the state with the best validation Kendall tau is kept (the first of equals);
    without it, the last. The caller seeds torch's global generator (dropout).
    """
    from tqdm.auto import tqdm

    n = len(train.archs)
    targets = torch.as_tensor(train.values, dtype=torch.float32)
    # one batch built once when every cell fits in it: graph batching costs more than a small model's step
    full_batch = graphs.batch(train.archs) if n <= batch_size else None
    val_batch = graphs.batch(val.archs) if val is not None else None
    optimiser = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    best_tau, best_state, history = -np.inf, None, []
    for _ in tqdm(range(epochs), desc="fine-tuning", unit="epoch", disable=not progress):
        model.train()
        order = rng.permutation(n)
        for start in range(0, n, batch_size):
            idx = order[start : start + batch_size]
            if full_batch is not None:
                batch, target, extra = full_batch, targets, train.extra
            else:
                batch, target = graphs.batch([train.archs[i] for i in idx]), targets[idx]
                extra = None if train.extra is None else train.extra[idx]
            loss = pairwise_hinge(model(batch, extra), target, margin)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
        if val is not None:
            history.append(evaluate(model, val_batch, val.extra, val.values))
            if history[-1] > best_tau:
                best_tau, best_state = history[-1], copy.deepcopy(model.state_dict())
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    return history
