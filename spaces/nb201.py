"""NAS-Bench-201: a 4-node cell whose six edges each carry one of five operations.

Cells are written as the benchmark's arch string,
``|op~0|+|op~0|op~1|+|op~0|op~1|op~2|``: the k-th group lists the edges into node k
from each earlier node. The official index order is the product order of NAS-Bench-201's
generator shuffled by Python's ``random`` with seed 88 (as the benchmark's authors did);
it reproduces the ``index`` of every cell in the published files.
"""
from __future__ import annotations

import csv
import itertools
import random
from functools import lru_cache
from pathlib import Path
from typing import Optional, Sequence

from nasflow.benchfiles import benchmark_format, find_benchmark, table_cells, table_number
from nasflow.core import Evaluation, TabularOracle, cell_index
from nasflow.errors import ArchError, BenchmarkError

from .edge_cell import (
    ARCH_STRING_FORM, EDGES, EdgeCellArch, EdgeCellSpace, arch_string, arch_string_ops, categorical_encoding,
)

OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
SIZE = len(OPS) ** len(EDGES)
DATASETS = ("cifar10", "cifar100", "ImageNet16-120")
OFFICIAL_FILES = ("NAS-Bench-201-v1_1-096897.pth", "NAS-Bench-201-v1_0-e61699.pth")
TABLE_FILES = ("nb201_cifar.csv",)
PUBLISHED_AT = "https://github.com/D-X-Y/NAS-Bench-201"
# The benchmark's 200-epoch runs are its full fidelity; its 12-epoch runs (``hp='12'``) a cheap one, read
# from this file beside the 200-epoch table (shared benchmarks README)
FULL_EPOCHS = 200
LOW_FIDELITY_FILES = {12: "nb201_12epoch.csv"}
FORMATS = {".csv": "table export: arch, <dataset>_valid, <dataset>_test", ".pth": "official NAS-Bench-201 file"}


class NB201Arch(EdgeCellArch):
    """A NAS-Bench-201 cell: the operation on each of the six edges, in EDGES order."""

    space = "nb201"
    OPERATIONS = OPS
    TITLE = "NAS-Bench-201"
    key_of = staticmethod(arch_string)

    @property
    def search_space(self) -> "NB201Space":
        return NB201Space()


@lru_cache(maxsize=1)
def _official_order() -> tuple[NB201Arch, ...]:
    archs = [NB201Arch(tuple(p)) for p in itertools.product(OPS, repeat=len(EDGES))]
    random.Random(88).shuffle(archs)
    return tuple(archs)


@lru_cache(maxsize=1)
def _official_index() -> dict[NB201Arch, int]:
    return {a: i for i, a in enumerate(_official_order())}


CATEGORICAL = categorical_encoding(OPS, NB201Arch)


# Node labels as tokens of the unified NB-101/NB-201 vocabulary (nasflow.predictors.unified.VOCAB).
UNIFIED_OPS = {
    "input": "input",
    "output": "output",
    "nor_conv_3x3": "conv3x3",
    "nor_conv_1x1": "conv1x1",
    "avg_pool_3x3": "avgpool3x3",
    # identity on an edge; NB-101 expresses the same thing as an input->output edge, which has
    # no node of its own, so "skip" is only ever seen in NB-201 cells
    "skip_connect": "skip",
    # a zeroed edge: the node is kept (the cell graph has a fixed shape) and the token says it
    # carries nothing; NB-101 removes such vertices instead
    "none": "none",
}


