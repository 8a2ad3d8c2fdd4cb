"""Multi-objective search (issue 21): objectives parsed, the hypervolume gain exact, NSGA-II's survival, the
searchers that take objectives, the front report and front.png, hypervolume in compare, bad input in one line."""
import csv
import json
import itertools

import numpy as np
import pytest

from clirun import run_cli
from nasflow.core import Evaluation
from nasflow.objectives import (
    Objective, ObjectiveError, Objectives, canonical_objectives, parse_objectives, reference_point, table_points,
)
from nasflow.pareto import hypervolume, hypervolume_improvement, pareto_mask


def refused(done, message):
    lines = done.stderr.strip().splitlines()
    return done.returncode == 2 and len(lines) == 1 and lines[0].startswith("nasflow: error:") and message in lines[0]


# ---------------------------------------------------------------- objectives


def test_objectives_read_metric_and_sense_in_their_order():
    assert parse_objectives("valid,-pixel3") == (Objective("valid", "max"), Objective("pixel3", "min"))
    assert parse_objectives(" -params , +valid ") == (Objective("params", "min"), Objective("valid", "max"))
    # the run's identity: canonical strings, the order kept (the plot's axes follow it)
    assert canonical_objectives(["valid", "-titan_rtx_256"]) == ("valid", "-titan_rtx_256")
    assert canonical_objectives(None) is None


@pytest.mark.parametrize("text, message", [
    ("valid", "at least two objectives"),
    ("valid,valid", "'valid' is listed twice"),
    ("valid,-pixel3,+pixel3", "'pixel3' is listed twice"),
    ("valid,,-pixel3", "cannot read the objectives"),
    ("valid;-pixel3", "cannot read the objectives"),
    ("valid,-3d", "cannot read the objectives"),
    ("-valid,-pixel3", "maximise it"),
    ("test,-pixel3", "never what it searches on"),
])
def test_bad_objectives_are_one_line(text, message):
    with pytest.raises(ObjectiveError, match=message):
        parse_objectives(text)


# ---------------------------------------------------------------- hypervolume gain


@pytest.mark.parametrize("d", [2, 3])
def test_the_hypervolume_gain_is_the_hypervolume_with_the_candidate_minus_without(d):
    rng = np.random.default_rng(d)
    for size in (0, 1, 5):
        front = rng.random((size, d))
        candidates = np.vstack([rng.random((30, d)) * 1.2, front[:1]])  # beyond the reference, and a front point
        ref = np.ones(d)
        base = hypervolume(front, ref) if size else 0.0
        expected = [hypervolume(np.vstack([front, c]), ref) - base for c in candidates]
        assert np.allclose(hypervolume_improvement(front, candidates, ref), expected)
    assert hypervolume_improvement(np.array([[0.5, 0.5]]), np.array([[0.6, 0.6], [0.25, 0.5]]), [1, 1]).tolist() == \
        [0.0, 0.125]


# ---------------------------------------------------------------- searchers


class TwoObjectives:
    """An Objectives double: valid against a made-up cost, a fixed function of the cell."""

    senses = ("max", "min")
    names = ("valid", "cost")
    accuracy = 0

    def cost(self, arch):
        return float(sum(len(op) for op in arch.ops)) if hasattr(arch, "ops") else float(len(arch.key))

    def known_without_measuring(self, metric):
        return metric != "valid"

    def costs(self, metric, archs):
        return np.array([self.cost(a) for a in archs])

    def values(self, archs, evaluations):
        return np.array([[e.valid, self.cost(a)] for a, e in zip(archs, evaluations)])

    def points(self, archs, evaluations):
        return self.values(archs, evaluations) * np.array([-1.0, 1.0])


def test_nsga2_keeps_the_front_first_and_mutates_it(nb201, nb201_oracle):
    from nasflow.searchers import get_searcher

    objectives = TwoObjectives()
    searcher = get_searcher("nsga2", nb201, seed=3, objectives=objectives, population=6)
    for _ in range(20):
        (arch,) = searcher.ask(1)
        searcher.tell(arch, nb201_oracle.query(arch))
    members, ranks, _ = searcher.survivors()
    archs = list(searcher.history)
    points = objectives.points(archs, [searcher.history[a] for a in archs])
    on_front = {a for a, on in zip(archs, pareto_mask(points)) if on}
    kept = min(len(on_front), 6)
    # survival is elitist: the population holds the front (or as much of it as fits) before any dominated cell
    assert set(members[:kept]) <= on_front and list(ranks) == sorted(ranks)
    child = searcher.ask(1)[0]
    assert child not in searcher.history and any(child in nb201.neighbours(m) for m in members)


