"""Predicting at scale, tested small: packed graph batches equal the per-cell path, chunk and cache
boundaries change no score, progress is off unless asked, large spaces pre-train on indexed cells."""
import numpy as np
import pytest

from nasflow.predictors import fgp, graphs, predictor
from nasflow.predictors.graphs import GraphCache, PackedCells

TINY = dict(dim=8, layers=2, epochs=3, pretrain="none")


def per_cell_batch(space, archs, seen_before=()):
    """The batch as built before packing: each key's first cell (``seen_before`` first) gives its arrays
    (DAG edges, then reversed), concatenated in order with node offsets."""
    first = {}
    for a in list(seen_before) + list(archs):
        first.setdefault(a.key, a)
    ids = {op: i for i, op in enumerate(space.vocab)}
    ops, src, dst, index, offset = [], [], [], [], 0
    for k, a in enumerate(archs):
        g = space.to_graph(first[a.key])
        e = np.array(g.edges, dtype=np.int64).reshape(-1, 2)
        ops += [ids[o] for o in g.ops]
        src += list(np.concatenate([e[:, 0], e[:, 1]]) + offset)
        dst += list(np.concatenate([e[:, 1], e[:, 0]]) + offset)
        index += [k] * len(g.ops)
        offset += len(g.ops)
    return ops, src, dst, index


def assert_same_batch(batch, expected):
    ops, src, dst, index = expected
    s, d = batch.graph.edges()
    assert batch.ops.tolist() == ops and batch.graph_index.tolist() == index
    assert s.tolist() == src and d.tolist() == dst
    assert batch.graph.num_nodes() == len(ops) and batch.num_graphs == max(index) + 1


@pytest.fixture(scope="module")
def nb101_cells():
    """NB-101 cells with repeats, including two isomorphic cells given by different matrices."""
    from nasflow.spaces import get_space

    space = get_space("nb101")
    rng = np.random.default_rng(0)
    cells = [space.sample(rng) for _ in range(40)]
    branches = [[0, 1, 1, 0], [0, 0, 0, 1], [0, 0, 0, 1], [0, 0, 0, 0]]
    a = space.make(branches, ["input", "conv3x3-bn-relu", "conv1x1-bn-relu", "output"])
    b = space.make(branches, ["input", "conv1x1-bn-relu", "conv3x3-bn-relu", "output"])
    assert a == b and a.ops != b.ops  # one cell, two labellings
    return space, [a] + cells[:20] + [b] + cells[10:] + [a, b]


def test_packed_batches_equal_the_per_cell_path(nb201, nb101_cells):
    space, cells = nb101_cells
    assert_same_batch(GraphCache(space).batch(cells), per_cell_batch(space, cells))
    # partly cached: the cells seen first keep their arrays, new ones are packed and merged in order
    cache = GraphCache(space)
    cache.batch(cells[5:15])
    assert_same_batch(cache.batch(cells), per_cell_batch(space, cells, seen_before=cells[5:15]))
    some = nb201.enumerate()[::397]
    assert_same_batch(GraphCache(nb201).batch(some), per_cell_batch(nb201, some))


def test_packed_take_and_concat_keep_each_cell(nb201):
    cells = nb201.enumerate()[:30]
    packed = GraphCache(nb201).pack(cells)
    order = [29, 0, 7, 7, 15]
    assert_same_batch(packed.batch(order), per_cell_batch(nb201, [cells[i] for i in order]))
    both = PackedCells.concat([packed.take([1, 2]), packed.take([3])])
    assert_same_batch(both.batch(), per_cell_batch(nb201, cells[1:4]))
    assert len(PackedCells.from_graphs([], {})) == 0


def test_the_graph_cache_is_bounded_and_scores_do_not_depend_on_it(nb201, monkeypatch):
    cells = nb201.enumerate()[:300]
    monkeypatch.setattr(graphs, "CACHE_LIMIT", 50)
    cache = GraphCache(nb201)
    cache.batch(cells[:120])
    assert len(cache) == 50
    assert_same_batch(cache.batch(cells[100:200]), per_cell_batch(nb201, cells[100:200]))
    assert len(cache) == 50


def fitted(space, cells, **options):
    from nasflow import Predictor

    values = np.linspace(0.0, 1.0, len(cells))
    return Predictor(space, seed=1, **{**TINY, **options}).fit(cells, values)


@pytest.mark.parametrize("encoder", ["gin", "gatedgcn"])
def test_predictions_do_not_depend_on_chunk_boundaries(nb201, monkeypatch, encoder):
    cells = nb201.enumerate()[:203]
    p = fitted(nb201, cells[:40], encoder=encoder)
    whole = p.predict(cells)
    monkeypatch.setattr(predictor, "PREDICT_CHUNK", 7)  # 203 = 29 chunks of 7
    assert np.array_equal(p.predict(cells), whole)
    monkeypatch.setattr(predictor, "PREDICT_CHUNK", 50)  # a short last chunk of 3
    assert np.array_equal(p.predict(cells), whole)
    one_by_one = np.array([p.predict([c])[0] for c in cells[::20]])
    np.testing.assert_allclose(one_by_one, whole[::20], rtol=1e-5, atol=1e-6)


def test_nb101_predictions_equal_one_cell_at_a_time(nb101_cells, monkeypatch):
    space, cells = nb101_cells
    p = fitted(space, cells[1:21])
    monkeypatch.setattr(predictor, "PREDICT_CHUNK", 16)
    scores = p.predict(cells)
    alone = np.array([p.predict([c])[0] for c in cells])
    np.testing.assert_allclose(scores, alone, rtol=1e-5, atol=1e-6)
    assert scores[0] == pytest.approx(scores[21], abs=1e-6)  # the isomorphic pair scores alike


def test_progress_is_off_unless_asked(nb201, capfd):
    cells = nb201.enumerate()[:60]
    p = fitted(nb201, cells[:20])
    capfd.readouterr()
    p.predict(cells)
    assert capfd.readouterr().err == ""
    p.predict(cells, progress=True)
    assert "predicting" in capfd.readouterr().err


def test_large_indexed_spaces_pre_train_on_a_seeded_choice_of_indices(nb201, monkeypatch):
    monkeypatch.setattr(fgp, "ENUMERATE_LIMIT", 1_000)  # NB-201's 15,625 cells count as large here
    cells, tag = fgp.default_cells(nb201, seed=4, samples=300)
    again, _ = fgp.default_cells(nb201, seed=4, samples=300)
    other, _ = fgp.default_cells(nb201, seed=5, samples=300)
    assert tag == "indices-300" and len(set(cells)) == 300
    assert cells == again and cells != other
    monkeypatch.setattr(fgp, "ENUMERATE_LIMIT", 50_000)
    assert fgp.default_cells(nb201, seed=4, samples=300)[1] == "all"


def test_pretext_batches_are_the_cells_given(nb201):
    cells = nb201.enumerate()[:40]
    task = fgp.PretextTask(cells, GraphCache(nb201), np.random.default_rng(0).random((40, 4)), None,
                           flow_weight=1.0, proxy_weight=0.0, margin=0.5)  # fmt: skip
    idx = np.array([39, 3, 3, 12])
    assert_same_batch(task.cells.batch(idx), per_cell_batch(nb201, [cells[i] for i in idx]))
