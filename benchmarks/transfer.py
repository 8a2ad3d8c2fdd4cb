"""Transfer benchmark (issue 8 item 5): does a predictor fitted on one dataset or space need
fewer labels on the next?

dataset:  NAS-Bench-201, source labels cifar10_valid, target labels cifar100_valid.
space:    NAS-Bench-101 (the cells of ``--nb101-table``, valid_acc_108: the 20,001 of nb101_20k.jsonl by
          default) to NAS-Bench-201 cifar10_valid, through unified encodings (Predictor(unified=True)).
space101: the other way: NAS-Bench-201 (all 15,625 cells, cifar10_valid) to the NB-101 table's cells.
task:     TransNAS-Bench-101 micro, cross-task (issue 19 item 4): for each of the seven tasks as target, the
          source task is class_object (class_scene for class_object itself): a classification task is what
          a user has labels for first. 711 labelled cells: the target trains on the first n of the seed's
          permutation, the source on the next ``--task-source-size``, the rest (347) are the test set.
suite:    NB-201 cross-dataset on the suite file (issue 19 item 4): source cifar10_valid (the NB-201 table, on
          ``--source-size`` cells outside the suite's), target the suite's scifar100 and svhn accuracies
          (about 200 cells each): the target trains on the first n of its cells' permutation, the rest test.

Per seed s: the target space's cells are permuted by the field permutation of seed s; the
target trains on the first n (8, 16, 32, 64) cells; the dataset source trains on the next
``--source-size`` NB-201 pool cells (cifar10_valid labels); every remaining cell (neither
source nor target training) is the test set, the same for every row and n of that seed.
A space source is fitted once on every labelled cell of the other space (``--source-epochs``)
and shared by all seeds: it is what a user would download, and it saw no target cell.
No validation labels anywhere: a fit runs its fixed epochs, because with 8 target labels a
40-cell validation set would cost 5x the budget being measured.

Rows: supervised (no transfer), FGP alone, transfer (init_from the source, the same
fine-tuning as the other rows), "gentle" transfer (init_from, fine-tuned with the
``--gentle`` options: a few labels should only nudge a good source), FGP + transfer (dataset
only, gentle: the source itself was FGP-pre-trained, then fitted on cifar10_valid), and
the sources' zero-shot tau on the target test cells (no target labels).

    NASFLOW_BENCHMARKS=/path/to/benchmarks python benchmarks/transfer.py --json /work/runs/J/transfer.json
    python benchmarks/transfer.py --experiments dataset --seeds 0,1 --sizes 8,64 --set dim=32
    python benchmarks/transfer.py --merge a.json b.json
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

from nasflow.atomic import atomic_write
from predictor_options import add_set_option, predictor_options  # sibling module: run as benchmarks/<script>.py

POOL = 7_813
ZERO_SHOT = 0  # the n of zero-shot rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--experiments", default="dataset,space,space101")
    ap.add_argument("--nb101-table", default="nb101_20k.jsonl", help="the NB-101 table of the space experiments")
    ap.add_argument("--source-epochs", type=int, default=None, help="fitting epochs of the space sources (default: the Predictor's)")
    ap.add_argument("--sizes", default="8,16,32,64", help="target label counts")
    ap.add_argument("--seeds", default="0,1,2,3,21", help="permutation and model seeds (0, 1, 2, 21 have cached FGP)")
    ap.add_argument("--source-size", type=int, default=781, help="cifar10_valid source cells (781 = the protocol's 10%%)")
    ap.add_argument("--task-source-size", type=int, default=300, help="source-task cells of the task experiment")
    add_set_option(ap)
    ap.add_argument("--gentle", action="append", default=None, metavar="KEY=VALUE",
                    help="fine-tuning options of the gentle transfer rows (default: lr=1e-4 epochs=50, chosen on seed 99)")  # fmt: skip
    ap.add_argument("--json", default=None, help="write every run (and the summary) to this JSON file, after each seed")
    ap.add_argument("--merge", nargs="+", default=None, metavar="JSON", help="print the table of saved runs and exit")
    args = ap.parse_args(argv)
    if args.merge:
        runs = []
        for path in args.merge:
            with open(path) as f:
                runs += json.load(f)["runs"]
        report(runs)
        return 0

    import torch

    torch.set_num_threads(1)
    options = predictor_options(args.set)
    gentle = {**options, **predictor_options(args.gentle or ["lr=1e-4", "epochs=50"])}
    sizes = sorted(int(x) for x in args.sizes.split(","))
    experiments = args.experiments.split(",")
    unknown = [e for e in experiments if e not in ("dataset", "task", "suite", *SPACE_EXPERIMENTS)]
    if unknown:
        raise SystemExit(f"unknown experiment(s) {unknown}; choose from dataset, task, suite, {', '.join(SPACE_EXPERIMENTS)}")
    data = load_tables(args.nb101_table, experiments)
    runs: list[dict] = []
    start = time.perf_counter()
    sources = space_sources(data, [e for e in experiments if e in SPACE_EXPERIMENTS], options, args.source_epochs)
    for seed in (int(x) for x in args.seeds.split(",")):
        for experiment in experiments:
            if experiment == "dataset":
                rows = dataset_transfer(data, seed, sizes, args.source_size, options, gentle)
            elif experiment == "task":
                rows = task_transfer(data, seed, sizes, args.task_source_size, options, gentle)
            elif experiment == "suite":
                rows = suite_transfer(data, seed, sizes, args.source_size, options, gentle)
            else:
                rows = space_transfer(experiment, sources[experiment], data, seed, sizes, options, gentle)
            for r in rows:
                runs.append(r)
                print(f"{r['experiment']:22s} seed {seed:<3d} {r['row']:21s} n {r['n']:<3d} tau {r['tau']:.3f} "
                      f"P@1% {r['p1']:.3f} fit {r['fit_s']:.1f}s", flush=True)  # fmt: skip
        if args.json:
            _write_json(args.json, {"command": " ".join(sys.argv), "options": options, "gentle": gentle, "runs": runs})
    print(f"\n{len(runs)} runs in {time.perf_counter() - start:.0f} s; options {options or 'defaults'}; "
          f"gentle {gentle}; source size {args.source_size}\n")  # fmt: skip
    report(runs)
    return 0


def load_tables(nb101_table: str, experiments) -> dict:
    """The cells and labels the experiments need (the NB-101 table only for the space experiments)."""
    from nasflow import get_space

    nb201 = get_space("nb201")
    archs = nb201.enumerate()
    c10, c100 = (nb201.open_oracle(dataset=d) for d in ("cifar10", "cifar100"))
    data = {
        "nb201": nb201, "archs": archs,
        "cifar10": np.array([c10.query(a).valid for a in archs]),
        "cifar100": np.array([c100.query(a).valid for a in archs]),
    }  # fmt: skip
    if set(experiments) & set(SPACE_EXPERIMENTS):
        nb101 = get_space("nb101")
        table101 = nb101.open_oracle(nb101_table)
        archs101 = list(table101.archs())
        data.update(nb101=nb101, archs101=archs101, values101=np.array([table101.query(a).valid for a in archs101]))
    if "task" in experiments:
        tnb = get_space("tnb101-micro")
        oracles = {task: tnb.open_oracle(dataset=task) for task in tnb.datasets}
        tnb_archs = list(oracles[tnb.datasets[0]].archs())
        data.update(tnb=tnb, tnb_archs=tnb_archs,
                    tasks={t: np.array([o.query(a).valid for a in tnb_archs]) for t, o in oracles.items()})
    if "suite" in experiments:
        from nasflow.spaces.suite_table import SuiteTableOracle, find_suite

        data["suite"] = {}
        for dataset in ("scifar100", "svhn"):
            oracle = SuiteTableOracle(find_suite(None), nb201, dataset, cell_field="arch")
            cells = list(oracle.archs())
            data["suite"][dataset] = (cells, np.array([oracle.query(a).valid for a in cells]))
    return data


def _scores(pred, true) -> dict:
    from nasflow.metrics import kendall_tau, precision_at_k

    return {"tau": kendall_tau(pred, true), "p1": precision_at_k(pred, true, 0.01)}


def _fit(predictor, archs, values, idx, init_from=None):
    start = time.perf_counter()
    predictor.fit([archs[i] for i in idx], values[idx], init_from=init_from)
    return predictor, time.perf_counter() - start


def _target_rows(experiment, archs, seed, sizes, labels, test, makers):
    """Fit each row's predictor on the first n permuted cells of ``archs`` for every n; score on ``test``."""
    perm = _perm(seed, len(archs))
    test_archs = [archs[i] for i in test]
    for row, (make, source) in makers.items():
        for n in sizes:
            predictor, seconds = _fit(make(), archs, labels, perm[:n], init_from=source)
            scores = _scores(predictor.predict(test_archs), labels[test])
            yield {"experiment": experiment, "row": row, "seed": seed, "n": n, **scores, "fit_s": seconds}


