"""Cost metrics and constrained search (issue 21): constraints parsed, metrics tables read, only feasible
cells proposed by every searcher, the feasible optimum reported, bad input refused in one line."""
import csv
import json

import numpy as np
import pytest

from clirun import run_cli
from nasflow.cost_metrics import (
    Constraint, ConstraintError, CostMetrics, MetricsTable, feasible_space, parse_constraint, parse_constraints,
)
from nasflow.errors import BenchmarkError

CELL = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|"
OTHER = "|avg_pool_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|nor_conv_1x1~0|skip_connect~1|skip_connect~2|"


def refused(done, message):
    lines = done.stderr.strip().splitlines()
    return done.returncode == 2 and len(lines) == 1 and lines[0].startswith("nasflow: error:") and message in lines[0]


# ---------------------------------------------------------------- constraints


@pytest.mark.parametrize("text, expected", [
    ("params<=1.0M", Constraint("params", "<=", 1e6)),
    ("pixel3 < 20", Constraint("pixel3", "<", 20.0)),
    ("flops>=50K", Constraint("flops", ">=", 5e4)),
    ("flops>2.5G", Constraint("flops", ">", 2.5e9)),
    ("titan_rtx_256<=1e1", Constraint("titan_rtx_256", "<=", 10.0)),
    ("params<=500k", Constraint("params", "<=", 5e5)),
])
def test_a_constraint_reads_metric_operator_and_bound_with_its_suffix(text, expected):
    assert parse_constraint(text) == expected


@pytest.mark.parametrize("text", ["params=<1M", "params<=", "<=5", "params<=5m", "params<=1MB", "params", "params==3",
                                  "pixel3<=20 ms", ""])
def test_a_malformed_constraint_is_one_line(text):
    with pytest.raises(ConstraintError, match="METRIC<=BOUND"):
        parse_constraint(text)


def test_constraints_are_canonical_sorted_and_unique():
    # one run's identity: the same constraints written differently or in another order are the same run
    assert tuple(map(str, parse_constraints(["pixel3<=20", "params<=0.5M", "params<=500K"]))) == \
        ("params<=500000", "pixel3<=20")
    assert parse_constraints(None) == () and parse_constraints("flops<1M") == (Constraint("flops", "<", 1e6),)


def test_holds_applies_each_operator_at_the_bound():
    values = np.array([1.0, 2.0, 3.0])
    assert parse_constraint("m<=2").holds(values).tolist() == [True, True, False]
    assert parse_constraint("m<2").holds(values).tolist() == [True, False, False]
    assert parse_constraint("m>=2").holds(values).tolist() == [False, True, True]
    assert parse_constraint("m>2").holds(values).tolist() == [False, False, True]


# ---------------------------------------------------------------- metrics tables


def write_table(path, rows, header=("index", "arch", "cpu", "device")):
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows([header, *rows])
    return path


def test_a_metrics_table_has_one_metric_per_numeric_column(nb201, tmp_path):
    path = write_table(tmp_path / "m.csv", [(0, CELL, 1.5, "phone"), (1, OTHER, 0.25, "phone")])
    table = MetricsTable(path, nb201)
    assert table.metrics == ("cpu",)  # index identifies a row; a text column is no metric
    assert table.values("cpu", [nb201.parse(OTHER), nb201.parse(CELL)]).tolist() == [0.25, 1.5]
    with pytest.raises(BenchmarkError, match="no row for 1 of the 1 cells"):
        table.values("cpu", [nb201.parse("|none~0|+|none~0|none~1|+|none~0|none~1|none~2|")])


@pytest.mark.parametrize("rows, message", [
    ([(0, CELL, 1.5, 2), (1, OTHER, "fast", 2)], "m.csv:3: column cpu is not a number"),
    ([(0, CELL, 1.5, 2), (1, "123456", 1.0, 2)], "m.csv:3:"),
    ([(0, CELL, 1.5, 2), (1, CELL, 1.0, 2)], "appears twice"),
    ([(0, CELL, 1.5)], "expected 4 fields"),
])
def test_a_bad_metrics_table_is_one_line_naming_its_line(nb201, tmp_path, rows, message):
    with pytest.raises(BenchmarkError, match=message) as e:
        MetricsTable(write_table(tmp_path / "m.csv", rows), nb201)
    assert "\n" not in str(e.value) and "must be nb201 cells" in str(e.value)


def test_a_metrics_table_without_an_arch_column_is_refused(nb201, tmp_path):
    with pytest.raises(BenchmarkError, match="has no 'arch' column"):
        MetricsTable(write_table(tmp_path / "m.csv", [(CELL, 1.0)], header=("cell", "cpu")), nb201)


