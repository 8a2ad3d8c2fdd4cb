"""The one search step: RankedSearcher's ask/tell contract, the refit schedule it shares with BANANAS,
the trajectory builder, and a distributed worker querying what the local loop queries."""
import numpy as np
import pytest

from nasflow.core import Evaluation
from nasflow.loop import search
from nasflow.searchers import get_searcher
from nasflow.step import RankedSearcher, RefitSchedule, Trajectory

from searchdoubles import PeekingPredictor


class NearBest:
    """Scores a cell by how many operations it shares with the best fitted cell: a pure function of the
    last fit (unlike PeekingPredictor's noise, which counts fits), with no table to peek at."""

    name = "near-best"

    def __init__(self, space):
        self.space, self.fits = space, []

    def fit(self, archs, values):
        self.fits.append(len(archs))
        self.best = self.space.to_graph(archs[int(np.argmax(values))]).ops
        return self

    def predict(self, archs):
        return np.array([sum(a == b for a, b in zip(self.space.to_graph(x).ops, self.best)) for x in archs], float)


def ranked(nb201, seed=3, predictor=None, **kw):
    options = {"pool": 30, "schedule": RefitSchedule(warmup=6, every=4), "explore": 0.25, "seed": seed, **kw}
    return RankedSearcher(get_searcher("evolution", nb201, seed=seed), nb201, predictor, **options)


def test_refit_schedule_targets_the_first_cells_up_to_the_last_due_point():
    schedule = RefitSchedule(warmup=10, every=4)
    assert [schedule.target(n) for n in (0, 9, 10, 13, 14, 17, 18, 30)] == [0, 0, 10, 10, 14, 14, 18, 30]
    assert [RefitSchedule(warmup=1, every=1).target(n) for n in range(4)] == [0, 1, 2, 3]


def test_state_is_a_function_of_seed_and_told_history(nb201, nb201_oracle):
    """A new step told the same history proposes the same cells, however the first one got there."""
    first = ranked(nb201, predictor=NearBest(nb201))
    for _ in range(22):
        for arch in first.ask(2)[:1]:  # asks whose proposals are not all told must not matter
            first.tell(arch, nb201_oracle.query(arch))
    rebuilt = ranked(nb201, predictor=NearBest(nb201))
    for arch, evaluation in first.history.items():
        rebuilt.tell(arch, evaluation)
    chosen = first.ask(1)  # the step querying cell 23 ranks (0.25 of the steps explore: 4, 8, ..., 24)
    assert rebuilt.ask(1) == chosen
    assert rebuilt.predictor.fits == [22] and first.predictor.fits[-1] == 22  # both on the first 22 cells
    other = ranked(nb201, seed=4, predictor=NearBest(nb201))
    for arch, evaluation in first.history.items():
        other.tell(arch, evaluation)
    assert other.ask(3)[:1] != chosen


def told(nb201, nb201_oracle, cells=8, **kw):
    step = ranked(nb201, **kw)
    for arch in [nb201.sample(np.random.default_rng(i)) for i in range(cells)]:
        step.tell(arch, nb201_oracle.query(arch))
    return step


def test_ranking_takes_the_predictors_best_of_the_pool(nb201, nb201_oracle):
    assert len(ranked(nb201, predictor=PeekingPredictor(nb201_oracle)).ask(2)) == 2  # before any fit: the searcher's
    step = told(nb201, nb201_oracle, cells=6, predictor=PeekingPredictor(nb201_oracle), explore=0.0)
    chosen = step.ask(2)
    pool = told(nb201, nb201_oracle, cells=6).searcher.ask(30)  # the same searcher state proposes the same pool
    best = sorted(dict.fromkeys(a for a in pool if a not in step.history), key=lambda a: -nb201_oracle.query(a).valid)
    assert [nb201_oracle.query(a).valid for a in chosen] == [nb201_oracle.query(a).valid for a in best[:2]]
    assert [len(archs) for archs, _ in step.predictor.fits] == [6]


def test_pending_cells_are_never_proposed_and_count_for_exploring(nb201, nb201_oracle):
    own = told(nb201, nb201_oracle).searcher.ask(1)[0]  # what the searcher proposes first after these 8 cells
    plain = told(nb201, nb201_oracle, predictor=NearBest(nb201), explore=0.5)
    plain.ask(1)
    assert plain.predictor.fits == [6]  # the step querying cell 9 ranks
    busy = told(nb201, nb201_oracle, predictor=NearBest(nb201), explore=0.5)
    picked = busy.ask(1, pending=[own])
    # with that cell pending, the step queries cell 10, which explores: the searcher's own, less the pending cell
    assert busy.predictor.fits == [] and picked != [own] and len(picked) == 1


