import numpy as np
import pytest

from nasflow.core import BaseSpace
from nasflow.errors import NasflowError
from nasflow.searchers import SearcherError, get_searcher

# The checks every searcher passes (a run on the real table, state a function of seed and history)
# are in test_contracts.py; here are the checks of particular searchers.


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
        ("bananas", {"acquisition": "ei"}, "acquisition must be 'ucb', 'mean' or 'its'"),
        ("bananas", {"members": 0}, "members must be an integer >= 1"),
        ("evolution", {"population": 1}, "population must be an integer >= 2"),
        ("evolution", {"population": 5, "sample": 6}, "sample must be an integer in 1..5"),
    ],
)
def test_bad_searcher_options(nb201, name, kw, match):
    with pytest.raises(SearcherError, match=match) as e:
        get_searcher(name, nb201, seed=0, **kw)
    assert isinstance(e.value, NasflowError) and "\n" not in str(e.value)


class TableMember:
    """A BANANAS ensemble member that knows the table (plus a per-member offset); counts its work."""

    def __init__(self, oracle, offset=0.0):
        self.oracle, self.offset = oracle, offset
        self.fitted_on, self.predicted = [], 0

    def fit(self, archs, values):
        self.fitted_on.append(list(archs))
        return self

    def predict(self, archs):
        self.predicted += len(archs)
        return np.array([self.oracle.query(a).valid + self.offset for a in archs])


def told_bananas(space, oracle, count, seed=0, **options):
    members = [TableMember(oracle, offset) for offset in (0.0, 0.3)]
    searcher = get_searcher("bananas", space, seed=seed, ensemble=members, **options)
    rng = np.random.default_rng(seed)
    while len(searcher.history) < count:
        arch = space.sample(rng)
        searcher.tell(arch, oracle.query(arch))
    return searcher, members


def test_bananas_space_pool_picks_the_best_untold_cells(nb201, nb201_oracle):
    searcher, _ = told_bananas(nb201, nb201_oracle, 12, pool="space", acquisition="mean")
    ranked = sorted(nb201_oracle.items(), key=lambda item: -item[1].valid)
    # the members agree up to an offset, so the mean ranks like the table: the space's top cells, in order
    assert searcher.ask(3) == [a for a, _ in ranked[:3]]
    for arch, _ in ranked[:2]:
        searcher.tell(arch, nb201_oracle.query(arch))
    proposals = searcher.ask(5)
    assert not set(proposals) & set(searcher.history)
    assert proposals == [a for a, _ in ranked[2:7]]


def test_bananas_never_proposes_a_told_cell_from_the_space(nb201, nb201_oracle):
    searcher, _ = told_bananas(nb201, nb201_oracle, 10, pool="space", acquisition="its", refit_every=3)
    for _ in range(15):
        (arch,) = searcher.ask(1)
        assert arch not in searcher.history
        searcher.tell(arch, nb201_oracle.query(arch))
    assert len(searcher.history) == 25


def test_bananas_reuses_predictions_until_the_next_fit(nb201, nb201_oracle):
    searcher, members = told_bananas(nb201, nb201_oracle, 10, pool="space", refit_every=4)
    searcher.ask(1)
    first = nb201.size - 10  # every untold cell, once
    assert members[0].predicted == first and len(members[0].fitted_on) == 1
    for _ in range(3):  # three more tells: no refit due, every ask answered from the cache
        (arch,) = searcher.ask(1)
        searcher.tell(arch, nb201_oracle.query(arch))
    searcher.ask(2)
    assert members[0].predicted == first and len(members[0].fitted_on) == 1
    (arch,) = searcher.ask(1)
    searcher.tell(arch, nb201_oracle.query(arch))  # the 4th tell since the fit
    searcher.ask(1)
    assert len(members[0].fitted_on) == 2 and members[0].predicted == first + nb201.size - 14


def test_bananas_fits_on_the_scheduled_prefix_of_the_history(nb201, nb201_oracle):
    """A searcher rebuilt from a longer history fits on the same cells the original did."""
    searcher, members = told_bananas(nb201, nb201_oracle, 27, refit_every=5)
    searcher.ask(1)
    assert members[0].fitted_on == [list(searcher.history)[:25]]


