"""Cost metrics of cells and the constraints a hardware-aware search puts on them.

A cost metric is a number per cell known without an oracle query:

- ``params`` and ``flops`` of the space's official network (NB-201: C=16, N=5, 10 classes, 32x32 input;
  FLOPs are NAS-Bench-201's multiply-accumulates), in closed form where the space has ``network_counts``,
  cached with the zero-cost proxies of the same names;
- ``latency``: milliseconds per forward pass, measured live on this machine (``nasflow.latency``: the median
  of repeated timed passes, cached per CPU or GPU model): of the network a training search trains, on its
  data's images and device, else of the official network on 32x32 images on the CPU; a batch of one image
  unless the run sets ``latency_batch``;
- every numeric column of a metrics table (``--metrics-table nb201_latency_ms.csv``): a CSV with an
  ``arch`` column of the space's cells, e.g. HELP's measured latency of every NB-201 cell on three devices.
  A column of the same name as a computed metric replaces it.

A constraint is ``METRIC OP BOUND`` (``pixel3<=20``, ``params<=1.0M``, ``flops<50M``; OP one of <=, <, >=, >;
BOUND a number with an optional K (or k), M or G; no lower-case m or g, which could mean milli or giga). ``feasible_space`` cuts an enumerable space down to its cells that
satisfy every constraint (a ``RestrictedSpace``), so every searcher proposes only feasible cells.
Pure core: the space comes in as an object.
"""
from __future__ import annotations

import csv
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from .benchfiles import locate, table_cells, table_number
from .core import Arch
from .errors import BenchmarkError, NasflowError
from .paths import input_file
from .restricted import RestrictedSpace

CLOSED_FORM = ("params", "flops")
LIVE = ("latency",)  # measured on this machine, for a space that builds networks
SUFFIXES = {"": 1.0, "K": 1e3, "M": 1e6, "G": 1e9}
OPERATORS = ("<=", ">=", "<", ">")  # two-character ones first: "<=" must not read as "<" then "=..."
ARCH_COLUMN = "arch"
# a column that identifies a row, numeric as it is, but is no measurement of the cell
INDEX_COLUMN = "index"
CONSTRAINT_FORM = "METRIC<=BOUND (or <, >=, >), e.g. pixel3<=20 or params<=1.0M"
_PATTERN = re.compile(r"\s*([A-Za-z_][\w.-]*?)\s*(<=|>=|<|>)\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*([kKMG]?)\s*")


class ConstraintError(NasflowError, ValueError):
    """A constraint that cannot be read, names an unknown metric, or that no cell satisfies."""


@dataclass(frozen=True)
class Constraint:
    """``metric op bound``: a cell is feasible when its value of ``metric`` satisfies it."""

    metric: str
    op: str
    bound: float

    def __str__(self) -> str:
        # canonical: "params<=0.5M" and "params<=500K" are one constraint, so one run's identity
        return f"{self.metric}{self.op}{self.bound:.12g}"

    def holds(self, values: np.ndarray) -> np.ndarray:
        values = np.asarray(values, dtype=np.float64)
        return {"<=": values <= self.bound, "<": values < self.bound,
                ">=": values >= self.bound, ">": values > self.bound}[self.op]


def parse_constraint(text) -> Constraint:
    """The constraint ``text`` states, else a one-line ConstraintError showing the form."""
    match = _PATTERN.fullmatch(str(text))
    if match is None:
        raise ConstraintError(f"cannot read the constraint {text!r}: write {CONSTRAINT_FORM}")
    metric, op, number, suffix = match.groups()
    bound = float(number) * SUFFIXES[suffix.upper()]
    if not math.isfinite(bound):
        raise ConstraintError(f"the bound of constraint {text!r} is not a finite number")
    return Constraint(metric, op, bound)


def parse_constraints(texts: Optional[Sequence]) -> tuple[Constraint, ...]:
    """Constraints in one canonical order without repeats (a run's identity must not depend on their order)."""
    if isinstance(texts, str):
        texts = (texts,)
    parsed = {str(c): c for c in map(parse_constraint, texts or ())}
    return tuple(parsed[k] for k in sorted(parsed))


def canonical_constraints(texts: Optional[Sequence]) -> Optional[tuple[str, ...]]:
    """What a run's settings record of ``texts``: canonical strings, or None without constraints."""
    return tuple(map(str, parse_constraints(texts))) or None


def describe(constraints: Sequence) -> str:
    return ", ".join(map(str, constraints))


