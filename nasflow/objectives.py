"""Objectives of a multi-objective search (issue 21): accuracy against cost metrics, each with a sense.

``--objectives valid,-pixel3`` reads as: maximise ``valid`` (the oracle's validation accuracy, the only
accuracy a search may see), minimise ``pixel3`` (a cost metric: ``params``, ``flops``, a metrics-table column,
or ``latency`` measured live, ``nasflow.cost_metrics``). A metric without a sign, or with ``+``, is maximised.
A cost metric of a table or in closed form is known without an oracle query, so only the accuracy costs one;
a live latency is measured (and cached) for each queried cell, and a searcher that must guess it for cells
not measured yet fits ``nasflow.op_cost.OpCostModel`` on the measured ones.

``Objectives.points`` turns queried cells into the points ``nasflow.pareto`` works on (every column
minimised). ``reference_point`` is the point a hypervolume is measured against: the median of each objective
over every cell of the space where the oracle is a complete table (the space's worst cell, 9.7% accuracy,
would make any front look good: docs/RESULTS.md), else the worst value among the points given.

Pure core: the space, oracle and cost metrics come in as objects.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

from .core import Arch, Evaluation, TabularOracle
from .cost_metrics import LIVE, CostMetrics
from .errors import NasflowError
from .pareto import minimised, pareto_mask

ACCURACY = "valid"  # the oracle's validation accuracy: what a search optimises, never its test accuracy
FORM = "a comma-separated list of at least two metrics, '-' before one to minimise, e.g. valid,-pixel3"


class ObjectiveError(NasflowError, ValueError):
    """Objectives that cannot be read: malformed, fewer than two, repeated, or an accuracy to minimise."""


@dataclass(frozen=True)
class Objective:
    metric: str
    sense: str  # "max" or "min"

    def __str__(self) -> str:
        return ("-" if self.sense == "min" else "") + self.metric


def parse_objectives(text) -> tuple[Objective, ...]:
    """The objectives ``text`` lists ("valid,-pixel3", or a sequence of such items), else a one-line ObjectiveError."""
    items = [str(t) for t in text] if isinstance(text, (list, tuple)) else str(text).split(",")
    items = [i.strip() for part in items for i in part.split(",")]
    out = []
    for item in items:
        sense, metric = ("min", item[1:]) if item.startswith("-") else ("max", item.lstrip("+"))
        metric = metric.strip()
        if not metric or not (metric[0].isalpha() or metric[0] == "_") or not all(c.isalnum() or c in "_.-" for c in metric):
            raise ObjectiveError(f"cannot read the objectives {','.join(items)!r}: write {FORM}")
        out.append(Objective(metric, sense))
    names = [o.metric for o in out]
    repeated = sorted({m for m in names if names.count(m) > 1})
    if repeated:
        raise ObjectiveError(f"objective {repeated[0]!r} is listed twice; list each metric once ({FORM})")
    if len(out) < 2:
        raise ObjectiveError(f"a multi-objective search needs at least two objectives, got {','.join(items)!r}: "
                             f"write {FORM}")
    if any(o.metric == ACCURACY and o.sense == "min" for o in out):
        raise ObjectiveError(f"{ACCURACY} is an accuracy: maximise it (write {ACCURACY}, not -{ACCURACY})")
    if "test" in names:
        raise ObjectiveError("test accuracy is what a run reports, never what it searches on: use valid")
    return tuple(out)


def canonical_objectives(text) -> Optional[tuple[str, ...]]:
    """What a run's settings record: the objectives as written canonically, in their order, or None."""
    if text is None or text == () or text == []:
        return None
    return tuple(map(str, parse_objectives(text)))


