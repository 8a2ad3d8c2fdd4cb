"""NB201OfficialOracle on a small dict in the official NAS-Bench-201 format, built here.

Every number is chosen so that reading the wrong thing shows: seeds differ by 2 (the mean
sits between them), each evaluation set and API dataset has its own offset, the 12-epoch
('less') results and all non-final epochs hold other values, and each API dataset trains
at its own speed.
"""
import os
import pickle
import subprocess
import sys
from collections import OrderedDict

import pytest
import torch

from nasflow.core import Evaluation
from nasflow.errors import BenchmarkError
from nasflow.spaces import nb201_official
from nasflow.spaces.nb201 import NB201Space
from nasflow.spaces.nb201_official import NB201OfficialOracle, load_official

INDEXES = (0, 1, 7, 4242, 15624)
SEEDS = (777, 888)
FULL_EPOCHS, LESS_EPOCHS = 200, 12
# evaluation sets of each API dataset's runs (as in v1_1: cifar10-valid is also tested on ori-test)
EVAL_SETS = {
    "cifar10-valid": ("x-valid", "ori-test"),
    "cifar10": ("ori-test",),
    "cifar100": ("x-valid", "x-test", "ori-test"),
    "ImageNet16-120": ("x-valid", "x-test", "ori-test"),
}
DATASET_OFFSET = {"cifar10-valid": 0.0, "cifar10": 10.0, "cifar100": 20.0, "ImageNet16-120": 30.0}
SET_OFFSET = {"x-valid": 1.0, "x-test": 2.0, "ori-test": 3.0}
SECONDS_PER_EPOCH = {"cifar10-valid": 1.0, "cifar10": 3.0, "cifar100": 5.0, "ImageNet16-120": 7.0}


def final_accuracy(position, api_dataset, eval_set, seed):
    """The last-epoch 200-epoch accuracy; binary-exact so the seed mean is exact too."""
    return 40.0 + 0.5 * position + DATASET_OFFSET[api_dataset] + SET_OFFSET[eval_set] + 2.0 * SEEDS.index(seed)


def seed_mean(position, api_dataset, eval_set):
    return final_accuracy(position, api_dataset, eval_set, SEEDS[0]) + 1.0


def results_count(arch_str, position, api_dataset, seed, epochs):
    from nas_201_api import ResultsCount

    full = epochs == FULL_EPOCHS

    def per_epoch(final, other):
        return OrderedDict((e, final if e == epochs - 1 else other) for e in range(epochs))

    params, flops = 0.1 * (position + 1), 10.0 * (position + 1) + DATASET_OFFSET[api_dataset]
    rc = ResultsCount(
        api_dataset, None, per_epoch(99.0, 1.0), per_epoch(0.01, 2.0), params, flops,
        {"arch_str": arch_str}, seed, epochs, [0.001 * (position + 1)],
    )
    seconds = SECONDS_PER_EPOCH[api_dataset] + SEEDS.index(seed)  # seeds 1 s/epoch apart
    rc.update_train_info(rc.train_acc1es, None, rc.train_losses, per_epoch(seconds, seconds))
    accs, losses, times = {}, {}, {}
    for eval_set in EVAL_SETS[api_dataset]:
        final = final_accuracy(position, api_dataset, eval_set, seed) if full else 11.0 + position
        for e in range(epochs):
            accs[f"{eval_set}@{e}"] = final if e == epochs - 1 else 5.0
            losses[f"{eval_set}@{e}"] = 1.0
            times[f"{eval_set}@{e}"] = 0.5
    rc.update_eval(accs, losses, times)
    return rc


def official_dict(indexes=INDEXES, api_datasets=tuple(EVAL_SETS)):
    from nas_201_api import ArchResults

    meta = [a.key for a in NB201Space().enumerate()]
    infos = {}
    for position, index in enumerate(indexes):
        entry = {}
        for hp, epochs in (("less", LESS_EPOCHS), ("full", FULL_EPOCHS)):
            results = ArchResults(index, meta[index])
            for api_dataset in api_datasets:
                for seed in SEEDS:
                    results.update(api_dataset, seed, results_count(meta[index], position, api_dataset, seed, epochs))
            entry[hp] = results.state_dict()
        infos[index] = entry
    return {"meta_archs": meta, "arch2infos": infos, "evaluated_indexes": list(indexes)}


def expected(position, dataset):
    valid_run, test_run, test_set = {
        "cifar10": ("cifar10-valid", "cifar10", "ori-test"),
        "cifar100": ("cifar100", "cifar100", "x-test"),
        "ImageNet16-120": ("ImageNet16-120", "ImageNet16-120", "x-test"),
    }[dataset]
    return Evaluation(
        valid=seed_mean(position, valid_run, "x-valid"),
        test=seed_mean(position, test_run, test_set),
        cost=FULL_EPOCHS * (SECONDS_PER_EPOCH[valid_run] + 0.5),
        extra={
            "params": 0.1 * (position + 1),
            "flops": 10.0 * (position + 1) + DATASET_OFFSET[valid_run],
            "latency": 0.001 * (position + 1),
        },
    )


