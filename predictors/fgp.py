"""FGP pre-training of an encoder on unlabeled cells, and its on-disk cache.

The encoder's cell embedding feeds a projection head that must reconstruct the cell's flow
surrogate (MSE on the per-column standardised surrogate, weight ``flow_weight``) and a proxy
head that must rank cells by a zero-cost proxy (pairwise hinge, weight ``proxy_weight``).
The authors' form (squared error summed over the raw surrogate's columns) ranked worse and
was removed (docs/RESULTS.md, "Closing the FGP gap").

:class:`FGPConfig` is everything that decides a pre-training; its fields are the cache key.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import warnings
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import torch
from torch import nn

from nasflow import cache as nasflow_cache
from nasflow.devices import torch_threads
from nasflow.errors import CheckpointError, DataError, NasflowWarning

from . import checkpoint
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


# Spaces larger than this are pre-trained on a seeded sample instead of every cell.
ENUMERATE_LIMIT = 50_000


def standardise(x: np.ndarray) -> np.ndarray:
    """Zero mean, unit variance per column; constant columns become 0."""
    std = x.std(0)
    return (x - x.mean(0)) / np.where(std > 0, std, 1.0)


@dataclasses.dataclass(frozen=True)
class FGPConfig:
    """What decides an FGP pre-training, and nothing else: its fields are the cache key.

    ``cells`` names the pre-training cells ("all", "indices-N", "sample-N" or a digest of the given
    cells). ``flow_variant`` and ``flow_dim`` are no longer options (other values ranked
    worse, docs/RESULTS.md) but stay fields so that changing them changes the key.
    """

    space: str
    vocab: tuple
    cells: str
    encoder: str
    dim: int
    layers: int
    dropout: float
    unified: bool
    seed: int
    flow_readout: str
    flow_seed: int
    proxy: Optional[str]
    proxy_version: str
    flow_weight: float
    proxy_weight: float
    margin: float
    pretrain_epochs: int
    pretrain_lr: float
    pretrain_batch: int
    flow_variant: str = "operator"
    flow_dim: int = 32

    @classmethod
    def of(cls, options: dict, space: str, vocab, cells: str) -> "FGPConfig":
        """The pre-training that checked Predictor ``options`` ask for (a callable proxy keys as None)."""
        named = options["proxy"] if isinstance(options["proxy"], str) else None
        same = {f.name for f in dataclasses.fields(cls)} & set(options) - {"proxy"}
        return cls(space=space, vocab=tuple(vocab), cells=cells, proxy=named, proxy_version=proxy_version(named),
                   **{name: options[name] for name in same})  # fmt: skip

    def key(self) -> dict:
        """The fields as the JSON document stored next to the weights (tuples as lists)."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    def cache_path(self) -> Path:
        digest = hashlib.sha1(json.dumps(self.key(), sort_keys=True).encode()).hexdigest()[:16]
        return nasflow_cache.entry("fgp", f"{self.space}-{self.encoder}-{digest}", checkpoint.CACHE_VERSION, ".safetensors")

    def flows(self, space, archs) -> np.ndarray:
        """The flow surrogate of ``archs``: the reconstruction target."""
        from nasflow.flow import flow_surrogate

        return flow_surrogate(space, archs, dim=self.flow_dim, variant=self.flow_variant, readout=self.flow_readout,
                              seed=self.flow_seed)  # fmt: skip


def proxy_version(proxy) -> str:
    """The version of a named proxy (of each part of a vote): a changed proxy must not reuse an old pre-training."""
    if not isinstance(proxy, str):
        return ""
    from nasflow.proxies import PROXIES

    return "+".join(PROXIES[p].version for p in proxy.split("+"))


def default_cells(space, seed: int, samples: int) -> tuple[list, str]:
    """The pre-training cells of ``space`` and their cache tag.

    The whole space when it is small enough (NB-201: "all"); else ``samples`` distinct cells:
    a seeded choice of indices where the space lists its cells by index (NB-101's 423,624:
    "indices-N", no rejection, exactly N cells), otherwise distinct seeded samples ("sample-N").
    """
    if space.enumerable and space.size <= ENUMERATE_LIMIT:
        return list(space.enumerate()), "all"
    rng = np.random.default_rng(seed)
    if space.arch_at is not None and space.size is not None:
        chosen = rng.choice(space.size, size=min(samples, space.size), replace=False)
        return [space.arch_at(int(i)) for i in chosen], f"indices-{len(chosen)}"
    seen: dict = {}
    # Sampling with rejection of repeats; the space is much larger than the sample.
    for _ in range(20 * samples):
        if len(seen) >= samples:
            break
        seen[space.sample(rng)] = None
    return list(seen), f"sample-{samples}"


def cells_tag(archs) -> str:
    """The cache tag of caller-given pre-training cells: their set, whatever the order."""
    return hashlib.sha1("\n".join(sorted(a.key for a in archs)).encode()).hexdigest()


def proxy_values(space, archs, proxy, weight: float, progress: bool = False) -> Optional[np.ndarray]:
    """The proxy ranking target of ``archs`` (None without a proxy or its weight)."""
    if proxy is None or weight <= 0:
        return None
    if callable(proxy):
        values = np.asarray(proxy(archs), dtype=np.float64)
    elif "+" in proxy:
        from nasflow.proxies import proxy_vote

        values = proxy_vote(space, archs, proxy.split("+"), progress=progress)
    else:
        from nasflow.proxies import zero_cost

        values = zero_cost(space, archs, proxy, progress=progress)
    if values.shape != (len(archs),) or not np.isfinite(values).all():
        raise DataError(f"proxy gave {values.shape} values (NaN or infinite?) for {len(archs)} cells")
    return values


