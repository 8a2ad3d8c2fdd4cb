"""NAS-Bench-101: a cell of up to 7 vertices and 9 edges, each inner vertex one of 3 operations.

A cell is an upper-triangular 0/1 adjacency matrix (vertex 0 the input, the last vertex
the output) plus one label per vertex. Vertices that lie on no input->output path do not
compute anything, so cells are pruned on construction, exactly as the benchmark does, and
identified by the benchmark's module hash: isomorphic cells share a hash and compare equal.

Text form (``format`` / ``parse``), one line: the pruned adjacency matrix as row-major
bits, a colon, then the vertex labels comma-separated, e.g.
``0110000010000001000000000:input,conv3x3-bn-relu,maxpool3x3,conv1x1-bn-relu,output``.
These are the ``adjacency`` and ``operations`` fields of the official records. ``parse``
also accepts a JSON object ``{"matrix": [[...]], "ops": [...]}`` as in the JSONL tables.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Optional, Sequence

import numpy as np

from nasflow.benchfiles import benchmark_format, find_benchmark
from nasflow.core import Arch, BaseSpace, CategoricalEncoding, CellGraph, cell_index
from nasflow.errors import ArchError, BenchmarkError, SpaceError

from .nb101_hash import INPUT_LABEL, OUTPUT_LABEL, module_hash as hash_module

OPS = ("conv3x3-bn-relu", "conv1x1-bn-relu", "maxpool3x3")
INPUT, OUTPUT = "input", "output"
MAX_VERTICES = 7
MAX_EDGES = 9
SIZE = 423_624
DATASETS = ("cifar10",)
EPOCHS = (4, 12, 36, 108)
OFFICIAL_FILES = ("nasbench_only108.tfrecord", "nasbench_full.tfrecord")
TABLE_FILES = ("nb101_20k.jsonl", "nb101_1k.jsonl")  # the 20k first: 20 times the 1k sample's cells to search
FORMATS = {".jsonl": "table, one JSON object a line: hash, valid_acc_<epochs>, optionally matrix and ops",
           ".tfrecord": "official NAS-Bench-101 file"}
PUBLISHED_AT = "https://github.com/google-research/nasbench"

_HASH_LABELS = {INPUT: INPUT_LABEL, OUTPUT: OUTPUT_LABEL, **{op: i for i, op in enumerate(OPS)}}


def module_hash(matrix: np.ndarray, ops: Sequence[str]) -> str:
    """The official NAS-Bench-101 hash of a pruned cell (the rule of the benchmark's ``graph_util.hash_module``)."""
    return hash_module(matrix, [_HASH_LABELS[op] for op in ops])


def _as_matrix(matrix) -> np.ndarray:
    try:
        m = np.asarray(matrix)
    except ValueError:
        m = None
    if m is None or m.ndim != 2 or m.shape[0] != m.shape[1]:
        shape = "ragged" if m is None else "x".join(map(str, m.shape)) or "scalar"
        raise ArchError(f"a NAS-Bench-101 matrix must be square, got shape {shape}")
    if m.dtype.kind not in "biu" or not np.isin(m, (0, 1)).all():
        raise ArchError("a NAS-Bench-101 matrix must contain only 0 and 1")
    if np.tril(m).any():
        i, j = (int(x[0]) for x in np.nonzero(np.tril(m)))
        raise ArchError(
            f"a NAS-Bench-101 matrix must be strictly upper-triangular (edges go to later vertices), "
            f"but entry [{i}][{j}] is set"
        )
    return m.astype(np.int8)


def _check_ops(ops, n: int) -> tuple[str, ...]:
    try:
        ops = tuple(ops) if not isinstance(ops, str) else None
    except TypeError:
        ops = None
    if ops is None or not all(isinstance(op, str) for op in ops):
        raise ArchError("NAS-Bench-101 ops must be a list of vertex labels")
    if len(ops) != n:
        raise ArchError(f"the matrix has {n} vertices but {len(ops)} ops are given")
    if ops[0] != INPUT or ops[-1] != OUTPUT:
        raise ArchError(f"the first op must be {INPUT!r} and the last {OUTPUT!r}, got {ops[0]!r} and {ops[-1]!r}")
    for op in ops[1:-1]:
        if op not in OPS:
            raise ArchError(f"unknown NAS-Bench-101 operation {op!r}; expected one of {', '.join(OPS)}")
    return ops


def _on_a_path(m: np.ndarray) -> np.ndarray:
    """Mask of the vertices reachable from the input that also reach the output."""
    n = len(m)
    from_input = np.zeros(n, dtype=bool)
    to_output = np.zeros(n, dtype=bool)
    from_input[0] = True
    to_output[-1] = True
    # Edges only go forward, so one sweep in topological order settles reachability.
    for v in range(1, n):
        from_input[v] = bool((m[:v, v] & from_input[:v]).any())
    for v in range(n - 2, -1, -1):
        to_output[v] = bool((m[v, v + 1 :] & to_output[v + 1 :]).any())
    return from_input & to_output


def _pruned(matrix, ops) -> tuple[np.ndarray, tuple[str, ...]]:
    """Validate a cell the way the benchmark's ``is_valid`` does and drop dead vertices."""
    m = _as_matrix(matrix)
    n = len(m)
    if n < 2:
        raise ArchError(f"a NAS-Bench-101 cell needs at least an input and an output vertex, got {n} vertices")
    ops = _check_ops(ops, n)
    keep = _on_a_path(m)
    if not keep[-1]:
        raise ArchError("the cell's input and output are not connected; add a path from vertex 0 to the last vertex")
    m = m[np.ix_(keep, keep)]
    ops = tuple(op for op, k in zip(ops, keep) if k)
    if len(m) > MAX_VERTICES:
        raise ArchError(f"a NAS-Bench-101 cell has at most {MAX_VERTICES} vertices after pruning, got {len(m)}")
    edges = int(m.sum())
    if edges > MAX_EDGES:
        raise ArchError(f"a NAS-Bench-101 cell has at most {MAX_EDGES} edges after pruning, got {edges}")
    return m, ops


@dataclass(frozen=True, eq=False)
class NB101Arch(Arch):
    """A pruned NAS-Bench-101 cell; ``key`` is the official module hash.

    Construction validates and prunes, so ``NB101Arch(matrix, ops)`` accepts any valid
    matrix (padded, with dead vertices, or isomorphic to another) and stores the pruned one.
    """

    matrix: tuple[tuple[int, ...], ...]
    ops: tuple[str, ...]
    _key: str = field(init=False, repr=False)
    space = "nb101"

    def __post_init__(self):
        m, ops = _pruned(self.matrix, self.ops)
        object.__setattr__(self, "matrix", tuple(tuple(int(x) for x in row) for row in m))
        object.__setattr__(self, "ops", ops)
        object.__setattr__(self, "_key", module_hash(m, ops))

    @classmethod
    def from_record(cls, matrix: tuple, ops: tuple, key: str) -> "NB101Arch":
        """A cell from a benchmark file whose record already gives the pruned cell and its hash.

        Skips validation and hashing, which would cost minutes over 423,624 cells.
        """
        arch = object.__new__(cls)
        object.__setattr__(arch, "matrix", matrix)
        object.__setattr__(arch, "ops", ops)
        object.__setattr__(arch, "_key", key)
        return arch

    @property
    def key(self) -> str:
        return self._key

    @property
    def search_space(self) -> "NB101Space":
        return NB101Space()

    @property
    def num_vertices(self) -> int:
        return len(self.ops)

    @property
    def num_edges(self) -> int:
        return sum(map(sum, self.matrix))

    def array(self) -> np.ndarray:
        return np.array(self.matrix, dtype=np.int8)


def _candidate_moves(arch: NB101Arch) -> list[tuple[np.ndarray, list[str]]]:
    """Every single move from ``arch``, unvalidated: flip one edge, change one op, add one vertex.

    Adding a vertex v on a new path i -> v -> j is what one edge flip does in the official
    7-vertex matrices when it connects a dead vertex; without it pruned cells could only
    shrink, and the input->output cell would have no neighbour at all.
    """
    m, ops, n = arch.array(), list(arch.ops), arch.num_vertices
    moves = []
    for i in range(n - 1):
        for j in range(i + 1, n):
            flipped = m.copy()
            flipped[i, j] ^= 1
            moves.append((flipped, ops))
    for v in range(1, n - 1):
        for op in OPS:
            if op != ops[v]:
                moves.append((m, ops[:v] + [op] + ops[v + 1 :]))
    if n < MAX_VERTICES:
        for j in range(1, n):
            # The new vertex takes position j, so old vertices j.. shift up by one.
            grown = np.insert(np.insert(m, j, 0, axis=0), j, 0, axis=1)
            for i in range(j):
                with_path = grown.copy()
                with_path[i, j] = with_path[j, j + 1] = 1
                for op in OPS:
                    moves.append((with_path, ops[:j] + [op] + ops[j:]))
    return moves


# TPE's view of a cell: one bit per upper-triangular entry of the 7x7 matrix (e<i>_<j>) and one op per inner
# vertex (op1..op5); combinations the space rejects (disconnected, > 9 edges) raise ArchError in decode.
_PAIRS = tuple((i, j) for i in range(MAX_VERTICES) for j in range(i + 1, MAX_VERTICES))


def _decode(params) -> NB101Arch:
    matrix = [[0] * MAX_VERTICES for _ in range(MAX_VERTICES)]
    for i, j in _PAIRS:
        matrix[i][j] = params[f"e{i}_{j}"]
    return NB101Arch(matrix, [INPUT] + [params[f"op{v}"] for v in range(1, MAX_VERTICES - 1)] + [OUTPUT])


def _encode(arch: NB101Arch) -> dict:
    """Pad a pruned cell to 7 vertices: its output moves to vertex 6, unused vertices stay unconnected."""
    n = arch.num_vertices
    slot = list(range(n - 1)) + [MAX_VERTICES - 1]
    out = {f"e{i}_{j}": 0 for i, j in _PAIRS}
    for i in range(n):
        for j in range(n):
            if arch.matrix[i][j]:
                out[f"e{slot[i]}_{slot[j]}"] = 1
    for v in range(1, MAX_VERTICES - 1):
        out[f"op{v}"] = arch.ops[v] if v < n - 1 else OPS[0]
    return out


CATEGORICAL = CategoricalEncoding(
    choices={**{f"e{i}_{j}": (0, 1) for i, j in _PAIRS}, **{f"op{v}": OPS for v in range(1, MAX_VERTICES - 1)}},
    decode=_decode,
    encode=_encode,
)

# Node labels as tokens of the unified NB-101/NB-201 vocabulary (nasflow.predictors.unified.VOCAB).
UNIFIED_OPS = {
    INPUT: "input",
    OUTPUT: "output",
    # conv-BN-ReLU and NB-201's ReLU-conv-BN are the same 3x3 / 1x1 convolution with the same
    # normalisation; the order of ReLU only shifts where the nonlinearity sits in the chain.
    "conv3x3-bn-relu": "conv3x3",
    "conv1x1-bn-relu": "conv1x1",
    # max and average pooling keep a token each: they are different functions (max passes the
    # strongest activation on, average smooths), and a shared token would claim they act alike.
    "maxpool3x3": "maxpool3x3",
}


def _cells():
    from .nb101_enumerate import load_cells  # it imports this module

    return load_cells()


class NB101Space(BaseSpace):
    """The NAS-Bench-101 cell space (423,624 distinct cells)."""

    name = "nb101"
    size = SIZE
    ops = OPS
    vocab = (INPUT, OUTPUT) + OPS  # node labels of to_graph
    datasets = DATASETS
    enumerable = True  # listed once by nb101_enumerate, then read from its disk cache
    small_network = (16, 1)  # width, cells per stage: trains in seconds on the 8x8 digits
    categorical = CATEGORICAL
    unified_ops = UNIFIED_OPS
    unified_id = 0  # saved unified predictors index their space embedding with it: never change it
    protocol_pool = 7_290  # the field's training pool on NAS-Bench-101

    def make(self, matrix, ops: Sequence[str]) -> NB101Arch:
        return NB101Arch(matrix, ops)

    def parse(self, text: str) -> NB101Arch:
        if not isinstance(text, str):
            raise ArchError(f"a NAS-Bench-101 cell must be given as text, got {type(text).__name__}")
        text = text.strip()
        if text.startswith("{"):
            return self._parse_json(text)
        bits, sep, labels = text.partition(":")
        n = math.isqrt(len(bits))
        if not sep or not bits or n * n != len(bits) or set(bits) - {"0", "1"}:
            raise ArchError(
                f"malformed NAS-Bench-101 cell {text!r}; expected <row-major 0/1 matrix bits>:<comma-separated ops>, "
                f"e.g. 0110000010000001000000000:input,conv3x3-bn-relu,maxpool3x3,conv1x1-bn-relu,output"
            )
        matrix = np.frombuffer(bits.encode(), dtype=np.uint8).reshape(n, n) - ord("0")
        return NB101Arch(matrix, [op.strip() for op in labels.split(",")])

    def _parse_json(self, text: str) -> NB101Arch:
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as e:
            raise ArchError(f"malformed NAS-Bench-101 JSON cell: {e}") from None
        if not isinstance(obj, dict) or not isinstance(obj.get("matrix"), list) or not isinstance(obj.get("ops"), list):
            raise ArchError('a NAS-Bench-101 JSON cell needs the keys "matrix" (list of rows) and "ops" (list of labels)')
        return NB101Arch(obj["matrix"], obj["ops"])

    def format(self, arch: NB101Arch) -> str:
        bits = "".join(str(x) for row in arch.matrix for x in row)
        return f"{bits}:{','.join(arch.ops)}"

    def enumerate(self) -> list[NB101Arch]:
        """All 423,624 cells sorted by hash (nb101_enumerate.load_cells: ~1 min once, then cached on disk)."""
        return _cells().archs()

    def arch_at(self, index: int) -> NB101Arch:
        """The cell at ``index`` of ``enumerate()`` (cells sorted by official hash)."""
        index = cell_index(index, SIZE, "NAS-Bench-101")
        return _cells().arch(index)

    def index_of(self, arch: NB101Arch) -> int:
        """The position of ``arch`` in ``enumerate()``."""
        if not isinstance(arch, NB101Arch):
            raise ArchError(f"{arch!r} is not a NAS-Bench-101 cell")
        return int(_cells().index_of([arch.key])[0])

    def sample(self, rng: np.random.Generator) -> NB101Arch:
        """A cell drawn uniformly among the 423,624 distinct cells (the default sampler).

        Searches want every distinct cell equally likely; the benchmark's own recipe
        (``sample_official``) favours cells with many labelled 7x7 forms and draws the bare
        input->output cell about 9% of the time. Drawn without listing the space (a shape by its
        number of cells, then a labelling: nb101_graphs.uniform_cell), so a fresh machine pays no enumeration.
        """
        from .nb101_graphs import uniform_cell  # it imports this module
        shape, codes = uniform_cell(rng)  # a pruned, valid cell by construction: no checks, one hash
        return NB101Arch.from_record(shape.rows, (INPUT, *(OPS[c] for c in codes), OUTPUT),
                                     shape.structure.hash([INPUT_LABEL, *codes, OUTPUT_LABEL]))

    def sample_official(self, rng: np.random.Generator) -> NB101Arch:
        """A cell drawn as the benchmark's authors did, kept to reproduce their sampling: random 7x7 bits and
        ops until valid, uniform over valid labelled matrices, not over the distinct cells."""
        while True:
            matrix = np.triu(rng.integers(0, 2, size=(MAX_VERTICES, MAX_VERTICES)), 1)
            ops = [INPUT] + [OPS[k] for k in rng.integers(len(OPS), size=MAX_VERTICES - 2)] + [OUTPUT]
            try:
                return NB101Arch(matrix, ops)
            except ArchError:
                continue

    def mutate(self, arch: NB101Arch, rng: np.random.Generator) -> NB101Arch:
        """One random move (see ``neighbours``) that gives a valid, different cell."""
        moves = _candidate_moves(arch)
        for k in rng.permutation(len(moves)):
            try:
                child = NB101Arch(*moves[k])
            except ArchError:
                continue
            if child != arch:
                return child
        raise SpaceError(f"cell {arch.key} has no valid neighbour")  # pragma: no cover - every cell has one

    def neighbours(self, arch: NB101Arch) -> list[NB101Arch]:
        """All distinct valid cells one move away: an edge flip, an op change, or a new vertex on a new path."""
        out: dict[NB101Arch, None] = {}
        for matrix, ops in _candidate_moves(arch):
            try:
                child = NB101Arch(matrix, ops)
            except ArchError:
                continue
            if child != arch:
                out.setdefault(child)
        return list(out)

    def to_graph(self, arch: NB101Arch) -> CellGraph:
        n = arch.num_vertices
        edges = tuple((i, j) for i in range(n) for j in range(i + 1, n) if arch.matrix[i][j])
        return CellGraph(ops=arch.ops, edges=edges)

    def network(self, arch: NB101Arch, num_classes: int = 10, in_channels: int = 3, width: int = 128,
                cells: int = 3, stacks: int = 3):
        """The NAS-Bench-101 network (torch module); defaults are the official stem 128, 3 stacks x 3 cells."""
        from .nb101_network import build_network

        return build_network(arch.matrix, arch.ops, num_classes=num_classes, in_channels=in_channels,
                             stem=width, stacks=stacks, cells=cells)

    def network_counts(self, archs: Sequence[NB101Arch], num_classes: int = 10, in_channels: int = 3,
                       width: int = 128, cells: int = 3, stacks: int = 3, image_size: int = 32) -> dict:
        """Exact ``{"params": ..., "flops": ...}`` arrays of ``network(arch)`` for many cells, in closed form."""
        from .nb101_network import network_counts

        return network_counts([(a.matrix, a.ops) for a in archs], num_classes=num_classes, in_channels=in_channels,
                              stem=width, stacks=stacks, cells=cells, image_size=image_size)

    def open_oracle(
        self, benchmark: Optional[str] = None, dataset: str = "cifar10", epochs: int = 108, progress: bool = False
    ):
        """The tabular oracle from an official .tfrecord file or a JSONL table."""
        if dataset not in DATASETS:
            raise BenchmarkError(f"NAS-Bench-101 has results for cifar10 only, not {dataset!r}")
        path = find_benchmark(self.name, OFFICIAL_FILES + TABLE_FILES, benchmark, PUBLISHED_AT)
        if benchmark_format(path, FORMATS, self.name) == ".jsonl":
            from .nb101_table import NB101TableOracle

            return NB101TableOracle(path, epochs, progress=progress)
        from .nb101_records import NB101RecordOracle

        return NB101RecordOracle(path, epochs, progress=progress)
