"""NAS-Bench-Macro (Su et al., CVPR 2021): a chain of 8 searched layers, each an identity or one of two
MobileNetV2 blocks, after a 3x3 stem and before a 1x1-conv head; 3^8 = 6,561 cells.

A cell is the benchmark's 8-digit string, one digit per layer: 0 = identity, 1 = MB3_K3 (expansion 3,
kernel 3), 2 = MB6_K5 (expansion 6, kernel 5). The layers form three stages of 2, 3 and 3; the first layer
of each stage halves the resolution and doubles the channels, so there an "identity" is a strided 1x1
conv + BN (the benchmark's ``Identity`` module), not a no-op. Elsewhere an identity computes nothing, so
the 6,561 strings are 3,969 networks: 00000001 and 00000010 are one network, which the benchmark trained
once (its table repeats the row). As NB-101's hash makes isomorphic matrices one cell, a cell here is a
network: its ``key`` is the ``canonical`` string (stride-1 identities behind the blocks of their stage), so
cells written either way are equal, a search never pays twice for one network, and the space enumerates,
samples and counts (``size``) the 3,969 networks.

The space lists the canonical strings in ``itertools.product`` order ("00000000", "00000010", "00000011",
..., "22222222"): the order of the benchmark's table with the repeated networks left out.
The table has no validation split: the oracle searches on one seed's test accuracy and reports the mean
of the three seeds as ``test`` (``MacroTableOracle``).
"""
from __future__ import annotations

import csv
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import NamedTuple, Optional, Sequence

import numpy as np

from nasflow.benchfiles import find_benchmark, table_cells, table_number
from nasflow.core import Arch, BaseSpace, CategoricalEncoding, CellGraph, Evaluation, TabularOracle, cell_index
from nasflow.errors import ArchError, BenchmarkError

# what each digit chooses, as the benchmark's README names the blocks
CHOICES = ("identity", "mb3_k3", "mb6_k5")
DIGITS = "012"
STAGES = (2, 3, 3)
LAYERS = sum(STAGES)
DOWNSAMPLING = (0, 2, 5)  # the first layer of each stage: stride 2, channels doubled
STRINGS = len(CHOICES) ** LAYERS  # 6,561 digit strings
# Distinct networks: a stage of L layers is its first layer's choice (3) times a stride-1 tail of k blocks
# (2 kinds each) then L - 1 - k identities, for k = 0..L-1: 2^L - 1 tails.
SIZE = int(np.prod([len(CHOICES) * (2 ** length - 1) for length in STAGES]))  # 9 * 21 * 21 = 3,969
# (expansion ratio, kernel) of the MobileNetV2 blocks
BLOCKS = {"mb3_k3": (3, 3), "mb6_k5": (6, 5)}
# Node labels of a downsampling layer: it computes something else than the same choice elsewhere (the
# identity becomes a strided 1x1 conv, a block loses its residual), and with its own label a predictor
# sees where each stage starts without counting positions along the chain.
DOWNSAMPLING_LABELS = {"identity": "conv1x1_s2", "mb3_k3": "mb3_k3_s2", "mb6_k5": "mb6_k5_s2"}
OPS = CHOICES + tuple(DOWNSAMPLING_LABELS.values())  # every node label between input and output
HEAD_PER_WIDTH = 40  # the head's 1x1 conv has 40 x the stem's channels: the benchmark's 1280 at width 32
DATASETS = ("cifar10", "cifar10-seed1", "cifar10-seed2")  # the table's three seeds; plain cifar10 is seed 0
# Node labels as tokens of the unified vocabulary (nasflow.predictors.unified.VOCAB): a stride-1 identity is a
# skip, the strided one a 1x1 conv (with BN, as NB-201's conv1x1); the blocks have tokens of their own.
UNIFIED_OPS = {"input": "input", "output": "output", "identity": "skip", "conv1x1_s2": "conv1x1",
               **{op: op for op in ("mb3_k3", "mb6_k5", "mb3_k3_s2", "mb6_k5_s2")}}