class PretrainHeads(nn.Module):
    def __init__(self, in_dim: int, hidden: int, flow_dim: int):
        super().__init__()
        self.flow = mlp_head(in_dim, hidden, flow_dim)
        self.proxy = mlp_head(in_dim, hidden, 1)


class PretextTask:
    """FGP's pretext loss on unlabeled cells: standardised flow reconstruction plus proxy ranking.

    The cells' graphs are packed once, so every step's batch is a gather from flat arrays (100k
    cells take ~20 MB) rather than a pass over cell objects.
    """

    def __init__(self, archs: Sequence, graphs: GraphCache, flow_targets: np.ndarray,
                 proxy_values: Optional[np.ndarray], *, flow_weight: float, proxy_weight: float, margin: float):  # fmt: skip
        self.cells = graphs.pack(list(archs))
        self.flows = torch.as_tensor(standardise(flow_targets), dtype=torch.float32)
        self.flow_dim = flow_targets.shape[1]
        self.use_proxy = proxy_values is not None and proxy_weight > 0
        self.proxies = torch.as_tensor(proxy_values, dtype=torch.float32) if self.use_proxy else None
        self.flow_weight, self.proxy_weight, self.margin = flow_weight, proxy_weight, margin

    def __len__(self) -> int:
        return len(self.cells)

    def loss(self, encoder: nn.Module, heads: PretrainHeads, idx: np.ndarray) -> torch.Tensor:
        """The weighted pretext loss of the cells at positions ``idx``."""
        emb = encoder(self.cells.batch(idx))
        loss = self.flow_weight * ((heads.flow(emb) - self.flows[idx]) ** 2).mean()
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
    progress: bool = False,
    on_epoch: Optional[Callable[[int, float], None]] = None,
) -> tuple[list[float], PretrainHeads]:
    """Pre-train ``encoder`` in place; returns the mean loss of every epoch and the heads.

    Torch's global RNG must already be seeded by the caller (head init, dropout).
    """
    from tqdm.auto import tqdm

    task = PretextTask(archs, graphs, flow_targets, proxy_values, flow_weight=flow_weight, proxy_weight=proxy_weight,
                       margin=margin)  # fmt: skip
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
            loss = task.loss(encoder, heads, idx)
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


@dataclasses.dataclass
class Pretraining:
    """Pre-trained parts (part -> state dict), the mean loss of every epoch, and whether they came from the cache."""

    parts: dict
    losses: list
    from_cache: bool


def pretrain_cached(config: FGPConfig, space, graphs: GraphCache, archs: Sequence, new_encoder: Callable[[], nn.Module],
                    proxy, *, use_cache: bool, threads: int, progress: bool = False) -> Pretraining:  # fmt: skip
    """Pre-train a fresh encoder on ``archs`` as ``config`` says, or load that pre-training from the cache.

    ``proxy`` is the proxy option itself (a callable proxy has no name to key a cache by:
    pass ``use_cache=False``). ``threads``: torch threads (0: as torch is set).
    """
    path = config.cache_path() if use_cache else None
    if path is not None:
        state = checkpoint.read_pretraining(path, config.key())
        if state is not None and not parts_fit(state, config, space, new_encoder):
            nasflow_cache.report_damaged(path, "its weights do not have this predictor's shapes")
        elif state is not None:
            losses = state.pop("losses")
            return Pretraining(state, losses, True)
    flows = config.flows(space, archs)
    targets = proxy_values(space, archs, proxy, config.proxy_weight, progress)
    with torch.random.fork_rng(), torch_threads(threads or None):
        torch.manual_seed(config.seed)
        encoder = new_encoder()
        losses, heads = fgp_pretrain(
            encoder, graphs, archs, flows, targets, epochs=config.pretrain_epochs, lr=config.pretrain_lr, batch_size=config.pretrain_batch,
            flow_weight=config.flow_weight, proxy_weight=config.proxy_weight, margin=config.margin, hidden=config.dim,
            rng=np.random.default_rng(config.seed), progress=progress,
        )  # fmt: skip
    parts = {name: {k: v.detach().clone() for k, v in module.state_dict().items()}
             for name, module in (("encoder", encoder), ("proxy_head", heads.proxy), ("flow_head", heads.flow))}  # fmt: skip
    if path is not None:
        try:
            checkpoint.write_pretraining(path, config.key(), parts, losses)
        except OSError as e:  # an unwritten cache only costs the next run this pre-training
            nasflow_cache.report_unwritable(path, e)
        except CheckpointError as e:
            warnings.warn(f"could not write the pre-training cache {path}: {e}", NasflowWarning, stacklevel=2)
    return Pretraining(parts, losses, False)


def parts_fit(parts: dict, config: FGPConfig, space, new_encoder: Callable[[], nn.Module]) -> bool:
    """Whether pre-trained parts (part -> state dict) have the shapes ``config`` builds."""
    try:
        with torch.random.fork_rng():  # building modules draws from the global generator
            encoder = new_encoder()
            encoder.load_state_dict(parts["encoder"])
            if "proxy_head" in parts or "flow_head" in parts:
                width = config.flows(space, [space.sample(np.random.default_rng(0))]).shape[1]
                heads = PretrainHeads(encoder.out_dim, config.dim, width)
                heads.proxy.load_state_dict(parts.get("proxy_head", heads.proxy.state_dict()))
                heads.flow.load_state_dict(parts.get("flow_head", heads.flow.state_dict()))
    except (KeyError, RuntimeError, ValueError):
        return False
    return True
