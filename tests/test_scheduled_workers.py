"""ASHA with worker processes (issue 20): jobs given out as workers free up, every result once, and a killed
run that resumes with no evaluation repeated and every training in flight continued from its checkpoint."""
import collections
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nasflow.checkpoints import training_progress
from nasflow.spaces.nb201 import NB201Space
from nasflow.training import default_training_oracle
from clirun import run_cli

ASHA = "asha:min=12,max=200,eta=3"


def journal(run_dir):
    return [json.loads(line) for line in (Path(run_dir) / "journal.jsonl").read_text().splitlines()[1:]]


def check_asha_journal(records, rungs, budget):
    """Every (cell, rung) once; a cell reaches a rung only from the one below, charged the extra epochs."""
    seen = collections.defaultdict(list)
    for r in records:
        assert r["fidelity"] in rungs
        k = rungs.index(r["fidelity"])
        assert seen[r["arch"]] == rungs[:k], (r["arch"], seen[r["arch"]], r["fidelity"])
        assert r["epochs"] == rungs[k] - (rungs[k - 1] if k else 0)
        seen[r["arch"]].append(r["fidelity"])
    assert sum(r["epochs"] for r in records) <= budget
    return seen


def test_workers_follow_asha_on_a_table(tmp_path, nb201_csv):
    out = tmp_path / "run"
    done = run_cli("search", "--benchmark", str(nb201_csv), "--searcher", "evolution", "--schedule", ASHA,
                   "--budget-epochs", "3000", "--workers", "2", "--out", str(out), cache=tmp_path / "cache")
    assert done.returncode == 0, done.stderr
    records = journal(out)
    seen = check_asha_journal(records, [12, 200], 3000)
    assert sum(len(v) == 2 for v in seen.values()) >= 3  # cells were promoted
    assert json.loads((out / "in_flight.json").read_text()) == []  # nothing left in flight
    result = json.loads((out / "result.json").read_text())
    assert result["config"]["workers"] == 2 and result["queries"] == len(records)
    # it ends as one process does: at the first job that does not fit
    assert 3000 - sum(r["epochs"] for r in records) < 200


@pytest.mark.parametrize("args,message", [
    (("--workers", "2", "--schedule", "sh:min=12,max=200,eta=3"), "waits for whole rungs: use asha:min=12,max=200,eta=3"),
    (("--workers", "2"), "--workers needs --storage URL (a shared study), or --schedule asha"),
    (("--workers", "2", "--schedule", ASHA, "--storage", "x.db"), "--schedule runs on one machine, not on a shared study"),
])
def test_workers_that_cannot_serve_the_run_are_refused(tmp_path, nb201_csv, args, message):
    done = run_cli("search", "--benchmark", str(nb201_csv), "--out", str(tmp_path / "r"), *args, cache=tmp_path)
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and message in done.stderr, done.stderr
    assert not (tmp_path / "r" / "journal.jsonl").exists()


def test_a_scheduled_training_takes_its_epochs_from_the_schedule(tmp_path):
    done = run_cli("search", "--schedule", "asha:min=1,max=9,eta=3", "--epochs", "5", "--out", str(tmp_path / "r"),
                   cache=tmp_path)
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert "--epochs 5 disagrees with the schedule's max=9" in done.stderr


def test_a_run_with_workers_resumes_with_workers_only(tmp_path, nb201_csv):
    out = tmp_path / "run"
    args = ("--benchmark", str(nb201_csv), "--schedule", ASHA, "--budget-epochs", "1000")
    assert run_cli("search", *args, "--workers", "2", "--out", str(out), cache=tmp_path).returncode == 0
    done = run_cli("search", *args, "--budget-epochs", "2000", "--resume", str(out), cache=tmp_path)
    assert done.returncode == 2 and "was run with --workers; resume it with --workers N" in done.stderr
    before = journal(out)
    (out / "in_flight.json").write_text("[{")
    done = run_cli("search", *args, "--budget-epochs", "2000", "--resume", str(out), "--workers", "2", cache=tmp_path)
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "in_flight.json is damaged" in done.stderr
    (out / "in_flight.json").write_text("[]")
    done = run_cli("search", *args, "--budget-epochs", "2000", "--resume", str(out), "--workers", "2", cache=tmp_path)
    assert done.returncode == 0, done.stderr
    after = journal(out)
    assert after[:len(before)] == before and len(after) > len(before)  # continued, nothing evaluated again
    check_asha_journal(after, [12, 200], 2000)


def children(pid):
    """The live child processes of ``pid`` (Linux /proc)."""
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        found += [int(c) for c in task.read_text().split()]
    return found


