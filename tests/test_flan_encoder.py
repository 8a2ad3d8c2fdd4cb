"""FLAN-style encoder: dense per-cell attention (padding, masking, isolation), flow + attention
gradients, and the Predictor round trip on NB-201 and NB-101 cells."""
import numpy as np
import pytest
import torch

from nasflow.metrics import kendall_tau
from nasflow.predictors.flan_encoder import CellAttention, FlanEncoder, dense_layout
from nasflow.predictors.graphs import GraphCache

DIM, LAYERS = 16, 2
SMALL = dict(dim=DIM, layers=LAYERS, pretrain_epochs=3, pretrain_batch=128, epochs=40, proxy="params")


@pytest.fixture(scope="module")
def nb101():
    from nasflow.spaces import get_space

    return get_space("nb101")


@pytest.fixture(scope="module")
def nb101_cells(nb101):
    """Seeded NB-101 samples of several sizes (pruned cells have fewer nodes)."""
    cache = GraphCache(nb101)
    rng = np.random.default_rng(0)
    by_size = {}
    for _ in range(400):
        a = nb101.sample(rng)
        by_size.setdefault(nb101.to_graph(a).num_nodes, a)
    assert len(by_size) >= 3, sorted(by_size)
    return cache, by_size


def encoder_for(cache, seed=0, **kw):
    torch.manual_seed(seed)
    return FlanEncoder(len(cache.vocab), DIM, LAYERS, **kw).eval()


def encode(enc, cache, archs):
    with torch.no_grad():
        return enc(cache.batch(archs))


def test_shapes_and_layout_of_an_nb201_batch(nb201):
    cache = GraphCache(nb201)
    archs = nb201.enumerate()[:5]
    batch = cache.batch(archs)
    out = encoder_for(cache)(batch)
    assert out.shape == (5, DIM * LAYERS) and torch.isfinite(out).all()
    layout = dense_layout(batch)
    assert layout.max_nodes == 8 and layout.valid.all()
    assert dense_layout(batch) is layout  # kept on the batch, not recomputed
    g = nb201.to_graph(archs[3])
    rel = layout.relation[3]
    for i in range(8):
        for j in range(8):
            expected = 3 if i == j else 1 if (j, i) in g.edges else 2 if (i, j) in g.edges else 0
            assert rel[i, j] == expected, (i, j)


def test_permuting_cells_in_a_batch_does_not_change_any_cell(nb201):
    cache = GraphCache(nb201)
    archs = nb201.enumerate()[100:112]
    enc = encoder_for(cache)
    out = encode(enc, cache, archs)
    order = np.random.default_rng(1).permutation(len(archs))
    shuffled = encode(enc, cache, [archs[i] for i in order])
    torch.testing.assert_close(shuffled, out[order], rtol=1e-5, atol=1e-6)


