"""Every searcher x predictor combination over seeds: curves, a table, a CSV and a PNG.

The figure of merit is the anytime curve: test accuracy of the best-valid cell after n
oracle queries, mean +- standard error over seeds. A table without test accuracies
(NAS-Bench-101's tables give validation accuracy only) has the best validation accuracy
found instead, and every output says which it shows. Each finished run is stored in
``out/runs/`` as JSON, so an interrupted comparison picks up where it stopped.
"""
from __future__ import annotations

import csv
import io
import json
import warnings
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from ..atomic import atomic_write
from .outputs import dicts_csv, save_png
from ..devices import torch_threads
from ..errors import NasflowError
from ..spec import RunSpec
from .cost_compare import cost_fields
from .runs import (
    checked_searcher_options, complete, pretrain_for, run_search, searcher_pools, takes_ensemble, takes_warm_start,
)


def _run_file(out: Path, spec: RunSpec) -> Path:
    def slug(text: str) -> str:
        return "".join(c if c.isalnum() else "-" for c in text)

    searcher = spec.searcher  # runs without searcher options keep the names they always had
    if spec.searcher_options:
        searcher += "-" + slug(",".join(f"{k}={v}" for k, v in spec.searcher_options.items()))
    if spec.schedule is not None:  # a run at full fidelity keeps the name it always had
        return out / "runs" / f"{searcher}-{spec.predictor}-{slug(spec.schedule)}-seed{spec.seed}.json"
    return out / "runs" / f"{searcher}-{spec.predictor}-seed{spec.seed}.json"


def _finished(path: Path, spec: RunSpec) -> Optional[dict]:
    """The record of ``spec``'s run stored at ``path``, if there is one made with the same settings."""
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
        # defaults filled in: a run made before a setting existed matches runs that leave it at its default
        stored = RunSpec.from_json(record["settings"], searcher_pools())
    except (ValueError, TypeError, KeyError, NasflowError):  # unreadable, or not a record: run it again
        return None
    return record if stored.to_json() == spec.to_json() else None


def run_one(job: tuple[RunSpec, str]) -> dict:
    """One run, for a worker process: a spec in, a JSON-able record of its curves out."""
    settings, out = job
    path = _run_file(Path(out), settings)
    record = _finished(path, settings)
    if record is not None:
        return record
    with torch_threads(1):  # parallel runs share the cores
        result = run_search(settings)
    record = {
        "searcher": settings["searcher"],
        "predictor": settings["predictor"],
        "seed": settings["seed"],
        "best_valid": result.best_valid_curve().tolist(),
        "best_test": [None if np.isnan(v) else v for v in result.best_test_curve().tolist()],
        "queries_to_optimum": result.queries_to_optimum(),
        "overhead_per_query_s": result.overhead_per_query,
        "wall_s": result.trajectory[-1].wall,
        "optimum": result.optimum,
        "settings": settings.to_json(),
    }
    if settings.schedule is not None:
        record.update(cost_fields(result))
    if result.front is not None:  # a multi-objective run: its hypervolume after each query
        from .fronts import run_record

        record["front"] = run_record(result.front)
    atomic_write(path, json.dumps(record) + "\n")
    return record


def _pretrain_job(settings: RunSpec) -> None:
    with torch_threads(1):  # parallel jobs share the cores
        pretrain_for(settings)