def alive(pid):
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc to find the worker processes")
def test_a_killed_run_with_workers_resumes_without_training_again(tmp_path):
    """SIGKILL the search itself mid-training: its workers stop, and the resumed run evaluates no (cell, rung)
    twice, and gives the jobs in flight out again, each training continued from the furthest state saved."""
    cache, out = tmp_path / "cache", tmp_path / "run"
    env = {**os.environ, "NASFLOW_CACHE": str(cache)}
    args = [sys.executable, "-m", "nasflow.cli.main", "search", "--searcher", "evolution", "--width", "16",
            "--schedule", "asha:min=1,max=9,eta=3", "--budget-epochs", "40", "--checkpoint-every", "0",
            "--workers", "2", "--seed", "1"]
    proc = subprocess.Popen(args + ["--out", str(out)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    checkpoints = cache / "training" / "checkpoints"
    deadline = time.time() + 120
    try:
        # kill once a training is under way past a periodic checkpoint and others are done
        while time.time() < deadline and proc.poll() is None:
            periodic = [p for p in checkpoints.glob("*.safetensors") if "@" not in p.name] if checkpoints.exists() else []
            if periodic and (out / "journal.jsonl").exists() and len(journal(out)) >= 3:
                break
            time.sleep(0.02)
        workers = children(proc.pid)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()
    for _ in range(50):  # the workers notice their parent is gone
        if not any(alive(w) for w in workers):
            break
        time.sleep(0.1)
    assert workers and not any(alive(w) for w in workers)
    killed_at = journal(out)
    in_flight = json.loads((out / "in_flight.json").read_text())
    assert in_flight  # the kill came while jobs were running
    saved = {}  # training key -> furthest epoch saved, periodic or kept
    for path in checkpoints.glob("*.safetensors"):
        key = path.name.split("@")[0].split(".")[0]
        saved[key] = max(saved.get(key, 0), training_progress(path, key)[0])
    assert saved

    done = subprocess.run(args + ["--resume", str(out)], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    records = journal(out)
    assert records[:len(killed_at)] == killed_at
    check_asha_journal(records, [1, 3, 9], 40)
    resumed = {(r["arch"], r["fidelity"]): r for r in records[len(killed_at):]}
    assert all((j["arch"], j["fidelity"]) in resumed for j in in_flight)  # each given out again (budget was left)
    oracle = default_training_oracle(NB201Space(), seed=1, width=16, cache_dir=cache / "training")[0].for_schedule(9)
    for job in in_flight:
        key = oracle._key(NB201Space().parse(job["arch"]))
        extra = resumed[(job["arch"], job["fidelity"])]["extra"]
        # a worker that finished the training just before the kill left its result in the cache: nothing trains;
        # else the resumed training began at the furthest state of that training saved when the run was killed
        assert extra["cached"] or extra["resumed_from_epoch"] == saved.get(key, 0), (job, extra, saved.get(key))
    assert any(saved.get(oracle._key(NB201Space().parse(j["arch"])), 0) > 0 for j in in_flight)
    # and no (cell, stop) of the cache was trained twice
    lines = [json.loads(line) for line in (cache / "training" / "nb201.v2.jsonl").read_text().splitlines()]
    assert len({r["key"] for r in lines}) == len(lines)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc to find the worker processes")
def test_a_dead_worker_is_replaced_and_its_job_given_out_again(tmp_path):
    out = tmp_path / "run"
    env = {**os.environ, "NASFLOW_CACHE": str(tmp_path / "cache")}
    proc = subprocess.Popen([sys.executable, "-m", "nasflow.cli.main", "search", "--schedule", "asha:min=1,max=3,eta=3",
                             "--budget-epochs", "12", "--workers", "2", "--out", str(out)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and not ((out / "journal.jsonl").exists() and journal(out)):
            time.sleep(0.02)
        victims = children(proc.pid)
        os.kill(max(victims), signal.SIGKILL)  # a worker (the last started), not the search
        _, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "a worker died" in err and "started the workers again" in err
    check_asha_journal(journal(out), [1, 3], 12)
    assert sum(r["epochs"] for r in journal(out)) > 9  # it went on to spend the budget


def test_scouts_with_workers_stay_untold_across_a_resume(tmp_path, nb201_csv):
    """scout=1 with workers: the schedule's own screens are journaled as scouts, given to no searcher, screened once,
    and a resumed run (which replays the journal in arrival order) keeps them from its searcher too."""
    from functools import partial

    from nasflow.experiments.runs import complete
    from nasflow.experiments.scheduled import worker_oracle
    from nasflow.scheduled_loop import scheduled_search
    from nasflow.schedulers import Schedule
    from nasflow.searchers import get_searcher

    space = NB201Space()
    settings = complete({"space": "nb201", "searcher": "evolution", "benchmark": str(nb201_csv)})
    oracle, out = worker_oracle(settings, 0), tmp_path / "run"
    schedule = Schedule.parse(ASHA + ",scout=1")

    def run(budget, resume):
        searcher = get_searcher("evolution", space, seed=4)
        scheduled_search(space, oracle, searcher, schedule, budget_epochs=budget, seed=4, run_dir=out, resume=resume,
                         workers=2, make_oracle=partial(worker_oracle, settings))
        return searcher

    run(1500, False)
    before = journal(out)
    searcher = run(3000, True)
    records = journal(out)
    assert records[:len(before)] == before
    seen = check_asha_journal(records, [12, 200], 3000)  # nothing evaluated twice
    scouted = {r["arch"] for r in records if r.get("scout")}
    assert any(r.get("scout") for r in before)  # scouts before the stop: the resumed searcher must not be told them
    assert {space.format(a) for a in searcher.history} == set(seen) - scouted
    # a job in flight at a kill is given out again as what it was: a scout stays a scout
    from types import SimpleNamespace

    from nasflow.scheduled_workers import IN_FLIGHT, _in_flight_jobs
    from nasflow.schedulers import Job

    fresh = [a for a in space.enumerate()[:50] if space.format(a) not in seen][:2]
    (out / IN_FLIGHT).write_text(json.dumps([{"arch": space.format(fresh[0]), "fidelity": 12, "scout": True},
                                             {"arch": space.format(fresh[1]), "fidelity": 12}]))
    assert _in_flight_jobs(out, space, (12, 200), SimpleNamespace(records=records)) == [
        Job(fresh[0], 0, True), Job(fresh[1], 0, False)]
