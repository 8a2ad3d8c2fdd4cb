"""Where a training runs: device names, numeric precision, threads, and what fits in memory.

Every check here is done before any work, so a wrong ``--device`` or ``--devices`` ends in
one line (``NasflowError``) instead of a CUDA traceback halfway through a search.
"""
from __future__ import annotations

import re
from contextlib import contextmanager
from typing import Optional, Sequence

from .errors import NasflowError

DEVICE_SPECS = "auto, cpu, cuda or cuda:N"


def cuda_count() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def resolve_device(spec: Optional[str] = "auto") -> str:
    """'cpu' or 'cuda:N' for a user's ``spec`` (auto takes CUDA device 0 when there is one)."""
    spec = "auto" if spec is None else str(spec).strip().lower()
    if spec == "cpu":
        return "cpu"
    match = re.fullmatch(r"(auto|cuda)(?::(\d+))?", spec)
    if match is None or (match.group(1) == "auto" and match.group(2) is not None):
        raise NasflowError(f"unknown device {spec!r}: use {DEVICE_SPECS}")
    count = cuda_count()
    if match.group(1) == "auto":
        return "cuda:0" if count else "cpu"
    index = int(match.group(2) or 0)
    if count == 0:
        raise NasflowError(f"--device {spec}: this machine has no CUDA device that torch can use; use --device cpu")
    if index >= count:
        raise NasflowError(f"--device {spec}: there is no CUDA device {index} (this machine has {count}: 0..{count - 1})")
    return f"cuda:{index}"


def parse_devices(text: Optional[str]) -> Optional[list[int]]:
    """``--devices 0,1`` as a list of CUDA indices (checked against the machine), or None."""
    if text is None:
        return None
    parts = [p.strip() for p in str(text).split(",")]
    if not parts or any(not re.fullmatch(r"\d+", p) for p in parts):
        raise NasflowError(f"--devices takes CUDA device indices separated by commas, e.g. 0,1; got {text!r}")
    indices = [int(p) for p in parts]
    for index in indices:
        resolve_device(f"cuda:{index}")
    return indices


def worker_device(device: str, devices: Optional[Sequence[int]], worker: int) -> str:
    """The device of worker number ``worker``: round-robin over ``devices`` when given (several workers per
    GPU allowed), else the run's ``device``."""
    if devices:
        return f"cuda:{devices[worker % len(devices)]}"
    return device


def resolve_precision(precision: Optional[str], device: str) -> str:
    """fp32 or bf16. auto: bf16 autocast on CUDA (7,000-8,600 vs 5,300 images/s fp32 on an H200, FINDINGS),
    fp32 on the CPU, whose bf16 kernels are slower than its fp32 ones on most processors."""
    precision = "auto" if precision is None else precision
    if precision not in ("auto", "fp32", "bf16"):
        raise NasflowError(f"unknown precision {precision!r}: use auto, fp32 or bf16")
    if precision == "auto":
        return "bf16" if device.startswith("cuda") else "fp32"
    if precision == "bf16" and not device.startswith("cuda"):
        raise NasflowError("--precision bf16 needs a CUDA device; on the CPU nasflow trains in fp32")
    return precision


def check_cuda_graph(cuda_graph: bool, device: str) -> bool:
    if cuda_graph and not device.startswith("cuda"):
        raise NasflowError("--cuda-graph needs a CUDA device (it captures the training step for the GPU)")
    return bool(cuda_graph)


def device_class(device: str) -> str:
    """What makes two trainings the same measurement: 'cpu', or the GPU's model (not its index)."""
    if device == "cpu":
        return "cpu"
    import torch

    return "cuda:" + torch.cuda.get_device_name(torch.device(device))


def check_fits(nbytes: int, device: str, what: str = "the data") -> None:
    """Refuse data that would not fit in the device's free memory (with room left for the network)."""
    if device == "cpu":
        return
    import torch

    free, _total = torch.cuda.mem_get_info(torch.device(device))
    headroom = 0.8  # activations, gradients and the cuDNN workspace need the rest
    if nbytes > headroom * free:
        raise NasflowError(
            f"{what} needs {nbytes / 2**30:.2f} GiB on {device}, which has {free / 2**30:.2f} GiB free "
            f"(nasflow keeps {int(100 * (1 - headroom))}% for training); use fewer or smaller images, or --device cpu")


@contextmanager
def torch_threads(count: Optional[int]):
    """Run torch on ``count`` intra-op threads, restoring the setting after; None or 0 leave it as it is.

    nasflow's one way to limit torch's threads: a ``with`` block, or a decorator of a whole
    function (a command, a worker's job). Leaving the setting does not import torch, so a
    worker that never uses it stays light.
    """
    if not count:
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(int(count))
    try:
        yield
    finally:
        torch.set_num_threads(before)
