"""Predictor checkpoints and the FGP pre-training cache on disk, as plain data.

Both are safetensors files written and read by :mod:`nasflow.safe_io` (tensors, plus a
JSON document in the header), so loading one cannot run code. Everything read is checked
here (keys, types, groups) and reported as one CheckpointError line; ``predictor.py``
turns the checked state into a ``Predictor``.

Format version 1 was a ``torch.save`` dict; it is read only by ``read_legacy`` (for
``nasflow convert-checkpoint``), through :mod:`nasflow.torchfile`, never ``torch.load``.
"""
from __future__ import annotations

import dataclasses
import inspect
import math
from pathlib import Path
from typing import Callable, Optional

from nasflow import cache, safe_io, torchfile
from nasflow.errors import CheckpointError

FORMAT = "nasflow-predictor"
VERSION = 2
LEGACY_VERSION = 1
CACHE_FORMAT = "nasflow-fgp-pretraining"
# 2: the key is predictors.fgp.FGPConfig (version 1 entries, keyed by hand, are pre-trained again once)
CACHE_VERSION = 2
PRETRAINED_PARTS = ("encoder", "proxy_head", "flow_head")
# Predictor options whose default is None, and the type they take otherwise
_OPTIONAL = {"finetune_seed": int, "zcp_proxies": list, "proxy": str}
# The last commit whose Predictor had the options removed since (screens that docs/RESULTS.md records as no gain).
REMOVED_AFTER = "2f0f924"
# Removed option -> the value the remaining code implements: a file saved with that value loads, another is refused.
REMOVED_OPTIONS = {
    "flow_variant": "operator", "flow_dim": 32, "flow_target": "standardised", "flow_loss": "mean",
    "head_init": "random", "encoder_lr_scale": 1.0, "clip_grad": None,
    "finetune_flow_weight": 0.0, "finetune_proxy_weight": 0.0,
}
# Removed options that did nothing at the values above, whatever their own value: the batch of the pretext task
# kept during fine-tuning (finetune_*_weight > 0).
INERT_OPTIONS = ("finetune_batch",)


@dataclasses.dataclass
class CheckpointState:
    """What a checkpoint holds, checked for shape: tensors are per group (name -> tensor)."""

    space: str
    vocab: list
    config: dict
    pretrained: Optional[dict]  # part -> state dict
    model: Optional[dict]  # the score model's state dict


def write(path, state: CheckpointState) -> None:
    document = {
        "format": FORMAT,
        "version": VERSION,
        "space": state.space,
        "vocab": list(state.vocab),
        "config": state.config,
        "pretrained": sorted(state.pretrained) if state.pretrained is not None else None,
        "model": state.model is not None,
    }
    groups = {**(state.pretrained or {}), **({"model": state.model} if state.model is not None else {})}
    safe_io.save(path, safe_io.flatten(groups), document)


def read(path, init: Callable) -> CheckpointState:
    """The checked state of a checkpoint written by :func:`write`; ``init`` is ``Predictor.__init__``."""
    document, tensors = safe_io.load(path, FORMAT, "predictor checkpoint")
    if document.get("version") != VERSION:
        raise CheckpointError(f"{path} has checkpoint version {document.get('version')!r}; this nasflow reads {VERSION}")
    pretrained = document.get("pretrained")
    if pretrained is not None and (not isinstance(pretrained, list) or not set(pretrained) <= set(PRETRAINED_PARTS)):
        raise CheckpointError(f"{path}: 'pretrained' must list parts among {', '.join(PRETRAINED_PARTS)}")
    if not isinstance(document.get("model"), bool):
        raise CheckpointError(f"{path}: 'model' must be true or false")
    groups = safe_io.unflatten(tensors, PRETRAINED_PARTS + ("model",), path)
    return _checked(path, document, init,
                    pretrained=None if pretrained is None else {p: groups[p] for p in pretrained},
                    model=groups["model"] if document["model"] else None)  # fmt: skip


