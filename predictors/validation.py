"""Checks at the predictor's boundary: its options (when it pre-trains, fits, predicts, saves or loads)
and the cells and labels a caller hands it. Every refusal is one NasflowError line."""
from __future__ import annotations

import inspect
import math
from typing import Optional

import numpy as np

from nasflow.core import Arch
from nasflow.errors import DataError, NasflowError
from nasflow.flow import READOUTS

from .encoders import ENCODERS
from .unified import is_unified

PRETRAIN_MODES = ("fgp", "none")
# Graph-level inputs next to the encoder's embedding: "zcp" is the vector of zero-cost proxy scores.
FEATURES = ("zcp",)
# Numeric options: (kind, lowest value, whether the lowest is allowed). A saved config is checked too, so a
# value like epochs="many" in it is refused at load, not at the first fit.
NUMBERS = {
    "seed": (int, 0, True), "flow_seed": (int, 0, True), "finetune_seed": (int, 0, True),
    "dim": (int, 1, True), "layers": (int, 1, True), "threads": (int, 0, True),
    "epochs": (int, 0, True), "pretrain_epochs": (int, 0, True), "batch_size": (int, 1, True),
    "pretrain_batch": (int, 1, True), "pretrain_samples": (int, 1, True),
    "lr": (float, 0.0, False), "pretrain_lr": (float, 0.0, False),
    "weight_decay": (float, 0.0, True), "margin": (float, 0.0, True), "dropout": (float, 0.0, True),
    "flow_weight": (float, 0.0, True), "proxy_weight": (float, 0.0, True),
}
# options whose default None means "derived": finetune_seed from seed, zcp_proxies from nasflow.proxies.ZCP_DEFAULT
NONE_ALLOWED = ("finetune_seed", "zcp_proxies")


def checked_options(params: dict) -> dict:
    """``params`` (what ``Predictor.__init__`` stored) checked, in normal form: ints, tuples, the zcp default."""
    from nasflow.proxies import ZCP_DEFAULT, check_names

    if params["encoder"] not in ENCODERS:
        raise NasflowError(f"unknown encoder {params['encoder']!r}; choose one of {', '.join(ENCODERS)}")
    if params["pretrain"] not in PRETRAIN_MODES:
        raise NasflowError(f"unknown pre-training {params['pretrain']!r}; choose one of {', '.join(PRETRAIN_MODES)}")
    if params["flow_readout"] not in READOUTS:
        raise NasflowError(f"flow_readout must be one of {', '.join(READOUTS)}, got {params['flow_readout']!r}")
    for name, (kind, low, inclusive) in NUMBERS.items():
        value = params[name]
        if value is None and name in NONE_ALLOWED:
            continue
        number = isinstance(value, (int, np.integer)) or (kind is float and isinstance(value, (float, np.floating)))
        if isinstance(value, bool) or not number or not math.isfinite(value) or value < low or (value == low and not inclusive):
            bound = f">= {low}" if inclusive else f"> {low}"
            raise NasflowError(f"predictor option {name} must be {'an integer' if kind is int else 'a number'} "
                               f"{bound}, got {value!r}")  # fmt: skip
    if not params["dropout"] < 1:
        raise NasflowError(f"predictor option dropout must be below 1, got {params['dropout']!r}")
    proxy = params["proxy"]
    if isinstance(proxy, str):
        check_names(proxy.split("+"))  # a vote names its parts with '+'
    elif proxy is not None and not callable(proxy):
        raise NasflowError(f"proxy must be a proxy name, a callable or None, got {proxy!r}")
    features = tuple(params["features"])
    for f in features:
        if f not in FEATURES:
            raise NasflowError(f"unknown predictor feature {f!r}; choose from {', '.join(FEATURES)}")
    zcp = params["zcp_proxies"]
    return {
        **params,
        "seed": int(params["seed"]),
        "finetune_seed": None if params["finetune_seed"] is None else int(params["finetune_seed"]),
        "features": features,
        "zcp_proxies": tuple(check_names(zcp if zcp is not None else ZCP_DEFAULT)),
        "unified": bool(params["unified"]),
    }


class Configurable:
    """scikit-learn's estimator habit: the options are the keyword parameters of ``__init__`` (after
    ``space``), stored there as given by :meth:`store` and checked only where they are used."""

    @classmethod
    def option_names(cls) -> tuple:
        return tuple(name for name in inspect.signature(cls.__init__).parameters if name not in ("self", "space"))

    def store(self, given: dict) -> None:
        """Keep the options from ``given`` (``__init__``'s locals()): the signature is the one list of them."""
        self._params = {name: given[name] for name in self.option_names()}

    def get_params(self) -> dict:
        """The options as given to ``__init__`` (or ``set_params``)."""
        return dict(self._params)

    def set_params(self, **params):
        unknown = sorted(set(params) - set(self.option_names()))
        if unknown:
            raise NasflowError(f"unknown predictor option {unknown[0]!r}; the options are {', '.join(self.option_names())}")
        self._params.update(params)
        return self

    @property
    def options(self) -> dict:
        """The options checked (one NasflowError line for a bad one) and in normal form."""
        return checked_options(self._params)

    def __getattr__(self, name):
        # options read as attributes, checked: p.encoder, p.dim, p.zcp_proxies (a tuple, its default resolved)
        if name.startswith("_") or name not in self.option_names():
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        return self.options[name]


def json_options(options: dict) -> dict:
    """Checked options as JSON values: lists for tuples, None for a callable proxy (it cannot be stored)."""
    proxy = options["proxy"]
    return {**options, "proxy": proxy if isinstance(proxy, str) else None,
            "features": list(options["features"]), "zcp_proxies": list(options["zcp_proxies"])}  # fmt: skip


def check_archs(archs, spaces: Optional[list[str]], what: str) -> list[Arch]:
    """``archs`` as a list, each an Arch of one of ``spaces`` (None: of any space with a unified vocabulary)."""
    archs = list(archs)
    for a in archs:
        if not (is_unified(a) if spaces is None else isinstance(a, Arch) and a.space in spaces):
            kind = "cells of spaces with a unified vocabulary" if spaces is None else f"{' or '.join(spaces)} cells"
            raise DataError(f"{what} must be {kind}; got {a!r}")
    return archs


def check_labeled(archs, values, spaces: list[str], what: str) -> tuple[list[Arch], np.ndarray]:
    """Cells and one finite label each, at least two different ones: a ranking to learn."""
    archs = check_archs(archs, spaces, what)
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


def check_fit_inputs(archs, values, val_archs, val_values, space: str) -> tuple[tuple, Optional[tuple]]:
    """The training cells and labels, and the validation ones (None when neither is given)."""
    train = check_labeled(archs, values, [space], "training cells")
    if val_archs is None and val_values is None:
        return train, None
    if val_archs is None or val_values is None:
        raise DataError("pass both val_archs and val_values, or neither")
    return train, check_labeled(val_archs, val_values, [space], "validation cells")
