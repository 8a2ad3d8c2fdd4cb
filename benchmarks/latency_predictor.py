"""A latency predictor from a few measured cells (issue 21, item 3): Spearman rho over all NB-201 cells.

For each device of nb201_latency_ms.csv (HELP's measured latency: Xeon Gold 6226, Titan RTX at batch 256,
Pixel 3) and each seed, 20 cells are drawn uniformly (seeded), their measured latency is the label, and a
``nasflow.Predictor`` (FGP-pretrained GIN, the same encoder that ranks accuracy, fine-tuned on the 20 cells)
ranks all 15,625 cells; reported: Spearman rho between its scores and the measured latency, mean +- s.e.
over seeds, next to the closed-form FLOPs and params of each cell as zero-shot rankers (no cell measured) and
a reference fitted on the same 20 cells: ridge regression of latency on how many times each operation occurs
in the cell (latency is close to a sum of per-operation costs).
``--features zcp`` also feeds the score head the cells' closed-form params and FLOPs.

    python benchmarks/latency_predictor.py --seeds 5 --cells 20
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np

DEVICES = ("gold_6226", "titan_rtx_256", "pixel3")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--cells", type=int, default=20)
    parser.add_argument("--pretrain", default="fgp", choices=("fgp", "none"))
    parser.add_argument("--features", default="", choices=("", "zcp"))
    parser.add_argument("--out", default=None, help="JSON file for the per-seed numbers")
    args = parser.parse_args()

    from nasflow import Predictor, get_space
    from nasflow.cost_metrics import CostMetrics, open_metrics_table
    from nasflow.devices import torch_threads
    from nasflow.metrics import spearman_rho

    space = get_space("nb201")
    cells = space.enumerate()
    metrics = CostMetrics(space, open_metrics_table("nb201_latency_ms.csv", space))
    baselines = {name: metrics.values(name, cells) for name in ("flops", "params")}
    counts = np.array([[space.to_graph(a).ops.count(op) for op in space.ops] for a in cells], dtype=np.float64)
    counts = np.c_[counts, np.ones(len(cells))]
    options = {"features": ["zcp"], "zcp_proxies": ["params", "flops"]} if args.features else {}
    rows = []
    for device in DEVICES:
        latency = metrics.values(device, cells)
        rhos, ridge = [], []
        for seed in range(args.seeds):
            rng = np.random.default_rng([seed, 21])
            picked = rng.choice(len(cells), size=args.cells, replace=False)
            with torch_threads(1):
                predictor = Predictor(space, pretrain=args.pretrain, seed=seed, **options)
                predictor.fit([cells[i] for i in picked], latency[picked])
                scores = predictor.predict(cells)
            rhos.append(spearman_rho(scores, latency))
            x = counts[picked]
            w = np.linalg.solve(x.T @ x + 0.1 * np.eye(x.shape[1]), x.T @ latency[picked])
            ridge.append(spearman_rho(counts @ w, latency))
            print(json.dumps({"device": device, "seed": seed, "rho": rhos[-1]}), flush=True)
        row = {"device": device, "cells": args.cells, "seeds": args.seeds, "rho_mean": float(np.mean(rhos)),
               "rho_se": float(np.std(rhos, ddof=1) / np.sqrt(len(rhos))) if len(rhos) > 1 else 0.0,
               "rho_min": float(np.min(rhos)), "rhos": [float(r) for r in rhos],
               "rho_op_count_ridge": float(np.mean(ridge)),
               **{f"rho_{name}": spearman_rho(values, latency) for name, values in baselines.items()}}
        rows.append(row)
    print(f"\n| device | predictor on {args.cells} cells: rho mean +- s.e. (min) | op-count ridge on the same cells | "
          f"FLOPs rho | params rho |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['device']} | {r['rho_mean']:.3f} +- {r['rho_se']:.3f} ({r['rho_min']:.3f}) | "
              f"{r['rho_op_count_ridge']:.3f} | "
              f"{r['rho_flops']:.3f} | {r['rho_params']:.3f} |")
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    os.environ.setdefault("NASFLOW_BENCHMARKS", str(Path(__file__).resolve().parents[2] / "shared" / "benchmarks"))
    main()
