"""A latency predictor from a few measured cells (issue 21, item 3): Spearman rho over all NB-201 cells.

For each device of nb201_latency_ms.csv (HELP's measured latency: Xeon Gold 6226, Titan RTX at batch 256,
Pixel 3) and each seed, 20 cells are drawn uniformly (seeded), their measured latency is the label, and a
``nasflow.Predictor`` (FGP-pretrained GIN, the same encoder that ranks accuracy, fine-tuned on the 20 cells)
ranks all 15,625 cells; reported: Spearman rho between its scores and the measured latency, mean +- s.e.
over seeds, next to the closed-form FLOPs and params of each cell as zero-shot rankers (no cell measured) and
``nasflow.op_cost.OpCostModel`` fitted on the same 20 cells (latency as a constant plus one cost per
operation label, ridge-regularised: latency is close to a sum of per-operation costs).
``--features zcp`` also feeds the score head the cells' closed-form params and FLOPs; ``--no-gnn`` measures the
cost model alone (seconds instead of minutes). ``--design doptimal`` measures the cells that
``OpCostModel.choose_cells`` picks (a greedy D-optimal design, seeded) instead of uniform ones.

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
    parser.add_argument("--no-gnn", action="store_true", help="only the op-cost model and the zero-shot rankers")
    parser.add_argument("--design", default="uniform", choices=("uniform", "doptimal"),
                        help="which cells are measured: uniform draws, or OpCostModel.choose_cells")
    parser.add_argument("--out", default=None, help="JSON file for the per-seed numbers")
    args = parser.parse_args()

    from nasflow import Predictor, get_space
    from nasflow.cost_metrics import CostMetrics, open_metrics_table
    from nasflow.devices import torch_threads
    from nasflow.metrics import spearman_rho
    from nasflow.op_cost import OpCostModel

    space = get_space("nb201")
    cells = space.enumerate()
    metrics = CostMetrics(space, open_metrics_table("nb201_latency_ms.csv", space))
    baselines = {name: metrics.values(name, cells) for name in ("flops", "params")}
    options = {"features": ["zcp"], "zcp_proxies": ["params", "flops"]} if args.features else {}
    index_of = {a: i for i, a in enumerate(cells)}
    rows = []
    for device in DEVICES:
        latency = metrics.values(device, cells)
        rhos, ridge = [], []
        for seed in range(args.seeds):
            if args.design == "doptimal":
                picked = np.array([index_of[a] for a in OpCostModel(space).choose_cells(cells, args.cells, seed=seed)])
            else:
                picked = np.random.default_rng([seed, 21]).choice(len(cells), size=args.cells, replace=False)
            measured = [cells[i] for i in picked]
            if not args.no_gnn:
                with torch_threads(1):
                    predictor = Predictor(space, pretrain=args.pretrain, seed=seed, **options)
                    predictor.fit(measured, latency[picked])
                    rhos.append(spearman_rho(predictor.predict(cells), latency))
            ridge.append(spearman_rho(OpCostModel(space).fit(measured, latency[picked]).predict(cells), latency))
            print(json.dumps({"device": device, "seed": seed, "rho": rhos[-1] if rhos else None,
                              "rho_op_cost": ridge[-1]}), flush=True)
        rhos = rhos or [float("nan")]
        row = {"device": device, "cells": args.cells, "seeds": args.seeds, "rho_mean": float(np.mean(rhos)),
               "rho_se": float(np.std(rhos, ddof=1) / np.sqrt(len(rhos))) if len(rhos) > 1 else 0.0,
               "rho_min": float(np.min(rhos)), "rhos": [float(r) for r in rhos],
               "rho_op_cost": float(np.mean(ridge)), "rho_op_cost_se": float(np.std(ridge, ddof=1) / np.sqrt(len(ridge)))
               if len(ridge) > 1 else 0.0, "rho_op_cost_min": float(np.min(ridge)),
               **{f"rho_{name}": spearman_rho(values, latency) for name, values in baselines.items()}}
        rows.append(row)
    print(f"\n| device | GNN predictor on {args.cells} cells: rho mean +- s.e. (min) | op-cost model on the same cells | "
          f"FLOPs rho | params rho |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['device']} | {r['rho_mean']:.3f} +- {r['rho_se']:.3f} ({r['rho_min']:.3f}) | "
              f"{r['rho_op_cost']:.3f} +- {r['rho_op_cost_se']:.3f} ({r['rho_op_cost_min']:.3f}) | "
              f"{r['rho_flops']:.3f} | {r['rho_params']:.3f} |")
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    os.environ.setdefault("NASFLOW_BENCHMARKS", str(Path(__file__).resolve().parents[2] / "shared" / "benchmarks"))
    main()
