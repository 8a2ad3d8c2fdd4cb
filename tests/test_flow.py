"""The flow surrogate: deterministic, batch-independent, fast, and faithful to its definition."""

import numpy as np
import pytest

from nasflow.flow import flow_surrogate, flow_surrogate_graphs


def _reference_mix(graph, vocab, dim, seed, alpha, std):
    """One cell at a time, straight from the definition (authors' update, input readout)."""
    rng = np.random.default_rng(seed)
    r = rng.uniform(0.0, 1.0, size=dim)
    emb = rng.normal(0.0, std, size=(len(vocab), dim))
    w = rng.normal(0.0, std, size=(2 * dim, dim))
    ops = [vocab.index(o) for o in graph.ops]
    n = len(ops)
    preds = {v: [u for u, x in graph.edges if x == v] for v in range(n)}
    succs = {v: [x for u, x in graph.edges if u == v] for v in range(n)}

    def upd(v, m):
        return alpha * m + (1 - alpha) * np.maximum(np.concatenate([emb[ops[v]], m]) @ w, 0)

    h = {0: r}
    for v in range(1, n):
        h[v] = upd(v, sum(h[u] for u in preds[v])) if preds[v] else np.zeros(dim)
    g = dict(h)
    for v in range(n - 2, -1, -1):
        if succs[v]:
            g[v] = upd(v, sum(g[x] for x in succs[v]))
    return g[0]


def test_vectorised_mix_matches_per_cell_reference(nb201):
    rng = np.random.default_rng(3)
    archs = [nb201.sample(rng) for _ in range(25)]
    got = flow_surrogate(nb201, archs, dim=7, variant="mix", readout="input", seed=5)
    vocab = list(nb201.vocab)
    want = np.stack([_reference_mix(nb201.to_graph(a), vocab, 7, 5, 0.5, 0.1) for a in archs])
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("variant", ["operator", "mix"])
@pytest.mark.parametrize("readout", ["sum", "input"])
def test_deterministic_seeded_and_batch_independent(nb201, variant, readout):
    archs = nb201.enumerate()[:300]
    a = flow_surrogate(nb201, archs, variant=variant, readout=readout, seed=1)
    b = flow_surrogate(nb201, archs, variant=variant, readout=readout, seed=1)
    c = flow_surrogate(nb201, archs, variant=variant, readout=readout, seed=2)
    alone = flow_surrogate(nb201, archs[17:18], variant=variant, readout=readout, seed=1)
    assert a.shape == (300, 64 if readout == "sum" else 32) and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)
    np.testing.assert_allclose(alone[0], a[17], rtol=1e-6)
    # different cells get different surrogates (not a constant map)
    assert len(np.unique(a.round(6), axis=0)) > 200


def test_operator_flow_is_cut_by_none_and_passed_by_skip(nb201):
    none_cell = nb201.make(["none"] * 6)
    skip_cell = nb201.make(["skip_connect"] * 6)
    s_none, s_skip = flow_surrogate(nb201, [none_cell, skip_cell], dim=8, readout="input", seed=0)
    np.testing.assert_array_equal(s_none, np.zeros(8))
    assert np.abs(s_skip).sum() > 0.1
    # a cell whose only path to the output is `none` carries nothing forward to the output
    cut = nb201.make(["nor_conv_3x3", "nor_conv_3x3", "nor_conv_3x3", "none", "none", "none"])
    fwd_sum = flow_surrogate(nb201, [cut, none_cell], dim=8, readout="sum", seed=0)
    assert np.abs(fwd_sum[0, :8]).sum() > 0 and np.abs(fwd_sum[1]).sum() > 0


def test_whole_nb201_space_in_one_batch(nb201):
    # speed (< 1 s for the whole space) is measured by benchmarks/predictor_protocol.py, not here
    archs = nb201.enumerate()
    out = flow_surrogate(nb201, archs)
    assert out.shape == (15_625, 64) and np.isfinite(out).all()
    np.testing.assert_allclose(out[:20], flow_surrogate(nb201, archs[:20]), rtol=1e-5, atol=1e-6)


def test_bad_options_and_empty_batch(nb201):
    with pytest.raises(ValueError):
        flow_surrogate(nb201, nb201.enumerate()[:2], variant="magic")
    with pytest.raises(ValueError):
        flow_surrogate(nb201, nb201.enumerate()[:2], readout="max")
    assert flow_surrogate_graphs([], nb201.vocab, dim=4, readout="input").shape == (0, 4)


def test_both_variant_concatenates_the_two(nb201):
    archs = nb201.enumerate()[:50]
    both = flow_surrogate(nb201, archs, dim=8, variant="both", readout="input", seed=4)
    parts = [flow_surrogate(nb201, archs, dim=8, variant=v, readout="input", seed=4) for v in ("operator", "mix")]
    np.testing.assert_array_equal(both, np.concatenate(parts, axis=1))
