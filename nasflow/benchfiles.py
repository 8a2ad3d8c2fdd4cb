"""Where benchmark files are found: an explicit path, else $NASFLOW_BENCHMARKS, else ~/.nasflow; and the
checks every CSV table's rows share (``table_cells``, ``table_number``).

Each directory is searched for the expected file names directly, under a folder
named after the space (``$NASFLOW_BENCHMARKS/nb201/nb201_cifar.csv``), then under any
other folder of it (``$NASFLOW_BENCHMARKS/macro/nas_bench_macro_cifar10.csv``).
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Callable, Iterable, Iterator, Mapping, Optional, Sequence

from .errors import ArchError, BenchmarkError
from .paths import input_file


def search_dirs() -> list[Path]:
    dirs = []
    env = os.environ.get("NASFLOW_BENCHMARKS")
    if env:
        dirs.append(Path(env).expanduser())
    dirs.append(Path.home() / ".nasflow")
    return dirs


def candidates(directory: Path, space: str, name: str) -> list[Path]:
    """Where ``name`` may lie in one benchmark directory: directly, in the folder named after the space, then
    in another folder, since a shared tree may file a space's tables under a shorter folder name (``macro/``
    for nas-bench-macro, ``suite/`` for a table of several spaces). Another folder is taken only when exactly
    one holds the name: among several, a guess could silently pick another table."""
    out = [directory / name, directory / space / name]
    try:
        others = sorted(p / name for p in directory.iterdir() if p.is_dir() and p.name != space)
    except OSError:  # no such directory, or unreadable: nothing to find there
        others = []
    found = [p for p in others if p.is_file()]
    return out + (found if len(found) == 1 else [])


def locate(given: str, space: str) -> Path:
    """The file a run's ``--benchmark`` names: the path itself, or, for a bare file name that is no file here,
    that file in the benchmark directories (``--benchmark nb101_20k.jsonl``), as the default files are found."""
    path = Path(given).expanduser()
    if not path.exists() and path.name == str(given):
        for directory in search_dirs():
            for candidate in candidates(directory, space, given):
                if candidate.is_file():
                    return candidate
    return path


def find_benchmark(
    space: str,
    file_names: Sequence[str],
    explicit: Optional[str] = None,
    published_at: str = "",
) -> Path:
    """Return the benchmark file to use for ``space`` or raise a one-line BenchmarkError."""
    if explicit is not None:
        return input_file(locate(explicit, space), "benchmark file", BenchmarkError)
    for directory in search_dirs():
        for name in file_names:
            for candidate in candidates(directory, space, name):
                if candidate.is_file():
                    return candidate
    where = " or ".join(str(d) for d in search_dirs())
    hint = f"; the official file is published at {published_at}" if published_at else ""
    raise BenchmarkError(
        f"no {space} benchmark file found: expected one of {', '.join(file_names)} in {where} "
        f"(set NASFLOW_BENCHMARKS or pass --benchmark PATH){hint}"
    )


def benchmark_format(path: Path, formats: Mapping[str, str], space: str) -> str:
    """The suffix of ``path`` among ``formats`` (suffix -> description), else a BenchmarkError listing them.

    Without this a file of another kind went to the reader of the official binary file, whose
    complaint about unpickling said nothing about what the file should have been.
    """
    suffix = Path(path).suffix.lower()
    if suffix in formats:
        return suffix
    accepted = "; ".join(f"{s} ({description})" for s, description in formats.items())
    raise BenchmarkError(f"{path} is not a {space} benchmark file by its extension {suffix or '(none)'!r}; "
                         f"accepted: {accepted}")


def table_number(text, path, line: int, column: str) -> float:
    """The finite number in one cell of a benchmark table, else a one-line BenchmarkError naming file:line."""
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise BenchmarkError(f"{path}:{line}: column {column} is not a number: {text!r}") from None
    if not math.isfinite(value):
        raise BenchmarkError(f"{path}:{line}: column {column} is not a finite number: {text!r}")
    return value


def table_cells(rows: Iterable[Sequence[str]], header: Sequence[str], path, parse: Callable[[str], object],
                arch_column: str = "arch") -> Iterator[tuple[int, object, Sequence[str]]]:
    """(line, cell, row) for each data row of a CSV table after its header: every row has the header's
    width, its ``arch_column`` is a cell by ``parse`` and no cell comes twice; else a one-line
    BenchmarkError naming file:line. The caller reads the row's numbers (``table_number``)."""
    at, seen = list(header).index(arch_column), set()
    for line, row in enumerate(rows, start=2):
        if len(row) != len(header):
            raise BenchmarkError(f"{path}:{line}: expected {len(header)} fields, got {len(row)} (truncated file?)")
        try:
            arch = parse(row[at])
        except ArchError as e:
            raise BenchmarkError(f"{path}:{line}: {e}") from None
        if arch in seen:
            raise BenchmarkError(f"{path}:{line}: cell {arch} appears twice")
        seen.add(arch)
        yield line, arch, row