TABLE_FILES = ("nas_bench_macro_cifar10.csv",)
PUBLISHED_AT = "https://github.com/xiusu/NAS-Bench-Macro"


@dataclass(frozen=True, eq=False)
class MacroArch(Arch):
    """A NAS-Bench-Macro cell: the 8-digit string as written, one digit per layer in network order; its
    ``key`` is the network's canonical string, so the strings of one network are one cell."""

    digits: str
    space = "nas-bench-macro"

    def __post_init__(self):
        if not isinstance(self.digits, str) or len(self.digits) != LAYERS:
            got = f"{len(self.digits)} characters" if isinstance(self.digits, str) else type(self.digits).__name__
            raise ArchError(f"a NAS-Bench-Macro cell is {LAYERS} digits, one per layer; got {got} in {self.digits!r}")
        for layer, d in enumerate(self.digits):
            if d not in DIGITS:
                raise ArchError(f"layer {layer} of NAS-Bench-Macro cell {self.digits!r} is {d!r}; each digit must be "
                                f"0 (identity), 1 (MB3_K3) or 2 (MB6_K5)")

    @property
    def key(self) -> str:
        return _canonical_digits(self.digits)

    @property
    def choices(self) -> tuple[str, ...]:
        return tuple(CHOICES[int(d)] for d in self.digits)

    @property
    def search_space(self) -> "MacroSpace":
        return MacroSpace()


def canonical(arch: MacroArch) -> MacroArch:
    """The cell the benchmark trained for ``arch``, written canonically: in each stage, the stride-1
    identities moved behind the blocks (which keep their order). Equal to ``arch`` (same network)."""
    return MacroArch(arch.key)


@lru_cache(maxsize=STRINGS)  # at most the 6,561 valid strings; a key is asked for at every hash
def _canonical_digits(digits: str) -> str:
    out, start = [], 0
    for length in STAGES:
        stage = digits[start : start + length]
        rest = stage[1:].replace("0", "")
        out.append(stage[0] + rest + "0" * (length - 1 - len(rest)))
        start += length
    return "".join(out)


@lru_cache(maxsize=1)
def _all_cells() -> tuple[MacroArch, ...]:
    strings = (np.base_repr(i, 3).zfill(LAYERS) for i in range(STRINGS))
    return tuple(MacroArch(s) for s in strings if _canonical_digits(s) == s)


@lru_cache(maxsize=1)
def _index() -> dict[str, int]:
    return {a.key: i for i, a in enumerate(_all_cells())}


# ---------------------------------------------------------------------------------------- network plan
class Block(NamedTuple):
    """One module of the searched chain: ``kind`` is "identity" (a no-op), "project" (strided 1x1 conv +
    BN) or "mb" (MobileNetV2 inverted residual: 1x1 expand, k x k depthwise, 1x1 linear; BN after each,
    ReLU after the first two; a residual where the shape is kept)."""

    kind: str
    c_in: int
    c_out: int
    stride: int
    expansion: int = 0
    kernel: int = 0

    @property
    def residual(self) -> bool:
        return self.kind == "mb" and self.stride == 1 and self.c_in == self.c_out


def layer_blocks(layer: int, choice: str, width: int, cells: int) -> list[Block]:
    """The modules layer ``layer`` holds for ``choice``: ``cells`` copies, the first carrying the layer's
    stride and channel change (``cells`` deepens every searched layer alike; the benchmark's network is 1)."""
    stage = sum(layer >= d for d in DOWNSAMPLING)  # 1..3
    c_out = width * 2 ** stage
    c_in = c_out // 2 if layer in DOWNSAMPLING else c_out
    out = []
    for copy in range(cells):
        stride = 2 if layer in DOWNSAMPLING and copy == 0 else 1
        if choice == "identity":
            out.append(Block("project" if stride == 2 else "identity", c_in, c_out, stride))
        else:
            out.append(Block("mb", c_in, c_out, stride, *BLOCKS[choice]))
        c_in = c_out
    return out


