"""Distributed search under faults (issue 16): killed worker processes, user errors in workers, cold starts."""
import functools
import os
import signal
import socket
import subprocess
import sys
import time

import pytest
import workerdoubles

from nasflow.experiments.distributed import open_study, run_study
from nasflow.experiments.storage import CELL, RELEASED, WORKER, claim, open_storage, release_claims
from nasflow.errors import NasflowError
from nasflow.workerpool import WorkerPool, WorkerPoolError


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


def test_a_killed_worker_process_is_replaced(tmp_path):
    exited = []
    pool = WorkerPool(workerdoubles.first_dies, lambda i: (str(tmp_path / "marker"),), workers=2, max_restarts=1,
                      on_exit=exited.append)
    pool.run()
    assert len(exited) == 3 and len(set(exited)) == 3  # two slots, one of them started twice
    assert len(pool.notes) == 1 and "killed by SIGKILL; started another in its place" in pool.notes[0]


def test_workers_that_keep_dying_stop_the_pool_with_one_line():
    exited = []
    pool = WorkerPool(workerdoubles.always_dies, lambda i: (), workers=1, max_restarts=2, on_exit=exited.append)
    with pytest.raises(WorkerPoolError, match=r"died 3 times \(last: killed by SIGKILL\)") as caught:
        pool.run()
    assert "\n" not in str(caught.value) and len(exited) == 3


def test_a_user_error_in_a_worker_stops_the_others_and_is_not_retried():
    exited = []
    start = time.monotonic()
    pool = WorkerPool(workerdoubles.bad_input_or_sleeps, lambda i: (i,), workers=3, max_restarts=5,
                      on_exit=exited.append)
    with pytest.raises(NasflowError, match="^benchmark table nowhere to be found; pass --benchmark$"):
        pool.run()
    assert time.monotonic() - start < 30  # the sleepers were stopped, not waited for
    assert len(exited) == 3 and pool.restarts == 0


def test_claims_of_an_exited_worker_are_released_and_marked(tmp_path, nb201_csv):
    url = f"sqlite:///{tmp_path / 'r.db'}"
    storage = open_storage(url)
    study_id, _ = open_study(storage, "r", {"budget": 5, "benchmark": nb201_csv})
    dead = claim(storage, study_id, "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|", 5, "host:12")
    alive = claim(storage, study_id, "|none~0|+|none~0|none~1|+|none~0|none~1|skip_connect~2|", 5, "host:13")
    assert release_claims(storage, study_id, "host:12") == 1
    assert storage.get_trial(dead).state.name == "FAIL" and storage.get_trial(dead).system_attrs[RELEASED]
    assert storage.get_trial(alive).state.name == "RUNNING"


def test_a_worker_killed_holding_a_claim_is_released_at_once_and_replaced(tmp_path, nb201_csv, monkeypatch):
    import nasflow.experiments.distributed as distributed

    url = f"sqlite:///{tmp_path / 'h.db'}"
    monkeypatch.setattr(distributed, "worker_main",
                        functools.partial(workerdoubles.claims_then_dies, str(tmp_path / "marker")))
    start = time.monotonic()
    # the run takes seconds; were the claim left for the stale-heartbeat release, it would take over a minute
    result = run_study({"searcher": "random", "budget": 12, "benchmark": nb201_csv}, url, "h", workers=2,
                       stale_after=60)
    assert time.monotonic() - start < 45
    trials = trials_of(url, "h")
    assert_exact_budget(trials, 12)
    released = [t for t in trials if t.system_attrs.get(RELEASED)]
    assert len(released) == 1 and released[0].state.name == "FAIL"
    assert "started another in its place" in result.notice


def test_a_user_error_in_a_worker_ends_the_study_run_with_that_line(tmp_path, nb201_csv, monkeypatch):
    import nasflow.experiments.distributed as distributed

    url = f"sqlite:///{tmp_path / 'u.db'}"
    monkeypatch.setattr(distributed, "worker_main", workerdoubles.claims_then_bad_input)
    with pytest.raises(NasflowError, match="^device cuda:7 does not exist; pass --device cpu$"):
        run_study({"searcher": "random", "budget": 12, "benchmark": nb201_csv}, url, "u", workers=2)
    trials = trials_of(url, "u")
    # both claims released: the failing worker's and the one of the worker stopped because of it
    assert len(trials) == 2 and all(t.state.name == "FAIL" and t.system_attrs[RELEASED] for t in trials)


def test_search_finishes_its_budget_when_a_worker_is_sigkilled(tmp_path, nb201_csv):
    url = f"sqlite:///{tmp_path / 'k.db'}"
    budget = 20
    proc = subprocess.Popen(nasflow_cmd("search", "--searcher", "random", "--benchmark", nb201_csv, "--storage", url,
                                        "--study", "k", "--budget", budget, "--workers", 2, "--stale-after", 600),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    storage = open_storage(url)
    host = f"{socket.gethostname()}:"
    victim, deadline = None, time.monotonic() + 120
    while victim is None and proc.poll() is None and time.monotonic() < deadline:
        try:
            trials = storage.get_all_trials(storage.get_study_id_from_name("k"), deepcopy=False)
        except KeyError:
            trials = []
        # a worker process of this command (not the command itself), caught mid-query if possible
        workers = [int(t.system_attrs[WORKER][len(host):]) for t in trials
                   if t.system_attrs.get(WORKER, "").startswith(host) and t.state.name == "RUNNING"]
        if sum(t.state.name == "COMPLETE" for t in trials) >= 4 and workers:
            victim = workers[0]
            assert victim != proc.pid
            os.kill(victim, signal.SIGKILL)
        time.sleep(0.01)
    assert victim is not None, "no worker was seen claiming a cell"
    out, err = proc.communicate(timeout=120)  # seconds when the claim is released at once; 600 s if not
    assert proc.returncode == 0, err
    assert f"worker {victim} killed by SIGKILL; started another in its place" in err
    assert "Traceback" not in err
    assert_exact_budget(trials_of(url, "k"), budget)
    assert f"queries    {budget} (of budget {budget}" in out


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
    code = ("import contextlib, os, sys, time, nasflow.experiments.distributed as d\n"
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
