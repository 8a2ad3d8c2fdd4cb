"""The DARTS space (NB-301's): a normal and a reduction cell, each with two inputs (c_{k-2}, c_{k-1}) and
four intermediate nodes that each sum two operations applied to two different earlier nodes; a cell's
output concatenates its four intermediate nodes. Seven operations, NB-301's (no ``none``).

Cells are read in two forms:

- NASLib's compact form, ``(((0, 5), (1, 3), ...), ((0, 4), ...))``: per cell eight (input, op index)
  pairs, two per intermediate node; inputs 0 and 1 are c_{k-2} and c_{k-1}, 2..5 the intermediate
  nodes; op indices in NASLib's order (``OPS``, from its compact-to-genotype conversion).
- DARTS's genotype, ``Genotype(normal=[('sep_conv_3x3', 0), ...], normal_concat=[2, 3, 4, 5], reduce=[...],
  reduce_concat=[2, 3, 4, 5])`` (``range(2, 6)`` also accepted).

Neither is evaluated as Python: a small tokenizer and a recursive-descent reader of nested tuples of
integers read the compact form, and one regular expression per part reads the genotype; the text is
capped in length first. Nothing a table or a user writes can run code.

Canonical form: a node sums its two operations, so the order of its two inputs carries no meaning; each
node's pairs are sorted by input. Two cells that differ only in that order are the same cell (same key,
same network up to the order of two summed terms). Relabelling independent intermediate nodes is not
folded: it permutes the channels of the concatenated output, and DARTS and NB-301 treat such genotypes
as different. The key and ``format`` are the canonical compact form.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from math import comb, prod
from typing import Optional, Sequence

import numpy as np

from nasflow.core import Arch, BaseSpace, CategoricalEncoding, CellGraph
from nasflow.errors import ArchError

# NASLib's op index order of the compact form (naslib/search_spaces/nasbench301/conversions.py)
OPS = ("max_pool_3x3", "avg_pool_3x3", "skip_connect", "sep_conv_3x3", "sep_conv_5x5", "dil_conv_3x3", "dil_conv_5x5")
# Node labels as tokens of the unified vocabulary (nasflow.predictors.unified.VOCAB): pools and skip are the
# NB-201 ones (DARTS's pools have no BN, NB-201's neither), the separable and dilated convs have their own.
UNIFIED_OPS = {"input": "input", "output": "output", "max_pool_3x3": "maxpool3x3", "avg_pool_3x3": "avgpool3x3",
               "skip_connect": "skip", "sep_conv_3x3": "sepconv3x3", "sep_conv_5x5": "sepconv5x5",
               "dil_conv_3x3": "dilconv3x3", "dil_conv_5x5": "dilconv5x5"}
NODES = 4  # intermediate nodes per cell, numbered 2..5 after the two inputs
PAIRS = 2 * NODES
CELL_TYPES = ("normal", "reduce")
# distinct cells of one type: node k picks an unordered pair of different inputs among k and an op for each
CELL_SIZE = prod(comb(k, 2) * len(OPS) ** 2 for k in range(2, 2 + NODES))
SIZE = CELL_SIZE**2
DATASETS = ("scifar100", "svhn")
MAX_TEXT = 2_000  # a genotype is about 450 characters; longer text is refused before any parsing

Cell = tuple[tuple[int, int], ...]  # eight (input, op index) pairs, node k's at 2(k-2) and 2(k-2)+1


def canonical_cell(pairs, cell_type: str = "normal") -> Cell:
    """Eight (input, op index) pairs checked against the space, each node's two sorted by input."""
    if not isinstance(pairs, (tuple, list)):
        raise ArchError(f"a DARTS {cell_type} cell is a sequence of (input, op index) pairs, got {type(pairs).__name__}")
    if len(pairs) != PAIRS:
        raise ArchError(f"a DARTS {cell_type} cell has {NODES} intermediate nodes of exactly two inputs each: "
                        f"expected {PAIRS} (input, op) pairs, got {len(pairs)}")
    nodes = []
    for n in range(NODES):
        k = n + 2
        node = []
        for pair in pairs[2 * n: 2 * n + 2]:
            if not isinstance(pair, (tuple, list)) or len(pair) != 2 or not all(isinstance(x, (int, np.integer)) and not isinstance(x, bool) for x in pair):
                raise ArchError(f"node {k} of the {cell_type} cell: {pair!r} is not an (input, op index) pair of integers")
            j, op = int(pair[0]), int(pair[1])
            if not 0 <= j < k:
                raise ArchError(f"node {k} of the {cell_type} cell takes input {j}, which is not an earlier node "
                                f"(its inputs are nodes 0..{k - 1})")
            if not 0 <= op < len(OPS):
                raise ArchError(f"node {k} of the {cell_type} cell: op index {op} is not one of 0..{len(OPS) - 1} ({', '.join(OPS)})")
            node.append((j, op))
        if node[0][0] == node[1][0]:
            raise ArchError(f"node {k} of the {cell_type} cell takes node {node[0][0]} twice; "
                            f"each node sums two different earlier nodes")
        nodes.extend(sorted(node))
    return tuple(nodes)