@pytest.fixture(scope="session")
def data():
    return official_dict()


@pytest.fixture(scope="session")
def pth(data, tmp_path_factory):
    path = tmp_path_factory.mktemp("nb201") / "NAS-Bench-201-v1_1-096897.pth"
    torch.save(data, path)
    return path


@pytest.fixture()
def cache_dir(tmp_path):
    return tmp_path / "cache"


@pytest.mark.parametrize("dataset", ["cifar10", "cifar100", "ImageNet16-120"])
def test_seed_mean_of_the_right_200_epoch_split(data, dataset):
    oracle = NB201OfficialOracle(data, dataset)
    space = NB201Space()
    assert len(oracle) == len(INDEXES)
    assert oracle.datasets == ("cifar10", "cifar100", "ImageNet16-120")
    for position, index in enumerate(INDEXES):
        got = oracle.query(space.arch_at(index))
        assert got == expected(position, dataset)
        assert got.valid != 11.0 + position and got.test != 11.0 + position  # never the 12-epoch numbers


def test_best_finds_the_top_cell(data):
    cells, value = NB201OfficialOracle(data, "cifar100").best("valid")
    assert cells == [NB201Space().arch_at(INDEXES[-1])]
    assert value == seed_mean(len(INDEXES) - 1, "cifar100", "x-valid")


def test_restricted_loader_reads_what_weights_only_reads(pth):
    assert load_official(pth) == torch.load(pth, weights_only=True)


@pytest.mark.parametrize("zipped", [True, False])
def test_file_with_numpy_scalars_loads_and_code_is_refused(tmp_path, zipped):
    import numpy as np

    path = tmp_path / "numbers.pth"
    torch.save({"a": np.float64(1.5), "b": {1, 2}}, path, _use_new_zipfile_serialization=zipped)
    assert load_official(path) == {"a": 1.5, "b": {1, 2}}

    class RunsCode:
        def __reduce__(self):
            return (os.system, ("true",))

    torch.save({"meta_archs": [], "x": RunsCode()}, path, _use_new_zipfile_serialization=zipped)
    with pytest.raises(BenchmarkError, match="refusing to load"):
        load_official(path)


def test_file_gives_the_dict_numbers_and_the_cache_round_trips(data, pth, cache_dir, monkeypatch):
    first = {d: NB201OfficialOracle(pth, d, cache_dir=cache_dir) for d in ("cifar10", "cifar100")}
    cache = first["cifar10"].cache_path
    assert cache.parent == cache_dir and cache.is_file()
    assert [p.name for p in cache_dir.iterdir()] == [cache.name]  # one cache, all datasets, no temp left
    assert dict(first["cifar10"].items()) == dict(NB201OfficialOracle(data, "cifar10").items())

    def no_loading(*args, **kwargs):
        raise AssertionError("the official file was read although a cache exists")

    monkeypatch.setattr(nb201_official, "load_official", no_loading)
    for dataset in ("cifar10", "cifar100", "ImageNet16-120"):
        again = NB201OfficialOracle(pth, dataset, cache_dir=cache_dir)
        fresh = NB201OfficialOracle(data, dataset)
        assert again.datasets == fresh.datasets
        assert dict(again.items()) == dict(fresh.items())  # identical Evaluations, cost and extras too


def test_cache_is_keyed_by_size_and_mtime_and_rebuilt_when_damaged(data, tmp_path, cache_dir):
    path = tmp_path / "NAS-Bench-201-v1_0-e61699.pth"
    torch.save(data, path)
    cache = NB201OfficialOracle(path, cache_dir=cache_dir).cache_path
    cache.write_text("index,arch,cifar10_valid\n0,|broken")
    rebuilt = NB201OfficialOracle(path, cache_dir=cache_dir)
    assert dict(rebuilt.items()) == dict(NB201OfficialOracle(data).items())
    os.utime(path, ns=(0, 10**18))
    assert NB201OfficialOracle(path, cache_dir=cache_dir).cache_path != cache


