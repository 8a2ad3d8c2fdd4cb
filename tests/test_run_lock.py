"""The run directory lock (issue 16): a second process on a run directory gets one line and exit 2.

Real processes throughout: the lock is the kernel's, so threads in one process would prove nothing.
"""
import json
import subprocess
import sys
import time

import pytest

HOLD = """
import sys, time
from pathlib import Path
from nasflow.runlock import lock_run_dir
with lock_run_dir(sys.argv[1]):
    Path(sys.argv[2]).write_text("locked")
    while not Path(sys.argv[3]).exists():
        time.sleep(0.05)
"""


def nasflow(*args):
    return subprocess.run([sys.executable, "-m", "nasflow.cli.main", *map(str, args)], capture_output=True, text=True)


def start_nasflow(*args):
    return subprocess.Popen([sys.executable, "-m", "nasflow.cli.main", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


@pytest.fixture
def holder(tmp_path):
    """Another process holding a directory's lock until the test ends."""
    procs = []

    def hold(run_dir):
        ready, release = tmp_path / f"ready{len(procs)}", tmp_path / f"release{len(procs)}"
        proc = subprocess.Popen([sys.executable, "-c", HOLD, str(run_dir), str(ready), str(release)])
        procs.append((proc, release))
        deadline = time.monotonic() + 60
        while not ready.exists():
            assert proc.poll() is None and time.monotonic() < deadline, "lock holder did not start"
            time.sleep(0.05)

    yield hold
    for proc, release in procs:
        release.write_text("")
        proc.wait(timeout=30)


def one_line_busy(done):
    lines = done.stderr.strip().splitlines()
    return done.returncode == 2 and len(lines) == 1 and "is in use by another nasflow process" in lines[0]


def test_a_new_run_in_a_locked_directory_is_refused(nb201_csv, tmp_path, holder):
    run = tmp_path / "run"
    holder(run)
    done = nasflow("search", "--benchmark", nb201_csv, "--budget", 5, "--out", run)
    assert one_line_busy(done), done.stderr
    assert not (run / "journal.jsonl").exists()


def test_resume_of_a_locked_run_touches_nothing(nb201_csv, tmp_path, holder):
    run = tmp_path / "run"
    assert nasflow("search", "--benchmark", nb201_csv, "--budget", 8, "--out", run).returncode == 0
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    holder(run)
    done = nasflow("search", "--resume", run, "--budget", 12)
    assert one_line_busy(done), done.stderr
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before


def test_the_lock_dies_with_its_process(nb201_csv, tmp_path):
    run = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(run), str(tmp_path / "ready"), str(tmp_path / "never")])
    while not (tmp_path / "ready").exists():
        assert proc.poll() is None
        time.sleep(0.05)
    proc.kill()  # SIGKILL: no cleanup runs, the kernel drops the lock
    proc.wait()
    done = nasflow("search", "--benchmark", nb201_csv, "--budget", 5, "--out", run)
    assert done.returncode == 0, done.stderr


def test_two_searches_started_together_never_both_succeed(nb201_csv, tmp_path):
    run = tmp_path / "run"
    procs = [start_nasflow("search", "--searcher", "random", "--seed", seed, "--benchmark", nb201_csv,
                           "--budget", 20, "--out", run) for seed in (1, 2)]
    done = [(p.wait(timeout=300), *p.communicate()) for p in procs]
    codes = sorted(code for code, _, _ in done)
    assert codes == [0, 2], done
    loser = next(err for code, _, err in done if code == 2)
    assert "in use by another nasflow process" in loser or "already holds a run" in loser
    # the directory holds one run, whole: the journal's seed, records and results agree
    lines = (run / "journal.jsonl").read_text().splitlines()
    header, records = json.loads(lines[0]), [json.loads(x) for x in lines[1:]]
    result = json.loads((run / "result.json").read_text())
    assert [r["i"] for r in records] == list(range(20)) and result["queries"] == 20
    assert result["config"]["seed"] == header["seed"]
    trajectory = (run / "trajectory.csv").read_text().splitlines()[1:]
    assert [row.split(",")[1] for row in trajectory] == [r["arch"] for r in records]
