"""Every disk cache under every kind of damage (issue 16): the same numbers as an undamaged
run, one warning line, no traceback; and every cache lands under $NASFLOW_CACHE.

Each case computes something small twice: once on a fresh cache (which writes the cache
file), then again after the file is damaged, or with a cache root that cannot exist (its
parent is a regular file: tests run as root, so permissions would not stop a write).
"""
import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

import nasflow.cache
from clirun import run_cli
from nasflow.errors import NasflowWarning
from nasflow.spaces.nb201 import NB201Space

DAMAGES = ("garbage", "truncated", "empty", "directory", "unwritable")
NB201 = NB201Space()
CELLS = [NB201.arch_at(i) for i in (0, 7, 4242)]


# ---------------------------------------------------------------- one function per cache: compute with the cache

def proxies_result():
    from nasflow.proxies import zero_cost

    return zero_cost(NB201, CELLS, "params").tolist()


def training_result():
    from nasflow.data import load_digits
    from nasflow.training import TrainingOracle

    oracle = TrainingOracle(NB201, load_digits(), epochs=1, width=4, cells=1, device="cpu")
    ev = oracle.query(CELLS[0])
    # cost is wall-clock seconds and differs between trainings; everything else is bit-for-bit
    return ev.valid, ev.test, {k: v for k, v in ev.extra.items() if k not in ("cached", "images_per_s")}


def fgp_result():
    from nasflow.predictors import Predictor

    p = Predictor(NB201, encoder="gin", pretrain="fgp", seed=0, dim=8, layers=1, pretrain_epochs=1,
                  pretrain_batch=8, proxy="params").pretrain(CELLS)
    return p.pretrain_losses, {part: {k: v.tolist() for k, v in sd.items()} for part, sd in p._pretrained.items()}


@pytest.fixture(scope="module")
def nb201_pth(tmp_path_factory):
    from test_nb201_official import official_dict

    path = tmp_path_factory.mktemp("nb201") / "NAS-Bench-201-v1_1-096897.pth"
    torch.save(official_dict(), path)
    return path


@pytest.fixture(scope="module")
def nb101_file(tmp_path_factory):
    from nasflow.spaces.nb101 import NB101Arch
    from test_nb101_records import evaluations, frame, metrics_bytes, record

    rng = np.random.default_rng(0)
    cells = [NB101Arch([[0, 1, 1], [0, 0, 1], [0, 0, 0]], ["input", op, "output"])
             for op in ("conv3x3-bn-relu", "conv1x1-bn-relu", "maxpool3x3")]
    payloads = [record(a, 108, metrics_bytes(1000 + i, evaluations(rng, 108))) for i, a in enumerate(cells)]
    path = tmp_path_factory.mktemp("nb101") / "nasbench_only108.tfrecord"
    path.write_bytes(frame(payloads))
    return path


@pytest.fixture(scope="module")
def image_tree(tmp_path_factory):
    from test_data_image_folder import make_tree

    root = tmp_path_factory.mktemp("images") / "tree"
    make_tree(root, classes=("a", "b"), per_class=15, size=(4, 4))  # 30: the fewest a split takes
    return root


@pytest.fixture
def compute(request, nb201_pth, nb101_file, image_tree):
    """``(compute, where its cache file is under the cache root)`` of one cache."""
    from nasflow.image_folder import load_image_folder
    from nasflow.spaces.nb101_records import NB101RecordOracle
    from nasflow.spaces.nb201_official import NB201OfficialOracle

    def images():
        d = load_image_folder(image_tree)
        return d.x_train.tolist(), d.y_train.tolist(), d.x_test.tolist()

    return {
        "proxies": (proxies_result, "proxies/*"),
        "training": (training_result, "training/*"),
        "fgp": (fgp_result, "fgp/*"),  # its proxy targets are cached too, in proxies/
        "nb201_official": (lambda: sorted((str(a), e) for a, e in NB201OfficialOracle(nb201_pth).items()), "*.csv"),
        "nb101_records": (lambda: sorted((a.key, e) for a, e in NB101RecordOracle(nb101_file).items()), "nb101-*.npz"),
        "image_folder": (images, "images/*"),
    }[request.param]


CACHES = ("proxies", "training", "fgp", "nb201_official", "nb101_records", "image_folder")


