"""The run spec: defaults, identity (resume and study matching), JSON round trip, and old journals."""
import dataclasses
import json

import pytest

from nasflow.errors import NasflowError
from nasflow.experiments.runs import complete, continued, resumed, run_search, searcher_pools, warm_start_searchers
from nasflow.journal import JournalError
from nasflow.spec import (DEFAULT_BUDGET, DEFAULT_POOL, PREDICTOR_SEEDS, TRAINING_BUDGET, RunSpec, SpecError,
                          SpecMismatch, json_safe, mismatch)


def test_defaults_fill_what_is_not_given():
    spec = complete({"seed": 3, "explore": None})
    assert (spec.space, spec.searcher, spec.predictor, spec.seed, spec.explore) == ("nb201", "evolution", "none", 3, 0.2)
    assert spec.budget == DEFAULT_BUDGET and spec.pool == DEFAULT_POOL and spec.batch == 1
    assert spec.predictor_seed is None and spec.resolved_predictor_seed == 3 % PREDICTOR_SEEDS
    assert complete({"training": {}}).budget == TRAINING_BUDGET  # a real training costs seconds per query


def test_the_pool_default_is_the_one_the_searcher_declares():
    assert searcher_pools() == {"tpe": 25}
    assert complete({"searcher": "tpe"}).pool == 25 and complete({"searcher": "random"}).pool == DEFAULT_POOL
    assert complete({"searcher": "tpe", "pool": 7}).pool == 7
    assert warm_start_searchers() == ["evolution", "bananas", "local", "nsga2", "hvi"]


