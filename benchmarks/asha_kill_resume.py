"""ASHA with worker processes on the training oracle, killed and resumed (issue 20's third target).

Runs ``nasflow search --schedule asha:... --workers N`` on the embedded digits, SIGKILLs the search process
(not its workers: they must notice and stop) each time its journal has passed one of ``--kill-at`` fractions
of the evaluations an uninterrupted run makes, and resumes it with ``--resume``, until it finishes. Then it
accounts for every epoch the run was charged:

- trained: the epochs the finishing trainings ran (``trained_epochs`` of each journaled result);
- carried over a kill: epochs a training had saved (its periodic checkpoint) when the run was killed and that
  its resumed training continued from (``resumed_from_epoch`` above the rung it was promoted from);
- "no training repeated beyond the last checkpoint" holds when trained + carried == charged, every (cell, rung)
  is journaled once, every (cell, stop) is in the training cache once, and no worker outlives a kill.

Epochs a training ran past its last checkpoint before the kill are lost, not repeated, and not visible in the
journal: at most one epoch per job in flight with ``--checkpoint-every 0`` (a checkpoint at every epoch).

    python benchmarks/asha_kill_resume.py --workers 4 --budget-epochs 300 --kill-at 0.25,0.5,0.75 --out runs/asha_kill
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path


def journal(run_dir: Path) -> list[dict]:
    path = run_dir / "journal.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()[1:] if line.strip()]


def children(pid: int) -> list[int]:
    return [int(c) for task in Path(f"/proc/{pid}/task").glob("*/children") for c in task.read_text().split()]


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--schedule", default="asha:min=1,max=27,eta=3")
    parser.add_argument("--budget-epochs", type=int, default=300)
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--kill-at", default="0.25,0.5,0.75", help="fractions of the evaluations at which to kill")
    parser.add_argument("--expected", type=int, default=None,
                        help="evaluations of an uninterrupted run (default: measured by one uninterrupted run first)")
    parser.add_argument("--device", default=None, help="passed to nasflow search (e.g. cuda); default: its own")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    cache, run = args.out / "cache", args.out / "run"
    env = {**os.environ, "NASFLOW_CACHE": str(cache)}
    # -P passed on: under benchmarks/gpu_checks.sh the checkout's own nasflow/ folder must stay off sys.path
    base = [sys.executable, *(["-P"] if sys.flags.safe_path else []), "-m", "nasflow.cli.main", "search",
            "--searcher", "evolution", "--width", str(args.width),
            "--schedule", args.schedule, "--budget-epochs", str(args.budget_epochs), "--checkpoint-every", "0",
            "--workers", str(args.workers), "--seed", str(args.seed)] + (["--device", args.device] if args.device else [])
    expected = args.expected
    if expected is None:  # an uninterrupted run, in a cache of its own, says how many evaluations to expect
        started = time.perf_counter()
        subprocess.run(base + ["--out", str(args.out / "uninterrupted")], check=True, capture_output=True,
                       env={**env, "NASFLOW_CACHE": str(args.out / "cache-uninterrupted")})
        expected = len(journal(args.out / "uninterrupted"))
        print(f"uninterrupted: {expected} evaluations in {time.perf_counter() - started:.0f} s")
    kills, orphans, session = [], 0, base + ["--out", str(run)]
    started = time.perf_counter()
    for fraction in [float(f) for f in args.kill_at.split(",")]:
        proc = subprocess.Popen(session, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while proc.poll() is None and len(journal(run)) < fraction * expected:
            time.sleep(0.05)
        if proc.poll() is not None:
            break  # finished before this kill point
        workers = children(proc.pid)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        time.sleep(2.0)
        orphans += sum(alive(w) for w in workers)
        in_flight = json.loads((run / "in_flight.json").read_text())
        kills.append({"after": len(journal(run)), "in_flight": len(in_flight)})
        session = base + ["--resume", str(run)]
    if proc.poll() is None or kills:
        subprocess.run(session, check=True, capture_output=True, env=env)
    wall = time.perf_counter() - started

    records = journal(run)
    rungs = json.loads((run / "result.json").read_text())["config"]["rungs"]
    charged = sum(r["epochs"] for r in records)
    trained = carried = 0
    for r in records:
        extra = r["extra"]
        trained += extra.get("trained_epochs", 0)
        k = rungs.index(r["fidelity"])
        below = rungs[k - 1] if k else 0
        carried += max(0, extra.get("resumed_from_epoch", 0) - below)
    jobs = collections.Counter((r["arch"], r["fidelity"]) for r in records)
    cache_lines = [json.loads(line) for line in (cache / "training" / "nb201.v2.jsonl").read_text().splitlines()]
    keys = collections.Counter(line["key"] for line in cache_lines)
    when = ", ".join(f"after {k['after']} evaluations, {k['in_flight']} in flight" for k in kills)
    print(f"kills: {len(kills)} ({when}); "
          f"worker processes alive 2 s after a kill: {orphans}")
    print(f"evaluations: {len(records)} (uninterrupted run: {expected}); (cell, rung) journaled twice: "
          f"{sum(c > 1 for c in jobs.values())}; (cell, stop) trained twice in the cache: {sum(c > 1 for c in keys.values())}")
    print(f"epochs charged {charged}; trained by the finishing trainings {trained}; carried over kills from "
          f"checkpoints {carried}; trained + carried - charged = {trained + carried - charged}")
    print(f"wall {wall:.0f} s for the killed and resumed sessions")
    ok = (orphans == 0 and trained + carried == charged and max(jobs.values()) == 1 and max(keys.values()) == 1)
    print("target (no training repeated beyond the last checkpoint):", "met" if ok else "NOT met")


if __name__ == "__main__":
    main()
