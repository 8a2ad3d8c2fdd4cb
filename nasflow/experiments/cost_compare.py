"""Comparisons in training cost: the anytime curve of multi-fidelity runs against cumulative epochs.

The figure of merit of a scheduled run (``nasflow.scheduled_loop``) is the full-fidelity test accuracy of its
best cell so far (best at the highest fidelity it was trained to) after each evaluation, placed at the epochs
spent so far. A run at full fidelity (no schedule) is the same curve with every query costing the full
fidelity. Curves are read at common cost points (the last evaluation that fits), then mean +- s.e. over seeds.
"""
from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Optional

import numpy as np

from ..atomic import atomic_write
from .outputs import dicts_csv, save_png

# where the printed table looks, as shares of the largest budget; cost_curves.csv has a finer grid
COST_SHARES = (0.1, 0.2, 1 / 3, 0.5, 1.0)
GRID_POINTS = 200
NO_SCHEDULE = "none"


def cost_fields(result) -> dict:
    """What a comparison's run record adds for a scheduled run (``ScheduledResult``)."""
    return {"schedule": result.config["schedule"], "epochs": [int(e) for e in result.total_epochs()],
            "full_epochs": int(max(result.config["rungs"])), "budget_epochs": int(result.config["budget_epochs"]),
            "epochs_to_optimum": result.epochs_to_optimum()}


def schedule_of(record: dict) -> str:
    return record.get("schedule") or NO_SCHEDULE


def full_epochs(records: list[dict]) -> Optional[int]:
    """The full fidelity of the scheduled runs (what a query of an unscheduled run costs); None without any."""
    fulls = {r["full_epochs"] for r in records if "full_epochs" in r}
    return max(fulls) if fulls else None


def spent(record: dict, full: int) -> np.ndarray:
    """Cumulative epochs after each evaluation of ``record``."""
    if "epochs" in record:
        return np.asarray(record["epochs"], dtype=np.int64)
    return full * np.arange(1, len(record["best_test"]) + 1, dtype=np.int64)


def at_costs(record: dict, costs: np.ndarray, full: int, metric: str = "test") -> np.ndarray:
    """The best cell's ``metric`` after the last evaluation within each cost (NaN before the first)."""
    values = np.array([np.nan if v is None else v for v in record[f"best_{metric}"]], dtype=float)
    index = np.searchsorted(spent(record, full), costs, side="right") - 1
    return np.where(index >= 0, values[np.maximum(index, 0)], np.nan)


def epochs_to_optimum(record: dict, full: int) -> Optional[int]:
    if "epochs" in record:
        return record.get("epochs_to_optimum")
    found = record.get("queries_to_optimum")
    return None if found is None else int(found) * full


def groups(records: list[dict]) -> dict[tuple[str, str, str], list[dict]]:
    out: dict[tuple[str, str, str], list[dict]] = {}
    for r in records:
        out.setdefault((r["searcher"], r["predictor"], schedule_of(r)), []).append(r)
    return out


def mean_se(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard error over the rows, ignoring NaN (a run that has not evaluated anything yet)."""
    n = np.sum(~np.isnan(values), axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        total = np.nansum(values, axis=0)
        mean = np.where(n > 0, total / np.maximum(n, 1), np.nan)
        dev = np.where(np.isnan(values), 0.0, values - mean) ** 2
        se = np.where(n > 1, np.sqrt(dev.sum(axis=0) / np.maximum(n - 1, 1)) / np.sqrt(np.maximum(n, 1)), 0.0)
    return mean, se


def budget(records: list[dict], full: int) -> int:
    return int(max(spent(r, full)[-1] if "budget_epochs" not in r else r["budget_epochs"] for r in records))


def cost_points(records: list[dict], full: int) -> list[int]:
    top = budget(records, full)
    return sorted({int(round(top * share)) for share in COST_SHARES})


def summary_rows(records: list[dict], metric: str = "test") -> list[dict]:
    """Per searcher, predictor and schedule: mean +- s.e. of the best cell's ``metric`` at the cost points, and
    the median epochs to train the table's best-valid cell at full fidelity (None: not in half the runs)."""
    full = full_epochs(records) or 1
    points = cost_points(records, full)
    rows = []
    for (searcher, predictor, schedule), runs in groups(records).items():
        values = np.array([at_costs(r, np.array(points), full, metric) for r in runs])
        mean, se = mean_se(values)
        hits = [epochs_to_optimum(r, full) for r in runs]
        found = sorted(h for h in hits if h is not None)
        median = float(np.median([h if h is not None else np.inf for h in hits]))
        row = {"searcher": searcher, "predictor": predictor, "schedule": schedule, "runs": len(runs)}
        for c, m, s in zip(points, mean, se):
            row[f"mean_{metric}_at_{c}"] = float(m)
            row[f"se_{metric}_at_{c}"] = float(s)
        row.update(median_epochs_to_best_valid=None if not np.isfinite(median) else median, found=len(found))
        rows.append(row)
    return rows


def curves_csv(records: list[dict], metric: str = "test") -> str:
    full = full_epochs(records) or 1
    grid = np.unique(np.linspace(0, budget(records, full), GRID_POINTS + 1).round().astype(np.int64))[1:]
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["searcher", "predictor", "schedule", "epochs", "runs", f"mean_{metric}", f"se_{metric}"])
    for (searcher, predictor, schedule), runs in groups(records).items():
        mean, se = mean_se(np.array([at_costs(r, grid, full, metric) for r in runs]))
        for c, m, s in zip(grid, mean, se):
            writer.writerow([searcher, predictor, schedule, int(c), len(runs), f"{m:.4f}", f"{s:.4f}"])
    return buf.getvalue()


