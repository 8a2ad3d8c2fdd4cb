"""`--searcher-option KEY=VALUE`: options a searcher declares (evolution's population and tournament sample),
carried by the run spec so that a resumed run, a compare grid and a study's workers build the same searcher."""
import json

import pytest

from clirun import run_cli
from nasflow.errors import NasflowError
from nasflow.experiments.runs import build, complete, resumed
from nasflow.journal import JournalError
from nasflow.spec import RunSpec


def test_the_spec_holds_searcher_options_canonically_and_old_headers_have_none(nb201_csv):
    spec = complete({"benchmark": str(nb201_csv), "searcher_options": {"sample": 3, "population": 40}})
    assert list(spec.to_json()["searcher_options"]) == ["population", "sample"]  # one JSON for equal options
    assert RunSpec.from_json(spec.to_json()) == spec
    assert complete({"benchmark": str(nb201_csv), "searcher_options": {}}).searcher_options is None
    old = {k: v for k, v in complete({"benchmark": str(nb201_csv)}).to_json().items() if k != "searcher_options"}
    assert RunSpec.from_json(old).searcher_options is None  # a header written before the option existed


def test_the_built_searcher_takes_them_and_undeclared_ones_are_refused(nb201_csv):
    searcher = build(complete({"benchmark": str(nb201_csv), "searcher_options": {"population": 40, "sample": 3}})).searcher
    assert (searcher.population, searcher.sample) == (40, 3)
    assert build(complete({"benchmark": str(nb201_csv)})).searcher.population == 20  # the default is unchanged
    with pytest.raises(NasflowError, match="searcher 'random' has no option 'population'; its options are draw"):
        build(complete({"benchmark": str(nb201_csv), "searcher": "random", "searcher_options": {"population": 40}}))
    with pytest.raises(NasflowError, match="searcher 'evolution' has no option 'size'; its options are population, sample"):
        build(complete({"benchmark": str(nb201_csv), "searcher_options": {"size": 40}}))


@pytest.mark.parametrize("args, message", [
    (("--searcher-option", "population"), "--searcher-option 'population' is not KEY=VALUE"),
    (("--searcher-option", "population=1"), "evolution population must be an integer >= 2, got 1"),
    (("--searcher", "tpe", "--searcher-option", "population=40"), "searcher 'tpe' has no option 'population'"),
    (("--searcher", "random", "--searcher-option", "draw=dense"), "random search draw must be one of uniform, encoding"),
])
def test_bad_searcher_options_are_one_line_exit_2_before_any_run(nb201_csv, tmp_path, args, message):
    out = tmp_path / "bad"
    done = run_cli("search", "--benchmark", str(nb201_csv), "--budget", "5", *args, "--out", str(out), cache=tmp_path / "c")
    assert done.returncode == 2 and message in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert not (out / "journal.jsonl").exists()


def test_a_run_with_searcher_options_resumes_with_them_and_refuses_others(nb201_csv, tmp_path):
    out = tmp_path / "run"
    first = run_cli("search", "--benchmark", str(nb201_csv), "--budget", "25", "--searcher-option", "population=12",
                    "--out", str(out), cache=tmp_path / "c")
    assert first.returncode == 0, first.stderr
    header = json.loads((out / "journal.jsonl").read_text().splitlines()[0])
    assert header["searcher_options"] == {"population": 12}
    assert resumed(out, {}).searcher_options == {"population": 12}  # kept without being given again
    with pytest.raises(JournalError, match="searcher_options=\\{'population': 12\\}, not \\{'population': 30\\}"):
        resumed(out, {"searcher_options": {"population": 30}})
    again = run_cli("search", "--resume", str(out), "--budget", "30", cache=tmp_path / "c")
    assert again.returncode == 0, again.stderr
    # the same trajectory as one run of 30 with that population: the resumed run rebuilt the same searcher
    whole = run_cli("search", "--benchmark", str(nb201_csv), "--budget", "30", "--searcher-option", "population=12",
                    "--out", str(tmp_path / "whole"), cache=tmp_path / "c")
    assert whole.returncode == 0, whole.stderr
    def rows(run):  # the cells and accuracies, not the timings
        return [line.split(",")[:5] for line in (run / "trajectory.csv").read_text().splitlines()]

    assert rows(out) == rows(tmp_path / "whole")
    other = run_cli("search", "--resume", str(out), "--budget", "35", "--searcher-option", "population=30",
                    cache=tmp_path / "c")
    assert other.returncode == 2 and "searcher_options" in other.stderr


def test_compare_keeps_runs_of_other_searcher_options_apart_and_checks_every_searcher(nb201_csv, tmp_path):
    from nasflow.experiments import compare as cmp

    base = {"benchmark": str(nb201_csv), "budget": 12}
    plain = cmp.compare(["evolution"], ["none"], 1, tmp_path / "out", base=base, jobs=1)
    wide = cmp.compare(["evolution"], ["none"], 1, tmp_path / "out", base={**base, "searcher_options": {"population": 5}},
                       jobs=1)
    names = sorted(p.name for p in (tmp_path / "out" / "runs").glob("*.json"))
    assert names == ["evolution-none-seed0.json", "evolution-population-5-none-seed0.json"]
    assert plain[0]["settings"]["searcher_options"] is None and wide[0]["settings"]["searcher_options"] == {"population": 5}
    with pytest.raises(NasflowError, match="searcher 'random' has no option 'population'"):
        cmp.compare(["evolution", "random"], ["none"], 1, tmp_path / "out2", base={**base, "searcher_options": {"population": 5}},
                    jobs=1)
    assert not (tmp_path / "out2").exists()  # refused before any folder or run


def test_random_search_draws_through_the_encoding_to_the_tables_nearest_cells(nb101_jsonl):
    """draw=encoding: each encoding parameter uniform; on a partial table its nearest labelled cell, so not uniform
    over the table's cells (the peers' proposals reach NB-101's tables this way: docs/RESULTS.md)."""
    import collections

    import numpy as np

    from nasflow.restricted import restrict_to_table
    from nasflow.searchers import SearcherError, get_searcher
    from nasflow.spaces import get_space

    space = get_space("nb101")
    table = restrict_to_table(space, space.open_oracle(str(nb101_jsonl)))
    searcher = get_searcher("random", table, seed=5, draw="encoding")
    cells = searcher.ask(200)
    assert len(set(cells)) == 200 and all(c in table for c in cells)
    rng = np.random.default_rng(0)
    drawn = collections.Counter(searcher._from_encoding(rng) for _ in range(3000))
    uniform = collections.Counter(table.sample(rng) for _ in range(3000))
    # 3 draws per cell on average: uniform draws hit nearly every cell, the encoding's pile onto its attractors
    assert max(drawn.values()) > 2 * max(uniform.values()) and len(drawn) < len(uniform) - 50
    full = get_searcher("random", space, seed=5, draw="encoding").ask(20)  # the whole space: rejected draws redrawn
    assert len(set(full)) == 20
    with pytest.raises(SearcherError, match="no categorical encoding to draw from"):
        get_searcher("random", type("Plain", (), {"name": "plain", "categorical": None})(), draw="encoding")
