"""Record what a set of searches and the predictor protocol produce, or check that they still do.

Issue 17 restructures the loop, the predictor and the run settings with "behaviour unchanged":
with the same seeds, the trajectories reproduce bit for bit. Record before a change, check after:

    python benchmarks/behaviour_unchanged.py record BEFORE_DIR
    python benchmarks/behaviour_unchanged.py check BEFORE_DIR      # exit 1 on any difference

Each invocation uses its own empty ``$NASFLOW_CACHE`` (FGP pre-training and proxies are recomputed by
the code under test, not served from a cache the old code wrote). Recorded: ``trajectory.csv`` of
evolution/fgp, bananas/fgp with ``--warm-start synflow:200``, tpe/none and random/none at seeds 0-2
(budget 60, NB-201 CIFAR-10 table); the set of cells a one-worker shared study queried; and the
predictor protocol's table for GIN/GatedGCN x none/fgp at 1%. Only the CLI is used, so the script
runs unchanged on the code before and after.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

RUNS = [("evolution", "fgp", ()), ("bananas", "fgp", ("--warm-start", "synflow:200")),
        ("tpe", "none", ()), ("random", "none", ())]
SEEDS = (0, 1, 2)
BUDGET = 60


def nasflow(*args, env) -> str:
    done = subprocess.run([sys.executable, "-m", "nasflow.cli.main", *map(str, args)], env=env,
                          capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"nasflow {' '.join(map(str, args))} failed:\n{done.stderr}")
    return done.stdout


def deterministic_columns(trajectory: Path) -> str:
    """The trajectory without its timings (``seconds``, ``wall``), which no two runs share."""
    with trajectory.open() as f:
        rows = list(csv.DictReader(f))
    return "".join(",".join(row[k] for k in row if k not in ("seconds", "wall")) + "\n" for row in rows)


def without_timing(table: str) -> str:
    """The protocol's markdown table without its last column (fit seconds)."""
    return "".join(line.rsplit("|", 2)[0] + "|\n" if line.startswith("|") else line + "\n"
                   for line in table.splitlines())


def produce(out: Path, benchmark: str, only: str = "") -> None:
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "NASFLOW_CACHE": cache}
        for searcher, predictor, extra in RUNS:
            for seed in SEEDS:
                run = Path(cache) / f"{searcher}-{predictor}-{seed}"
                if only not in run.name:
                    continue
                nasflow("search", "--space", "nb201", "--searcher", searcher, "--predictor", predictor, *extra,
                        "--budget", BUDGET, "--seed", seed, "--benchmark", benchmark, "--out", run, env=env)
                (out / f"{run.name}.csv").write_text(deterministic_columns(run / "trajectory.csv"))
                print("recorded", run.name, flush=True)
        if only in "study":
            storage = f"sqlite:///{cache}/study.db"
            nasflow("search", "--space", "nb201", "--searcher", "evolution", "--predictor", "fgp", "--budget", 30,
                    "--seed", 0, "--benchmark", benchmark, "--storage", storage, "--workers", 1, "--out",
                    Path(cache) / "study", env=env)
            with (Path(cache) / "study" / "trajectory.csv").open() as f:
                cells = sorted(row["arch"] for row in csv.DictReader(f))
            (out / "study-cells.json").write_text(json.dumps(cells, indent=0))
            print("recorded the study", flush=True)
        if only in "protocol":
            table = nasflow("evaluate-predictor", "--space", "nb201", "--benchmark", benchmark, "--encoder", "gin",
                            "--encoder", "gatedgcn", "--pretrain", "none", "--pretrain", "fgp", "--ratios", "0.01",
                            env=env)
            (out / "protocol.txt").write_text(without_timing(table))
            print(table, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=("record", "check"))
    parser.add_argument("dir", type=Path)
    parser.add_argument("--benchmark", default=str(Path(os.environ.get("NASFLOW_BENCHMARKS", "."))
                                                    / "nb201" / "nb201_cifar.csv"))
    parser.add_argument("--only", default="", help="check only the recordings whose name contains this, "
                                                  "e.g. bananas, study or protocol")
    args = parser.parse_args()
    if args.mode == "record":
        produce(args.dir, args.benchmark)
        return
    with tempfile.TemporaryDirectory() as now:
        produce(Path(now), args.benchmark, args.only)
        compared = [p for p in sorted(args.dir.iterdir()) if (Path(now) / p.name).exists()]
        differ = [p.name for p in compared if (Path(now) / p.name).read_text() != p.read_text()]
    print(f"{len(differ)} of {len(compared)} recordings differ" + (f": {', '.join(differ)}" if differ else ""))
    sys.exit(1 if differ else 0)


if __name__ == "__main__":
    main()
