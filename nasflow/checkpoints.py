"""Checkpoints of a training in progress: safetensors for the tensors, JSON metadata for the rest.

Nothing here unpickles: safetensors reads a JSON header and raw buffers, so a planted or
damaged file can be refused but never run code (torch 2.2's ``torch.load`` cannot promise
that). A checkpoint names the training it belongs to (``key``); a file of another training,
of another format, or damaged is refused with one line that says how to recover.
"""
from __future__ import annotations

import json
from pathlib import Path

from .errors import CheckpointError
from .journal import atomic_write

FORMAT = "nasflow-training-checkpoint"
VERSION = 1


def save_training_state(path: Path, key: str, net, buffers, generator, epoch: int, seconds: float) -> None:
    """Write the state after ``epoch`` epochs atomically (temp file + rename): a kill mid-write leaves the
    previous checkpoint."""
    from safetensors.torch import save

    tensors = {f"model.{name}": value.detach().cpu().contiguous() for name, value in net.state_dict().items()}
    tensors.update({f"momentum.{i}": b.detach().cpu().contiguous() for i, b in enumerate(buffers)})
    tensors["generator"] = generator.get_state().cpu().contiguous()
    meta = {"format": FORMAT, "version": VERSION, "key": key, "epoch": int(epoch), "seconds": float(seconds)}
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda f: f.write(save(tensors, metadata={"nasflow": json.dumps(meta)})))


def load_training_state(path: Path, key: str, net, buffers, generator) -> tuple[int, float]:
    """Restore ``net``, ``buffers`` and ``generator`` in place from ``path``; returns (epochs done, seconds)."""
    import torch
    from safetensors import safe_open

    recover = f"delete {path} to train that cell from epoch 0"
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            meta = json.loads((f.metadata() or {}).get("nasflow", "null"))
            tensors = {name: f.get_tensor(name) for name in f.keys()}
    except Exception as e:  # safetensors raises several types for a damaged header or buffer
        raise CheckpointError(f"training checkpoint {path} is damaged or not a safetensors file "
                              f"({type(e).__name__}); {recover}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT or meta.get("version") != VERSION:
        raise CheckpointError(f"{path} is not a nasflow training checkpoint of version {VERSION}; {recover}")
    if meta.get("key") != key:
        raise CheckpointError(f"{path} belongs to another training (recipe, data or seed differ); {recover}")
    state = net.state_dict()
    expected = {f"model.{name}" for name in state} | {f"momentum.{i}" for i in range(len(buffers))} | {"generator"}
    if set(tensors) != expected:
        raise CheckpointError(f"{path} does not hold this network's state; {recover}")
    try:
        net.load_state_dict({name: tensors[f"model.{name}"] for name in state})
        with torch.no_grad():
            for i, b in enumerate(buffers):
                b.copy_(tensors[f"momentum.{i}"])
        generator.set_state(tensors["generator"])
        epoch, seconds = int(meta["epoch"]), float(meta["seconds"])
    except (RuntimeError, KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{path} does not fit this network ({type(e).__name__}); {recover}") from None
    return epoch, seconds