@dataclass(frozen=True, eq=False)
class DartsArch(Arch):
    """A DARTS cell pair: the normal and the reduction cell, each canonical (see the module's docstring)."""

    normal: Cell
    reduce: Cell
    _key: str = field(init=False, repr=False)
    space = "darts"

    def __post_init__(self):
        object.__setattr__(self, "normal", canonical_cell(self.normal, "normal"))
        object.__setattr__(self, "reduce", canonical_cell(self.reduce, "reduce"))
        object.__setattr__(self, "_key", repr((self.normal, self.reduce)))

    @property
    def key(self) -> str:
        return self._key

    @property
    def search_space(self) -> "DartsSpace":
        return DartsSpace()

    def cells(self) -> dict[str, Cell]:
        return {"normal": self.normal, "reduce": self.reduce}


# ----------------------------------------------------------------------------------- parsing
_TOKEN = re.compile(r"\s*(?:(-?\d+)|([()\[\],]))")
_GENOTYPE = re.compile(r"Genotype\(normal=(\[[^\]]*\]),normal_concat=([^=]*),reduce=(\[[^\]]*\]),"
                       r"reduce_concat=([^=]*)\)")
_GENOTYPE_LIST = re.compile(r"\[(?:\(['\"]\w+['\"],-?\d+\)(?:,\(['\"]\w+['\"],-?\d+\))*,?)?\]")
_GENOTYPE_PAIR = re.compile(r"\(['\"](\w+)['\"],(-?\d+)\)")
_CONCATS = ("[2,3,4,5]", "(2,3,4,5)", "range(2,6)", "list(range(2,6))")


def read_nested(text: str):
    """Nested tuples (or lists) of integers from ``text``, without eval: a tokenizer and a recursive descent."""
    tokens, pos = [], 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            if text[pos:].strip() == "":
                break
            raise ArchError(f"unexpected {text[pos:pos + 10]!r} in a DARTS compact cell; expected integers in nested tuples")
        tokens.append(m.group(1) or m.group(2))
        pos = m.end()
    closing = {"(": ")", "[": "]"}

    def item(i: int, depth: int = 0):
        if depth > 3:  # the compact form nests three deep; deeper text is refused before Python's recursion limit
            raise ArchError("a DARTS compact cell nests tuples three deep at most: (cells (pairs (input, op)))")
        if i >= len(tokens):
            raise ArchError("a DARTS compact cell ends too early")
        t = tokens[i]
        if t in closing:
            out, i = [], i + 1
            while i < len(tokens) and tokens[i] != closing[t]:
                value, i = item(i, depth + 1)
                out.append(value)
                if i < len(tokens) and tokens[i] == ",":
                    i += 1
                elif i < len(tokens) and tokens[i] != closing[t]:
                    raise ArchError(f"expected ',' or {closing[t]!r} in a DARTS compact cell, got {tokens[i]!r}")
            if i >= len(tokens):
                raise ArchError(f"unclosed {t!r} in a DARTS compact cell")
            return tuple(out), i + 1
        if t in "()[],":
            raise ArchError(f"unexpected {t!r} in a DARTS compact cell")
        return int(t), i + 1

    value, end = item(0)
    if end != len(tokens):
        raise ArchError("text after the end of a DARTS compact cell")
    return value


