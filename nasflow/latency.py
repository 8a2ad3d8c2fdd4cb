"""Latency measured live on this machine: the median of repeated timed forward passes of a cell's network.

``measure_latency(space, archs, LatencySetup(...))`` returns milliseconds per forward pass of a batch for each
cell: the network is built once per cell, put in eval mode, run ``warmup`` times untimed (allocator and
kernel selection settle) and then ``repeats`` times timed; the median resists a noisy neighbour on shared cores
better than the mean. Values are cached on disk like the zero-cost proxies, keyed by the space, the network
and batch shape and the hardware: the CPU's model name or the GPU's, since a latency is a fact of one machine.
The cost metric ``latency`` of ``nasflow.cost_metrics`` is this: for a search that trains, the training
oracle's own network on a batch of its data's images on its device (``TrainingOracle.latency_setup``); for a
search of a table, the space's official network (the one ``params`` and ``flops`` count) on 32x32 images on
the CPU; a batch of one image unless the run says otherwise (``--latency-batch``).
"""
from __future__ import annotations

import hashlib
import platform
import time
from dataclasses import asdict, dataclass
from typing import Optional, Sequence

import numpy as np

from . import cache
from .core import Arch
from .devices import device_class, resolve_device, torch_threads
from .errors import NasflowError

# part of the cache file name: bump it whenever how a latency is measured changes
CACHE_VERSION = "1"
SAVE_EVERY = 30.0  # seconds between cache writes, so an interrupted measurement keeps its work


@dataclass(frozen=True)
class LatencySetup:
    """What is timed: the network's shape (None: the space's official width and cells), the batch and where."""

    batch_size: int = 1
    image_size: int = 32  # the height, and the width unless image_width says otherwise
    image_width: Optional[int] = None
    in_channels: int = 3
    num_classes: int = 10
    width: Optional[int] = None
    cells: Optional[int] = None
    device: str = "cpu"
    repeats: int = 10
    warmup: int = 3
    threads: int = 1  # one: a latency is measured alone; more threads on shared cores only add noise

    def __post_init__(self):
        for name in ("batch_size", "image_size", "in_channels", "num_classes", "repeats", "threads", "image_width"):
            value = getattr(self, name)
            if value is None and name == "image_width":
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise NasflowError(f"latency {name.replace('_', ' ')} must be an integer >= 1, got {value!r}")


def hardware_name(device: str) -> str:
    """The machine a latency belongs to: the GPU's model, or the CPU's."""
    if device != "cpu":
        return device_class(device)
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return "cpu:" + line.split(":", 1)[1].strip()
    except OSError:  # not Linux: the platform's own name
        pass
    return "cpu:" + (platform.processor() or platform.machine() or "unknown")


def cache_path(space, setup: LatencySetup):
    device = resolve_device(setup.device)
    shape = {**asdict(setup), "device": hardware_name(device)}
    digest = hashlib.sha256(repr(sorted(shape.items())).encode()).hexdigest()[:16]
    return cache.entry("latency", f"{space.name}-{digest}", CACHE_VERSION, ".npz")


def measure_latency(space, archs: Sequence[Arch], setup: LatencySetup = LatencySetup(), progress: bool = False,
                    use_cache: bool = True) -> np.ndarray:
    """Median milliseconds per forward pass of each cell's network (float64, in the order of ``archs``)."""
    if space.network is None:
        raise NasflowError(f"search space {space.name!r} cannot build networks, so it has no live latency")
    archs = list(archs)
    path = cache_path(space, setup) if use_cache else None
    known = _load(path) if path is not None else {}
    todo = list({a.key: a for a in archs if a.key not in known}.values())
    if todo:
        _measure(space, todo, setup, known, path, progress)
    return np.array([known[a.key] for a in archs], dtype=np.float64)


def _measure(space, archs, setup: LatencySetup, known: dict, path, progress: bool) -> None:
    import torch
    from tqdm.auto import tqdm

    device = resolve_device(setup.device)
    options = {k: v for k, v in (("width", setup.width), ("cells", setup.cells)) if v is not None}
    x = torch.randn(setup.batch_size, setup.in_channels, setup.image_size, setup.image_width or setup.image_size,
                    device=device,
                    generator=torch.Generator(device=device).manual_seed(0))
    last_save = time.monotonic()
    with torch_threads(setup.threads), torch.inference_mode():
        for arch in tqdm(archs, desc="measuring latency", unit="cell", disable=not progress):
            net = space.network(arch, num_classes=setup.num_classes, in_channels=setup.in_channels, **options)
            net = net.to(device).eval()
            times = []
            for k in range(setup.warmup + setup.repeats):
                if device != "cpu":
                    torch.cuda.synchronize(device)
                start = time.perf_counter()
                net(x)
                if device != "cpu":
                    torch.cuda.synchronize(device)  # the kernels ran, not only their launch
                if k >= setup.warmup:
                    times.append(time.perf_counter() - start)
            known[arch.key] = 1000.0 * float(np.median(times))
            if path is not None and time.monotonic() - last_save > SAVE_EVERY:
                _save(path, known)
                last_save = time.monotonic()
    if path is not None:
        _save(path, known)


LATENCIES = "a latency table"


def _positive(values: np.ndarray) -> np.ndarray:
    return np.isfinite(values) & (values > 0)  # a forward pass takes some time


def _load(path) -> dict:
    return cache.load_values(path, LATENCIES, _positive)


def _save(path, known: dict) -> None:
    cache.save_values(path, known, LATENCIES, _positive)
