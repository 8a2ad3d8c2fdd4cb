"""Workers sharing one Optuna study: unique queries, exact budgets, killed workers, resuming, bad input."""
import os
import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

from nasflow.experiments.distributed import DistributedError, open_study, run_study
from nasflow.experiments.storage import CELL, HEARTBEAT, claim, completed_trials, finish, open_storage


def nasflow(*args):
    return subprocess.run([sys.executable, "-m", "nasflow.cli.main", *map(str, args)], capture_output=True, text=True)


def study_trials(url, name):
    storage = open_storage(url)
    return storage.get_all_trials(storage.get_study_id_from_name(name), deepcopy=False)


def assert_exact_budget(url, name, budget):
    trials = study_trials(url, name)
    complete = [t for t in trials if t.state.name == "COMPLETE"]
    cells = [t.user_attrs[CELL] for t in complete]
    assert len(complete) == budget
    assert len(set(cells)) == budget, "a cell was evaluated twice"
    assert not [t for t in trials if t.state.name == "RUNNING"], "a claim outlived the run"
    return complete


@pytest.mark.parametrize("kind,workers,searcher", [("sqlite", 3, "evolution"), ("journal", 2, "tpe")])
def test_workers_finish_the_budget_with_unique_queries(tmp_path, nb201_csv, kind, workers, searcher):
    url = f"sqlite:///{tmp_path / 's.db'}" if kind == "sqlite" else str(tmp_path / "study.log")
    result = run_study({"searcher": searcher, "budget": 18, "benchmark": nb201_csv}, url, "w", workers=workers)
    complete = assert_exact_budget(url, "w", 18)
    assert result.queries == 18 and len({q.arch for q in result.trajectory}) == 18
    # the trajectory is the study's: each query's value is the table's, best-so-far never drops
    assert {q.arch for q in result.trajectory} == {t.user_attrs[CELL] for t in complete}
    curve = result.best_valid_curve()
    assert (curve[1:] >= curve[:-1]).all()
    # which processes took part is up to the scheduler: on a loaded machine the first one spawned may do it all
    assert all(t.system_attrs["nasflow:worker"] for t in complete)


def test_claims_exclude_taken_cells_and_full_budgets(tmp_path, nb201_csv):
    url = f"sqlite:///{tmp_path / 'c.db'}"
    storage = open_storage(url)
    study_id, _ = open_study(storage, "c", {"budget": 2, "benchmark": nb201_csv})
    cell_a, cell_b, cell_c = ("|none~0|+|none~0|none~1|+|none~0|none~1|skip_connect~2|",
                              "|none~0|+|none~0|none~1|+|none~0|none~1|nor_conv_1x1~2|",
                              "|none~0|+|none~0|none~1|+|none~0|none~1|nor_conv_3x3~2|")
    first = claim(storage, study_id, cell_a, 2, "test")
    assert first is not None
    assert claim(storage, study_id, cell_a, 2, "test") is None  # same cell, later trial: withdrawn
    assert claim(storage, study_id, cell_b, 2, "test") is not None
    assert claim(storage, study_id, cell_c, 2, "test") is None  # both budget slots are claimed
    states = [t.state.name for t in storage.get_all_trials(study_id)]
    assert states == ["RUNNING", "FAIL", "RUNNING", "FAIL"]


def test_stale_claim_of_a_dead_worker_is_released(tmp_path, nb201_csv):
    from optuna.trial import FrozenTrial, TrialState

    url = f"sqlite:///{tmp_path / 'd.db'}"
    storage = open_storage(url)
    study_id, _ = open_study(storage, "d", {"budget": 10, "benchmark": nb201_csv})
    long_ago = datetime.now(timezone.utc) - timedelta(hours=1)
    dead = storage.create_new_trial(study_id, template_trial=FrozenTrial(
        number=-1, state=TrialState.RUNNING, value=None, datetime_start=long_ago, datetime_complete=None, params={},
        distributions={}, user_attrs={CELL: "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|"},
        system_attrs={HEARTBEAT: long_ago.timestamp()}, intermediate_values={}, trial_id=-1))
    run_study({}, url, "d", workers=1, stale_after=1)
    assert storage.get_trial(dead).state == TrialState.FAIL
    assert_exact_budget(url, "d", 10)