def head_channels(width: int) -> int:
    return HEAD_PER_WIDTH * width


def _side(size: int, stride: int) -> int:
    """Output side of a stride-``stride`` conv with odd kernel k and padding k // 2 (every conv here)."""
    return (size - 1) // stride + 1


def block_counts(b: Block, size: int) -> tuple[int, int, int]:
    """(parameters, multiply-accumulates, output side) of one block on a ``size`` x ``size`` input.
    Multiply-accumulates as NAS-Bench-Macro counts FLOPs: convolutions and linear weights only."""
    out = _side(size, b.stride)
    if b.kind == "identity":
        return 0, 0, size
    if b.kind == "project":
        return b.c_in * b.c_out + 2 * b.c_out, b.c_in * b.c_out * out * out, out
    hidden = b.c_in * b.expansion
    params = b.c_in * hidden + 2 * hidden + b.kernel ** 2 * hidden + 2 * hidden + hidden * b.c_out + 2 * b.c_out
    macs = b.c_in * hidden * size * size + (b.kernel ** 2 * hidden + hidden * b.c_out) * out * out
    return params, macs, out


def network_counts(archs: Sequence[MacroArch], num_classes: int = 10, in_channels: int = 3, width: int = 32,
                   cells: int = 1, image_size: int = 32) -> dict:
    """Exact ``{"params", "flops"}`` arrays of ``build_network`` for many cells, without torch.

    Every layer's channels and resolution are fixed by its position (a downsampling identity halves the
    resolution too), so a cell's count is a shared skeleton plus one table lookup per layer. FLOPs follow
    the benchmark's counter: conv and linear weights, no bias, no BN; ``nasflow.proxies.count_macs`` of
    the built network adds the classifier's ``num_classes`` bias terms.
    """
    per_layer = np.zeros((2, LAYERS, len(CHOICES)), dtype=np.int64)
    size = image_size
    for layer in range(LAYERS):
        for c, choice in enumerate(CHOICES):
            side = size
            for b in layer_blocks(layer, choice, width, cells):
                p, m, side = block_counts(b, side)
                per_layer[:, layer, c] += (p, m)
        size = _side(size, 2) if layer in DOWNSAMPLING else size
    top, head = 8 * width, head_channels(width)
    fixed_params = 9 * in_channels * width + 2 * width + top * head + 2 * head + head * num_classes + num_classes
    fixed_macs = 9 * in_channels * width * image_size ** 2 + top * head * size * size + head * num_classes
    ids = np.array([[int(d) for d in a.digits] for a in archs], dtype=np.int64).reshape(-1, LAYERS)
    rows = np.arange(LAYERS)
    return {"params": fixed_params + per_layer[0][rows, ids].sum(1), "flops": fixed_macs + per_layer[1][rows, ids].sum(1)}


# ------------------------------------------------------------------------------------------- the space
CATEGORICAL = CategoricalEncoding(
    choices={f"layer{k}": CHOICES for k in range(LAYERS)},
    decode=lambda params: MacroArch("".join(str(CHOICES.index(params[f"layer{k}"])) for k in range(LAYERS))),
    encode=lambda arch: {f"layer{k}": choice for k, choice in enumerate(arch.choices)},
)
CHAIN_EDGES = tuple((k, k + 1) for k in range(LAYERS + 1))