class Objectives:
    """A run's objectives over ``metrics`` (the space's ``CostMetrics``): points to minimise per queried cell."""

    def __init__(self, objectives, metrics: CostMetrics):
        self.items = parse_objectives(objectives)
        self.metrics = metrics
        for o in self.items:
            if o.metric != ACCURACY:
                metrics.check(o.metric)  # an unknown metric: one line naming the known ones, before any work
        self.senses = tuple(o.sense for o in self.items)
        self.names = tuple(o.metric for o in self.items)
        self._known: dict[tuple[str, Arch], float] = {}

    def __str__(self) -> str:
        return ",".join(map(str, self.items))

    @property
    def accuracy(self) -> Optional[int]:
        """The column of the accuracy objective, None where every objective is a cost metric."""
        return self.names.index(ACCURACY) if ACCURACY in self.names else None

    def known_without_measuring(self, metric: str) -> bool:
        """Whether ``metric`` comes from a table or a closed form: free for any cell, queried or not."""
        table = self.metrics.table
        return metric != ACCURACY and (metric not in LIVE or (table is not None and metric in table.metrics))

    def costs(self, metric: str, archs: Sequence[Arch]) -> np.ndarray:
        """``metric`` of each cell (measured now for a live metric's new cells), cached per cell."""
        missing = [a for a in dict.fromkeys(archs) if (metric, a) not in self._known]
        if missing:
            self._known.update(((metric, a), float(v)) for a, v in zip(missing, self.metrics.values(metric, missing)))
        return np.array([self._known[metric, a] for a in archs], dtype=np.float64)

    def values(self, archs: Sequence[Arch], evaluations: Sequence[Evaluation]) -> np.ndarray:
        """(n, d) objective values as they are (accuracy in %, latency in ms), in the objectives' order."""
        archs = list(archs)
        columns = [np.array([e.valid for e in evaluations], dtype=np.float64) if m == ACCURACY
                   else self.costs(m, archs) for m in self.names]
        return np.stack(columns, axis=1).reshape(len(archs), len(self.names))

    def points(self, archs: Sequence[Arch], evaluations: Sequence[Evaluation]) -> np.ndarray:
        """(n, d) points to minimise (``nasflow.pareto``): maximised objectives negated."""
        return minimised(self.values(archs, evaluations), self.senses)


def front_of(points: np.ndarray) -> np.ndarray:
    """Indices of the points on the Pareto front, ordered by the first objective (best first)."""
    if not len(points):
        return np.zeros(0, dtype=np.int64)
    on = np.flatnonzero(pareto_mask(points))
    return on[np.lexsort(tuple(points[on].T[::-1]))]


def table_points(space, oracle, objectives: Objectives) -> Optional[tuple[list[Arch], np.ndarray]]:
    """Every cell of ``space`` and its point, where the space lists its cells and the oracle is a table holding
    them all (else None): the true front and the median reference come from these."""
    if not space.enumerable or not isinstance(oracle, TabularOracle):
        return None
    if any(not objectives.known_without_measuring(m) for m in objectives.names if m != ACCURACY):
        return None  # a live latency of every cell would take hours: no true front
    cells = space.enumerate()
    if any(a not in oracle for a in cells):
        return None
    return cells, objectives.points(cells, [oracle.query(a) for a in cells])


def reference_point(points: np.ndarray, everything: bool) -> np.ndarray:
    """The hypervolume reference of ``points`` (to minimise): their median in every objective when they are
    every cell of the space (``everything``), else their worst (the nadir of what was queried)."""
    points = np.asarray(points, dtype=np.float64)
    if everything:
        return np.median(points, axis=0)
    return points.max(axis=0)


def describe_reference(reference: np.ndarray, objectives: Objectives, everything: bool) -> str:
    """The reference point in the objectives' own units, and how it was chosen, in one line."""
    values = [(-r if s == "max" else r) for r, s in zip(reference, objectives.senses)]
    where = "median over every cell of the space" if everything else "worst value among the queried cells"
    return ", ".join(f"{m}={v:.6g}" for m, v in zip(objectives.names, values)) + f" ({where})"