def test_padding_is_masked_in_a_mixed_size_nb101_batch(nb101_cells):
    cache, by_size = nb101_cells
    small, large = by_size[min(by_size)], by_size[max(by_size)]
    batch = cache.batch([large, small, large])
    layout = dense_layout(batch)
    assert layout.max_nodes == max(by_size) and not layout.valid[1].all()
    enc = encoder_for(cache)
    alone = encode(enc, cache, [small])
    mixed = encode(enc, cache, [large, small, large])
    torch.testing.assert_close(mixed[1], alone[0], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(mixed[0], mixed[2], rtol=1e-5, atol=1e-6)


def test_attention_reaches_every_node_of_its_cell_and_no_node_of_another(nb201):
    cache = GraphCache(nb201)
    batch = cache.batch(nb201.enumerate()[:3])
    layout = dense_layout(batch)
    torch.manual_seed(0)
    att = CellAttention(DIM).eval()
    n = batch.graph_index.numel()
    h, op_emb = torch.randn(n, DIM), torch.randn(n, DIM)
    with torch.no_grad():
        out = att(layout, h, op_emb)
        first, second = (batch.graph_index == 0).nonzero().squeeze(1), (batch.graph_index == 1).nonzero().squeeze(1)
        h_other = h.clone()
        h_other[second] += torch.randn(len(second), DIM)  # another cell changes entirely
        torch.testing.assert_close(att(layout, h_other, op_emb)[first], out[first], rtol=0, atol=0)
        h_same = h.clone()
        h_same[first[0]] += 1.0  # the input node of cell 0: unlike a 1-hop layer, all its nodes see it
        changed = (att(layout, h_same, op_emb)[first[1:]] - out[first[1:]]).abs().amax(dim=1)
        assert (changed > 1e-5).all(), changed


def test_changing_another_cell_leaves_this_cells_embedding(nb201):
    cache = GraphCache(nb201)
    archs = nb201.enumerate()
    enc = encoder_for(cache)
    base = encode(enc, cache, [archs[7], archs[8]])
    other = encode(enc, cache, [archs[7], archs[9000]])
    torch.testing.assert_close(other[0], base[0], rtol=0, atol=0)
    assert (other[1] - base[1]).abs().max() > 1e-4


def test_gradients_reach_flow_and_attention_branches(nb201):
    cache = GraphCache(nb201)
    enc = encoder_for(cache).train()
    enc(cache.batch(nb201.enumerate()[:16])).pow(2).sum().backward()
    for i, layer in enumerate(enc.layers):
        for part in ("flow", "attention"):
            grads = [p.grad for p in getattr(layer, part).parameters()]
            assert all(g is not None for g in grads), (i, part)
            assert sum(g.abs().sum() for g in grads) > 0, (i, part)
        assert layer.attention.relation_bias.grad.abs().sum() > 0
        assert layer.attention.op_gate.weight.grad.abs().sum() > 0
    assert enc.embed.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("pretrain", ["none", "fgp"])
def test_predictor_fit_predict_save_load(nb201, nb201_oracle, pretrain, tmp_path, monkeypatch):
    from nasflow import Predictor

    monkeypatch.setenv("NASFLOW_CACHE", str(tmp_path / "cache"))
    archs = nb201.enumerate()
    order = np.random.default_rng(5).permutation(len(archs))
    pick = lambda idx: ([archs[i] for i in idx], np.array([nb201_oracle.query(archs[i]).valid for i in idx]))  # noqa: E731
    (train, y), (test, yt) = pick(order[:100]), pick(order[100:1100])
    p = Predictor(nb201, encoder="flan", pretrain=pretrain, seed=0, **SMALL)
    if pretrain == "fgp":
        p.pretrain([archs[i] for i in order[:600]])
        assert p.pretrain_losses[-1] < p.pretrain_losses[0]
    p.fit(train, y)
    scores = p.predict(test)
    assert kendall_tau(scores, yt) > 0.4
    p.save(tmp_path / "flan.pt")
    loaded = Predictor.load(tmp_path / "flan.pt")
    assert loaded.encoder == "flan" and loaded.config() == p.config()
    np.testing.assert_array_equal(loaded.predict(test), scores)


def test_predictor_on_nb101_cells(nb101_jsonl, tmp_path, monkeypatch):
    from nasflow import Predictor, get_space

    monkeypatch.setenv("NASFLOW_CACHE", str(tmp_path))
    sp = get_space("nb101")
    oracle = sp.open_oracle(str(nb101_jsonl))
    archs = sorted(oracle.archs(), key=lambda a: a.key)
    values = np.array([oracle.query(a).valid for a in archs])
    p = Predictor(sp, encoder="flan", pretrain="fgp", seed=0, **{**SMALL, "proxy": None})
    p.pretrain([sp.sample(np.random.default_rng(0)) for _ in range(200)])
    p.fit(archs[:200], values[:200], archs[200:240], values[200:240])
    assert kendall_tau(p.predict(archs[240:]), values[240:]) > 0.25
