import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nasflow.journal import JournalError, read_header
from nasflow.loop import search
from nasflow.searchers import get_searcher

from searchdoubles import CountingOracle, DyingOracle, PeekingPredictor

HERE = Path(__file__).resolve().parent


def run(nb201, oracle, run_dir=None, resume=False, seed=1, name="evolution", predictor=None, budget=50):
    return search(
        nb201, oracle, get_searcher(name, nb201, seed=seed), predictor=predictor, budget=budget, pool=30, batch=2,
        refit_every=4, seed=seed, run_dir=run_dir, resume=resume,
    )


def cells(result):
    return [(q.arch, q.valid, q.test, q.best_valid, q.best_test) for q in result.trajectory]


def test_every_query_is_journaled_with_a_header(nb201, nb201_oracle, tmp_path):
    result = run(nb201, nb201_oracle, tmp_path / "r")
    lines = (tmp_path / "r" / "journal.jsonl").read_text().splitlines()
    header = json.loads(lines[0])
    assert header["space"] == "nb201" and header["seed"] == 1 and header["searcher"] == "evolution"
    assert header["budget"] == 50 and read_header(tmp_path / "r") == header
    records = [json.loads(line) for line in lines[1:]]
    assert [r["arch"] for r in records] == [q.arch for q in result.trajectory]
    assert [r["i"] for r in records] == list(range(50))


@pytest.mark.parametrize("name", ["random", "evolution"])
def test_resume_after_a_crash_replays_the_same_trajectory(nb201, nb201_oracle, tmp_path, name):
    make = lambda: PeekingPredictor(nb201_oracle, noise=1.0)  # noqa: E731
    whole = run(nb201, nb201_oracle, name=name, predictor=make())
    dying = DyingOracle(nb201_oracle, lives=23)
    with pytest.raises(RuntimeError, match="oracle died"):
        run(nb201, dying, tmp_path / "r", name=name, predictor=make())
    counting = CountingOracle(nb201_oracle)
    resumed = run(nb201, counting, tmp_path / "r", resume=True, name=name, predictor=make())
    assert cells(resumed) == cells(whole)
    assert counting.calls == 50 - 23 and resumed.resumed_queries == 23  # nothing re-queried, nothing lost
    assert len((tmp_path / "r" / "journal.jsonl").read_text().splitlines()) == 51


def test_resume_after_sigkill(nb201, nb201_oracle, nb201_csv, tmp_path):
    script = (
        "import time, sys\n"
        "from nasflow.spaces.nb201 import NB201Space, NB201TableOracle\n"
        "from nasflow.loop import search\n"
        "from nasflow.searchers import get_searcher\n"
        "class Slow(NB201TableOracle):\n"
        "    def query(self, arch):\n"
        "        time.sleep(0.03)\n"
        "        return super().query(arch)\n"
        "sp = NB201Space()\n"
        f"search(sp, Slow({str(nb201_csv)!r}), get_searcher('evolution', sp, seed=1), budget=50, pool=30, batch=2,"
        f" refit_every=4, seed=1, run_dir={str(tmp_path / 'r')!r})\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script])
    journal = tmp_path / "r" / "journal.jsonl"
    deadline = time.time() + 60
    while time.time() < deadline and (not journal.exists() or len(journal.read_text().splitlines()) < 15):
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    kept = len(journal.read_text().splitlines()) - 1
    assert 14 <= kept < 50
    counting = CountingOracle(nb201_oracle)
    resumed = run(nb201, counting, tmp_path / "r", resume=True)
    assert cells(resumed) == cells(run(nb201, nb201_oracle))
    assert counting.calls == 50 - resumed.resumed_queries


def test_corrupted_last_line_resumes_from_the_last_good_one(nb201, nb201_oracle, tmp_path):
    dying = DyingOracle(nb201_oracle, lives=20)
    with pytest.raises(RuntimeError):
        run(nb201, dying, tmp_path / "r")
    journal = tmp_path / "r" / "journal.jsonl"
    text = journal.read_text()
    journal.write_text(text + '{"i": 20, "arch": "|nor_conv_3x3~0|+|nor_co')  # a write cut short
    resumed = run(nb201, nb201_oracle, tmp_path / "r", resume=True)
    assert resumed.notice is not None and "line 22" in resumed.notice and "20 queries kept" in resumed.notice
    assert "\n" not in resumed.notice
    assert cells(resumed) == cells(run(nb201, nb201_oracle))


def test_corrupted_middle_line_keeps_what_precedes_it(nb201, nb201_oracle, tmp_path):
    run(nb201, nb201_oracle, tmp_path / "r", budget=30)
    journal = tmp_path / "r" / "journal.jsonl"
    lines = journal.read_text().splitlines(keepends=True)
    lines[11] = "garbage\n"
    journal.write_text("".join(lines))
    counting = CountingOracle(nb201_oracle)
    resumed = run(nb201, counting, tmp_path / "r", resume=True, budget=30)
    assert "line 12" in resumed.notice and resumed.resumed_queries == 10 and counting.calls == 20
    assert cells(resumed) == cells(run(nb201, nb201_oracle, budget=30))


@pytest.mark.parametrize("change", [{"seed": 2}, {"name": "random"}])
def test_resuming_another_run_is_a_one_line_error(nb201, nb201_oracle, tmp_path, change):
    run(nb201, nb201_oracle, tmp_path / "r", budget=10)
    with pytest.raises(JournalError, match="was made with") as e:
        run(nb201, nb201_oracle, tmp_path / "r", resume=True, budget=10, **change)
    assert "\n" not in str(e.value)


def test_resume_errors(nb201, nb201_oracle, tmp_path):
    with pytest.raises(JournalError, match="no journal at"):
        run(nb201, nb201_oracle, tmp_path / "nothing", resume=True)
    run(nb201, nb201_oracle, tmp_path / "r", budget=5)
    with pytest.raises(JournalError, match="already holds a run"):
        run(nb201, nb201_oracle, tmp_path / "r", budget=5)
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "journal.jsonl").write_text("not json\n")
    with pytest.raises(JournalError, match="does not start with a nasflow journal header"):
        run(nb201, nb201_oracle, tmp_path / "x", resume=True)