def compare(
    searchers: Sequence[str],
    predictors: Sequence[str],
    seeds: int,
    out,
    base: Optional[dict] = None,
    jobs: int = 1,
    progress: bool = False,
) -> list[dict]:
    """Run the grid (``seeds`` seeds 0..seeds-1 each) in ``jobs`` processes; return the run records."""
    from tqdm.auto import tqdm

    from nasflow.searchers import SEARCHERS, SearcherError

    if not isinstance(seeds, int) or seeds < 1:
        raise NasflowError(f"--seeds must be an integer >= 1, got {seeds!r}")
    if not isinstance(jobs, int) or jobs < 1:
        raise NasflowError(f"--jobs must be an integer >= 1, got {jobs!r}")
    for name in searchers:
        if name not in SEARCHERS:
            raise SearcherError(f"unknown searcher {name!r}; choose from {', '.join(SEARCHERS)}")
        checked_searcher_options(name, (base or {}).get("searcher_options"))  # every searcher of the grid takes them
    if (base or {}).get("warm_start") is not None:
        from nasflow.spaces import get_space

        from .warm_start import parse

        # checked even when no searcher in the grid takes it
        parse(base["warm_start"], get_space(complete(base).space).size)
    out = Path(out)
    (out / "runs").mkdir(parents=True, exist_ok=True)
    def run_settings(searcher: str, predictor: str, seed: int) -> RunSpec:
        given = {**(base or {}), "searcher": searcher, "predictor": predictor, "seed": seed}
        if not takes_warm_start(searcher):  # e.g. random and tpe have no uniform start to replace
            given.pop("warm_start", None)
        return complete(given)

    # seed-major order: a comparison stopped early still has every combination on its first seeds
    grid = [
        run_settings(s, p, seed)
        for seed in range(seeds)
        for s in searchers
        for p in predictors
    ]
    # Fail fast on a bad benchmark/predictor before forking anything.
    from .runs import build

    build(grid[0], progress)  # with a warm start, this also scores (and caches) seed 0's samples
    for settings in grid[1:]:
        if settings.predictor != grid[0].predictor:
            build(settings)
            break
    def pretraining(s):  # what decides which pre-trainings a run needs
        return (s.space, s.predictor, takes_ensemble(s.searcher), s.resolved_predictor_seed)

    pretrain = {pretraining(s): s for s in grid if "fgp" in s.predictor.split("+") and not _run_file(out, s).is_file()}
    jobs_list = [(s, str(out)) for s in grid]
    if jobs == 1:
        for s in tqdm(pretrain.values(), disable=not progress, desc="pre-training", unit="run"):
            _pretrain_job(s)
        records = [run_one(j) for j in tqdm(jobs_list, disable=not progress, desc="runs", unit="run")]
    else:
        import multiprocessing as mp

        with mp.get_context("spawn").Pool(jobs) as workers:
            list(tqdm(workers.imap_unordered(_pretrain_job, pretrain.values()), total=len(pretrain),
                      disable=not progress, desc="pre-training", unit="run"))
            records = list(tqdm(workers.imap(run_one, jobs_list), total=len(jobs_list),
                                disable=not progress, desc="runs", unit="run"))
            # let the workers exit on their own: leaving the block terminates them before their finalisers
            # unlink the semaphores they created, and Python then warns about leaked semaphores at shutdown
            workers.close()
            workers.join()
    return records


def _groups(records: list[dict]) -> dict[tuple[str, str], list[dict]]:
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in records:
        groups.setdefault((r["searcher"], r["predictor"]), []).append(r)
    return groups


