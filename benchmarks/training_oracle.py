"""Seconds per query and accuracy of the default training oracle (embedded digits), and a
whole default search with it.

    python benchmarks/training_oracle.py --cells 8 --budget 50

Part 1 trains ``--cells`` random NB-201 cells plus the all-`none` cell with the default
configuration and a fresh cache. Part 2 runs regularized evolution for ``--budget`` queries
on the same oracle (a fresh cache again) and reports the wall time and the best cell.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import numpy as np

from nasflow.loop import search
from nasflow.searchers import get_searcher
from nasflow.spaces import get_space
from nasflow.training import default_training_oracle


def per_query(space, n: int, seed: int, epochs=None) -> None:
    rng = np.random.default_rng(seed)
    archs = [space.sample(rng) for _ in range(n)] + [space.make(["none"] * 6)]
    with tempfile.TemporaryDirectory() as cache:
        oracle, text = default_training_oracle(space, epochs=epochs, seed=seed, cache_dir=cache)
        print(text)
        print(f"{'cell':<100} {'wall s':>6} {'cpu s':>6} {'valid':>7} {'test':>7} {'params':>7}")
        costs, cpus = [], []
        for arch in archs:
            cpu = time.process_time()
            ev = oracle.query(arch)
            cpus.append(time.process_time() - cpu)
            costs.append(ev.cost)
            print(f"{arch.key:<100} {ev.cost:6.2f} {cpus[-1]:6.2f} {ev.valid:7.2f} {ev.test:7.2f} {ev.extra['params']:7d}")
        start = time.perf_counter()
        oracle.query(archs[0])
        cached = time.perf_counter() - start
    print(f"seconds per query over {len(costs)} cells: mean {statistics.mean(costs):.2f}, "
          f"median {statistics.median(costs):.2f}, max {max(costs):.2f} (CPU mean {statistics.mean(cpus):.2f}); "
          f"a cached query: {cached * 1000:.1f} ms")


def whole_search(space, budget: int, seed: int, epochs=None) -> None:
    with tempfile.TemporaryDirectory() as cache:
        oracle, _ = default_training_oracle(space, epochs=epochs, seed=seed, cache_dir=cache)
        start, cpu = time.perf_counter(), time.process_time()
        result = search(space, oracle, get_searcher("evolution", space, seed=seed), budget=budget, seed=seed)
        wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    best = result.best
    print(f"evolution, budget {budget}, seed {seed}: {wall:.1f} s wall ({wall / budget:.2f} s per query), {cpu:.1f} s CPU; "
          f"best valid {best.best_valid:.2f}, its test {best.best_test:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=8, help="random cells to time (plus the all-none cell)")
    parser.add_argument("--budget", type=int, default=50, help="queries of the evolution run (0: skip)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=None, help="training epochs (default: the oracle's)")
    args = parser.parse_args()
    space = get_space("nb201")
    per_query(space, args.cells, args.seed, args.epochs)
    if args.budget:
        whole_search(space, args.budget, args.seed, args.epochs)


if __name__ == "__main__":
    main()
