"""The enumeration of NAS-Bench-101 cells, its cache, the fast official hash and the even sampler.

Everything here runs at a small scale (cells of up to 5 vertices: 2,532 cells); the full
space (423,624 cells, about a minute) is measured by benchmarks/nb101_enumerate.py, which
also checks that every hash of nb101_1k.jsonl and nb101_20k.jsonl is among them.
"""
from __future__ import annotations

import itertools
import json
import warnings
from collections import Counter

import numpy as np
import pytest
from nasbench_pytorch.model import graph_util

from nasflow.errors import ArchError, NasflowWarning, SpaceError
from nasflow.spaces import nb101_enumerate
from nasflow.spaces.nb101 import INPUT, MAX_EDGES, OPS, OUTPUT, SIZE, NB101Arch, NB101Space
from nasflow.spaces.nb101_enumerate import Cells, cache_file, enumerate_cells, hash_of, load_cells
from nasflow.spaces.nb101_graphs import cell_counts, shapes, uniform_cell
from nasflow.spaces.nb101_hash import Structure, module_hash
from nasflow.spaces.nb101_records import load_records

from test_nb101_records import evaluations, frame, metrics_bytes, record

SMALL = 5  # vertices: every labelled matrix of this size can be hashed in a test
space = NB101Space()
LABELS = {INPUT: -1, OUTPUT: -2, **{op: i for i, op in enumerate(OPS)}}


def official_hash(arch: NB101Arch) -> str:
    return graph_util.hash_module(np.array(arch.matrix), [LABELS[op] for op in arch.ops])


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> Cells:
    return load_cells(max_vertices=SMALL, directory=tmp_path_factory.mktemp("cells"))


def brute_force_hashes(max_vertices: int) -> set:
    """Every labelled matrix of 2..max_vertices vertices the benchmark's generator would accept, hashed."""
    out = set()
    for n in range(2, max_vertices + 1):
        pairs = [(i, j) for i in range(n) for j in range(i + 1, n)]
        for bits in itertools.product((0, 1), repeat=len(pairs)):
            m = np.zeros((n, n), dtype=np.int64)
            for (i, j), b in zip(pairs, bits):
                m[i, j] = b
            if not graph_util.is_full_dag(m) or m.sum() > MAX_EDGES:
                continue
            for labelling in itertools.product(range(3), repeat=n - 2):
                out.add(module_hash(m, [-1, *labelling, -2]))
    return out


def test_small_enumeration_equals_hashing_every_labelled_matrix(small):
    assert set(small.hashes.astype(str)) == brute_force_hashes(SMALL)
    assert len(small) == len(set(small.hashes)) == 2_532


def test_shape_counts_give_the_benchmarks_423624_cells():
    every, counts = cell_counts(7)
    assert int(counts.sum()) == SIZE == space.size
    assert [len(shapes(n)) for n in range(2, 8)] == [1, 2, 10, 97, 810, 1574]


def test_fast_hash_is_the_official_hash_on_random_and_listed_cells(nb101_jsonl):
    rng = np.random.default_rng(0)
    for arch in [space.sample_official(rng) for _ in range(40)] + [space.sample(rng) for _ in range(40)]:
        labels = [LABELS[op] for op in arch.ops]
        assert module_hash(arch.matrix, labels) == official_hash(arch) == arch.key
    rows = [json.loads(line) for line in open(nb101_jsonl)]
    assert len(rows) == 1_000
    for r in rows:
        arch = NB101Arch(r["matrix"], r["ops"])
        assert arch.key == r["hash"] == hash_of(arch.matrix, [OPS.index(op) for op in arch.ops[1:-1]])
    with pytest.raises(ValueError):
        module_hash([[0, 1], [0, 0]], [-1])


