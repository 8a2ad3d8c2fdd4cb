"""Multi-fidelity search on NB-201 CIFAR-10 and NB-101 (issue 20): nasflow's schedules against its best full-fidelity
search and the peers, all in training epochs.

Runs each ``--configs`` entry ``SEARCHER[,KEY=VALUE...]:PREDICTOR:SCHEDULE[:WARM_START]`` (KEY=VALUE: the searcher's
options, as ``--searcher-option``) over seeds 0..N-1 (``nasflow compare``'s
runs, stored under OUT/nasflow, so a stopped benchmark resumes; SCHEDULE ``none`` is a full-fidelity run whose
queries cost the full fidelity each), reads the peers' records (``benchmarks/multi_fidelity_peers.py``'s OUT) and the
reference's (``--reference``: a ``nasflow compare`` output of the full-fidelity reference, BANANAS+FGP with the
zero-cost warm start; its mean final test may be given instead with ``--reference-test`` where its 30 runs are
recorded elsewhere, e.g. docs/RESULTS.md; ``--reference-config SEARCHER:PREDICTOR`` picks one configuration of a
grid's folder). Prints, per configuration, the mean +- s.e. test accuracy (full fidelity) of the best cell after
1/10, 1/5, 1/3, 1/2 and all of the reference's budget (100 full trainings: NB-201 2k, 4k, 6.7k, 10k and 20k
epochs), the epochs until the mean curve reaches the reference's mean test after its budget (to the 3 decimals
it is reported with), and whether the issue's targets hold:

- the best nasflow configuration reaches the reference's mean final test with <= 1/3 of its epochs;
- it is ahead of every peer at every cost point from 2,000 epochs on (mean; and paired by seed where both have it).

It also prints the best configuration minus each other nasflow configuration, paired by seed, and with
``--blocks N`` the table again for each block of N seeds, with the unrounded mean at 1/3 of the budget: a target
met by the mean of many seeds can still miss on one block of the issue's 30.

    python benchmarks/multi_fidelity.py --seeds 30 --configs evolution:none:asha:min=12,max=200,eta=27 \\
        --peers runs/mf/peers --reference-test 94.373 --out runs/mf

``--space nb101`` searches the 20,001 labelled cells of nb101_20k.jsonl (4/12/36/108 epochs). That table has no
test accuracies: the figure of merit is then the best cell's validation accuracy at 108 epochs (the one searched
on, as the NB-101 search results of docs/RESULTS.md report it).
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np

SHARES = (0.1, 0.2, 1 / 3, 0.5, 1.0)  # cost points as shares of the reference's budget
REFERENCE_TRAININGS = 100  # the reference's budget: 100 full trainings (NB-201: 20,000 epochs)
TABLES = {"nb201": "nb201_cifar.csv", "nb101": "nb101_20k.jsonl"}


def cost_points(reference_epochs: int) -> tuple[int, ...]:
    return tuple(int(round(share * reference_epochs)) for share in SHARES)


def parse_config(text: str) -> tuple[str, str, str, str | None, dict | None]:
    """(searcher, predictor, schedule, warm start or None, searcher options or None) of
    SEARCHER[,KEY=VALUE...]:PREDICTOR:SCHEDULE[:PROXY:SAMPLES], where SCHEDULE is none or KIND:OPTIONS, e.g.
    evolution,population=40:none:asha:min=12,max=200,eta=27,local=2,model=ridge:synflow:1000."""
    searcher, predictor, *rest = text.split(":")
    searcher, *pairs = searcher.split(",")
    from nasflow.experiments.runs import searcher_option_value

    options = {k: searcher_option_value(v) for k, _, v in (p.partition("=") for p in pairs)} or None
    size = 1 if rest[0] == "none" else 2
    return searcher, predictor, ":".join(rest[:size]), ":".join(rest[size:]) or None, options


def nasflow_records(config: str, seeds: int, out: Path, jobs: int, space: str, benchmark: str, full: int,
                    pool=None) -> list[dict]:
    from nasflow.experiments import compare as cmp

    searcher, predictor, schedule, warm, options = parse_config(config)
    base = {"space": space, "benchmark": benchmark, "dataset": "cifar10", "warm_start": warm, "searcher_options": options,
            "schedule": None if schedule == "none" else schedule,
            "budget_epochs": None if schedule == "none" else REFERENCE_TRAININGS * full, "budget": REFERENCE_TRAININGS,
            # only what ranks candidates uses a pool: the other runs keep their settings (and stored records)
            "pool": pool if predictor != "none" or "model=" in schedule else None}
    folder = out / ("nasflow" if warm is None else f"nasflow-warm-{warm.replace(':', '-')}")
    return cmp.compare([searcher], [predictor], seeds, folder, base=base, jobs=jobs, progress=True)


def read_records(folder: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((folder / "runs").glob("*.json"))]


def label(records: list[dict]) -> str:
    r = records[0]
    warm = (r.get("settings") or {}).get("warm_start")
    options = "".join(f",{k}={v}" for k, v in ((r.get("settings") or {}).get("searcher_options") or {}).items())
    return f"{r['searcher']}{options}+{r['predictor']} {r.get('schedule') or 'none'}" + (f" ws={warm}" if warm else "")


def curves(records: list[dict], costs, full: int, metric: str) -> tuple[np.ndarray, dict[int, np.ndarray]]:
    from nasflow.experiments.cost_compare import at_costs

    values = {r["seed"]: at_costs(r, np.asarray(costs), full, metric) for r in records}
    return np.array(list(values.values())), values


def table(groups: dict, costs, reference_epochs: int, reference_final, full: int, metric: str, unrounded=None) -> list[dict]:
    """Print the markdown table of ``groups`` (label -> records): mean ± s.e. at ``costs`` and the epochs until the
    mean curve reaches the reference's final (to 3 decimals); ``unrounded``: also the mean at that cost to 4
    decimals. Returns its rows."""
    from nasflow.experiments.cost_compare import mean_se

    grid = np.arange(1, 201) * reference_epochs // 200
    extra = f" | mean at {unrounded:,d}" if unrounded else ""
    print("| configuration | runs | " + " | ".join(f"E={c:,d}" for c in costs) + " | epochs to reference final" + extra + " |")
    print("|---|---|" + "---|" * len(costs) + "---|" + ("---|" if unrounded else ""))
    rows = []
    for name, records in groups.items():
        values, _ = curves(records, costs, full, metric)
        mean, se = mean_se(values)
        fine, _ = curves(records, grid, full, metric)
        fine_mean, _ = mean_se(fine)
        reach = None
        if reference_final is not None:
            hit = np.flatnonzero(np.round(fine_mean, 3) >= round(reference_final, 3))
            reach = int(grid[hit[0]]) if len(hit) else None
        rows.append({"config": name, "runs": len(records), "mean": mean.tolist(), "se": se.tolist(), "epochs_to_reference": reach})
        tail = f" | {np.mean(curves(records, [unrounded], full, metric)[0]):.4f}" if unrounded else ""
        print(f"| {name} | {len(records)} | " + " | ".join(f"{m:.3f} ± {s:.3f}" for m, s in zip(mean, se))
              + f" | {'not reached' if reach is None else format(reach, ',d')}{tail} |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=30)
    parser.add_argument("--configs", default="random:none:sh:min=12,max=200,eta=9;evolution:none:asha:min=12,max=200,eta=27",
                        help="SEARCHER:PREDICTOR:SCHEDULE[:WARM_START], separated by ';'")
    parser.add_argument("--peers", default=None, help="folder of benchmarks/multi_fidelity_peers.py's records")
    parser.add_argument("--reference", default=None, help="nasflow compare output folder of the full-fidelity reference")
    parser.add_argument("--reference-config", default=None,
                        help="SEARCHER:PREDICTOR of the reference among --reference's runs (default: all of its runs)")
    parser.add_argument("--reference-test", type=float, default=None,
                        help="the reference's mean test after its budget, if given (NB-101: its valid)")
    parser.add_argument("--space", default="nb201", choices=sorted(TABLES))
    parser.add_argument("--benchmark", default=None, help="the table (default: nb201_cifar.csv, nb101_20k.jsonl)")
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--pool", type=int, default=None,
                        help="candidates a predictor or a schedule's model ranks per step, for the configurations that "
                             "have one (default: the searcher's); on NB-101's table each of evolution's candidates is a "
                             "nearest-cell search")
    parser.add_argument("--blocks", type=int, default=None, metavar="N",
                        help="also tabulate nasflow's configurations by blocks of N seeds (0..N-1, N..2N-1, ...): a "
                             "target met over all seeds may still miss on one block")
    parser.add_argument("--out", default="runs/mf")
    args = parser.parse_args()

    from nasflow import get_space
    from nasflow.experiments.cost_compare import mean_se

    benchmark = args.benchmark or TABLES[args.space]
    oracle = get_space(args.space).open_oracle(benchmark, "cifar10", progress=True)
    full = oracle.fidelities[-1]
    reference_epochs = REFERENCE_TRAININGS * full
    costs = cost_points(reference_epochs)
    metric = "test" if oracle.query(oracle.archs()[0]).test is not None else "valid"
    out = Path(args.out)
    groups: dict[str, list[dict]] = {}
    for config in (c.strip() for c in args.configs.split(";") if c.strip()):
        records = nasflow_records(config, args.seeds, out, args.jobs, args.space, benchmark, full, args.pool)
        groups[label(records)] = records
    peers: list[str] = []
    if args.peers:
        for r in read_records(Path(args.peers)):
            groups.setdefault(label([r]), []).append(r)
            peers.append(label([r]))
    peers = list(dict.fromkeys(peers))
    reference_final = args.reference_test
    if args.reference:
        ref = [r for r in read_records(Path(args.reference)) if r.get("schedule") is None and (
            args.reference_config is None or f"{r['searcher']}:{r['predictor']}" == args.reference_config)]
        if ref:
            groups[label(ref) + " (reference)"] = ref
            if reference_final is None:  # its mean after its budget (a grid's runs may have gone on further)
                reference_final = float(np.mean(curves(ref, [reference_epochs], full, metric)[0]))
    print(f"{args.space} {benchmark}, fidelities {', '.join(map(str, oracle.fidelities))} epochs: {metric} (full fidelity) "
          f"of the best cell after E epochs, mean +- s.e. over seeds; reference {metric} after "
          f"{reference_epochs:,d} epochs: {reference_final}")
    rows = table(groups, costs, reference_epochs, reference_final, full, metric)
    mine = [r for r in rows if r["config"] not in peers and not r["config"].endswith("(reference)")]
    if args.blocks:
        for first in range(0, args.seeds, args.blocks):
            seeds = range(first, min(first + args.blocks, args.seeds))
            print(f"\nseeds {seeds.start}-{seeds.stop - 1} (unrounded mean at E={costs[2]:,d} in the last column)")
            block = {r["config"]: [x for x in groups[r["config"]] if x["seed"] in seeds] for r in mine}
            for row in table(block, costs, reference_epochs, reference_final, full, metric, unrounded=costs[2]):
                row["seeds"] = [seeds.start, seeds.stop - 1]
                rows.append(row)
    if mine and reference_final is not None:
        best = min(mine, key=lambda r: (r["epochs_to_reference"] or np.inf, -r["mean"][2]))
        ok = best["epochs_to_reference"] is not None and best["epochs_to_reference"] <= reference_epochs / 3
        print(f"target 1 (reference final {reference_final:.3f} within {reference_epochs // 3:,d} epochs): "
              f"{'met' if ok else 'not met'} by the best, {best['config']} "
              f"({best['epochs_to_reference'] or 'not reached'})")

        _, mine_seeds = curves(groups[best["config"]], costs, full, metric)

        def paired(other: str):
            _, other_seeds = curves(groups[other], costs, full, metric)
            shared = sorted(set(mine_seeds) & set(other_seeds))
            diff = np.array([mine_seeds[s] - other_seeds[s] for s in shared])
            return mean_se(diff) if len(shared) > 1 else (np.full(len(costs), np.nan),) * 2

        for peer in peers:
            p = next(r for r in rows if r["config"] == peer)
            ahead = [b > q for b, q in zip(best["mean"], p["mean"])]
            dm, ds = paired(peer)
            print(f"target 2 vs {peer}: ahead at " + ", ".join(f"{c:,d}: {'yes' if a else 'NO'} "
                                                              f"(paired {m:+.3f} ± {s:.3f})"
                                                              for c, a, m, s in zip(costs, ahead, dm, ds)))
        for other in mine:
            if other is not best:
                dm, ds = paired(other["config"])
                print(f"the best minus {other['config']}, paired: " + ", ".join(
                    f"{c:,d}: {m:+.4f} ± {s:.4f}" for c, m, s in zip(costs, dm, ds)))
    out.mkdir(parents=True, exist_ok=True)
    (out / "multi_fidelity.json").write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    os.environ.setdefault("NASFLOW_BENCHMARKS", str(Path(__file__).resolve().parents[2] / "shared" / "benchmarks"))
    main()
