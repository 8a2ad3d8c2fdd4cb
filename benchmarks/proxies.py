"""Zero-cost proxies on NB-201: seconds per cell per proxy, and Spearman rho with the
benchmark's CIFAR-10 accuracy on a seeded random sample of cells.

    nice -n 10 python benchmarks/proxies.py --sample 1000 --seed 0 --workers 2 --time-cells 12

Part 1 times each network proxy alone on ``--time-cells`` random cells (one process, one
torch thread; CPU and wall seconds) and all five together (they share the network build and
one forward pass).
Part 2 computes every proxy on ``--sample`` cells drawn without replacement with ``--seed``
(cached in $NASFLOW_CACHE, so a rerun is free; ``--cached-only`` reports on the cells a
run cut short had finished) and prints rho with cifar10_test and
cifar10_valid from the shared NB-201 table ($NASFLOW_BENCHMARKS).
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from nasflow.devices import torch_threads
from nasflow.metrics import spearman_rho
from nasflow.proxies import PROXIES, cached_scores, zero_cost_table
from nasflow.proxies_grad import NETWORK_PROXIES, PROBE_BATCH, cell_scores, probe_batch
from nasflow.spaces import get_space


@torch_threads(1)
def time_proxies(space, n: int, seed: int) -> None:
    rng = np.random.default_rng(seed + 1)
    archs = [space.sample(rng) for _ in range(n)]
    x, y = probe_batch()
    print(f"seconds per cell (mean over {n} random cells, official C=16 N=5, batch {PROBE_BATCH}, 1 thread):")
    # CPU seconds are what a core spends; wall seconds also count waiting for a core on a shared machine
    print(f"  {'proxies':<36} {'cpu':>6} {'wall':>6}")
    for names in [[n] for n in NETWORK_PROXIES] + [list(NETWORK_PROXIES)]:
        wall, cpu = time.perf_counter(), time.process_time()
        for arch in archs:
            cell_scores(space, arch, names, x, y)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        print(f"  {'+'.join(names):<36} {cpu / n:6.3f} {wall / n:6.3f}")


def correlations(space, sample: int, seed: int, workers: int, cached_only: bool = False) -> None:
    oracle = space.open_oracle(dataset="cifar10")
    rng = np.random.default_rng(seed)
    archs = [space.arch_at(int(i)) for i in rng.choice(space.size, size=sample, replace=False)]
    names = sorted(PROXIES)
    if cached_only:
        # cells are scored and cached in sample order, so the cached ones of a run cut short
        # are the sample's first cells: still a seeded uniform sample, only smaller
        have = [cached_scores(space, n).keys() for n in NETWORK_PROXIES]
        archs = [a for a in archs if all(a.key in h for h in have)]
        print(f"--cached-only: {len(archs)} of the {sample} sampled cells have every proxy cached")
        sample = len(archs)
    start = time.perf_counter()
    scores = zero_cost_table(space, archs, names, progress=True, workers=workers)
    wall = time.perf_counter() - start
    evals = [oracle.query(a) for a in archs]
    test = np.array([e.test for e in evals])
    valid = np.array([e.valid for e in evals])
    print(f"{sample} cells (seed {seed}), {workers} worker(s): {wall:.0f} s wall "
          f"({wall / sample:.2f} s per cell for all proxies not already cached)")
    print("| proxy | rho cifar10_test | rho cifar10_valid | non-finite |")
    print("|---|---|---|---|")
    for n in names:
        bad = int((~np.isfinite(scores[n])).sum())
        print(f"| {n} | {spearman_rho(scores[n], test):.3f} | {spearman_rho(scores[n], valid):.3f} | {bad} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sample", type=int, default=1000, help="random NB-201 cells to correlate")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--time-cells", type=int, default=12, help="cells for the per-proxy timing (0: skip)")
    parser.add_argument("--cached-only", action="store_true",
                        help="correlate only the sampled cells already scored in the cache (a run cut short)")
    args = parser.parse_args()
    space = get_space("nb201")
    if args.time_cells:
        time_proxies(space, args.time_cells, args.seed)
    correlations(space, args.sample, args.seed, args.workers, args.cached_only)


if __name__ == "__main__":
    main()
