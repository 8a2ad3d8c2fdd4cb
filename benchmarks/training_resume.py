"""Kill `nasflow search` in the middle of a 30-epoch training and resume it: how many epochs are trained twice?

    python benchmarks/training_resume.py --kills 10 --epochs 30 --checkpoint-every 1

Each kill: a fresh run (one query, the digits recipe with --epochs, one cell) is started with
progress bars on, SIGKILLed once its epoch bar shows a random number of finished epochs, and
resumed with --resume. Epochs trained twice = epochs finished at the kill - the epoch the
resumed training started from (the journal's ``resumed_from_epoch``). The resumed result is
compared with an uninterrupted training of the same cell (on the CPU they must be identical).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np


def command(run: Path, epochs: int, every: float, seed: int) -> list[str]:
    return [sys.executable, "-m", "nasflow.cli.main", "search", "--searcher", "random", "--budget", "1",
            "--seed", str(seed), "--epochs", str(epochs), "--device", "cpu", "--checkpoint-every", str(every),
            "--out", str(run)]


def killed_at(cmd: list[str], env: dict, epochs: int, target: int) -> int:
    """Start ``cmd``, SIGKILL it once ``target`` epochs are finished; returns the epochs its bar showed."""
    proc = subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL)
    seen = [0]
    pattern = re.compile(rf"(\d+)/{epochs} \[")

    def read():
        buffer = ""
        while True:
            chunk = proc.stderr.read1(4096).decode(errors="replace") if proc.stderr else ""
            if not chunk:
                return
            buffer = (buffer + chunk)[-2000:]
            for match in pattern.finditer(buffer):
                seen[0] = max(seen[0], int(match.group(1)))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    while seen[0] < target and proc.poll() is None:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    reader.join(timeout=5)
    return seen[0]


def query(run: Path) -> dict:
    return json.loads((run / "journal.jsonl").read_text().splitlines()[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--checkpoint-every", type=float, default=1.0)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    rows = []
    for kill in range(args.kills):
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            env = {**os.environ, "NASFLOW_CACHE": str(tmp / "cache"), "NASFLOW_PROGRESS": "1"}
            target = int(rng.integers(2, args.epochs - 2))
            cmd = command(tmp / "run", args.epochs, args.checkpoint_every, seed=kill)
            finished = killed_at(cmd, env, args.epochs, target)
            subprocess.run([sys.executable, "-m", "nasflow.cli.main", "search", "--resume", str(tmp / "run"),
                            "--checkpoint-every", str(args.checkpoint_every)], env=env, check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            resumed = query(tmp / "run")
            whole_env = {**env, "NASFLOW_CACHE": str(tmp / "whole-cache"), "NASFLOW_PROGRESS": "0"}
            subprocess.run(command(tmp / "whole", args.epochs, 3600, seed=kill), env=whole_env, check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            whole = query(tmp / "whole")
        start = resumed["extra"]["resumed_from_epoch"]
        row = {"kill": kill, "finished_at_kill": finished, "resumed_from": start, "retrained": finished - start,
               "identical": (resumed["valid"], resumed["test"]) == (whole["valid"], whole["test"])}
        rows.append(row)
        print(json.dumps(row), flush=True)
    retrained = [r["retrained"] for r in rows]
    print(f"\n{len(rows)} kills of a {args.epochs}-epoch training, checkpoint every {args.checkpoint_every} s: "
          f"epochs trained twice per kill mean {np.mean(retrained):.2f}, max {max(retrained)}; "
          f"resumed result identical to the uninterrupted one in {sum(r['identical'] for r in rows)}/{len(rows)}")


if __name__ == "__main__":
    main()