def format_table(rows: list[dict], metric: str = "test") -> str:
    points = [int(k.rsplit("_", 1)[1]) for k in rows[0] if k.startswith(f"mean_{metric}_at_")]
    lines = [f"cost: {metric} accuracy (full fidelity) of the best cell after E training epochs, mean +- s.e. over seeds",
             f"{'searcher':10s} {'predictor':9s} {'schedule':30s} {'runs':>4s} "
             + " ".join(f"{'E=' + format(c, ',d'):>15s}" for c in points) + f"  {'epochs to best-valid':>22s}"]
    for r in rows:
        cells = [f"{r[f'mean_{metric}_at_{c}']:.3f}+-{r[f'se_{metric}_at_{c}']:.3f}" for c in points]
        median = r["median_epochs_to_best_valid"]
        reach = f"{'>budget' if median is None else format(int(median), ',d')} ({r['found']}/{r['runs']})"
        lines.append(f"{r['searcher']:10s} {r['predictor']:9s} {r['schedule']:30s} {r['runs']:4d} "
                     + " ".join(f"{c:>15s}" for c in cells) + f"  {reach:>22s}")
    return "\n".join(lines)


def plot(records: list[dict], path, metric: str = "test") -> None:
    """PNG of mean +- s.e. ``metric`` of the best cell vs cumulative training epochs (written atomically)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    full = full_epochs(records) or 1
    grid = np.unique(np.linspace(0, budget(records, full), GRID_POINTS + 1).round().astype(np.int64))[1:]
    fig, ax = plt.subplots(figsize=(8, 5))
    lows = []
    for (searcher, predictor, schedule), runs in groups(records).items():
        mean, se = mean_se(np.array([at_costs(r, grid, full, metric) for r in runs]))
        (line,) = ax.plot(grid, mean, label=f"{searcher} + {predictor}, {schedule} ({len(runs)} seeds)")
        ax.fill_between(grid, mean - se, mean + se, alpha=0.2, color=line.get_color())
        lows.append(np.nanmin(mean[len(mean) // 10:]) if np.any(~np.isnan(mean)) else np.nan)
    optimum = (records[0].get("optimum") or {}).get(metric)
    if optimum is not None:
        ax.axhline(optimum, color="black", linestyle=":", linewidth=1, label=f"table optimum ({metric})")
    if lows and np.any(~np.isnan(lows)):
        ax.set_ylim(np.nanmin(lows) - 0.3, (optimum or np.nanmax(lows)) + 0.2)
    ax.set_xlabel("training epochs spent")
    ax.set_ylabel(f"{metric} accuracy at full fidelity of the best cell (%)")
    ax.legend(fontsize=7, loc="lower right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    save_png(fig, path)


def write_outputs(records: list[dict], out, metric: str = "test") -> dict:
    """cost_curves.csv, cost_summary.csv and cost_curves.png in ``out``; returns their paths."""
    out = Path(out)
    paths = {"curves": out / "cost_curves.csv", "summary": out / "cost_summary.csv", "plot": out / "cost_curves.png"}
    atomic_write(paths["curves"], curves_csv(records, metric))
    atomic_write(paths["summary"], dicts_csv(summary_rows(records, metric)))
    plot(records, paths["plot"], metric)
    return paths
