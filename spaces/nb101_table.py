"""NAS-Bench-101 numbers from a JSONL table (``nb101_20k.jsonl``, ``nb101_1k.jsonl`` and the like), one cell a line."""
from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Optional, Protocol, Sequence

import numpy as np

from nasflow.core import Evaluation, TabularOracle
from nasflow.errors import ArchError, BenchmarkError

from .nb101 import EPOCHS, NB101Arch

# the official module hash: the MD5 hex digest of the cell's canonical form
HASH = re.compile(r"[0-9a-f]{32}")


class CellSource(Protocol):
    """Cells by official hash, as the enumeration of the whole space (``nb101_enumerate``) gives them."""

    def index_of(self, hashes: Sequence[str]) -> np.ndarray: ...  # int64 index of each hash, -1 where absent
    def archs(self, indices: np.ndarray) -> list[NB101Arch]: ...


class NB101TableOracle(TabularOracle):
    """NAS-Bench-101 numbers from a JSONL table, one cell a line.

    Each line: ``hash``, ``valid_acc_<epochs>`` (percent), optionally ``params`` and
    ``train_time_s_108``, and optionally the cell itself as ``matrix`` and ``ops``. A line with
    the cell is checked against its hash; a line with the hash only (the 20k table) takes its cell
    from ``cells``, by default the enumeration of all 423,624 cells (loaded, from its disk cache,
    only when such a line is there), in one vectorised lookup. Test accuracies are not in such tables.
    """

    dataset = "cifar10"

    def __init__(self, path, epochs: int = 108, cells: Optional[CellSource] = None, progress: bool = False):
        path = Path(path)
        self.source = str(path)
        self.epochs = epochs
        if epochs not in EPOCHS:
            raise BenchmarkError(f"NAS-Bench-101 has accuracies at {', '.join(map(str, EPOCHS))} epochs, not {epochs}")
        column = f"valid_acc_{epochs}"
        rows: list[tuple[Optional[NB101Arch], Evaluation]] = []
        by_hash: list[tuple[int, str, int]] = []  # (row, hash, line) of the lines that give the hash only
        try:
            with open(path, encoding="utf-8") as f:
                for line, text in enumerate(f, start=1):
                    if text.strip():
                        arch, key, evaluation = self._row(text, column, f"{path}:{line}")
                        if arch is None:
                            by_hash.append((len(rows), key, line))
                        rows.append((arch, evaluation))
        except (OSError, UnicodeDecodeError) as e:
            raise BenchmarkError(f"cannot read {path}: {e}") from None
        if not rows:
            raise BenchmarkError(f"{path} has no cells")
        if by_hash:
            archs = self._lookup(by_hash, cells, path, progress)
            for (row, _, _), arch in zip(by_hash, archs):
                rows[row] = (arch, rows[row][1])
        table: dict[NB101Arch, Evaluation] = {}
        for arch, evaluation in rows:
            table.setdefault(arch, evaluation)
        self._set_table(table)
        # the lower fidelities the table holds (the 20k table: 4, 12 and 36 below 108), each read on its first query
        held = [e for e in EPOCHS if e < epochs and f"valid_acc_{e}" in self._first_row(path)]
        self._set_fidelities(epochs, {e: (lambda e=e: NB101TableOracle(path, e, cells, progress)) for e in held})

    @staticmethod
    def _first_row(path: Path) -> dict:
        with open(path, encoding="utf-8") as f:
            for text in f:
                if text.strip():
                    return json.loads(text)
        return {}

    @staticmethod
    def _lookup(by_hash, cells: Optional[CellSource], path: Path, progress: bool) -> list[NB101Arch]:
        if cells is None:
            cells = enumerated_cells(progress)
        index = np.asarray(cells.index_of([key for _, key, _ in by_hash]), dtype=np.int64)
        missing = np.flatnonzero(index < 0)
        if len(missing):
            _, key, line = by_hash[int(missing[0])]
            raise BenchmarkError(f"{path}:{line}: hash {key} is not a NAS-Bench-101 cell "
                                 f"({len(missing):,d} of the table's {len(by_hash):,d} hashes are not)")
        return cells.archs(index)

    def _row(self, text: str, column: str, where: str) -> tuple[Optional[NB101Arch], str, Evaluation]:
        """(the cell where the line gives it, else None; the line's hash; its numbers)."""
        try:
            row = json.loads(text)
        except json.JSONDecodeError as e:
            raise BenchmarkError(f"{where}: not a JSON object ({e}; truncated file?)") from None
        if not isinstance(row, dict) or "hash" not in row:
            raise BenchmarkError(f"{where}: missing hash (each line: hash, valid_acc_<epochs>, optionally matrix and ops)")
        if column not in row:
            held = [str(e) for e in EPOCHS if f"valid_acc_{e}" in row]
            raise BenchmarkError(f"{where}: missing {column}, the fidelity asked for (epochs {self.epochs}); this table has "
                                 f"{'epochs ' + ', '.join(held) if held else 'no valid_acc_<epochs> column'}")
        key = row["hash"]
        if not isinstance(key, str) or not HASH.fullmatch(key):
            raise BenchmarkError(f"{where}: hash {key!r} is not an official module hash (32 lowercase hex digits)")
        arch = None
        if "matrix" in row or "ops" in row:
            if "matrix" not in row or "ops" not in row:
                raise BenchmarkError(f"{where}: a cell needs both matrix and ops (or neither: the hash names it)")
            try:
                arch = NB101Arch(row["matrix"], row["ops"])
            except ArchError as e:
                raise BenchmarkError(f"{where}: {e}") from None
            if arch.key != key:
                raise BenchmarkError(f"{where}: hash {key} does not match the cell's hash {arch.key}")
        try:
            valid = float(row[column])
            cost = float(row["train_time_s_108"]) if self.epochs == 108 and "train_time_s_108" in row else None
        except (TypeError, ValueError):
            raise BenchmarkError(f"{where}: {column} or train_time_s_108 is not a number") from None
        # json.loads reads NaN and Infinity; a NaN accuracy would never compare as best and corrupt every ranking
        if not math.isfinite(valid) or (cost is not None and not math.isfinite(cost)):
            raise BenchmarkError(f"{where}: {column} or train_time_s_108 is not a finite number")
        extra = {"params": row["params"]} if "params" in row else {}
        return arch, key, Evaluation(valid=valid, test=None, cost=cost, extra=extra)


def enumerated_cells(progress: bool = False) -> CellSource:
    """Every NAS-Bench-101 cell by hash: the enumeration, from its disk cache after the first time."""
    from .nb101_enumerate import load_cells

    return load_cells(progress=progress)
