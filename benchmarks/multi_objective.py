"""Multi-objective search on NB-201 CIFAR-10 (issue 21): accuracy against latency on each of HELP's devices.

Objectives ``valid,-DEVICE`` for DEVICE in gold_6226, titan_rtx_256, pixel3 (``nb201_latency_ms.csv``), search
on valid, ``--budget`` queries, seeds 0..N-1. The figure of merit is the hypervolume of the front of the cells
queried after n queries, as a share of the table's true front's, under one fixed reference point: the median
valid accuracy (87.296) and the median latency of the device over all 15,625 cells
(``nasflow.objectives.reference_point``; the space's worst cell, 9.7% accuracy, would make any front look good).

- nasflow's searchers with ``--objectives`` (``nasflow compare``'s runs): random, nsga2 (NSGA-II on the space's
  mutations), tpe (Optuna's TPESampler with two directions, MOTPE, through nasflow's searcher), hvi
  (predictor-guided: predicted hypervolume improvement) with predictor none, scratch or fgp. Every query is a
  distinct cell (nasflow never queries a cell twice).
- ``optuna-nsga2`` and ``optuna-motpe``: plain Optuna studies, ``NSGAIISampler(seed=seed)`` and
  ``TPESampler(seed=seed)`` with their defaults, directions maximise/minimise, over NB-201's six edges as
  categorical parameters. Each trial is one oracle query: a cell suggested again is queried again and spends a
  query (its point counts once on the front).

    python benchmarks/multi_objective.py --seeds 30 --out runs/multi-objective
    python benchmarks/multi_objective.py --seeds 10 --configs hvi:fgp,hvi:scratch --devices pixel3 --out ...

Runs are stored under OUT/DEVICE (compare records, Optuna's as JSON), so a stopped benchmark resumes.
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np

CHEAP = "random:none,nsga2:none,tpe:none,optuna-nsga2,optuna-motpe"
DEVICES = ("gold_6226", "titan_rtx_256", "pixel3")
AT = (30, 50, 100)


def optuna_run(kind, seed, budget, space, oracle, objectives, reference, out) -> dict:
    """One plain Optuna study (``kind`` optuna-nsga2 or optuna-motpe): its hypervolume after each trial."""
    import optuna

    from nasflow.pareto import hypervolume

    path = Path(out) / "runs" / f"{kind}-seed{seed}.json"
    if path.is_file():
        return json.loads(path.read_text())
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = (optuna.samplers.NSGAIISampler(seed=seed) if kind == "optuna-nsga2"
               else optuna.samplers.TPESampler(seed=seed))
    directions = ["maximize" if s == "max" else "minimize" for s in objectives.senses]
    study = optuna.create_study(directions=directions, sampler=sampler)
    encoding = space.categorical
    archs = []

    def objective(trial):
        arch = encoding.decode({name: trial.suggest_categorical(name, list(values))
                                for name, values in encoding.choices.items()})
        archs.append(arch)
        return tuple(objectives.values([arch], [oracle.query(arch)])[0])

    study.optimize(objective, n_trials=budget)
    points = objectives.points(archs, [oracle.query(a) for a in archs])
    record = {"searcher": kind, "predictor": "none", "seed": seed, "repeats": len(archs) - len(set(archs)),
              "front": {"hypervolume": [hypervolume(points[:n], reference) for n in range(1, budget + 1)]}}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record) + "\n")
    return record


def summarise(name, records, true_hv) -> dict:
    curves = np.array([r["front"]["hypervolume"] for r in records], dtype=float) / true_hv
    row = {"config": name, "runs": len(records)}
    for n in AT:
        if n <= curves.shape[1]:
            v = curves[:, n - 1]
            row[f"n{n}"] = (float(v.mean()), float(v.std(ddof=1) / np.sqrt(len(v))) if len(v) > 1 else 0.0)
    if "repeats" in records[0]:
        row["repeats"] = float(np.mean([r["repeats"] for r in records]))
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=30)
    parser.add_argument("--budget", type=int, default=100)
    parser.add_argument("--configs", default=CHEAP,
                        help="SEARCHER:PREDICTOR, optuna-nsga2 or optuna-motpe, comma-separated  [default: %(default)s]")
    parser.add_argument("--devices", default=",".join(DEVICES))
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--out", default="runs/multi-objective")
    args = parser.parse_args()

    from nasflow import get_space
    from nasflow.cost_metrics import CostMetrics, open_metrics_table
    from nasflow.experiments import compare as cmp
    from nasflow.objectives import Objectives, describe_reference, reference_point, table_points
    from nasflow.pareto import hypervolume

    space = get_space("nb201")
    oracle = space.open_oracle("nb201_cifar.csv", "cifar10")
    metrics = CostMetrics(space, open_metrics_table("nb201_latency_ms.csv", space))
    results = {}
    for device in (d.strip() for d in args.devices.split(",") if d.strip()):
        objectives = Objectives(f"valid,-{device}", metrics)
        _, points = table_points(space, oracle, objectives)
        reference = reference_point(points, True)
        true_hv = hypervolume(points, reference)
        print(f"{device}: reference {describe_reference(reference, objectives, True)}; true front hypervolume "
              f"{true_hv:.6g}", flush=True)
        out = Path(args.out) / device
        base = {"space": "nb201", "budget": args.budget, "benchmark": "nb201_cifar.csv", "dataset": "cifar10",
                "metrics_table": "nb201_latency_ms.csv", "objectives": str(objectives)}
        rows = []
        for config in (c.strip() for c in args.configs.split(",") if c.strip()):
            if config.startswith("optuna-"):
                records = [optuna_run(config, seed, args.budget, space, oracle, objectives, reference, out)
                           for seed in range(args.seeds)]
            else:
                searcher, predictor = config.split(":")
                records = cmp.compare([searcher], [predictor], args.seeds, out, base=base, jobs=args.jobs)
            rows.append(summarise(config, records, true_hv))
            print(json.dumps(rows[-1]), flush=True)
        results[device] = rows
    print("\nhypervolume of the front after n queries / the true front's (median reference), mean +- s.e.")
    for device, rows in results.items():
        print(f"\n{device}\n\n| configuration | runs | " + " | ".join(f"n = {n}" for n in AT) + " |")
        print("|---|---|" + "---|" * len(AT))
        for r in rows:
            extra = f" ({r['repeats']:.1f} repeated cells per run)" if "repeats" in r else ""
            cells = [f"{r[f'n{n}'][0]:.1%} +- {r[f'n{n}'][1]:.1%}" if f"n{n}" in r else "" for n in AT]
            print(f"| {r['config']}{extra} | {r['runs']} | " + " | ".join(cells) + " |")
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "summary.json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    os.environ.setdefault("NASFLOW_BENCHMARKS", str(Path(__file__).resolve().parents[2] / "shared" / "benchmarks"))
    main()