class MacroSpace(BaseSpace):
    """The NAS-Bench-Macro space: 3,969 networks, written as 6,561 digit strings."""

    name = "nas-bench-macro"
    size = SIZE
    ops = OPS
    vocab = ("input", "output") + OPS
    datasets = DATASETS
    enumerable = True
    small_network = (8, 1)  # stem width, copies per layer: channels 16/32/64 and a 320 head, seconds on the digits
    categorical = CATEGORICAL
    unified_ops = UNIFIED_OPS
    unified_id = 3  # saved unified predictors index their space embedding with it: never change it
    # Half the networks, as the field's NB-201 pool (7,813 of 15,625): 19 labelled cells at 1%, 99 at 5%, and
    # 1,945 test cells.
    protocol_pool = 1_984

    def parse(self, text: str) -> MacroArch:
        if not isinstance(text, str):
            raise ArchError(f"a NAS-Bench-Macro cell is a string of {LAYERS} digits, got {type(text).__name__}")
        return MacroArch(text.strip())

    def format(self, arch: MacroArch) -> str:
        """The network's canonical string, whichever string of it the cell was written as."""
        return arch.key

    def enumerate(self) -> list[MacroArch]:
        """All 3,969 networks, canonical strings in the benchmark's order (00000000 first, 22222222 last)."""
        return list(_all_cells())

    def arch_at(self, index: int) -> MacroArch:
        index = cell_index(index, SIZE, "NAS-Bench-Macro")
        return _all_cells()[index]

    def index_of(self, arch: MacroArch) -> int:
        return _index()[arch.key]

    def sample(self, rng: np.random.Generator) -> MacroArch:
        """A uniform network (uniform strings would favour networks with many ways to place identities)."""
        return _all_cells()[int(rng.integers(SIZE))]

    def mutate(self, arch: MacroArch, rng: np.random.Generator) -> MacroArch:
        """A uniform one of ``neighbours(arch)``."""
        neighbours = self.neighbours(arch)
        return neighbours[int(rng.integers(len(neighbours)))]

    def neighbours(self, arch: MacroArch) -> list[MacroArch]:
        """The distinct networks one layer change away from the canonical string (at most 16; fewer where
        two changes give one network: x00 -> x10 and x01, or x22 -> x20 and x02 in a stage). Each is another network: one
        change of a canonical string always alters some stage's blocks."""
        key = arch.key
        changed = (MacroArch(key[:layer] + d + key[layer + 1 :]) for layer in range(LAYERS) for d in DIGITS
                   if d != key[layer])
        return list(dict.fromkeys(canonical(a) for a in changed))

    def to_graph(self, arch: MacroArch) -> CellGraph:
        """The chain input -> 8 layers -> output of the network the benchmark trained for the cell.

        Every layer stays a node, identities included: node k + 1 is always layer k, and the stride-1
        identities pass their input on (the flow surrogate's "identity"), as in the network. Labels come from
        ``canonical(arch)``, so the cells of one network share one graph, and a downsampling layer carries
        its own label (``DOWNSAMPLING_LABELS``), so cells that differ in where the identities sit relative to
        the stage starts (different networks) get different graphs, also for an encoder that sees only a few
        hops along the chain.
        """
        labels = tuple(DOWNSAMPLING_LABELS[c] if k in DOWNSAMPLING else c for k, c in enumerate(canonical(arch).choices))
        return CellGraph(ops=("input",) + labels + ("output",), edges=CHAIN_EDGES)

    def network(self, arch: MacroArch, num_classes: int = 10, in_channels: int = 3, width: int = 32, cells: int = 1):
        """The benchmark's network (torch module) for ``arch``; defaults are its own: stem 32, head 1280."""
        from .nas_bench_macro_network import build_network

        return build_network(arch, num_classes=num_classes, in_channels=in_channels, width=width, cells=cells)

    def network_counts(self, archs: Sequence[MacroArch], num_classes: int = 10, in_channels: int = 3, width: int = 32,
                       cells: int = 1, image_size: int = 32) -> dict:
        """Exact ``{"params": ..., "flops": ...}`` arrays of ``network(arch)`` in closed form (no torch)."""
        return network_counts(archs, num_classes, in_channels, width, cells, image_size)

    def open_oracle(self, benchmark: Optional[str] = None, dataset: str = "cifar10", progress: bool = False):
        """The table oracle: search on the seed ``dataset`` names, report the mean of the three."""
        return MacroTableOracle(find_benchmark(self.name, TABLE_FILES, benchmark, PUBLISHED_AT), dataset)


# -------------------------------------------------------------------------------------------- the table
SEED_COLUMNS = tuple(f"test_acc_seed{s}" for s in range(3))
COUNT_COLUMNS = ("params", "flops")