def test_predictor_is_fitted_on_every_completed_trial_including_other_workers(tmp_path, nb201_csv, monkeypatch):
    from searchdoubles import PeekingPredictor

    import nasflow.experiments.distributed as distributed
    from nasflow.journal import query_record

    url = f"sqlite:///{tmp_path / 'p.db'}"
    storage = open_storage(url)
    study_id, settings = open_study(storage, "p", {"budget": 14, "warmup": 5, "refit_every": 3, "benchmark": nb201_csv})
    real_build = distributed.build
    predictors = []

    def build_with_predictor(settings, progress=False, worker=0):
        run = real_build(settings, progress, worker)
        predictors.append(PeekingPredictor(run.oracle))
        return run._replace(predictor=predictors[-1])

    monkeypatch.setattr(distributed, "build", build_with_predictor)
    space, oracle = real_build(settings)[:2]
    others = [space.sample(np.random.default_rng(i)) for i in range(4)]
    for i, arch in enumerate(others):  # queries another worker already completed
        trial_id = claim(storage, study_id, space.format(arch), 14, "other")
        assert finish(storage, trial_id, query_record(i, space.format(arch), oracle.query(arch), 0.0))
    assert distributed.run_worker(url, "p", settings) == 10
    order = [t.user_attrs[CELL] for t in completed_trials(storage, study_id)]
    fits = predictors[-1].fits
    assert [len(archs) for archs, _ in fits] == [5, 8, 11]
    for archs, values in fits:
        assert [space.format(a) for a in archs] == order[:len(archs)]
        assert np.allclose(values, [oracle.query(a).valid for a in archs])
    assert {space.format(a) for a in others} <= set(order[:5])


@pytest.mark.parametrize("explore,ranked", [(0.0, 9), (0.5, 4), (1.0, 0)])
def test_workers_keep_the_explore_share(tmp_path, nb201_csv, monkeypatch, explore, ranked):
    from searchdoubles import PeekingPredictor

    import nasflow.experiments.distributed as distributed

    class Counting(PeekingPredictor):
        ranked = 0

        def predict(self, archs):
            Counting.ranked += 1
            return super().predict(archs)

    url = f"sqlite:///{tmp_path / 'x.db'}"
    _, settings = open_study(open_storage(url), "x", {"budget": 14, "warmup": 5, "refit_every": 3,
                                                      "explore": explore, "benchmark": nb201_csv})  # fmt: skip
    real_build = distributed.build
    monkeypatch.setattr(distributed, "build", lambda s, progress=False, worker=0: (
        lambda run: run._replace(predictor=Counting(run.oracle)))(real_build(s, progress)))
    assert distributed.run_worker(url, "x", settings) == 14
    # 9 queries after the first fit at 5; with 0.5 the odd-numbered ones (5, 7, ..., 13) explore
    assert Counting.ranked == ranked


def test_an_oracle_error_gives_the_claim_back(tmp_path, nb201_csv, monkeypatch):
    from searchdoubles import DyingOracle

    import nasflow.experiments.distributed as distributed

    url = str(tmp_path / "e.log")
    storage = open_storage(url)
    study_id, settings = open_study(storage, "e", {"budget": 10, "benchmark": nb201_csv})
    real_build = distributed.build

    def build_dying(settings, progress=False, worker=0):
        run = real_build(settings, progress)
        return run._replace(oracle=DyingOracle(run.oracle, lives=3))

    monkeypatch.setattr(distributed, "build", build_dying)
    with pytest.raises(RuntimeError, match="oracle died"):
        distributed.run_worker(url, "e", settings)
    assert sorted(t.state.name for t in storage.get_all_trials(study_id)) == ["COMPLETE"] * 3 + ["FAIL"]


def test_only_claims_with_a_still_heartbeat_are_stale(tmp_path, nb201_csv):
    from nasflow.experiments.storage import StaleClaims

    url = str(tmp_path / "hb.log")
    storage = open_storage(url)
    study_id, _ = open_study(storage, "hb", {"budget": 5, "benchmark": nb201_csv})
    live = claim(storage, study_id, "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|", 5, "live")
    dead = claim(storage, study_id, "|none~0|+|none~0|none~1|+|none~0|none~1|skip_connect~2|", 5, "dead")
    # a heartbeat from a machine whose clock is an hour behind still counts as alive while it moves
    storage.set_trial_system_attr(live, HEARTBEAT, time.time() - 3600)
    stale = StaleClaims(stale_after=0.3)

    def running():
        return storage.get_all_trials(study_id, states=(storage.get_trial(live).state.__class__.RUNNING,))

    assert stale.release(storage, study_id, running()) == 0
    time.sleep(0.4)
    storage.set_trial_system_attr(live, HEARTBEAT, time.time() - 3599)
    assert stale.release(storage, study_id, running()) == 1
    assert storage.get_trial(dead).state.name == "FAIL" and storage.get_trial(live).state.name == "RUNNING"


