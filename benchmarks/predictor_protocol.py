"""The field's predictor protocol on NAS-Bench-201 (cifar10_valid labels) or NAS-Bench-101, plus speed.

Runs {gin, gatedgcn} x {none, fgp} at 1%, 5%, 10% of the space's training pool (NB-201:
7,813 cells; NB-101: 7,290), over permutations {21, 2021, 202121} x model seeds {21, 2021,
202121}, and prints mean ± std of Kendall tau, Spearman rho, P@1%, P@5%, then each FGP run minus its
no-pre-training twin (same permutation and seed): mean ± s.e. and wins/losses. Also times FGP
pre-training (one per encoder and seed, shared by all permutations and ratios; pass
--fresh-cache to time it rather than load it) and prediction speed.

The cells are the whole space where the table is complete (NB-201), else the table's cells
(NB-101: the 20,001 of nb101_20k.jsonl, valid_acc_108 labels): the pool is the first 7,290 of
a permutation, 40 validation cells follow, and the rest are the test set, as in the FGP and
FlowerFormer code on their ~14.6k-cell NB-101 file.

    NASFLOW_BENCHMARKS=/path/to/benchmarks python benchmarks/predictor_protocol.py
    python benchmarks/predictor_protocol.py --ratios 0.01 --seeds 21 --set pretrain_epochs=60
    python benchmarks/predictor_protocol.py --space nb101 --benchmark nb101_20k.jsonl --ratios 0.01
    python benchmarks/predictor_protocol.py --merge gin.json gatedgcn.json
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

import numpy as np

from predictor_options import add_set_option, predictor_options  # sibling module: run as benchmarks/<script>.py


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    from nasflow.registry import SPACES

    ap.add_argument("--space", default="nb201", choices=sorted(SPACES))
    ap.add_argument("--benchmark", default=None, help="the space's table (default: found in $NASFLOW_BENCHMARKS)")
    ap.add_argument("--dataset", default="cifar10")
    ap.add_argument("--encoders", default="gin,gatedgcn")
    ap.add_argument("--pretrains", default="none,fgp")
    ap.add_argument("--ratios", default="0.01,0.05,0.1")
    ap.add_argument("--seeds", default="21,2021,202121", help="model (and pre-training) seeds")
    ap.add_argument("--perms", default="21,2021,202121", help="permutation seeds")
    add_set_option(ap)
    ap.add_argument("--ensemble", type=int, default=1, metavar="K",
                    help="also score an ensemble of K predictors per run (seeds seed..seed+K-1, each pre-trained), "
                         "next to the single model")  # fmt: skip
    ap.add_argument("--ensemble-over", default="pretraining", choices=("pretraining", "finetuning"),
                    help="finetuning: members share one pre-training and differ in their fine-tuning seed")  # fmt: skip
    ap.add_argument("--fresh-cache", action="store_true", help="pre-train into an empty cache so it is timed")
    ap.add_argument("--json", default=None, help="also write every run to this JSON file")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--time-only", action="store_true",
                    help="only time one uncached FGP pre-training per encoder (wall and CPU seconds) and prediction")  # fmt: skip
    ap.add_argument("--merge", nargs="+", default=None, metavar="JSON",
                    help="print one table from runs saved by earlier --json runs, and exit")  # fmt: skip
    args = ap.parse_args(argv)
    if args.merge:
        from nasflow.predictors.protocol import ProtocolRun, format_table, summarise

        # a run repeated in two files (the protocol is deterministic) must count once
        runs, seen, repeats = [], set(), 0
        for path in args.merge:
            with open(path) as f:
                for run in (ProtocolRun(**r) for r in json.load(f)):
                    key = (run.encoder, run.pretrain, run.members, run.ensemble_over, run.options, run.ratio,
                           run.perm_seed, run.seed)  # fmt: skip
                    repeats += key in seen
                    if key not in seen:
                        seen.add(key)
                        runs.append(run)
        if repeats:
            print(f"skipped {repeats} run(s) already given by an earlier file (same encoder, pre-training, options, "
                  f"ratio, permutation and seed)", file=sys.stderr)  # fmt: skip
        print(format_table(summarise(runs)))
        _print_paired(runs)
        return 0

    import torch

    torch.set_num_threads(args.threads)
    if args.fresh_cache:
        os.environ["NASFLOW_CACHE"] = tempfile.mkdtemp(prefix="nasflow-cache-")
    from nasflow import Predictor, get_space
    from nasflow.predictors.protocol import format_table, run_protocol, summarise

    options = predictor_options(args.set)
    space = get_space(args.space)
    oracle = space.open_oracle(args.benchmark, args.dataset)
    # the table's own order where it holds part of the space: permutations index into this list
    archs = space.enumerate() if len(oracle) == space.size else oracle.archs()
    values = np.array([oracle.query(a).valid for a in archs])
    split = lambda s, f=str: [f(x) for x in s.split(",") if x]  # noqa: E731

    def show(run):
        kind = f"x{run.members}" + ("f" if run.ensemble_over == "finetuning" else "")
        print(
            f"{run.encoder:8s} {run.pretrain:4s} {kind} ratio {run.ratio:<5g} perm {run.perm_seed:<6d} seed {run.seed:<6d} "
            f"tau {run.tau:.3f} rho {run.rho:.3f} P@1% {run.p1:.3f} P@5% {run.p5:.3f} "
            f"fit {run.fit_seconds:.1f}s pretrain {run.pretrain_seconds:.1f}s",
            flush=True,
        )

    if args.time_only:
        for enc in split(args.encoders):
            p = Predictor(space, encoder=enc, pretrain="fgp", seed=0, cache=False, **options)
            wall, cpu = time.perf_counter(), time.process_time()
            p.pretrain()
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            print(f"FGP pre-training ({args.space}), {enc}: {wall:.1f} s wall, {cpu:.1f} s CPU "
                  f"(load average {os.getloadavg()[0]:.1f})")  # fmt: skip
        _time_prediction(space, archs, values, split(args.encoders), options)
        return 0
    start = time.perf_counter()
    runs = run_protocol(
        space, archs, values,
        encoders=split(args.encoders), pretrains=split(args.pretrains), ratios=split(args.ratios, float),
        seeds=split(args.seeds, int), perm_seeds=split(args.perms, int), options=options, on_run=show,
        ensemble=args.ensemble, ensemble_over=args.ensemble_over,
    )  # fmt: skip
    print(f"\nprotocol: {len(runs)} runs in {time.perf_counter() - start:.0f} s; options {options or 'defaults'}\n")
    print(format_table(summarise(runs)))
    _print_paired(runs)

    pretrain_times = {}
    for r in runs:
        if r.pretrain == "fgp" and r.members == 1 and r.pretrain_seconds > 0:
            pretrain_times.setdefault(r.encoder, set()).add(round(r.pretrain_seconds, 1))
    for enc, ts in pretrain_times.items():
        print(f"FGP pre-training ({args.space}), {enc}: {', '.join(f'{t:.1f}' for t in sorted(ts))} s")
    _time_prediction(space, archs, values, split(args.encoders), options)
    if args.json:
        with open(args.json, "w") as f:
            json.dump([r.to_dict() for r in runs], f, indent=1)
    return 0


def _print_paired(runs):
    from nasflow.predictors.protocol import format_paired, paired

    rows = paired(runs)
    if rows:
        print("\nPaired by permutation and seed, FGP minus no pre-training: mean ± s.e. (FGP wins/losses)\n")
        print(format_paired(rows))


def _time_prediction(space, archs, values, encoders, options):
    from nasflow import Predictor
    from nasflow.flow import flow_surrogate

    flow_surrogate(space, archs[:10])
    best = []
    for _ in range(3):
        t = time.perf_counter()
        flow_surrogate(space, archs)
        best.append(time.perf_counter() - t)
    print(f"flow surrogate of all {len(archs):,} cells: {min(best):.3f} s (best of 3; target < 1 s)")

    for enc in encoders:
        p = Predictor(space, encoder=enc, pretrain="none", seed=0, **options)
        t = time.perf_counter()
        p.fit(archs[:100], values[:100])
        fit = time.perf_counter() - t
        p.predict(archs[:100])
        best = []
        for _ in range(3):  # best of 3: other jobs share the CPU
            t = time.perf_counter()
            p.predict(archs)
            best.append(time.perf_counter() - t)
        print(f"{enc}: fit on 100 cells {fit:.2f} s; prediction {len(archs) / min(best):,.0f} cells/s "
              f"(all {len(archs):,} cells, best of 3; load average {os.getloadavg()[0]:.1f})")  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