def parse_compact(text: str) -> DartsArch:
    value = read_nested(text)
    if not isinstance(value, tuple) or len(value) != 2 or not all(isinstance(c, tuple) for c in value):
        raise ArchError("a DARTS compact cell is two tuples (normal, reduce) of (input, op index) pairs")
    for cell_type, cell in zip(CELL_TYPES, value):
        if not all(isinstance(p, tuple) for p in cell):
            raise ArchError(f"the {cell_type} cell must list (input, op index) pairs")
    return DartsArch(value[0], value[1])


def parse_genotype(text: str) -> DartsArch:
    compact = re.sub(r"\s+", "", text)
    m = _GENOTYPE.fullmatch(compact)
    if m is None:
        raise ArchError("malformed DARTS genotype; expected Genotype(normal=[('op', input), ...], normal_concat=[2, 3, 4, 5], "
                        "reduce=[...], reduce_concat=[2, 3, 4, 5])")
    cells = []
    for cell_type, listed, concat in ((CELL_TYPES[0], m.group(1), m.group(2)), (CELL_TYPES[1], m.group(3), m.group(4))):
        if concat not in _CONCATS:
            raise ArchError(f"{cell_type}_concat must be [2, 3, 4, 5] (a cell outputs all four intermediate nodes), got {concat}")
        if not _GENOTYPE_LIST.fullmatch(listed):
            raise ArchError(f"malformed {cell_type} list in a DARTS genotype; expected [('op', input), ...]")
        pairs = []
        for name, j in _GENOTYPE_PAIR.findall(listed):
            if name not in OPS:
                raise ArchError(f"unknown DARTS operation {name!r}; expected one of {', '.join(OPS)}")
            pairs.append((int(j), OPS.index(name)))
        cells.append(canonical_cell(pairs, cell_type))
    return DartsArch(cells[0], cells[1])


def format_genotype(arch: DartsArch) -> str:
    """``arch`` as DARTS's genotype string (canonical pair order), e.g. for DARTS's own training code."""
    parts = []
    for cell_type, cell in arch.cells().items():
        listed = ", ".join(f"('{OPS[op]}', {j})" for j, op in cell)
        parts.append(f"{cell_type}=[{listed}], {cell_type}_concat=[2, 3, 4, 5]")
    return f"Genotype({', '.join(parts)})"


# ------------------------------------------------------------------------------ the graph
def _cell_graph_edges(cell: Cell, first: int, inputs: Sequence[Sequence[int]]) -> list[tuple[int, int]]:
    """Edges into the op nodes ``first..first+7`` of ``cell``; ``inputs[j]`` are the graph nodes that make input j."""
    edges = []
    for p, (j, _) in enumerate(cell):
        sources = inputs[j] if j < 2 else (first + 2 * (j - 2), first + 2 * (j - 2) + 1)
        edges.extend((u, first + p) for u in sources)
    return edges


