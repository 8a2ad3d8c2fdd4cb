"""NB-101 at full scale: FGP pre-training on 100k cells, then scoring all 423,624 cells in one call.

Steps, each timed (wall and CPU seconds, with the load average: the CPU may be shared):
1. ``space.enumerate()``: the 423,624 cells (from the enumeration's disk cache once it exists).
2. FGP pre-training on ``--samples`` cells (the default cells: a seeded choice of enumeration
   indices), uncached unless ``--reuse-pretraining``, so it is really timed.
3. Fine-tuning on ``--labels`` cells of a labelled table (nb101_1k.jsonl), and Kendall tau
   on the table's other cells (a sanity check, not the protocol: benchmarks/predictor_protocol.py).
4. ``Predictor.predict`` on all 423,624 cells, one call.
Peak resident memory of the process is printed at the end.

    NASFLOW_BENCHMARKS=/path/to/benchmarks nice -n 5 python benchmarks/nb101_predict_scale.py
    python benchmarks/nb101_predict_scale.py --samples 100000 --set pretrain_epochs=20 --encoder gatedgcn
"""
from __future__ import annotations

import argparse
import os
import resource
import sys
import time

import numpy as np

from predictor_options import add_set_option, predictor_options  # sibling module: run as benchmarks/<script>.py


class Timer:
    """Wall and CPU seconds of a ``with`` block, and the load average when it ended."""

    def __enter__(self):
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.wall, self.cpu = time.perf_counter() - self.wall, time.process_time() - self.cpu
        self.load = os.getloadavg()[0]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--samples", type=int, default=100_000, help="FGP pre-training cells (default 100,000)")
    ap.add_argument("--encoder", default="gin")
    ap.add_argument("--labels", type=int, default=100, help="fine-tuning cells from the labelled table")
    ap.add_argument("--table", default=None,
                    help="labelled NB-101 cells with matrices (default: $NASFLOW_BENCHMARKS/nb101/nb101_1k.jsonl)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--reuse-pretraining", action="store_true", help="load the pre-training from the cache if it is there")
    add_set_option(ap)
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    from nasflow import Predictor, get_space
    from nasflow.metrics import kendall_tau

    options = {"pretrain_samples": args.samples, **predictor_options(args.set)}
    space = get_space("nb101")
    rows = []
    # read before the long pre-training, so a missing file fails at once
    table = args.table or os.path.join(os.environ.get("NASFLOW_BENCHMARKS", "../shared/benchmarks"), "nb101", "nb101_1k.jsonl")
    oracle = space.open_oracle(table)
    labelled = oracle.archs()
    values = np.array([oracle.query(a).valid for a in labelled])

    with Timer() as t:
        archs = space.enumerate()
    rows.append((f"enumerate(): {len(archs):,} cells", t))

    p = Predictor(space, encoder=args.encoder, seed=args.seed, threads=args.threads, cache=args.reuse_pretraining,
                  **options)  # fmt: skip
    with Timer() as t:
        p.pretrain(progress=True)
    cached = " (from the cache)" if p.pretrain_from_cache else ""
    epochs = len(p.pretrain_losses)
    rows.append((f"FGP pre-training, {args.samples:,} cells x {epochs} epochs{cached}", t))

    order = np.random.default_rng(args.seed).permutation(len(labelled))
    train, test = order[: args.labels], order[args.labels :]
    with Timer() as t:
        p.fit([labelled[i] for i in train], values[train])
    tau = kendall_tau(p.predict([labelled[i] for i in test]), values[test])
    rows.append((f"fine-tuning on {args.labels} labels (tau {tau:.3f} on {len(test)} others)", t))

    with Timer() as t:
        scores = p.predict(archs, progress=True)
    rows.append((f"predict(): all {len(scores):,} cells in one call", t))
    if scores.shape != (len(archs),) or not np.isfinite(scores).all():
        raise SystemExit("predict() gave missing or non-finite scores")

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux
    print(f"\nNB-101, {args.encoder}, {args.threads} torch thread(s), options {options}")
    print("| step | wall s | CPU s | load |\n|---|---|---|---|")
    for name, t in rows:
        print(f"| {name} | {t.wall:.1f} | {t.cpu:.1f} | {t.load:.1f} |")
    print(f"\npeak resident memory: {peak:,.0f} MB; best cell by score: {space.format(archs[int(np.argmax(scores))])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