def read_legacy(path, init: Callable) -> CheckpointState:
    """The state of a version-1 (``torch.save``) checkpoint, read without running code."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"old checkpoint not found: {path}")
    try:
        with open(path, "rb") as f:
            state = torchfile.read(f)
    except torchfile.TorchScriptError as e:
        raise CheckpointError(f"{path} is {e}; refusing to convert it") from None
    except torchfile.TorchFileError as e:
        raise CheckpointError(f"{path} is not an old nasflow checkpoint ({e})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not an old nasflow predictor checkpoint")
    if state.get("version") != LEGACY_VERSION:
        raise CheckpointError(f"{path} has checkpoint version {state.get('version')!r}; convert reads version {LEGACY_VERSION}")
    pretrained, model = state.get("pretrained"), state.get("model")
    if pretrained is not None and not (isinstance(pretrained, dict) and set(pretrained) <= set(PRETRAINED_PARTS)):
        raise CheckpointError(f"{path}: 'pretrained' must map parts among {', '.join(PRETRAINED_PARTS)} to weights")
    for part in [model] + list((pretrained or {}).values()):
        if part is not None and not _is_state_dict(part):
            raise CheckpointError(f"{path}: the weights are not a mapping of names to tensors")
    return _checked(path, state, init, pretrained=pretrained, model=model)


def _is_state_dict(value) -> bool:
    import torch

    return isinstance(value, dict) and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in value.items())


def _checked(path, document: dict, init: Callable, pretrained, model) -> CheckpointState:
    space, vocab, config = document.get("space"), document.get("vocab"), document.get("config")
    if not isinstance(space, str):
        raise CheckpointError(f"{path} has no 'space' (the search space name); it is damaged or not a predictor")
    if not isinstance(vocab, list) or not all(isinstance(v, str) for v in vocab):
        raise CheckpointError(f"{path}: 'vocab' must be a list of node labels")
    if not isinstance(config, dict):
        raise CheckpointError(f"{path}: 'config' must be a mapping of Predictor options")
    config = without_removed(config, path)
    check_config(config, init, path)
    return CheckpointState(space, vocab, config, pretrained and dict(pretrained), model and dict(model))


def without_removed(config: dict, where) -> dict:
    """``config`` less the options removed since :data:`REMOVED_AFTER`, each of which must hold the value
    the remaining code implements (a file trained otherwise cannot be reproduced here)."""
    for key, implemented in REMOVED_OPTIONS.items():
        if key in config and config[key] != implemented:
            raise CheckpointError(f"{where} was trained with {key}={config[key]!r}, an option removed after nasflow "
                                  f"commit {REMOVED_AFTER}; load it with that commit or re-train it")  # fmt: skip
    return {k: v for k, v in config.items() if k not in REMOVED_OPTIONS and k not in INERT_OPTIONS}


def check_config(config: dict, init: Callable, where) -> None:
    """Each option is one ``init`` takes, with a value of the type its default has."""
    params = {name: p.default for name, p in inspect.signature(init).parameters.items()
              if p.default is not inspect.Parameter.empty}  # fmt: skip
    for key, value in config.items():
        if key not in params:
            raise CheckpointError(f"{where}: unknown predictor option {key!r}; was it saved by a newer nasflow?")
        expected = _OPTIONAL.get(key, type(params[key]))
        if value is None and (key in _OPTIONAL or params[key] is None):
            continue
        if not _has_type(value, expected):
            raise CheckpointError(
                f"{where}: predictor option {key}={value!r:.60} is not {_type_name(expected)}; the file is damaged"
            )


def _has_type(value, expected) -> bool:
    if expected is bool:
        return isinstance(value, bool)
    if expected is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if expected is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if expected in (list, tuple):  # features, zcp_proxies: lists of names
        return isinstance(value, list) and all(isinstance(v, str) for v in value)
    return isinstance(value, expected)


def _type_name(expected) -> str:
    return {bool: "true/false", int: "an integer", float: "a number", list: "a list of names",
            tuple: "a list of names", str: "a string"}.get(expected, expected.__name__)  # fmt: skip


# ---------------------------------------------------------------- the FGP pre-training cache

def write_pretraining(path: Path, key: dict, parts: dict, losses) -> None:
    """Cache pre-trained parts (part -> state dict) and the per-epoch losses under ``key``."""
    import torch

    document = {"format": CACHE_FORMAT, "version": CACHE_VERSION, "key": key, "parts": sorted(parts)}
    tensors = {**safe_io.flatten(parts), "stats/losses": torch.tensor(losses, dtype=torch.float64)}
    safe_io.save(path, tensors, document)


def read_pretraining(path: Path, key: dict) -> Optional[dict]:
    """The cached parts plus 'losses' (a list), or None if the entry is absent or (with one
    warning) damaged, foreign or written for another key: a bad cache entry only costs a re-run."""
    import torch

    if not cache.readable(path):
        return None
    try:
        document, tensors = safe_io.load(path, CACHE_FORMAT, "pre-training cache")
        parts = document.get("parts")
        if document.get("version") != CACHE_VERSION or document.get("key") != key or not isinstance(parts, list):
            return _unusable(path, "written for other pre-training options")
        if not {"encoder", "proxy_head"} <= set(parts) <= set(PRETRAINED_PARTS):
            return _unusable(path, "parts missing")
        groups = safe_io.unflatten(tensors, PRETRAINED_PARTS + ("stats",), path)
    except CheckpointError as e:
        # safe_io's line without the path it starts with: "is not a readable ... (why)" -> "not a readable ... (why)"
        return _unusable(path, str(e).replace(f"{path} is ", "", 1).replace(f"{path} ", "", 1))
    losses = groups["stats"].get("losses")
    weights = [t for p in parts for t in groups[p].values()]
    if losses is None or losses.dim() != 1 or not all(torch.isfinite(t).all() for t in weights):
        return _unusable(path, "losses missing or non-finite weights")
    return {**{p: groups[p] for p in parts}, "losses": losses.tolist()}


def _unusable(path, why: str) -> None:
    cache.report_damaged(path, why)
    return None
