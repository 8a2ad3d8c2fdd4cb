"""A multi-objective run's result: the Pareto front of its queried cells, hypervolume per query, front.png.

``objectives_for`` builds a run's ``nasflow.objectives.Objectives`` (checked before any work: an unknown
metric, a searcher that optimises valid alone); ``front_report`` turns a finished run's trajectory into
its front (cell, each objective, test accuracy), the hypervolume of the front of its first n queries for
every n, and, where the space is enumerable and the oracle a complete table, the table's true front and
its hypervolume under the same reference point (``nasflow.objectives.reference_point``: the median of
each objective over the space; without a complete table, the worst value among the queried cells).
``write_front`` saves ``front.csv``, ``front.json`` and ``front.png`` in the run directory.
"""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Optional

import numpy as np

from ..atomic import atomic_write
from .outputs import dicts_csv, save_png
from ..core import Evaluation
from ..cost_metrics import CostMetrics
from ..errors import NasflowError
from ..objectives import ACCURACY, Objectives, describe_reference, front_of, reference_point, table_points
from ..pareto import hypervolume

# The looser reference (docs/RESULTS.md): the space's worst value in every objective. Reported beside
# the median one, never instead of it: with it any front that avoids the degenerate cells looks near-perfect.
LOOSE = "worst value over every cell of the space"


def objectives_for(settings, metrics: CostMetrics) -> Optional[Objectives]:
    """The run's objectives over ``metrics`` (of the searched space, constraints applied), or None without any."""
    if not settings["objectives"]:
        return None
    from nasflow.searchers import SEARCHERS, searcher_class

    if not searcher_class(settings["searcher"]).takes_objectives:
        able = [name for name in SEARCHERS if searcher_class(name).takes_objectives]
        raise NasflowError(f"searcher {settings['searcher']!r} optimises valid alone; --objectives needs one of "
                           f"{', '.join(able)}")
    return Objectives(settings["objectives"], metrics)


def front_report(result, space, oracle, objectives: Objectives) -> dict:
    """The front of ``result``'s queried cells, the hypervolume after each query and the true front's."""
    archs = [space.parse(q.arch) for q in result.trajectory]
    tests = [q.test for q in result.trajectory]
    evaluations = [Evaluation(valid=q.valid, test=q.test) for q in result.trajectory]  # what each query answered
    values = objectives.values(archs, evaluations)
    points = objectives.points(archs, evaluations)
    table = table_points(space, oracle, objectives)
    everything = table is not None
    reference = reference_point(table[1] if everything else points, everything)
    curve = [hypervolume(points[:n], reference) for n in range(1, len(points) + 1)]
    front = front_of(points)
    report = {
        "objectives": [str(o) for o in objectives.items],
        "reference": reference.tolist(),
        "reference_note": describe_reference(reference, objectives, everything),
        "front": [{"arch": space.format(archs[i]), **dict(zip(objectives.names, values[i].tolist())),
                   "test": tests[i]} for i in front],
        "hypervolume": curve,
        "points": values.tolist(),
    }
    if everything:
        cells, all_points = table
        true = front_of(all_points)
        loose = all_points.max(axis=0)
        report.update(true_front=(all_points[true] * _signs(objectives)).tolist(),
                      true_hypervolume=hypervolume(all_points, reference),
                      loose_reference=loose.tolist(),
                      loose_reference_note=describe_reference(loose, objectives, True).replace(
                          "median over every cell of the space", LOOSE),
                      hypervolume_loose=hypervolume(points, loose),
                      true_hypervolume_loose=hypervolume(all_points, loose))
    return report


def _signs(objectives: Objectives) -> np.ndarray:
    return np.array([-1.0 if s == "max" else 1.0 for s in objectives.senses])


def front_csv(report: dict) -> str:
    buf = io.StringIO()
    names = [o.lstrip("-") for o in report["objectives"]]
    writer = csv.DictWriter(buf, fieldnames=["arch", *names, "test"], lineterminator="\n")
    writer.writeheader()
    writer.writerows(report["front"])
    return buf.getvalue()


def write_front(report: dict, run_dir) -> dict:
    """front.csv (the front: cell, each objective, test), front.json (all of the report), front.png."""
    run_dir = Path(run_dir)
    paths = {"csv": run_dir / "front.csv", "json": run_dir / "front.json", "plot": run_dir / "front.png"}
    atomic_write(paths["csv"], front_csv(report))
    atomic_write(paths["json"], json.dumps(report, indent=1) + "\n")
    plot_front(report, paths["plot"])
    return paths