def seed_of(dataset: str) -> int:
    """The seed a dataset name searches on: cifar10 is seed 0, cifar10-seed1 and cifar10-seed2 the others."""
    if dataset not in DATASETS:
        raise BenchmarkError(f"NAS-Bench-Macro has no dataset {dataset!r}; use {', '.join(DATASETS)} (searching on "
                             f"seed 0, 1 or 2's test accuracy; the run reports the mean of the three)")
    return DATASETS.index(dataset)


def _count(text: str, path: Path, line: int, column: str) -> int:
    value = table_number(text, path, line, column)
    if value < 0 or value != int(value):
        raise BenchmarkError(f"{path}:{line}: column {column} is not a count: {text!r}")
    return int(value)


class MacroTableOracle(TabularOracle):
    """NAS-Bench-Macro's table (columns ``arch``, ``test_acc_seed0..2``, ``params``, ``flops``; ``mean_acc``
    checked where present): ``valid`` is the chosen seed's test accuracy, ``test`` the mean of the three."""

    def __init__(self, path, dataset: str = "cifar10"):
        path = Path(path)
        self.source, self.dataset, self.datasets = str(path), dataset, DATASETS
        seed = seed_of(dataset)
        self.metric_note = (f"valid is seed {seed}'s test accuracy, as the table has no validation split; "
                            f"test the mean over its 3 seeds")
        try:
            with open(path, newline="", encoding="utf-8-sig") as f:
                table = self._read(csv.reader(f), path, seed)
        except (OSError, UnicodeDecodeError, csv.Error) as e:
            raise BenchmarkError(f"cannot read {path}: {e}") from None
        if not table:
            raise BenchmarkError(f"{path} has a header but no rows")
        self._set_table(table)

    @staticmethod
    def _read(reader, path: Path, seed: int) -> dict:
        header = next(reader, None)
        if not header:
            raise BenchmarkError(f"{path} is empty; expected a CSV with the columns arch, "
                                 f"{', '.join(SEED_COLUMNS + COUNT_COLUMNS)}")
        missing = [c for c in ("arch",) + SEED_COLUMNS + COUNT_COLUMNS if c not in header]
        if missing:
            raise BenchmarkError(f"{path} has no column(s) {', '.join(missing)}; columns are {', '.join(header)}")
        twice = sorted({c for c in header if header.count(c) > 1})
        if twice:
            raise BenchmarkError(f"{path} has the column(s) {', '.join(twice)} more than once")
        at = {c: header.index(c) for c in header}
        table, first = {}, {}  # first: the line, string and numbers of each network's first row
        # rows are unique per string (``_string``); the strings of one network must then agree, and fold into one
        for line, digits, row in table_cells(reader, header, path, _string):
            arch = MacroArch(digits)
            accs = [table_number(row[at[c]], path, line, c) for c in SEED_COLUMNS]
            mean = sum(accs) / len(accs)
            if "mean_acc" in at and abs(table_number(row[at["mean_acc"]], path, line, "mean_acc") - mean) > 1e-3:
                raise BenchmarkError(f"{path}:{line}: mean_acc {row[at['mean_acc']]} is not the mean of the three "
                                     f"seeds ({mean:.4f}); a shifted or edited column?")
            counts = {c: _count(row[at[c]], path, line, c) for c in COUNT_COLUMNS}
            if arch in first:
                first_line, first_digits, numbers = first[arch]
                if numbers != (accs, counts):
                    raise BenchmarkError(f"{path}:{line}: {digits} and {first_digits} (line {first_line}) are one "
                                         f"network, {arch.key} (stride-1 identities compute nothing), but their "
                                         f"numbers differ; give one network one row of numbers")
                continue
            first[arch] = (line, digits, (accs, counts))
            table[arch] = Evaluation(valid=accs[seed], test=mean, extra=counts)
        return table


def _string(text: str) -> str:
    """A table's cell as written (checked as a cell): the table may repeat a network under its other strings."""
    return MacroSpace().parse(text).digits
