"""A search restricted to a partial table's cells (nasflow.restricted): every way a searcher reaches a cell
stays inside the table, on NB-201 subsets (fast) and the 1,000-cell NB-101 table."""
import csv
import json
import subprocess
import sys

import numpy as np
import pytest

from nasflow.core import SearchSpace
from nasflow.errors import SpaceError
from nasflow.experiments.runs import run_search
from nasflow.restricted import RestrictedSpace, restrict_to_table, restriction_of
from nasflow.spaces import get_space

nb201 = get_space("nb201")


def nasflow(*args):
    return subprocess.run([sys.executable, "-m", "nasflow.cli.main", *map(str, args)], capture_output=True, text=True)


def write_subset(nb201_csv, path, every: int = 50, drop=()):
    """Every ``every``-th row of the NB-201 table, without the cells in ``drop``."""
    with open(nb201_csv, newline="") as f:
        rows = list(csv.reader(f))
    kept = [r for i, r in enumerate(rows[1:]) if i % every == 0 and r[1] not in drop]
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows([rows[0]] + kept)
    return path, [nb201.parse(r[1]) for r in kept]


@pytest.fixture(scope="module")
def subset(nb201_oracle):
    cells = nb201_oracle.archs()[::50]
    return RestrictedSpace(nb201, cells, "every 50th cell")


def test_sampling_enumeration_and_moves_stay_inside(subset):
    inside = set(subset.cells)
    rng = np.random.default_rng(0)
    assert subset.size == len(inside) == 313 and subset.enumerable and set(subset.enumerate()) == inside
    assert {subset.sample(rng) for _ in range(5000)} == inside  # uniform: 5,000 draws reach all 313
    for cell in subset.cells[:40]:
        near = subset.neighbours(cell)
        assert set(near) <= inside and cell not in near
        assert set(near) == {a for a in nb201.neighbours(cell) if a in inside}
        child = subset.mutate(cell, rng)
        assert child in inside and child != cell


def test_a_cell_without_in_table_neighbours_moves_to_the_nearest_cells():
    base = nb201.parse("|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|")
    two_away = nb201.parse("|none~0|+|none~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|")
    also_two = nb201.parse("|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|none~0|none~1|nor_conv_3x3~2|")
    far = nb201.parse("|none~0|+|none~0|none~1|+|none~0|none~1|nor_conv_3x3~2|")
    space = RestrictedSpace(nb201, [base, two_away, also_two, far])
    assert space.neighbours(base) == []  # nothing one op change away: the edit-distance fallback decides
    children = {space.mutate(base, np.random.default_rng(s)) for s in range(30)}
    assert children == {two_away, also_two}  # both nearest cells, never the farther one or the cell itself
    # a cell outside the table moves into it too
    outside = nb201.parse("|avg_pool_3x3~0|+|none~0|none~1|+|none~0|none~1|nor_conv_3x3~2|")
    assert space.mutate(outside, np.random.default_rng(0)) == far


def test_one_cell_has_nothing_to_mutate_to():
    cell = nb201.arch_at(7)
    with pytest.raises(SpaceError, match="one cell"):
        RestrictedSpace(nb201, [cell]).mutate(cell, np.random.default_rng(0))


def test_tpe_suggestions_decode_into_the_table_deterministically(subset):
    encoding = subset.categorical
    assert dict(encoding.choices) == dict(nb201.categorical.choices)
    inside = subset.cells[5]
    assert encoding.decode(encoding.encode(inside)) == inside  # a table cell is itself
    rng = np.random.default_rng(1)
    for _ in range(50):
        params = {name: values[rng.integers(len(values))] for name, values in encoding.choices.items()}
        cell = encoding.decode(params)
        assert cell in subset and encoding.decode(params) == cell
        # no table cell is nearer to the suggestion than the one it decoded to
        differ = lambda a: sum(v != params[k] for k, v in encoding.encode(a).items())  # noqa: E731
        assert differ(cell) == min(map(differ, subset.cells))


def test_the_restricted_space_is_the_inner_space_for_everything_else(subset):
    cell = subset.cells[3]
    assert isinstance(subset, SearchSpace)
    assert subset.name == "nb201" and subset.vocab == nb201.vocab and subset.unified_ops == nb201.unified_ops
    assert subset.to_graph(cell) == nb201.to_graph(cell) and subset.parse(subset.format(cell)) == cell
    assert subset.arch_at(3) == cell and subset.network is not None


def test_a_complete_table_keeps_the_whole_space(nb201_oracle, tmp_path, nb201_csv):
    assert restrict_to_table(nb201, nb201_oracle) is nb201 and restriction_of(nb201) is None
    path, cells = write_subset(nb201_csv, tmp_path / "t.csv", every=500)
    restricted = restrict_to_table(nb201, nb201.open_oracle(str(path)))
    assert isinstance(restricted, RestrictedSpace) and set(restricted.cells) == set(cells)
    assert restriction_of(restricted)["cells"] == len(cells) == 32


