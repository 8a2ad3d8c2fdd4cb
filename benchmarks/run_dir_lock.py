"""Two processes on one run directory, started together: does exactly one win, and is its run whole?

Two kinds of pairs (issue 16), each repeated ``--pairs`` times on a fresh directory:

- ``out``: two ``nasflow search --out DIR`` of the same new directory, with different seeds;
- ``resume``: two ``nasflow search --resume DIR`` of one run cut after half its budget
  (as a killed run leaves it).

Counted per pair: how many of the two exited 0 (both exiting 0 counts apart when the second
only started after the first had finished, found a finished run and replayed it), and whether the directory ends up as one
run, whole: the journal's header, its records (0..budget-1, no duplicates), result.json and
trajectory.csv all agree, and the cells are exactly those of an undisturbed run with the
winner's seed (a reference run per seed). Anything else counts as lost or mixed records.

    python benchmarks/run_dir_lock.py --pairs 20 --budget 20 --benchmark $NASFLOW_BENCHMARKS/nb201/nb201_cifar.csv
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def nasflow_args(*args) -> list[str]:
    return [sys.executable, "-m", "nasflow.cli.main", *map(str, args)]


def search_args(args, seed: int, out: Path) -> list[str]:
    return nasflow_args("search", "--searcher", args.searcher, "--seed", seed, "--budget", args.budget,
                        "--benchmark", args.benchmark, "--out", out)


def cells(run: Path) -> list[str]:
    lines = (run / "journal.jsonl").read_text().splitlines()
    return [json.loads(line)["arch"] for line in lines[1:]]


def whole(run: Path, reference: dict[int, list[str]], budget: int) -> bool:
    """One run, complete and consistent, equal to the undisturbed run of its seed."""
    try:
        lines = (run / "journal.jsonl").read_text().splitlines()
        header, records = json.loads(lines[0]), [json.loads(line) for line in lines[1:]]
        result = json.loads((run / "result.json").read_text())
        trajectory = [row.split(",")[1] for row in (run / "trajectory.csv").read_text().splitlines()[1:]]
    except (OSError, ValueError, IndexError):
        return False
    archs = [r["arch"] for r in records]
    return (
        [r["i"] for r in records] == list(range(budget))
        and result["queries"] == budget
        and result["config"]["seed"] == header["seed"]
        and trajectory == archs
        and archs == reference[header["seed"]]
    )


def start_pair(commands: list[list[str]]) -> list[tuple[int, str]]:
    """(exit status, stdout) of each command, all started at once."""
    procs = [subprocess.Popen(c, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for c in commands]
    return [(p.returncode, out) for p in procs for out, _ in [p.communicate()]]


def replayed_only(stdout: str, budget: int) -> bool:
    """Whether a resume found the run already finished and queried nothing (its report: all from the journal)."""
    return f"(of budget {budget}; {budget} from the journal)" in stdout


def run_pairs(mode: str, args, reference: dict[int, list[str]], root: Path) -> dict:
    both = after = one = none = broken = 0
    for pair in range(args.pairs):
        run = root / f"{mode}{pair}"
        seeds = (2 * pair, 2 * pair + 1)
        if mode == "out":
            codes = start_pair([search_args(args, seed, run) for seed in seeds])
        else:
            # a killed run: the reference run's journal cut after half the budget, no results yet
            run.mkdir()
            lines = (root / f"reference{seeds[0]}" / "journal.jsonl").read_text().splitlines(keepends=True)
            (run / "journal.jsonl").write_text("".join(lines[: 1 + args.budget // 2]))
            codes = start_pair([nasflow_args("search", "--resume", run)] * 2)
        wins = sum(code == 0 for code, _ in codes)
        # both exit 0 is harmless only if one ran after the other had finished: the second then found a
        # finished run and replayed it from the journal, querying nothing
        serial = wins == 2 and any(replayed_only(out, args.budget) for _, out in codes)
        after += serial
        both += wins == 2 and not serial
        one += wins == 1
        none += wins == 0
        broken += not whole(run, reference, args.budget)
    return {"mode": mode, "pairs": args.pairs, "both_ok": both, "after": after, "one_ok": one, "none_ok": none, "lost_or_mixed": broken}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pairs", type=int, default=20)
    parser.add_argument("--budget", type=int, default=20)
    parser.add_argument("--searcher", default="random")
    parser.add_argument("--benchmark", required=True, help="an NB-201 table, e.g. nb201_cifar.csv")
    parser.add_argument("--modes", default="out,resume")
    args = parser.parse_args()
    modes = [m for m in args.modes.split(",") if m]
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        reference = {}
        for seed in range(2 * args.pairs):
            out = root / f"reference{seed}"
            subprocess.run(search_args(args, seed, out), check=True, capture_output=True)
            reference[seed] = cells(out)
        rows = [run_pairs(mode, args, reference, root) for mode in modes]
    print(f"{'mode':8s} {'pairs':>5s} {'both exit 0':>11s} {'both 0, serial':>14s} {'one exit 0':>10s} "
          f"{'none':>5s} {'lost or mixed':>13s}")
    for r in rows:
        print(f"{r['mode']:8s} {r['pairs']:5d} {r['both_ok']:11d} {r['after']:14d} {r['one_ok']:10d} {r['none_ok']:5d} "
              f"{r['lost_or_mixed']:13d}")
    print(f"({args.searcher}, budget {args.budget}, {time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