def run(fn):
    """``(result, [warning lines])`` of ``fn()``: nasflow's warnings recorded, none lost to the once-per-place filter."""
    nasflow.cache._reported.clear()  # each run stands for a new process: its warnings are not deduplicated away
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = fn()
    lines = [str(w.message) for w in caught if issubclass(w.category, NasflowWarning)]
    return result, lines


def cache_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def damage(path: Path, kind: str) -> None:
    data = path.read_bytes()
    path.unlink()
    if kind == "garbage":
        path.write_bytes(bytes(np.random.default_rng(1).integers(0, 256, len(data), dtype=np.uint8)))
    elif kind == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "directory":
        path.mkdir()
        (path / "inside").write_text("x")


def damaged_root(tmp_path, kind: str, files) -> Path:
    """The cache root to run again with: ``files`` damaged in place under ``tmp_path/cache``, or for
    "unwritable" a root whose parent is a regular file."""
    if kind == "unwritable":
        (tmp_path / "a-file").write_text("")
        return tmp_path / "a-file" / "cache"
    for path in files:
        damage(path, kind)
    return tmp_path / "cache"


@pytest.mark.parametrize("kind", DAMAGES)
@pytest.mark.parametrize("compute", CACHES, indirect=True)
def test_damaged_cache_gives_the_undamaged_result_and_one_warning(compute, kind, tmp_path, monkeypatch):
    compute, pattern = compute
    root = tmp_path / "cache"
    monkeypatch.setenv("NASFLOW_CACHE", str(root))
    expected, lines = run(compute)
    assert lines == []
    files = sorted(root.glob(pattern))
    assert len(files) == 1, files  # each computation here writes one such cache file, under $NASFLOW_CACHE
    monkeypatch.setenv("NASFLOW_CACHE", str(damaged_root(tmp_path, kind, files)))
    got, lines = run(compute)
    assert got == expected
    # an empty training-results file is what a run killed between creating and writing it leaves: not damage
    assert len(lines) == (0 if (compute is training_result and kind == "empty") else 1), lines
    assert all("\n" not in line for line in lines)
    if kind in ("garbage", "truncated", "empty"):  # the cache was rewritten whole: the next run is quiet and right
        again, lines = run(compute)
        assert again == expected and lines == []


# Caches whose files are named by nasflow.cache.entry (what was computed, then ".v<version>"); fgp's name
# is still the Predictor's own (the predictor split of issue 17 moves it onto entry()).
VERSIONED = ("proxies", "training", "fgp", "nb201_official", "nb101_records", "image_folder")


def other_version(path: Path) -> Path:
    """``path`` as another cache version of the same entry would name it."""
    head, _, tail = path.name.rpartition(".v")
    assert head, path.name
    _version, dot, suffix = tail.partition(".")
    return path.with_name(f"{head}.v0-old{dot}{suffix}")


@pytest.mark.parametrize("compute", VERSIONED, indirect=True)
def test_a_cache_file_of_another_version_warns_once_and_is_replaced(compute, tmp_path, monkeypatch):
    compute, pattern = compute
    root = tmp_path / "cache"
    monkeypatch.setenv("NASFLOW_CACHE", str(root))
    expected, _ = run(compute)
    [path] = sorted(root.glob(pattern))
    old = other_version(path)
    path.rename(old)
    got, lines = run(compute)
    assert got == expected
    assert len(lines) == 1 and str(old) in lines[0] and "cache version 0-old" in lines[0], lines
    assert sorted(root.glob(pattern)) == [path]  # the old file retired, this version's written
    assert run(compute) == (expected, [])


def test_only_other_versions_of_the_same_entry_are_retired(tmp_path):
    for name in ("a.v1.npz", "a.v2.npz", "ab.v1.npz", "a.v1.csv", "a.x.v1.npz", "a.npz"):
        (tmp_path / name).write_text("")
    nasflow.cache._reported.clear()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        path = nasflow.cache.entry("kind", "a", 3, ".npz", directory=tmp_path)
    assert path == tmp_path / "a.v3.npz" and not path.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.npz", "a.v1.csv", "a.x.v1.npz", "ab.v1.npz"]
    assert len(caught) == 2
    (tmp_path / "a.v2.npz").write_text("")
    path.write_text("")  # this version is there: nothing else is looked at
    nasflow.cache.entry("kind", "a", 3, ".npz", directory=tmp_path)
    assert (tmp_path / "a.v2.npz").exists()


