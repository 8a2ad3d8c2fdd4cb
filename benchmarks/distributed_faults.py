"""Distributed search faults (issue 16): a worker of `search --workers N` SIGKILLed, and cold starts of one SQLite URL.

    nice -n 10 python benchmarks/distributed_faults.py --kill-runs 10 --workers 4 --budget 60 --cold-runs 10

(a) Killed worker: each run starts ``nasflow search --storage sqlite:///... --workers N
--stale-after 600`` and, once a random number of queries is COMPLETE, SIGKILLs one of its
worker processes (one seen holding a claim, so it dies mid-query as often as the timing
allows). ``--stale-after 600`` means only the parent's immediate release of the dead
worker's claim can free it within the run. Counted: the command's exit status, COMPLETE
trials (must equal the budget), duplicate cells, trials left RUNNING, whether the victim
held a claim when it died, and whether the command reported the replacement.

(b) Cold starts: ``--starts`` ``nasflow search`` processes started together on one new
SQLite URL, ``--cold-runs`` times: how many exited non-zero. For reference, the same number
of processes each opening the new URL as nasflow did before (plain ``optuna.storages.RDBStorage``:
Optuna's own first-connection schema creation) and how many of those fail.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HOST_PREFIX = None  # set in main: workers are named host:pid
CLAIM_WAIT = 5.0


def nasflow(*args) -> list[str]:
    return [sys.executable, "-m", "nasflow.cli.main", *map(str, args)]


def study_trials(storage, name: str):
    try:
        return storage.get_all_trials(storage.get_study_id_from_name(name), deepcopy=False)
    except KeyError:  # not created yet
        return []


def children(pid: int) -> set[int]:
    """Spawned worker processes of ``pid`` (not multiprocessing's resource tracker)."""
    found = set()
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            kids = (task / "children").read_text().split()
        except OSError:
            continue
        for kid in map(int, kids):
            try:
                if b"spawn_main" in Path(f"/proc/{kid}/cmdline").read_bytes():
                    found.add(kid)
            except OSError:
                pass
    return found


def killed_worker_run(seed: int, args, rng: np.random.Generator) -> dict:
    from nasflow.experiments.storage import CELL, RELEASED, WORKER, open_storage

    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'study.db'}"
        cmd = nasflow("search", "--searcher", args.searcher, "--budget", args.budget, "--seed", seed,
                      "--storage", url, "--study", "faults", "--workers", args.workers, "--stale-after", 600,
                      *(["--benchmark", args.benchmark] if args.benchmark else []))
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        storage = open_storage(url)
        kill_at = int(rng.integers(args.budget // 10, args.budget * 8 // 10))
        victim, reached = None, None
        while victim is None and proc.poll() is None:
            trials = study_trials(storage, "faults")
            if reached is None and sum(t.state.name == "COMPLETE" for t in trials) >= kill_at:
                reached = time.perf_counter()
            if reached is not None:
                workers = children(proc.pid)
                claiming = sorted(workers & {int(t.system_attrs[WORKER].rsplit(":", 1)[1]) for t in trials
                                             if t.state.name == "RUNNING"
                                             and t.system_attrs.get(WORKER, "").startswith(HOST_PREFIX)})
                # prefer a worker caught mid-query; after CLAIM_WAIT seconds without one, any worker
                candidates = claiming or (sorted(workers) if time.perf_counter() - reached > CLAIM_WAIT else [])
                if candidates:
                    victim = int(rng.choice(candidates))
                    os.kill(victim, signal.SIGKILL)
                    continue
            time.sleep(0.02)
        out, err = proc.communicate(timeout=args.timeout)
        wall = time.perf_counter() - start
        trials = study_trials(storage, "faults")
        complete = [t for t in trials if t.state.name == "COMPLETE"]
        cells = [t.user_attrs[CELL] for t in complete]
        mine = [t for t in trials if t.system_attrs.get(WORKER) == f"{HOST_PREFIX}{victim}"]
        held = any(t.system_attrs.get(RELEASED) for t in mine)
        return {
            "seed": seed, "exit": proc.returncode, "completed": len(complete),
            "duplicates": len(cells) - len(set(cells)),
            "running_left": sum(t.state.name == "RUNNING" for t in trials),
            "killed_after": kill_at, "victim": victim, "victim_held_claim": held,
            "replacement_reported": "started another in its place" in err,
            "stderr_tail": err.strip().splitlines()[-1] if err.strip() else "", "wall_s": wall,
        }


def cold_starts(args, guarded: bool) -> int:
    """Failures among ``args.starts`` processes started together on one new SQLite URL."""
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'new.db'}"
        if guarded:
            cmd = nasflow("search", "--searcher", "random", "--budget", 10, "--storage", url, "--study", "cold",
                          *(["--benchmark", args.benchmark] if args.benchmark else []))
        else:
            # how nasflow opened a storage before: Optuna's unguarded schema creation, a 120 s busy timeout
            cmd = [sys.executable, "-c", "import optuna; optuna.storages.RDBStorage("
                   f"{url!r}, engine_kwargs={{'connect_args': {{'timeout': 120}}}})"]
        procs = [subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
                 for _ in range(args.starts)]
        failures = 0
        for p in procs:
            _, err = p.communicate(timeout=args.timeout)
            if p.returncode != 0:
                failures += 1
                lines = [line for line in err.splitlines() if "Error" in line] or err.strip().splitlines() or [""]
                print(f"  start failed ({p.returncode}): {lines[-1][:160]}", file=sys.stderr)
        return failures


def main(argv=None) -> int:
    global HOST_PREFIX
    import socket

    HOST_PREFIX = f"{socket.gethostname()}:"
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kill-runs", type=int, default=10)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--budget", type=int, default=60)
    parser.add_argument("--searcher", default="evolution")
    parser.add_argument("--cold-runs", type=int, default=10)
    parser.add_argument("--starts", type=int, default=10, help="processes per cold start")
    parser.add_argument("--timeout", type=float, default=600)
    parser.add_argument("--benchmark", default=None, help="NB-201 table (default: found in $NASFLOW_BENCHMARKS)")
    parser.add_argument("--out", default=None, help="Write the per-run records as JSON here")
    args = parser.parse_args(argv)
    rng = np.random.default_rng(16)
    kills = []
    for seed in range(args.kill_runs):
        kills.append(killed_worker_run(seed, args, rng))
        k = kills[-1]
        print(f"kill {seed:2d}: exit {k['exit']} completed {k['completed']}/{args.budget} dup {k['duplicates']} "
              f"running {k['running_left']} killed after {k['killed_after']} held claim {k['victim_held_claim']} "
              f"replaced {k['replacement_reported']} ({k['wall_s']:.1f} s)", file=sys.stderr, flush=True)
    cold = []
    for run in range(args.cold_runs):
        cold.append({"nasflow_failures": cold_starts(args, guarded=True),
                     "unguarded_failures": cold_starts(args, guarded=False)})
        print(f"cold {run:2d}: {cold[-1]}", file=sys.stderr, flush=True)
    summary = {
        "kill_runs": args.kill_runs, "workers": args.workers, "budget": args.budget, "searcher": args.searcher,
        "runs_finishing_budget_exit_0": sum(k["exit"] == 0 and k["completed"] == args.budget for k in kills),
        "duplicates_total": sum(k["duplicates"] for k in kills),
        "running_left_total": sum(k["running_left"] for k in kills),
        "victims_holding_a_claim": sum(k["victim_held_claim"] for k in kills),
        "replacements_reported": sum(k["replacement_reported"] for k in kills),
        "kill_wall_s_mean": float(np.mean([k["wall_s"] for k in kills])) if kills else None,
        "cold_runs": args.cold_runs, "starts_per_run": args.starts,
        "cold_start_failures_nasflow": sum(c["nasflow_failures"] for c in cold),
        "cold_start_failures_unguarded": sum(c["unguarded_failures"] for c in cold),
    }
    print(json.dumps(summary, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps({"summary": summary, "kills": kills, "cold": cold}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
