"""ASHA with worker processes: the schedule and the searcher stay in this process, the workers train.

``scheduled_search(..., workers=N)`` (``nasflow search --schedule asha:... --workers N``). Whenever a worker is
free, ASHA's rule picks its job given the jobs in flight: a promotion of a cell in the top 1/eta of its rung,
else a new cell the searcher proposes (never one in flight), so no worker waits for a rung to fill (Li et al.
2020). Successive halving and Hyperband wait for whole rungs, so they run in one process only.

Results are journaled in the order they arrive, and that order is what the scheduler and the searcher learn
from. Arrival order depends on timing, so a run with workers is not reproducible step by step (no asynchronous
search is); each result is.

Nothing is lost on a kill:

- a finished evaluation is in the journal (fsync'ed) and, for the training oracle, in its cache;
- the jobs in flight are listed in ``run_dir/in_flight.json`` (rewritten atomically as they change). A resumed
  run replays the journal into the scheduler and the searcher, then gives those jobs out again before any
  other, and each of their trainings continues from its last checkpoint: the periodic one within a training,
  the state kept at the rung below across a promotion (``TrainingOracle.for_schedule``);
- a worker that dies takes the executor with it (``BrokenProcessPool``): a new one is started and every job in
  flight given out again, from its checkpoint; after ``MAX_RESTARTS`` deaths the run stops with one line;
- workers exit when this process dies (each watches its parent), so no orphan trains on after a kill.
"""
from __future__ import annotations

import json
import os
import threading
import time
from collections import deque
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Callable, Optional

from .atomic import atomic_write
from .devices import torch_threads
from .errors import NasflowError
from .journal import JournalError, query_record, record_evaluation
from .schedulers import ASHA, Job

IN_FLIGHT = "in_flight.json"
MAX_RESTARTS = 5  # worker deaths one run survives; more means they all fail the same way (memory, a bug)
PARENT_POLL = 0.5  # seconds between a worker's looks at whether its parent is alive

_oracle = None  # the worker process's own oracle (made by the executor's initializer)


class WorkersError(NasflowError):
    """Worker processes kept dying."""


def _watch_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(PARENT_POLL)
    os._exit(1)  # the search is gone: training on would only compete with the run that resumes it


def _start_worker(make_oracle: Callable, top: int, counter, parent: int) -> None:
    global _oracle
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()
    with counter.get_lock():
        index = counter.value
        counter.value += 1
    from .scheduled_loop import for_schedule

    _oracle = for_schedule(make_oracle(index), top)


def _evaluate(arch, fidelity: int):
    started = time.perf_counter()
    # an oracle that trains shares the machine's cores with the other workers: one thread each
    with torch_threads(1 if _oracle.fidelities is None else None):
        evaluation = _oracle.query(arch, fidelity)
    return evaluation, time.perf_counter() - started


def check_workers(schedule, workers: Optional[int]) -> None:
    """Refuse a worker count that is not one, or workers for a schedule that waits for whole rungs."""
    if workers is None:
        return
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise NasflowError(f"workers must be an integer >= 1, got {workers!r}")
    if schedule.kind != "asha":
        raise NasflowError(f"--workers gives jobs out as workers free up, which is ASHA's rule; {schedule.kind} waits "
                           f"for whole rungs: use asha:min={schedule.min},max={schedule.max},eta={schedule.eta}")


def was_run_with_workers(run_dir) -> bool:
    """Whether the run in ``run_dir`` was started with workers (its journal is in arrival order)."""
    return run_dir is not None and (Path(run_dir) / IN_FLIGHT).exists()


class _Executor:
    """A process pool that is started again, up to MAX_RESTARTS times, when one of its workers dies."""

    def __init__(self, workers: int, make_oracle: Callable, top: int):
        import multiprocessing

        self.workers, self.make_oracle, self.top = workers, make_oracle, top
        self.context = multiprocessing.get_context("spawn")  # forking a process that loaded torch is unsafe
        self.restarts = 0
        self.notes: list[str] = []
        self.pool = self._pool()

    def _pool(self) -> ProcessPoolExecutor:
        counter = self.context.Value("i", 0)
        return ProcessPoolExecutor(self.workers, mp_context=self.context, initializer=_start_worker,
                                   initargs=(self.make_oracle, self.top, counter, os.getpid()))

    def submit_all(self, jobs: list, submitted: dict, rungs) -> dict:
        """``jobs`` (job, epochs) in flight: those in ``submitted`` (future -> (job, epochs)) stay, the others are
        submitted. A pool broken meanwhile is started again and every job given out again, from its checkpoint."""
        while True:
            try:
                futures = dict(submitted)
                for pair in jobs[len(futures):]:
                    futures[self.pool.submit(_evaluate, pair[0].arch, rungs[pair[0].rung])] = pair
                return futures
            except BrokenProcessPool as e:
                self.restart(str(e) or "a worker was killed")
                submitted = {}

    def restart(self, why: str) -> None:
        self.restarts += 1
        self.stop()
        if self.restarts > MAX_RESTARTS:
            raise WorkersError(f"worker processes died {self.restarts} times (last: {why}); stopped the search; its "
                               f"finished evaluations are kept: resume the run to continue")
        self.notes.append(f"a worker died ({why}); started the workers again, their jobs continue from checkpoints")
        self.pool = self._pool()

    def close(self) -> None:
        """End the workers once the run is done (none has a job left)."""
        self.pool.shutdown(wait=True)

    def stop(self) -> None:
        # Python 3.11 has no public way to end a pool's running jobs (3.14: terminate_workers): a stopped search
        # must not leave trainings running, so its processes are ended here
        processes = list((getattr(self.pool, "_processes", None) or {}).values())
        self.pool.shutdown(wait=False, cancel_futures=True)
        for process in processes:
            process.terminate()
        for process in processes:
            process.join(5)


