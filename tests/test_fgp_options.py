"""FGP pre-training options added to close the ranking gap: the authors' reconstruction loss
(raw surrogate, squared error summed over its columns) and fine-tuning gradient clipping."""
import numpy as np
import pytest
import torch

from nasflow.errors import NasflowError


@pytest.fixture(scope="session")
def cells(nb201):
    archs = nb201.enumerate()[:64]
    from nasflow.flow import flow_surrogate

    return archs, flow_surrogate(nb201, archs, dim=4, variant="mix", readout="input")


def _first_loss(nb201, archs, flows, **options):
    """Loss of the untrained encoder on one full batch (one epoch = one step, logged before it)."""
    from nasflow.predictors.encoders import make_encoder
    from nasflow.predictors.fgp import fgp_pretrain
    from nasflow.predictors.graphs import GraphCache

    graphs = GraphCache(nb201)
    torch.manual_seed(0)
    encoder = make_encoder("gin", len(graphs.vocab), 8, 2, 0.0)
    losses, _ = fgp_pretrain(
        encoder, graphs, archs, flows, None, epochs=1, lr=1e-3, batch_size=len(archs), flow_weight=1.0,
        proxy_weight=0.0, margin=0.5, hidden=8, rng=np.random.default_rng(0), **options,
    )  # fmt: skip
    return losses[0]


def test_sum_loss_is_the_mean_times_the_surrogate_width(nb201, cells):
    archs, flows = cells
    mean = _first_loss(nb201, archs, flows, flow_loss="mean")
    total = _first_loss(nb201, archs, flows, flow_loss="sum")
    assert total == pytest.approx(flows.shape[1] * mean, rel=1e-5)


def test_raw_target_keeps_the_surrogate_scale(nb201, cells):
    archs, flows = cells
    flows = flows.astype(np.float64)  # float32 + 10 would round away the surrogate's small spread
    shifted = flows + 10.0
    # standardising removes a constant shift; the raw target does not
    assert _first_loss(nb201, archs, shifted) == pytest.approx(_first_loss(nb201, archs, flows), rel=1e-5)
    raw, raw_shifted = (_first_loss(nb201, archs, f, flow_target="raw") for f in (flows, shifted))
    assert raw_shifted > 50 * raw


def test_bad_flow_options_are_refused(nb201, cells):
    from nasflow import Predictor

    with pytest.raises(NasflowError, match="flow_target"):
        Predictor(nb201, flow_target="normalised")
    with pytest.raises(NasflowError, match="flow_loss"):
        Predictor(nb201, flow_loss="max")
    with pytest.raises(ValueError, match="flow_target"):
        _first_loss(nb201, *cells, flow_target="unit")


def test_new_options_keep_old_cache_keys_and_clipping_is_fit_only(nb201):
    from nasflow import Predictor

    default = Predictor(nb201, seed=1)._cache_path("all")
    assert Predictor(nb201, seed=1, flow_target="standardised", flow_loss="mean")._cache_path("all") == default
    assert Predictor(nb201, seed=1, clip_grad=1.0)._cache_path("all") == default
    assert Predictor(nb201, seed=1, flow_target="raw")._cache_path("all") != default
    assert Predictor(nb201, seed=1, flow_loss="sum")._cache_path("all") != default


def test_clip_grad_bounds_every_fine_tuning_step(nb201, nb201_oracle, monkeypatch):
    from nasflow import Predictor

    archs = nb201.enumerate()[:40]
    values = [nb201_oracle.query(a).valid for a in archs]
    norms = []
    clip = torch.nn.utils.clip_grad_norm_

    def spy(params, max_norm, *a, **k):
        params = list(params)
        out = clip(params, max_norm, *a, **k)
        norms.append((float(out), float(torch.norm(torch.stack([p.grad.norm() for p in params if p.grad is not None]))), max_norm))
        return out

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", spy)
    options = dict(pretrain="none", dim=8, layers=2, epochs=3, batch_size=16)
    Predictor(nb201, seed=0, **options).fit(archs, values)
    assert norms == []  # default: no clipping
    Predictor(nb201, seed=0, clip_grad=0.05, **options).fit(archs, values)
    assert len(norms) == 3 * 3  # every step of 3 epochs x 3 batches
    assert all(after <= 0.05 + 1e-6 and limit == 0.05 for _, after, limit in norms)
    assert any(before > 0.05 for before, _, _ in norms)  # the limit really bit


def test_ends_readout_is_output_forward_and_input_backward(nb201):
    from nasflow.flow import flow_surrogate, flow_surrogate_graphs
    from nasflow.spaces import get_space

    archs = nb201.enumerate()[:20]
    ends = flow_surrogate(nb201, archs, readout="ends")
    assert ends.shape == (20, 64)
    np.testing.assert_allclose(ends[:, 32:], flow_surrogate(nb201, archs, readout="input"))
    cut = [a for a in nb201.enumerate() if set(a.ops) == {"none"}]
    assert not flow_surrogate(nb201, cut, readout="ends")[:, :32].any()  # nothing reaches the output
    # padded batches (NB-101 cells of different sizes) read each cell's own output node
    nb101 = get_space("nb101")
    graphs = [nb101.to_graph(nb101.sample(np.random.default_rng(k))) for k in range(12)]
    assert len({g.num_nodes for g in graphs}) > 1
    batch = flow_surrogate_graphs(graphs, nb101.vocab, readout="ends")
    one_by_one = np.concatenate([flow_surrogate_graphs([g], nb101.vocab, readout="ends") for g in graphs])
    np.testing.assert_allclose(batch, one_by_one, rtol=1e-5, atol=1e-6)


def test_pretraining_cache_key_follows_the_proxy_version(nb201, monkeypatch):
    from dataclasses import replace

    from nasflow import Predictor
    from nasflow.proxies import PROXIES

    flops = Predictor(nb201, seed=1, proxy="flops")._cache_path("all")
    assert flops == Predictor(nb201, seed=1)._cache_path("all")  # version "1": the key older caches were written with
    monkeypatch.setitem(PROXIES, "flops", replace(PROXIES["flops"], version="2"))
    assert Predictor(nb201, seed=1, proxy="flops")._cache_path("all") != flops


def test_a_proxy_vote_is_pre_trained_on_and_keyed_by_its_parts(nb201, monkeypatch):
    from dataclasses import replace

    from nasflow import Predictor
    from nasflow.proxies import PROXIES, proxy_vote

    vote = Predictor(nb201, seed=1, proxy="params+flops")
    archs = nb201.enumerate()[:50]
    np.testing.assert_array_equal(vote._proxy_values(archs, False), proxy_vote(nb201, archs, ["params", "flops"]))
    key = vote._cache_path("all")
    assert key not in (Predictor(nb201, seed=1, proxy="params")._cache_path("all"), Predictor(nb201, seed=1)._cache_path("all"))
    monkeypatch.setitem(PROXIES, "params", replace(PROXIES["params"], version="2"))
    assert Predictor(nb201, seed=1, proxy="params+flops")._cache_path("all") != key
    with pytest.raises(NasflowError, match="unknown zero-cost proxy 'flop'"):
        Predictor(nb201, proxy="params+flop")
