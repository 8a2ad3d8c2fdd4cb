"""Zero-cost proxies that run the real network once or twice at initialisation.

Definitions follow the papers that introduced them (written here from the papers' formulas):

- ``synflow`` (Tanaka et al. 2020; Abdelfattah et al. 2021): every parameter made
  non-negative, float64, BN in inference mode with fresh statistics (an identity), one
  all-ones input; score = sum over conv/linear weights of |theta * dR/dtheta| with R the sum
  of the outputs. Data-independent.
- ``snip`` (Lee et al. 2019): sum over conv/linear weights of |theta * dL/dtheta|,
  L the cross-entropy of the probe batch.
- ``grad_norm``: sum over conv/linear layers of the L2 norm of dL/dW (same backward pass as snip).
- ``jacov`` (Mellor et al. 2020, v1): correlations between the per-image input gradients of
  the summed output; score = -sum(log(v + 1e-5) + 1 / (v + 1e-5)) over the eigenvalues v.
- ``naswot`` (Mellor et al. 2021): binary ReLU activation codes of the batch; score =
  log|det K| with K_ij = number of ReLU units on which images i and j agree (0 when K is
  singular: an integer K that is not singular has log|det K| >= 0).

Every network is built with the same torch seed (``INIT_SEED``), so a cell's score does not
depend on which other cells are scored, in which order, or in which worker process.

The probe batch: CIFAR-10 is not available offline, so the data-dependent proxies see
``PROBE_BATCH`` images of scikit-learn's bundled 8x8 digits (a seeded, class-balanced draw,
upsampled to the network's 32x32, repeated over its 3 channels, standardised) with their
10 labels. They are real images with a real 10-class labelling, but much simpler than CIFAR-10,
so published CIFAR-10 correlations are anchors to compare with, not targets to reproduce.
"""
from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from functools import lru_cache
from typing import Iterator, Sequence

import numpy as np

from .errors import NasflowError

NETWORK_PROXIES = {
    "synflow": "synaptic flow: sum |theta * dR/dtheta|, |weights|, all-ones input (data-free)",
    "snip": "SNIP saliency: sum |theta * dL/dtheta| on the probe batch",
    "grad_norm": "sum of the L2 norms of the layers' loss gradients on the probe batch",
    "jacov": "input-Jacobian correlation score (Mellor et al. v1) on the probe batch",
    "naswot": "log|det| of the ReLU-code agreement kernel (Mellor et al. 2021) on the probe batch",
}
INIT_SEED = 0
PROBE_SEED = 0
# zero-cost-nas scored NB-201 with 64 CIFAR-10 images and NASWOT used 128; 32 halves the cost
# of 64 (2.2 s vs ~4 s per cell for all five on the shared 2-core machine, measured)
PROBE_BATCH = 32
IMAGE_SIZE = 32
JACOV_K = 1e-5
# in the cache file names: cached scores of another batch or seed are not these scores
CACHE_VERSION = f"1-b{PROBE_BATCH}-s{PROBE_SEED}-i{INIT_SEED}"


def probe_batch(batch: int = PROBE_BATCH, seed: int = PROBE_SEED, channels: int = 3, size: int = IMAGE_SIZE):
    """``(x, y)``: ``batch`` digits drawn class-balanced with ``seed``, as float32 (batch, channels, size, size)."""
    import torch
    import torch.nn.functional as F
    from sklearn.datasets import load_digits

    d = load_digits()
    rng = np.random.default_rng(seed)
    classes = np.unique(d.target)
    per_class = [rng.permutation(np.flatnonzero(d.target == c)) for c in classes]
    # round-robin over classes keeps every label present even in small batches
    order = [idx[i] for i in range(max(map(len, per_class))) for idx in per_class if i < len(idx)]
    chosen = np.array(order[:batch])
    x = torch.as_tensor(d.images[chosen], dtype=torch.float32)[:, None]
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False).repeat(1, channels, 1, 1)
    x = (x - x.mean()) / x.std()
    return x.contiguous(), torch.as_tensor(d.target[chosen], dtype=torch.int64)


