"""Predictor: FGP pre-training, fine-tuning, ranking on real NB-201 labels, persistence, bad input."""
import dataclasses
import os

import numpy as np
import pytest
import safetensors.torch
import torch

from clirun import run_cli as _cli
from nasflow.errors import CheckpointError, DataError, NasflowError
from nasflow.metrics import kendall_tau
from nasflow.predictors import checkpoint

SMALL = dict(dim=16, layers=2, pretrain_epochs=6, pretrain_batch=128, epochs=60, proxy="params")


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("nasflow_cache")
    old = os.environ.get("NASFLOW_CACHE")
    os.environ["NASFLOW_CACHE"] = str(d)
    yield d
    if old is None:
        os.environ.pop("NASFLOW_CACHE", None)
    else:
        os.environ["NASFLOW_CACHE"] = old


@pytest.fixture(scope="session")
def labeled(nb201, nb201_oracle):
    archs = nb201.enumerate()
    values = np.array([nb201_oracle.query(a).valid for a in archs])
    rng = np.random.default_rng(7)
    order = rng.permutation(len(archs))
    pick = lambda idx: ([archs[i] for i in idx], values[idx])  # noqa: E731
    return {"train": pick(order[:100]), "val": pick(order[100:140]), "test": pick(order[140:2140]), "pool": pick(order[:1500])}


@pytest.fixture(scope="session")
def pretrained(nb201, labeled, cache_dir):
    from nasflow import Predictor

    p = Predictor(nb201, encoder="gin", pretrain="fgp", seed=3, **SMALL)
    p.pretrain(labeled["pool"][0])
    return p


def test_fgp_pretraining_lowers_its_loss_and_is_cached(pretrained, nb201, labeled, cache_dir):
    from nasflow import Predictor

    losses = pretrained.pretrain_losses
    assert len(losses) == SMALL["pretrain_epochs"] and not pretrained.pretrain_from_cache
    assert losses[-1] < 0.8 * losses[0], losses
    assert list((cache_dir / "fgp").glob("nb201-gin-*.safetensors"))
    again = Predictor(nb201, encoder="gin", pretrain="fgp", seed=3, **SMALL)
    again.pretrain(labeled["pool"][0])
    assert again.pretrain_from_cache
    for part in ("encoder", "proxy_head"):
        for k, v in pretrained._pretrained[part].items():
            assert torch.equal(v, again._pretrained[part][k])
    # another seed is another pre-training, not a cache hit
    other = Predictor(nb201, encoder="gin", pretrain="fgp", seed=4, **{**SMALL, "pretrain_epochs": 1})
    other.pretrain(labeled["pool"][0][:200])
    assert not other.pretrain_from_cache


@pytest.mark.parametrize("encoder", ["gin", "gatedgcn"])
def test_ranks_real_nb201_cells(nb201, labeled, encoder):
    """100 labeled cells are enough to rank 2,000 unseen cells well; a broken model scores ~0."""
    from nasflow import Predictor

    p = Predictor(nb201, encoder=encoder, pretrain="none", seed=0, **SMALL)
    p.fit(*labeled["train"], *labeled["val"])
    test_archs, test_values = labeled["test"]
    tau = kendall_tau(p.predict(test_archs), test_values)
    assert tau > 0.45, tau
    # the kept state is the one with the best validation tau
    assert kendall_tau(p.predict(labeled["val"][0]), labeled["val"][1]) == pytest.approx(max(p.fit_history))


def test_fgp_fit_is_deterministic_and_restarts_from_pretrained(pretrained, labeled):
    (a, ya), (b, yb), test = labeled["train"], labeled["val"], labeled["test"][0][:300]
    pretrained.fit(a, ya)
    first = pretrained.predict(test)
    pretrained.fit(b, yb)
    pretrained.fit(a, ya)  # a refit must not remember the fit on b
    np.testing.assert_array_equal(first, pretrained.predict(test))
    assert kendall_tau(first, labeled["test"][1][:300]) > 0.3


def test_seed_changes_the_model(nb201, labeled):
    from nasflow import Predictor

    test = labeled["test"][0][:200]
    preds = [Predictor(nb201, pretrain="none", seed=s, **SMALL).fit(*labeled["train"]).predict(test) for s in (0, 0, 1)]
    np.testing.assert_array_equal(preds[0], preds[1])
    assert not np.allclose(preds[0], preds[2])


