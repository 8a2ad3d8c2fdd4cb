"""Unified encodings across NB-101/NB-201 and Predictor.fit(init_from=...) transfer (issue 8 items 4-5)."""
import numpy as np
import pytest
import torch

from nasflow import Predictor, get_space
from nasflow.errors import NasflowError
from nasflow.metrics import kendall_tau
from nasflow.predictors.encoders import ENCODERS, make_encoder
from nasflow.core import BaseSpace
from nasflow.predictors.unified import SPACE_ROWS, VOCAB, UnifiedGraphCache, make_unified, unified_ids

SMALL = dict(pretrain="none", dim=16, layers=2, epochs=3, seed=0)


@pytest.fixture(scope="session")
def nb101():
    return get_space("nb101")


@pytest.fixture(scope="session")
def nb201_labels(nb201_csv, nb201):
    from nasflow.spaces.nb201 import NB201TableOracle

    archs = nb201.enumerate()
    c10, c100 = NB201TableOracle(nb201_csv, "cifar10"), NB201TableOracle(nb201_csv, "cifar100")
    return archs, np.array([c10.query(a).valid for a in archs]), np.array([c100.query(a).valid for a in archs])


@pytest.fixture(scope="session")
def nb101_labels(nb101_jsonl):
    from nasflow.spaces.nb101_table import NB101TableOracle

    table = NB101TableOracle(nb101_jsonl)
    archs = list(table.archs())
    return archs, np.array([table.query(a).valid for a in archs])


