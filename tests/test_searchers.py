import numpy as np
import pytest

from nasflow.errors import NasflowError
from nasflow.loop import search
from nasflow.searchers import SEARCHERS, SearcherError, get_searcher

from searchdoubles import CountingOracle, PeekingPredictor

SMALL = {"bananas": {"members": 3, "candidates": 40}}


def make(name, space, seed):
    return get_searcher(name, space, seed=seed, **SMALL.get(name, {}))


@pytest.mark.parametrize("name", sorted(SEARCHERS))
@pytest.mark.parametrize("with_predictor", [False, True])
def test_each_searcher_on_the_real_table(nb201, nb201_oracle, name, with_predictor):
    oracle = CountingOracle(nb201_oracle)
    predictor = PeekingPredictor(nb201_oracle, noise=2.0) if with_predictor else None
    result = search(nb201, oracle, make(name, nb201, 4), predictor=predictor, budget=30, pool=20, refit_every=5, seed=4)
    assert oracle.calls == 30 and len({q.arch for q in result.trajectory}) == 30
    # better than the space's median cell: a broken searcher picking garbage would not be
    assert result.best.best_valid > 85.0
    again = search(nb201, nb201_oracle, make(name, nb201, 4), predictor=predictor and PeekingPredictor(nb201_oracle, noise=2.0),
                   budget=30, pool=20, refit_every=5, seed=4)
    assert [q.arch for q in again.trajectory] == [q.arch for q in result.trajectory]


@pytest.mark.parametrize("name", sorted(SEARCHERS))
def test_state_is_a_function_of_seed_and_history(nb201, nb201_oracle, name):
    """A new searcher told the same history proposes the same cells (what resume relies on)."""
    first = make(name, nb201, 7)
    for _ in range(25):
        (arch,) = first.ask(1)
        first.tell(arch, nb201_oracle.query(arch))
    rebuilt = make(name, nb201, 7)
    for arch, evaluation in first.history.items():
        rebuilt.tell(arch, evaluation)
    proposals = first.ask(5)
    assert rebuilt.ask(5) == proposals
    assert not set(proposals) & set(first.history) and len(set(proposals)) == 5


def test_evolution_children_are_mutants_of_the_recent_population(nb201, nb201_oracle):
    evo = get_searcher("evolution", nb201, seed=0, population=10, sample=3)
    rng = np.random.default_rng(0)
    for _ in range(30):
        arch = nb201.sample(rng)
        evo.tell(arch, nb201_oracle.query(arch))
    population = list(evo.history)[-10:]
    for child in evo.ask(20):
        assert any(sum(a != b for a, b in zip(child.ops, p.ops)) == 1 for p in population)


def test_tpe_answers_repeats_from_its_history(nb201, nb201_oracle):
    tpe = get_searcher("tpe", nb201, seed=0, startup=5)
    for _ in range(40):
        (arch,) = tpe.ask(1)
        tpe.tell(arch, nb201_oracle.query(arch))
    trials = tpe.study.trials
    completed = [t for t in trials if t.state.name == "COMPLETE"]
    cells = [tpe.encoding.suggest(__import__("optuna").trial.FixedTrial(t.params)) for t in completed]
    # every completed trial's value is the table's value of its cell, repeats included
    assert all(t.value == nb201_oracle.query(c).valid for t, c in zip(completed, cells))
    assert len(set(cells)) == 40 <= len(completed)


def test_tpe_encodes_nb101_cells_both_ways():
    nb101 = pytest.importorskip("nasflow.spaces.nb101")
    optuna = pytest.importorskip("optuna")
    space = nb101.NB101Space()
    tpe = get_searcher("tpe", space, seed=0)
    rng = np.random.default_rng(1)
    for _ in range(30):
        arch = space.sample(rng)
        assert tpe.encoding.suggest(optuna.trial.FixedTrial(tpe.encoding.params(arch))) == arch
    cells = tpe.ask(10)
    assert len(set(cells)) == 10 and all(c.space == "nb101" for c in cells)


@pytest.mark.parametrize(
    "name, kw, match",
    [
        ("hillclimb", {}, "unknown searcher 'hillclimb'"),
        ("bananas", {"acquisition": "ei"}, "acquisition must be 'ucb' or 'mean'"),
        ("bananas", {"members": 0}, "members must be an integer >= 1"),
        ("evolution", {"population": 1}, "population must be an integer >= 2"),
        ("evolution", {"population": 5, "sample": 6}, "sample must be an integer in 1..5"),
    ],
)
def test_bad_searcher_options(nb201, name, kw, match):
    with pytest.raises(SearcherError, match=match) as e:
        get_searcher(name, nb201, seed=0, **kw)
    assert isinstance(e.value, NasflowError) and "\n" not in str(e.value)