def graph_of(arch: DartsArch) -> CellGraph:
    """Both cells as one DAG of op nodes: a reduction cell followed by the normal cell after it.

    Node 0 is the input, 1..8 the reduction cell's ops, 9..16 the normal cell's ops, 17 the output.
    This is the wiring of the network where a normal cell follows a reduction cell: the normal cell reads
    the reduction cell's output (all eight of its ops, concatenated) as c_{k-1} and the reduction cell's
    input as c_{k-2}; the reduction cell's two inputs are both the input node. So the normal cell (18 of
    DARTS's 20 cells) keeps which input each op reads, and only the reduction cell's 0/1 choice is lost.
    The two cells share the seven op labels and are told apart by their place: every normal op feeds the
    output, no reduction op does (the encoders pass messages both ways, so one layer sees it).
    """
    reduce_ops = tuple(range(1, 1 + PAIRS))
    normal_first = 1 + PAIRS
    output = normal_first + PAIRS
    edges = _cell_graph_edges(arch.reduce, 1, ((0,), (0,)))
    edges += _cell_graph_edges(arch.normal, normal_first, ((0,), reduce_ops))
    edges += [(normal_first + p, output) for p in range(PAIRS)]
    ops = ("input",) + tuple(OPS[op] for _, op in arch.reduce) + tuple(OPS[op] for _, op in arch.normal) + ("output",)
    return CellGraph(ops=ops, edges=tuple(sorted(set(edges))))


# ------------------------------------------------------------------- TPE's categorical view
def _input_pairs(k: int) -> tuple[str, ...]:
    return tuple(f"{a},{b}" for a in range(k) for b in range(a + 1, k))


# per cell and node: which two inputs ("a,b", a < b), the op on input a and the op on input b
CHOICES = {f"{c}_node{k}_{part}": (_input_pairs(k) if part == "inputs" else OPS)
           for c in CELL_TYPES for k in range(2, 2 + NODES) for part in ("inputs", "op_a", "op_b")}


def decode(params) -> DartsArch:
    cells = []
    for c in CELL_TYPES:
        pairs = []
        for k in range(2, 2 + NODES):
            values = [params.get(f"{c}_node{k}_{part}") for part in ("inputs", "op_a", "op_b")]
            if values[0] not in _input_pairs(k) or values[1] not in OPS or values[2] not in OPS:
                raise ArchError(f"{c} node {k}: {values} is not an input pair of {', '.join(_input_pairs(k))} "
                                f"and two of {', '.join(OPS)}")
            a, b = map(int, values[0].split(","))
            pairs += [(a, OPS.index(values[1])), (b, OPS.index(values[2]))]
        cells.append(pairs)
    return DartsArch(cells[0], cells[1])


def encode(arch: DartsArch) -> dict:
    params = {}
    for c, cell in arch.cells().items():
        for n in range(NODES):
            (a, op_a), (b, op_b) = cell[2 * n: 2 * n + 2]
            params.update({f"{c}_node{n + 2}_inputs": f"{a},{b}", f"{c}_node{n + 2}_op_a": OPS[op_a],
                           f"{c}_node{n + 2}_op_b": OPS[op_b]})
    return {name: params[name] for name in CHOICES}


CATEGORICAL = CategoricalEncoding(choices=CHOICES, decode=decode, encode=encode)


