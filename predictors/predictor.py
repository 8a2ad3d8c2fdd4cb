"""`Predictor`: an FGP-pretrained (or from-scratch) GNN that ranks cells of a space.

A facade with scikit-learn habits (options in ``validation.Configurable``, ``fit`` returns self)
over the score model (``model.py``), FGP pre-training and its cache (``fgp.py``), fine-tuning
(``finetune.py``) and the file format (``checkpoint.py``). Every ``fit`` starts again from the
pre-trained encoder (or the seeded random init), so a search loop can re-fit on all cells
queried so far without drift from earlier fits.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional, Sequence, Union

import numpy as np
import torch

from nasflow.core import Arch
from nasflow.devices import torch_threads
from nasflow.errors import CheckpointError, NasflowError

from . import checkpoint, fgp
from .finetune import Labeled, fine_tune
from .graphs import GraphCache
from .model import ScoreModel, new_encoder, zcp_inputs
from .unified import UnifiedGraphCache, check_init_from
from .validation import Configurable, check_archs, check_fit_inputs, json_options

# cells per graph of a predict call; scores do not depend on it. 4,096 NB-101 cells (~27k nodes) keep a layer's
# activations small: 60k cells took 0.72 s CPU in chunks of 4,096 vs 0.83 s in chunks of 16,384 (GIN, one thread)
PREDICT_CHUNK = 4_096


class Predictor(Configurable):
    """Ranks cells of ``space``; higher score = predicted better.

    ``proxy`` names a zero-cost proxy of :mod:`nasflow.proxies`, or several joined by '+'
    (their rank vote, e.g. ``"synflow+jacov+naswot"``), or is a callable ``archs -> np.ndarray``,
    or None to pre-train on the flow surrogate alone: FGP's auxiliary ranking target.
    ``features=["zcp"]`` also feeds the score head the standardised vector of the
    ``zcp_proxies`` scores of each cell (the score-based encoding). ``unified`` uses the shared
    NB-101/NB-201 op vocabulary plus a space embedding (predictors/unified.py).
    ``finetune_seed`` (None: ``seed``) varies fine-tuning over one pre-training. ``threads``:
    torch threads while it works (0: as torch is set); cells are tiny graphs, and on a shared CPU
    thread hand-offs cost more than they parallelise (measured ~20x slower steps with 2 threads).
    """

    def __init__(
        self, space, encoder: str = "gin", pretrain: str = "fgp", seed: int = 0, *, dim: int = 64, layers: int = 3,
        dropout: float = 0.1, flow_readout: str = "input", flow_seed: int = 0, proxy: Union[str, Callable, None] = "flops",
        flow_weight: float = 1.0, proxy_weight: float = 0.5, pretrain_epochs: int = 40, pretrain_lr: float = 1e-3,
        pretrain_batch: int = 256, pretrain_samples: int = 100_000, epochs: int = 200, lr: float = 1e-3,
        weight_decay: float = 1e-4, batch_size: int = 128, margin: float = 0.5, finetune_seed: Optional[int] = None,
        features: Sequence[str] = (), zcp_proxies: Optional[Sequence[str]] = None, unified: bool = False,
        # threads 1: cells are tiny graphs, and on a shared CPU thread hand-offs cost more than they parallelise
        # (measured ~20x slower steps with 2 threads under load); 0: as torch is set
        cache: bool = True, threads: int = 1,
    ):  # fmt: skip
        if isinstance(space, str):
            from nasflow.registry import get_space

            space = get_space(space)
        self.space = space
        self.store(locals())
        self._graphs: Optional[GraphCache] = None
        self._pretrained: Optional[dict] = None
        self._model: Optional[ScoreModel] = None
        self.pretrain_losses: list[float] = []
        self.pretrain_from_cache = False
        self.fit_history: list[float] = []

    # ----------------------------------------------------------------- options
    def set_params(self, **params) -> "Predictor":
        self._graphs = None  # built for the unified option's value
        return super().set_params(**params)

    def config(self) -> dict:
        """The checked options as JSON values (a callable proxy becomes None): what ``save`` stores."""
        return json_options(self.options)

    def __repr__(self) -> str:
        p = self._params
        return f"Predictor({self.space.name!r}, encoder={p['encoder']!r}, pretrain={p['pretrain']!r}, seed={p['seed']})"

    @property
    def graphs(self) -> GraphCache:
        if self._graphs is None:
            self._graphs = UnifiedGraphCache(self.space) if self.options["unified"] else GraphCache(self.space)
        return self._graphs

    def _new_encoder(self):
        o = self.options
        return new_encoder(o["encoder"], len(self.graphs.vocab), o["dim"], o["layers"], o["dropout"], o["unified"])

    def _new_model(self) -> ScoreModel:
        o = self.options
        return ScoreModel(self._new_encoder(), o["dim"], len(o["zcp_proxies"]) if o["features"] else 0)

    def _fgp_config(self, cells: str) -> fgp.FGPConfig:
        return fgp.FGPConfig.of(self.options, self.space.name, self.graphs.vocab, cells)

    # ----------------------------------------------------------------- learning
    def pretrain(self, archs: Optional[Sequence[Arch]] = None, progress: bool = False) -> "Predictor":
        """FGP pre-training of the encoder on unlabeled cells (no-op for pretrain='none').

        Default cells: the whole space when it is small enough to enumerate, otherwise a
        seeded sample of ``pretrain_samples`` cells. The result is cached on disk per
        space and configuration, so a second call (or another process) loads it.
        """
        o = self.options
        if o["pretrain"] == "none":
            return self
        if archs is None:
            archs, cells = fgp.default_cells(self.space, o["seed"], o["pretrain_samples"])
        else:
            archs = check_archs(archs, [self.space.name], "pre-training cells")
            cells = fgp.cells_tag(archs)
        done = fgp.pretrain_cached(
            self._fgp_config(cells), self.space, self.graphs, archs, self._new_encoder, o["proxy"],
            use_cache=o["cache"] and not callable(o["proxy"]), threads=o["threads"], progress=progress,
        )  # fmt: skip
        self._pretrained, self.pretrain_losses, self.pretrain_from_cache = done.parts, done.losses, done.from_cache
        return self

    def fit(self, archs, values, val_archs=None, val_values=None, progress: bool = False,
            init_from: Optional["Predictor"] = None) -> "Predictor":  # fmt: skip
        """Fine-tune on labeled cells with the pairwise hinge loss.

        With a validation set, the state with the best validation Kendall tau is kept.
        Starts from the pre-trained encoder (pre-training first if needed) every time, or,
        with ``init_from``, from that fitted predictor's encoder and score head (transfer from
        another dataset of the same space, or across spaces when both are ``unified``).
        """
        o = self.options
        train, val = check_fit_inputs(archs, values, val_archs, val_values, self.space.name)
        if init_from is not None:
            check_init_from(init_from, self)
        elif o["pretrain"] == "fgp" and self._pretrained is None:
            self.pretrain(progress=progress)
        seed = o["seed"] if o["finetune_seed"] is None else o["finetune_seed"]
        rng = np.random.default_rng(seed)
        # before torch is seeded: the network proxies draw from torch's generator
        train = Labeled(*train, self._extra(o, train[0], progress))
        val = Labeled(*val, self._extra(o, val[0])) if val is not None else None
        with torch.random.fork_rng(), torch_threads(o["threads"] or None):
            torch.manual_seed(seed)
            model = self._new_model()
            if init_from is not None:
                model.load_state_dict(init_from._model.state_dict())
            elif self._pretrained is not None:
                model.encoder.load_state_dict(self._pretrained["encoder"])
            if train.extra is not None:  # after loading: the target cells' statistics, not the source's
                model.set_standardisation(train.extra)
            self.fit_history = fine_tune(model, self.graphs, train, val, epochs=o["epochs"], lr=o["lr"],
                                         weight_decay=o["weight_decay"], batch_size=o["batch_size"],
                                         margin=o["margin"], rng=rng, progress=progress)  # fmt: skip
        self._model = model
        return self

    def _extra(self, o: dict, archs, progress: bool = False) -> Optional[torch.Tensor]:
        return zcp_inputs(self.space, archs, o["zcp_proxies"], progress) if o["features"] else None

    @property
    def is_fitted(self) -> bool:
        return self._model is not None

    def predict(self, archs, progress: bool = False) -> np.ndarray:
        """Scores (float64, one per cell, higher = better) in the order given.

        Cells are scored in chunks of ``PREDICT_CHUNK``, each packed into one graph, so memory
        stays bounded for any number of cells (all 423,624 of NB-101 in one call).
        """
        from tqdm.auto import tqdm

        if self._model is None:
            raise NasflowError("this predictor is not fitted yet; call fit(archs, values) first")
        o = self.options
        # a unified predictor also scores other spaces' cells (zero-shot transfer); zcp features are per space
        spaces = None if o["unified"] and not o["features"] else [self.space.name]
        archs = check_archs(archs, spaces, "cells to predict")
        out = np.empty(len(archs), dtype=np.float64)
        extra = self._extra(o, archs, progress)  # before no_grad: the network proxies differentiate through the cells' networks
        bar = tqdm(total=len(archs), desc="predicting", unit="cell", disable=not progress)
        with torch.no_grad(), torch_threads(o["threads"] or None), bar:
            for start in range(0, len(archs), PREDICT_CHUNK):
                chunk = archs[start : start + PREDICT_CHUNK]
                chunk_extra = None if extra is None else extra[start : start + len(chunk)]
                out[start : start + len(chunk)] = self._model(self.graphs.batch(chunk), chunk_extra).numpy()
                bar.update(len(chunk))
        return out

    # ----------------------------------------------------------------- persistence
    def save(self, path) -> None:
        """Write configuration (JSON) and weights (safetensors) atomically to one file."""
        checkpoint.write(path, checkpoint.CheckpointState(
            space=self.space.name, vocab=list(self.graphs.vocab), config=self.config(), pretrained=self._pretrained,
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
            predictor.options  # checked here, not at the first fit
            if list(predictor.graphs.vocab) != list(state.vocab):
                raise CheckpointError(f"{path} was saved with other node labels than space {state.space!r} has now")
            if state.pretrained is not None and not fgp.parts_fit(
                state.pretrained, predictor._fgp_config(""), predictor.space, predictor._new_encoder
            ):
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