# ---------------------------------------------------------------- entries that parse but must not be used

def test_proxy_cache_with_nan_or_foreign_tables_is_recomputed(tmp_path, monkeypatch):
    from nasflow.proxies import cache_path

    monkeypatch.setenv("NASFLOW_CACHE", str(tmp_path))
    expected, _ = run(proxies_result)
    path = cache_path(NB201, "params")
    keys = np.array([a.key for a in CELLS])
    for table in ({"keys": keys, "values": np.full(len(keys), np.nan)},  # parses, but NaN is no score
                  {"keys": keys, "values": np.arange(2.0)},  # lengths differ
                  {"x": np.zeros(3)}):  # another array file
        np.savez(path, **table)
        got, lines = run(proxies_result)
        assert got == expected and len(lines) == 1, lines


@pytest.mark.parametrize("line", ["[1,2]", '{"key": 3}', "null", '"text"', "17"])
def test_training_cache_lines_that_parse_but_are_not_records(line, tmp_path, monkeypatch):
    monkeypatch.setenv("NASFLOW_CACHE", str(tmp_path))
    expected, _ = run(training_result)
    [path] = (tmp_path / "training").glob("nb201.v*.jsonl")
    path.write_text(line + "\n" + path.read_text())
    got, lines = run(training_result)
    assert got == expected and len(lines) == 1 and "1 of 2 lines" in lines[0], lines


def test_training_record_with_nan_or_filed_under_another_cell_is_not_reported(tmp_path, monkeypatch):
    monkeypatch.setenv("NASFLOW_CACHE", str(tmp_path))
    expected, _ = run(training_result)
    [path] = (tmp_path / "training").glob("nb201.v*.jsonl")
    rec = json.loads(path.read_text())
    for wrong in ({**rec, "valid": float("nan")}, {**rec, "arch": CELLS[1].key}, {**rec, "extra": None}):
        path.write_text(json.dumps(wrong) + "\n")
        got, _ = run(training_result)
        assert got == expected


def test_nb101_cache_of_another_file_or_with_nan_is_rebuilt(nb101_file, tmp_path, monkeypatch):
    from nasflow.spaces.nb101_records import load_records

    monkeypatch.setenv("NASFLOW_CACHE", str(tmp_path))
    expected = load_records(nb101_file)
    path, = tmp_path.glob("nb101-*.npz")
    with np.load(path) as z:
        arrays = dict(z)
    for change in ({"ident": np.array("another file")}, {"valid": np.full(3, np.nan)}, {"hash": arrays["hash"][::-1]}):
        np.savez(path, **{**arrays, **change})
        got, lines = run(lambda: load_records(nb101_file))
        assert len(lines) == 1, lines
        assert got.keys() == expected.keys() and all(np.array_equal(got[k], expected[k]) for k in got)


def test_nb201_cache_cut_at_a_line_boundary_is_rebuilt(nb201_pth, tmp_path, monkeypatch):
    from nasflow.spaces.nb201_official import NB201OfficialOracle

    monkeypatch.setenv("NASFLOW_CACHE", str(tmp_path))
    expected = dict(NB201OfficialOracle(nb201_pth).items())
    path, = tmp_path.glob("*.csv")
    rows = path.read_text().splitlines(keepends=True)
    path.write_text("".join(rows[:-1]))  # every remaining row still parses: only the row count tells
    got, lines = run(lambda: dict(NB201OfficialOracle(nb201_pth).items()))
    assert got == expected and len(lines) == 1, lines


def test_training_checkpoint_under_an_unwritable_cache_only_warns(tmp_path, monkeypatch):
    from nasflow.data import load_digits
    from nasflow.training import TrainingOracle

    def train():  # checkpoint_every=0: a checkpoint after every epoch but the last
        oracle = TrainingOracle(NB201, load_digits(), epochs=2, width=4, cells=1, device="cpu", checkpoint_every=0)
        ev = oracle.query(CELLS[0])
        return ev.valid, ev.test

    monkeypatch.setenv("NASFLOW_CACHE", str(tmp_path / "cache"))
    expected, _ = run(train)
    monkeypatch.setenv("NASFLOW_CACHE", str(damaged_root(tmp_path, "unwritable", [])))
    got, lines = run(train)
    assert got == expected and len(lines) == 1, lines


# ---------------------------------------------------------------- through the CLI: one warning line, no traceback