def test_predict_scores_the_whole_space(pretrained, nb201, labeled):
    # speed is measured by benchmarks/predictor_protocol.py (docs/RESULTS.md), not here
    pretrained.fit(*labeled["train"])
    archs = nb201.enumerate()
    scores = pretrained.predict(archs)
    assert scores.shape == (15_625,) and np.isfinite(scores).all()
    np.testing.assert_allclose(scores[:50], pretrained.predict(archs[:50]), rtol=1e-5, atol=1e-6)


def test_save_load_roundtrip_and_bad_checkpoints(pretrained, nb201, labeled, tmp_path):
    from nasflow import Predictor

    pretrained.fit(*labeled["train"])
    path = tmp_path / "model.pt"
    pretrained.save(path)
    loaded = Predictor.load(path)
    test = labeled["test"][0][:200]
    np.testing.assert_array_equal(loaded.predict(test), pretrained.predict(test))
    assert loaded.config() == pretrained.config() and Predictor.load(path, nb201).is_fitted
    with pytest.raises(CheckpointError, match="nb201"):
        Predictor.load(path, "nb101")
    state = checkpoint.read(path, Predictor.__init__)
    checkpoint.write(tmp_path / "foreign.pt", dataclasses.replace(state, space="nb101"))
    with pytest.raises(CheckpointError, match="nb101"):
        Predictor.load(tmp_path / "foreign.pt", nb201)
    (tmp_path / "truncated.pt").write_bytes(path.read_bytes()[:500])
    (tmp_path / "text.pt").write_text("hello")
    safetensors.torch.save_file({"weights": torch.zeros(3)}, tmp_path / "other.pt")
    checkpoint.write(tmp_path / "mangled.pt", dataclasses.replace(state, model={"nonsense": torch.zeros(1)}))
    checkpoint.write(tmp_path / "shapes.pt", dataclasses.replace(state, model={k: v[:1] for k, v in state.model.items()}))
    (tmp_path / "directory.pt").mkdir()
    for name in ("truncated.pt", "text.pt", "other.pt", "mangled.pt", "shapes.pt", "missing.pt", "directory.pt"):
        with pytest.raises(CheckpointError) as info:
            Predictor.load(tmp_path / name)
        assert "\n" not in str(info.value)
    # the format before safetensors (a torch.save dict) is refused with the way to convert it
    torch.save({"format": "nasflow-predictor", "version": 1}, tmp_path / "old.pt")
    with pytest.raises(CheckpointError, match="convert-checkpoint"):
        Predictor.load(tmp_path / "old.pt")


def test_bad_inputs(nb201, labeled, tmp_path):
    from nasflow import Predictor

    p = Predictor(nb201, pretrain="none", **SMALL)
    archs, values = labeled["train"]
    with pytest.raises(NasflowError, match="not fitted"):
        p.predict(archs)
    bad = [
        (archs[:1], values[:1]),
        (archs, values[:-1]),
        (archs, np.where(np.arange(100) == 5, np.nan, values)),
        (archs[:3], [1.0, 1.0, 1.0]),
        (archs + ["|nor_conv_3x3~0|+|none~0|none~1|+|none~0|none~1|none~2|"], list(values) + [1.0]),
    ]
    for a, v in bad:
        with pytest.raises(DataError):
            p.fit(a, v)
    with pytest.raises(DataError):
        p.fit(archs, values, val_archs=archs[:5])
    # options are checked where they are used: at pre-training, fitting, prediction and saving
    for bad in (dict(encoder="transformer"), dict(pretrain="sometimes")):
        predictor = Predictor(nb201, **bad)
        assert predictor.get_params()[next(iter(bad))] == bad[next(iter(bad))]  # __init__ only stores
        for use in (predictor.pretrain, lambda: predictor.fit(archs, values), lambda: predictor.save(tmp_path / "p.safetensors")):
            with pytest.raises(NasflowError, match="unknown"):
                use()
    assert list(tmp_path.iterdir()) == []


def test_cli_train_predictor_saves_a_working_model(nb201_csv, tmp_path, nb201):
    from nasflow import Predictor

    out = tmp_path / "model.pt"
    r = _cli("train-predictor", "--benchmark", str(nb201_csv), "--encoder", "gin", "--pretrain", "none",
             "--pool", "1000", "--train-ratio", "0.1", "--epochs", "40", "--proxy", "params+flops", "--out", str(out),
             cache=tmp_path)  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "100 training cells" in r.stdout and "test on 14,585 cells" in r.stdout
    tau = float(r.stdout.split("Kendall tau ")[-1].split()[0])
    assert tau > 0.4
    loaded = Predictor.load(out, nb201)
    assert loaded.is_fitted and loaded.config()["proxy"] == "params+flops"