def mean_se(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    n = np.sum(~np.isnan(values), axis=0)
    # an all-NaN column (a table without test accuracies) is NaN by design, not worth numpy's warning
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = np.nanmean(values, axis=0)
        se = np.nanstd(values, axis=0, ddof=1) / np.sqrt(np.maximum(n, 1)) if values.shape[0] > 1 else np.zeros_like(mean)
    return mean, se


def merit(records: list[dict]) -> str:
    """'test' when the runs' table gave test accuracies, else 'valid': what the anytime curve shows."""
    return "test" if any(v is not None for r in records for v in r["best_test"]) else "valid"


def _curves(runs: list[dict], metric: str) -> np.ndarray:
    """Runs x queries array of the best-valid cell's ``metric`` ('test' or 'valid'), NaN where unknown."""
    return np.array([[np.nan if v is None else v for v in r[f"best_{metric}"]] for r in runs], dtype=float)


def curves_csv(records: list[dict]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["searcher", "predictor", "queries", "runs", "mean_test", "se_test", "mean_valid", "se_valid"])
    for (searcher, predictor), runs in _groups(records).items():
        test, valid = _curves(runs, "test"), _curves(runs, "valid")
        mt, st = mean_se(test)
        mv, sv = mean_se(valid)
        for q in range(test.shape[1]):
            writer.writerow([searcher, predictor, q + 1, len(runs), f"{mt[q]:.4f}", f"{st[q]:.4f}", f"{mv[q]:.4f}", f"{sv[q]:.4f}"])
    return buf.getvalue()


def summary_rows(records: list[dict]) -> list[dict]:
    """Per combination: mean +- s.e. final test and valid, median queries to the best-valid cell, overhead."""
    rows = []
    for (searcher, predictor), runs in _groups(records).items():
        finals = _curves(runs, "test")[:, -1]
        finals_valid = _curves(runs, "valid")[:, -1]
        budget = len(runs[0]["best_valid"])
        # a run that never found it counts as needing more than the budget
        hits = np.array([budget + 1 if r["queries_to_optimum"] is None else r["queries_to_optimum"] for r in runs])
        median = float(np.median(hits))
        mean, se = mean_se(finals[:, None])
        mean_valid, se_valid = mean_se(finals_valid[:, None])
        rows.append({
            "searcher": searcher, "predictor": predictor, "runs": len(runs),
            "mean_final_test": float(mean[0]), "se_final_test": float(se[0]),
            "mean_final_valid": float(mean_valid[0]), "se_final_valid": float(se_valid[0]),
            "median_queries_to_best_valid": median if median <= budget else None,
            "found": int(np.sum(hits <= budget)), "budget": budget,
            "overhead_per_query_s": float(np.mean([r["overhead_per_query_s"] for r in runs])),
        })
    return rows


# where the printed paired table looks; paired.csv has every n
PAIRED_AT = (10, 20, 30, 50, 100)


def paired_rows(records: list[dict], predictors: Sequence[str]) -> list[dict]:
    """Per searcher, each predictor minus the one listed before it, paired by seed, at every query count.

    Runs of one seed share the searcher's seed and so start from the same random cells: the per-seed
    difference of best valid accuracy removes that luck, which the curves' standard errors keep.
    """
    by_key = {(r["searcher"], r["predictor"], r["seed"]): r for r in records}
    rows = []
    for searcher in dict.fromkeys(r["searcher"] for r in records):
        for base, other in zip(predictors, predictors[1:]):
            seeds = sorted(s for (se, p, s) in by_key if se == searcher and p == other and (se, base, s) in by_key)
            if not seeds:
                continue
            diff = np.array([np.subtract(by_key[searcher, other, s]["best_valid"], by_key[searcher, base, s]["best_valid"])
                             for s in seeds], dtype=float)
            mean, se = mean_se(diff)
            for q in range(diff.shape[1]):
                rows.append({
                    "searcher": searcher, "predictor": other, "minus": base, "queries": q + 1, "seeds": len(seeds),
                    "mean_diff_valid": float(mean[q]), "se_diff_valid": float(se[q]),
                    # ties are common late in a run: both found the same best cell
                    "wins": int(np.sum(diff[:, q] > 1e-9)), "ties": int(np.sum(np.abs(diff[:, q]) <= 1e-9)),
                    "losses": int(np.sum(diff[:, q] < -1e-9)),
                })
    return rows


def format_paired(rows: list[dict]) -> str:
    """The paired rows at PAIRED_AT (and the last query count), one line per searcher and pair."""
    if not rows:
        return ""
    budget = max(r["queries"] for r in rows)
    at = sorted({n for n in PAIRED_AT if n <= budget} | {budget})
    lines = ["paired by seed, best valid: predictor minus the one listed before it, mean +- s.e. (wins/ties/losses)",
             f"{'searcher':10s} {'pair':18s} " + " ".join(f"{'n=' + str(n):>22s}" for n in at)]
    groups: dict[tuple, dict] = {}
    for r in rows:
        groups.setdefault((r["searcher"], r["predictor"], r["minus"]), {})[r["queries"]] = r
    for (searcher, predictor, base), by_n in groups.items():
        cells = [f"{by_n[n]['mean_diff_valid']:+.3f}+-{by_n[n]['se_diff_valid']:.3f} "
                 f"({by_n[n]['wins']}/{by_n[n]['ties']}/{by_n[n]['losses']})" for n in at]
        lines.append(f"{searcher:10s} {predictor + '-' + base:18s} " + " ".join(f"{c:>22s}" for c in cells))
    return "\n".join(lines)


def format_table(rows: list[dict], metric: str = "test") -> str:
    """One line per combination; ``metric`` ('test' or 'valid', see ``merit``) picks the final accuracy shown."""
    lines = [f"{'searcher':10s} {'predictor':10s} {'runs':>4s}  {'final ' + metric:>15s}  {'median q to best-valid':>22s}  {'overhead s/q':>12s}"]
    for r in rows:
        median = r["median_queries_to_best_valid"]
        median = f">{r['budget']}" if median is None else f"{median:g}"
        found = f"{median} ({r['found']}/{r['runs']} found)"
        lines.append(
            f"{r['searcher']:10s} {r['predictor']:10s} {r['runs']:4d}  "
            f"{r[f'mean_final_{metric}']:8.3f} +- {r[f'se_final_{metric}']:.3f}  {found:>22s}  {r['overhead_per_query_s']:12.3f}"
        )
    return "\n".join(lines)


# where the printed anytime table looks; curves.csv has every n
ANYTIME_AT = (10, 30, 50, 100, 150, 200)


def format_anytime(records: list[dict]) -> str:
    """The anytime curve at ANYTIME_AT (and the budget): mean +- s.e. over seeds of the figure of merit."""
    metric = merit(records)
    budget = max(len(r["best_valid"]) for r in records)
    at = sorted({n for n in ANYTIME_AT if n <= budget} | {budget})
    lines = [f"anytime: {metric} accuracy of the best-valid cell after n queries, mean +- s.e. over seeds",
             f"{'searcher':10s} {'predictor':10s} " + " ".join(f"{'n=' + str(n):>15s}" for n in at)]
    for (searcher, predictor), runs in _groups(records).items():
        mean, se = mean_se(_curves(runs, metric))
        cells = [f"{mean[n - 1]:.3f}+-{se[n - 1]:.3f}" if n <= len(mean) else "" for n in at]
        lines.append(f"{searcher:10s} {predictor:10s} " + " ".join(f"{c:>15s}" for c in cells))
    return "\n".join(lines)


def plot(records: list[dict], path) -> None:
    """PNG of mean +- s.e. test (or valid, see ``merit``) of the best-valid cell vs queries, one line per
    combination (written atomically)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metric = merit(records)
    fig, ax = plt.subplots(figsize=(8, 5))
    for (searcher, predictor), runs in _groups(records).items():
        mean, se = mean_se(_curves(runs, metric))
        x = np.arange(1, len(mean) + 1)
        (line,) = ax.plot(x, mean, label=f"{searcher} + {predictor} ({len(runs)} seeds)")
        ax.fill_between(x, mean - se, mean + se, alpha=0.2, color=line.get_color())
    optimum = (records[0].get("optimum") or {}).get(metric)
    if optimum is not None:
        ax.axhline(optimum, color="black", linestyle=":", linewidth=1, label=f"table optimum ({metric})")
    ax.set_xlabel("oracle queries")
    ax.set_ylabel(f"{metric} accuracy of the best-valid cell (%)")
    finals = [r[f"best_{metric}"][-1] for r in records if r[f"best_{metric}"][-1] is not None]
    if finals:
        ax.set_ylim(min(finals) - 1.5, (optimum or max(finals)) + 0.3)
    ax.legend(fontsize=7, loc="lower right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    save_png(fig, path)


def write_outputs(records: list[dict], out, predictors: Sequence[str] = ()) -> dict:
    """curves.csv, summary.csv, curves.png (and paired.csv when two predictors were compared) in ``out``;
    returns their paths."""
    out = Path(out)
    paths = {"curves": out / "curves.csv", "summary": out / "summary.csv", "plot": out / "curves.png"}
    atomic_write(paths["curves"], curves_csv(records))
    atomic_write(paths["summary"], dicts_csv(summary_rows(records)))
    paired = paired_rows(records, predictors)
    if paired:
        paths["paired"] = out / "paired.csv"
        atomic_write(paths["paired"], dicts_csv(paired))
    plot(records, paths["plot"])
    if all("front" in r for r in records):
        from .fronts import write_hypervolume

        paths.update(write_hypervolume(records, out))
    return paths
