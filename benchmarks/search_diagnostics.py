"""What the loop's predictor knows at every refit, with the NB-201 table as ground truth.

Runs the search loop (``nasflow.experiments.runs`` settings, so exactly what ``nasflow search`` runs)
with the predictor wrapped in a probe. After each fit the probe scores the whole space and
records Kendall tau against cifar10_valid on all cells and on the top region; at each pick
it records tau on the candidate pool, the true rank of the picked cell in the pool, its
regret against the pool's best, and how far the pick is from the current best cell.
The probe's own work is timed and subtracted, so the reported overhead is the loop's.

    NASFLOW_BENCHMARKS=/work/shared/benchmarks nice -n 10 python benchmarks/search_diagnostics.py \
        --predictors scratch,fgp --seeds 0-9 --out /work/runs/K/diag.json
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from predictor_options import add_set_option, predictor_options  # noqa: E402

# cifar10_valid >= this is the "top region" (about the best 1% of NB-201)
TOP_VALID = 91.0
CHECKPOINTS = (10, 20, 30, 50, 100)


def edit_distance(a, b) -> int:
    return sum(x != y for x, y in zip(a.ops, b.ops))


class Probe:
    """Wraps a predictor; records what it knows at each fit and what it picks at each rank."""

    def __init__(self, inner, space, table: dict):
        self.inner, self.space, self.table = inner, space, table
        self.name = getattr(inner, "name", type(inner).__name__)
        self.all_archs = list(table)
        self.all_valid = np.array([table[a] for a in self.all_archs])
        self.top = self.all_valid >= TOP_VALID
        self.fits: list[dict] = []
        self.picks: list[dict] = []
        self.history: list = []
        self.own_seconds = 0.0  # time the probe spent measuring, not the loop
        self.fit_seconds = 0.0
        self.predict_seconds = 0.0

    def fit(self, archs, values):
        from nasflow.metrics import kendall_tau

        t0 = time.perf_counter()
        self.inner.fit(archs, values)
        t1 = time.perf_counter()
        self.fit_seconds += t1 - t0
        self.history = list(archs)
        pred = np.asarray(self.inner.predict(self.all_archs))
        known = set(archs)
        unknown = np.array([a not in known for a in self.all_archs])
        order = np.argsort(-pred)
        best_pred = self.all_archs[order[0]]
        # the current best's one-edit neighbourhood: where does the predictor put the truly best neighbour?
        best = max(archs, key=lambda a: self.table[a])
        nbrs = self.space.neighbours(best)
        nbr_pred = np.asarray(self.inner.predict(nbrs))
        nbr_true = np.array([self.table[a] for a in nbrs])
        self.fits.append({
            "best_valid": float(self.table[best]),
            "nbr_tau": kendall_tau(nbr_pred, nbr_true),
            "nbr_improving": int((nbr_true > self.table[best]).sum()),
            "nbr_true_best_pred_rank": int((nbr_pred > nbr_pred[int(np.argmax(nbr_true))]).sum()) + 1,
            "n": len(archs),
            "fit_s": t1 - t0,
            "tau_space": kendall_tau(pred, self.all_valid),
            "tau_top": kendall_tau(pred[self.top], self.all_valid[self.top]),
            # the cells the predictor would query next over the whole space, by truth
            "top10_unqueried_mean_valid": float(self.all_valid[[i for i in order if unknown[i]][:10]].mean()),
            "argmax_valid": float(self.table[best_pred]),
        })
        self.own_seconds += time.perf_counter() - t1
        return self

    def predict(self, archs):
        from nasflow.metrics import kendall_tau

        t0 = time.perf_counter()
        scores = np.asarray(self.inner.predict(archs), dtype=np.float64)
        t1 = time.perf_counter()
        self.predict_seconds += t1 - t0
        truth = np.array([self.table[a] for a in archs])
        pick = int(np.argmax(scores))  # the loop takes the top of a stable descending sort: the first max
        best = max(self.history, key=lambda a: self.table[a]) if self.history else None
        self.picks.append({
            "n": len(self.history),
            "pool": len(archs),
            "tau_pool": kendall_tau(scores, truth),
            "pick_true_rank": int((truth > truth[pick]).sum()) + 1,
            "regret_in_pool": float(truth.max() - truth[pick]),
            "pool_best_valid": float(truth.max()),
            "pool_improving": int((truth > (self.table[best] if best is not None else -1)).sum()),
            "pick_dist_to_best": edit_distance(archs[pick], best) if best is not None else None,
            "pool_mean_dist_to_best": float(np.mean([edit_distance(a, best) for a in archs])) if best is not None else None,
        })
        self.own_seconds += time.perf_counter() - t1
        return scores


def run_one(spec: str, seed: int, predictor_seed, options: dict, benchmark: str, budget: int, refit_every: int,
            table: dict, explore: float = 0.0) -> dict:
    from nasflow.loop import search
    from nasflow.experiments.runs import build, complete

    settings = complete({"space": "nb201", "searcher": "evolution", "predictor": spec, "budget": budget,
                         "benchmark": benchmark, "seed": seed, "predictor_seed": predictor_seed,
                         "refit_every": refit_every, "predictor_options": options, "explore": explore})
    space, oracle, searcher, predictor = build(settings)[:4]
    if predictor is not None and hasattr(predictor, "pretrain"):
        predictor.pretrain()  # cached per (config, seed); not part of the loop's overhead
    probe = Probe(predictor, space, table) if predictor is not None else None
    result = search(space, oracle, searcher, predictor=probe, budget=budget, pool=settings["pool"],
                    refit_every=settings["refit_every"], warmup=settings["warmup"], explore=explore, seed=seed)
    traj = result.trajectory
    queried = [space.parse(q.arch) for q in traj]
    # repeats of the same evolution parent are invisible here; distance of each query to the best so far is not
    dists = [edit_distance(queried[i], space.parse(traj[i - 1].best_arch)) for i in range(1, len(traj))]
    probe_s = probe.own_seconds if probe is not None else 0.0
    return {
        "predictor": spec,
        "seed": seed,
        "predictor_seed": predictor_seed,
        "options": options,
        "explore": explore,
        "best_valid": {n: traj[n - 1].best_valid for n in CHECKPOINTS if n <= len(traj)},
        "best_test": {n: traj[n - 1].best_test for n in CHECKPOINTS if n <= len(traj)},
        "final_arch": traj[-1].best_arch,
        "queries_to_optimum": result.queries_to_optimum(),
        "overhead_s_per_query": result.overhead_per_query - probe_s / len(traj),
        "fit_s_total": probe.fit_seconds if probe else 0.0,
        "fits": probe.fits if probe else [],
        "picks": probe.picks if probe else [],
        "mean_dist_to_best_after_20": float(np.mean(dists[19:])) if len(dists) > 19 else None,
        "distinct_best_cells": len({q.best_arch for q in traj}),
        "queried": [q.arch for q in traj],
    }


def parse_variant(text: str) -> tuple[str, dict]:
    """'fgp:dim=32,epochs=400' -> ('fgp', {...})."""
    spec, _, opts = text.partition(":")
    return spec, predictor_options([o for o in opts.split(",") if o])


def screen(path: Path, variants: list[str], ns: list[int], label: str, spec: str, table: dict) -> list[dict]:
    """Re-fit each variant on the first n cells a stored run queried; what it knows then, by the table.

    Cheap (one fit per variant and n, no loop), so it separates fine-tuning choices before a loop run.
    """
    from nasflow.metrics import kendall_tau
    from nasflow.experiments.runs import make_predictor
    from nasflow.spaces import get_space

    space = get_space("nb201")
    all_archs = list(table)
    all_valid = np.array([table[a] for a in all_archs])
    top = all_valid >= TOP_VALID
    runs = [json.loads(line) for line in path.read_text().splitlines()]
    runs = [r for r in runs if r["label"] == label and r["predictor"] == spec and "queried" in r]
    out = []
    for variant in variants:
        kind, options = parse_variant(variant)
        for r in runs:
            queried = [space.parse(a) for a in r["queried"]]
            for n in ns:
                archs = queried[:n]
                predictor = make_predictor(space, kind, 0, options)
                t0 = time.perf_counter()
                predictor.fit(archs, np.array([table[a] for a in archs]))
                fit_s = time.perf_counter() - t0
                pred = predictor.predict(all_archs)
                known = set(archs)
                order = [i for i in np.argsort(-pred) if all_archs[i] not in known]
                best = max(archs, key=lambda a: table[a])
                nbrs = space.neighbours(best)
                nbr_pred = predictor.predict(nbrs)
                nbr_true = np.array([table[a] for a in nbrs])
                out.append({
                    "variant": variant, "seed": r["seed"], "n": n, "fit_s": fit_s,
                    "tau_space": kendall_tau(pred, all_valid), "tau_top": kendall_tau(pred[top], all_valid[top]),
                    "top10_unqueried_mean_valid": float(all_valid[order[:10]].mean()),
                    "nbr_tau": kendall_tau(nbr_pred, nbr_true),
                    "nbr_true_best_pred_rank": int((nbr_pred > nbr_pred[int(np.argmax(nbr_true))]).sum()) + 1,
                })
        rows = [o for o in out if o["variant"] == variant]
        for n in ns:
            at = [o for o in rows if o["n"] == n]
            print(f"{variant:40s} n={n:3d} runs={len(at)} tau space {np.mean([o['tau_space'] for o in at]):.3f} "
                  f"top {np.mean([o['tau_top'] for o in at]):.3f} top10 {np.mean([o['top10_unqueried_mean_valid'] for o in at]):.2f} "
                  f"nbr tau {np.mean([o['nbr_tau'] for o in at]):.3f} nbr-best rank {np.mean([o['nbr_true_best_pred_rank'] for o in at]):.1f} "
                  f"fit {np.mean([o['fit_s'] for o in at]):.2f} s", flush=True)
    return out


def summarise(path: Path) -> str:
    """One line per (label, predictor): curves, hits, overhead and the predictor's knowledge over the runs."""
    groups: dict = {}
    for line in path.read_text().splitlines():
        r = json.loads(line)
        groups.setdefault((r["label"], r["predictor"]), []).append(r)
    rows = []
    for (label, spec), runs in groups.items():
        def mean(key, n):
            return np.mean([r[key][str(n)] for r in runs])

        hits = sorted(r["queries_to_optimum"] or 999 for r in runs)
        picks = [p for r in runs for p in r["picks"]]
        row = (f"{label:14s} {spec:8s} n={len(runs):2d} valid@20/50/100 {mean('best_valid', 20):.3f}/"
               f"{mean('best_valid', 50):.3f}/{mean('best_valid', 100):.3f} test@100 {mean('best_test', 100):.3f} "
               f"found {sum(h < 999 for h in hits)} median q* {np.median(hits):.0f} "
               f"overhead {np.mean([r['overhead_s_per_query'] for r in runs]):.3f} s/q")
        if picks:
            by_n = {}
            for r in runs:
                for f in r["fits"]:
                    by_n.setdefault(f["n"], []).append(f)
            taus = "/".join(f"{np.mean([f['tau_space'] for f in by_n[n]]):.2f}" for n in (10, 30, 50, 95) if n in by_n)
            tops = "/".join(f"{np.mean([f['tau_top'] for f in by_n[n]]):.2f}" for n in (10, 30, 50, 95) if n in by_n)
            row += (f"\n{'':24s}tau space@10/30/50/95 {taus} top {tops} | pool tau {np.mean([p['tau_pool'] for p in picks]):.3f} "
                    f"pick rank median {np.median([p['pick_true_rank'] for p in picks]):.0f} "
                    f"regret {np.mean([p['regret_in_pool'] for p in picks]):.3f} "
                    f"pick dist {np.mean([p['pick_dist_to_best'] for p in picks]):.2f}")
        rows.append(row)
    return "\n".join(rows)


