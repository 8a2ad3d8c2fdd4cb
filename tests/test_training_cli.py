"""`nasflow search` training on data (issue 22) through the real CLI: recipes, devices, resume, bad input.

Every refusal is one stderr line, exit 2, and nothing written: the run directory is not created.
"""
import json

import numpy as np
import pytest
import torch

from clirun import run_cli

NO_CUDA = not torch.cuda.is_available()


def refused(result, message):
    lines = result.stderr.strip().splitlines()
    return result.returncode == 2 and len(lines) == 1 and lines[0].startswith("nasflow: error:") and message in lines[0]


def search(tmp_path, *args):
    return run_cli("search", "--searcher", "random", "--budget", "2", "--out", str(tmp_path / "run"), *args,
                   cache=tmp_path / "cache")


@pytest.mark.skipif(not NO_CUDA, reason="checks a machine without CUDA")
@pytest.mark.parametrize("args, message", [
    (["--device", "cuda"], "no CUDA device"),
    (["--device", "cuda:3"], "no CUDA device"),
    (["--device", "tpu"], "unknown device 'tpu'"),
    (["--devices", "0,1"], "no CUDA device"),
    (["--devices", "zero"], "--devices takes CUDA device indices"),
    (["--cuda-graph"], "--cuda-graph needs a CUDA device"),
    (["--precision", "bf16"], "bf16 needs a CUDA device"),
])
def test_hardware_options_that_cannot_work_here_are_refused_before_any_work(tmp_path, args, message):
    result = search(tmp_path, *args)
    assert refused(result, message), result.stderr
    assert not (tmp_path / "run").exists()


def test_an_image_folder_with_one_class_is_refused(tmp_path):
    from PIL import Image

    folder = tmp_path / "images" / "cat"
    folder.mkdir(parents=True)
    for i in range(40):
        Image.fromarray(np.full((8, 8), i, dtype=np.uint8)).save(folder / f"{i}.png")
    result = search(tmp_path, "--data", str(tmp_path / "images"))
    assert refused(result, "one class"), result.stderr
    assert not (tmp_path / "run").exists()


def test_search_trains_by_a_recipe_reports_the_device_and_resumes_a_killed_training(tmp_path, crash_after_checkpoints):
    rng = np.random.default_rng(0)
    y = np.arange(90) % 3
    x = rng.normal(size=(90, 3, 8, 8)).astype(np.float32) + y[:, None, None, None]
    np.savez(tmp_path / "mine.npz", x=x, y=y)
    args = ["--data", str(tmp_path / "mine.npz"), "--recipe", "nb201", "--epochs", "4", "--width", "4",
            "--cells", "1", "--batch-size", "16", "--device", "cpu", "--checkpoint-every", "0"]

    saves = crash_after_checkpoints(2, KeyboardInterrupt)  # the user's Ctrl-C in the first cell's training
    killed = search(tmp_path, *args)
    assert killed.returncode == 130 and saves == [1, 2]
    crash_after_checkpoints.undo()
    resumed = run_cli("search", "--resume", str(tmp_path / "run"), cache=tmp_path / "cache")
    assert resumed.returncode == 0, resumed.stderr
    records = [json.loads(line) for line in (tmp_path / "run" / "journal.jsonl").read_text().splitlines()]
    header, queries = records[0], records[1:]
    assert header["training"]["recipe"] == "nb201" and header["hardware"]["device"] == "cpu"
    assert [q["extra"]["resumed_from_epoch"] for q in queries] == [2, 0]  # the first cell went on from epoch 2
    assert all(q["extra"]["device"] == "cpu" and q["extra"]["epochs"] == 4 for q in queries)
    assert "by recipe nb201 (batch 16, lr 0.1, augment standard) on cpu in fp32" in resumed.stdout
    assert "training   on cpu:" in resumed.stdout and "images/s on average over 2 training(s)" in resumed.stdout
    # the resumed cell's numbers are those of an uninterrupted training (CPU: bit for bit)
    fresh = run_cli("search", "--searcher", "random", "--budget", "1", "--out", str(tmp_path / "fresh"), *args,
                    cache=tmp_path / "other-cache")
    assert fresh.returncode == 0, fresh.stderr
    first = json.loads((tmp_path / "fresh" / "journal.jsonl").read_text().splitlines()[1])
    assert (first["arch"], first["valid"], first["test"]) == (queries[0]["arch"], queries[0]["valid"], queries[0]["test"])


def test_a_planted_checkpoint_ends_in_one_line_and_the_journal_survives(tmp_path):
    from nasflow.data import load_npz
    from nasflow.spaces import get_space
    from nasflow.training import TrainingOracle

    np.savez(tmp_path / "d.npz", x=np.random.default_rng(0).normal(size=(60, 1, 8, 8)), y=np.arange(60) % 2)
    args = ["--searcher", "random", "--data", str(tmp_path / "d.npz"), "--epochs", "1", "--width", "4",
            "--device", "cpu"]
    one = run_cli("search", "--budget", "1", "--out", str(tmp_path / "run"), *args, cache=tmp_path / "cache")
    two = run_cli("search", "--budget", "2", "--out", str(tmp_path / "two"), *args, cache=tmp_path / "other")
    assert one.returncode == 0 and two.returncode == 0, one.stderr + two.stderr
    space = get_space("nb201")
    second = space.parse(json.loads((tmp_path / "two" / "journal.jsonl").read_text().splitlines()[2])["arch"])
    oracle = TrainingOracle(space, load_npz(tmp_path / "d.npz"), epochs=1, width=4, device="cpu",
                            cache_dir=tmp_path / "cache" / "training")
    planted = oracle.checkpoint_dir / f"{oracle._key(second)}.safetensors"
    planted.parent.mkdir(parents=True, exist_ok=True)
    planted.write_bytes(b"not a checkpoint")
    journal = (tmp_path / "run" / "journal.jsonl").read_bytes()
    again = run_cli("search", "--resume", str(tmp_path / "run"), "--budget", "2", cache=tmp_path / "cache")
    assert refused(again, f"delete {planted}"), again.stderr
    assert (tmp_path / "run" / "journal.jsonl").read_bytes() == journal  # the queries made so far are kept


def test_nasflow_warnings_are_one_line_on_stderr(capsys):
    import warnings

    from nasflow.cli.main import _show_warning
    from nasflow.errors import NasflowWarning

    _show_warning(NasflowWarning("CUDA graph capture failed (RuntimeError: x); training eagerly instead"),
                  NasflowWarning, "file.py", 1)
    assert capsys.readouterr().err == "nasflow: warning: CUDA graph capture failed (RuntimeError: x); training eagerly instead\n"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warnings.warn("other", UserWarning)
    assert len(caught) == 1  # warnings that are not nasflow's keep Python's own handling


def test_a_shared_study_reports_where_its_trainings_ran(tmp_path):
    np.savez(tmp_path / "d.npz", x=np.random.default_rng(0).normal(size=(60, 1, 8, 8)), y=np.arange(60) % 2)
    result = run_cli("search", "--searcher", "random", "--budget", "2", "--data", str(tmp_path / "d.npz"),
                     "--epochs", "1", "--width", "4", "--device", "cpu", "--storage",
                     f"sqlite:///{tmp_path / 'study.db'}", cache=tmp_path / "cache")
    assert result.returncode == 0, result.stderr
    assert "training   on cpu:" in result.stdout and "over 2 training(s)" in result.stdout
