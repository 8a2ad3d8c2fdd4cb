"""`Predictor`: an FGP-pretrained (or from-scratch) GNN that ranks cells of a space.

scikit-learn habits: configuration in ``__init__`` (no work there), unlabeled learning in
``pretrain``, labeled learning in ``fit``, scores from ``predict``. Every ``fit`` starts
again from the pre-trained encoder (or the seeded random init), so a search loop can
re-fit on all cells queried so far without drift from earlier fits.
"""
from __future__ import annotations

import copy
import hashlib
import json
import math
import warnings
from pathlib import Path
from typing import Callable, Optional, Sequence, Union

import numpy as np
import torch
from torch import nn

from nasflow import cache as nasflow_cache
from nasflow.core import Arch
from nasflow.devices import torch_threads
from nasflow.errors import CheckpointError, DataError, NasflowError, NasflowWarning
from nasflow.flow import READOUTS, VARIANTS, flow_surrogate

from . import checkpoint
from .encoders import ENCODERS, make_encoder, mlp_head
from .fgp import FLOW_LOSSES, FLOW_TARGETS, PretextTask, PretrainHeads, fgp_pretrain, pairwise_hinge
from .graphs import GraphCache
from .unified import SPACE_IDS, UnifiedGraphCache, check_init_from, make_unified

PRETRAIN_MODES = ("fgp", "none")
# Spaces larger than this are pre-trained on a seeded sample instead of every cell.
ENUMERATE_LIMIT = 50_000
PREDICT_CHUNK = 16_384
# Options that do not change what pre-training computes, left out of its cache key.
_FIT_ONLY = {"epochs", "lr", "weight_decay", "batch_size", "cache", "threads", "head_init", "encoder_lr_scale",
             "features", "zcp_proxies", "clip_grad", "finetune_flow_weight", "finetune_proxy_weight",
             "finetune_batch", "finetune_seed"}
# Options added later, left out of the pre-training cache key at their default so older caches keep loading.
_NEW_DEFAULTS = {"flow_target": "standardised", "flow_loss": "mean", "clip_grad": None}
# How fine-tuning starts its score head: fresh (seeded), or from the pre-trained proxy
# head, which already ranks cells by the zero-cost proxy.
HEAD_INITS = ("random", "proxy")
# Graph-level inputs next to the encoder's embedding: "zcp" is the vector of zero-cost proxy scores.
FEATURES = ("zcp",)


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