def test_cli_train_predictor_init_from_transfers_across_datasets_and_spaces(nb201_csv, nb101_jsonl, tmp_path):
    from nasflow import Predictor

    small = ("--pretrain", "none", "--train-ratio", "0.05", "--epochs", "20")
    c10 = tmp_path / "c10.pt"
    r = _cli("train-predictor", "--benchmark", str(nb201_csv), *small, "--pool", "1000", "--out", str(c10), cache=tmp_path)
    assert r.returncode == 0, r.stderr
    c100 = tmp_path / "c100.pt"
    r = _cli("train-predictor", "--benchmark", str(nb201_csv), "--dataset", "cifar100", "--pool", "1000",
             "--train-ratio", "0.01", "--init-from", str(c10), "--out", str(c100), cache=tmp_path)  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert f"gin (from {c10} (nb201)), 10 training cells" in r.stdout
    # the cifar10 source carries over: measured 0.619, vs 0.573 for the same 10 cifar100 labels from scratch
    assert float(r.stdout.split("Kendall tau ")[-1].split()[0]) > 0.6
    assert Predictor.load(c100).config()["epochs"] == 50

    nb101 = tmp_path / "nb101.pt"
    r = _cli("train-predictor", "--space", "nb101", "--benchmark", str(nb101_jsonl), *small, "--pool", "500",
             "--encoder", "gatedgcn", "--unified", "--out", str(nb101), cache=tmp_path)  # fmt: skip
    assert r.returncode == 0, r.stderr
    target = tmp_path / "nb201.pt"
    r = _cli("train-predictor", "--benchmark", str(nb201_csv), "--pool", "1000", "--train-ratio", "0.01",
             "--init-from", str(nb101), "--out", str(target), cache=tmp_path)  # fmt: skip
    assert r.returncode == 0, r.stderr
    loaded = Predictor.load(target)
    assert loaded.unified and loaded.encoder == "gatedgcn" and loaded.space.name == "nb201"

    # a non-unified source cannot cross spaces; a missing file is one line too
    r = _cli("train-predictor", "--space", "nb101", "--benchmark", str(nb101_jsonl), "--pool", "500",
             "--train-ratio", "0.05", "--init-from", str(c10), "--out", str(tmp_path / "x.pt"), cache=tmp_path)  # fmt: skip
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "unified" in r.stderr, r.stderr
    r = _cli("train-predictor", "--benchmark", str(nb201_csv), "--init-from", str(tmp_path / "missing.pt"),
             "--out", str(tmp_path / "y.pt"), cache=tmp_path)  # fmt: skip
    assert r.returncode == 2 and "not found" in r.stderr, r.stderr


def test_cli_evaluate_predictor_prints_the_table(nb201_csv, tmp_path):
    r = _cli("evaluate-predictor", "--benchmark", str(nb201_csv), "--encoder", "gin", "--pretrain", "none",
             "--ratios", "0.05", "--seeds", "21", "--perms", "21", "--pool", "1000", "--epochs", "20", cache=tmp_path)  # fmt: skip
    assert r.returncode == 0, r.stderr
    row = [line for line in r.stdout.splitlines() if line.startswith("| 0.05 |")]
    assert len(row) == 1 and "| 50 | gin | none [epochs=20] | 1 |" in row[0]


@pytest.mark.parametrize(
    "args",
    [
        ["train-predictor", "--train-ratio", "0", "--out", "x.pt"],
        ["train-predictor", "--train-ratio", "1.5", "--out", "x.pt"],
        ["train-predictor", "--train-ratio", "0.0001", "--out", "x.pt"],
        ["train-predictor", "--encoder", "mlp", "--out", "x.pt"],
        ["train-predictor", "--proxy", "synflow+naswt", "--out", "x.pt"],
        ["train-predictor", "--pool", "15620", "--out", "x.pt"],
        ["evaluate-predictor", "--ratios", "0.01,2"],
        ["evaluate-predictor", "--seeds", "a,b"],
        ["evaluate-predictor", "--epochs", "0"],
    ],
)
def test_cli_bad_input_is_one_line_and_exit_2(args, nb201_csv, tmp_path):
    r = _cli(*args, "--benchmark", str(nb201_csv), cache=tmp_path)
    assert r.returncode == 2, r.stdout
    assert len(r.stderr.strip().splitlines()) == 1 and r.stderr.startswith("nasflow: error:"), r.stderr


