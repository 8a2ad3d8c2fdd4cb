"""TransNAS-Bench-101's micro space: the NAS-Bench-201 cell shape with four operations (4,096 cells).

A cell is written as six digits, one per edge in NAS-Bench-201's edge order (into node 1 from 0;
into node 2 from 0, 1; into node 3 from 0, 1, 2), each the benchmark's operation code:
0 ``none``, 1 ``skip_connect``, 2 ``nor_conv_1x1``, 3 ``nor_conv_3x3`` (ReLU-conv-BN), which is
NAS-Bench-201's operation list without its pooling, in NAS-Bench-201's own order. The digits are
the benchmark's cell code: ``64-41414-1_02_333`` is the cell ``102333``. ``parse`` also reads that
official string and the NAS-Bench-201 arch string of the same operations
(``|skip_connect~0|+|none~0|nor_conv_1x1~1|+|...|``).

Why this reading and not the one NASLib's graph object declares (edges (1,2),(1,3),(1,4),(2,3),
(2,4),(3,4); 0 skip, 1 none, 2 conv 3x3, 3 conv 1x1): NASLib looks its six digits up in the
benchmark by writing them into the official string unchanged, so the numbers of a six-digit cell
are those of the network the benchmark's own reading builds. The table's parameter counts say so
too: they are an exact sum of per-edge terms in which digit 1 costs parameters on exactly the
edges leaving the cell's input (the first, second and fourth digits: a factorized reduction where a module
halves the resolution), digit 3 costs about nine times digit 2, and digit 0 costs nothing
(tests/test_tnb101_micro.py checks every row against the network built here).

``format`` and ``key`` are the six digits: they are what the table, NASLib, NAS-Bench-Suite-Zero and
FLAN's data key a cell by, short enough for a log line; ``readable`` writes the arch string.
"""
from __future__ import annotations

import csv
import itertools
import re
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from nasflow.benchfiles import find_benchmark, table_cells, table_number
from nasflow.core import Evaluation, TabularOracle, cell_index
from nasflow.errors import ArchError, BenchmarkError

from .edge_cell import (
    ARCH_STRING_FORM, EDGES, EdgeCellArch, EdgeCellSpace, arch_string, arch_string_ops, categorical_encoding,
)

OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3")  # the benchmark's codes 0..3
SIZE = len(OPS) ** len(EDGES)
# the seven Taskonomy tasks, each column the task's validation metric, higher is better as given
TASKS = ("class_scene", "class_object", "room_layout", "jigsaw", "segmentsemantic", "normal", "autoencoder")
TABLE_FILES = ("tnb101_micro.csv",)
FOLDER = "tnb101"  # where benchmark directories keep the table (``$NASFLOW_BENCHMARKS/tnb101/``)
PUBLISHED_AT = "https://github.com/yawen-d/TransNAS-Bench-101 (micro cells of NAS-Bench-Suite-Zero's export)"
SKELETON_PREFIX = "64-41414-"  # the official string of a micro network: width 64, modules 41414, then the cell

_DIGITS = re.compile(r"[0-9]{6}")
_OFFICIAL = re.compile(re.escape(SKELETON_PREFIX) + r"([0-9])_([0-9]{2})_([0-9]{3})")
_CODES = ", ".join(f"{k} {op}" for k, op in enumerate(OPS))


def _digits(ops: tuple[str, ...]) -> str:
    return "".join(str(OPS.index(op)) for op in ops)


class TNB101MicroArch(EdgeCellArch):
    """A TransNAS-Bench-101 micro cell: the operation on each of the six edges, in EDGES order."""

    space = "tnb101-micro"
    OPERATIONS = OPS
    TITLE = "TransNAS-Bench-101 micro"
    key_of = staticmethod(_digits)

    @property
    def search_space(self) -> "TNB101MicroSpace":
        return TNB101MicroSpace()


def _from_digits(digits: str, text) -> TNB101MicroArch:
    outside = [d for d in digits if int(d) >= len(OPS)]
    if outside:
        raise ArchError(f"operation code {outside[0]} in {text!r} is not in TransNAS-Bench-101's micro space; "
                        f"codes are {_CODES}")
    return TNB101MicroArch(tuple(OPS[int(d)] for d in digits))


CATEGORICAL = categorical_encoding(OPS, TNB101MicroArch)

# Node labels as tokens of the unified vocabulary (nasflow.predictors.unified.VOCAB): the operations are
# NAS-Bench-201's (ReLU-conv-BN edges into summing nodes), so they share its tokens; the space row tells
# the encoder the rest (a skip out of a module's first cell is a factorized reduction here).
UNIFIED_OPS = {"input": "input", "output": "output", "none": "none", "skip_connect": "skip",
               "nor_conv_1x1": "conv1x1", "nor_conv_3x3": "conv3x3"}


