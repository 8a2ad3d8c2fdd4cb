"""Constrained search on NB-201 CIFAR-10 (issue 21): nasflow's searchers against Optuna's constrained TPE.

Constraints (the issue's): latency on the Pixel 3 at most its median over the 15,625 cells, and params
<= 0.5 M. Every configuration searches on cifar10 valid for ``--budget`` queries and reports the test
accuracy of its best-valid feasible cell, over seeds 0..N-1:

- nasflow's searchers with ``--constraint``: they propose feasible cells only (a RestrictedSpace of the
  feasible cells), so every query is feasible. ``random`` there is constrained random search: uniform over
  the feasible cells.
- ``optuna-tpe``: a plain Optuna study, ``TPESampler(seed=seed)`` with its defaults, over NB-201's six edges
  as categorical parameters, constrained as Optuna 5 does it: each trial sets ``pixel3 - bound`` and
  ``params - bound`` with ``Trial.set_constraint`` (positive: violated), which the TPE sampler reads as
  ``constraints_func``'s values (deprecated in Optuna 5.0 in favour of it). Each trial is one oracle query,
  feasible or not: the objective queries the table for the suggested cell (the sampler learns from
  infeasible cells' accuracy as Optuna's constrained TPE is meant to). An infeasible trial spends a query and never counts as the best
  feasible cell; a cell suggested again is queried again and spends another query.

Reported per configuration: median queries until the table's best feasible cell (by valid) is queried
(a run that never finds it counts budget + 1), found x/N, mean final feasible test accuracy +- s.e., and
for Optuna the share of its trials that were infeasible.

    python benchmarks/constrained_search.py --seeds 30 --out runs/constrained
    python benchmarks/constrained_search.py --seeds 30 --configs bananas:fgp,bananas:scratch --out runs/constrained

Runs are stored under OUT (nasflow's compare records, Optuna's as JSON), so a stopped benchmark resumes.
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np

CHEAP = "random:none,evolution:none,local:none,tpe:none,bananas:none,optuna-tpe"


def constraints_of(space, table) -> list[str]:
    pixel3 = np.median(table.values("pixel3", space.enumerate()))
    return [f"pixel3<={pixel3:.12g}", "params<=0.5M"]


def nasflow_runs(searcher, predictor, seeds, out, base, jobs, warm_start=None) -> list[dict]:
    from nasflow.experiments import compare as cmp

    given = {**base, "warm_start": warm_start}
    if warm_start:  # compare names its records by searcher, predictor and seed: a warm start gets its own folder
        out = Path(out) / f"warm-{warm_start.replace(':', '-')}"
    return cmp.compare([searcher], [predictor], seeds, out, base=given, jobs=jobs)


def optuna_run(seed, budget, space, oracle, metrics, constraints, out) -> dict:
    """One constrained-TPE study; its record has the same fields as nasflow's compare records."""
    import optuna

    from nasflow.cost_metrics import parse_constraints

    path = Path(out) / "runs" / f"optuna-tpe-seed{seed}.json"
    if path.is_file():
        return json.loads(path.read_text())
    parsed = parse_constraints(constraints)
    encoding = space.categorical
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed))
    best_valid, best_test, curve_valid, curve_test, infeasible = -np.inf, None, [], [], 0

    def objective(trial):
        nonlocal best_valid, best_test, infeasible
        arch = encoding.decode({name: trial.suggest_categorical(name, list(values))
                                for name, values in encoding.choices.items()})
        evaluation = oracle.query(arch)
        violation = [float(metrics.values(c.metric, [arch])[0] - c.bound) for c in parsed]  # all constraints are <=
        for c, v in zip(parsed, violation):
            trial.set_constraint(c.metric, v)
        if max(violation) <= 0 and evaluation.valid > best_valid:
            best_valid, best_test = evaluation.valid, evaluation.test
        infeasible += max(violation) > 0
        curve_valid.append(None if best_test is None else best_valid)
        curve_test.append(best_test)
        return evaluation.valid

    study.optimize(objective, n_trials=budget)
    record = {"searcher": "optuna-tpe", "predictor": "none", "seed": seed, "best_valid": curve_valid,
              "best_test": curve_test, "infeasible": infeasible}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record) + "\n")
    return record


def summarise(name, records, target, budget) -> dict:
    hits = []
    for r in records:
        n = next((k + 1 for k, v in enumerate(r["best_valid"]) if v is not None and v >= target), None)
        hits.append(budget + 1 if n is None else n)
    finals = np.array([np.nan if r["best_test"][-1] is None else r["best_test"][-1] for r in records])
    se = np.nanstd(finals, ddof=1) / np.sqrt(np.sum(~np.isnan(finals))) if len(finals) > 1 else 0.0
    row = {"config": name, "runs": len(records), "median_queries": float(np.median(hits)),
           "found": int(sum(h <= budget for h in hits)), "mean_test": float(np.nanmean(finals)), "se_test": float(se)}
    if "infeasible" in records[0]:
        row["infeasible_share"] = float(np.mean([r["infeasible"] for r in records]) / budget)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=30)
    parser.add_argument("--budget", type=int, default=100)
    parser.add_argument("--configs", default=CHEAP,
                        help="SEARCHER:PREDICTOR[:WARM_START] or optuna-tpe, comma-separated  [default: %(default)s]")
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--out", default="runs/constrained")
    args = parser.parse_args()

    from nasflow import get_space
    from nasflow.cost_metrics import CostMetrics, feasible_space, open_metrics_table, parse_constraints

    space = get_space("nb201")
    oracle = space.open_oracle("nb201_cifar.csv", "cifar10")
    table = open_metrics_table("nb201_latency_ms.csv", space)
    metrics = CostMetrics(space, table)
    constraints = constraints_of(space, table)
    feasible = feasible_space(space, parse_constraints(constraints), metrics)
    target = max(oracle.query(a).valid for a in feasible.cells)
    print(f"constraints {', '.join(constraints)}: {feasible.size:,d} of {space.size:,d} cells feasible; "
          f"best feasible valid {target:.4f}")
    base = {"space": "nb201", "budget": args.budget, "benchmark": "nb201_cifar.csv", "dataset": "cifar10",
            "constraints": constraints, "metrics_table": "nb201_latency_ms.csv"}
    rows = []
    for config in (c.strip() for c in args.configs.split(",") if c.strip()):
        if config == "optuna-tpe":
            records = [optuna_run(seed, args.budget, space, oracle, metrics, constraints, args.out)
                       for seed in range(args.seeds)]
        else:
            searcher, predictor, *warm = config.split(":", 2)
            records = nasflow_runs(searcher, predictor, args.seeds, args.out, base, args.jobs, warm[0] if warm else None)
        rows.append(summarise(config, records, target, args.budget))
        print(json.dumps(rows[-1]), flush=True)
    print("\n| configuration | runs | median queries to best feasible | found | final feasible test (mean +- s.e.) |")
    print("|---|---|---|---|---|")
    for r in rows:
        extra = f" ({r['infeasible_share']:.0%} of trials infeasible)" if "infeasible_share" in r else ""
        print(f"| {r['config']}{extra} | {r['runs']} | {r['median_queries']:g} | {r['found']}/{r['runs']} | "
              f"{r['mean_test']:.2f} +- {r['se_test']:.2f} |")
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "summary.json").write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    os.environ.setdefault("NASFLOW_BENCHMARKS", str(Path(__file__).resolve().parents[2] / "shared" / "benchmarks"))
    main()