def test_a_benchmark_is_resolved_and_replaces_training(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    spec = complete({"benchmark": "table.csv", "training": {"epochs": 3}})
    assert spec.benchmark == str(tmp_path.resolve() / "table.csv") and spec.training is None
    assert spec.budget == DEFAULT_BUDGET


@pytest.mark.parametrize("given, message", [
    ({"seed": -1}, "seed must be an integer in 0..4294967295, got -1"),
    ({"seed": True}, "seed must be an integer"),
    ({"predictor_seed": 2**32}, "predictor seed must be an integer in 0..4294967295"),
    ({"sede": 1}, "unknown run setting 'sede'; the settings are space, searcher"),
])
def test_bad_settings_are_one_line_errors(given, message):
    with pytest.raises(SpecError, match=message) as e:
        complete(given)
    assert isinstance(e.value, NasflowError) and "\n" not in str(e.value)


def test_the_spec_is_frozen_and_owns_its_dicts():
    training = {"epochs": 1}
    spec = complete({"training": training})
    training["epochs"] = 9
    assert spec.training == {"epochs": 1}
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.seed = 4


def test_json_round_trip():
    spec = complete({"searcher": "bananas", "predictor": "fgp", "seed": 7, "predictor_seed": 2, "warm_start": "synflow:50",
                     "training": {"epochs": 2, "lr": 0.05}, "hardware": {"device": "cpu"},
                     "predictor_options": {"dim": 16, "layers": [1, 2]}})
    text = json.dumps(spec.to_json())  # standard JSON, no custom encoder
    assert RunSpec.from_json(json.loads(text)) == spec
    assert dict(spec) == spec.to_json() and spec["budget"] == spec.budget == TRAINING_BUDGET
    # a header's keys that are not settings are not the spec's
    assert RunSpec.from_json({**spec.to_json(), "format": "nasflow-journal", "version": 1, "oracle": "x"}) == spec
    with pytest.raises(SpecError, match="must be a JSON object"):
        RunSpec.from_json(["nb201"])


def test_json_safe_makes_standard_json():
    import numpy as np

    value = {"a": float("nan"), "b": (np.float32(1.5), np.int64(2)), 3: float("inf"), "c": object}
    assert json_safe(value) == {"a": None, "b": [1.5, 2], "3": None, "c": str(object)}
    assert json_safe(complete({})) == complete({}).to_json()  # the spec reads as a mapping


def test_continued_keeps_the_identity_and_takes_budget_and_hardware():
    stored = complete({"seed": 2, "training": {"epochs": 1}, "hardware": {"device": "cpu"}}).to_json()
    spec = continued(stored, {"seed": 2, "budget": 80, "hardware": {"device": "cuda"}, "training": {}, "pool": None})
    assert (spec.seed, spec.budget, spec.hardware, spec.training) == (2, 80, {"device": "cuda"}, {"epochs": 1})
    assert continued(stored, {}).hardware == {"device": "cpu"}  # no hardware given: the run's own
    for given, detail in (({"seed": 5}, "seed=2, not 5"), ({"searcher": "tpe"}, "searcher='evolution', not 'tpe'"),
                          ({"training": {"epochs": 3}}, "training={'epochs': 1}, not {'epochs': 3}")):
        with pytest.raises(SpecMismatch) as e:
            continued(stored, given)
        assert e.value.detail == detail


def test_mismatch_compares_identity_settings_both_sides_hold():
    stored = {"space": "nb201", "seed": 1, "budget": 10}
    assert mismatch(stored, {"seed": 1, "benchmark": "x.csv", "budget": 99}) is None  # budget is not identity
    assert mismatch(stored, {"space": "nb101", "seed": 2}) == "space='nb201', not 'nb101'"  # the first, in IDENTITY order
    assert mismatch({"explore": 0.2, "predictor_options": {"dim": [1]}}, {"explore": 0.2, "predictor_options": {"dim": (1,)}}) is None


# The journal of `nasflow search --searcher evolution --budget 12 --seed 2 --benchmark nb201_cifar.csv`
# as the version before RunSpec wrote it (its header is that version's settings dict), cut after 5 queries.
OLD_HEADER = {"format": "nasflow-journal", "version": 1, "space": "nb201", "seed": 2, "searcher": "evolution",
              "predictor": "none", "budget": 12, "pool": 100, "batch": 1, "refit_every": 5, "warmup": 10, "explore": 0.2,
              "dataset": "cifar10", "benchmark": "BENCHMARK", "predictor_seed": None, "training": None,
              "hardware": None, "predictor_options": None, "warm_start": None,
              "oracle": "benchmark BENCHMARK (cifar10)"}
OLD_CELLS = [  # all 12 queries of that run, by the old version
    "|avg_pool_3x3~0|+|skip_connect~0|none~1|+|skip_connect~0|nor_conv_1x1~1|avg_pool_3x3~2|",
    "|skip_connect~0|+|avg_pool_3x3~0|skip_connect~1|+|avg_pool_3x3~0|none~1|skip_connect~2|",
    "|nor_conv_1x1~0|+|avg_pool_3x3~0|skip_connect~1|+|avg_pool_3x3~0|nor_conv_3x3~1|skip_connect~2|",
    "|avg_pool_3x3~0|+|skip_connect~0|skip_connect~1|+|nor_conv_1x1~0|nor_conv_3x3~1|nor_conv_1x1~2|",
    "|avg_pool_3x3~0|+|nor_conv_1x1~0|nor_conv_1x1~1|+|nor_conv_3x3~0|none~1|skip_connect~2|",
    "|nor_conv_3x3~0|+|avg_pool_3x3~0|none~1|+|nor_conv_3x3~0|nor_conv_1x1~1|nor_conv_1x1~2|",
    "|skip_connect~0|+|avg_pool_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|",
    "|nor_conv_3x3~0|+|none~0|avg_pool_3x3~1|+|nor_conv_3x3~0|skip_connect~1|avg_pool_3x3~2|",
    "|nor_conv_1x1~0|+|none~0|avg_pool_3x3~1|+|none~0|none~1|none~2|",
    "|avg_pool_3x3~0|+|nor_conv_1x1~0|avg_pool_3x3~1|+|nor_conv_1x1~0|avg_pool_3x3~1|skip_connect~2|",
    "|nor_conv_3x3~0|+|avg_pool_3x3~0|nor_conv_1x1~1|+|none~0|nor_conv_3x3~1|nor_conv_1x1~2|",
    "|nor_conv_1x1~0|+|skip_connect~0|nor_conv_3x3~1|+|skip_connect~0|none~1|skip_connect~2|",
]
OLD_VALID = [81.964, 58.832, 85.8133, 87.908, 88.768]


def _old_journal(run_dir, header, benchmark):
    run_dir.mkdir()
    header = json.loads(json.dumps(header).replace("BENCHMARK", str(benchmark)))
    lines = [json.dumps(header)] + [
        json.dumps({"i": i, "arch": cell, "valid": valid, "test": None, "cost": None, "extra": {}, "seconds": 1e-5})
        for i, (cell, valid) in enumerate(zip(OLD_CELLS, OLD_VALID))]
    (run_dir / "journal.jsonl").write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize("dropped", [(), ("predictor_seed", "training", "hardware", "predictor_options", "warm_start")])
def test_a_run_journaled_by_the_previous_version_resumes_to_its_trajectory(nb201_csv, tmp_path, dropped):
    """Also from a header older still, written before the dropped settings existed: they take their defaults."""
    run_dir = tmp_path / "old"
    _old_journal(run_dir, {k: v for k, v in OLD_HEADER.items() if k not in dropped}, nb201_csv)
    header = (run_dir / "journal.jsonl").read_text().splitlines()[0]
    spec = resumed(run_dir, {"budget": None, "seed": 2})
    assert spec == complete({"seed": 2, "budget": 12, "benchmark": nb201_csv})
    result = run_search(spec, run_dir=run_dir, resume=True)
    assert [q.arch for q in result.trajectory] == OLD_CELLS and result.resumed_queries == 5
    assert (run_dir / "journal.jsonl").read_text().splitlines()[0] == header  # kept as the old version wrote it


def test_resuming_an_old_journal_with_other_settings_names_the_run(nb201_csv, tmp_path):
    run_dir = tmp_path / "old"
    _old_journal(run_dir, OLD_HEADER, nb201_csv)
    with pytest.raises(JournalError, match=f"^{run_dir} was made with seed=2, not 3; resume it without changing"):
        resumed(run_dir, {"seed": 3})


def test_compare_reruns_a_stored_run_only_when_its_settings_differ(nb201_csv, tmp_path):
    from nasflow.experiments.compare import compare

    base = {"benchmark": str(nb201_csv), "budget": 6}
    first, = compare(["random"], ["none"], 1, tmp_path, base=base)
    path = tmp_path / "runs" / "random-none-seed0.json"
    assert first["settings"] == complete({**base, "searcher": "random", "seed": 0}).to_json()
    path.write_text(json.dumps({**first, "marker": 1}))
    assert compare(["random"], ["none"], 1, tmp_path, base=base)[0]["marker"] == 1  # same settings: reused
    for stored in ({**first["settings"], "explore": 0.5}, ["not", "settings"]):  # other settings, a damaged record
        path.write_text(json.dumps({**first, "settings": stored, "marker": 1}))
        again, = compare(["random"], ["none"], 1, tmp_path, base=base)
        assert "marker" not in again and again["settings"] == first["settings"]
