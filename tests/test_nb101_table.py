"""NB-101 JSONL tables keyed by hash only (nb101_20k.jsonl): each cell comes from a cell source by its hash.

The default source is the enumeration of all 423,624 cells, minutes to build on a fresh cache, so these
tests inject a small one: the cells of nb101_1k.jsonl, or the enumeration of the cells of up to 5 vertices.
"""
import json

import numpy as np
import pytest

from nasflow.errors import BenchmarkError
from nasflow.spaces.nb101 import NB101Arch, NB101Space
from nasflow.spaces.nb101_table import NB101TableOracle


class KnownCells:
    """A cell source over a few known cells, counting its lookups."""

    def __init__(self, archs):
        self.cells = list(archs)
        self.row = {a.key: i for i, a in enumerate(self.cells)}
        self.lookups = 0

    def index_of(self, hashes):
        self.lookups += 1
        return np.array([self.row.get(h, -1) for h in hashes], dtype=np.int64)

    def archs(self, indices):
        return [self.cells[i] for i in indices]


class NoCells:
    def index_of(self, hashes):
        raise AssertionError("the cell source was consulted")

    archs = index_of


@pytest.fixture(scope="module")
def rows(nb101_jsonl):
    return [json.loads(line) for line in open(nb101_jsonl)]


@pytest.fixture(scope="module")
def source(rows):
    return KnownCells(NB101Arch(r["matrix"], r["ops"]) for r in rows)


def hash_only(row):
    return {k: v for k, v in row.items() if k not in ("matrix", "ops")}


def write_lines(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def test_a_hash_only_table_equals_the_table_with_cells(tmp_path, rows, source, nb101_jsonl):
    full = NB101TableOracle(nb101_jsonl, cells=NoCells())  # every line has its cell: no source needed
    before = source.lookups
    by_hash = NB101TableOracle(write_lines(tmp_path / "h.jsonl", map(hash_only, rows)), cells=source)
    assert source.lookups == before + 1  # one vectorised lookup for all 1,000 lines, no per-line hashing
    assert list(by_hash.items()) == list(full.items())
    assert by_hash.best("valid") == full.best("valid")


def test_lines_with_and_without_cells_mix_in_file_order(tmp_path, rows, source):
    mixed = [rows[0], hash_only(rows[1]), rows[2], hash_only(rows[3])]
    oracle = NB101TableOracle(write_lines(tmp_path / "m.jsonl", mixed), epochs=12, cells=source)
    assert [a.key for a in oracle.archs()] == [r["hash"] for r in rows[:4]]
    assert [e.valid for _, e in oracle.items()] == [r["valid_acc_12"] for r in rows[:4]]


def test_a_hash_that_is_no_cell_names_its_line(tmp_path, rows, source):
    lines = [hash_only(rows[0]), hash_only(rows[1]), {**hash_only(rows[2]), "hash": "f" * 32}]
    with pytest.raises(BenchmarkError, match=r"h\.jsonl:3: hash f{32} is not a NAS-Bench-101 cell \(1 of the "
                                             r"table's 3 hashes are not\)") as e:
        NB101TableOracle(write_lines(tmp_path / "h.jsonl", lines), cells=source)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("bad, message", [
    ("xyz", "hash 'xyz' is not an official module hash"),
    (None, "hash None is not an official module hash"),
    ("A" * 32, f"hash {'A' * 32!r} is not an official module hash"),
])
def test_a_malformed_hash_is_refused_before_any_lookup(tmp_path, rows, bad, message):
    lines = [hash_only(rows[0]), {**hash_only(rows[1]), "hash": bad}]
    with pytest.raises(BenchmarkError, match=f"h.jsonl:2: {message}"):
        NB101TableOracle(write_lines(tmp_path / "h.jsonl", lines), cells=NoCells())


def test_a_cell_needs_both_matrix_and_ops(tmp_path, rows):
    line = {k: v for k, v in rows[0].items() if k != "ops"}
    with pytest.raises(BenchmarkError, match="t.jsonl:1: a cell needs both matrix and ops"):
        NB101TableOracle(write_lines(tmp_path / "t.jsonl", [line]), cells=NoCells())


def test_a_fidelity_the_table_lacks_is_named(tmp_path, rows, source):
    only_108 = [{k: v for k, v in hash_only(r).items() if k not in ("valid_acc_4", "valid_acc_12", "valid_acc_36")}
                for r in rows[:3]]
    path = write_lines(tmp_path / "t.jsonl", only_108)
    with pytest.raises(BenchmarkError, match=r"t\.jsonl:1: missing valid_acc_36, the fidelity asked for "
                                             r"\(epochs 36\); this table has epochs 108"):
        NB101TableOracle(path, epochs=36, cells=source)
    with pytest.raises(BenchmarkError, match="at 4, 12, 36, 108 epochs, not 50"):
        NB101TableOracle(path, epochs=50, cells=source)
    assert len(NB101TableOracle(path, epochs=108, cells=source)) == 3


def test_the_20k_table_is_the_default(tmp_path, monkeypatch, rows, source):
    import nasflow.spaces.nb101_table as table

    (tmp_path / "nb101").mkdir()
    write_lines(tmp_path / "nb101" / "nb101_1k.jsonl", rows[:3])
    write_lines(tmp_path / "nb101" / "nb101_20k.jsonl", map(hash_only, rows[:7]))
    monkeypatch.setenv("NASFLOW_BENCHMARKS", str(tmp_path))
    monkeypatch.setattr(table, "enumerated_cells", lambda progress=False: source)
    oracle = NB101Space().open_oracle()
    assert oracle.source.endswith("nb101_20k.jsonl") and len(oracle) == 7


def test_the_enumeration_is_a_cell_source(tmp_path, monkeypatch, rows):
    # the default source, the enumeration of all cells, at 5 vertices (seconds) instead of 7 (minutes)
    import nasflow.spaces.nb101_table as table
    from nasflow.spaces.nb101_enumerate import load_cells

    small = load_cells(max_vertices=5, directory=tmp_path / "cells")
    monkeypatch.setattr(table, "enumerated_cells", lambda progress=False: small)
    picked = small.archs(range(0, len(small), 97))
    lines = [{"hash": a.key, "valid_acc_108": 80.0 + i / 100} for i, a in enumerate(picked)]
    oracle = NB101TableOracle(write_lines(tmp_path / "small.jsonl", lines))
    assert oracle.archs() == picked and all(NB101Arch(a.matrix, a.ops).key == a.key for a in picked)
    assert oracle.query(picked[3]).valid == 80.03
    # a 7-vertex cell of the 1k table is no cell of up to 5 vertices
    with pytest.raises(BenchmarkError, match=r"big\.jsonl:2: hash [0-9a-f]{32} is not a NAS-Bench-101 cell"):
        NB101TableOracle(write_lines(tmp_path / "big.jsonl", [lines[0], hash_only(rows[0])]))
