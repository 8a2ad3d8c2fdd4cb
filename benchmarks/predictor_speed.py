"""Prediction and training speed of every predictor encoder (GIN, GatedGCN, flow, FLAN-style) on all NB-201 cells.

Same process, same batch sizes, same model width and depth for every encoder; each
number is the best of ``--repeats`` timings (the CPU is shared, so the best is the least
disturbed). Prediction: ``Predictor.predict`` over all 15,625 cells in chunks of each
batch size. Training: one ``Predictor.fit`` epoch (pairwise hinge) over all 15,625 cells
at ``--train-batch``. Ratios are speed-ups over the flow encoder (> 1 = faster than it).
Graph batches are assembled inside the timed calls, as in real use; the per-cell graph
arrays are cached by a warm-up call first. FGP pre-training changes weights, not cost, so
the numbers hold for supervised and FGP models alike.

    python benchmarks/predictor_speed.py
    python benchmarks/predictor_speed.py --batch-sizes 256,4096 --set dim=64 --repeats 5
"""
from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from predictor_options import add_set_option, predictor_options  # sibling module: run as benchmarks/<script>.py


def best_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--encoders", default=None, help="comma-separated (default: every encoder in ENCODERS)")
    ap.add_argument("--batch-sizes", default="256,16384", help="prediction chunk sizes (16384 = all cells at once)")
    ap.add_argument("--train-batch", type=int, default=128, help="training batch size (Predictor default 128)")
    ap.add_argument("--repeats", type=int, default=3)
    add_set_option(ap)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    from nasflow import Predictor, get_space
    from nasflow.predictors.encoders import ENCODERS

    options = predictor_options(args.set)
    encoders = [e for e in args.encoders.split(",") if e] if args.encoders else list(ENCODERS)
    sizes = [int(s) for s in args.batch_sizes.split(",") if s]
    space = get_space("nb201")
    archs = space.enumerate()
    # Labels only give fit something to rank; speed does not depend on them.
    values = np.random.default_rng(0).random(len(archs))

    rows = {}
    for enc in encoders:
        p = Predictor(space, encoder=enc, pretrain="none", seed=0, threads=args.threads, **options)
        p.fit(archs[:64], values[:64])  # warm-up: caches every cell's graph arrays below too
        p.predict(archs)
        row = {}
        for b in sizes:
            seconds = best_time(lambda: [p.predict(archs[s : s + b]) for s in range(0, len(archs), b)], args.repeats)
            row[f"predict@{b}"] = len(archs) / seconds
        trainer = Predictor(
            space, encoder=enc, pretrain="none", seed=0, threads=args.threads,
            **{**options, "epochs": 1, "batch_size": args.train_batch},
        )  # fmt: skip
        row["epoch"] = best_time(lambda: trainer.fit(archs, values), args.repeats)
        rows[enc] = row
        print(f"{enc}: " + ", ".join(f"{k} {v:,.1f}" for k, v in row.items()), file=sys.stderr, flush=True)

    ref = rows.get("flow")
    header = ["encoder"]
    for b in sizes:
        header += [f"predict cells/s (batch {b})", "x flow"]
    header += [f"train s/epoch (15,625 cells, batch {args.train_batch})", "x flow"]
    print(f"NB-201, all {len(archs):,} cells, {args.threads} torch thread(s), best of {args.repeats}, options {options or 'defaults'}\n")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for enc, row in rows.items():
        cells = [enc]
        for b in sizes:
            speed = row[f"predict@{b}"]
            cells += [f"{speed:,.0f}", f"{speed / ref[f'predict@{b}']:.1f}" if ref else "-"]
        cells += [f"{row['epoch']:.2f}", f"{ref['epoch'] / row['epoch']:.1f}" if ref else "-"]
        print("| " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