class DartsSpace(BaseSpace):
    """The DARTS / NB-301 space: about 1.08e18 cell pairs, searched by sampling; its benchmark is the
    NAS-Bench-Suite-Zero table of about 200 trained cells per dataset (scifar100, svhn)."""

    name = "darts"
    size = SIZE
    ops = OPS
    vocab = ("input", "output") + OPS
    datasets = DATASETS
    enumerable = False
    small_network = (8, 1)  # width, normal cells per stage: 5 cells, trains in seconds on the 8x8 digits
    categorical = CATEGORICAL
    unified_ops = UNIFIED_OPS
    unified_id = 4  # saved unified predictors index their space embedding with it: never change it
    # training pool of the predictor protocol on the suite's 199 cells per dataset: the largest that leaves the
    # protocol's 40 validation cells and 100 test cells, the fewest on which P@1% is defined (top 1 of 100)
    protocol_pool = 59

    def make(self, normal, reduce) -> DartsArch:
        return DartsArch(tuple(normal), tuple(reduce))

    def parse(self, text: str) -> DartsArch:
        if not isinstance(text, str):
            raise ArchError(f"a DARTS cell is text (a genotype or NASLib's compact form), got {type(text).__name__}")
        if len(text) > MAX_TEXT:
            raise ArchError(f"a DARTS cell of {len(text):,d} characters is too long (at most {MAX_TEXT:,d})")
        text = text.strip()
        if text.startswith("Genotype"):
            return parse_genotype(text)
        if not text.startswith(("(", "[")):
            raise ArchError(f"malformed DARTS cell {text[:60]!r}; expected a Genotype(...) string or NASLib's "
                            f"compact form (((input, op), ...), ((input, op), ...))")
        return parse_compact(text)

    def format(self, arch: DartsArch) -> str:
        return arch.key

    def genotype(self, arch: DartsArch) -> str:
        return format_genotype(arch)

    def sample(self, rng: np.random.Generator) -> DartsArch:
        """Uniform, drawn as NASLib samples NB-301: per node four ops (two per cell) and, per cell, two
        different inputs among the earlier nodes. Uniform over ordered pairs is uniform over canonical cells."""
        cells = ([], [])
        for n in range(NODES):
            ops = rng.integers(len(OPS), size=4)
            for c in range(2):
                a, b = rng.choice(n + 2, size=2, replace=False)
                cells[c].extend([(int(a), int(ops[2 * c])), (int(b), int(ops[2 * c + 1]))])
        return DartsArch(tuple(cells[0]), tuple(cells[1]))

    def neighbours(self, arch: DartsArch) -> list[DartsArch]:
        """Every cell one change away: one op of one node, or one input of one node (to an earlier node it
        does not already read), in one of the two cells."""
        out = []
        for c, cell in enumerate((arch.normal, arch.reduce)):
            for p, (j, op) in enumerate(cell):
                k = p // 2 + 2
                other = cell[p ^ 1][0]
                changes = [(j, o) for o in range(len(OPS)) if o != op]
                changes += [(i, op) for i in range(k) if i not in (j, other)]
                for new in changes:
                    changed = list(cell)
                    changed[p] = new
                    cells = [arch.normal, arch.reduce]
                    cells[c] = tuple(changed)
                    out.append(DartsArch(cells[0], cells[1]))
        return out

    def mutate(self, arch: DartsArch, rng: np.random.Generator) -> DartsArch:
        """One of ``neighbours(arch)``, uniformly."""
        near = self.neighbours(arch)
        return near[int(rng.integers(len(near)))]

    def to_graph(self, arch: DartsArch) -> CellGraph:
        return graph_of(arch)

    def network(self, arch: DartsArch, num_classes: int = 10, in_channels: int = 3, width: int = 36, cells: int = 6,
                drop_path: float = 0.0):
        """The DARTS CIFAR network (torch module); defaults are DARTS's evaluation network: C=36, 3 x 6 normal
        cells plus 2 reduction cells (20 cells), no auxiliary head."""
        from .darts_network import build_network

        return build_network(arch.normal, arch.reduce, num_classes=num_classes, in_channels=in_channels,
                             width=width, cells=cells, drop_path=drop_path)

    def network_counts(self, archs: Sequence[DartsArch], num_classes: int = 10, in_channels: int = 3,
                       width: int = 36, cells: int = 6, image_size: int = 32) -> dict:
        """Exact ``{"params": ..., "flops": ...}`` arrays of ``network(arch)`` for many cells, in closed form."""
        from .darts_network import network_counts

        return network_counts([(a.normal, a.reduce) for a in archs], num_classes=num_classes,
                              in_channels=in_channels, width=width, cells=cells, image_size=image_size)

    def open_oracle(self, benchmark: Optional[str] = None, dataset: str = "cifar10", progress: bool = False):
        """The NAS-Bench-Suite-Zero table's cells of this space on ``dataset`` (validation accuracy, no test)."""
        from .suite_table import SuiteTableOracle, find_suite

        return SuiteTableOracle(find_suite(benchmark), self, dataset)