def test_unified_vocabulary_maps_every_op_of_both_spaces(nb101, nb201):
    for space in (nb101, nb201):
        ids = unified_ids(space)
        assert set(space.vocab) <= set(ids)
        assert len(set(ids.values())) == len(space.vocab)  # no two labels of one space collapse
        assert {i // len(VOCAB) for i in ids.values()} == {space.unified_id}
    token = {name: {op: VOCAB[i % len(VOCAB)] for op, i in unified_ids(s).items()} for name, s in (("nb101", nb101), ("nb201", nb201))}  # noqa: E501
    assert token["nb101"]["conv3x3-bn-relu"] == token["nb201"]["nor_conv_3x3"] == "conv3x3"
    assert token["nb101"]["conv1x1-bn-relu"] == token["nb201"]["nor_conv_1x1"] == "conv1x1"
    assert token["nb101"]["maxpool3x3"] != token["nb201"]["avg_pool_3x3"]  # one token per pooling kind
    # the rows saved unified predictors were trained with: NB-101 first, NB-201 second; tokens only appended
    assert (nb101.unified_id, nb201.unified_id) == (0, 1) and SPACE_ROWS >= 2
    assert VOCAB[:8] == ("input", "output", "conv3x3", "conv1x1", "avgpool3x3", "maxpool3x3", "skip", "none")


def test_every_space_with_a_unified_vocabulary_has_its_own_row_and_shares_the_common_tokens():
    from nasflow.spaces import SPACES

    declared = {n: get_space(n) for n in SPACES if get_space(n).unified_id is not None}
    assert {"nb101", "nb201", "nas-bench-macro", "darts"} <= set(declared)
    rows = [s.unified_id for s in declared.values()]
    assert len(set(rows)) == len(rows) and all(0 <= r < SPACE_ROWS for r in rows)
    tokens = {n: {VOCAB[i % len(VOCAB)] for i in unified_ids(s).values()} for n, s in declared.items()}
    assert {"skip", "maxpool3x3", "avgpool3x3"} <= tokens["darts"] and "skip" in tokens["nas-bench-macro"]


def test_a_predictor_saved_with_fewer_tokens_and_rows_loads_with_the_new_ones_at_zero():
    torch.manual_seed(0)
    embed = make_unified(make_encoder("gin", len(VOCAB), 8, 1, 0.0)).embed
    older = {"op.weight": torch.randn(8, 8), "space.weight": torch.randn(2, 8)}  # the first unified vocabulary
    embed.load_state_dict(older)
    torch.testing.assert_close(embed.op.weight[:8], older["op.weight"])
    torch.testing.assert_close(embed.space.weight[:2], older["space.weight"])
    assert not embed.op.weight[8:].any() and not embed.space.weight[2:].any()
    with pytest.raises(RuntimeError):  # another width is no older vocabulary: refused as before
        embed.load_state_dict({"op.weight": torch.randn(8, 4), "space.weight": torch.randn(2, 4)})


def test_unknown_space_has_no_unified_vocabulary():
    class Toy(BaseSpace):
        name, vocab = "toy", ("input", "output")

    with pytest.raises(NasflowError, match="no unified vocabulary"):
        unified_ids(Toy())


@pytest.mark.parametrize("encoder", ENCODERS)
def test_nb101_and_nb201_cells_batch_through_one_unified_encoder(encoder, nb101, nb201, nb101_labels, one_thread):
    rng = np.random.default_rng(0)
    cells = [nb201.sample(rng), nb101_labels[0][0], nb201.sample(rng), nb101_labels[0][1]]
    cache = UnifiedGraphCache(nb201)
    batch = cache.batch(cells)
    assert batch.num_graphs == 4 and int(batch.ops.max()) < len(VOCAB) * SPACE_ROWS
    torch.manual_seed(0)
    model = make_unified(make_encoder(encoder, len(VOCAB), 16, 2, 0.0)).eval()
    with torch.no_grad():
        together = model(batch)
        alone = torch.cat([model(cache.batch([c])) for c in cells])
    assert together.shape == (4, model.out_dim) and torch.isfinite(together).all()
    torch.testing.assert_close(together, alone, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(together[0], together[1])


def test_space_embedding_starts_at_zero_so_shared_tokens_embed_alike():
    embed = make_unified(make_encoder("gin", len(VOCAB), 8, 1, 0.0)).embed
    conv101 = get_space("nb101").unified_id * len(VOCAB) + VOCAB.index("conv3x3")
    conv201 = get_space("nb201").unified_id * len(VOCAB) + VOCAB.index("conv3x3")
    out = embed(torch.tensor([conv101, conv201]))
    torch.testing.assert_close(out[0], out[1])
    assert embed.space.weight.requires_grad  # learned, only its start is shared


def test_init_from_copies_encoder_and_head_within_a_space(nb201_labels):
    archs, c10, c100 = nb201_labels
    source = Predictor("nb201", **SMALL).fit(archs[:40], c10[:40])
    target = Predictor("nb201", **{**SMALL, "epochs": 0, "seed": 5}).fit(archs[40:48], c100[40:48], init_from=source)
    for key, value in source._model.state_dict().items():
        torch.testing.assert_close(target._model.state_dict()[key], value)
    np.testing.assert_allclose(target.predict(archs[100:300]), source.predict(archs[100:300]))
    tuned = Predictor("nb201", **{**SMALL, "seed": 5}).fit(archs[40:48], c100[40:48], init_from=source)
    assert not np.allclose(tuned.predict(archs[100:300]), source.predict(archs[100:300]))


def test_init_from_across_spaces_with_unified_predictors(nb101_labels, nb201_labels):
    archs101, values101 = nb101_labels
    archs201, c10, _ = nb201_labels
    source = Predictor("nb101", unified=True, **SMALL).fit(archs101[:60], values101[:60])
    zero_shot = source.predict(archs201[:200])  # a unified predictor scores the other space's cells too
    target = Predictor("nb201", unified=True, **{**SMALL, "epochs": 0}).fit(archs201[:8], c10[:8], init_from=source)
    np.testing.assert_allclose(target.predict(archs201[:200]), zero_shot)
    assert np.unique(zero_shot).size > 10


def test_init_from_mismatches_raise_one_line(nb101_labels, nb201_labels):
    archs101, values101 = nb101_labels
    archs, c10, c100 = nb201_labels
    x, y = archs[:8], c100[:8]
    fitted = Predictor("nb201", **SMALL).fit(archs[:20], c10[:20])
    unified101 = Predictor("nb101", unified=True, **SMALL).fit(archs101[:20], values101[:20])
    plain101 = Predictor("nb101", **SMALL).fit(archs101[:20], values101[:20])
    cases = [
        (Predictor("nb201", **SMALL), Predictor("nb201", **SMALL), "not fitted|fitted Predictor"),
        (fitted, Predictor("nb201", **{**SMALL, "dim": 32}), "dim"),
        (fitted, Predictor("nb201", **{**SMALL, "layers": 3}), "layers"),
        (fitted, Predictor("nb201", **{**SMALL, "encoder": "gatedgcn"}), "encoder"),
        (fitted, Predictor("nb201", features=["zcp"], zcp_proxies=["params"], **SMALL), "features"),
        (fitted, Predictor("nb201", unified=True, **SMALL), "both be unified"),
        (plain101, Predictor("nb201", **SMALL), "needs unified=True"),
        (unified101, Predictor("nb201", **SMALL), "needs unified=True"),
        (plain101, Predictor("nb201", unified=True, **SMALL), "needs unified=True"),
    ]
    for source, target, match in cases:
        with pytest.raises(NasflowError, match=match) as info:
            target.fit(x, y, init_from=source)
        assert "\n" not in str(info.value)
    with pytest.raises(NasflowError, match="must be nb201 cells"):
        fitted.predict(archs101[:3])  # only unified predictors score other spaces' cells


def test_unified_save_load_and_cache_keys(tmp_path, nb101_labels, nb201_labels):
    archs101, values101 = nb101_labels
    archs201 = nb201_labels[0]
    p = Predictor("nb101", unified=True, **SMALL).fit(archs101[:30], values101[:30])
    p.save(tmp_path / "u.pt")
    q = Predictor.load(tmp_path / "u.pt")
    assert q.unified and q.config() == p.config()
    np.testing.assert_allclose(q.predict(archs201[:50]), p.predict(archs201[:50]))
    plain, unified = (Predictor("nb201", unified=u)._fgp_config("all").cache_path() for u in (False, True))
    assert "unified" not in plain.name and plain != unified


def test_dataset_transfer_beats_a_scratch_fit_on_16_target_labels(nb201_labels):
    """Real labels: a source fitted on 400 cifar10_valid cells, target cifar100_valid with 16 labels."""
    archs, c10, c100 = nb201_labels
    perm = np.random.default_rng(7).permutation(len(archs))
    source_idx, target_idx, test_idx = perm[:400], perm[400:416], perm[416:3416]
    options = dict(pretrain="none", dim=32, layers=2, epochs=40, seed=3)
    source = Predictor("nb201", **options).fit([archs[i] for i in source_idx], c10[source_idx])
    target_cells, test_cells = [archs[i] for i in target_idx], [archs[i] for i in test_idx]
    scratch = Predictor("nb201", **options).fit(target_cells, c100[target_idx])
    # a few labels should only nudge a good source: a small step (benchmarks/transfer.py's "gentle" rows)
    transfer = Predictor("nb201", **{**options, "lr": 1e-4}).fit(target_cells, c100[target_idx], init_from=source)
    tau_scratch = kendall_tau(scratch.predict(test_cells), c100[test_idx])
    tau_transfer = kendall_tau(transfer.predict(test_cells), c100[test_idx])
    assert tau_transfer > tau_scratch + 0.05, (tau_transfer, tau_scratch)
