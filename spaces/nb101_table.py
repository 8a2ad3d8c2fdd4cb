"""NAS-Bench-101 numbers from a JSONL table (``nb101_1k.jsonl`` and the like), one cell a line."""
from __future__ import annotations

import json
import math
from pathlib import Path

from nasflow.core import Evaluation, TabularOracle
from nasflow.errors import ArchError, BenchmarkError

from .nb101 import EPOCHS, NB101Arch


class NB101TableOracle(TabularOracle):
    """NAS-Bench-101 numbers from a JSONL table, one cell a line.

    Each line: ``hash``, ``matrix``, ``ops``, ``valid_acc_<epochs>`` (percent), optionally
    ``params`` and ``train_time_s_108``. Test accuracies are not in such tables. Every
    line's hash is checked against the hash of its cell.
    """

    dataset = "cifar10"

    def __init__(self, path, epochs: int = 108):
        path = Path(path)
        self.source = str(path)
        self.epochs = epochs
        column = f"valid_acc_{epochs}"
        table: dict[NB101Arch, Evaluation] = {}
        try:
            with open(path, encoding="utf-8") as f:
                for line, text in enumerate(f, start=1):
                    if text.strip():
                        arch, evaluation = self._row(text, column, f"{path}:{line}")
                        table.setdefault(arch, evaluation)
        except (OSError, UnicodeDecodeError) as e:
            raise BenchmarkError(f"cannot read {path}: {e}") from None
        if not table:
            raise BenchmarkError(f"{path} has no cells")
        self._set_table(table)

    def _row(self, text: str, column: str, where: str) -> tuple[NB101Arch, Evaluation]:
        try:
            row = json.loads(text)
        except json.JSONDecodeError as e:
            raise BenchmarkError(f"{where}: not a JSON object ({e}; truncated file?)") from None
        missing = [k for k in ("hash", "matrix", "ops", column) if not isinstance(row, dict) or k not in row]
        if missing:
            raise BenchmarkError(f"{where}: missing {', '.join(missing)} (epochs in the benchmark: {EPOCHS})")
        try:
            arch = NB101Arch(row["matrix"], row["ops"])
        except ArchError as e:
            raise BenchmarkError(f"{where}: {e}") from None
        if arch.key != row["hash"]:
            raise BenchmarkError(f"{where}: hash {row['hash']} does not match the cell's hash {arch.key}")
        try:
            valid = float(row[column])
            cost = float(row["train_time_s_108"]) if self.epochs == 108 and "train_time_s_108" in row else None
        except (TypeError, ValueError):
            raise BenchmarkError(f"{where}: {column} or train_time_s_108 is not a number") from None
        # json.loads reads NaN and Infinity; a NaN accuracy would never compare as best and corrupt every ranking
        if not math.isfinite(valid) or (cost is not None and not math.isfinite(cost)):
            raise BenchmarkError(f"{where}: {column} or train_time_s_108 is not a finite number")
        extra = {"params": row["params"]} if "params" in row else {}
        return arch, Evaluation(valid=valid, test=None, cost=cost, extra=extra)