@pytest.mark.parametrize("name", ["random", "nsga2", "tpe", "hvi"])
def test_every_multi_objective_searcher_is_a_function_of_seed_and_history(nb201, nb201_oracle, name):
    from nasflow.searchers import get_searcher

    def make():
        options = {"population": 8} if name == "nsga2" else {"candidates": 40, "pool": "mutation"} if name == "hvi" else {}
        return get_searcher(name, nb201, seed=5, objectives=TwoObjectives(), **options)

    first = make()
    for _ in range(14):
        (arch,) = first.ask(1)
        first.tell(arch, nb201_oracle.query(arch))
    rebuilt = make()
    for arch, evaluation in first.history.items():
        rebuilt.tell(arch, evaluation)
    if name == "tpe":
        # TPE's known divergence (tests/test_contracts.py): a suggestion of a told cell is answered from the
        # history as an extra Optuna trial, which a rebuilt searcher lacks; it must be what happened here
        done = sum(t.state.name == "COMPLETE" for t in first.study.trials)
        if done > len(first.history):
            pytest.xfail("TPE answered a repeated suggestion from the history (its known resume divergence)")
    proposals = first.ask(3)
    assert rebuilt.ask(3) == proposals and not set(proposals) & set(first.history)


def test_motpe_tells_optuna_every_objective(nb201, nb201_oracle):
    from nasflow.searchers import get_searcher

    searcher = get_searcher("tpe", nb201, seed=0, objectives=TwoObjectives())
    for _ in range(4):
        (arch,) = searcher.ask(1)
        searcher.tell(arch, nb201_oracle.query(arch))
    done = [t for t in searcher.study.trials if t.state.name == "COMPLETE"]
    assert len(searcher.study.directions) == 2 and all(len(t.values) == 2 for t in done)
    arch = next(iter(searcher.history))
    assert done[0].values == [searcher.history[arch].valid, TwoObjectives().cost(arch)]


def test_the_calibration_keeps_the_ranking_and_reaches_past_the_best():
    from nasflow.searchers.hvi import calibrated

    told_scores, told_values = np.array([0.0, 1.0, 2.0, 3.0]), np.array([50.0, 80.0, 85.0, 90.0])
    out = calibrated(told_scores, told_values, np.array([-1.0, 0.5, 2.0, 4.0]))
    assert np.all(np.diff(out) > 0) and out[0] == 50.0 and out[2] == 85.0 and out[3] > 90.0


# ---------------------------------------------------------------- the CLI


@pytest.fixture(scope="module")
def latency_csv(benchmarks_dir):
    return benchmarks_dir / "nb201" / "nb201_latency_ms.csv"


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


def run(*args, cache):
    return run_cli(*map(str, args), cache=cache)


def brute_front(nb201, nb201_oracle, latency_csv, archs):
    with open(latency_csv) as f:
        pixel3 = {nb201.parse(r["arch"]): float(r["pixel3"]) for r in csv.DictReader(f)}
    points = [(a, nb201_oracle.query(a).valid, pixel3[a]) for a in archs]
    return {a for a, v, c in points if not any(v2 >= v and c2 <= c and (v2 > v or c2 < c) for _, v2, c2 in points)}