class TNB101MicroSpace(EdgeCellSpace):
    """The TransNAS-Bench-101 micro space (4,096 cells), its tasks' table and the classification network."""

    name = "tnb101-micro"
    size = SIZE
    ops = OPS
    vocab = ("input", "output") + OPS  # node labels of to_graph
    datasets = TASKS
    enumerable = True
    small_network = (8, 1)  # width, cells per module: the official network is width 64, 2 cells per module
    categorical = CATEGORICAL
    arch_class = TNB101MicroArch
    unified_ops = UNIFIED_OPS
    unified_id = 2  # saved unified predictors index their space embedding with it: never change it
    # the field's protocol trains on half the labelled cells (NB-201: 7,813 of 15,625); the table
    # labels 711 cells, so 356 train, 40 validate, 315 are ranked
    protocol_pool = 356

    def parse(self, text: str) -> TNB101MicroArch:
        """A cell from its six digits, the official ``64-41414-a_bc_def`` string, or an arch string."""
        stripped = text.strip() if isinstance(text, str) else None
        if stripped is not None and _DIGITS.fullmatch(stripped):
            return _from_digits(stripped, text)
        official = _OFFICIAL.fullmatch(stripped) if stripped is not None else None
        if official:
            return _from_digits("".join(official.groups()), text)
        ops = arch_string_ops(text)
        if ops is None:
            raise ArchError(f"malformed TransNAS-Bench-101 micro cell {text!r}; expected six digits 0-3 ({_CODES}), "
                            f"{SKELETON_PREFIX}a_bc_def or {ARCH_STRING_FORM}")
        return TNB101MicroArch(ops)

    def readable(self, arch: TNB101MicroArch) -> str:
        """The cell as a NAS-Bench-201 arch string (``parse`` reads it back)."""
        return arch_string(arch.ops)

    def official(self, arch: TNB101MicroArch) -> str:
        """The benchmark's own name of the network with this cell (``64-41414-a_bc_def``)."""
        d = arch.key
        return f"{SKELETON_PREFIX}{d[0]}_{d[1:3]}_{d[3:]}"

    def enumerate(self) -> list[TNB101MicroArch]:
        """All cells, in the order of their digits read as base-4 numbers (``arch_at``)."""
        return [TNB101MicroArch(ops) for ops in itertools.product(OPS, repeat=len(EDGES))]

    def arch_at(self, index: int) -> TNB101MicroArch:
        """The cell whose six digits are ``index`` written in base 4."""
        index = cell_index(index, SIZE, "TransNAS-Bench-101 micro")
        return _from_digits(np.base_repr(index, len(OPS)).zfill(len(EDGES)), index)

    def network(self, arch: TNB101MicroArch, num_classes: int = 10, in_channels: int = 3, width: int = 64,
                cells: int = 2):
        """The benchmark's classification network (torch module) for ``arch``; defaults: width 64, 2 cells a module."""
        from .tnb101_micro_network import build_network

        return build_network(arch.ops, num_classes=num_classes, in_channels=in_channels, width=width, cells=cells)

    def network_counts(self, archs: Sequence[TNB101MicroArch], num_classes: int = 10, in_channels: int = 3,
                       width: int = 64, cells: int = 2, image_size: int = 32) -> dict:
        """Exact ``{"params": ..., "flops": ...}`` arrays of ``network(arch)`` for many cells, in closed form."""
        from .tnb101_micro_network import network_counts

        return network_counts([a.ops for a in archs], OPS, num_classes, in_channels, width, cells, image_size)

    def open_oracle(self, benchmark: Optional[str] = None, dataset: str = "class_scene", progress: bool = False):
        """The table oracle of one task (``dataset``: one of TASKS) from ``tnb101_micro.csv`` or a file like it."""
        path = find_benchmark(FOLDER, TABLE_FILES, benchmark, PUBLISHED_AT)
        return TNB101MicroTableOracle(path, dataset)


class TNB101MicroTableOracle(TabularOracle):
    """One task's numbers from a CSV table: ``arch`` (six digits) and a column per task, optionally
    ``params_m_<task>`` (millions of parameters of that task's network, in ``extra["params"]``).

    ``valid`` is the task's validation metric as the table gives it (higher is better: room_layout
    is a negative loss); the benchmark export has no test split, so ``test`` is None.
    """

    def __init__(self, path, dataset: str = "class_scene"):
        path = Path(path)
        self.source, self.dataset = str(path), dataset
        if dataset not in TASKS:
            raise BenchmarkError(f"TransNAS-Bench-101 has no task {dataset!r}; choose --dataset from {', '.join(TASKS)}")
        try:
            # utf-8-sig: a spreadsheet's byte-order mark would stick to the first column's name
            with open(path, newline="", encoding="utf-8-sig") as f:
                rows = list(csv.reader(f))
        except (OSError, UnicodeDecodeError, csv.Error) as e:
            raise BenchmarkError(f"cannot read {path}: {e}") from None
        header = rows[0] if rows else []
        for column in ("arch", dataset):
            if header.count(column) != 1:
                raise BenchmarkError(f"{path} needs one column {column!r} (columns: {', '.join(header) or 'none'})")
        value_at = header.index(dataset)
        params_column = f"params_m_{dataset}"
        params_at = header.index(params_column) if params_column in header else None
        space, table = TNB101MicroSpace(), {}

        def six_digits(text: str) -> TNB101MicroArch:  # the table's form only, not the other spellings parse takes
            if not _DIGITS.fullmatch(text):
                raise ArchError(f"arch {text!r} is not six digits")
            return space.parse(text)

        for line, arch, row in table_cells(rows[1:], header, path, six_digits):
            params = None if params_at is None else table_number(row[params_at], path, line, params_column)
            extra = {} if params is None else {"params": round(params * 1e6)}
            table[arch] = Evaluation(valid=table_number(row[value_at], path, line, dataset), extra=extra)
        if not table:
            raise BenchmarkError(f"{path} has no cells")
        self._set_table(table)