def test_cells_are_sorted_by_hash_and_give_their_archs(small):
    assert np.all(small.hashes[1:] > small.hashes[:-1])
    mats = small.matrices()
    for i in range(0, len(small), 97):
        a = small.arch(i)
        assert a.key == small.hashes[i].decode() == NB101Arch(a.matrix, a.ops).key
        n = a.num_vertices
        assert mats[i, :n, :n].tolist() == [list(r) for r in a.matrix] and not mats[i, n:].any()
        assert not mats[i, :, n:].any()
    labels = small.node_labels()
    for i in range(0, len(small), 89):
        g = space.to_graph(small.arch(i))
        assert [space.vocab[k] for k in labels[i, : g.num_nodes]] == list(g.ops)
        assert (labels[i, g.num_nodes:] == -1).all()
    assert small.node_labels([5, 2]).tolist() == labels[[5, 2]].tolist()
    assert small.matrices([5, 2]).tolist() == mats[[5, 2]].tolist()
    assert small.archs([3, 1]) == [small.arch(3), small.arch(1)]
    every = small.archs()
    assert len(every) == len(set(every)) == len(small) and [a.key for a in every] == small.hashes.astype(str).tolist()
    every.pop()  # a caller's list is its own
    assert len(small.archs()) == len(small)
    assert Counter(small.vertices.tolist()) == {2: 1, 3: 6, 4: 84, 5: 2441}


def test_index_of_finds_hashes_and_refuses_everything_else(small):
    rows = np.array([0, 17, len(small) - 1])
    as_str = small.hashes[rows].astype(str)
    assert small.index_of(as_str).tolist() == rows.tolist()
    assert small.index_of(small.hashes[rows]).tolist() == rows.tolist()
    longer = [as_str[0] + "0", as_str[1][:-1], "", "z" * 32, "é" * 32, "f" * 32]
    assert small.index_of(longer).tolist() == [-1] * 6
    assert small.index_of([]).shape == (0,)
    with pytest.raises(ArchError):
        small.index_of([1, 2])


def test_cache_round_trip_reads_without_enumerating(tmp_path, monkeypatch):
    first = load_cells(max_vertices=4, directory=tmp_path)
    assert cache_file(4, tmp_path).is_file()
    monkeypatch.setattr(nb101_enumerate, "_loaded", {})
    monkeypatch.setattr(nb101_enumerate, "enumerate_cells", lambda *a, **k: pytest.fail("enumerated again"))
    again = load_cells(max_vertices=4, directory=tmp_path)
    assert again is not first and np.array_equal(again.hashes, first.hashes)
    assert np.array_equal(again.adjacency, first.adjacency) and np.array_equal(again.ops, first.ops)


def _garbage(good: Cells) -> dict:
    return {}


def _first_cell_relabelled(good: Cells) -> dict:
    ops = good.ops.copy()
    ops[0, 0] = (ops[0, 0] + 1) % 3  # 4-vertex enumeration: the first cell has inner vertices (checked below)
    return {"hash": good.hashes, "vertices": good.vertices, "adjacency": good.adjacency, "ops": ops}


def _one_cell_short(good: Cells) -> dict:
    return {"hash": good.hashes[:-1], "vertices": good.vertices[:-1], "adjacency": good.adjacency[:-1],
            "ops": good.ops[:-1]}


@pytest.mark.parametrize("damage, why", [(_garbage, "not a readable .npz"),
                                         (_first_cell_relabelled, "does not have its hash"),
                                         (_one_cell_short, "not 91 cells")])
def test_damaged_cache_is_reported_and_computed_again(tmp_path, monkeypatch, damage, why):
    good = load_cells(max_vertices=4, directory=tmp_path)
    assert good.vertices[0] > 2
    path = cache_file(4, tmp_path)
    arrays = damage(good)
    if arrays:
        with open(path, "wb") as f:
            np.savez(f, **arrays)
    else:
        path.write_bytes(b"not an npz at all")
    monkeypatch.setattr(nb101_enumerate, "_loaded", {})
    with pytest.warns(NasflowWarning, match=why):
        again = load_cells(max_vertices=4, directory=tmp_path)
    assert np.array_equal(again.hashes, good.hashes) and np.array_equal(again.ops, good.ops)
    monkeypatch.setattr(nb101_enumerate, "_loaded", {})  # and the file was written again, whole
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.array_equal(load_cells(max_vertices=4, directory=tmp_path).ops, good.ops)