def _zero_shot(experiment, row, source, archs, seed, labels, test):
    scores = _scores(source.predict([archs[i] for i in test]), labels[test])
    return {"experiment": experiment, "row": row, "seed": seed, "n": ZERO_SHOT, **scores, "fit_s": 0.0}


def _perm(seed: int, n: int = 15_625) -> np.ndarray:
    from nasflow.predictors.protocol import field_permutation

    return field_permutation(n, seed)


def dataset_transfer(data, seed, sizes, source_size, options, gentle):
    """cifar10_valid -> cifar100_valid on NB-201."""
    n_max = max(sizes)
    if n_max + source_size > POOL:
        raise SystemExit(f"{n_max} target + {source_size} source cells do not fit in the {POOL}-cell pool")
    yield from label_transfer("dataset", data["nb201"], data["archs"], data["cifar10"], data["cifar100"], seed, sizes,
                              source_size, options, gentle)  # fmt: skip


def task_transfer(data, seed, sizes, source_size, options, gentle):
    """TransNAS-Bench-101 micro: a classification task's labels -> each of the seven tasks."""
    tasks, archs = data["tasks"], data["tnb_archs"]
    if max(sizes) + source_size >= len(archs):
        raise SystemExit(f"{max(sizes)} target + {source_size} source cells leave no test cell of {len(archs)}")
    for target in tasks:
        source = "class_scene" if target == "class_object" else "class_object"
        yield from label_transfer(f"task {source}->{target}", data["tnb"], archs, tasks[source], tasks[target], seed,
                                  sizes, source_size, options, gentle)  # fmt: skip