class Predictor:
    """Ranks cells of ``space``; higher score = predicted better.

    ``proxy`` names a zero-cost proxy of :mod:`nasflow.proxies`, or several joined by '+'
    (their rank vote, e.g. ``"synflow+jacov+naswot"``), or is a callable ``archs -> np.ndarray``,
    or None to pre-train on the flow surrogate alone: FGP's auxiliary ranking target.
    ``features=["zcp"]`` also feeds the score head the standardised vector of the
    ``zcp_proxies`` scores of each cell (the score-based encoding).
    """

    def __init__(
        self,
        space,
        encoder: str = "gin",
        pretrain: str = "fgp",
        seed: int = 0,
        *,
        dim: int = 64,
        layers: int = 3,
        dropout: float = 0.1,
        flow_variant: str = "operator",
        flow_readout: str = "input",  # sum pooling was the default until 9-run evidence (docs/RESULTS.md, issue 4)
        flow_dim: int = 32,
        flow_seed: int = 0,
        flow_target: str = "standardised",
        flow_loss: str = "mean",
        proxy: Union[str, Callable, None] = "flops",
        flow_weight: float = 1.0,
        proxy_weight: float = 0.5,
        pretrain_epochs: int = 40,
        pretrain_lr: float = 1e-3,
        pretrain_batch: int = 256,
        pretrain_samples: int = 50_000,
        epochs: int = 200,
        lr: float = 1e-3,
        weight_decay: float = 1e-4,
        batch_size: int = 128,
        margin: float = 0.5,
        head_init: str = "random",
        encoder_lr_scale: float = 1.0,
        clip_grad: Optional[float] = None,
        finetune_flow_weight: float = 0.0,
        finetune_proxy_weight: float = 0.0,
        finetune_batch: int = 256,
        finetune_seed: Optional[int] = None,
        features: Sequence[str] = (),
        zcp_proxies: Optional[Sequence[str]] = None,
        unified: bool = False,
        cache: bool = True,
        # 0: as torch is set. 1: cells are tiny graphs, and on a shared CPU thread hand-offs cost more than they
        # parallelise (measured ~20x slower steps with 2 threads under load)
        threads: int = 1,
    ):
        if isinstance(space, str):
            from nasflow import get_space

            space = get_space(space)
        if encoder not in ENCODERS:
            raise NasflowError(f"unknown encoder {encoder!r}; choose one of {', '.join(ENCODERS)}")
        if pretrain not in PRETRAIN_MODES:
            raise NasflowError(f"unknown pre-training {pretrain!r}; choose one of {', '.join(PRETRAIN_MODES)}")
        if flow_variant not in VARIANTS or flow_readout not in READOUTS:
            raise NasflowError(f"flow variant must be one of {VARIANTS} and readout one of {READOUTS}")
        _check_numbers(locals())
        self.space = space
        self.encoder = encoder
        self.pretrain_mode = pretrain
        self.seed = int(seed)
        self.dim, self.layers, self.dropout = dim, layers, dropout
        self.flow_variant, self.flow_readout, self.flow_dim, self.flow_seed = flow_variant, flow_readout, flow_dim, flow_seed
        if flow_target not in FLOW_TARGETS or flow_loss not in FLOW_LOSSES:
            raise NasflowError(f"flow_target must be one of {FLOW_TARGETS} and flow_loss one of {FLOW_LOSSES}")
        # "raw"/"sum" is the authors' reconstruction loss (see predictors/fgp.py)
        self.flow_target, self.flow_loss = flow_target, flow_loss
        # FlowerFormer clips the fine-tuning gradient norm at 1.0; None does not clip
        self.clip_grad = clip_grad
        # Keeping the pretext task during fine-tuning (on a batch of unlabeled pre-training cells per
        # step) stops a few labels from washing out what pre-training taught the encoder.
        if finetune_flow_weight < 0 or finetune_proxy_weight < 0 or finetune_batch < 2:
            raise NasflowError("finetune_flow_weight and finetune_proxy_weight must be >= 0 and finetune_batch >= 2")
        self.finetune_flow_weight, self.finetune_proxy_weight = finetune_flow_weight, finetune_proxy_weight
        self.finetune_batch = int(finetune_batch)
        # None: fine-tuning draws from ``seed`` too; another value varies fine-tuning over one pre-training
        self.finetune_seed = None if finetune_seed is None else int(finetune_seed)
        self.proxy = proxy
        self.flow_weight, self.proxy_weight = flow_weight, proxy_weight
        self.pretrain_epochs, self.pretrain_lr = pretrain_epochs, pretrain_lr
        self.pretrain_batch, self.pretrain_samples = pretrain_batch, pretrain_samples
        self.epochs, self.lr, self.weight_decay = epochs, lr, weight_decay
        self.batch_size, self.margin = batch_size, margin
        if head_init not in HEAD_INITS:
            raise NasflowError(f"unknown head_init {head_init!r}; choose one of {', '.join(HEAD_INITS)}")
        self.head_init = head_init
        self.encoder_lr_scale = encoder_lr_scale
        self.features = tuple(features)
        for f in self.features:
            if f not in FEATURES:
                raise NasflowError(f"unknown predictor feature {f!r}; choose from {', '.join(FEATURES)}")
        if self.features and head_init == "proxy":
            raise NasflowError("head_init='proxy' reuses the pre-training head, which has no zcp inputs; "
                               "use head_init='random' with features")
        from nasflow.proxies import ZCP_DEFAULT, check_names

        if isinstance(proxy, str):
            check_names(proxy.split("+"))  # a vote names its parts with '+'
        self.zcp_proxies = tuple(check_names(zcp_proxies if zcp_proxies is not None else ZCP_DEFAULT))
        # shared NB-101/NB-201 op vocabulary plus a space embedding (predictors/unified.py)
        self.unified = bool(unified)
        self.cache = cache
        self.threads = threads
        self._graphs: Optional[GraphCache] = None
        self._pretrained: Optional[dict] = None
        self._pretrain_archs: Optional[list[Arch]] = None
        self._model: Optional[ScoreModel] = None
        self.pretrain_losses: list[float] = []
        self.pretrain_from_cache = False
        self.fit_history: list[float] = []

    # ----------------------------------------------------------------- configuration
    def config(self) -> dict:
        """Everything ``__init__`` took, as plain values (a callable proxy becomes None)."""
        return {
            "encoder": self.encoder,
            "pretrain": self.pretrain_mode,
            "seed": self.seed,
            "dim": self.dim,
            "layers": self.layers,
            "dropout": self.dropout,
            "flow_variant": self.flow_variant,
            "flow_readout": self.flow_readout,
            "flow_dim": self.flow_dim,
            "flow_seed": self.flow_seed,
            "flow_target": self.flow_target,
            "flow_loss": self.flow_loss,
            "clip_grad": self.clip_grad,
            "finetune_flow_weight": self.finetune_flow_weight,
            "finetune_proxy_weight": self.finetune_proxy_weight,
            "finetune_batch": self.finetune_batch,
            "finetune_seed": self.finetune_seed,
            "proxy": self.proxy if isinstance(self.proxy, str) else None,
            "flow_weight": self.flow_weight,
            "proxy_weight": self.proxy_weight,
            "pretrain_epochs": self.pretrain_epochs,
            "pretrain_lr": self.pretrain_lr,
            "pretrain_batch": self.pretrain_batch,
            "pretrain_samples": self.pretrain_samples,
            "epochs": self.epochs,
            "lr": self.lr,
            "weight_decay": self.weight_decay,
            "batch_size": self.batch_size,
            "margin": self.margin,
            "head_init": self.head_init,
            "encoder_lr_scale": self.encoder_lr_scale,
            "features": list(self.features),
            "zcp_proxies": list(self.zcp_proxies),
            "unified": self.unified,
            "cache": self.cache,
            "threads": self.threads,
        }

    def __repr__(self) -> str:
        return f"Predictor({self.space.name!r}, encoder={self.encoder!r}, pretrain={self.pretrain_mode!r}, seed={self.seed})"

    @property
    def graphs(self) -> GraphCache:
        if self._graphs is None:
            self._graphs = UnifiedGraphCache(self.space) if self.unified else GraphCache(self.space)
        return self._graphs

    def _new_encoder(self) -> nn.Module:
        encoder = make_encoder(self.encoder, len(self.graphs.vocab), self.dim, self.layers, self.dropout)
        return make_unified(encoder) if self.unified else encoder

    def _new_model(self) -> ScoreModel:
        return ScoreModel(self._new_encoder(), self.dim, len(self.zcp_proxies) if self.features else 0)

    def _extra(self, archs, progress: bool = False) -> Optional[torch.Tensor]:
        """The graph-level features of ``archs`` (None without ``features``)."""
        if not self.features:
            return None
        from nasflow.proxies import zcp_features

        values = zcp_features(self.space, archs, self.zcp_proxies, progress=progress)
        if not np.isfinite(values).all():
            raise DataError("a zero-cost proxy gave NaN or infinite scores; drop it from zcp_proxies")
        return torch.as_tensor(values, dtype=torch.float32)

    # ----------------------------------------------------------------- pre-training
    def _default_pretrain_archs(self) -> tuple[list[Arch], str]:
        if self.space.size <= ENUMERATE_LIMIT and hasattr(self.space, "enumerate"):
            return list(self.space.enumerate()), "all"
        rng = np.random.default_rng(self.seed)
        seen: dict[Arch, None] = {}
        # Sampling with rejection of repeats; the space is much larger than the sample.
        for _ in range(20 * self.pretrain_samples):
            if len(seen) >= self.pretrain_samples:
                break
            seen[self.space.sample(rng)] = None
        return list(seen), f"sample-{self.pretrain_samples}"

    def _cache_path(self, archs_tag: str) -> Optional[Path]:
        keys = self._cache_key(archs_tag)
        if keys is None:
            return None
        from nasflow.cache import cache_dir

        digest = hashlib.sha1(json.dumps(keys, sort_keys=True).encode()).hexdigest()[:16]
        return cache_dir() / "fgp" / f"{self.space.name}-{self.encoder}-{digest}.safetensors"

    def _cache_key(self, archs_tag: str) -> Optional[dict]:
        """What decides pre-training; stored in the cache file too, so a misplaced file is not used."""
        if not self.cache or (self.proxy is not None and not isinstance(self.proxy, str)):
            return None
        keys = {k: v for k, v in self.config().items() if k not in _FIT_ONLY}
        if not self.unified:  # so caches written before the option existed keep their keys
            del keys["unified"]
        for k, default in _NEW_DEFAULTS.items():
            if keys.get(k, default) == default:
                keys.pop(k, None)
        keys.update(space=self.space.name, vocab=list(self.graphs.vocab), archs=archs_tag, format=checkpoint.CACHE_VERSION)
        from nasflow.proxies import PROXIES

        # a proxy whose definition changed (new version) must not reuse an encoder pre-trained to rank by the old
        # one; version "1" is left out so caches written before versions were keyed keep loading
        versions = [PROXIES[p].version for p in self.proxy.split("+")] if isinstance(self.proxy, str) else []
        if any(v != "1" for v in versions):
            keys["proxy_version"] = "+".join(versions)
        return keys

    def pretrain(self, archs: Optional[Sequence[Arch]] = None, progress: bool = False) -> "Predictor":
        """FGP pre-training of the encoder on unlabeled cells (no-op for pretrain='none').

        Default cells: the whole space when it is small enough to enumerate, otherwise a
        seeded sample of ``pretrain_samples`` cells. The result is cached on disk per
        space and configuration, so a second call (or another process) loads it.
        """
        if self.pretrain_mode == "none":
            return self
        if archs is None:
            archs, tag = self._default_pretrain_archs()
        else:
            archs = self._check_archs(archs, "pre-training cells")
            tag = hashlib.sha1("\n".join(sorted(a.key for a in archs)).encode()).hexdigest()
        self._pretrain_archs = archs
        path = self._cache_path(tag)
        if path is not None:
            state = checkpoint.read_pretraining(path, self._cache_key(tag))
            # caches written before the flow head was kept cannot continue the pretext task: re-run them
            if state is not None and not self._fits(state):
                nasflow_cache.report_damaged(path, "its weights do not have this predictor's shapes")
            elif state is not None and ("flow_head" in state or not self._keeps_pretext()):
                self.pretrain_losses = state.pop("losses")
                self._pretrained = state
                self.pretrain_from_cache = True
                return self
        flows = flow_surrogate(
            self.space, archs, dim=self.flow_dim, variant=self.flow_variant, readout=self.flow_readout, seed=self.flow_seed
        )
        proxy_values = self._proxy_values(archs, progress)
        with torch.random.fork_rng(), torch_threads(self.threads):
            torch.manual_seed(self.seed)
            encoder = self._new_encoder()
            self.pretrain_losses, heads = fgp_pretrain(
                encoder,
                self.graphs,
                archs,
                flows,
                proxy_values,
                epochs=self.pretrain_epochs,
                lr=self.pretrain_lr,
                batch_size=self.pretrain_batch,
                flow_weight=self.flow_weight,
                proxy_weight=self.proxy_weight,
                margin=self.margin,
                hidden=self.dim,
                rng=np.random.default_rng(self.seed),
                flow_target=self.flow_target,
                flow_loss=self.flow_loss,
                progress=progress,
            )
        self._pretrained = {
            "encoder": {k: v.detach().clone() for k, v in encoder.state_dict().items()},
            "proxy_head": {k: v.detach().clone() for k, v in heads.proxy.state_dict().items()},
            "flow_head": {k: v.detach().clone() for k, v in heads.flow.state_dict().items()},
        }
        self.pretrain_from_cache = False
        if path is not None:
            try:
                checkpoint.write_pretraining(path, self._cache_key(tag), self._pretrained, self.pretrain_losses)
            except OSError as e:  # an unwritten cache only costs the next run this pre-training
                nasflow_cache.report_unwritable(path, e)
            except CheckpointError as e:
                warnings.warn(f"could not write the pre-training cache {path}: {e}", NasflowWarning, stacklevel=2)
        return self

    def _fits(self, parts: dict) -> bool:
        """Whether pre-trained parts (part -> state dict) have this predictor's shapes."""
        try:
            with torch.random.fork_rng():  # building modules draws from the global generator
                encoder = self._new_encoder()
                encoder.load_state_dict(parts["encoder"])
                if "proxy_head" in parts or "flow_head" in parts:
                    cell = self.space.sample(np.random.default_rng(0))
                    width = flow_surrogate(self.space, [cell], dim=self.flow_dim, variant=self.flow_variant,
                                           readout=self.flow_readout, seed=self.flow_seed).shape[1]  # fmt: skip
                    heads = PretrainHeads(encoder.out_dim, self.dim, width)
                    heads.proxy.load_state_dict(parts.get("proxy_head", heads.proxy.state_dict()))
                    heads.flow.load_state_dict(parts.get("flow_head", heads.flow.state_dict()))
        except (KeyError, RuntimeError, ValueError):
            return False
        return True

    def _proxy_values(self, archs, progress, weight: Optional[float] = None) -> Optional[np.ndarray]:
        if self.proxy is None or (self.proxy_weight if weight is None else weight) <= 0:
            return None
        if callable(self.proxy):
            values = np.asarray(self.proxy(archs), dtype=np.float64)
        elif "+" in self.proxy:
            from nasflow.proxies import proxy_vote

            values = proxy_vote(self.space, archs, self.proxy.split("+"), progress=progress)
        else:
            from nasflow.proxies import zero_cost

            values = zero_cost(self.space, archs, self.proxy, progress=progress)
        if values.shape != (len(archs),) or not np.isfinite(values).all():
            raise DataError(f"proxy gave {values.shape} values (NaN or infinite?) for {len(archs)} cells")
        return values

    # ----------------------------------------------------------------- fine-tuning
    def _keeps_pretext(self) -> bool:
        return self.finetune_flow_weight > 0 or self.finetune_proxy_weight > 0

    def _finetune_pretext(self, progress: bool) -> PretextTask:
        """The pretext task on the pre-training cells, weighted for fine-tuning."""
        archs = self._pretrain_archs
        if archs is None:
            archs, _ = self._default_pretrain_archs()
        flows = flow_surrogate(
            self.space, archs, dim=self.flow_dim, variant=self.flow_variant, readout=self.flow_readout, seed=self.flow_seed
        )
        return PretextTask(
            archs, flows, self._proxy_values(archs, progress, self.finetune_proxy_weight),
            flow_weight=self.finetune_flow_weight, proxy_weight=self.finetune_proxy_weight, margin=self.margin,
            flow_target=self.flow_target, flow_loss=self.flow_loss,
        )  # fmt: skip

    def _check_archs(self, archs, what: str, any_unified_space: bool = False) -> list[Arch]:
        archs = list(archs)
        spaces = sorted(SPACE_IDS) if any_unified_space else [self.space.name]
        for a in archs:
            if not isinstance(a, Arch) or a.space not in spaces:
                raise DataError(f"{what} must be {' or '.join(spaces)} cells; got {a!r}")
        return archs

    def _check_labeled(self, archs, values, what: str) -> tuple[list[Arch], np.ndarray]:
        archs = self._check_archs(archs, what)
        try:
            values = np.asarray(values, dtype=np.float64).ravel()
        except (TypeError, ValueError):
            raise DataError(f"{what}: values must be numbers") from None
        if len(archs) != values.size:
            raise DataError(f"{what}: {len(archs)} cells but {values.size} values; pass one value per cell")
        if len(archs) < 2:
            raise DataError(f"{what}: need at least 2 labeled cells to learn a ranking, got {len(archs)}")
        if not np.isfinite(values).all():
            raise DataError(f"{what}: values contain NaN or infinity; drop those cells first")
        if np.all(values == values[0]):
            raise DataError(f"{what}: all values are equal, so there is no ranking to learn")
        return archs, values

    def fit(self, archs, values, val_archs=None, val_values=None, progress: bool = False,
            init_from: Optional["Predictor"] = None) -> "Predictor":
        """Fine-tune on labeled cells with the pairwise hinge loss.

        With a validation set, the state with the best validation Kendall tau is kept.
        Starts from the pre-trained encoder (pre-training first if needed) every time, or,
        with ``init_from``, from that fitted predictor's encoder and score head (transfer from
        another dataset of the same space, or across spaces when both are ``unified``).
        """
        from tqdm.auto import tqdm

        from nasflow.metrics import kendall_tau

        archs, values = self._check_labeled(archs, values, "training cells")
        validate = val_archs is not None or val_values is not None
        if validate:
            if val_archs is None or val_values is None:
                raise DataError("pass both val_archs and val_values, or neither")
            val_archs, val_values = self._check_labeled(val_archs, val_values, "validation cells")
        if init_from is not None:
            check_init_from(init_from, self)
        elif self.pretrain_mode == "fgp" and (
            self._pretrained is None or (self._keeps_pretext() and "flow_head" not in self._pretrained)
        ):
            self.pretrain(progress=progress)
        pretext = self._finetune_pretext(progress) if self._keeps_pretext() else None
        targets = torch.as_tensor(values, dtype=torch.float32)
        n = len(archs)
        seed = self.seed if self.finetune_seed is None else self.finetune_seed
        rng = np.random.default_rng(seed)
        full_batch = self.graphs.batch(archs) if n <= self.batch_size else None
        val_batch = self.graphs.batch(val_archs) if validate else None
        extra = self._extra(archs, progress)
        val_extra = self._extra(val_archs) if validate else None
        with torch.random.fork_rng(), torch_threads(self.threads):
            torch.manual_seed(seed)
            model = self._new_model()
            if init_from is not None:
                model.load_state_dict(init_from._model.state_dict())
            elif self._pretrained is not None:
                model.encoder.load_state_dict(self._pretrained["encoder"])
                if self.head_init == "proxy":
                    model.head.load_state_dict(self._pretrained["proxy_head"])
            if extra is not None:  # after loading: the target cells' statistics, not the source's
                model.set_standardisation(extra)
            if pretext is not None:
                # the pre-training heads when there are any; fresh (seeded) heads make it plain multi-task learning
                heads = PretrainHeads(model.encoder.out_dim, self.dim, pretext.flow_dim)
                if self._pretrained is not None and init_from is None:
                    heads.flow.load_state_dict(self._pretrained["flow_head"])
                    heads.proxy.load_state_dict(self._pretrained["proxy_head"])
                heads.train()
                # its own stream, so the labeled batches are drawn as without the pretext task
                pretext_rng = np.random.default_rng([seed, 1])
            # A smaller step on the encoder keeps more of what pre-training taught it.
            groups = [
                {"params": model.encoder.parameters(), "lr": self.lr * self.encoder_lr_scale},
                {"params": model.head.parameters(), "lr": self.lr},
            ]
            if pretext is not None:
                groups.append({"params": heads.parameters(), "lr": self.lr})
            optimiser = torch.optim.AdamW(groups, lr=self.lr, weight_decay=self.weight_decay)
            best_tau, best_state = -np.inf, None
            self.fit_history = []
            for _ in tqdm(range(self.epochs), desc="fine-tuning", unit="epoch", disable=not progress):
                model.train()
                order = rng.permutation(n)
                for start in range(0, n, self.batch_size):
                    idx = order[start : start + self.batch_size]
                    batch = full_batch if full_batch is not None else self.graphs.batch([archs[i] for i in idx])
                    target = targets if full_batch is not None else targets[idx]
                    batch_extra = None if extra is None else (extra if full_batch is not None else extra[idx])
                    loss = pairwise_hinge(model(batch, batch_extra), target, self.margin)
                    if pretext is not None:
                        unlabeled = pretext_rng.choice(len(pretext), size=min(self.finetune_batch, len(pretext)), replace=False)
                        loss = loss + pretext.loss(model.encoder, heads, self.graphs, unlabeled)
                    optimiser.zero_grad()
                    loss.backward()
                    if self.clip_grad is not None:
                        nn.utils.clip_grad_norm_(model.parameters(), self.clip_grad)
                    optimiser.step()
                if validate:
                    model.eval()
                    with torch.no_grad():
                        tau = kendall_tau(model(val_batch, val_extra).numpy(), val_values)
                    tau = -1.0 if np.isnan(tau) else tau
                    self.fit_history.append(tau)
                    if tau > best_tau:
                        best_tau, best_state = tau, copy.deepcopy(model.state_dict())
        if best_state is not None:
            model.load_state_dict(best_state)
        model.eval()
        self._model = model
        return self

    # ----------------------------------------------------------------- prediction
    @property
    def is_fitted(self) -> bool:
        return self._model is not None

    def predict(self, archs) -> np.ndarray:
        """Scores (float64, one per cell, higher = better) in the order given."""
        if self._model is None:
            raise NasflowError("this predictor is not fitted yet; call fit(archs, values) first")
        # a unified predictor also scores other spaces' cells (zero-shot transfer); zcp features are per space
        archs = self._check_archs(archs, "cells to predict", any_unified_space=self.unified and not self.features)
        out = np.empty(len(archs), dtype=np.float64)
        # before no_grad: the network proxies differentiate through the cells' networks
        extra = self._extra(archs)
        with torch.no_grad(), torch_threads(self.threads):
            for start in range(0, len(archs), PREDICT_CHUNK):
                chunk = archs[start : start + PREDICT_CHUNK]
                chunk_extra = None if extra is None else extra[start : start + len(chunk)]
                out[start : start + len(chunk)] = self._model(self.graphs.batch(chunk), chunk_extra).numpy()
        return out

    # ----------------------------------------------------------------- persistence
    def save(self, path) -> None:
        """Write configuration (JSON) and weights (safetensors) atomically to one file."""
        checkpoint.write(path, checkpoint.CheckpointState(
            space=self.space.name,
            vocab=list(self.graphs.vocab),
            config=self.config(),
            pretrained=self._pretrained,
            model=self._model.state_dict() if self._model is not None else None,
        ))  # fmt: skip

    @classmethod
    def load(cls, path, space=None) -> "Predictor":
        """Load a checkpoint written by :meth:`save`; ``space`` (name or object) must match it.

        Old ``torch.save`` checkpoints are refused (loading them can run code); convert a
        trusted one with :func:`convert_checkpoint` (``nasflow convert-checkpoint``).
        """
        path = Path(path)
        return cls._from_state(checkpoint.read(path, cls.__init__), path, space)

    @classmethod
    def _from_state(cls, state: checkpoint.CheckpointState, path: Path, space=None) -> "Predictor":
        name = space if isinstance(space, str) else getattr(space, "name", None)
        if space is not None and name != state.space:
            raise CheckpointError(f"{path} is a predictor for space {state.space!r}, not {name!r}")
        try:
            predictor = cls(space if space is not None else state.space, **state.config)
            if list(predictor.graphs.vocab) != list(state.vocab):
                raise CheckpointError(f"{path} was saved with other node labels than space {state.space!r} has now")
            if state.pretrained is not None and not predictor._fits(state.pretrained):
                raise CheckpointError(f"{path}: the pre-trained weights do not fit its configuration; re-train it")
            predictor._pretrained = state.pretrained
            if state.model is not None:
                model = predictor._new_model()
                model.load_state_dict(state.model)
                model.eval()
                predictor._model = model
        except CheckpointError:
            raise
        except NasflowError as e:
            raise CheckpointError(f"{path} holds options this nasflow refuses: {e}") from None
        except (TypeError, KeyError, RuntimeError, ValueError) as e:
            raise CheckpointError(f"{path} does not match this nasflow's predictor ({type(e).__name__}); re-train it") from None
        return predictor


