"""The model of every rung's labels (``nasflow.fidelity_model``) and a schedule that uses it (``model=ridge``).

Synthetic NB-201 labels: a cell's 200-epoch valid is additive in its edges' operations; its 12-epoch valid is
that, 10 points lower, plus noise. The model fitted on many noisy cheap labels and a few full ones must rank
cells at full fidelity better than their own cheap labels do: what a schedule promotes by.
"""
import csv
import json

import numpy as np
import pytest
from scipy.stats import spearmanr

from clirun import run_cli
from nasflow.fidelity_model import CrossFidelityRidge, FidelityModelError
from nasflow.schedulers import ASHA, Schedule, ScheduleError
from nasflow.spaces import get_space
from test_multi_fidelity import write_tables


def additive_labels(space, cells, seed=0, noise=1.5):
    """(archs, full valid, 12-epoch valid): full = 80 + sum of per-edge op effects; low = full - 10 + noise."""
    rng = np.random.default_rng(seed)
    effect = rng.normal(0, 1.0, (6, len(space.ops)))
    archs = [space.sample(rng) for _ in range(cells)]
    archs = list(dict.fromkeys(archs))
    full = np.array([80 + sum(effect[e, space.ops.index(op)] for e, op in enumerate(a.ops)) for a in archs])
    low = full - 10 + rng.normal(0, noise, len(archs))
    return archs, full, low


@pytest.fixture(scope="module")
def space():
    return get_space("nb201")


def test_cheap_labels_teach_the_full_fidelity_ranking(space):
    archs, full, low = additive_labels(space, 400)
    labels = [(a, 0, v) for a, v in zip(archs, low)] + [(a, 1, v) for a, v in zip(archs[:10], full[:10])]
    model = CrossFidelityRidge(space, rungs=2).fit(labels)
    predicted = model.predict(archs, 1)
    # the model smooths the cheap labels' noise: it ranks the cells' full-fidelity valid better than they do
    assert spearmanr(predicted, full)[0] > spearmanr(low, full)[0] + 0.05
    # and its full-fidelity level is the full labels', not the cheap ones' (10 points apart)
    assert abs(np.mean(predicted) - np.mean(full)) < 1.0
    assert abs(np.mean(model.predict(archs, 0)) - np.mean(low)) < 1.0


def test_promotion_scores_keep_a_share_of_the_cells_own_residual(space):
    archs, full, low = additive_labels(space, 200, seed=1)
    labels = [(a, 0, v) for a, v in zip(archs, low)] + [(a, 1, v) for a, v in zip(archs[:5], full[:5])]
    results = dict(zip(archs, low))
    at_rung, at_top = CrossFidelityRidge(space, 2).fit(labels).predict(archs, 0), None
    for keep in (0.0, 0.5, 1.0):
        model = CrossFidelityRidge(space, 2, keep=keep).fit(labels)
        at_top = model.predict(archs, 1)
        scores = model.promotion_scores(0, results)
        assert np.allclose([scores[a] for a in archs], at_top + keep * (low - at_rung))
    # keep=1 is the cell's own label plus the predicted gain of training on: its order is its label's where the
    # gain is the same for every cell (no full-fidelity label tells the cells' gains apart)
    cheap_only = [(a, 0, v) for a, v in zip(archs, low)]
    scores = CrossFidelityRidge(space, 2, keep=1.0).fit(cheap_only).promotion_scores(0, results)
    assert np.allclose([scores[a] for a in archs], low)


def test_a_fit_that_adds_labels_equals_a_fit_from_scratch(space):
    archs, full, low = additive_labels(space, 150, seed=2)
    labels = [(a, 0, v) for a, v in zip(archs, low)]
    model = CrossFidelityRidge(space, 2)
    model.fit(labels[:50])
    labels += [(a, 1, v) for a, v in zip(archs[:7], full[:7])]
    model.fit(labels)  # the run's list grew: only the new labels are added
    fresh = CrossFidelityRidge(space, 2).fit(list(labels))
    assert model.fitted_on == len(labels)
    assert np.allclose(model.coef, fresh.coef)
    # a rung without labels predicts as the nearest rung below it that has them
    three = CrossFidelityRidge(space, 3).fit(labels)
    assert np.allclose(three.predict(archs[:5], 2), three.predict(archs[:5], 1))


def test_cells_of_several_sizes_widen_the_features_without_breaking_the_fit():
    nb101 = get_space("nb101")
    rng = np.random.default_rng(0)
    cells = list(dict.fromkeys(nb101.sample(rng) for _ in range(80)))
    small = sorted(cells, key=lambda a: a.num_vertices)
    narrow = [a for a in small if a.num_vertices < small[-1].num_vertices]
    assert narrow and len(narrow) < len(small)  # the draw holds cells of several sizes
    labels = [(a, 0, float(50 + a.num_edges)) for a in narrow]
    model = CrossFidelityRidge(nb101, 4).fit(labels)
    before = model.predict(narrow[:3], 3)
    wide = model.predict(small[-3:], 3)  # a wider cell: the features widen, the model refits on the same labels
    assert np.all(np.isfinite(wide))
    assert np.allclose(model.predict(narrow[:3], 3), before, atol=1e-6)  # padding adds zero columns only


def test_bad_model_settings_are_one_line(space):
    for kwargs, message in (({"ridge": 0}, "ridge must be a number > 0"), ({"keep": 1.5}, "keep must be a share"),
                            ({"rungs": 0}, "at least one rung")):
        with pytest.raises(FidelityModelError, match=message):
            CrossFidelityRidge(space, **{"rungs": 2, **kwargs})
    with pytest.raises(FidelityModelError, match="predicts only after a fit"):
        CrossFidelityRidge(space, 2).predict([space.sample(np.random.default_rng(0))], 1)