def suite_transfer(data, seed, sizes, source_size, options, gentle):
    """NB-201: cifar10_valid on cells outside the suite file -> the suite's scifar100 / svhn accuracies."""
    from nasflow import Predictor

    nb201, archs, c10 = data["nb201"], data["archs"], data["cifar10"]
    for dataset, (cells, labels) in data["suite"].items():
        taken = set(cells)
        source_idx = [i for i in _perm(seed) if archs[i] not in taken][:source_size]
        test = _perm(seed, len(cells))[max(sizes) :]
        experiment = f"suite cifar10->{dataset}"
        sources = {}
        for mode in ("none", "fgp"):
            sources[mode], seconds = _fit(Predictor(nb201, pretrain=mode, seed=seed, **options), archs, c10, source_idx)
            row = "source" if mode == "none" else "fgp source"
            yield {**_zero_shot(experiment, row + " 0-shot", sources[mode], cells, seed, labels, test), "fit_s": seconds}
        yield from _target_rows(experiment, cells, seed, sizes, labels, test, _label_makers(nb201, seed, sources, options, gentle))


def label_transfer(experiment, space, archs, source_labels, target_labels, seed, sizes, source_size, options, gentle):
    """Source labels -> target labels of the same cells: the target trains on the first n cells of the seed's
    permutation, the source on the next ``source_size``, the rest is the test set."""
    from nasflow import Predictor

    perm, n_max = _perm(seed, len(archs)), max(sizes)
    source_idx, test = perm[n_max : n_max + source_size], perm[n_max + source_size :]
    sources = {}
    for mode in ("none", "fgp"):
        sources[mode], seconds = _fit(Predictor(space, pretrain=mode, seed=seed, **options), archs, source_labels, source_idx)
        row = "source" if mode == "none" else "fgp source"
        yield {**_zero_shot(experiment, row + " 0-shot", sources[mode], archs, seed, target_labels, test), "fit_s": seconds}
    yield from _target_rows(experiment, archs, seed, sizes, target_labels, test,
                            _label_makers(space, seed, sources, options, gentle))  # fmt: skip


def _label_makers(space, seed, sources, options, gentle) -> dict:
    from nasflow import Predictor

    def make(mode, fit_options=options):
        return lambda: Predictor(space, pretrain=mode, seed=seed, **fit_options)

    return {
        "supervised": (make("none"), None),
        "fgp": (make("fgp"), None),
        "transfer": (make("none"), sources["none"]),
        "gentle transfer": (make("none", gentle), sources["none"]),
        "fgp + gentle transfer": (make("none", gentle), sources["fgp"]),
    }


# experiment -> (source space, its cells and labels; target space, its cells and labels), keys of load_tables
SPACE_EXPERIMENTS = {
    "space": (("nb101", "archs101", "values101"), ("nb201", "archs", "cifar10")),
    "space101": (("nb201", "archs", "cifar10"), ("nb101", "archs101", "values101")),
}