def _in_flight_jobs(run_dir, space, rungs, journal) -> list[Job]:
    """The jobs a killed run had in flight and did not finish, to be given out again first."""
    path = Path(run_dir) / IN_FLIGHT
    if not path.exists():
        return []
    try:
        listed = json.loads(path.read_text())
        jobs = [(space.parse(item["arch"]), int(item["fidelity"]), bool(item.get("scout", False))) for item in listed]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise JournalError(f"{path} is damaged ({type(e).__name__}); delete it to resume without the jobs it names "
                           f"(their trainings start again from their checkpoints when chosen again)") from None
    done = {(r["arch"], r.get("fidelity")) for r in journal.records}
    return [Job(arch, rungs.index(f), scout) for arch, f, scout in jobs
            if (space.format(arch), f) not in done and f in rungs]


def run_with_workers(ledger, scheduler, config, journal, run_dir, workers: int, make_oracle: Callable, bar) -> float:
    """Run the schedule with ``workers`` processes until the next job does not fit in the budget; every result
    goes through ``ledger``. Returns the seconds the workers spent evaluating (for the overhead)."""
    if not isinstance(scheduler, ASHA):
        raise NasflowError("worker processes follow ASHA's rule only")
    space, step, rungs, budget = ledger.space, ledger.step, scheduler.rungs, config["budget_epochs"]
    for record in journal.records if journal is not None else []:
        if record.get("fidelity") not in rungs:
            raise JournalError(f"the journal has an evaluation at {record.get('fidelity')} epochs, not a rung of "
                               f"{config['schedule']}; the run is not this schedule's")
        ledger.add(space.parse(record["arch"]), rungs.index(record["fidelity"]), record_evaluation(record),
                   int(record.get("epochs", record["fidelity"])), float(record["seconds"]), scout=bool(record.get("scout")))
        bar.update(int(record.get("epochs", 0)))
    again = deque(_in_flight_jobs(run_dir, space, rungs, journal) if run_dir is not None else [])
    executor = _Executor(workers, make_oracle, rungs[-1])
    in_flight: dict = {}  # future -> (job, epochs charged); dicts keep submission order
    busy_seconds, full = 0.0, False

    def save_in_flight():
        if run_dir is not None:
            listed = [{"arch": space.format(job.arch), "fidelity": rungs[job.rung], **({"scout": True} if job.scout else {})}
                      for job, _ in in_flight.values()]
            atomic_write(Path(run_dir) / IN_FLIGHT, json.dumps(listed))

    try:
        save_in_flight()
        while True:
            while not full and len(in_flight) < workers:
                jobs = [job for job, _ in in_flight.values()]
                job = again.popleft() if again else scheduler.next_job(pending=jobs)
                cost = ledger.cost(job)
                if ledger.spent + sum(c for _, c in in_flight.values()) + cost > budget:
                    full = True  # as in one process: the run ends at the first job that does not fit
                    break
                if job.arch is None:
                    job = Job(step.ask(1, pending=[j.arch for j in jobs] + ledger.scouted)[0], job.rung)
                in_flight = executor.submit_all([*in_flight.values(), (job, cost)], in_flight, rungs)
                save_in_flight()
            if not in_flight:
                break
            done, _ = wait(in_flight, return_when=FIRST_COMPLETED)
            finished = [f for f in in_flight if f in done]  # in submission order: ties resolve the same way
            try:
                results = [(f, f.result()) for f in finished]
            except BrokenProcessPool as e:
                executor.restart(str(e) or "a worker was killed")
                in_flight = executor.submit_all(list(in_flight.values()), {}, rungs)
                continue
            for future, (evaluation, seconds) in results:
                job, cost = in_flight.pop(future)
                if journal is not None:
                    journal.append(query_record(len(ledger.queries), space.format(job.arch), evaluation, seconds,
                                                epochs=cost, scout=job.scout))
                ledger.add(job.arch, job.rung, evaluation, cost, seconds, scout=job.scout)
                busy_seconds += seconds
                bar.update(cost)
            save_in_flight()
    except BaseException:
        executor.stop()
        raise
    executor.close()
    ledger.notes = executor.notes
    return busy_seconds