def test_sigkilled_worker_loses_nothing_completed(tmp_path, nb201_csv):
    url = f"sqlite:///{tmp_path / 'k.db'}"
    budget = 45
    args = ("search", "--searcher", "random", "--benchmark", nb201_csv, "--storage", url, "--study", "k",
            "--budget", budget, "--stale-after", 1)
    storage = open_storage(url)
    open_study(storage, "k", {"searcher": "random", "budget": budget, "benchmark": nb201_csv})
    procs = [subprocess.Popen([sys.executable, "-m", "nasflow.cli.main", *map(str, args)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    study_id = storage.get_study_id_from_name("k")
    deadline = time.monotonic() + 60
    while len(completed_trials(storage, study_id)) < 8 and time.monotonic() < deadline:
        time.sleep(0.05)
    os.kill(procs[0].pid, signal.SIGKILL)
    procs[0].wait()
    before = {t.number: t.user_attrs[CELL] for t in completed_trials(storage, study_id)}
    assert len(before) >= 8
    out, err = procs[1].communicate(timeout=120)
    assert procs[1].returncode == 0, err
    complete = assert_exact_budget(url, "k", budget)
    after = {t.number: t.user_attrs[CELL] for t in complete}
    assert before.items() <= after.items()  # every query completed before the kill is still there
    assert f"queries    {budget} (of budget {budget}" in out


def test_second_invocation_resumes_the_study(tmp_path, nb201_csv):
    url = str(tmp_path / "resume.log")
    first = nasflow("search", "--searcher", "evolution", "--benchmark", nb201_csv, "--storage", url, "--study", "r",
                    "--budget", 12, "--out", tmp_path / "first")
    assert first.returncode == 0, first.stderr
    storage = open_storage(url)
    head = [t.user_attrs[CELL] for t in completed_trials(storage, storage.get_study_id_from_name("r"))]
    second = nasflow("search", "--storage", url, "--study", "r", "--budget", 20)
    assert second.returncode == 0, second.stderr
    assert "queries    20 (of budget 20; 12 from the study)" in second.stdout
    complete = assert_exact_budget(url, "r", 20)
    assert [t.user_attrs[CELL] for t in sorted(complete, key=lambda t: t.number)][:12] == head
    assert (tmp_path / "first" / "trajectory.csv").read_text().count("\n") == 13


def test_mismatched_study_is_one_line(tmp_path, nb201_csv):
    url = f"sqlite:///{tmp_path / 'm.db'}"
    storage = open_storage(url)
    open_study(storage, "m", {"searcher": "evolution", "budget": 5, "benchmark": str(nb201_csv)})
    done = nasflow("search", "--storage", url, "--study", "m", "--searcher", "random")
    assert done.returncode == 2 and done.stderr.count("\n") == 1
    assert done.stderr.startswith("nasflow: error: study 'm' was made with searcher='evolution', not 'random'")
    for given, message in (({"space": "nb101"}, "space='nb201', not 'nb101'"), ({"seed": 3}, "seed=0, not 3"),
                           ({"training": {"epochs": 2}}, "training=None"),
                           ({"benchmark": str(tmp_path / "other.csv")}, "was made with benchmark=")):
        with pytest.raises(DistributedError, match=message):
            open_study(storage, "m", given)
    # the budget may change: raising it continues the study
    assert open_study(storage, "m", {"budget": 9})[1]["budget"] == 9


@pytest.mark.parametrize("args,message", [
    (("--storage", "bogus://x"), "cannot open storage bogus://x"),
    (("--storage", "/no/such/dir/study.log"), "directory /no/such/dir does not exist"),
    (("--workers", "2"), "--workers needs --storage URL (a shared study), or --schedule asha"),
    (("--study", "s"), "need --storage"),
    (("--storage", "{tmp}/j.log", "--resume", "{tmp}"), "--resume continues a run directory"),
    (("--storage", "{tmp}/j.log", "--batch", "2"), "--batch does not apply"),
    (("--storage", "{tmp}/j.log", "--workers", "0"), "--workers"),
])
def test_bad_storage_options_are_one_line(tmp_path, nb201_csv, args, message):
    done = nasflow("search", "--benchmark", nb201_csv, *(a.format(tmp=tmp_path) for a in args))
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and message in done.stderr, done.stderr


def test_settings_that_cannot_work_leave_no_study(tmp_path, nb201_csv):
    from nasflow.errors import NasflowError

    url = str(tmp_path / "bad.log")
    with pytest.raises(NasflowError, match="nb999"):
        run_study({"space": "nb999", "benchmark": nb201_csv}, url, "bad")
    assert open_storage(url).get_all_studies() == []


def test_a_study_made_elsewhere_is_refused(tmp_path):
    import optuna

    url = f"sqlite:///{tmp_path / 'o.db'}"
    optuna.create_study(storage=url, study_name="theirs")
    with pytest.raises(DistributedError, match="not made by nasflow"):
        open_study(open_storage(url), "theirs", {})