def space_sources(data, experiments, options, epochs) -> dict:
    """One unified source per space experiment, fitted on every labelled cell of the source space (seed 0)."""
    from nasflow import Predictor

    sources = {}
    for experiment in experiments:
        (space, archs, values), _ = SPACE_EXPERIMENTS[experiment]
        fit_options = {**options, **({"epochs": epochs} if epochs else {})}
        start = time.perf_counter()
        sources[experiment] = Predictor(data[space], pretrain="none", unified=True, seed=0, **fit_options)
        sources[experiment].fit(data[archs], data[values])
        print(f"{experiment} source: {space}, {len(data[archs]):,} cells, {time.perf_counter() - start:.0f} s", flush=True)
    return sources


def space_transfer(experiment, source, data, seed, sizes, options, gentle):
    """A unified source of one space -> the other space's labels (SPACE_EXPERIMENTS)."""
    from nasflow import Predictor

    (source_space, _, _), (space, archs, values) = SPACE_EXPERIMENTS[experiment]
    space, archs, labels = data[space], data[archs], data[values]
    test = _perm(seed, len(archs))[max(sizes) :]
    yield _zero_shot(experiment, f"{source_space} 0-shot", source, archs, seed, labels, test)

    def make(mode, unified, fit_options=options):
        return lambda: Predictor(space, pretrain=mode, unified=unified, seed=seed, **fit_options)

    makers = {
        "supervised": (make("none", True), None),  # the transfer row's own architecture, random start
        "fgp": (make("fgp", False), None),
        "transfer": (make("none", True), source),
        "gentle transfer": (make("none", True, gentle), source),
    }
    yield from _target_rows(experiment, archs, seed, sizes, labels, test, makers)


def summarise(runs) -> list[dict]:
    groups: dict[tuple, list[dict]] = {}
    for r in runs:
        groups.setdefault((r["experiment"], r["row"], r["n"]), []).append(r)
    out = []
    for (experiment, row, n), rs in groups.items():
        entry = {"experiment": experiment, "row": row, "n": n, "runs": len(rs)}
        for m in ("tau", "p1", "fit_s"):
            xs = np.array([r[m] for r in rs])
            entry[m], entry[m + "_std"] = float(xs.mean()), float(xs.std())
        out.append(entry)
    return out


def report(runs) -> None:
    rows = summarise(runs)
    print("| experiment | row | target labels | runs | Kendall tau | P@1% | fit s |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        n = "0 (zero-shot)" if r["n"] == ZERO_SHOT else str(r["n"])
        print(f"| {r['experiment']} | {r['row']} | {n} | {r['runs']} | {r['tau']:.3f} ± {r['tau_std']:.3f} | "
              f"{r['p1']:.3f} ± {r['p1_std']:.3f} | {r['fit_s']:.1f} |")  # fmt: skip
    print()
    for line in target_check(rows):
        print(line)


def target_check(rows, factor: int = 4) -> list[str]:
    """Issue 8's target: transfer at n labels reaches the no-transfer tau at factor * n labels."""
    tau = {(r["experiment"], r["row"], r["n"]): r["tau"] for r in rows}
    lines = [f"Target: transfer reaches the no-transfer tau with >= {factor}x fewer target labels"]
    for (experiment, row, n), value in sorted(tau.items()):
        if n == ZERO_SHOT:  # no target labels at all: compare with the most labels measured
            for baseline in ("supervised", "fgp"):
                n_max = max((k[2] for k in tau if k[:2] == (experiment, baseline)), default=None)
                if n_max is not None:
                    verdict = "met" if value >= tau[experiment, baseline, n_max] else "NOT met"
                    lines.append(f"  {experiment}: {row} (0 labels) tau {value:.3f} vs {baseline} at {n_max} labels "
                                 f"{tau[experiment, baseline, n_max]:.3f}: {verdict}")  # fmt: skip
            continue
        if "transfer" not in row:
            continue
        for baseline in ("supervised", "fgp"):
            other = tau.get((experiment, baseline, factor * n))
            if other is not None:
                verdict = "met" if value >= other else "NOT met"
                lines.append(f"  {experiment}: {row} at {n} labels tau {value:.3f} vs {baseline} at {factor * n} "
                             f"labels {other:.3f}: {verdict}")  # fmt: skip
    return lines


def _write_json(path, obj) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    atomic_write(path, json.dumps(obj, indent=1))


if __name__ == "__main__":
    sys.exit(main())