def test_unwritable_cache_only_warns(data, pth, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.warns(UserWarning, match="cannot write the cache"):
        oracle = NB201OfficialOracle(pth, "cifar10", cache_dir=blocker / "cache")
    assert len(oracle) == len(INDEXES)


def test_dataset_missing_from_the_file_is_named(tmp_path, cache_dir):
    data = official_dict(api_datasets=("cifar10-valid", "cifar10", "cifar100"))
    with pytest.raises(BenchmarkError, match="no 200-epoch results for ImageNet16-120; datasets in this file: cifar10, cifar100"):
        NB201OfficialOracle(data, "ImageNet16-120")
    path = tmp_path / "partial.pth"
    torch.save(data, path)
    NB201OfficialOracle(path, cache_dir=cache_dir)
    with pytest.raises(BenchmarkError, match="no 200-epoch results for ImageNet16-120"):
        NB201OfficialOracle(path, "ImageNet16-120", cache_dir=cache_dir)  # answered from the cache


def _without(data, key):
    return {k: v for k, v in data.items() if k != key}


def _swapped_archs(data):
    meta = list(data["meta_archs"])
    meta[0], meta[1] = meta[1], meta[0]
    return {**data, "meta_archs": meta}


def _results_for_other_arch(data):
    infos = dict(data["arch2infos"])
    infos[0] = infos[1]
    return {**data, "arch2infos": infos}


def _without_full(data):
    infos = dict(data["arch2infos"])
    infos[7] = {"less": infos[7]["less"]}
    return {**data, "arch2infos": infos}


def _broken_results(data):
    infos = dict(data["arch2infos"])
    full = dict(infos[7]["full"])
    full["all_results"] = {k: {"name": "x"} for k in full["all_results"]}
    infos[7] = {**infos[7], "full": full}
    return {**data, "arch2infos": infos}


@pytest.mark.parametrize(
    "mangle, message",
    [
        (lambda d: _without(d, "arch2infos"), "missing arch2infos"),
        (lambda d: _without(d, "meta_archs"), "missing meta_archs"),
        (_swapped_archs, "arch 0 is .* but the official order has"),
        (_results_for_other_arch, "results of arch index 0 are for"),
        (_without_full, "arch index 7 has no 'full'"),
        (_broken_results, "arch index 7: malformed 200-epoch results"),
        (lambda d: {**d, "evaluated_indexes": [0, 99999]}, "evaluated index 99999"),
        (lambda d: {**d, "evaluated_indexes": []}, "no evaluated architectures"),
    ],
)
def test_malformed_dict_is_a_one_line_error(data, mangle, message):
    with pytest.raises(BenchmarkError, match=message) as info:
        NB201OfficialOracle(mangle(data), "cifar10")
    assert "\n" not in str(info.value)


def test_file_holding_something_else(tmp_path, cache_dir):
    path = tmp_path / "weights.pth"
    torch.save([torch.zeros(2)], path)
    with pytest.raises(BenchmarkError, match="holds a list, not a NAS-Bench-201 dict"):
        NB201OfficialOracle(path, cache_dir=cache_dir)


def test_unknown_dataset(data, pth):
    for source in (data, pth):
        with pytest.raises(BenchmarkError, match="unknown NAS-Bench-201 dataset 'mnist'"):
            NB201OfficialOracle(source, "mnist")


@pytest.mark.parametrize("zipped", [True, False])
def test_truncated_file(pth, tmp_path, cache_dir, zipped):
    full = tmp_path / "full.pth"
    torch.save(torch.load(pth, weights_only=True), full, _use_new_zipfile_serialization=zipped)
    cut = tmp_path / "NAS-Bench-201-v1_1-096897.pth"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    with pytest.raises(BenchmarkError, match="cannot read .*complete, uncorrupted") as info:
        NB201OfficialOracle(cut, cache_dir=cache_dir)
    assert "\n" not in str(info.value)
    assert not cache_dir.exists()


@pytest.mark.parametrize(
    "content",
    [b"", b"this is not a pickle at all" * 10, pickle.dumps(torch.zeros(3).tolist())],
    ids=["empty", "garbage", "plain-pickle-list"],
)
def test_corrupt_or_foreign_file(tmp_path, cache_dir, content):
    path = tmp_path / "x.pth"
    path.write_bytes(content)
    with pytest.raises(BenchmarkError) as info:
        NB201OfficialOracle(path, cache_dir=cache_dir)
    assert "\n" not in str(info.value)


def test_missing_file(tmp_path):
    with pytest.raises(BenchmarkError, match="benchmark file not found"):
        NB201OfficialOracle(tmp_path / "NAS-Bench-201-v1_1-096897.pth")


def _nasflow(*args, home):
    # without $NASFLOW_CACHE the cache's default home is ~/.nasflow/cache
    env = {**{k: v for k, v in os.environ.items() if k != "NASFLOW_CACHE"}, "HOME": str(home)}
    return subprocess.run(
        [sys.executable, "-m", "nasflow.cli.main", *args], capture_output=True, text=True, env=env, timeout=120
    )


def test_cli_info_reads_the_official_file_and_caches_under_home(pth, tmp_path):
    out = _nasflow("info", "--space", "nb201", "--benchmark", str(pth), "--dataset", "cifar100", home=tmp_path)
    assert out.returncode == 0, out.stderr
    top = NB201Space().arch_at(INDEXES[-1]).key
    last = len(INDEXES) - 1
    assert f"best valid {seed_mean(last, 'cifar100', 'x-valid'):.4f}  {top}" in out.stdout
    assert f"best test  {seed_mean(last, 'cifar100', 'x-test'):.4f}  {top}" in out.stdout
    assert "5 cells" in out.stdout
    assert len(list((tmp_path / ".nasflow" / "cache").glob("NAS-Bench-201-v1_1-096897.pth.*.csv"))) == 1


def test_cli_bad_official_file_is_one_line_exit_2(tmp_path):
    bad = tmp_path / "NAS-Bench-201-v1_1-096897.pth"
    bad.write_bytes(b"\x80\x02garbage")
    out = _nasflow("info", "--space", "nb201", "--benchmark", str(bad), home=tmp_path)
    assert out.returncode == 2
    assert out.stderr.startswith("nasflow: error: cannot read") and len(out.stderr.strip().splitlines()) == 1
