"""The training oracle on the embedded digits, its disk cache, and every bad user .npz."""
import json

import numpy as np
import pytest

from nasflow.core import BaseSpace, Evaluation
from nasflow.data import Dataset, load_digits, load_npz, split
from nasflow.errors import DataError, NasflowError
from nasflow.spaces.nb201 import NB201Space
from nasflow.training import TrainingOracle, default_training_oracle

space = NB201Space()
CONV = space.parse("|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_1x1~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|")
NONE = space.make(["none"] * 6)
# none into node 3 means the cell's output never sees its input, whatever else the cell holds
CUT = space.make(["nor_conv_3x3", "nor_conv_3x3", "skip_connect", "none", "none", "none"])


@pytest.fixture(scope="session")
def trained(digits, tmp_path_factory):
    """One oracle and cache shared by the tests: 3 epochs of a small network."""
    cache = tmp_path_factory.mktemp("training-cache")
    oracle = TrainingOracle(space, digits, epochs=3, width=8, cells=1, seed=0, cache_dir=cache)
    return oracle, cache, oracle.query(CONV)


def test_digits_split_is_fixed_stratified_and_standardised(digits):
    assert (len(digits.y_train), len(digits.y_valid), len(digits.y_test)) == (1078, 359, 360)
    assert digits.num_classes == 10 and digits.image_shape == (1, 8, 8)
    assert abs(float(digits.x_train.mean())) < 1e-4 and abs(float(digits.x_train.std()) - 1) < 1e-3
    for ys in (digits.y_train, digits.y_valid, digits.y_test):
        assert np.bincount(ys, minlength=10).min() >= 0.08 * len(ys)
    assert load_digits().fingerprint == digits.fingerprint


def test_short_training_beats_chance_clearly(trained):
    _, _, ev = trained
    assert ev.valid > 80 and ev.test > 80  # chance is 10%
    assert ev.cost > 0 and ev.extra["params"] > 0 and ev.extra["flops"] > 0
    assert ev.extra["cached"] is False


@pytest.mark.parametrize("arch", [NONE, CUT], ids=["none-only", "input-cut-off"])
def test_cell_without_a_path_reports_chance(trained, digits, arch):
    oracle, _, _ = trained
    ev = oracle.query(arch)
    # a constant prediction scores the frequency of one class
    top = 100 * max(np.bincount(digits.y_valid).max() / len(digits.y_valid), np.bincount(digits.y_test).max() / len(digits.y_test))
    assert ev.valid <= top + 1e-6 and ev.test <= top + 1e-6


def test_cache_makes_the_second_query_free_and_identical(trained, digits):
    oracle, cache, first = trained
    again = oracle.query(CONV)
    assert again.extra["cached"] is True
    assert (again.valid, again.test, again.cost) == (first.valid, first.test, first.cost)
    # a new oracle (a resumed run) reads the file; a torn last line is skipped, not fatal
    path = oracle.cache_path
    assert path.parent == cache  # the directory given, not the default under $NASFLOW_CACHE
    with open(path, "a") as f:
        f.write('{"key": "abc", "val')
    fresh = TrainingOracle(space, digits, epochs=3, width=8, cells=1, seed=0, cache_dir=cache)
    resumed = fresh.query(CONV)
    assert resumed.extra["cached"] is True and resumed.valid == first.valid
    lines = path.read_text().splitlines()
    assert json.loads(lines[0])["arch"] == CONV.key
    assert all(line.strip() for line in lines)  # one record a line, no blank lines between
    # records appended after the torn line survive
    pools = space.make(["avg_pool_3x3"] * 6)
    assert fresh.query(pools).extra["cached"] is False
    assert TrainingOracle(space, digits, epochs=3, width=8, cells=1, seed=0, cache_dir=cache).query(pools).extra["cached"]
    # another configuration is another key
    other = TrainingOracle(space, digits, epochs=2, width=8, cells=1, seed=0, cache_dir=cache)
    assert other._key(CONV) != fresh._key(CONV)


def test_training_is_deterministic(trained, digits, tmp_path):
    _, _, first = trained
    oracle = TrainingOracle(space, digits, epochs=3, width=8, cells=1, seed=0, cache_dir=tmp_path)
    rerun = oracle.train(CONV)
    assert (rerun["valid"], rerun["test"]) == (first.valid, first.test)


def test_default_oracle_describes_itself(tmp_path):
    oracle, text = default_training_oracle(space, cache_dir=tmp_path)
    assert text.startswith("no --benchmark: training on the embedded digits") and "\n" not in text
    assert oracle.config["width"] == 8 and oracle.config["cells"] == 1
    assert oracle.data.num_classes == 10


