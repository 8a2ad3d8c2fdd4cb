"""Zero-cost cross-check against NASLib (issue 19 item 5): nasflow's proxies on the 725 NB-201
cells of NAS-Bench-Suite-Zero, Spearman rho with NASLib's scores per proxy and dataset.

    NASFLOW_BENCHMARKS=/work/shared/benchmarks nice -n 10 python benchmarks/zero_cost_crosscheck.py \\
        --workers 2 --diagnose --json zc_crosscheck.json

Part 1 scores every cell with nasflow's proxies as they are (``nasflow.proxies.zero_cost_table``:
official network at 10 classes, torch seed 0 for every cell, 16 digits as the probe batch; cached
in $NASFLOW_CACHE) and correlates them with NASLib's column of the same proxy (``nwot`` is
nasflow's ``naswot``), per dataset. nasflow's scores do not depend on the dataset; NASLib's do
(its network has 100 outputs for CIFAR-100 and it sees a CIFAR-100 batch).

Part 2 (``--diagnose``) finds out where a disagreement comes from. FLOPs: NASLib's minus nasflow's,
fitted on each cell's count of edges per op (exact when the two conventions differ by a per-op
cost). Network proxies: the cells are scored again with one setting changed at a time (another
init seed; a fresh init and probe draw per cell, as NASLib draws them; NASLib's 100-class head
for CIFAR-100; batch 32; Gaussian noise instead of digits) through nasflow's public building
blocks (``space.network``, ``nasflow.proxies_grad.data_scores`` and ``synflow``), and each
variant's rho with nasflow's default and with NASLib is printed. rho(default, another seed) is
what two runs of the same definition reach when only the random init differs: a ceiling for
any independent implementation that draws its own weights.

Cost: about 0.4 CPU s per cell and pass (batch 32: about twice that), so on 2 cores the default
part takes ~2.5 minutes idle (9 minutes measured with the machine shared) and each diagnostic
about as long again; ``--only`` picks diagnostics, ``--limit`` cells.

What it found (session 9, all 725 cells): every proxy agrees with NASLib at rho >= 0.90, and the
definitions are the same (the papers' formulas, sums over conv/linear weights, train-mode BN,
`none` as a multiplication by zero). FLOPs differ by convention only: NASLib's tensorwatch also
counts 3 FLOPs per element for a conv edge's ReLU + BN and 9 for a 3x3 average pool; nasflow
counts conv/linear multiply-accumulates, NB-201's convention (7.78-220.12 M over the space). jacov's
0.90 is its own init noise: nasflow's jacov under another init seed agrees with itself at 0.91.

NASLib's degenerate scores are kept in order: its ``nwot`` of a singular kernel is -inf and ranks
lowest (nasflow scores it 0, also lowest); a NaN (one synflow score on CIFAR-10) drops that cell
from that proxy's correlation (``n`` in the table).
"""
from __future__ import annotations

import argparse
import csv
import json
import multiprocessing
import resource
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass

import numpy as np

from nasflow.benchfiles import find_benchmark
from nasflow.metrics import spearman_rho
from nasflow.proxies import zero_cost_table
from nasflow.spaces import get_space

DATASETS = ("cifar10", "cifar100")
CLASSES = {"cifar10": 10, "cifar100": 100}
# nasflow's proxy name -> NASLib's column
NASLIB_COLUMN = {"synflow": "synflow", "snip": "snip", "grad_norm": "grad_norm", "jacov": "jacov",
                 "naswot": "nwot", "params": "params", "flops": "flops"}
NETWORK_PROXIES = ("synflow", "snip", "grad_norm", "jacov", "naswot")
CHUNK = 8


def read_naslib(limit=None):
    """``(arch strings, {dataset: {column: scores in that order}})`` of the NB-201 rows."""
    path = find_benchmark("zero_cost", ["naslib_zc_nb201.csv"])
    rows: dict = {d: {} for d in DATASETS}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            if row["dataset"] in rows:
                rows[row["dataset"]][row["arch"]] = row
    archs = list(rows["cifar10"])[:limit]
    table = {d: {c: np.array([_number(rows[d][a][c]) for a in archs]) for c in set(NASLIB_COLUMN.values())}
             for d in DATASETS}
    return archs, table


def _number(text: str) -> float:
    return float(text) if text.strip() else float("nan")


def rho(ours, theirs) -> tuple[float, int]:
    """Spearman rho over the cells both score (NaN dropped); -inf kept as the lowest score."""
    ours, theirs = np.asarray(ours, float), np.asarray(theirs, float)
    keep = ~(np.isnan(ours) | np.isnan(theirs))
    ours, theirs = _floor(ours[keep]), _floor(theirs[keep])
    return spearman_rho(ours, theirs), int(keep.sum())


def _floor(x):
    # nasflow's spearman_rho refuses infinities: -inf becomes a finite value below every other score
    finite = x[np.isfinite(x)]
    low = finite.min() - 1.0 if finite.size else 0.0
    return np.where(np.isneginf(x), low, np.where(np.isposinf(x), finite.max() + 1.0 if finite.size else 1.0, x))