def test_bananas_acquisition_picks_the_top_scored_candidate(nb201, nb201_oracle):
    searcher, _ = told_bananas(nb201, nb201_oracle, 15, candidates=30, kappa=2.0)
    (pick,) = searcher.ask(1)
    rebuilt, _ = told_bananas(nb201, nb201_oracle, 15, candidates=30, kappa=2.0)
    pool = rebuilt._candidates(1, rebuilt._rng())  # the very pool the first ask scored
    mean, std = rebuilt.moments(pool)
    assert pick in pool and pick == pool[int(np.argmax(mean + 2.0 * std))]
    assert np.allclose(std, 0.15)  # two members 0.3 apart


def test_bananas_explore_share_skips_the_ensemble(nb201, nb201_oracle):
    searcher, members = told_bananas(nb201, nb201_oracle, 10, explore=1.0, parents=3)
    parents = searcher.best(3)
    for child in searcher.ask(6):
        assert any(sum(a != b for a, b in zip(child.ops, p.ops)) == 1 for p in parents)
    assert members[0].fitted_on == [] and members[0].predicted == 0


def test_bananas_standardise_puts_members_on_one_scale(nb201, nb201_oracle):
    members = [TableMember(nb201_oracle), TableMember(nb201_oracle, offset=50.0)]
    searcher = get_searcher("bananas", nb201, seed=0, ensemble=members, standardise=True)
    rng = np.random.default_rng(0)
    for _ in range(10):
        arch = nb201.sample(rng)
        searcher.tell(arch, nb201_oracle.query(arch))
    searcher.ask(1)
    _, std = searcher.moments(list(searcher.history))
    assert np.allclose(std, 0.0)  # an offset is no disagreement once each member is on its own scale


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"pool": "all"}, "pool must be one of mutation, mutation\\+random, space"),
        ({"kappa": -1.0}, "kappa must be a number >= 0"),
        ({"explore": 1.5}, "explore must be a share between 0 and 1"),
    ],
)
def test_bad_bananas_options(nb201, kw, match):
    with pytest.raises(SearcherError, match=match) as e:
        get_searcher("bananas", nb201, seed=0, **kw)
    assert "\n" not in str(e.value)


def test_bananas_space_pool_needs_an_enumerable_space(nb201):
    class Endless(BaseSpace):
        name = "endless"
        sample = nb201.sample

    with pytest.raises(SearcherError, match="needs an enumerable space; endless is not"):
        get_searcher("bananas", Endless(), seed=0, pool="space")


@pytest.mark.parametrize("predictor", ["none", "scratch"])
def test_runs_hand_bananas_the_explore_share_and_refit_cadence(nb201_csv, predictor):
    from nasflow.experiments.runs import build, complete

    settings = complete({"searcher": "bananas", "predictor": predictor, "benchmark": str(nb201_csv),
                         "explore": 0.3, "refit_every": 4})
    run = build(settings)
    searcher, loop_predictor = run.searcher, run.predictor
    assert loop_predictor is None and searcher.explore == 0.3
    if predictor == "none":
        assert searcher.refit_every == 1 and len(searcher.ensemble) == 5
    else:
        assert searcher.refit_every == 4 and len(searcher.ensemble) == 3


def test_local_search_climbs_by_first_improvement_and_restarts_at_a_local_optimum(nb201):
    from nasflow.core import Evaluation

    rng = np.random.default_rng(3)
    start, elsewhere = nb201.sample(rng), nb201.sample(rng)
    better = nb201.neighbours(start)[5]
    values = {start: 50.0, better: 60.0}
    local = get_searcher("local", nb201, seed=1, initial_design=[start, elsewhere])
    assert local.ask(1) == [start]  # a climb starts at the initial design's first cell
    local.tell(start, Evaluation(valid=values[start]))
    tried = []
    while better not in tried:  # the start's neighbours, each once, in a seeded order
        (arch,) = local.ask(1)
        assert arch in nb201.neighbours(start) and arch not in tried
        tried.append(arch)
        local.tell(arch, Evaluation(valid=values.get(arch, 40.0)))
    assert local.centre == better  # the first improvement moves the climb at once
    seen = set(local.history)
    while local.centre is not None:  # nothing near `better` beats it: it is a local optimum
        (arch,) = local.ask(1)
        assert arch in nb201.neighbours(better) and arch not in seen
        seen.add(arch)
        local.tell(arch, Evaluation(valid=10.0))
    assert set(nb201.neighbours(better)) <= set(local.history)
    assert local.ask(1) == [elsewhere] and local.climbs == 1  # restart at the design's next cell
    local.tell(elsewhere, Evaluation(valid=30.0))
    assert local.climbs == 2 and local.centre == elsewhere
    assert set(local.ask(4)) <= set(nb201.neighbours(elsewhere))