def test_user_npz_with_other_classes_trains(tmp_path):
    rng = np.random.default_rng(0)
    y = np.repeat(np.array(["cat", "dog", "eel"]), 20)
    x = rng.normal(size=(60, 3, 6, 6)) + (np.arange(60) // 20)[:, None, None, None]  # separable by brightness
    path = tmp_path / "mine.npz"
    np.savez(path, x=x, y=y)
    oracle, text = default_training_oracle(space, data_path=str(path), epochs=3, cache_dir=tmp_path)
    assert "mine.npz" in text and oracle.data.classes == ("cat", "dog", "eel")
    assert oracle.query(space.make(["skip_connect"] * 6)).valid > 34


def test_bad_oracle_options_are_one_line_errors(digits):
    with pytest.raises(NasflowError, match="epochs must be a positive integer"):
        TrainingOracle(space, digits, epochs=0)
    with pytest.raises(NasflowError, match="width must be a positive integer"):
        TrainingOracle(space, digits, width=-2)


def _save(path, **arrays):
    np.savez(path, **arrays)
    return path


GOOD_X = np.zeros((40, 1, 8, 8))
GOOD_Y = np.arange(40) % 2


@pytest.mark.parametrize(
    "arrays, message",
    [
        ({"x": GOOD_X}, "has no array 'y'"),
        ({"images": GOOD_X, "y": GOOD_Y}, "has no array 'x'"),
        ({"x": GOOD_X[:, 0], "y": GOOD_Y}, "x must be 4-D"),
        ({"x": GOOD_X, "y": GOOD_Y[:, None]}, "y must be 1-D"),
        ({"x": GOOD_X, "y": GOOD_Y[:30]}, "x has 40 images but y has 30 labels"),
        ({"x": np.where(np.eye(8) > 0, np.nan, GOOD_X), "y": GOOD_Y}, "NaN or infinite values"),
        ({"x": np.full((40, 1, 8, 8), np.inf), "y": GOOD_Y}, "NaN or infinite values"),
        ({"x": GOOD_X, "y": np.where(GOOD_Y > 0, np.nan, 0.0)}, "NaN or infinite labels"),
        ({"x": GOOD_X, "y": np.zeros(40)}, "at least two classes"),
        ({"x": GOOD_X[:10], "y": GOOD_Y[:10]}, "too few"),
        ({"x": np.zeros((40, 1, 3, 8)), "y": GOOD_Y}, "at least 4x4"),
        ({"x": np.array(["a"] * 40 * 64).reshape(40, 1, 8, 8), "y": GOOD_Y}, "real numbers"),
    ],
)
def test_bad_npz_inputs_are_one_line_data_errors(tmp_path, arrays, message):
    path = _save(tmp_path / "bad.npz", **arrays)
    with pytest.raises(DataError, match=message) as info:
        load_npz(path)
    assert "\n" not in str(info.value)


def test_missing_and_unreadable_files(tmp_path):
    with pytest.raises(DataError, match="data file not found"):
        load_npz(tmp_path / "nope.npz")
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"this is not a zip archive")
    with pytest.raises(DataError, match="cannot read .* as an .npz file"):
        load_npz(junk)
    pickled = tmp_path / "objects.npz"
    np.savez(pickled, x=np.array([object()] * 40, dtype=object), y=GOOD_Y)
    with pytest.raises(DataError, match="cannot read"):
        load_npz(pickled)


def test_split_keeps_every_class_in_train():
    y = np.array([0] * 28 + [1] * 2)
    data = split(np.zeros((30, 1, 4, 4), dtype=np.float32), y, "tiny")
    assert isinstance(data, Dataset) and set(data.y_train) == {0, 1}


def test_training_options_parse_and_reject_bad_values():
    import click
    from click.testing import CliRunner

    from nasflow.cli.options import training_options, training_settings

    @click.command()
    @training_options
    def show(**given):
        click.echo(json.dumps(training_settings(given), sort_keys=True))

    runner = CliRunner()
    assert json.loads(runner.invoke(show, []).output) == {"training": {}, "hardware": None}
    out = runner.invoke(show, ["--data", "d.npz", "--epochs", "3", "--width", "4", "--cells", "2", "--recipe", "nb201",
                               "--batch-size", "32", "--lr", "0.05", "--augment", "none", "--precision", "fp32",
                               "--device", "cpu", "--devices", "0,1", "--cuda-graph", "--checkpoint-every", "60"])
    assert json.loads(out.output) == {
        "training": {"data": "d.npz", "epochs": 3, "width": 4, "cells": 2, "recipe": "nb201", "batch_size": 32,
                     "lr": 0.05, "augment": "none", "precision": "fp32"},
        "hardware": {"device": "cpu", "devices": "0,1", "cuda_graph": True, "checkpoint_every": 60.0}}
    for bad in (["--epochs", "0"], ["--recipe", "imagenet"], ["--lr", "0"], ["--augment", "autoaugment"]):
        result = runner.invoke(show, bad)
        assert result.exit_code == 2 and bad[0] in result.output


def test_progress_shows_an_epoch_bar_and_a_space_without_networks_is_refused(digits, tmp_path, capsys):
    oracle = TrainingOracle(space, digits, epochs=1, width=4, cells=1, cache_dir=tmp_path, progress=True)
    oracle.query(space.make(["skip_connect"] * 6))
    assert "epoch" in capsys.readouterr().err

    class Tabular(BaseSpace):  # declares no network builder
        name = "table-only"

    with pytest.raises(NasflowError, match="cannot build networks"):
        TrainingOracle(Tabular(), digits)


def test_a_fidelity_is_a_training_of_that_many_epochs(trained, digits):
    """query(arch, fidelity) trains for that many epochs, as an oracle made with those epochs would (one cache)."""
    oracle, cache, first = trained
    assert oracle.fidelities is None and oracle.continues is False
    assert oracle.query(CONV, 3) == Evaluation(first.valid, first.test, first.cost, {**first.extra, "cached": True},
                                               fidelity=3)
    short = oracle.query(CONV, 1)
    assert short.fidelity == 1 and short.extra["epochs"] == 1 and short.extra["cached"] is False
    alone = TrainingOracle(space, digits, epochs=1, width=8, cells=1, seed=0, cache_dir=cache).query(CONV)
    assert alone.extra["cached"] is True and alone.valid == short.valid
    assert oracle.epochs == 3  # the oracle itself still trains its own epochs
    with pytest.raises(NasflowError, match="number of epochs >= 1"):
        oracle.query(CONV, 0)