def test_a_metrics_table_is_found_like_a_benchmark_file(nb201, tmp_path, monkeypatch):
    from nasflow.cost_metrics import open_metrics_table

    (tmp_path / "nb201").mkdir()
    write_table(tmp_path / "nb201" / "lat.csv", [(0, CELL, 1.5, 2)])
    monkeypatch.setenv("NASFLOW_BENCHMARKS", str(tmp_path))
    assert open_metrics_table("lat.csv", nb201).path == (tmp_path / "nb201" / "lat.csv").resolve()
    with pytest.raises(BenchmarkError, match="metrics table not found: nothere.csv"):
        open_metrics_table("nothere.csv", nb201)


def test_unknown_metric_names_the_known_ones(nb201, tmp_path):
    table = MetricsTable(write_table(tmp_path / "m.csv", [(0, CELL, 1.5, 2)]), nb201)
    with pytest.raises(ConstraintError, match="metrics of nb201 are params, flops, latency, cpu, device"):
        CostMetrics(nb201, table).check("gpu")
    with pytest.raises(ConstraintError, match="pass --metrics-table"):
        CostMetrics(nb201).check("cpu")


# ---------------------------------------------------------------- the feasible cells


@pytest.fixture(scope="module")
def latency_csv(benchmarks_dir):
    return benchmarks_dir / "nb201" / "nb201_latency_ms.csv"


@pytest.fixture(scope="module")
def truth(nb201, latency_csv):
    """The feasible cells of the issue's constraints computed without nasflow.cost_metrics."""
    with open(latency_csv) as f:
        rows = list(csv.DictReader(f))
    pixel3 = {nb201.parse(r["arch"]): float(r["pixel3"]) for r in rows}
    cells = nb201.enumerate()
    params = nb201.network_counts(cells)["params"]
    bound = float(np.median(list(pixel3.values())))
    feasible = {a for a, p in zip(cells, params) if p <= 500_000 and pixel3[a] <= bound}
    return [f"pixel3<={bound:.12g}", "params<=0.5M"], feasible


def test_the_feasible_space_is_exactly_the_cells_that_satisfy_every_constraint(nb201, latency_csv, truth):
    constraints, feasible = truth
    metrics = CostMetrics(nb201, MetricsTable(latency_csv, nb201))
    space = feasible_space(nb201, parse_constraints(constraints), metrics)
    assert set(space.cells) == feasible and 0 < len(feasible) < nb201.size


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """One cache for the module's runs: the closed-form params of 15,625 cells are computed once."""
    return tmp_path_factory.mktemp("cache")


def run(*args, cache):
    return run_cli(*map(str, args), cache=cache)


@pytest.mark.parametrize("searcher, predictor", [("random", "none"), ("evolution", "none"), ("tpe", "none"),
                                                 ("local", "none"), ("bananas", "none"), ("evolution", "scratch")])
def test_every_searcher_proposes_only_feasible_cells(nb201, nb201_csv, latency_csv, truth, tmp_path, cache, searcher, predictor):
    constraints, feasible = truth
    done = run("search", "--searcher", searcher, "--predictor", predictor, "--budget", 14, "--benchmark", nb201_csv,
               "--metrics-table", latency_csv, *[a for c in constraints for a in ("--constraint", c)],
               "--seed", 3, "--out", tmp_path / "r", cache=cache)
    assert done.returncode == 0, done.stderr
    with open(tmp_path / "r" / "trajectory.csv") as f:
        queried = [nb201.parse(r["arch"]) for r in csv.DictReader(f)]
    assert len(queried) == 14 and set(queried) <= feasible
    assert f"restricted to the {len(feasible):,d} feasible cells (of 15,625 in nb201)" in done.stdout


def test_the_summary_reports_the_feasible_optimum(nb201, nb201_csv, nb201_oracle, latency_csv, truth, tmp_path, cache):
    constraints, feasible = truth
    best_valid = max(nb201_oracle.query(a).valid for a in feasible)
    best_test = max(nb201_oracle.query(a).test for a in feasible)
    assert best_valid < nb201_oracle.best("valid")[1]  # the constraints cut the table's best cell
    done = run("search", "--searcher", "random", "--budget", 10, "--benchmark", nb201_csv, "--metrics-table", latency_csv,
               *[a for c in constraints for a in ("--constraint", c)], "--out", tmp_path / "r", cache=cache)
    assert done.returncode == 0, done.stderr
    result = json.loads((tmp_path / "r" / "result.json").read_text())
    assert result["optimum_valid"] == pytest.approx(best_valid) and result["optimum_test"] == pytest.approx(best_test)
    assert result["config"]["constraints"] == ["params<=500000", constraints[0]]
    assert f"to the table's feasible best {best_valid:.4f}" in done.stdout
    assert "optimum    feasible best-valid cell" in done.stdout


# ---------------------------------------------------------------- bad input, through the CLI