def cli_warnings(result):
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    return [line for line in result.stderr.splitlines() if line.startswith("nasflow: warning:")]


@pytest.mark.parametrize("kind", DAMAGES)
def test_cli_proxies_with_a_damaged_cache(kind, tmp_path):
    args = ("proxies", "--space", "nb201", "--sample", "3", "--proxies", "params,flops")
    clean = run_cli(*args, "--out", str(tmp_path / "clean.csv"), cache=tmp_path / "cache")
    assert cli_warnings(clean) == []
    cache = damaged_root(tmp_path, kind, cache_files(tmp_path / "cache"))  # both proxies' files
    result = run_cli(*args, "--out", str(tmp_path / "again.csv"), cache=cache)
    lines = cli_warnings(result)
    assert (tmp_path / "again.csv").read_text() == (tmp_path / "clean.csv").read_text()
    if kind == "unwritable":  # one line for the root, not one per file
        assert len(lines) == 1, result.stderr
    else:  # one line for each damaged file
        assert len(lines) == 2 and all("unusable" in line or "directory" in line for line in lines), result.stderr


@pytest.mark.parametrize("kind", ["garbage", "truncated", "directory", "unwritable"])
def test_cli_search_with_a_damaged_training_cache(kind, tmp_path):
    def search(out, cache):
        return run_cli("search", "--space", "nb201", "--searcher", "random", "--budget", "2", "--epochs", "1",
                       "--width", "4", "--out", str(tmp_path / out), cache=cache)

    clean = search("clean", tmp_path / "cache")
    assert cli_warnings(clean) == []
    cache = damaged_root(tmp_path, kind, list((tmp_path / "cache" / "training").glob("nb201.v*.jsonl")))
    lines = cli_warnings(search("again", cache))
    assert len(lines) == 1, lines

    def trajectory(out):
        rows = [json.loads(line) for line in (tmp_path / out / "journal.jsonl").read_text().splitlines()[1:]]
        return [(r["arch"], r["valid"], r["test"]) for r in rows]

    assert trajectory("again") == trajectory("clean")


# ---------------------------------------------------------------- one cache directory rule

def test_every_cache_lives_under_nasflow_cache(nb201_pth, nb101_file, image_tree, tmp_path, monkeypatch):
    from nasflow.image_folder import load_image_folder
    from nasflow.spaces.nb101 import NB101Arch
    from nasflow.spaces.nb101_table import NB101TableOracle
    from nasflow.spaces.nb201 import NB201TableOracle
    from nasflow.spaces.nb101_records import NB101RecordOracle
    from nasflow.spaces.nb201_official import NB201OfficialOracle

    home = tmp_path / "home"
    monkeypatch.setenv("HOME", str(home))  # the default: anything written there ignored $NASFLOW_CACHE
    monkeypatch.setenv("NASFLOW_CACHE", str(tmp_path / "cache"))
    run(proxies_result)
    run(training_result)
    run(fgp_result)
    NB201OfficialOracle(nb201_pth)
    NB101RecordOracle(nb101_file)
    load_image_folder(image_tree)
    # the table oracles keep their tables in memory: nothing to write anywhere
    table = tmp_path / "tables" / "nb201.csv"
    table.parent.mkdir()
    table.write_text("arch,cifar10_valid,cifar10_test\n" + "".join(f"{NB201.format(a)},{50 + i},{51 + i}\n"
                                                                    for i, a in enumerate(CELLS)))
    assert NB201TableOracle(table, "cifar10").query(CELLS[1]).valid == 51
    cell = NB101Arch([[0, 1, 1], [0, 0, 1], [0, 0, 0]], ["input", "conv3x3-bn-relu", "output"])
    row = {"hash": cell.key, "matrix": [list(r) for r in cell.matrix], "ops": list(cell.ops), "valid_acc_108": 90.0}
    (tmp_path / "tables" / "nb101.jsonl").write_text(json.dumps(row) + "\n")
    assert NB101TableOracle(tmp_path / "tables" / "nb101.jsonl").query(cell).valid == 90.0
    assert not home.exists()
    found = {p.relative_to(tmp_path / "cache").parts[0] for p in cache_files(tmp_path / "cache")}
    assert {"proxies", "training", "fgp", "images"} <= found
    assert any(name.endswith(".csv") for name in found) and any(name.startswith("nb101-") for name in found)
