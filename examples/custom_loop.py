"""Your own search loop around nasflow's Predictor (no nasflow.search involved).

Pre-train the predictor once (FGP, unlabeled, cached on disk), then repeat: fit it on
every cell queried so far, rank a pool of candidates (mutants of the best cells plus
random ones) and query only the top few. Runs as is on the NAS-Bench-201 table found in
$NASFLOW_BENCHMARKS (or pass its path as the first argument):

    python examples/custom_loop.py [path/to/nb201_cifar.csv]
"""
import sys

import numpy as np

from nasflow import Predictor, get_space

BUDGET, START, PER_STEP, POOL = 40, 10, 5, 200


def main(benchmark=None, seed=0):
    space = get_space("nb201")
    oracle = space.open_oracle(benchmark, "cifar10")  # searches on cifar10 valid, reports test
    rng = np.random.default_rng(seed)
    predictor = Predictor(space, encoder="gin", pretrain="fgp", seed=seed).pretrain(progress=True)

    queried = {}
    while len(queried) < START:
        arch = space.sample(rng)
        queried.setdefault(arch, oracle.query(arch))
    while len(queried) < BUDGET:
        archs = list(queried)
        predictor.fit(archs, [queried[a].valid for a in archs])
        parents = sorted(archs, key=lambda a: -queried[a].valid)[:10]
        pool = {space.mutate(parents[int(rng.integers(len(parents)))], rng) for _ in range(POOL // 2)}
        pool |= {space.sample(rng) for _ in range(POOL // 2)}
        pool = [a for a in pool if a not in queried]
        scores = predictor.predict(pool)
        for i in np.argsort(-scores)[: min(PER_STEP, BUDGET - len(queried))]:
            queried[pool[i]] = oracle.query(pool[i])
        best = max(queried, key=lambda a: queried[a].valid)
        print(f"{len(queried):3d} queries  best valid {queried[best].valid:.2f}  its test {queried[best].test:.2f}")
    print(f"best cell {space.format(best)}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else None)
