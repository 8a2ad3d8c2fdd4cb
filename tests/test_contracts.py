"""Contract tests: the same checks over every registered space, searcher and predictor encoder
(after scikit-learn's ``parametrize_with_checks``). A new space, searcher or encoder is checked
here as soon as it is registered; none of these checks needs the benchmark tables, except the
searchers' run on the real NB-201 table.
"""
from __future__ import annotations

import hashlib

import numpy as np
import pytest

from nasflow.core import Arch, BaseSpace, CategoricalEncoding, CellGraph, Evaluation, SearchSpace
from nasflow.errors import ArchError, NasflowError, SpaceError
from nasflow.loop import search
from nasflow.searchers import SEARCHERS, get_searcher
from nasflow.spaces import SPACES, get_space

from searchdoubles import CountingOracle, PeekingPredictor

SPACE_NAMES = sorted(SPACES)
SEARCHER_NAMES = sorted(SEARCHERS)
ENUMERATED_HERE = 50_000  # spaces up to this size are listed in full here; CI must never list NB-101's 423,624


def cells(space, seed: int, n: int = 12) -> list[Arch]:
    rng = np.random.default_rng(seed)
    return [space.sample(rng) for _ in range(n)]


def synthetic_value(arch: Arch) -> float:
    """A made-up accuracy, a fixed function of the cell: searchers and predictors need no table."""
    return 50.0 + 40.0 * int(hashlib.sha256(arch.key.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF


# ----------------------------------------------------------------------------------- spaces
@pytest.fixture(params=SPACE_NAMES)
def space(request):
    return get_space(request.param)


def test_space_declares_every_capability_of_the_protocol(space):
    assert isinstance(space, SearchSpace) and isinstance(space, BaseSpace)
    assert space.vocab[:2] == ("input", "output") and set(space.ops) <= set(space.vocab)
    assert len(set(space.vocab)) == len(space.vocab)
    assert space.size is None or (isinstance(space.size, int) and space.size > 0)
    width, cells_per_stage = space.small_network
    assert isinstance(width, int) and isinstance(cells_per_stage, int) and width > 0 and cells_per_stage > 0
    assert space.protocol_pool is None or 2 <= space.protocol_pool < (space.size or float("inf"))
    assert space.categorical is None or isinstance(space.categorical, CategoricalEncoding)
    assert (space.unified_ops is None) == (space.unified_id is None)
    if space.enumerable:
        assert space.size is not None


def test_parse_and_format_round_trip(space):
    for arch in cells(space, 0):
        text = space.format(arch)
        back = space.parse(text)
        assert back == arch and hash(back) == hash(arch) and space.format(back) == text
        assert arch.space == space.name and str(arch) == arch.key
        assert arch.search_space.name == space.name
    with pytest.raises(ArchError):
        space.parse("not a cell")


def test_sampling_is_a_function_of_the_seed(space):
    assert cells(space, 3) == cells(space, 3)
    assert cells(space, 3) != cells(space, 4)


def test_mutants_are_valid_different_neighbours_and_seeded(space):
    for k, arch in enumerate(cells(space, 1, 6)):
        neighbours = space.neighbours(arch)
        assert neighbours and arch not in neighbours and len(set(neighbours)) == len(neighbours)
        assert all(space.parse(space.format(n)) == n for n in neighbours)
        child = space.mutate(arch, np.random.default_rng(k))
        assert child != arch and child in set(neighbours)
        assert space.mutate(arch, np.random.default_rng(k)) == child


def test_to_graph_is_topological_from_input_to_output(space):
    for arch in cells(space, 2):
        g = space.to_graph(arch)
        assert isinstance(g, CellGraph) and g.num_nodes >= 2
        assert g.ops[0] == "input" and g.ops[-1] == "output"
        assert set(g.ops[1:-1]) <= set(space.ops)
        assert len(set(g.edges)) == len(g.edges)
        assert all(0 <= u < v < g.num_nodes for u, v in g.edges)
        # every node lies on the computation: inner nodes have a predecessor and a successor
        sources, targets = {u for u, _ in g.edges}, {v for _, v in g.edges}
        assert all(n in sources and n in targets for n in range(1, g.num_nodes - 1))
        assert 0 in sources and g.num_nodes - 1 in targets


def test_enumeration_lists_every_cell_once_where_declared(space):
    if not space.enumerable:
        with pytest.raises(SpaceError):
            space.enumerate()
        return
    if space.size > ENUMERATED_HERE:
        pytest.skip(f"{space.name} has {space.size:,d} cells: its enumeration is tested at a small scale "
                    f"in its own tests and measured in full by a benchmark script")
    every = space.enumerate()
    assert len(every) == space.size == len(set(every))
    assert all(a.space == space.name for a in every[:: max(1, len(every) // 50)])
    if space.arch_at is not None:
        for i in (0, 1, space.size // 2, space.size - 1):
            assert space.arch_at(i) == every[i]
        with pytest.raises(NasflowError):
            space.arch_at(space.size)


def test_categorical_encoding_round_trip(space):
    encoding = space.categorical
    if encoding is None:
        pytest.skip(f"{space.name} declares no categorical encoding")
    for arch in cells(space, 5):
        params = encoding.encode(arch)
        assert list(params) == list(encoding.choices)
        assert all(params[k] in encoding.choices[k] for k in params)
        assert encoding.decode(params) == arch
    rng = np.random.default_rng(0)
    decoded = 0
    for _ in range(50):  # any choice of values is a cell or a one-line ArchError
        params = {k: v[int(rng.integers(len(v)))] for k, v in encoding.choices.items()}
        try:
            decoded += encoding.decode(params).space == space.name
        except ArchError as e:
            assert "\n" not in str(e)
    assert decoded > 0


def test_unified_vocabulary_where_declared(space):
    if space.unified_ops is None:
        pytest.skip(f"{space.name} declares no unified vocabulary")
    from nasflow.predictors.unified import VOCAB, unified_ids

    ids = unified_ids(space)
    assert set(space.vocab) <= set(ids)
    assert {i // len(VOCAB) for i in ids.values()} == {space.unified_id}
    rows = [get_space(n).unified_id for n in SPACE_NAMES if get_space(n).unified_id is not None]
    assert len(rows) == len(set(rows)), "two spaces share a row of the unified space embedding"


def test_network_builds_and_counts_where_declared(space):
    if space.network is None:
        pytest.skip(f"{space.name} cannot build networks")
    import torch

    from nasflow.proxies import count_params

    width, cells_per_stage = space.small_network
    archs = cells(space, 6, 2)
    for arch in archs:
        net = space.network(arch, num_classes=10, in_channels=3, width=width, cells=cells_per_stage)
        with torch.no_grad():
            out = net.eval()(torch.zeros(2, 3, 8, 8))
        assert out.shape == (2, 10)
    if space.network_counts is not None:
        counts = space.network_counts(archs, num_classes=10, in_channels=3, width=width, cells=cells_per_stage)
        built = [count_params(space.network(a, num_classes=10, in_channels=3, width=width, cells=cells_per_stage))
                 for a in archs]
        assert list(counts["params"]) == built


def test_registry_names_its_spaces():
    for name in SPACE_NAMES:
        assert get_space(name).name == name
    with pytest.raises(SpaceError, match="unknown search space"):
        get_space("no-such-space")


# -------------------------------------------------------------------------------- searchers
SMALL = {"bananas": {"members": 3, "candidates": 40}, "hvi": {"members": 3, "candidates": 20, "pool": "mutation"}}


def make(name, space, seed):
    return get_searcher(name, space, seed=seed, **SMALL.get(name, {}))


def supports(name: str, space) -> bool:
    return name != "tpe" or space.categorical is not None


@pytest.mark.parametrize("name", SEARCHER_NAMES)
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


def told(name, space, value):
    """A searcher after 25 steps of asking one cell and being told its value."""
    first = make(name, space, 7)
    for _ in range(25):
        (arch,) = first.ask(1)
        first.tell(arch, value(arch))
    return first


def check_state_is_a_function_of_seed_and_history(name, space, value, first=None) -> None:
    """A new searcher told the same history proposes the same cells (what resume relies on)."""
    first = first or told(name, space, value)
    rebuilt = make(name, space, 7)
    for arch, evaluation in first.history.items():
        rebuilt.tell(arch, evaluation)
    proposals = first.ask(5)
    assert rebuilt.ask(5) == proposals
    assert not set(proposals) & set(first.history) and len(set(proposals)) == 5
    assert all(a.space == space.name for a in proposals)


@pytest.mark.parametrize("name", SEARCHER_NAMES)
def test_state_is_a_function_of_seed_and_history_on_the_table(nb201, nb201_oracle, name):
    check_state_is_a_function_of_seed_and_history(name, nb201, nb201_oracle.query)


def answered_repeats(searcher) -> bool:
    """Whether TPE answered a suggestion of an already told cell from the history (an extra finished trial)."""
    done = searcher.study.trials  # optuna's FrozenTrial list; COMPLETE trials are the told values
    return sum(t.state.name == "COMPLETE" for t in done) > len(searcher.history)


@pytest.mark.parametrize("name", SEARCHER_NAMES)
def test_state_is_a_function_of_seed_and_history(space, name):
    if not supports(name, space):
        pytest.skip(f"{name} does not search {space.name}")
    value = lambda arch: Evaluation(valid=synthetic_value(arch))  # noqa: E731
    first = told(name, space, value)
    if name == "tpe" and answered_repeats(first):
        # TPE answers a suggestion of an already told cell with its known value, as an extra Optuna trial; a
        # searcher rebuilt from the history lacks those trials, so it proposes other cells once a repeat happened
        # (it did not with the NB-201 table at seed 7 in 25 steps, which the check above uses; in a space as
        # large as DARTS's no repeat happens, and the check must hold). Fixing it changes TPE's trajectories,
        # which issue 17 keeps bit for bit: left to its own issue. A repeat need not change the next proposals
        # (on tnb101-micro the repeats of 25 steps left them as they were), so the check may pass here too.
        try:
            check_state_is_a_function_of_seed_and_history(name, space, value, first)
        except AssertionError:
            pytest.xfail("tpe's state also holds the repeats it answered from history")
        return
    check_state_is_a_function_of_seed_and_history(name, space, value, first)


# ------------------------------------------------------------------------- predictor encoders
from nasflow.predictors.encoders import ENCODERS  # noqa: E402  (after the data-free checks: imports dgl)

# What a small fit needs; a contract, not a quality check, so it stays fast.
TINY = dict(pretrain="none", dim=8, layers=2, epochs=3, seed=0)


class Renumbered(BaseSpace):
    """``space`` whose cell graphs number their inner nodes in another (seeded, per cell) topological order."""

    def __init__(self, space):
        self.space = space
        self.name, self.vocab, self.ops, self.size = space.name, space.vocab, space.ops, space.size

    def to_graph(self, arch):
        g = self.space.to_graph(arch)
        rng = np.random.default_rng(int(hashlib.sha256(arch.key.encode()).hexdigest()[:8], 16))
        preds = {v: {u for u, w in g.edges if w == v} for v in range(g.num_nodes)}
        order, done = [], set()
        while len(order) < g.num_nodes:  # Kahn's algorithm, a random ready node at each step
            ready = sorted(v for v in range(g.num_nodes) if v not in done and preds[v] <= done)
            v = ready[int(rng.integers(len(ready)))]
            order.append(v)
            done.add(v)
        new = {old: i for i, old in enumerate(order)}
        assert new[0] == 0 and new[g.num_nodes - 1] == g.num_nodes - 1
        return CellGraph(tuple(g.ops[old] for old in order), tuple(sorted((new[u], new[v]) for u, v in g.edges)))


@pytest.mark.parametrize("encoder", ENCODERS)
def test_encoder_fits_predicts_and_round_trips_through_save_and_load(space, encoder, tmp_path, one_thread):
    from nasflow import Predictor

    train, test = cells(space, 10, 24), cells(space, 11, 16)
    predictor = Predictor(space, encoder=encoder, **TINY)
    assert predictor.fit(train, [synthetic_value(a) for a in train]) is predictor
    scores = predictor.predict(test)
    assert scores.shape == (len(test),) and np.isfinite(scores).all() and np.unique(scores).size > 1
    np.testing.assert_array_equal(predictor.predict(test), scores)  # prediction is deterministic
    predictor.save(tmp_path / "p")
    loaded = Predictor.load(tmp_path / "p", space=space)
    np.testing.assert_array_equal(loaded.predict(test), scores)
    # every encoder reads a cell as a graph: numbering its inner nodes in another topological order
    # (another valid CellGraph of the same cell) must not change its score
    graphs = [space.to_graph(a) for a in test]
    if all(is_chain(g) for g in graphs):
        return  # one topological order each (NAS-Bench-Macro's layers): nothing to renumber
    renumbered = Predictor.load(tmp_path / "p", space=Renumbered(space))
    assert [renumbered.space.to_graph(a) for a in test] != graphs
    np.testing.assert_allclose(renumbered.predict(test), scores, rtol=1e-5, atol=1e-6)


def is_chain(g: CellGraph) -> bool:
    """Whether every node feeds the next, which leaves the graph one topological order."""
    return all((k, k + 1) in set(g.edges) for k in range(g.num_nodes - 1))