def test_schedule_text_carries_the_model():
    assert str(Schedule.parse("asha:min=12,max=200,eta=27,model=ridge")) == "asha:min=12,max=200,eta=27,model=ridge"
    assert str(Schedule.parse("asha:min=12,max=200,eta=27,model=none")) == "asha:min=12,max=200,eta=27"
    assert Schedule.parse("sh:min=12,max=200").model == "none"
    with pytest.raises(ScheduleError, match="unknown schedule model 'gp'"):
        Schedule.parse("asha:min=12,max=200,model=gp")


def test_a_scorer_changes_what_asha_promotes_not_how_many():
    cells = [f"c{i}" for i in range(9)]  # any hashable stands for a cell here
    plain, scored = ASHA((12, 200), 3, 9), ASHA((12, 200), 3, 9)
    scored.scorer = lambda rung, results: {a: -v for a, v in results.items()}  # promote the worst instead
    for s in (plain, scored):
        for i, c in enumerate(cells):
            s.report(c, 0, float(i))
    assert plain.next_job().arch == "c8"
    assert scored.next_job().arch == "c0"
    assert [a for a, _, _ in scored.reported] == cells  # every result in report order: what a model learns from


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    return write_tables(tmp_path_factory.mktemp("fm"))


def test_a_run_with_the_model_is_reproducible_and_differs_from_one_without(table, tmp_path):
    def run(schedule, out):
        done = run_cli("search", "--space", "nb201", "--benchmark", str(table), "--searcher", "evolution", "--seed", "3",
                       "--schedule", schedule, "--budget-epochs", "3000", "--pool", "10", "--out", str(tmp_path / out),
                       cache=tmp_path / "cache")
        assert done.returncode == 0, done.stderr
        rows = csv.DictReader(open(tmp_path / out / "trajectory.csv"))
        return [(r["arch"], r["valid"], r["fidelity"], r["best_arch"]) for r in rows]  # all but the timings

    one = run("asha:min=12,max=200,eta=3,model=ridge", "a")
    assert run("asha:min=12,max=200,eta=3,model=ridge", "b") == one
    assert run("asha:min=12,max=200,eta=3", "plain") != one  # the model changed what was trained
    header = json.loads((tmp_path / "a" / "journal.jsonl").read_text().splitlines()[0])
    assert header["schedule"] == "asha:min=12,max=200,eta=3,model=ridge"
    other = run_cli("search", "--resume", str(tmp_path / "a"), "--schedule", "asha:min=12,max=200,eta=3",
                    cache=tmp_path / "cache")
    assert other.returncode == 2 and "model=ridge', not 'asha:min=12,max=200,eta=3'" in other.stderr


@pytest.mark.parametrize("kind", ["sh", "asha"])
def test_a_killed_run_with_the_model_resumes_to_the_same_trajectory(table, tmp_path, kind):
    from nasflow.restricted import restrict_to_table
    from nasflow.scheduled_loop import scheduled_search
    from nasflow.searchers import get_searcher

    oracle = get_space("nb201").open_oracle(str(table))
    searched = restrict_to_table(get_space("nb201"), oracle)
    schedule = Schedule.parse(f"{kind}:min=12,max=200,eta=3,model=ridge")

    def run(budget, **kw):
        return scheduled_search(searched, oracle, get_searcher("evolution", searched, seed=5), schedule, pool=20,
                                budget_epochs=budget, seed=5, **kw)

    whole = run(2500)
    first = run(1200, run_dir=tmp_path / "r")
    resumed = run(2500, run_dir=tmp_path / "r", resume=True)
    assert resumed.resumed_queries == first.queries > 0
    # the model replayed from the journal takes the same decisions: every evaluation after the cut is the same
    assert [(q.arch, q.valid) for q in resumed.trajectory] == [(q.arch, q.valid) for q in whole.trajectory]
    assert resumed.fidelities == whole.fidelities


@pytest.mark.parametrize("extra, message", [
    (["--searcher", "evolution", "--predictor", "scratch"], "ranks the proposals itself; drop --predictor scratch"),
    (["--searcher", "bananas"], "ranks its proposals with its own ensemble"),
])
def test_a_model_beside_another_ranker_is_one_line(table, tmp_path, extra, message):
    done = run_cli("search", "--space", "nb201", "--benchmark", str(table), *extra, "--out", str(tmp_path / "r"),
                   "--schedule", "asha:min=12,max=200,eta=3,model=ridge", "--budget-epochs", "1000",
                   cache=tmp_path / "cache")
    assert done.returncode == 2
    assert message in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "r").exists()


def test_workers_follow_asha_with_the_model(table, tmp_path):
    from test_scheduled_workers import check_asha_journal, journal

    out = tmp_path / "run"
    done = run_cli("search", "--benchmark", str(table), "--searcher", "evolution", "--pool", "10",
                   "--schedule", "asha:min=12,max=200,eta=3,model=ridge", "--budget-epochs", "2000", "--workers", "2",
                   "--out", str(out), cache=tmp_path / "cache")
    assert done.returncode == 0, done.stderr
    seen = check_asha_journal(journal(out), [12, 200], 2000)
    assert sum(len(v) == 2 for v in seen.values()) >= 3  # the model's promotions went out to the workers
