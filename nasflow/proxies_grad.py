"""Zero-cost proxies that run the real network at initialisation: synflow on its own all-ones
input, the four data-dependent ones together from one train-mode forward pass of the probe batch
(two backward passes: loss -> weights, summed output -> input).

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

from .devices import torch_threads
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
# zero-cost-nas scored NB-201 with 64 CIFAR-10 images and NASWOT used 128; fewer images cost
# proportionally less, and the whole space must fit in an hour on 2 cores (docs/RESULTS.md)
PROBE_BATCH = 16
IMAGE_SIZE = 32
JACOV_K = 1e-5
# in the cache file names: cached scores of another batch or seed are not these scores;
# synflow never sees the batch, so its version names only what it depends on
CACHE_VERSIONS = {name: f"1-b{PROBE_BATCH}-s{PROBE_SEED}-i{INIT_SEED}" for name in NETWORK_PROXIES}
CACHE_VERSIONS["synflow"] = f"1-i{INIT_SEED}"


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


class _AgreementKernel:
    """NASWOT's kernel summed over every nn.ReLU module: K_ij = units on which images i and j agree.

    Agreements = features - Hamming distance = 2 c_i.c_j - |c_i| - |c_j| + features: one
    float32 product per ReLU (exact: its entries are integer counts below 2^24) instead of two
    float64 ones. ReLUs fed the very same tensor (a cell's edges out of one node) see the same
    codes, so each such tensor's term is computed once and added once per ReLU.
    """

    def __init__(self, n: int):
        import torch

        self.n = n
        self.kernel = torch.zeros(n, n, dtype=torch.float64)
        # keyed by the input's id and in-place version; holding the tensor keeps its id unique
        self._terms: dict = {}

    def hook(self, module, inputs, output):
        import torch

        z = inputs[0]
        key = (id(z), z._version)
        if key not in self._terms:
            codes = (z.detach() > 0).reshape(self.n, -1).to(torch.float32)
            gram = (codes @ codes.T).double()
            ones = gram.diagonal()
            self._terms[key] = (z, 2.0 * gram - ones[:, None] - ones[None, :] + codes.shape[1])
        self.kernel.add_(self._terms[key][1])

    def logdet(self) -> float:
        import torch

        self._terms.clear()
        sign, logdet = torch.linalg.slogdet(self.kernel)
        # K is an integer matrix, so a non-singular K has |det| >= 1 and log|det| >= 0: a singular
        # one (images the ReLUs cannot tell apart, e.g. the all-`none` cell) scores 0, still the lowest
        return float(logdet) if sign != 0 and torch.isfinite(logdet) else 0.0


def data_scores(net, x, y, names: Sequence[str]) -> dict:
    """snip, grad_norm, jacov and naswot (those in ``names``) from ONE train-mode forward pass.

    The loss gradient w.r.t. the weights (snip, grad_norm) and the gradient of the summed
    output w.r.t. the input (jacov) are two backward passes over the same graph; the ReLU
    codes (naswot) are read during that forward. Train-mode BN normalises with the batch's own
    statistics, so every proxy sees the same network function as it would in a pass of its own.
    """
    import torch
    import torch.nn.functional as F
    from torch import nn

    want_loss = "snip" in names or "grad_norm" in names
    want_jacov = "jacov" in names
    want_naswot = "naswot" in names
    if not (want_loss or want_jacov or want_naswot):
        return {}
    n = x.shape[0]
    net.train()
    x = x.detach().clone().requires_grad_(want_jacov)
    hooks = []
    if want_naswot:
        kernel = _AgreementKernel(n)
        hooks = [m.register_forward_hook(kernel.hook) for m in net.modules() if isinstance(m, nn.ReLU)]
        if not hooks:
            raise NasflowError("naswot reads the codes of nn.ReLU modules, and this network has none (functional relu?)")
    try:
        out = net(x)
    finally:
        for h in hooks:
            h.remove()
    scores = {}
    if want_loss:
        weights = [m.weight for m in _weighted_layers(net)]
        grads = torch.autograd.grad(F.cross_entropy(out, y), weights, retain_graph=want_jacov, allow_unused=True)
        used = [(w, g) for w, g in zip(weights, grads) if g is not None]
        scores["snip"] = sum(float((w * g).abs().sum()) for w, g in used)
        scores["grad_norm"] = sum(float(g.norm()) for _, g in used)
    if want_jacov:
        (jacobian,) = torch.autograd.grad(out.sum(), x)
        scores["jacov"] = jacov_score(jacobian.reshape(n, -1).double().numpy())
    if want_naswot:
        scores["naswot"] = kernel.logdet()
    return {name: scores[name] for name in names if name in scores}


def cell_scores(space, arch, names: Sequence[str], x, y) -> dict:
    """The requested proxies of one cell, on its network built with ``INIT_SEED``."""
    import torch

    with torch.random.fork_rng():
        torch.manual_seed(INIT_SEED)
        net = space.network(arch)
    out = data_scores(net, x, y, [n for n in names if n != "synflow"])
    if "synflow" in names:
        # last: it rewrites the weights in place
        out["synflow"] = synflow(net, tuple(x.shape[1:]))
    return {k: out[k] for k in names}


def _score_chunk(job) -> list[dict]:
    space, archs, names = job
    x, y = _cached_probe()
    # one thread per process: the networks are small (see nasflow.proxies.count_macs), and a pool's
    # workers already share the cores
    with torch_threads(1):
        return [cell_scores(space, a, names, x, y) for a in archs]


@lru_cache(maxsize=1)
def _cached_probe():
    return probe_batch()


def iter_network_scores(space, archs: Sequence, names: Sequence[str], workers: int = 1,
                        chunk: int = 4) -> Iterator[tuple[int, list[dict]]]:
    """Yield ``(start, scores)`` per chunk of ``archs`` in order, ``scores`` one dict per cell.

    With ``workers > 1`` the chunks run in spawned processes of one torch thread each
    (spawn, not fork: forking a process that already ran torch threads can deadlock).
    """
    names = tuple(names)
    jobs = [(space, list(archs[i:i + chunk]), names) for i in range(0, len(archs), chunk)]
    if workers <= 1 or len(jobs) <= 1:
        for i, job in enumerate(jobs):
            yield i * chunk, _score_chunk(job)
        return
    # an executor, not a Pool: a worker that dies raises BrokenProcessPool instead of hanging
    with ProcessPoolExecutor(min(workers, len(jobs)), mp_context=multiprocessing.get_context("spawn")) as pool:
        for i, scores in enumerate(pool.map(_score_chunk, jobs)):
            yield i * chunk, scores