class MetricsTable:
    """Cost metrics of cells from a CSV: an ``arch`` column of ``space``'s cells, one metric per numeric column.

    A column is a metric when its first row holds a number; a later row that does not, a cell the space
    cannot parse, a repeated cell or a short row is refused with one line naming file:line.
    """

    def __init__(self, path, space):
        self.path = Path(path)
        self.space_name = space.name
        with self.path.open(newline="") as f:
            rows = csv.reader(f)
            header = [h.strip() for h in next(rows, [])]
            if ARCH_COLUMN not in header:
                raise BenchmarkError(f"metrics table {self.path} has no {ARCH_COLUMN!r} column (its header: "
                                     f"{', '.join(header) or 'empty'}); it needs one with the cells of {space.name}")
            columns: dict[str, list[float]] = {}
            self.cells: list[Arch] = []
            metric_at: Optional[dict[str, int]] = None
            try:
                for line, arch, row in table_cells(rows, header, self.path, space.parse):
                    if metric_at is None:
                        metric_at = {name: k for k, name in enumerate(header)
                                     if name not in (ARCH_COLUMN, INDEX_COLUMN) and _is_number(row[k])}
                        columns = {name: [] for name in metric_at}
                    for name, k in metric_at.items():
                        columns[name].append(table_number(row[k], self.path, line, name))
                    self.cells.append(arch)
            except BenchmarkError as e:
                raise BenchmarkError(f"metrics table {e} (its cells must be {space.name} cells)") from None
        if not self.cells:
            raise BenchmarkError(f"metrics table {self.path} has no rows")
        self.metrics = tuple(columns)
        self._row = {arch: i for i, arch in enumerate(self.cells)}
        self._arrays = {name: np.array(values, dtype=np.float64) for name, values in columns.items()}

    def values(self, metric: str, archs: Sequence[Arch]) -> np.ndarray:
        """``metric`` of each cell of ``archs``; a cell the table lacks is a one-line BenchmarkError."""
        rows = [self._row.get(a, -1) for a in archs]
        missing = [a for a, r in zip(archs, rows) if r < 0]
        if missing:
            raise BenchmarkError(
                f"metrics table {self.path} has no row for {len(missing):,d} of the {len(archs):,d} cells searched "
                f"(e.g. {missing[0]}); it must list every cell a constraint on {metric} is checked for")
        return self._arrays[metric][np.array(rows, dtype=np.int64)]


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


# Tables read in this process, by file and its state: a comparison builds many runs on one table.
_opened: dict[tuple, MetricsTable] = {}


def open_metrics_table(given: str, space) -> MetricsTable:
    """The metrics table ``given`` names: a path, or a file name found like benchmark files (``nasflow.benchfiles``)."""
    path = input_file(locate(given, space.name), "metrics table", BenchmarkError).resolve()
    stat = path.stat()
    key = (str(path), stat.st_mtime_ns, stat.st_size, space.name)
    if key not in _opened:
        _opened[key] = MetricsTable(path, space)
    return _opened[key]


class CostMetrics:
    """The cost metrics of ``space``'s cells known without an oracle query: closed form, measured live, then
    ``table``'s columns (which replace a computed metric of the same name)."""

    def __init__(self, space, table: Optional[MetricsTable] = None, progress: bool = False, latency=None):
        self.space, self.table, self.progress = space, table, progress
        self.latency = latency  # the LatencySetup a live latency times (None: nasflow.latency's default)

    @property
    def names(self) -> tuple[str, ...]:
        closed = CLOSED_FORM if self.space.network_counts is not None else ()
        live = LIVE if self.space.network is not None else ()
        return tuple(dict.fromkeys(closed + live + (self.table.metrics if self.table is not None else ())))

    def check(self, metric: str) -> None:
        if metric in self.names:
            return
        known = ", ".join(self.names) or "none"
        hint = (f" (those of {self.table.path.name} included)" if self.table is not None
                else "; pass --metrics-table FILE for measured ones, e.g. nb201_latency_ms.csv")
        raise ConstraintError(f"unknown metric {metric!r}: the metrics of {self.space.name} are {known}{hint}")

    def values(self, metric: str, archs: Sequence[Arch]) -> np.ndarray:
        self.check(metric)
        if self.table is not None and metric in self.table.metrics:
            return self.table.values(metric, archs)
        if metric in LIVE:
            from .latency import LatencySetup, measure_latency  # torch, only when a latency is measured

            return measure_latency(self.space, archs, self.latency or LatencySetup(), progress=self.progress)
        from .proxies import zero_cost  # closed form, cached with the proxies of the same name

        return zero_cost(self.space, archs, metric)


def feasible_space(space, constraints: Sequence[Constraint], metrics: CostMetrics) -> RestrictedSpace:
    """``space`` cut down to its cells that satisfy every constraint (a space already restricted to a partial
    table's cells stays within them). None feasible: a one-line ConstraintError with each metric's range."""
    for c in constraints:
        metrics.check(c.metric)
    if not space.enumerable:
        raise ConstraintError(f"constraints need a space whose cells can be listed; {space.name} cannot list its "
                              f"cells (search it with a benchmark table of its cells)")
    inner = space.inner if isinstance(space, RestrictedSpace) else space
    cells = space.enumerate()
    feasible = np.ones(len(cells), dtype=bool)
    ranges = []
    for c in constraints:
        values = metrics.values(c.metric, cells)
        feasible &= c.holds(values)
        ranges.append(f"{c.metric} {values.min():.6g}..{values.max():.6g}")
    where = f"{space.source} under " if isinstance(space, RestrictedSpace) else ""
    if not feasible.any():
        raise ConstraintError(f"no cell of {space.name} satisfies {describe(constraints)} (of {len(cells):,d} "
                              f"cells: {', '.join(ranges)}); loosen a constraint")
    return RestrictedSpace(inner, [a for a, ok in zip(cells, feasible) if ok],
                           f"{where}constraints {describe(constraints)}")