def convert_checkpoint(old, new) -> Predictor:
    """Rewrite an old (``torch.save``, version 1) checkpoint in the safetensors format.

    The old file is read by nasflow's restricted reader, not ``torch.load``, and a
    TorchScript archive is refused before anything in it is read; still, only convert files
    you trust. Returns the loaded predictor.
    """
    old = Path(old)
    predictor = Predictor._from_state(checkpoint.read_legacy(old, Predictor.__init__), old)
    predictor.save(new)
    return predictor


# Numeric options: (kind, lowest value, whether the lowest is allowed). A saved config is passed back to
# __init__, so a value like epochs="many" in it is refused here, at load, not at the first fit.
_NUMBERS = {
    "seed": (int, 0, True), "flow_seed": (int, 0, True), "finetune_seed": (int, 0, True),
    "dim": (int, 1, True), "layers": (int, 1, True), "flow_dim": (int, 1, True), "threads": (int, 0, True),
    "epochs": (int, 0, True), "pretrain_epochs": (int, 0, True), "batch_size": (int, 1, True),
    "pretrain_batch": (int, 1, True), "pretrain_samples": (int, 1, True), "finetune_batch": (int, 2, True),
    "lr": (float, 0.0, False), "pretrain_lr": (float, 0.0, False), "clip_grad": (float, 0.0, False),
    "weight_decay": (float, 0.0, True), "margin": (float, 0.0, True), "dropout": (float, 0.0, True),
    "flow_weight": (float, 0.0, True), "proxy_weight": (float, 0.0, True), "encoder_lr_scale": (float, 0.0, True),
    "finetune_flow_weight": (float, 0.0, True), "finetune_proxy_weight": (float, 0.0, True),
}


def _check_numbers(options: dict) -> None:
    """One-line NasflowError for a numeric option of the wrong type or range (None passes where it is the default)."""
    for name, (kind, low, inclusive) in _NUMBERS.items():
        value = options[name]
        if value is None and name in ("finetune_seed", "clip_grad"):
            continue
        number = isinstance(value, (int, np.integer)) or (kind is float and isinstance(value, (float, np.floating)))
        if isinstance(value, bool) or not number or not math.isfinite(value) or value < low or (value == low and not inclusive):
            bound = f">= {low}" if inclusive else f"> {low}"
            raise NasflowError(f"predictor option {name} must be {'an integer' if kind is int else 'a number'} "
                               f"{bound}, got {value!r}")
    if not options["dropout"] < 1:
        raise NasflowError(f"predictor option dropout must be below 1, got {options['dropout']!r}")
