"""Checkpoints of a training in progress: safetensors for the tensors, JSON metadata for the rest.

Nothing here unpickles: safetensors reads a JSON header and raw buffers, so a planted or
damaged file can be refused but never run code (torch 2.2's ``torch.load`` cannot promise
that). A checkpoint names the training it belongs to (``key``); a file of another training,
of another format, or damaged is refused with one line that says how to recover. The file
format is nasflow.safe_io's, shared with the predictor's checkpoints.
"""
from __future__ import annotations

from pathlib import Path

from .errors import CheckpointError
from .safe_io import LegacyCheckpointError, flatten, load, save, unflatten

FORMAT = "nasflow-training-checkpoint"
VERSION = 1
WHAT = "training checkpoint"


def save_training_state(path: Path, key: str, net, buffers, generator, epoch: int, seconds: float) -> None:
    """Write the state after ``epoch`` epochs atomically: a kill mid-write leaves the previous checkpoint."""
    tensors = flatten({"model": net.state_dict(), "momentum": {str(i): b for i, b in enumerate(buffers)},
                       "generator": {"state": generator.get_state()}})
    save(path, tensors, {"format": FORMAT, "version": VERSION, "key": key, "epoch": int(epoch), "seconds": float(seconds)})


def _read(path: Path, key: str, tensors: bool = True) -> tuple[dict, dict, str]:
    """(metadata, tensors, how to recover) of a state of training ``key`` (``tensors=False``: the header alone, no
    tensors); any other file is refused in one line."""
    recover = f"delete {path} to train that cell from epoch 0"
    try:
        meta, tensors = load(path, FORMAT, WHAT, tensors=tensors)
    except LegacyCheckpointError:  # its advice (convert-checkpoint) is for predictors, not trainings
        raise CheckpointError(f"{path} is a torch pickle file, not a nasflow {WHAT}; {recover}") from None
    except CheckpointError as e:
        raise CheckpointError(f"{e}; {recover}") from None
    if meta.get("version") != VERSION:
        raise CheckpointError(f"{path} is a {WHAT} of version {meta.get('version')!r}, not {VERSION}; {recover}")
    if meta.get("key") != key:
        raise CheckpointError(f"{path} belongs to another training (recipe, data or seed differ); {recover}")
    return meta, tensors, recover


def training_progress(path: Path, key: str) -> tuple[int, float]:
    """(epochs done, seconds) of the state of training ``key`` in ``path``, without restoring it: which saved
    state a continued training should start from."""
    meta, _, recover = _read(path, key, tensors=False)
    try:
        return int(meta["epoch"]), float(meta["seconds"])
    except (KeyError, TypeError, ValueError):
        raise CheckpointError(f"{path} does not say how far its training got; {recover}") from None


def load_training_state(path: Path, key: str, net, buffers, generator) -> tuple[int, float]:
    """Restore ``net``, ``buffers`` and ``generator`` in place from ``path``; returns (epochs done, seconds)."""
    import torch

    meta, tensors, recover = _read(path, key)
    try:
        groups = unflatten(tensors, ("model", "momentum", "generator"), path)
    except CheckpointError as e:
        raise CheckpointError(f"{e}; {recover}") from None
    state = net.state_dict()
    if set(groups["model"]) != set(state) or set(groups["momentum"]) != {str(i) for i in range(len(buffers))} \
            or set(groups["generator"]) != {"state"}:
        raise CheckpointError(f"{path} does not hold this network's state; {recover}")
    try:
        net.load_state_dict(groups["model"])
        with torch.no_grad():
            for i, b in enumerate(buffers):
                b.copy_(groups["momentum"][str(i)])
        generator.set_state(groups["generator"]["state"])
        epoch, seconds = int(meta["epoch"]), float(meta["seconds"])
    except (RuntimeError, KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{path} does not fit this network ({type(e).__name__}); {recover}") from None
    return epoch, seconds
