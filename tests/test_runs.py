import pytest

from nasflow.experiments.runs import complete


def test_default_budget_depends_on_the_oracle():
    # real training costs seconds per query; a table answers at once
    assert complete({"training": {}})["budget"] == 50
    assert complete({"benchmark": "x.csv", "training": {}})["budget"] == 100
    assert complete({"training": {}, "budget": 7})["budget"] == 7


def test_training_oracle_run_resumes_with_the_same_trajectory(tmp_path, monkeypatch):
    """The embedded default oracle goes through the journal like a table does."""
    from nasflow.experiments.runs import run_search

    monkeypatch.setenv("NASFLOW_CACHE", str(tmp_path / "cache"))
    settings = {"searcher": "random", "budget": 4, "seed": 3, "training": {"epochs": 1, "width": 4}}
    full = run_search(settings, run_dir=tmp_path / "full")
    assert len(full.trajectory) == 4 and all(q.valid is not None for q in full.trajectory)
    cut = tmp_path / "cut"
    cut.mkdir()
    lines = (tmp_path / "full" / "journal.jsonl").read_text().splitlines(keepends=True)
    (cut / "journal.jsonl").write_text("".join(lines[:3]))  # header + 2 queries
    resumed = run_search(settings, run_dir=cut, resume=True)
    assert [q.arch for q in resumed.trajectory] == [q.arch for q in full.trajectory]
    assert [q.valid for q in resumed.trajectory] == [q.valid for q in full.trajectory]


class _Fixed:
    """A stand-in predictor whose scores are a fixed affine map of a per-cell value."""

    def __init__(self, scale, offset):
        self.scale, self.offset, self.fitted = scale, offset, 0

    def fit(self, archs, values):
        self.fitted += 1

    def predict(self, archs):
        import numpy as np

        return np.array([self.scale * float(a.ops.count("skip_connect")) + self.offset for a in archs])


def test_committee_averages_standardised_scores(nb201):
    """A member with a 1000x wider score scale must not outvote the other."""
    import numpy as np

    from nasflow.predictors.committee import Committee

    rng = np.random.default_rng(0)
    archs = [nb201.sample(rng) for _ in range(30)]
    wide, narrow = _Fixed(1000.0, 5.0), _Fixed(-1.0, 0.0)  # opposite opinions
    committee = Committee([wide, narrow], "a+b")
    committee.fit(archs, np.arange(30.0))
    assert wide.fitted == narrow.fitted == 1
    np.testing.assert_allclose(committee.predict(archs), 0.0, atol=1e-9)  # equal and opposite after standardising
    same = Committee([_Fixed(1000.0, 5.0), _Fixed(1.0, 0.0)], "a+b").predict(archs)
    assert np.argsort(same, kind="stable").tolist() == np.argsort(_Fixed(1.0, 0.0).predict(archs), kind="stable").tolist()


def test_committee_spec_builds_members_and_rejects_bad_joins(nb201):
    import pytest

    from nasflow.errors import NasflowError
    from nasflow.predictors.committee import Committee
    from nasflow.experiments.runs import make_predictor

    committee = make_predictor(nb201, "fgp+scratch", 3, {"dim": 16})
    assert isinstance(committee, Committee) and committee.name == "fgp+scratch"
    assert [m.get_params()["pretrain"] for m in committee.members] == ["fgp", "none"]
    assert all(m.seed == 3 and m.dim == 16 for m in committee.members)
    for bad in ("fgp+none", "fgp+", "+scratch", "fgp+nonsense"):
        with pytest.raises(NasflowError):
            make_predictor(nb201, bad, 0)


def test_predictor_seed_defaults_to_the_run_seed_modulo_a_few():
    from nasflow.spec import PREDICTOR_SEEDS

    assert [complete({"seed": s}).resolved_predictor_seed for s in range(7)] == [s % PREDICTOR_SEEDS for s in range(7)]
    assert complete({"seed": 6, "predictor_seed": 11}).resolved_predictor_seed == 11


@pytest.mark.parametrize("predictor", ["none", "scratch"])
def test_distributed_workers_rebuild_bananas_with_the_runs_options(nb201_csv, predictor):
    from nasflow.experiments.distributed import _searcher_factory
    from nasflow.experiments.runs import build, complete

    settings = complete({"searcher": "bananas", "predictor": predictor, "explore": 0.3, "refit_every": 7,
                         "benchmark": nb201_csv})
    run = build(settings)
    space, first = run.space, run.searcher
    make = _searcher_factory(settings, space, first)
    assert make() is first
    again = make()
    assert again is not first and again.explore == first.explore == 0.3
    assert again.refit_every == first.refit_every
    if predictor != "none":
        assert first.refit_every == 7 and len(again.ensemble) == len(first.ensemble) == 3
        assert all(a is b for a, b in zip(again.ensemble, first.ensemble))  # one shared set of predictors