def test_a_searcher_stuck_on_taken_cells_is_topped_up_with_uniform_samples(nb201, nb201_oracle):
    class Stuck:
        name = "stuck"

        def __init__(self, cell):
            self.cell = cell

        def ask(self, n):
            return [self.cell] * n

        def tell(self, arch, evaluation):
            pass

    cell = nb201.sample(np.random.default_rng(0))
    step = RankedSearcher(Stuck(cell), nb201, seed=5)
    step.tell(cell, nb201_oracle.query(cell))
    fresh = step.ask(3)
    assert len(set(fresh)) == 3 and cell not in fresh
    again = RankedSearcher(Stuck(cell), nb201, seed=5)
    again.tell(cell, nb201_oracle.query(cell))
    assert again.ask(3) == fresh  # the top-up is seeded by the run's seed and how many cells are taken


def test_trajectory_keeps_the_first_of_equal_bests():
    trajectory = Trajectory()
    for arch, valid in (("a", 1.0), ("b", 3.0), ("c", 3.0), ("d", 2.0)):
        trajectory.add(arch, Evaluation(valid=valid, test=valid + 1), 0.0, 0.0)
    assert [(q.n, q.best_arch, q.best_valid, q.best_test) for q in trajectory.queries] == [
        (1, "a", 1.0, 2.0), (2, "b", 3.0, 4.0), (3, "b", 3.0, 4.0), (4, "b", 3.0, 4.0)]


class Recording:
    """An ensemble member recording the sizes of its fits."""

    def __init__(self, oracle):
        self.oracle, self.fits = oracle, []

    def fit(self, archs, values):
        self.fits.append(len(archs))
        return self

    def predict(self, archs):
        return np.array([self.oracle.query(a).valid for a in archs])


def test_bananas_and_the_step_refit_by_one_schedule(nb201, nb201_oracle):
    """BANANAS refits its ensemble as the loop refits its predictor: on the schedule's targets."""
    loop_predictor, member = Recording(nb201_oracle), Recording(nb201_oracle)
    search(nb201, nb201_oracle, get_searcher("random", nb201, seed=1), predictor=loop_predictor, budget=30,
           warmup=10, refit_every=4, explore=0.0, seed=1)
    bananas = get_searcher("bananas", nb201, seed=1, ensemble=[member], initial=10, refit_every=4, candidates=20)
    search(nb201, nb201_oracle, bananas, budget=30, seed=1)
    assert bananas.schedule == RefitSchedule(warmup=10, every=4)
    assert loop_predictor.fits == member.fits == [10, 14, 18, 22, 26]


@pytest.mark.parametrize("explore", [0.0, 0.2])
def test_one_worker_queries_what_the_local_loop_queries(tmp_path, nb201_csv, nb201_oracle, monkeypatch, explore):
    import nasflow.experiments.distributed as distributed
    from nasflow.experiments.distributed import open_study
    from nasflow.experiments.storage import completed_trials, open_storage, study_trajectory

    url = str(tmp_path / "one.log")
    storage = open_storage(url)
    study_id, settings = open_study(storage, "one", {"budget": 16, "warmup": 5, "refit_every": 3, "pool": 40,
                                                     "explore": explore, "seed": 2, "benchmark": nb201_csv})
    real_build = distributed.build
    monkeypatch.setattr(distributed, "build", lambda s, progress=False, worker=0: (
        lambda run: run._replace(predictor=PeekingPredictor(run.oracle, noise=1.0)))(real_build(s, progress)))
    assert distributed.run_worker(url, "one", settings) == 16
    run = real_build(settings)
    local = search(run.space, run.oracle, run.searcher, PeekingPredictor(run.oracle, noise=1.0), budget=16, pool=40,
                   warmup=5, refit_every=3, explore=explore, seed=2)
    shared = study_trajectory(completed_trials(storage, study_id))
    columns = ("arch", "valid", "best_arch", "best_valid", "best_test")
    assert [[getattr(q, c) for c in columns] for q in shared] == [[getattr(q, c) for c in columns] for q in local.trajectory]
