"""The official NAS-Bench-101 module hash, computed without numpy in the inner loop.

The rule is the benchmark's ``graph_util.hash_module``: every vertex starts from the md5 of
``str((out_degree, in_degree, label))``; then, as many rounds as there are vertices, each
vertex becomes the md5 of its in-neighbours' hashes sorted and joined, ``|``, its
out-neighbours' likewise, ``|``, its own hash; the cell's hash is the md5 of
``str(sorted(vertex_hashes))``. Labels: input -1, output -2, ops by their index.

``graph_util`` evaluates the neighbour lists with numpy indexing in every round (about
1 ms a cell); here they are plain lists worked out once per graph (``Structure``), so
hashing the labellings of one graph (what enumerating the space does) costs only the md5
calls, and the starting hashes are memoised (a few dozen distinct (out, in, label) triples).
Identical hashes to ``graph_util.hash_module`` are checked by tests/test_nb101_enumerate.py.
"""
from __future__ import annotations

from hashlib import md5
from typing import Sequence

INPUT_LABEL, OUTPUT_LABEL = -1, -2  # the benchmark's labels of the input and output; ops are labelled by index

# str((out_degree, in_degree, label)) -> its md5: degrees are < 7, labels in -2..2
_START: dict = {}


def _start(triple: tuple) -> str:
    h = _START.get(triple)
    if h is None:
        h = _START[triple] = md5(str(triple).encode("utf-8")).hexdigest()
    return h


class Structure:
    """The unlabelled part of a cell: degrees and neighbour lists, shared by all its labellings."""

    __slots__ = ("n", "out_degree", "in_degree", "ins", "outs")

    def __init__(self, matrix: Sequence[Sequence[int]]):
        n = self.n = len(matrix)
        rows = [[int(x) for x in row] for row in matrix]
        self.out_degree = [sum(row) for row in rows]
        self.in_degree = [sum(rows[w][v] for w in range(n)) for v in range(n)]
        self.ins = [[w for w in range(n) if rows[w][v]] for v in range(n)]
        self.outs = [[w for w in range(n) if rows[v][w]] for v in range(n)]

    def hash(self, labels: Sequence[int]) -> str:
        """The official hash of this graph with vertex labels ``labels`` (ints: input -1, output -2, ops 0..2)."""
        n, ins, outs = self.n, self.ins, self.outs
        hashes = [_start((self.out_degree[v], self.in_degree[v], int(labels[v]))) for v in range(n)]
        for _ in range(n):
            hashes = [
                md5(("".join(sorted([hashes[w] for w in ins[v]])) + "|"
                     + "".join(sorted([hashes[w] for w in outs[v]])) + "|"
                     + hashes[v]).encode("utf-8")).hexdigest()
                for v in range(n)
            ]
        return md5(str(sorted(hashes)).encode("utf-8")).hexdigest()


def module_hash(matrix: Sequence[Sequence[int]], labels: Sequence[int]) -> str:
    """The official hash of a pruned cell: ``matrix`` square 0/1 rows, ``labels`` one int a vertex."""
    if len(labels) != len(matrix):
        raise ValueError(f"{len(labels)} labels for a {len(matrix)}-vertex matrix")
    return Structure(matrix).hash(labels)
