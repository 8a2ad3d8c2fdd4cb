from nasflow.runs import complete


def test_default_budget_depends_on_the_oracle():
    # real training costs seconds per query; a table answers at once
    assert complete({"training": {}})["budget"] == 50
    assert complete({"benchmark": "x.csv", "training": {}})["budget"] == 100
    assert complete({"training": {}, "budget": 7})["budget"] == 7


def test_training_oracle_run_resumes_with_the_same_trajectory(tmp_path, monkeypatch):
    """The embedded default oracle goes through the journal like a table does."""
    from nasflow.runs import run_search

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
