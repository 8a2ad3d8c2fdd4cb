"""FGP pre-training's configuration: FGPConfig's fields are the cache key, the flow readouts, the proxy target."""
import dataclasses
import warnings

import numpy as np
import pytest
import torch

from nasflow.errors import NasflowError


def _path(space, **options):
    from nasflow import Predictor

    return Predictor(space, **options)._fgp_config("all").cache_path()


# option -> another value; each changes what pre-training computes
PRETRAINING = {"encoder": "gatedgcn", "dim": 32, "layers": 2, "dropout": 0.0, "unified": True, "seed": 2,
               "flow_readout": "sum", "flow_seed": 1, "proxy": "params", "flow_weight": 0.5, "proxy_weight": 1.0,
               "margin": 0.1, "pretrain_epochs": 3, "pretrain_lr": 1e-2, "pretrain_batch": 64}
# options of fine-tuning and of the run, which must share one pre-training
FIT_ONLY = {"pretrain": "none", "epochs": 5, "lr": 1e-2, "weight_decay": 0.0, "batch_size": 16, "finetune_seed": 7,
            "features": ["zcp"], "zcp_proxies": ["params"], "cache": False, "threads": 2, "pretrain_samples": 10}


def test_every_predictor_option_is_either_a_pretraining_field_or_fit_only():
    from nasflow.predictors.fgp import FGPConfig
    from nasflow.predictors.predictor import Predictor

    assert set(PRETRAINING) | set(FIT_ONLY) == set(Predictor(None).get_params())
    fields = {f.name for f in dataclasses.fields(FGPConfig)}
    assert set(PRETRAINING) <= fields and not set(FIT_ONLY) & fields


@pytest.mark.parametrize("option", sorted(PRETRAINING))
def test_a_pretraining_option_changes_the_cache_key(nb201, option):
    default = _path(nb201, seed=1)
    assert _path(nb201, **{"seed": 1, option: PRETRAINING[option]}) != default


@pytest.mark.parametrize("option", sorted(FIT_ONLY))
def test_a_fit_only_option_keeps_the_cache_key(nb201, option):
    assert _path(nb201, **{"seed": 1, option: FIT_ONLY[option]}) == _path(nb201, seed=1)


def test_a_cache_entry_of_the_old_version_is_pre_trained_again_never_read(nb201, tmp_path, monkeypatch):
    from nasflow import Predictor, safe_io
    from nasflow.predictors import checkpoint

    monkeypatch.setenv("NASFLOW_CACHE", str(tmp_path))
    cells = nb201.enumerate()[:48]
    tiny = dict(dim=8, layers=1, pretrain_epochs=2, pretrain_batch=16, proxy="params", seed=3)
    fresh = Predictor(nb201, **tiny).pretrain(cells)
    assert not fresh.pretrain_from_cache and Predictor(nb201, **tiny).pretrain(cells).pretrain_from_cache
    (path,) = (tmp_path / "fgp").glob("*.safetensors")
    document, tensors = safe_io.load(path, checkpoint.CACHE_FORMAT, "cache")
    assert document["version"] == checkpoint.CACHE_VERSION == 2
    # the same weights under the previous version, zeroed: read, they would change every prediction
    safe_io.save(path, {k: torch.zeros_like(v) if "losses" not in k else v for k, v in tensors.items()},
                 {**document, "version": 1})  # fmt: skip
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        again = Predictor(nb201, **tiny).pretrain(cells)
    assert not again.pretrain_from_cache and any("computing it again" in str(w.message) for w in caught)
    for part, weights in fresh._pretrained.items():
        for k, v in weights.items():
            torch.testing.assert_close(again._pretrained[part][k], v)


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

    from nasflow.proxies import PROXIES

    flops = _path(nb201, seed=1, proxy="flops")
    assert flops == _path(nb201, seed=1)  # the default proxy
    monkeypatch.setitem(PROXIES, "flops", replace(PROXIES["flops"], version="2"))
    assert _path(nb201, seed=1, proxy="flops") != flops


def test_a_proxy_vote_is_pre_trained_on_and_keyed_by_its_parts(nb201, monkeypatch):
    from dataclasses import replace

    from nasflow import Predictor
    from nasflow.predictors.fgp import proxy_values
    from nasflow.proxies import PROXIES, proxy_vote

    archs = nb201.enumerate()[:50]
    np.testing.assert_array_equal(proxy_values(nb201, archs, "params+flops", 0.5), proxy_vote(nb201, archs, ["params", "flops"]))
    assert proxy_values(nb201, archs, "params+flops", 0.0) is None  # a target without weight is not computed
    key = _path(nb201, seed=1, proxy="params+flops")
    assert key not in (_path(nb201, seed=1, proxy="params"), _path(nb201, seed=1))
    monkeypatch.setitem(PROXIES, "params", replace(PROXIES["params"], version="2"))
    assert _path(nb201, seed=1, proxy="params+flops") != key
    with pytest.raises(NasflowError, match="unknown zero-cost proxy 'flop'"):
        Predictor(nb201, proxy="params+flop").pretrain()