@pytest.mark.parametrize("searcher", ["nsga2", "tpe"])
def test_the_run_reports_the_front_of_its_queried_cells(nb201, nb201_oracle, nb201_csv, latency_csv, tmp_path, cache,
                                                       searcher):
    out = tmp_path / "r"
    done = run("search", "--searcher", searcher, "--budget", 25, "--benchmark", nb201_csv, "--metrics-table",
               latency_csv, "--objectives", "valid,-pixel3", "--seed", 2, "--out", out, cache=cache)
    assert done.returncode == 0, done.stderr
    queried = [nb201.parse(r["arch"]) for r in csv.DictReader(open(out / "trajectory.csv"))]
    assert len(set(queried)) == 25  # every query a distinct cell: the budget counts oracle queries only
    rows = list(csv.DictReader(open(out / "front.csv")))
    assert {nb201.parse(r["arch"]) for r in rows} == brute_front(nb201, nb201_oracle, latency_csv, queried)
    for r in rows:
        e = nb201_oracle.query(nb201.parse(r["arch"]))
        assert float(r["valid"]) == pytest.approx(e.valid) and float(r["test"]) == pytest.approx(e.test)
    report = json.loads((out / "front.json").read_text())
    curve = report["hypervolume"]
    assert len(curve) == 25 and all(b >= a for a, b in zip(curve, curve[1:]))
    assert 0 < curve[-1] <= report["true_hypervolume"]
    assert report["reference"][0] == pytest.approx(-np.median([e.valid for _, e in nb201_oracle.items()]))
    assert (out / "front.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"{len(rows)} cells of the 25 queried are on the Pareto front of valid,-pixel3" in done.stdout
    assert "median over every cell of the space" in done.stdout and "the table's true front" in done.stdout


def test_resume_with_other_objectives_is_refused(nb201_csv, latency_csv, tmp_path, cache):
    out = tmp_path / "r"
    first = run("search", "--searcher", "random", "--budget", 4, "--benchmark", nb201_csv, "--metrics-table",
                latency_csv, "--objectives", "valid,-pixel3", "--out", out, cache=cache)
    assert first.returncode == 0, first.stderr
    done = run("search", "--resume", out, "--budget", 6, "--objectives", "valid,-gold_6226", cache=cache)
    assert refused(done, "objectives=['valid', '-pixel3'], not ['valid', '-gold_6226']")
    same = run("search", "--resume", out, "--budget", 6, "--objectives", "valid, -pixel3", cache=cache)
    assert same.returncode == 0, same.stderr
    assert len(json.loads((out / "front.json").read_text())["hypervolume"]) == 6


@pytest.mark.parametrize("args, message", [
    (["--objectives", "valid,-pixle3"], "unknown metric 'pixle3'"),
    (["--objectives", "valid"], "at least two objectives"),
    (["--objectives", "valid,-pixel3,-pixel3"], "'pixel3' is listed twice"),
    (["--objectives", "valid,,pixel3"], "cannot read the objectives"),
    (["--objectives", "valid,-pixel3", "--searcher", "evolution"], "searcher 'evolution' optimises valid alone"),
])
def test_bad_objectives_are_one_line_before_any_work(nb201_csv, latency_csv, tmp_path, cache, args, message):
    done = run("search", "--searcher", "nsga2", "--benchmark", nb201_csv, "--metrics-table", latency_csv, *args,
               "--out", tmp_path / "r", cache=cache)
    assert refused(done, message), done.stderr
    assert not (tmp_path / "r").exists()


def test_objectives_combine_with_constraints(nb201, nb201_csv, latency_csv, tmp_path, cache):
    out = tmp_path / "r"
    done = run("search", "--searcher", "nsga2", "--budget", 12, "--benchmark", nb201_csv, "--metrics-table",
               latency_csv, "--objectives", "valid,-params", "--constraint", "pixel3<=5", "--out", out, cache=cache)
    assert done.returncode == 0, done.stderr
    with open(latency_csv) as f:
        pixel3 = {r["arch"]: float(r["pixel3"]) for r in csv.DictReader(f)}
    assert all(pixel3[r["arch"]] <= 5 for r in csv.DictReader(open(out / "front.csv")))


def test_compare_tabulates_the_hypervolume_per_query(nb201_csv, latency_csv, tmp_path, cache):
    done = run("compare", "--searchers", "random,nsga2", "--predictor", "none", "--seeds", 2, "--budget", 8,
               "--benchmark", nb201_csv, "--metrics-table", latency_csv, "--objectives", "valid,-titan_rtx_256",
               "--jobs", 1, "--out", tmp_path / "cmp", cache=cache)
    assert done.returncode == 0, done.stderr
    assert "reference: valid=87.296, titan_rtx_256=18.0573 (median over every cell of the space)" in done.stdout
    rows = list(csv.DictReader(open(tmp_path / "cmp" / "hypervolume.csv")))
    assert len(rows) == 2 * 8 and (tmp_path / "cmp" / "hypervolume.png").is_file()
    records = {p.stem: json.loads(p.read_text()) for p in (tmp_path / "cmp" / "runs").glob("*.json")}
    mine = [r for r in rows if r["searcher"] == "random" and r["queries"] == "8"][0]
    curves = [records[f"random-none-seed{s}"]["front"]["hypervolume"][-1] for s in (0, 1)]
    assert float(mine["mean_hypervolume"]) == pytest.approx(np.mean(curves))


def test_the_median_reference_and_the_true_front(nb201, nb201_oracle, latency_csv):
    from nasflow.cost_metrics import CostMetrics, MetricsTable

    objectives = Objectives("valid,-pixel3", CostMetrics(nb201, MetricsTable(latency_csv, nb201)))
    cells, points = table_points(nb201, nb201_oracle, objectives)
    reference = reference_point(points, everything=True)
    assert len(cells) == 15_625 and reference.tolist() == pytest.approx([-87.296, 10.6756])
    # HELP's table and docs/RESULTS.md: 51 cells on the Pixel 3's true front
    assert int(pareto_mask(points).sum()) == 51
    sample = [Evaluation(valid=90.0), Evaluation(valid=80.0)]
    assert objectives.points(cells[:2], sample)[:, 0].tolist() == [-90.0, -80.0]
    assert list(itertools.islice(objectives.names, 2)) == ["valid", "pixel3"]


class MeasuredCost(TwoObjectives):
    """The same objectives, the cost measured per cell (as a live latency is): unknown until queried."""

    def known_without_measuring(self, metric):
        return False


def test_hvi_predicts_a_measured_cost_with_the_op_cost_model_of_the_measured_cells(nb201, nb201_oracle):
    from nasflow.op_cost import OpCostModel
    from nasflow.searchers import get_searcher

    objectives = MeasuredCost()
    searcher = get_searcher("hvi", nb201, seed=1, objectives=objectives, candidates=20, initial=4)
    for _ in range(6):
        (arch,) = searcher.ask(1)
        searcher.tell(arch, nb201_oracle.query(arch))
    searcher.ask(1)  # fits the ensemble on the told cells
    unseen = [a for a in nb201.enumerate()[:50] if a not in searcher.history]
    told = list(searcher.history)
    expected = OpCostModel(nb201).fit(told, objectives.costs("cost", told)).predict(unseen)
    assert np.allclose(searcher.predicted_points(unseen)[:, 1], expected)
    assert not np.allclose(expected, objectives.costs("cost", unseen))  # a model, not the measurement itself
