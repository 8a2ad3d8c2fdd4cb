"""Zero-cost warm start: the searchers' first cells are the best of many uniform samples by a proxy.

The tests use ``flops`` (counted, not trained: microseconds per cell) and a private proxy cache.
"""
import json

import numpy as np
import pytest

from nasflow.errors import NasflowError
from nasflow.proxies import zero_cost
from nasflow.searchers import get_searcher
from nasflow.experiments.warm_start import DEFAULT_SAMPLES, parse, warm_start_cells

from test_search_cli import nasflow


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("NASFLOW_CACHE", str(tmp_path / "cache"))


def test_parse():
    assert parse("synflow") == ("synflow", DEFAULT_SAMPLES)
    assert parse("flops:300") == ("flops", 300)
    for bad, message in [("bogus", "unknown zero-cost proxy 'bogus'"), ("flops:0", "samples must be an integer >= 1"),
                         ("flops:many", "samples must be an integer >= 1"), ("", "warm start must be PROXY")]:
        with pytest.raises(NasflowError, match=message):
            parse(bad)


def test_cells_are_the_samples_best_proxy_first(nb201):
    cells = warm_start_cells(nb201, "flops:200", seed=3)
    assert 150 < len(cells) <= 200 and len(set(cells)) == len(cells)
    scores = zero_cost(nb201, cells, "flops")
    assert np.all(np.diff(scores) <= 0) and scores[0] > np.median(scores)
    assert warm_start_cells(nb201, "flops:200", seed=3) == cells
    assert set(warm_start_cells(nb201, "flops:200", seed=4)) != set(cells)
    assert warm_start_cells(nb201, None, seed=3) == []


@pytest.mark.parametrize("name, start", [("evolution", 20), ("bananas", 10)])
def test_searchers_start_from_the_design_in_order(nb201, nb201_oracle, name, start):
    design = warm_start_cells(nb201, "flops:100", seed=0)
    options = {"members": 2, "candidates": 20} if name == "bananas" else {}
    searcher = get_searcher(name, nb201, seed=0, initial_design=design, **options)
    told = []
    for _ in range(start + 3):
        (arch,) = searcher.ask(1)
        searcher.tell(arch, nb201_oracle.query(arch))
        told.append(arch)
    assert told[:start] == design[:start]
    # afterwards the searcher proposes from what it learned, not from the rest of the design
    assert told[start:] != design[start : start + 3]


def test_a_used_up_design_falls_back_to_distinct_uniform_samples(nb201, nb201_oracle):
    design = warm_start_cells(nb201, "flops:100", seed=0)[:3]
    searcher = get_searcher("evolution", nb201, seed=0, population=8, initial_design=design)
    first = searcher.ask(8)
    assert first[:3] == design and len(set(first)) == 8


def test_search_cli_warm_start_is_journalled_and_kept_on_resume(nb201, nb201_csv, tmp_path):
    out = tmp_path / "run"
    done = nasflow("search", "--searcher", "bananas", "--budget", 12, "--seed", 1, "--warm-start", "flops:100",
                   "--benchmark", nb201_csv, "--out", out)
    assert done.returncode == 0, done.stderr
    lines = (out / "journal.jsonl").read_text().splitlines()
    header, records = json.loads(lines[0]), [json.loads(x) for x in lines[1:]]
    assert header["warm_start"] == "flops:100"
    expected = [nb201.format(a) for a in warm_start_cells(nb201, "flops:100", seed=1)[:10]]
    assert [r["arch"] for r in records[:10]] == expected
    other = nasflow("search", "--resume", out, "--warm-start", "flops:50")
    assert other.returncode == 2 and "was made with warm_start='flops:100'" in other.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (["--searcher", "tpe", "--warm-start", "flops"], "--warm-start applies to evolution, bananas, local, nsga2 and hvi, not 'tpe'"),
        (["--warm-start", "bogus:10"], "unknown zero-cost proxy 'bogus'"),
        (["--warm-start", "flops:-3"], "samples must be an integer >= 1"),
    ],
)
def test_bad_warm_start_is_one_line_and_exit_2(nb201_csv, tmp_path, args, message):
    done = nasflow("search", "--benchmark", nb201_csv, "--out", tmp_path / "r", *args)
    assert done.returncode == 2 and message in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_compare_warm_starts_only_searchers_with_a_uniform_start(nb201_csv, tmp_path):
    out = tmp_path / "c"
    args = ["compare", "--searchers", "random,evolution", "--predictor", "none", "--seeds", 1, "--budget", 12,
            "--benchmark", nb201_csv, "--jobs", 1, "--out", out]
    plain = nasflow(*args)
    assert plain.returncode == 0, plain.stderr
    random_run = out / "runs" / "random-none-seed0.json"
    # a run recorded before warm starts existed has no such setting: it still matches its default
    record = json.loads(random_run.read_text())
    del record["settings"]["warm_start"]
    random_run.write_text(json.dumps(record))
    warm = nasflow(*args, "--warm-start", "flops:100")
    assert warm.returncode == 0, warm.stderr
    assert json.loads(random_run.read_text()) == record  # reused, not re-run
    evolution = json.loads((out / "runs" / "evolution-none-seed0.json").read_text())
    assert evolution["settings"]["warm_start"] == "flops:100"


def test_scoring_the_warm_start_counts_as_loop_overhead(nb201, nb201_csv, nb201_oracle):
    from nasflow.loop import search
    from nasflow.experiments.runs import build, complete

    run = build(complete({"searcher": "evolution", "benchmark": str(nb201_csv), "warm_start": "flops:50"}))
    assert run.setup_seconds > 0 and len(run.searcher.initial_design) > 40
    plain = get_searcher("random", nb201, seed=0)
    # as if the searcher had spent 5 s preparing
    result = search(nb201, nb201_oracle, plain, budget=10, seed=0, setup_seconds=5.0)
    assert result.overhead_per_query >= 0.5


def test_compare_checks_the_spec_even_without_a_searcher_that_takes_it(nb201_csv, tmp_path):
    done = nasflow("compare", "--searchers", "random,tpe", "--predictor", "none", "--seeds", 1, "--budget", 5,
                   "--warm-start", "synflow:abc", "--benchmark", nb201_csv, "--jobs", 1, "--out", tmp_path / "c")
    assert done.returncode == 2 and "samples must be an integer >= 1" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