def _weighted_layers(net):
    from torch import nn

    return [m for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


def synflow(net, input_shape: Sequence[int]) -> float:
    import torch
    from torch import nn

    net = net.double()
    for m in net.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
    net.eval()
    with torch.no_grad():
        for p in net.state_dict().values():
            p.abs_()
    net.zero_grad()
    net(torch.ones(1, *input_shape, dtype=torch.float64)).sum().backward()
    return float(sum((m.weight * m.weight.grad).abs().sum() for m in _weighted_layers(net) if m.weight.grad is not None))


def snip_and_grad_norm(net, x, y) -> tuple[float, float]:
    import torch.nn.functional as F

    net.train()
    net.zero_grad()
    F.cross_entropy(net(x), y).backward()
    layers = [m for m in _weighted_layers(net) if m.weight.grad is not None]
    snip = sum(float((m.weight * m.weight.grad).abs().sum()) for m in layers)
    grad_norm = sum(float(m.weight.grad.norm()) for m in layers)
    return snip, grad_norm


def jacov_score(jacobians: np.ndarray) -> float:
    """Mellor et al.'s v1 score of the (batch, features) input-gradient matrix."""
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = np.corrcoef(jacobians)
    # an image whose gradient is constant (e.g. zero: the output ignores the input) tells the
    # network's images apart no better than a copy would: count it as perfectly correlated,
    # which gives the lowest score instead of NaN
    corr = np.nan_to_num(corr, nan=1.0)
    v = np.linalg.eigvalsh(corr)
    return float(-np.sum(np.log(v + JACOV_K) + 1.0 / (v + JACOV_K)))


def jacov_and_naswot(net, x) -> tuple[float, float]:
    import torch
    from torch import nn

    net.train()
    net.zero_grad()
    n = x.shape[0]
    kernel = torch.zeros(n, n, dtype=torch.float64)

    def count_agreements(module, inputs, output):
        codes = (inputs[0].detach().reshape(n, -1) > 0).double()
        kernel.add_(codes @ codes.T + (1.0 - codes) @ (1.0 - codes).T)

    hooks = [m.register_forward_hook(count_agreements) for m in net.modules() if isinstance(m, nn.ReLU)]
    if not hooks:
        raise NasflowError("naswot reads the codes of nn.ReLU modules, and this network has none (functional relu?)")
    try:
        x = x.clone().requires_grad_(True)
        out = net(x)
        out.backward(torch.ones_like(out))
    finally:
        for h in hooks:
            h.remove()
    jacov = jacov_score(x.grad.reshape(n, -1).double().numpy())
    sign, logdet = torch.linalg.slogdet(kernel)
    # K is an integer matrix, so a non-singular K has |det| >= 1 and log|det| >= 0: a singular
    # one (images the ReLUs cannot tell apart, e.g. the all-`none` cell) scores 0, still the lowest
    naswot = float(logdet) if sign != 0 and torch.isfinite(logdet) else 0.0
    return jacov, naswot


def cell_scores(space, arch, names: Sequence[str], x, y) -> dict:
    """The requested proxies of one cell, on its network built with ``INIT_SEED``."""
    import torch

    with torch.random.fork_rng():
        torch.manual_seed(INIT_SEED)
        net = space.network(arch)
    out = {}
    if "snip" in names or "grad_norm" in names:
        out["snip"], out["grad_norm"] = snip_and_grad_norm(net, x, y)
    if "jacov" in names or "naswot" in names:
        out["jacov"], out["naswot"] = jacov_and_naswot(net, x)
    if "synflow" in names:
        # last: it rewrites the weights in place
        out["synflow"] = synflow(net, tuple(x.shape[1:]))
    return {k: out[k] for k in names}


def _score_chunk(job) -> list[dict]:
    space, archs, names = job
    x, y = _cached_probe()
    return [cell_scores(space, a, names, x, y) for a in archs]


@lru_cache(maxsize=1)
def _cached_probe():
    return probe_batch()


def _one_thread_worker():
    import torch

    torch.set_num_threads(1)


def iter_network_scores(space, archs: Sequence, names: Sequence[str], workers: int = 1,
                        chunk: int = 4) -> Iterator[tuple[int, list[dict]]]:
    """Yield ``(start, scores)`` per chunk of ``archs`` in order, ``scores`` one dict per cell.

    With ``workers > 1`` the chunks run in spawned processes of one torch thread each
    (spawn, not fork: forking a process that already ran torch threads can deadlock).
    """
    names = tuple(names)
    jobs = [(space, list(archs[i:i + chunk]), names) for i in range(0, len(archs), chunk)]
    if workers <= 1 or len(jobs) <= 1:
        from .proxies import one_thread

        with one_thread():
            for i, job in enumerate(jobs):
                yield i * chunk, _score_chunk(job)
        return
    # an executor, not a Pool: a worker that dies raises BrokenProcessPool instead of hanging
    with ProcessPoolExecutor(min(workers, len(jobs)), mp_context=multiprocessing.get_context("spawn"),
                             initializer=_one_thread_worker) as pool:
        for i, scores in enumerate(pool.map(_score_chunk, jobs)):
            yield i * chunk, scores