@dataclass(frozen=True)
class Setting:
    """One way of scoring: what differs from nasflow's definition is named in ``label``."""
    key: str
    label: str
    batch: int = 16
    naslib_classes: bool = False  # 100 outputs for CIFAR-100, as NASLib's network; else nasflow's 10
    seed: int = 0                 # torch seed of the init and seed of the probe draw
    per_cell: bool = False        # a fresh init and a fresh batch for every cell, as NASLib's runner draws them
    data: str = "digits"          # or "gaussian": N(0, 1) pixels with uniform random labels

    def classes(self, dataset: str) -> int:
        return CLASSES[dataset] if self.naslib_classes else 10


# one change from nasflow's definition each, so a shift in rho has one cause
DIAGNOSTICS = (
    Setting("seed1", "init seed 1 (another random init, same for every cell)", seed=1),
    Setting("per-cell", "fresh init and probe draw per cell (as NASLib's runner)", per_cell=True),
    Setting("classes100", "NASLib's head: 100 classes for CIFAR-100", naslib_classes=True),
    Setting("batch32", "batch 32 (NASLib's zc config; twice the cost)", batch=32),
    Setting("gaussian", "Gaussian noise input, random labels", data="gaussian"),
)


def probe(setting: Setting, classes: int, seed: int):
    import torch

    from nasflow.proxies_grad import probe_batch

    if setting.data == "digits":
        return probe_batch(setting.batch, seed=seed)
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(setting.batch, 3, 32, 32, generator=g),
            torch.randint(0, classes, (setting.batch,), generator=g))


def score_chunk(job) -> list[dict]:
    """The five network proxies of ``job``'s cells under one setting (run in a worker process)."""
    import torch

    from nasflow.devices import torch_threads
    from nasflow.proxies_grad import data_scores, synflow

    setting, classes, cells = job
    space = get_space("nb201")
    shared = None if setting.per_cell else probe(setting, classes, setting.seed)
    out = []
    with torch_threads(1):
        for index, text in cells:
            # per cell: a seed of its own, as NASLib's runner draws init and batch anew for each cell
            seed = int(np.random.SeedSequence([setting.seed, index]).generate_state(1)[0]) if setting.per_cell \
                else setting.seed
            x, y = shared if shared is not None else probe(setting, classes, seed)
            torch.manual_seed(seed)
            net = space.network(space.parse(text), num_classes=classes)
            scores = data_scores(net, x, y, [n for n in NETWORK_PROXIES if n != "synflow"])
            scores["synflow"] = synflow(net, tuple(x.shape[1:]))  # last: it makes the weights non-negative
            out.append(scores)
    return out


def score_setting(setting: Setting, classes: int, archs, workers: int, desc: str) -> dict:
    from tqdm.auto import tqdm

    jobs = [(setting, classes, list(enumerate(archs))[i:i + CHUNK]) for i in range(0, len(archs), CHUNK)]
    results: list = []
    with tqdm(total=len(archs), desc=desc, unit="cell") as bar:
        if workers <= 1:
            chunks = map(score_chunk, jobs)
            for chunk in chunks:
                results.extend(chunk)
                bar.update(len(chunk))
        else:
            with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
                for chunk in pool.map(score_chunk, jobs):
                    results.extend(chunk)
                    bar.update(len(chunk))
    return {n: np.array([r[n] for r in results]) for n in NETWORK_PROXIES}