def _seeds(text: str) -> list[int]:
    out = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        out += list(range(int(lo), int(hi) + 1)) if hi else [int(lo)]
    return out


def main(argv=None) -> None:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--predictors", default="scratch,fgp")
    parser.add_argument("--seeds", default="0-9", help="e.g. 0-9 or 2,6,9")
    parser.add_argument("--predictor-seed", default="0",
                        help="fixed pre-training/fine-tuning seed, 'run' for the run's seed, or 'mod5' for seed %% 5")
    parser.add_argument("--budget", type=int, default=100)
    parser.add_argument("--refit-every", type=int, default=5)
    parser.add_argument("--explore", type=float, default=0.0)
    parser.add_argument("--out", required=True, help="JSON lines, appended per run (a rerun skips finished runs)")
    parser.add_argument("--label", default="", help="tag stored with each run")
    parser.add_argument("--summary", action="store_true", help="print the summary of --out and exit")
    parser.add_argument("--screen", default=None, metavar="VARIANTS",
                        help="';'-separated predictor variants (e.g. 'fgp;fgp:epochs=50') re-fitted on the "
                             "histories of --screen-from runs in --out instead of running the loop")
    parser.add_argument("--screen-from", default="base:fgp", metavar="LABEL:PREDICTOR")
    parser.add_argument("--screen-n", default="30,50")
    add_set_option(parser)
    args = parser.parse_args(argv)
    if args.summary:
        print(summarise(Path(args.out)))
        return
    torch.set_num_threads(1)
    if args.screen:
        from nasflow.spaces import get_space

        space = get_space("nb201")
        oracle = space.open_oracle(str(Path(os.environ["NASFLOW_BENCHMARKS"]) / "nb201" / "nb201_cifar.csv"), "cifar10")
        label, _, spec = args.screen_from.partition(":")
        screen(Path(args.out), args.screen.split(";"), [int(n) for n in args.screen_n.split(",")], label, spec,
               {a: e.valid for a, e in oracle.items()})
        return
    options = predictor_options(args.set)
    from nasflow.spaces import get_space

    space = get_space("nb201")
    benchmark = str(Path(os.environ["NASFLOW_BENCHMARKS"]) / "nb201" / "nb201_cifar.csv")
    oracle = space.open_oracle(benchmark, "cifar10")
    table = {a: e.valid for a, e in oracle.items()}
    out = Path(args.out)
    done = set()
    if out.is_file():
        for line in out.read_text().splitlines():
            r = json.loads(line)
            done.add((r["label"], r["predictor"], r["seed"]))
    for spec in args.predictors.split(","):
        for seed in _seeds(args.seeds):
            if (args.label, spec, seed) in done:
                continue
            ps = {"run": None, "mod5": seed % 5}.get(args.predictor_seed)
            ps = ps if args.predictor_seed in ("run", "mod5") else int(args.predictor_seed)
            t0 = time.perf_counter()
            record = run_one(spec, seed, ps, options, benchmark, args.budget, args.refit_every, table, args.explore)
            record["label"] = args.label
            record["wall_s"] = time.perf_counter() - t0
            with out.open("a") as f:
                f.write(json.dumps(record) + "\n")
            print(f"{args.label} {spec} seed {seed}: valid@20/50/100 "
                  f"{record['best_valid'].get(20)}/{record['best_valid'].get(50)}/{record['best_valid'].get(100)} "
                  f"q*={record['queries_to_optimum']} overhead {record['overhead_s_per_query']:.3f} s/q "
                  f"wall {record['wall_s']:.0f} s", flush=True)


if __name__ == "__main__":
    main()
