import numpy as np
import pytest

from nasflow.errors import NasflowError
from nasflow.loop import SearchError, search
from nasflow.searchers import get_searcher

from searchdoubles import CountingOracle, PeekingPredictor


def run(nb201, oracle, name="random", seed=0, **kw):
    return search(nb201, oracle, get_searcher(name, nb201, seed=seed), seed=seed, **kw)


@pytest.mark.parametrize("name", ["random", "evolution"])
def test_budget_no_repeats_and_bookkeeping(nb201, nb201_oracle, name):
    oracle = CountingOracle(nb201_oracle)
    result = run(nb201, oracle, name, budget=60, seed=3)
    assert oracle.calls == 60 == result.queries
    cells = [q.arch for q in result.trajectory]
    assert len(set(cells)) == 60
    assert [q.n for q in result.trajectory] == list(range(1, 61))
    for i, q in enumerate(result.trajectory):
        truth = nb201_oracle.query(nb201.parse(q.arch))
        assert (q.valid, q.test) == (truth.valid, truth.test)
        assert q.best_valid == max(p.valid for p in result.trajectory[: i + 1])
        best = nb201_oracle.query(nb201.parse(q.best_arch))
        assert (best.valid, best.test) == (q.best_valid, q.best_test)
    assert np.all(np.diff(result.best_valid_curve()) >= 0)
    assert result.optimum == {"valid": 91.6067, "test": 94.3733}
    assert result.summary()["regret_test"] == pytest.approx(94.3733 - result.best.best_test)


def test_same_seed_same_trajectory_other_seed_other(nb201, nb201_oracle):
    a = run(nb201, nb201_oracle, "evolution", seed=5, budget=40)
    b = run(nb201, nb201_oracle, "evolution", seed=5, budget=40)
    c = run(nb201, nb201_oracle, "evolution", seed=6, budget=40)
    assert [q.arch for q in a.trajectory] == [q.arch for q in b.trajectory]
    assert [q.arch for q in a.trajectory] != [q.arch for q in c.trajectory]


def test_predictor_ranks_the_pool_and_is_refit_on_schedule(nb201, nb201_oracle):
    predictor = PeekingPredictor(nb201_oracle)
    result = run(nb201, nb201_oracle, "random", budget=40, pool=50, batch=2, refit_every=6, warmup=10, predictor=predictor)
    assert result.queries == 40 and len({q.arch for q in result.trajectory}) == 40
    sizes = [len(archs) for archs, _ in predictor.fits]
    assert sizes == [10, 16, 22, 28, 34]
    # every fit sees exactly the cells queried so far, with their valid accuracies
    archs, values = predictor.fits[-1]
    assert [nb201.format(a) for a in archs] == [q.arch for q in result.trajectory[:34]]
    assert list(values) == [q.valid for q in result.trajectory[:34]]
    # a perfect ranker picks the best of each 50-cell random pool: far above random picks
    ranked = np.mean([q.valid for q in result.trajectory[10:]])
    plain = np.mean([q.valid for q in run(nb201, nb201_oracle, "random", budget=40).trajectory[10:]])
    assert ranked > plain + 5
    assert result.overhead_per_query < 0.5


def test_a_perfect_predictor_finds_the_optimum_fast(nb201, nb201_oracle):
    result = run(nb201, nb201_oracle, "evolution", budget=100, pool=200, predictor=PeekingPredictor(nb201_oracle))
    assert result.queries_to_optimum() is not None and result.queries_to_optimum() <= 100


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"budget": 0}, "budget must be an integer >= 1"),
        ({"budget": -3}, "budget must be an integer >= 1"),
        ({"budget": 2.5}, "budget must be an integer >= 1"),
        ({"budget": 10, "pool": 2, "batch": 4}, r"pool \(2\) must be at least the batch \(4\)"),
        ({"budget": 20_000}, "exceeds the 15,625 cells"),
        ({"budget": 10, "resume": True}, "resume needs the run directory"),
        ({"budget": 10, "refit_every": 0}, "refit_every must be"),
    ],
)
def test_bad_options_are_one_line_errors(nb201, nb201_oracle, kw, match):
    with pytest.raises(SearchError, match=match) as e:
        run(nb201, nb201_oracle, **kw)
    assert isinstance(e.value, NasflowError) and "\n" not in str(e.value)


class _CountingPeek(PeekingPredictor):
    def __init__(self, oracle):
        super().__init__(oracle)
        self.predicts = 0

    def predict(self, archs):
        self.predicts += 1
        return super().predict(archs)


def test_explore_share_hands_evenly_spaced_queries_back_to_the_searcher(nb201, nb201_oracle):
    def go(explore, predictor):
        return run(nb201, nb201_oracle, "evolution", seed=4, budget=40, warmup=10, refit_every=5,
                   predictor=predictor, explore=explore)

    counts = {}
    for share in (0.0, 0.2):
        predictor = _CountingPeek(nb201_oracle)
        go(share, predictor)
        counts[share] = predictor.predicts
    # 30 steps after the first fit; with 0.2 the steps querying cells 15, 20, ..., 40 explore
    assert counts == {0.0: 30, 0.2: 24}
    alone = run(nb201, nb201_oracle, "evolution", seed=4, budget=40)
    always = go(1.0, _CountingPeek(nb201_oracle))
    assert [q.arch for q in always.trajectory] == [q.arch for q in alone.trajectory]


@pytest.mark.parametrize("share", [-0.1, 1.5, "0.2", True])
def test_bad_explore_share_is_a_one_line_error(nb201, nb201_oracle, share):
    with pytest.raises(SearchError, match="explore must be a share between 0 and 1"):
        run(nb201, nb201_oracle, budget=10, explore=share)