def cpu_seconds() -> float:
    """CPU seconds of this process and of its finished worker processes (a shared machine's wall time misleads)."""
    return sum(r.ru_utime + r.ru_stime for r in (resource.getrusage(resource.RUSAGE_SELF),
                                                  resource.getrusage(resource.RUSAGE_CHILDREN)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=None, help="only the first N cells of the file (a quick run)")
    parser.add_argument("--workers", type=int, default=2, help="processes scoring networks")
    parser.add_argument("--diagnose", action="store_true", help="also score the diagnostic variants (part 2)")
    parser.add_argument("--only", default=",".join(s.key for s in DIAGNOSTICS),
                        help="comma-separated diagnostics to run (default: all): " + ", ".join(s.key for s in DIAGNOSTICS))
    parser.add_argument("--json", dest="json_path", default=None, help="write every rho and timing to this file")
    args = parser.parse_args()

    archs, naslib = read_naslib(args.limit)
    space = get_space("nb201")
    cells = [space.parse(a) for a in archs]
    report: dict = {"cells": len(archs), "workers": args.workers, "default": {}, "timings": {}}

    start, cpu = time.perf_counter(), cpu_seconds()
    ours = zero_cost_table(space, cells, list(NASLIB_COLUMN), progress=True, workers=args.workers)
    report["timings"]["default_s"] = time.perf_counter() - start
    report["timings"]["default_cpu_s"] = cpu_seconds() - cpu
    print(f"\n{len(archs)} NB-201 cells of NAS-Bench-Suite-Zero; nasflow's proxies as defined "
          f"({report['timings']['default_s']:.0f} s wall, {report['timings']['default_cpu_s']:.0f} CPU s, "
          f"{args.workers} worker(s), cached cells free)")
    print("| proxy (nasflow / NASLib) | rho cifar10 | rho cifar100 | n |")
    print("|---|---|---|---|")
    for name, column in NASLIB_COLUMN.items():
        row = {d: rho(ours[name], naslib[d][column]) for d in DATASETS}
        report["default"][name] = {d: {"rho": r, "n": n} for d, (r, n) in row.items()}
        label = name if name == column else f"{name} / {column}"
        print(f"| {label} | {row['cifar10'][0]:.3f} | {row['cifar100'][0]:.3f} | "
              f"{'/'.join(str(row[d][1]) for d in DATASETS)} |")
    # NASLib against itself across datasets: how much its score moves with the data and head alone
    print("| (NASLib cifar10 vs NASLib cifar100) | " + " | ".join(
        f"{name}: {rho(naslib['cifar10'][c], naslib['cifar100'][c])[0]:.3f}" for name, c in NASLIB_COLUMN.items()
        if name in NETWORK_PROXIES) + " |")

    if args.diagnose:
        chosen = [k.strip() for k in args.only.split(",") if k.strip()]
        unknown = set(chosen) - {s.key for s in DIAGNOSTICS}
        if unknown:
            parser.error(f"unknown diagnostics {sorted(unknown)}; choose from {[s.key for s in DIAGNOSTICS]}")
        settings = [s for s in DIAGNOSTICS if s.key in chosen]
        report["diagnostics"] = diagnose(archs, ours, naslib, settings, args.workers, report["timings"])
    if args.json_path:
        with open(args.json_path, "w") as f:
            json.dump(report, f, indent=2)
        print(f"wrote {args.json_path}")


def flops_difference(archs, ours, naslib) -> dict:
    """NASLib's FLOPs minus nasflow's (MFLOPs) as a constant plus a cost per edge of each op."""
    from nasflow.spaces.nb201 import OPS

    space = get_space("nb201")
    counts = np.array([[space.parse(a).ops.count(op) for op in OPS] for a in archs], dtype=float)
    # none and skip_connect cost nothing in either convention: they fold into the constant
    design = np.column_stack([np.ones(len(archs)), counts[:, [OPS.index(o) for o in OPS if o not in ("none", "skip_connect")]]])
    names = ["constant"] + [o for o in OPS if o not in ("none", "skip_connect")]
    out = {}
    for d in DATASETS:
        diff = naslib[d]["flops"] - ours["flops"] / 1e6
        coef, *_ = np.linalg.lstsq(design, diff, rcond=None)
        out[d] = {"mflops_per_edge": dict(zip(names, coef.tolist())),
                  "max_residual": float(np.abs(design @ coef - diff).max())}
    return out


def diagnose(archs, ours, naslib, settings, workers: int, timings: dict) -> dict:
    flops = flops_difference(archs, ours, naslib)
    print("\nFLOPs, NASLib minus nasflow (MFLOPs) = constant + per-edge cost of each op, least squares:")
    for d, fit in flops.items():
        terms = ", ".join(f"{k} {v:+.4f}" for k, v in fit["mflops_per_edge"].items())
        print(f"  {d}: {terms}; max residual {fit['max_residual']:.1e}")
    out = []
    for setting in settings:
        # a setting that ignores the dataset is scored once and compared with both datasets; NASLib's
        # head differs from nasflow's only for CIFAR-100
        datasets = ("cifar100",) if setting.naslib_classes else (None,)
        for dataset in datasets:
            classes = setting.classes(dataset or "cifar10")
            start, cpu = time.perf_counter(), cpu_seconds()
            scores = score_setting(setting, classes, archs, workers, desc=f"{setting.key} ({classes} classes)")
            seconds, cpu = time.perf_counter() - start, cpu_seconds() - cpu
            timings[f"{setting.key} / {classes} classes"] = {"wall_s": seconds, "cpu_s": cpu}
            entry = {"setting": asdict(setting), "classes": classes, "seconds": seconds, "cpu_s": cpu, "proxies": {}}
            print(f"\n{setting.label}, {classes} classes ({seconds:.0f} s wall, {cpu:.0f} CPU s):")
            print("| proxy | rho with nasflow default | rho NASLib cifar10 | rho NASLib cifar100 |")
            print("|---|---|---|---|")
            for name in NETWORK_PROXIES:
                column = NASLIB_COLUMN[name]
                r_self = rho(scores[name], ours[name])[0]
                r_lib = {d: rho(scores[name], naslib[d][column])[0] for d in DATASETS}
                entry["proxies"][name] = {"rho_default": r_self, **{f"rho_naslib_{d}": r for d, r in r_lib.items()}}
                shown = {d: (f"{r_lib[d]:.3f}" if dataset in (None, d) else "-") for d in DATASETS}
                print(f"| {name} | {r_self:.3f} | {shown['cifar10']} | {shown['cifar100']} |")
            out.append(entry)
    return {"flops": flops, "settings": out}


if __name__ == "__main__":
    main()