def test_nb101_cells_pretrain_fit_and_rank(nb101_jsonl, cache_dir):
    from nasflow import Predictor, get_space

    sp = get_space("nb101")
    oracle = sp.open_oracle(str(nb101_jsonl))
    archs = sorted(oracle.archs(), key=lambda a: a.key)
    values = np.array([oracle.query(a).valid for a in archs])
    rng = np.random.default_rng(0)
    p = Predictor(sp, encoder="gatedgcn", pretrain="fgp", **{**SMALL, "proxy": None})
    p.pretrain([sp.sample(rng) for _ in range(300)])
    p.fit(archs[:200], values[:200], archs[200:240], values[200:240])
    assert kendall_tau(p.predict(archs[240:]), values[240:]) > 0.3


def test_field_split_is_the_reference_protocol():
    from nasflow.predictors.protocol import field_split

    train, val, test = field_split(15_625, 21, 0.01, 7_813)
    np.testing.assert_array_equal(train, np.arange(78))  # seed 21 keeps the official order
    np.testing.assert_array_equal(val, np.arange(7_813, 7_853))
    assert len(test) == 15_625 - 7_853
    train, val, test = field_split(15_625, 2021, 0.1, 7_813)
    perm = np.random.RandomState(2021).permutation(15_625)
    np.testing.assert_array_equal(np.concatenate([train, val, test]), np.concatenate([perm[:781], perm[7_813:]]))
    for ratio in (0.0, 1.5, 0.0001):
        with pytest.raises(DataError):
            field_split(15_625, 21, ratio, 7_813)


def test_cli_offers_every_encoder():
    from nasflow.cli.predictor import ENCODER_CHOICES
    from nasflow.predictors.encoders import ENCODERS

    assert tuple(ENCODER_CHOICES.choices) == tuple(ENCODERS)


def test_a_fresh_home_keeps_predictor_errors_to_one_line(nb201_csv, tmp_path):
    # without ~/.dgl/config.json, `import dgl` prints a backend notice to stderr unless told the backend
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "DGLBACKEND"}
    env["HOME"] = str(tmp_path)
    r = subprocess.run([sys.executable, "-m", "nasflow.cli.main", "train-predictor", "--benchmark", str(nb201_csv),
                        "--init-from", str(tmp_path / "missing.pt"), "--out", str(tmp_path / "x.pt")],
                       capture_output=True, text=True, env=env)  # fmt: skip
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [f"nasflow: error: predictor checkpoint not found: {tmp_path / 'missing.pt'}"]


@pytest.mark.parametrize("zipped", [True, False])
def test_convert_checkpoint_from_the_torch_format(nb201, tmp_path, monkeypatch, zipped):
    """A version-1 checkpoint (the torch.save dict earlier nasflow wrote) converts to one that predicts the same."""
    from nasflow import Predictor

    monkeypatch.setenv("NASFLOW_CACHE", str(tmp_path / "cache"))
    cells = nb201.enumerate()[:40]
    p = Predictor(nb201, dim=8, layers=1, pretrain_epochs=1, epochs=2, proxy="params").pretrain(cells)
    p.fit(cells, np.arange(40.0))
    old = {"format": "nasflow-predictor", "version": 1, "space": "nb201", "vocab": list(p.graphs.vocab),
           "config": p.config(), "pretrained": p._pretrained, "model": p._model.state_dict()}  # fmt: skip
    torch.save(old, tmp_path / "old.pt", _use_new_zipfile_serialization=zipped)
    r = _cli("convert-checkpoint", str(tmp_path / "old.pt"), str(tmp_path / "new.safetensors"), cache=tmp_path)
    assert r.returncode == 0 and "converted" in r.stdout, r.stderr
    loaded = Predictor.load(tmp_path / "new.safetensors", nb201)
    np.testing.assert_array_equal(loaded.predict(cells), p.predict(cells))
    assert loaded.config() == p.config() and set(loaded._pretrained) == {"encoder", "proxy_head", "flow_head"}
    # an existing NEW is not overwritten; an old file that is not a nasflow checkpoint is one line
    r = _cli("convert-checkpoint", str(tmp_path / "old.pt"), str(tmp_path / "new.safetensors"), cache=tmp_path)
    assert r.returncode == 2 and "already exists" in r.stderr
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pt", _use_new_zipfile_serialization=zipped)
    r = _cli("convert-checkpoint", str(tmp_path / "other.pt"), str(tmp_path / "x.safetensors"), cache=tmp_path)
    assert r.returncode == 2 and "not an old nasflow predictor checkpoint" in r.stderr and r.stderr.count("\n") == 1