class NB201Space(EdgeCellSpace):
    """The NAS-Bench-201 topology space (15,625 cells)."""

    name = "nb201"
    size = SIZE
    ops = OPS
    vocab = ("input", "output") + OPS  # node labels of to_graph
    datasets = DATASETS
    enumerable = True
    small_network = (8, 1)  # width, cells per stage: trains in seconds on the 8x8 digits
    categorical = CATEGORICAL
    arch_class = NB201Arch
    unified_ops = UNIFIED_OPS
    unified_id = 1  # saved unified predictors index their space embedding with it: never change it
    protocol_pool = 7_813  # the field's training pool (TA-GATES / FlowerFormer / FGP): half the space

    def parse(self, text: str) -> NB201Arch:
        ops = arch_string_ops(text)
        if ops is None:
            raise ArchError(f"malformed NAS-Bench-201 arch string {text!r}; expected {ARCH_STRING_FORM}")
        return NB201Arch(ops)

    def enumerate(self) -> list[NB201Arch]:
        """All cells, in official NAS-Bench-201 index order."""
        return list(_official_order())

    def arch_at(self, index: int) -> NB201Arch:
        index = cell_index(index, SIZE, "NAS-Bench-201")
        return _official_order()[index]

    def index_of(self, arch: NB201Arch) -> int:
        try:
            return _official_index()[arch]
        except KeyError:
            raise ArchError(f"{arch} is not a NAS-Bench-201 cell") from None

    def network(self, arch: NB201Arch, num_classes: int = 10, in_channels: int = 3, width: int = 16, cells: int = 5):
        """The NAS-Bench-201 network (torch module) for ``arch``; defaults are the official C=16, N=5."""
        from .nb201_network import build_network

        return build_network(arch.ops, num_classes=num_classes, in_channels=in_channels, width=width, cells=cells)

    def network_counts(self, archs: Sequence[NB201Arch], num_classes: int = 10, in_channels: int = 3,
                       width: int = 16, cells: int = 5, image_size: int = 32) -> dict:
        """Exact ``{"params": ..., "flops": ...}`` arrays of ``network(arch)`` for many cells, in closed form."""
        from .nb201_network import network_counts

        return network_counts([a.ops for a in archs], num_classes, in_channels, width, cells, image_size)

    def open_oracle(self, benchmark: Optional[str] = None, dataset: str = "cifar10", progress: bool = False):
        """The tabular oracle for ``dataset`` from an official .pth file or a CSV table."""
        path = find_benchmark(self.name, OFFICIAL_FILES + TABLE_FILES, benchmark, PUBLISHED_AT)
        if benchmark_format(path, FORMATS, self.name) == ".csv":
            return NB201TableOracle(path, dataset)
        from .nb201_official import NB201OfficialOracle

        return NB201OfficialOracle(path, dataset, progress=progress)


class NB201TableOracle(TabularOracle):
    """NAS-Bench-201 numbers from a CSV export: ``arch`` plus ``<dataset>_valid``/``<dataset>_test``."""

    def __init__(self, path, dataset: str = "cifar10"):
        path = Path(path)
        self.source = str(path)
        self.dataset = dataset
        space = NB201Space()
        try:
            # utf-8-sig: spreadsheets save CSVs with a byte-order mark, which would stick to the first column's name
            with open(path, newline="", encoding="utf-8-sig") as f:
                reader = csv.reader(f)
                header = next(reader, None)
                if not header:
                    raise BenchmarkError(f"{path} is empty; expected a CSV with an 'arch' column")
                twice = sorted({c for c in header if header.count(c) > 1})
                if twice:
                    raise BenchmarkError(f"{path} has the column(s) {', '.join(twice)} more than once; "
                                         f"which one holds the numbers is ambiguous")
                found = sorted({c.rsplit("_", 1)[0] for c in header if c.endswith(("_valid", "_test"))})
                self.datasets = tuple(found)
                if "arch" not in header:
                    raise BenchmarkError(f"{path} has no 'arch' column; columns are {', '.join(header)}")
                valid_col, test_col = f"{dataset}_valid", f"{dataset}_test"
                if valid_col not in header:
                    raise BenchmarkError(
                        f"{path} has no column {valid_col}; datasets in this file: {', '.join(found) or 'none'}"
                    )
                iv = header.index(valid_col)
                it = header.index(test_col) if test_col in header else None
                table = {}
                for line, arch, row in table_cells(reader, header, path, space.parse):
                    test = table_number(row[it], path, line, test_col) if it is not None else None
                    table[arch] = Evaluation(valid=table_number(row[iv], path, line, valid_col), test=test)
        except (OSError, UnicodeDecodeError, csv.Error) as e:
            raise BenchmarkError(f"cannot read {path}: {e}") from None
        if not table:
            raise BenchmarkError(f"{path} has a header but no rows")
        self._set_table(table)
        own = {name: epochs for epochs, name in LOW_FIDELITY_FILES.items()}.get(path.name)
        if own is not None:  # a low-fidelity table searched on its own is at its epochs only
            self._set_fidelities(own, {})
        else:
            beside = {epochs: path.with_name(name) for epochs, name in LOW_FIDELITY_FILES.items()
                      if path.with_name(name).is_file()}
            self._set_fidelities(FULL_EPOCHS, {epochs: (lambda f=f: NB201TableOracle(f, dataset))
                                               for epochs, f in beside.items()})
