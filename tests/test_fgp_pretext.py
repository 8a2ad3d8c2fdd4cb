"""Keeping FGP's pretext task (flow reconstruction, proxy ranking) during fine-tuning."""
import numpy as np
import pytest
import torch

from nasflow import safe_io
from nasflow.errors import NasflowError
from nasflow.predictors import checkpoint

SMALL = dict(dim=16, layers=2, dropout=0.0, flow_dim=4, pretrain_epochs=60, pretrain_batch=32, pretrain_lr=1e-2, epochs=2,
             batch_size=16)


@pytest.fixture(scope="session")
def pretrained(nb201, tmp_path_factory):
    """A small FGP pre-training on 96 cells, kept in its own cache folder."""
    import os

    from nasflow import Predictor

    cache = tmp_path_factory.mktemp("fgp-pretext-cache")
    old = os.environ.get("NASFLOW_CACHE")
    os.environ["NASFLOW_CACHE"] = str(cache)
    try:
        p = Predictor(nb201, seed=3, **SMALL).pretrain(nb201.enumerate()[:96])
    finally:
        os.environ.pop("NASFLOW_CACHE", None) if old is None else os.environ.__setitem__("NASFLOW_CACHE", old)
    return p, cache


@pytest.fixture(scope="session")
def labeled(nb201, nb201_oracle):
    archs = nb201.enumerate()[1000:1032]
    return archs, np.array([nb201_oracle.query(a).valid for a in archs])


def _spy(monkeypatch):
    from nasflow.predictors import fgp

    calls = []
    loss = fgp.PretextTask.loss

    def spy(self, encoder, heads, graphs, idx):
        out = loss(self, encoder, heads, graphs, idx)
        calls.append((self, np.array(idx), float(out), encoder.training))
        return out

    monkeypatch.setattr(fgp.PretextTask, "loss", spy)
    return calls


def _copy(p, **options):
    """A predictor sharing ``p``'s pre-training (no re-run), with other fine-tuning options."""
    from nasflow import Predictor

    q = Predictor(p.space, seed=p.seed, **{**SMALL, **options})
    q._pretrained, q._pretrain_archs = p._pretrained, p._pretrain_archs
    return q


def test_pretext_is_off_by_default(pretrained, labeled, monkeypatch):
    calls = _spy(monkeypatch)
    _copy(pretrained[0]).fit(*labeled)
    assert calls == []


def test_pretext_runs_every_step_on_pretraining_cells_from_the_pretrained_heads(pretrained, labeled, monkeypatch):
    from nasflow.predictors.fgp import PretrainHeads

    p = pretrained[0]
    calls = _spy(monkeypatch)
    _copy(p, finetune_flow_weight=2.0, finetune_batch=24).fit(*labeled)
    assert len(calls) == 2 * 2  # 2 epochs x 2 batches of 16 labeled cells
    task = calls[0][0]
    assert task.archs == p._pretrain_archs and task.flow_weight == 2.0 and not task.use_proxy
    assert all(idx.size == 24 == np.unique(idx).size and idx.max() < 96 and training for _, idx, _, training in calls)
    assert len({tuple(idx) for _, idx, _, _ in calls}) == 4  # a fresh sample each step
    # the first step's term is the pre-trained encoder and flow head on those cells (no dropout, no update yet)
    encoder = p._new_encoder()
    encoder.load_state_dict(p._pretrained["encoder"])
    heads = PretrainHeads(encoder.out_dim, p.dim, 4)
    heads.flow.load_state_dict(p._pretrained["flow_head"])
    with torch.no_grad():
        expected = float(task.loss(encoder, heads, p.graphs, calls[0][1]))
    assert calls[0][2] == pytest.approx(expected, rel=1e-5)
    # fresh heads would reconstruct far worse than the pre-trained one
    with torch.no_grad():
        fresh = float(task.loss(encoder, PretrainHeads(encoder.out_dim, p.dim, 4), p.graphs, calls[0][1]))
    assert fresh > 1.5 * expected


def test_proxy_term_ranks_by_the_proxy(pretrained, labeled, monkeypatch):
    calls = _spy(monkeypatch)
    _copy(pretrained[0], finetune_proxy_weight=0.5).fit(*labeled)
    task = calls[0][0]
    assert task.use_proxy and task.flow_weight == 0.0 and task.proxy_weight == 0.5
    from nasflow.proxies import zero_cost

    np.testing.assert_allclose(task.proxies.numpy(), zero_cost(pretrained[0].space, task.archs, "flops"), rtol=1e-6)


def test_pretext_changes_the_fit_and_is_seeded(pretrained, labeled):
    test = pretrained[0].space.enumerate()[2000:2100]
    base = _copy(pretrained[0]).fit(*labeled).predict(test)
    kept = [_copy(pretrained[0], finetune_flow_weight=1.0).fit(*labeled).predict(test) for _ in range(2)]
    np.testing.assert_array_equal(kept[0], kept[1])
    assert not np.allclose(kept[0], base)


def test_fine_tuning_options_keep_the_pretraining_cache_key(nb201):
    from nasflow import Predictor

    default = Predictor(nb201, seed=1)._cache_path("all")
    options = dict(finetune_flow_weight=1.0, finetune_proxy_weight=0.5, finetune_batch=64)
    assert Predictor(nb201, seed=1, **options)._cache_path("all") == default


def test_a_cache_without_the_flow_head_is_rerun_only_when_the_pretext_is_kept(pretrained, monkeypatch):
    from nasflow import Predictor

    p, cache = pretrained
    monkeypatch.setenv("NASFLOW_CACHE", str(cache))
    archs = p._pretrain_archs
    (path,) = cache.glob("fgp/*.safetensors")
    document, tensors = safe_io.load(path, checkpoint.CACHE_FORMAT, "cache")
    assert "flow_head" in document["parts"]
    # as written before the flow head was kept
    document["parts"].remove("flow_head")
    safe_io.save(path, {k: v for k, v in tensors.items() if not k.startswith("flow_head/")}, document)
    plain = Predictor(p.space, seed=3, **SMALL).pretrain(archs)
    assert plain.pretrain_from_cache and "flow_head" not in plain._pretrained
    kept = Predictor(p.space, seed=3, finetune_flow_weight=1.0, **SMALL).pretrain(archs)
    assert not kept.pretrain_from_cache and "flow_head" in kept._pretrained
    # pre-training is deterministic: the re-run rewrote the same encoder, now with its flow head
    for k, v in p._pretrained["encoder"].items():
        torch.testing.assert_close(kept._pretrained["encoder"][k], v)
    assert "flow_head" in safe_io.load(path, checkpoint.CACHE_FORMAT, "cache")[0]["parts"]


@pytest.mark.parametrize("bad", [dict(finetune_flow_weight=-1.0), dict(finetune_proxy_weight=-0.1), dict(finetune_batch=1)])
def test_bad_pretext_options_are_refused(nb201, bad):
    from nasflow import Predictor

    with pytest.raises(NasflowError, match="finetune_"):
        Predictor(nb201, **bad)
