"""Multi-fidelity search on NB-201 CIFAR-10 (issue 20): nasflow's schedules against its best full-fidelity search
and the peers, all in training epochs.

Runs each ``--configs`` entry ``SEARCHER:PREDICTOR:SCHEDULE[:WARM_START]`` over seeds 0..N-1 (``nasflow compare``'s
runs, stored under OUT/nasflow, so a stopped benchmark resumes; SCHEDULE ``none`` is a full-fidelity run whose
queries cost 200 epochs each), reads the peers' records (``benchmarks/multi_fidelity_peers.py``'s OUT) and the
reference's (``--reference``: a ``nasflow compare`` output of the full-fidelity reference, BANANAS+FGP with the
zero-cost warm start; its mean final test may be given instead with ``--reference-test`` where its 30 runs are
recorded elsewhere, e.g. docs/RESULTS.md). Prints, per configuration, the mean +- s.e. test accuracy (full
fidelity) of the best cell after 2k, 4k, 6.7k, 10k and 20k epochs, the epochs until the mean curve reaches the
reference's mean final test (to the 3 decimals it is reported with), and whether the issue's targets hold:

- the best nasflow configuration reaches the reference's mean final test with <= 1/3 of its epochs;
- it is ahead of every peer at every cost point from 2,000 epochs on (mean; and paired by seed where both have it).

    python benchmarks/multi_fidelity.py --seeds 30 --configs evolution:none:asha:min=12,max=200,eta=27 \\
        --peers runs/mf/peers --reference-test 94.373 --out runs/mf
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np

COSTS = (2000, 4000, 6667, 10000, 20000)
REFERENCE_EPOCHS = 20_000  # 100 full trainings of 200 epochs


def parse_config(text: str) -> tuple[str, str, str, str | None]:
    """(searcher, predictor, schedule, warm start or None) of SEARCHER:PREDICTOR:SCHEDULE[:PROXY:SAMPLES], where
    SCHEDULE is none or KIND:OPTIONS."""
    searcher, predictor, *rest = text.split(":")
    size = 1 if rest[0] == "none" else 2
    return searcher, predictor, ":".join(rest[:size]), ":".join(rest[size:]) or None


def nasflow_records(config: str, seeds: int, out: Path, jobs: int) -> list[dict]:
    from nasflow.experiments import compare as cmp

    searcher, predictor, schedule, warm = parse_config(config)
    base = {"space": "nb201", "benchmark": "nb201_cifar.csv", "dataset": "cifar10", "warm_start": warm,
            "schedule": None if schedule == "none" else schedule, "budget_epochs": None if schedule == "none" else REFERENCE_EPOCHS,
            "budget": REFERENCE_EPOCHS // 200}
    folder = out / ("nasflow" if warm is None else f"nasflow-warm-{warm.replace(':', '-')}")
    return cmp.compare([searcher], [predictor], seeds, folder, base=base, jobs=jobs, progress=True)


def read_records(folder: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((folder / "runs").glob("*.json"))]


def label(records: list[dict]) -> str:
    r = records[0]
    warm = (r.get("settings") or {}).get("warm_start")
    return f"{r['searcher']}+{r['predictor']} {r.get('schedule') or 'none'}" + (f" ws={warm}" if warm else "")


def curves(records: list[dict], costs) -> tuple[np.ndarray, dict[int, np.ndarray]]:
    from nasflow.experiments.cost_compare import at_costs

    values = {r["seed"]: at_costs(r, np.asarray(costs), 200) for r in records}
    return np.array(list(values.values())), values


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=30)
    parser.add_argument("--configs", default="random:none:sh:min=12,max=200,eta=9,evolution:none:asha:min=12,max=200,eta=27",
                        help="SEARCHER:PREDICTOR:SCHEDULE[:WARM_START], separated by ';'")
    parser.add_argument("--peers", default=None, help="folder of benchmarks/multi_fidelity_peers.py's records")
    parser.add_argument("--reference", default=None, help="nasflow compare output folder of the full-fidelity reference")
    parser.add_argument("--reference-test", type=float, default=None, help="the reference's mean final test, if given")
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--out", default="runs/mf")
    args = parser.parse_args()

    from nasflow.experiments.cost_compare import mean_se

    out = Path(args.out)
    groups: dict[str, list[dict]] = {}
    for config in (c.strip() for c in args.configs.split(";") if c.strip()):
        records = nasflow_records(config, args.seeds, out, args.jobs)
        groups[label(records)] = records
    peers: list[str] = []
    if args.peers:
        for r in read_records(Path(args.peers)):
            groups.setdefault(label([r]), []).append(r)
            peers.append(label([r]))
    peers = list(dict.fromkeys(peers))
    reference_final = args.reference_test
    if args.reference:
        ref = [r for r in read_records(Path(args.reference)) if r.get("schedule") is None]
        if ref:
            groups[label(ref) + " (reference)"] = ref
            if reference_final is None:
                reference_final = float(np.mean([r["best_test"][-1] for r in ref]))
    grid = np.arange(100, REFERENCE_EPOCHS + 1, 100)
    rows = []
    print(f"NB-201 CIFAR-10, fidelities 12 and 200 epochs: test (full fidelity) of the best cell after E epochs, "
          f"mean +- s.e. over seeds; reference final test {reference_final}")
    print("| configuration | runs | " + " | ".join(f"E={c:,d}" for c in COSTS) + " | epochs to reference final |")
    print("|---|---|" + "---|" * len(COSTS) + "---|")
    for name, records in groups.items():
        values, _ = curves(records, COSTS)
        mean, se = mean_se(values)
        fine, _ = curves(records, grid)
        fine_mean, _ = mean_se(fine)
        reach = None
        if reference_final is not None:
            hit = np.flatnonzero(np.round(fine_mean, 3) >= round(reference_final, 3))
            reach = int(grid[hit[0]]) if len(hit) else None
        rows.append({"config": name, "runs": len(records), "mean": mean.tolist(), "se": se.tolist(), "epochs_to_reference": reach})
        print(f"| {name} | {len(records)} | " + " | ".join(f"{m:.3f} ± {s:.3f}" for m, s in zip(mean, se))
              + f" | {'not reached' if reach is None else format(reach, ',d')} |")
    mine = [r for r in rows if r["config"] not in peers and not r["config"].endswith("(reference)")]
    if mine and reference_final is not None:
        best = min(mine, key=lambda r: (r["epochs_to_reference"] or np.inf, -r["mean"][2]))
        ok = best["epochs_to_reference"] is not None and best["epochs_to_reference"] <= REFERENCE_EPOCHS / 3
        print(f"target 1 (reference final {reference_final:.3f} within {REFERENCE_EPOCHS // 3:,d} epochs): "
              f"{'met' if ok else 'not met'} by the best, {best['config']} "
              f"({best['epochs_to_reference'] or 'not reached'})")
        for peer in peers:
            p = next(r for r in rows if r["config"] == peer)
            ahead = [b > q for b, q in zip(best["mean"], p["mean"])]
            _, mine_seeds = curves(groups[best["config"]], COSTS)
            _, peer_seeds = curves(groups[peer], COSTS)
            shared = sorted(set(mine_seeds) & set(peer_seeds))
            diff = np.array([mine_seeds[s] - peer_seeds[s] for s in shared])
            dm, ds = mean_se(diff) if len(shared) > 1 else (np.full(len(COSTS), np.nan),) * 2
            print(f"target 2 vs {peer}: ahead at " + ", ".join(f"{c:,d}: {'yes' if a else 'NO'} "
                                                              f"(paired {m:+.3f} ± {s:.3f})"
                                                              for c, a, m, s in zip(COSTS, ahead, dm, ds)))
    out.mkdir(parents=True, exist_ok=True)
    (out / "multi_fidelity.json").write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    os.environ.setdefault("NASFLOW_BENCHMARKS", str(Path(__file__).resolve().parents[2] / "shared" / "benchmarks"))
    main()
