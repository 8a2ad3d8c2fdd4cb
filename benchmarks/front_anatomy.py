"""How much of a table's true accuracy-latency front a search must find to reach a share of its hypervolume.

For each device of ``nb201_latency_ms.csv`` (objectives ``valid,-DEVICE`` on NB-201 CIFAR-10, reference point:
the median cell, as ``benchmarks/multi_objective.py`` measures), prints:

- the size of the true front (non-dominated layer 1) and the hypervolume share of layer 2 and layer 3 alone:
  what a search gets that found every cell of that layer and none better;
- the fewest true-front cells that, added to every other cell of the table, reach ``--share`` of the true
  hypervolume (greedy by hypervolume gain: a lower bound on the front cells a search must find exactly);
- the fewest cells of all that reach the share (greedy).

    NASFLOW_BENCHMARKS=/work/shared/benchmarks python benchmarks/front_anatomy.py --share 0.98
"""
from __future__ import annotations

import argparse

import numpy as np

from nasflow import get_space
from nasflow.cost_metrics import CostMetrics, open_metrics_table
from nasflow.objectives import Objectives, reference_point, table_points
from nasflow.pareto import hypervolume, nondominated_ranks

DEVICES = ("gold_6226", "titan_rtx_256", "pixel3")


def greedy(base: list, candidates: np.ndarray, reference, target: float) -> int:
    """How many of ``candidates``, added one at a time by largest hypervolume gain to ``base``, reach ``target``."""
    chosen, used = list(base), set()
    current = hypervolume(np.array(chosen), reference) if chosen else 0.0
    while current < target and len(used) < len(candidates):
        gain, best = max((hypervolume(np.array(chosen + [candidates[i]]), reference) - current, i)
                         for i in range(len(candidates)) if i not in used)
        chosen.append(candidates[best])
        used.add(best)
        current += gain
    return len(used)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--share", type=float, default=0.98)
    args = parser.parse_args()
    space = get_space("nb201")
    oracle = space.open_oracle("nb201_cifar.csv", "cifar10")
    table = open_metrics_table("nb201_latency_ms.csv", space)
    print("| device | true front | layer 2 alone | layer 3 alone | front cells needed on top of all others "
          f"for {args.share:.0%} | fewest cells for {args.share:.0%} |")
    print("|---|---|---|---|---|---|")
    for device in DEVICES:
        objectives = Objectives(f"valid,-{device}", CostMetrics(space, table))
        _, points = table_points(space, oracle, objectives)
        reference = reference_point(points, True)
        total = hypervolume(points, reference)
        ranks = nondominated_ranks(points)
        front, second, third = (points[ranks == k] for k in (0, 1, 2))
        # every cell but the front's is dominated by layer 2, so layer 2 stands for all of them
        on_top = greedy(list(second), front, reference, args.share * total)
        fewest = greedy([], points[ranks <= 3], reference, args.share * total)
        print(f"| {device} | {len(front)} cells | {hypervolume(second, reference) / total:.1%} | "
              f"{hypervolume(third, reference) / total:.1%} | {on_top} of {len(front)} | {fewest} |")


if __name__ == "__main__":
    main()
