"""Distributed search under faults (issue 16): killed worker processes, user errors in workers, cold starts."""
import subprocess
import sys
import time

import pytest

from nasflow.distributed import CELL, open_storage


def nasflow_cmd(*args):
    return [sys.executable, "-m", "nasflow.cli.main", *map(str, args)]


def trials_of(url, name):
    storage = open_storage(url)
    return storage.get_all_trials(storage.get_study_id_from_name(name), deepcopy=False)


def assert_exact_budget(trials, budget):
    complete = [t for t in trials if t.state.name == "COMPLETE"]
    cells = [t.user_attrs[CELL] for t in complete]
    assert len(complete) == budget
    assert len(set(cells)) == budget, "a cell was evaluated twice"
    assert not [t for t in trials if t.state.name == "RUNNING"], "a claim outlived the run"


def test_simultaneous_cold_starts_on_one_new_sqlite_url(tmp_path, nb201_csv):
    url = f"sqlite:///{tmp_path / 'new.db'}"
    procs = [subprocess.Popen(nasflow_cmd("search", "--searcher", "random", "--benchmark", nb201_csv, "--storage", url,
                                          "--study", "cold", "--budget", 8),
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for _ in range(6)]
    errors = [p.communicate(timeout=300)[1] for p in procs]
    assert [p.returncode for p in procs] == [0] * len(procs), errors
    assert_exact_budget(trials_of(url, "cold"), 8)
    assert (tmp_path / "new.db.lock").exists()  # the schema was made under the lock beside the file


@pytest.mark.parametrize("lock", [True, False])
def test_processes_opening_a_new_sqlite_storage_at_the_same_instant(tmp_path, lock):
    """Released together after their imports, 8 openers of one new file: before the fix most failed
    (``UNIQUE constraint failed: alembic_version.version_num``, ``table ... already exists``). Without the lock
    (a server, an unwritable directory) the loser of the schema race retries."""
    url, go = f"sqlite:///{tmp_path / 'race.db'}", tmp_path / "go"
    code = ("import contextlib, os, sys, time, nasflow.distributed as d\n"
            + ("" if lock else "d._schema_lock = lambda url: contextlib.nullcontext()\n")
            + "open(sys.argv[1], 'w').close()\n"
            + f"while not os.path.exists({str(go)!r}): time.sleep(0.001)\n"
            + f"d.open_storage({url!r})")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path / f"ready{i}")], stderr=subprocess.PIPE,
                              text=True) for i in range(8)]
    deadline = time.monotonic() + 120
    while not all((tmp_path / f"ready{i}").exists() for i in range(8)) and time.monotonic() < deadline:
        time.sleep(0.01)
    go.touch()
    errors = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0] * len(procs), errors
