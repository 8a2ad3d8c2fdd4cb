"""Zero-cost proxies: cheap per-cell scores computed from the network, without training.

``zero_cost(space, archs, name)`` returns one score per cell; ``zero_cost_table(space, archs,
names)`` several at once, sharing the network passes. Each proxy is a registered function;
scores are cached on disk per space and proxy (``$NASFLOW_CACHE`` or ``~/.nasflow/cache``),
so a whole space is paid for once. Adding a proxy is one function decorated with ``@proxy(...)``.

The ``params`` and ``flops`` proxies count the space's official network (NB-201: C=16, N=5,
10 classes; NB-101: 128-channel stem, 3 stacks of 3 cells) on a 32x32 input. ``flops`` is
NAS-Bench-201's convention: multiply-accumulates of convolutions and linear layers.
A space may offer ``network_counts(archs)`` (exact closed-form counts for many cells at
once); otherwise every network is built and counted.

``synflow``, ``snip``, ``grad_norm``, ``jacov`` and ``naswot`` run the official network at
initialisation on a fixed, seeded probe batch (see :mod:`nasflow.proxies_grad` for their
definitions and the batch); they are computed together per cell, optionally in worker processes.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np

from . import cache
from .cache import cache_dir  # noqa: F401  (its old home: nasflow.proxies.cache_dir keeps working)
from .core import Arch
from .devices import torch_threads
from .errors import NasflowError

IMAGE_SIZE = 32
# seconds between cache writes during a long computation, so an interrupted run keeps its work
SAVE_EVERY = 30.0


@dataclass(frozen=True)
class Proxy:
    name: str
    compute: Optional[Callable]  # (space, archs, progress) -> np.ndarray of len(archs)
    description: str
    # part of the cache file name: change it whenever the definition changes
    version: str = "1"
    # computed by nasflow.proxies_grad on the built network, together with the other such proxies
    network: bool = False


PROXIES: dict[str, Proxy] = {}


def proxy(name: str, description: str, version: str = "1"):
    def register(fn):
        PROXIES[name] = Proxy(name, fn, description, version)
        return fn

    return register


def check_names(names: Sequence[str]) -> list[str]:
    """``names`` as a list, or a one-line error naming the first unknown proxy."""
    names = list(names)
    for name in names:
        if name not in PROXIES:
            raise NasflowError(f"unknown zero-cost proxy {name!r}; choose one of {', '.join(sorted(PROXIES))}")
    if not names:
        raise NasflowError(f"no zero-cost proxy named; choose from {', '.join(sorted(PROXIES))}")
    return names


def cache_path(space, name: str) -> Path:
    return cache.entry("proxies", f"{space.name}-{name}", PROXIES[name].version, ".npz")


def cached_scores(space, name: str) -> dict:
    """``{arch key: score}`` of every cell of ``space`` whose ``name`` score is in the cache."""
    return _load(cache_path(space, check_names([name])[0]))


def zero_cost(space, archs: Sequence[Arch], name: str, progress: bool = False, cache: bool = True,
              workers: int = 1) -> np.ndarray:
    """Score of proxy ``name`` for every cell in ``archs`` (float64, same order)."""
    return zero_cost_table(space, archs, [name], progress=progress, cache=cache, workers=workers)[name]


def zero_cost_table(space, archs: Sequence[Arch], names: Sequence[str], progress: bool = False, cache: bool = True,
                    workers: int = 1) -> dict[str, np.ndarray]:
    """``{name: scores}`` for several proxies; the network proxies share one build and pass per cell.

    ``workers > 1`` scores the network proxies in that many spawned processes.
    """
    names = check_names(names)
    archs = list(archs)
    keys = [a.key for a in archs]
    paths = {n: cache_path(space, n) for n in names}
    known = {n: _load(paths[n]) if cache else {} for n in names}

    def missing(n):
        return list({k: a for k, a in zip(keys, archs) if k not in known[n]}.values())

    for n in names:
        todo = missing(n)
        if todo and not PROXIES[n].network:
            values = np.asarray(PROXIES[n].compute(space, todo, progress), dtype=np.float64)
            known[n].update(zip((a.key for a in todo), values.tolist()))
            if cache:
                _save(paths[n], known[n])
    network_names = [n for n in names if PROXIES[n].network]
    todo = list({a.key: a for n in network_names for a in missing(n)}.values())
    if todo:
        _network_scores(space, todo, network_names, known, paths if cache else None, progress, workers)
    return {n: np.array([known[n][k] for k in keys], dtype=np.float64) for n in names}


def proxy_vote(space, archs: Sequence[Arch], names: Sequence[str], progress: bool = False, workers: int = 1) -> np.ndarray:
    """The mean over ``names`` of each cell's rank among ``archs`` by that proxy, in [0, 1].

    Proxies err on different cells, so a vote ranks the space better than any one of them
    (NB-201, synflow+jacov+naswot: docs/RESULTS.md, issue 8), and ranks put proxies whose
    scales differ by tens of orders of magnitude on one footing. Tied cells (isomorphic ones
    score alike) share their average rank: an arbitrary order among them would be a ranking
    target FGP is trained to reproduce.
    """
    from .metrics import rankdata

    table = zero_cost_table(space, archs, names, progress=progress, workers=workers)
    if len(archs) < 2:
        return np.zeros(len(archs))
    return (np.mean([rankdata(table[n]) for n in table], axis=0) - 1.0) / (len(archs) - 1)


# the score-based encoding's default proxy vector: every proxy nasflow has
ZCP_DEFAULT = ("params", "flops", "synflow", "snip", "grad_norm", "jacov", "naswot")


def zcp_features(space, archs: Sequence[Arch], names: Sequence[str] = ZCP_DEFAULT, progress: bool = False,
                 workers: int = 1) -> np.ndarray:
    """The score-based encoding: ``(len(archs), len(names))`` proxy scores, sign * log(1 + |score|).

    The log tames tails that span tens of orders of magnitude (synflow reaches 1e50) so a
    standardised column is not one outlier; being monotone, it keeps every proxy's ranking.
    """
    table = zero_cost_table(space, archs, names, progress=progress, workers=workers)
    scores = np.stack([table[n] for n in names], axis=1) if len(archs) else np.zeros((0, len(names)))
    return np.sign(scores) * np.log1p(np.abs(scores))


def _network_scores(space, archs, names, known, paths, progress, workers) -> None:
    from tqdm.auto import tqdm

    from .proxies_grad import iter_network_scores

    if space.network is None:
        raise NasflowError(f"search space {space.name!r} cannot build networks, so it has no {names[0]} proxy")
    last_save = time.monotonic()
    with tqdm(total=len(archs), desc="zero-cost proxies", unit="cell", disable=not progress) as bar:
        for start, scores in iter_network_scores(space, archs, names, workers=workers):
            for arch, score in zip(archs[start:start + len(scores)], scores):
                for n in names:
                    known[n][arch.key] = score[n]
            bar.update(len(scores))
            if paths and time.monotonic() - last_save > SAVE_EVERY:
                for n in names:
                    _save(paths[n], known[n])
                last_save = time.monotonic()
    if paths:
        for n in names:
            _save(paths[n], known[n])


# a proxy score table; every proxy scores finitely: NaN or inf in one is damage, not a score
SCORES = "a proxy score table"


def _load(path: Path) -> dict:
    """``{arch key: score}`` of a cache file; {} if absent or unusable (warned once: its cells are scored again)."""
    return cache.load_values(path, SCORES, np.isfinite)


def _save(path: Path, table: dict) -> None:
    cache.save_values(path, table, SCORES, np.isfinite)


def count_params(model) -> int:
    """Trainable parameters of a torch module."""
    return int(sum(p.numel() for p in model.parameters() if p.requires_grad))


def count_macs(model, input_shape: Sequence[int]) -> int:
    """Multiply-accumulates of one forward pass on one input of ``input_shape`` (C, H, W).

    Conv2d and Linear layers only, plus their biases (NAS-Bench-201's FLOPs convention);
    measured with forward hooks so it holds for any network.
    """
    import torch
    from torch import nn

    total = 0

    def conv_hook(m, inputs, out):
        nonlocal total
        per_pixel = m.in_channels * m.out_channels * m.kernel_size[0] * m.kernel_size[1] // m.groups
        total += (per_pixel + (m.out_channels if m.bias is not None else 0)) * out.shape[2] * out.shape[3]

    def linear_hook(m, inputs, out):
        nonlocal total
        total += m.in_features * m.out_features + (m.out_features if m.bias is not None else 0)

    handles = []
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            handles.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.Linear):
            handles.append(m.register_forward_hook(linear_hook))
    was_training = model.training
    model.eval()
    try:
        # one thread: small networks gain nothing from more, and on a shared 2-core machine spinning
        # threads made a small training step 10x slower (0.016 s vs 0.21 s CPU, measured)
        with torch.no_grad(), torch_threads(1):
            model(torch.zeros(1, *input_shape))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return int(total)


def _official_counts(space, archs: list, progress: bool) -> dict:
    if space.network_counts is not None:
        return space.network_counts(archs, image_size=IMAGE_SIZE)
    if space.network is None:
        raise NasflowError(f"search space {space.name!r} cannot build networks, so it has no params/flops proxies")
    from tqdm.auto import tqdm

    params, flops = [], []
    with torch_threads(1):  # small networks: see count_macs
        for arch in tqdm(archs, desc="counting networks", unit="cell", disable=not progress):
            net = space.network(arch)
            params.append(count_params(net))
            flops.append(count_macs(net, (3, IMAGE_SIZE, IMAGE_SIZE)))
    return {"params": np.array(params), "flops": np.array(flops)}


@proxy("params", "trainable parameters of the space's official network")
def _params(space, archs, progress):
    return _official_counts(space, archs, progress)["params"]


@proxy("flops", "multiply-accumulates of the official network on one 32x32 image (conv + linear)")
def _flops(space, archs, progress):
    return _official_counts(space, archs, progress)["flops"]


def _register_network_proxies() -> None:
    from .proxies_grad import CACHE_VERSIONS, NETWORK_PROXIES

    for name, description in NETWORK_PROXIES.items():
        PROXIES[name] = Proxy(name, None, description, version=CACHE_VERSIONS[name], network=True)


_register_network_proxies()