@pytest.mark.parametrize("searcher", ["random", "evolution", "tpe", "bananas"])
def test_every_searcher_queries_only_table_cells(nb201_csv, tmp_path, searcher):
    path, cells = write_subset(nb201_csv, tmp_path / "t.csv")
    result = run_search({"searcher": searcher, "benchmark": str(path), "budget": 60, "seed": 3,
                         "warm_start": None})
    queried = [nb201.parse(q.arch) for q in result.trajectory]
    assert len(set(queried)) == 60 and set(queried) <= set(cells)
    assert result.config["restricted"]["cells"] == 313 and result.config["restricted"]["of"] == 15_625


def test_a_warm_start_draws_its_samples_inside(nb201_csv, tmp_path):
    from nasflow.experiments.warm_start import warm_start_cells

    path, cells = write_subset(nb201_csv, tmp_path / "t.csv", every=100)
    restricted = restrict_to_table(nb201, nb201.open_oracle(str(path)))
    ranked = warm_start_cells(restricted, "params:100", seed=0)
    assert ranked and set(ranked) <= set(cells)


def test_nb101_thousand_cell_search_stays_inside(nb101_jsonl):
    from nasflow.spaces.nb101_table import NB101TableOracle

    inside = set(NB101TableOracle(nb101_jsonl).archs())
    for searcher in ("evolution", "tpe"):
        result = run_search({"space": "nb101", "searcher": searcher, "benchmark": str(nb101_jsonl), "budget": 40})
        assert {q.arch for q in result.trajectory} <= {get_space("nb101").format(a) for a in inside}


# ---------------------------------------------------------------- through the CLI


def test_cli_summary_says_the_search_was_restricted(nb201_csv, tmp_path):
    path, _ = write_subset(nb201_csv, tmp_path / "t.csv")
    done = nasflow("search", "--searcher", "evolution", "--budget", 20, "--benchmark", path, "--out", tmp_path / "r")
    assert done.returncode == 0, done.stderr
    assert f"restricted to the 313 labelled cells of {path} (of 15,625 in nb201)" in done.stdout
    config = json.loads((tmp_path / "r" / "result.json").read_text())["config"]
    assert config["restricted"]["cells"] == 313 and len(config["restricted"]["fingerprint"]) == 16


def test_cli_whole_table_says_nothing_of_a_restriction(nb201_csv, tmp_path):
    done = nasflow("search", "--searcher", "random", "--budget", 5, "--benchmark", nb201_csv, "--out", tmp_path / "r")
    assert done.returncode == 0 and "restricted" not in done.stdout
    assert "restricted" not in json.loads((tmp_path / "r" / "result.json").read_text())["config"]


def test_resume_keeps_the_restriction_and_refuses_another(nb201_csv, tmp_path):
    path, cells = write_subset(nb201_csv, tmp_path / "t.csv")
    run = tmp_path / "r"
    assert nasflow("search", "--searcher", "evolution", "--budget", 20, "--benchmark", path, "--out", run).returncode == 0
    queried = {r["arch"] for r in map(json.loads, (run / "journal.jsonl").read_text().splitlines()[1:])}
    # the same table: the run goes on inside it
    done = nasflow("search", "--resume", run, "--budget", 30)
    assert done.returncode == 0, done.stderr
    assert "restricted to the 313 labelled cells" in done.stdout
    # the table edited in between (an unqueried cell gone): the resumed run would search other cells
    spare = next(nb201.format(c) for c in cells if nb201.format(c) not in queried)
    write_subset(nb201_csv, path, drop={spare})
    journal = (run / "journal.jsonl").read_bytes()
    done = nasflow("search", "--resume", run, "--budget", 40)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1 and "was made with restricted=" in lines[0], done.stderr
    assert (run / "journal.jsonl").read_bytes() == journal


def test_a_study_refuses_a_worker_whose_table_gives_other_cells(nb201_csv, tmp_path):
    from nasflow.experiments.distributed import DistributedError, run_study

    path, cells = write_subset(nb201_csv, tmp_path / "t.csv")
    url = f"sqlite:///{tmp_path / 'study.db'}"
    given = {"space": "nb201", "searcher": "random", "predictor": "none", "budget": 6, "benchmark": str(path)}
    first = run_study(given, url, "s")
    assert first.config["restricted"]["cells"] == 313
    assert run_study({**given, "budget": 8}, url, "s").config["restricted"] == first.config["restricted"]  # same table: joins
    queried = {q.arch for q in first.trajectory}
    write_subset(nb201_csv, path, drop={next(nb201.format(c) for c in cells if nb201.format(c) not in queried)})
    with pytest.raises(DistributedError, match="searches the cells its table held when it was made"):
        run_study({**given, "budget": 10}, url, "s")