@pytest.mark.parametrize("args, message", [
    (["--constraint", "pixle3<=20"], "unknown metric 'pixle3': the metrics of nb201 are params, flops, latency, gold_6226"),
    (["--constraint", "pixel3=<20"], "cannot read the constraint 'pixel3=<20'"),
    (["--constraint", "pixel3<=0.001", "--constraint", "params<=0.5M"], "no cell of nb201 satisfies params<=500000, pixel3<=0.001"),
    (["--constraint", "params<=100K", "--budget", 800], "budget 800 exceeds the 729 cells of nb201 that satisfy"),
])
def test_bad_constraints_are_one_line_before_any_work(nb201_csv, latency_csv, tmp_path, cache, args, message):
    done = run("search", "--benchmark", nb201_csv, "--metrics-table", latency_csv, *args, "--out", tmp_path / "r",
               cache=cache)
    assert refused(done, message), done.stderr
    assert not (tmp_path / "r").exists()


def test_a_metrics_table_of_another_space_is_one_line(nb201_csv, benchmarks_dir, tmp_path, cache):
    done = run("search", "--benchmark", nb201_csv, "--metrics-table", benchmarks_dir / "tnb101" / "tnb101_micro.csv",
               "--constraint", "params<=1M", "--out", tmp_path / "r", cache=cache)
    assert refused(done, "tnb101_micro.csv:2:") and "must be nb201 cells" in done.stderr


def test_constraints_without_a_table_metric_need_no_table(nb201_csv, tmp_path, cache):
    done = run("search", "--searcher", "random", "--budget", 5, "--benchmark", nb201_csv, "--constraint", "flops<=50M",
               "--out", tmp_path / "r", cache=cache)
    assert done.returncode == 0, done.stderr
    assert "feasible cells (of 15,625 in nb201): constraints flops<=50000000" in done.stdout


def test_resume_with_other_constraints_is_refused(nb201_csv, latency_csv, tmp_path, cache):
    out = tmp_path / "r"
    first = run("search", "--searcher", "random", "--budget", 5, "--benchmark", nb201_csv, "--constraint",
                "params<=0.5M", "--out", out, cache=cache)
    assert first.returncode == 0, first.stderr
    journal = (out / "journal.jsonl").read_bytes()
    done = run("search", "--resume", out, "--budget", 8, "--constraint", "params<=0.4M", cache=cache)
    assert refused(done, "constraints=['params<=500000'], not ['params<=400000']")
    assert (out / "journal.jsonl").read_bytes() == journal
    same = run("search", "--resume", out, "--budget", 8, "--constraint", "params<=500K", cache=cache)
    assert same.returncode == 0, same.stderr
    assert json.loads((out / "result.json").read_text())["queries"] == 8


def test_compare_runs_the_constrained_search(nb201_csv, latency_csv, nb201_oracle, truth, tmp_path, cache):
    constraints, feasible = truth
    done = run("compare", "--searchers", "random,evolution", "--predictor", "none", "--seeds", 2, "--budget", 6,
               "--benchmark", nb201_csv, "--metrics-table", latency_csv, "--jobs", 1,
               *[a for c in constraints for a in ("--constraint", c)], "--out", tmp_path / "cmp", cache=cache)
    assert done.returncode == 0, done.stderr
    assert f"constrained by params<=500000, {constraints[0]}: every run queried feasible cells only" in done.stdout
    records = [json.loads(p.read_text()) for p in sorted((tmp_path / "cmp" / "runs").glob("*.json"))]
    assert len(records) == 4
    best_valid = max(nb201_oracle.query(a).valid for a in feasible)
    assert all(r["optimum"]["valid"] == pytest.approx(best_valid) for r in records)


def test_a_latency_batch_without_a_latency_constraint_is_one_line(tmp_path, cache):
    done = run("search", "--latency-batch", 4, "--constraint", "params<=1M", "--budget", 3, "--out", tmp_path / "r",
               cache=cache)
    assert refused(done, "this run has no constraint or objective on latency"), done.stderr
    assert not (tmp_path / "r").exists()


def test_a_run_timed_on_one_batch_is_not_resumed_on_another():
    from nasflow.spec import RunSpec, SpecMismatch

    stored = RunSpec.complete({"constraints": ["latency<=5"], "latency_batch": 2})
    assert RunSpec.from_json(stored.to_json()) == stored
    with pytest.raises(SpecMismatch, match="latency_batch=2"):
        stored.continued({"constraints": ["latency<=5"], "latency_batch": 8})
    with pytest.raises(SpecMismatch, match="latency_batch=2"):  # given alone, as `--resume RUN --latency-batch 8`
        stored.continued({"latency_batch": 8})
    assert RunSpec.complete({}).latency_batch is None  # a header without it reads as before it existed
