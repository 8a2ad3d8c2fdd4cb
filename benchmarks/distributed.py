"""Distributed search under fire: N workers on one SQLite study, one of them SIGKILLed mid-run.

For each run (seed s): create a study, start N worker processes, kill a random one after a
random number of completed queries, let the others finish the budget. Counted per run:
duplicate cells among COMPLETE trials, completed queries lost (COMPLETE before the kill,
not COMPLETE at the end), whether exactly ``budget`` trials completed, and the final test
accuracy of the best-valid cell. The same seeds run single-process through ``nasflow.experiments.runs``
at the same budget for comparison.

    nice -n 10 python benchmarks/distributed.py --runs 20 --workers 4 --budget 100
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import signal
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def distributed_run(seed: int, args, rng: np.random.Generator) -> dict:
    from nasflow.experiments.distributed import open_study, worker_main
    from nasflow.experiments.storage import CELL, completed_trials, open_storage, study_trajectory

    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'study.db'}"
        storage = open_storage(url)
        given = {"searcher": args.searcher, "budget": args.budget, "seed": seed, "benchmark": args.benchmark}
        study_id, settings = open_study(storage, "bench", given)
        spawn = multiprocessing.get_context("spawn")
        workers = [spawn.Process(target=worker_main, args=(url, "bench", settings, args.stale_after, i))
                   for i in range(args.workers)]
        start = time.perf_counter()
        for w in workers:
            w.start()
        kill_at = int(rng.integers(args.budget // 10, args.budget * 8 // 10))
        victim = int(rng.integers(args.workers))
        while len(completed_trials(storage, study_id)) < kill_at:
            time.sleep(0.02)
        os.kill(workers[victim].pid, signal.SIGKILL)
        before = {t.number: t.user_attrs[CELL] for t in completed_trials(storage, study_id)}
        for w in workers:
            w.join()
        wall = time.perf_counter() - start
        trials = storage.get_all_trials(study_id, deepcopy=False)
        complete = [t for t in trials if t.state.name == "COMPLETE"]
        after = {t.number: t.user_attrs[CELL] for t in complete}
        cells = list(after.values())
        trajectory = study_trajectory(completed_trials(storage, study_id))
        return {
            "seed": seed,
            "completed": len(complete),
            "duplicates": len(cells) - len(set(cells)),
            "lost_completed": sum(1 for k, v in before.items() if after.get(k) != v),
            "failed_trials": sum(1 for t in trials if t.state.name == "FAIL"),
            "still_running": sum(1 for t in trials if t.state.name == "RUNNING"),
            "killed_after": kill_at,
            "exit_codes": [w.exitcode for w in workers],
            "final_test": trajectory[-1].best_test,
            "wall_s": wall,
        }


def single_run(seed: int, args) -> dict:
    from nasflow.experiments.runs import run_search

    start = time.perf_counter()
    result = run_search({"searcher": args.searcher, "budget": args.budget, "seed": seed, "benchmark": args.benchmark})
    return {"seed": seed, "final_test": result.best.best_test, "wall_s": time.perf_counter() - start}


def mean_se(values) -> tuple[float, float]:
    x = np.asarray(values, dtype=float)
    return float(x.mean()), float(x.std(ddof=1) / np.sqrt(len(x))) if len(x) > 1 else 0.0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--budget", type=int, default=100)
    parser.add_argument("--searcher", default="evolution")
    parser.add_argument("--stale-after", type=float, default=2.0)
    parser.add_argument("--benchmark", default=None, help="NB-201 table (default: found in $NASFLOW_BENCHMARKS)")
    parser.add_argument("--out", default=None, help="Write the per-run records as JSON here")
    args = parser.parse_args(argv)
    rng = np.random.default_rng(12345)
    dist, single = [], []
    for seed in range(args.runs):
        dist.append(distributed_run(seed, args, rng))
        single.append(single_run(seed, args))
        d = dist[-1]
        print(f"seed {seed:2d}: completed {d['completed']} dup {d['duplicates']} lost {d['lost_completed']} "
              f"failed {d['failed_trials']} killed after {d['killed_after']} exit {d['exit_codes']} "
              f"test {d['final_test']:.3f} ({d['wall_s']:.1f} s) | single test {single[-1]['final_test']:.3f}",
              file=sys.stderr, flush=True)
    m_d, se_d = mean_se([d["final_test"] for d in dist])
    m_s, se_s = mean_se([s["final_test"] for s in single])
    summary = {
        "runs": args.runs, "workers": args.workers, "budget": args.budget, "searcher": args.searcher,
        "runs_with_exact_budget": sum(d["completed"] == args.budget for d in dist),
        "duplicates_total": sum(d["duplicates"] for d in dist),
        "lost_completed_total": sum(d["lost_completed"] for d in dist),
        "failed_trials_total": sum(d["failed_trials"] for d in dist),
        "distributed_final_test_mean": m_d, "distributed_final_test_se": se_d,
        "single_final_test_mean": m_s, "single_final_test_se": se_s,
        "distributed_wall_s_mean": mean_se([d["wall_s"] for d in dist])[0],
        "single_wall_s_mean": mean_se([s["wall_s"] for s in single])[0],
    }
    print(json.dumps(summary, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps({"summary": summary, "distributed": dist, "single": single}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