def test_an_option_json_cannot_hold_is_one_line_at_save(nb201, tmp_path):
    from nasflow import Predictor

    predictor = Predictor(nb201, pretrain="none", margin=float("inf"))  # stored, not checked, by __init__
    with pytest.raises(NasflowError, match="margin must be a number >= 0.0, got inf"):
        predictor.save(tmp_path / "p.safetensors")
    predictor.set_params(margin=0.5, lr=float("nan"))  # set after construction: checked at save all the same
    with pytest.raises(NasflowError, match="lr must be a number > 0.0, got nan"):
        predictor.save(tmp_path / "p.safetensors")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(NasflowError, match="unknown predictor option 'clip_grad'"):
        predictor.set_params(clip_grad=1.0)


def _saved_with(state, tmp_path, name, **removed):
    """The checkpoint ``state`` as an older nasflow wrote it: its config also lists options removed since."""
    path = tmp_path / name
    checkpoint.write(path, dataclasses.replace(state, config={**state.config, **removed}))
    return path


def test_a_file_listing_removed_options_loads_when_they_hold_what_the_code_does(nb201, tmp_path):
    from nasflow import Predictor

    cells = nb201.enumerate()[:30]
    p = Predictor(nb201, pretrain="none", dim=8, layers=1, epochs=2).fit(cells, np.arange(30.0))
    p.save(tmp_path / "now.safetensors")
    state = checkpoint.read(tmp_path / "now.safetensors", Predictor.__init__)
    # as the last commit with them saved a default predictor (finetune_batch did nothing without the pretext task)
    old = _saved_with(state, tmp_path, "old.safetensors", **checkpoint.REMOVED_OPTIONS, finetune_batch=64)
    loaded = Predictor.load(old, nb201)
    np.testing.assert_array_equal(loaded.predict(cells), p.predict(cells))
    assert loaded.config() == p.config() and not set(loaded.config()) & set(checkpoint.REMOVED_OPTIONS)


@pytest.mark.parametrize("option, value", [("flow_loss", "sum"), ("head_init", "proxy"), ("clip_grad", 1.0),
                                           ("encoder_lr_scale", 0.1), ("finetune_flow_weight", 1.0), ("flow_dim", 7)])
def test_a_file_trained_with_a_removed_option_is_refused_in_one_line(nb201, tmp_path, option, value):
    from nasflow import Predictor

    cells = nb201.enumerate()[:30]
    Predictor(nb201, pretrain="none", dim=8, layers=1, epochs=1).fit(cells, np.arange(30.0)).save(tmp_path / "now.pt")
    old = _saved_with(checkpoint.read(tmp_path / "now.pt", Predictor.__init__), tmp_path, "old.pt", **{option: value})
    with pytest.raises(CheckpointError) as info:
        Predictor.load(old)
    message = str(info.value)
    assert "\n" not in message and f"{option}={value!r}" in message and checkpoint.REMOVED_AFTER in message


def test_init_only_stores_the_options_and_everything_else_derives_from_its_signature(nb201):
    import inspect

    from nasflow import Predictor

    given = dict(encoder="gatedgcn", dim=8, features=["zcp"], zcp_proxies=None, proxy=len)
    p = Predictor(nb201, **given)
    signature = inspect.signature(Predictor.__init__).parameters
    defaults = {name: param.default for name, param in signature.items() if name not in ("self", "space")}
    assert p.get_params() == {**defaults, **given}  # as given: no copies, conversions or resolved defaults
    assert p.get_params()["proxy"] is len and Predictor(nb201, **p.get_params()).get_params() == p.get_params()
    # read back checked and in normal form; saved as JSON values
    assert p.features == ("zcp",) and p.dim == 8 and len(p.zcp_proxies) == 7
    assert list(p.config()) == list(defaults) and p.config()["proxy"] is None and p.config()["features"] == ["zcp"]
    assert p.set_params(dim=16) is p and p.dim == 16
    with pytest.raises(AttributeError):
        p.no_such_option