def plot_front(report: dict, path) -> None:
    """Accuracy (or the first objective) against the first cost metric: the queried cells, their front,
    and the table's true front where known (written atomically)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [o.lstrip("-") for o in report["objectives"]]
    y = names.index(ACCURACY) if ACCURACY in names else 0
    x = next(i for i in range(len(names)) if i != y)
    points = np.array(report["points"])
    fig, ax = plt.subplots(figsize=(7, 5))
    ax.scatter(points[:, x], points[:, y], s=12, color="0.6", label=f"queried cells ({len(points)})")
    if "true_front" in report:
        true = np.array(report["true_front"])
        order = np.argsort(true[:, x])
        ax.step(true[order, x], true[order, y], where="post", color="black", linestyle=":", linewidth=1,
                label=f"the table's true front ({len(true)} cells)")
    found = np.array([[row[names[x]], row[names[y]]] for row in report["front"]])
    order = np.argsort(found[:, 0])
    ax.step(found[order, 0], found[order, 1], where="post", color="tab:red", marker="o", markersize=4,
            label=f"front of the queried cells ({len(found)})")
    # the reference is stored minimised: a maximised objective's value negated
    ref = np.array(report["reference"]) * np.array([1.0 if o.startswith("-") else -1.0 for o in report["objectives"]])
    ax.scatter([ref[x]], [ref[y]], marker="x", color="tab:blue", label="hypervolume reference")
    ax.set_xlabel(names[x])
    ax.set_ylabel(names[y] + (" accuracy (%)" if names[y] == ACCURACY else ""))
    top = max(points[:, y].max(), np.array(report.get("true_front", [[0] * len(names)]))[:, y].max())
    if names[y] == ACCURACY:  # the degenerate cells near 10% would squash the front into a line
        ax.set_ylim(max(points[:, y].min(), ref[y] - 10), top + 0.5)
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    save_png(fig, path)


# where the printed hypervolume table looks; hypervolume.csv has every n
HYPERVOLUME_AT = (10, 30, 50, 100, 150, 200)


def run_record(report: dict) -> dict:
    """What a comparison keeps of a run's front report: the hypervolume curve and what it is measured against."""
    keep = ("objectives", "reference", "reference_note", "hypervolume", "true_hypervolume", "loose_reference_note",
            "hypervolume_loose", "true_hypervolume_loose")
    return {k: report[k] for k in keep if k in report}


def hypervolume_rows(records: list[dict]) -> list[dict]:
    """Per combination and n: the hypervolume of the front after n queries, mean and s.e. over seeds, and its
    share of the table's true front's where known."""
    from .compare import mean_se

    groups: dict[tuple, list[dict]] = {}
    for r in records:
        groups.setdefault((r["searcher"], r["predictor"]), []).append(r)
    rows = []
    for (searcher, predictor), runs in groups.items():
        curves = np.array([r["front"]["hypervolume"] for r in runs], dtype=float)
        true = runs[0]["front"].get("true_hypervolume")
        mean, se = mean_se(curves)
        ratio_mean, ratio_se = mean_se(curves / true) if true else (np.full_like(mean, np.nan),) * 2
        for q in range(curves.shape[1]):
            rows.append({"searcher": searcher, "predictor": predictor, "queries": q + 1, "runs": len(runs),
                         "mean_hypervolume": float(mean[q]), "se_hypervolume": float(se[q]),
                         "mean_ratio_to_true_front": float(ratio_mean[q]), "se_ratio_to_true_front": float(ratio_se[q])})
    return rows


def format_hypervolume(records: list[dict]) -> str:
    """The hypervolume table at HYPERVOLUME_AT (and the budget), with the reference point stated."""
    rows = hypervolume_rows(records)
    first = records[0]["front"]
    budget = max(r["queries"] for r in rows)
    at = sorted({n for n in HYPERVOLUME_AT if n <= budget} | {budget})
    true = first.get("true_hypervolume")
    share = true is not None
    lines = [f"hypervolume of the front of {','.join(first['objectives'])} after n queries, "
             + ("as a share of the table's true front's, " if share else "")
             + "mean +- s.e. over seeds",
             f"reference: {first['reference_note']}" + (f"; true front {true:.6g}" if share else ""),
             f"{'searcher':10s} {'predictor':10s} " + " ".join(f"{'n=' + str(n):>17s}" for n in at)]
    by = {(r["searcher"], r["predictor"], r["queries"]): r for r in rows}
    for key in dict.fromkeys((r["searcher"], r["predictor"]) for r in rows):
        cells = []
        for n in at:
            r = by.get((*key, n))
            if r is None:
                cells.append("")
            elif share:
                cells.append(f"{r['mean_ratio_to_true_front']:.1%}+-{r['se_ratio_to_true_front']:.1%}")
            else:
                cells.append(f"{r['mean_hypervolume']:.4g}+-{r['se_hypervolume']:.2g}")
        lines.append(f"{key[0]:10s} {key[1]:10s} " + " ".join(f"{c:>17s}" for c in cells))
    return "\n".join(lines)


def write_hypervolume(records: list[dict], out) -> dict:
    """hypervolume.csv (every combination and n) and hypervolume.png (mean +- s.e. per query) in ``out``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt


    out = Path(out)
    rows = hypervolume_rows(records)
    paths = {"hypervolume": out / "hypervolume.csv", "hypervolume_plot": out / "hypervolume.png"}
    atomic_write(paths["hypervolume"], dicts_csv(rows))
    share = records[0]["front"].get("true_hypervolume") is not None
    key = "ratio_to_true_front" if share else "hypervolume"
    fig, ax = plt.subplots(figsize=(8, 5))
    for combo in dict.fromkeys((r["searcher"], r["predictor"]) for r in rows):
        mine = [r for r in rows if (r["searcher"], r["predictor"]) == combo]
        x = np.array([r["queries"] for r in mine])
        mean, se = np.array([r[f"mean_{key}"] for r in mine]), np.array([r[f"se_{key}"] for r in mine])
        (line,) = ax.plot(x, mean, label=f"{combo[0]} + {combo[1]} ({mine[0]['runs']} seeds)")
        ax.fill_between(x, mean - se, mean + se, alpha=0.2, color=line.get_color())
    ax.set_xlabel("oracle queries")
    ax.set_ylabel("hypervolume / the true front's" if share else "hypervolume")
    ax.set_title(f"reference: {records[0]['front']['reference_note']}", fontsize=8)
    ax.legend(fontsize=7, loc="lower right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    save_png(fig, paths["hypervolume_plot"])
    return paths
