"""The NAS-Bench-Suite-Zero table of trained cells on new datasets (``suite_scifar100_svhn.jsonl``).

One JSON object a line: ``space`` (the file's name of the space: ``darts``, ``nb201``, ``tnb101_micro``),
``dataset``, ``naslib_arch`` (NASLib's compact cell) and ``val_accuracy`` (percent); NB-201 rows also carry
the official ``arch`` string. A space's oracle reads the rows of its space and one dataset, each cell
through the space's own ``parse`` from the field the space names, so any space can use this reader. Lines
are read with ``json.loads`` (never eval); a bad line is a one-line BenchmarkError naming ``file:line``.
There is no test split: ``test`` is None.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Optional

from nasflow.benchfiles import benchmark_format, find_benchmark
from nasflow.core import Evaluation, TabularOracle
from nasflow.errors import ArchError, BenchmarkError

FILES = ("suite_scifar100_svhn.jsonl",)
FOLDER = "suite"  # $NASFLOW_BENCHMARKS/suite/ holds it; a bare --benchmark name is looked up there too
FORMATS = {".jsonl": "NAS-Bench-Suite-Zero table: one JSON object a line (space, dataset, naslib_arch, val_accuracy)"}
PUBLISHED_AT = "https://github.com/automl/NASLib (NAS-Bench-Suite-Zero)"
MAX_LINE = 10_000  # a row is about 200 characters; a longer line is damage, refused before json.loads


def find_suite(benchmark: Optional[str] = None) -> Path:
    """The suite file: ``benchmark`` (a path, or a bare name looked up like the default) or the default."""
    path = find_benchmark(FOLDER, FILES, benchmark, PUBLISHED_AT)
    benchmark_format(path, FORMATS, FOLDER)
    return path


def _row(text: str, where: str) -> dict:
    if len(text) > MAX_LINE:
        raise BenchmarkError(f"{where}: a line of {len(text):,d} characters; rows are short JSON objects")
    try:
        row = json.loads(text)
    except ValueError as e:
        raise BenchmarkError(f"{where}: not a JSON object ({e})") from None
    if not isinstance(row, dict):
        raise BenchmarkError(f"{where}: expected a JSON object, got {type(row).__name__}")
    for name in ("space", "dataset"):
        if not isinstance(row.get(name), str):
            raise BenchmarkError(f"{where}: field {name!r} must be a string, got {row.get(name)!r}")
    return row


class SuiteTableOracle(TabularOracle):
    """One space's cells on one dataset of the suite file.

    ``space`` parses the cells; ``rows_of`` is the file's name of that space (default ``space.name``) and
    ``cell_field`` the field holding the text ``space.parse`` reads (NASLib's compact form by default;
    NB-201 would read its ``arch`` string).
    """

    def __init__(self, path, space, dataset: str, rows_of: Optional[str] = None, cell_field: str = "naslib_arch"):
        path = Path(path)
        self.source = str(path)
        self.dataset = dataset
        rows_of = rows_of or space.name
        table, found = {}, set()
        try:
            with open(path, encoding="utf-8") as f:
                for line, text in enumerate(f, start=1):
                    if not text.strip():
                        continue
                    where = f"{path}:{line}"
                    row = _row(text, where)
                    if row["space"] != rows_of:
                        continue
                    found.add(row["dataset"])
                    if row["dataset"] != dataset:
                        continue
                    cell = row.get(cell_field)
                    if not isinstance(cell, str):
                        raise BenchmarkError(f"{where}: field {cell_field!r} must be a cell string, got {cell!r}")
                    try:
                        arch = space.parse(cell)
                    except ArchError as e:
                        raise BenchmarkError(f"{where}: {e}") from None
                    if arch in table:
                        raise BenchmarkError(f"{where}: cell {arch} appears twice for {dataset}")
                    value = row.get("val_accuracy")
                    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                        raise BenchmarkError(f"{where}: val_accuracy must be a finite number, got {value!r}")
                    table[arch] = Evaluation(valid=float(value), test=None)
        except (OSError, UnicodeDecodeError) as e:
            raise BenchmarkError(f"cannot read {path}: {e}") from None
        self.datasets = tuple(sorted(found))
        if not table:
            if not found:
                raise BenchmarkError(f"{path} has no rows of space {rows_of!r}")
            raise BenchmarkError(f"{path} has no {rows_of} rows for dataset {dataset!r}; "
                                 f"its {rows_of} datasets are {', '.join(self.datasets)} (pass --dataset)")
        self._set_table(table)