def test_unwritable_cache_directory_still_gives_the_cells(tmp_path, monkeypatch):
    blocker = tmp_path / "a file"
    blocker.write_text("in the way of the cache directory")
    monkeypatch.setattr(nb101_enumerate, "_loaded", {})
    with pytest.warns(NasflowWarning, match="cannot write"):
        cells = load_cells(max_vertices=4, directory=blocker / "cache")
    assert len(cells) == 91


def test_enumeration_refuses_impossible_sizes_and_colliding_hashes(monkeypatch):
    with pytest.raises(SpaceError, match="2..7 vertices"):
        enumerate_cells(8)
    # a hashing that merges two distinct cells cannot give Burnside's count of unique hashes
    real = Structure.hash
    monkeypatch.setattr(Structure, "hash", lambda self, labels: real(self, [min(x, 1) for x in labels]))
    with pytest.raises(SpaceError, match=r"91 cells with \d+ distinct hashes, expected 91"):
        enumerate_cells(4)


def test_even_sampler_is_uniform_over_distinct_cells():
    cells = enumerate_cells(4)  # 91 cells
    rng = np.random.default_rng(1)
    draws = 91 * 200
    keys = Counter(hash_of(s.matrix, codes) for s, codes in (uniform_cell(rng, max_vertices=4) for _ in range(draws)))
    assert set(keys) == set(cells["hash"].astype(str))
    counts = np.array(list(keys.values()))
    # chi-square with 90 degrees of freedom: 99.9% quantile is about 137
    chi2 = float(((counts - 200) ** 2 / 200).sum())
    assert chi2 < 137, chi2


def test_space_sampler_is_seeded_even_and_the_official_one_is_kept():
    first = [space.sample(np.random.default_rng(9)) for _ in range(3)]
    assert first == [space.sample(np.random.default_rng(9)) for _ in range(3)]
    rng = np.random.default_rng(2)
    official = [space.sample_official(rng) for _ in range(400)]
    even = [space.sample(rng) for _ in range(400)]
    bare = lambda archs: sum(a.num_vertices == 2 for a in archs)  # noqa: E731
    # the benchmark's recipe draws the bare input->output cell about 9% of the time; the even one 1 in 423,624
    assert bare(official) >= 16 and bare(even) == 0
    # 7-vertex cells are 83% of the space (cell_counts), far fewer under the official recipe
    assert sum(a.num_vertices == 7 for a in even) > 300 > sum(a.num_vertices == 7 for a in official)


def test_official_tfrecord_agrees_with_the_enumeration(small, tmp_path):
    """Records whose hashes the benchmark's own code computed: the oracle's table lists them in
    the enumeration's order, and the enumeration's hashing gives each its record's hash."""
    rng = np.random.default_rng(4)
    rows = sorted(rng.choice(len(small), size=25, replace=False).tolist(), reverse=True)
    archs = [small.arch(i) for i in rows]
    payloads = []
    for k, arch in enumerate(archs):
        official = NB101Arch.from_record(arch.matrix, arch.ops, official_hash(arch))
        payloads.append(record(official, 108, metrics_bytes(100 + k, evaluations(rng, 108), 1.0)))
    path = tmp_path / "nasbench_only108.tfrecord"
    path.write_bytes(frame(payloads))
    table = load_records(path, cache=False)
    assert table["hash"].tolist() == small.hashes[sorted(rows)].tolist()
    assert small.index_of(table["hash"]).tolist() == sorted(rows)
    for h, n, bits, ops in zip(table["hash"], table["vertices"], table["adjacency"], table["ops"]):
        i = small.index_of([h])[0]
        assert (n, bits) == (small.vertices[i], small.adjacency[i]) and ops.tolist() == small.ops[i].tolist()


def test_space_lists_and_indexes_through_the_enumeration(small, monkeypatch):
    """NB101Space's enumerate / arch_at / index_of read load_cells (here the small enumeration)."""
    monkeypatch.setattr(nb101_enumerate, "load_cells", lambda: small)
    every = space.enumerate()
    assert every == small.archs()
    for i in (0, 1, len(small) // 2, len(small) - 1):
        assert space.arch_at(i) == every[i] and space.index_of(every[i]) == i
    assert space.arch_at(np.int64(3)) == every[3]
