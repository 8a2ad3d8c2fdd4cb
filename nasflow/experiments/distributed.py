"""Search with many workers sharing one Optuna study (SQLite, a journal file, or an RDB URL).

The study is the only shared state. Each oracle query is one Optuna trial whose user
attribute ``cell`` names the cell; its value is the validation accuracy and the user
attribute ``query`` holds the full record (``nasflow.journal.query_record``).

- One search step: a worker runs the local loop's ``nasflow.step.RankedSearcher``; the
  cells other workers have claimed are its pending cells (never proposed, counted for the
  explore share).
- History replay: before each query a worker tells its step the COMPLETE trials in
  completion order. Searchers and the step are functions of (seed, told history), so any
  worker, on any machine, rebuilds the same state from storage, and a dead worker loses at
  most its in-flight query.
- Claims: a worker creates a RUNNING trial carrying the cell in one storage call, then
  reads the study. It keeps the claim only if no lower-numbered RUNNING/COMPLETE trial has
  the same cell and fewer than ``budget`` of them exist; otherwise it fails its trial and
  proposes again. Trial creation is serialised by the storage, so of two trials the later
  one always sees the earlier one: no cell is evaluated twice and no more than ``budget``
  trials ever complete (``nasflow.experiments.storage`` says why this needs Optuna's
  storage calls rather than ``Study.ask``).
- Stale claims: a worker beats a heartbeat (trial system attribute) while it evaluates;
  a RUNNING trial whose heartbeat has not moved for ``stale_after`` seconds is failed by
  whichever worker is waiting for a budget slot, which releases its cell and its slot.
- Dead workers: ``--workers N`` runs its workers as supervised processes
  (``nasflow.workerpool``). When one dies, the parent releases its claims at once (the
  claim names its worker ``host:pid``) and starts another in its place; the heartbeat
  covers workers that no local parent watches (other machines, a parent killed too).
- Cold starts: Optuna creates an RDB schema on first connection, racily; ``open_storage``
  serialises that behind a lock file beside a SQLite database, and retries the race elsewhere.
"""
from __future__ import annotations

import os
import random
import socket
import time
import warnings
from pathlib import Path

from ..devices import torch_threads
from ..errors import NasflowWarning
from ..journal import query_record, record_evaluation
from ..loop import SearchResult, fit_pool, optimum_of
from ..restricted import restriction_of
from ..spec import DEFAULT_STALE_AFTER, DEFAULT_WORKERS, RunSpec, SpecMismatch
from ..step import RankedSearcher, RefitSchedule
from .runs import build, complete, continued, run_meta, searcher_options
from .storage import (
    CELL, QUERY, DistributedError, Heartbeat, StaleClaims, claim, completed_trials, finish, open_storage,
    release_claims, study_trajectory, study_trials, trial_states,
)

SETTINGS = "nasflow"  # the study's user attribute holding its RunSpec JSON
# the study's user attribute naming the cells a partial table restricted it to (None: the whole space)
RESTRICTED = "nasflow_restricted"
POLL = 0.2  # seconds between looks at the study while every budget slot is claimed
# deaths of worker processes one command replaces: a kill now and then is survived; more means every
# worker fails the same way (a bug, memory), and the study is kept for a rerun
MAX_RESTARTS = 5


def open_study(storage, name: str, given: dict, validate=None) -> tuple[int, RunSpec]:
    """(study id, run spec): create the study with ``given`` or join it, checking they agree as a resumed
    run must (``RunSpec.continued``: the budget may be raised, the hardware may change).

    ``validate(spec)`` runs before a new study is created, so settings that cannot work
    (an unknown space, a missing benchmark) leave no study behind.
    """
    import optuna
    from optuna.study import StudyDirection

    if given.get("batch") not in (None, 1):
        raise DistributedError("--batch does not apply to a shared study: each worker queries one cell at a time")
    try:
        storage.get_study_id_from_name(name)
    except KeyError:
        if validate is not None:
            validate(complete(given))
    try:
        study_id = storage.create_new_study([StudyDirection.MAXIMIZE], name)
        spec = complete(given)
        storage.set_study_user_attr(study_id, SETTINGS, spec.to_json())
        return study_id, spec
    except optuna.exceptions.DuplicatedStudyError:
        study_id = storage.get_study_id_from_name(name)
    stored = None
    for _ in range(10):  # the creator writes the settings right after creating the study
        stored = storage.get_study_user_attrs(study_id).get(SETTINGS)
        if stored is not None:
            break
        time.sleep(POLL)
    if stored is None:
        raise DistributedError(f"study {name!r} exists but was not made by nasflow search; choose another --study")
    try:
        return study_id, continued(stored, given)
    except SpecMismatch as e:
        raise DistributedError(f"study {name!r} was made with {e.detail}; "
                               f"join it without that option or choose another --study") from None


def check_restriction(storage, study_id: int, name: str, space) -> None:
    """A study searches one set of cells: the first worker records which cells its table restricted the
    search to, and a worker whose table gives other cells (the file edited in between) may not join,
    as a resumed run may not (``RunSpec``'s "restricted" identity)."""
    restriction = restriction_of(space)
    fingerprint = None if restriction is None else restriction["fingerprint"]
    stored = storage.get_study_user_attrs(study_id)
    if RESTRICTED not in stored:
        storage.set_study_user_attr(study_id, RESTRICTED, fingerprint)
    elif stored[RESTRICTED] != fingerprint:
        now = f"{restriction['source']} now restricts it to other cells" if restriction else "its table is now complete"
        raise DistributedError(
            f"study {name!r} searches the cells its table held when it was made (restricted={stored[RESTRICTED]}), "
            f"but {now} (restricted={fingerprint}); join it with the table it was made with or choose another --study")


class _Replay:
    """A search step kept equal to one told the study's COMPLETE trials in completion order."""

    def __init__(self, space, make_step):
        self.space = space
        self.make_step = make_step
        self._restart()

    def _restart(self):
        self.step: RankedSearcher = self.make_step()
        self.told: list[str] = []

    def sync(self, completed) -> None:
        keys = [t.user_attrs[CELL] for t in completed]
        if keys[: len(self.told)] != self.told:
            # a trial finished 'in the past' (clock skew, equal timestamps): replay from scratch
            self._restart()
        for trial in completed[len(self.told):]:
            self.step.tell(self.space.parse(trial.user_attrs[CELL]), record_evaluation(trial.user_attrs[QUERY]))
            self.told.append(trial.user_attrs[CELL])


def _searcher_factory(settings: dict, space, first):
    """New searchers like ``first`` (told nothing); a predictor ensemble is shared, as each fit starts afresh."""
    from nasflow.searchers import get_searcher

    options = searcher_options(settings, first.ensemble if first.takes_ensemble else None, space)
    made = iter([first])
    return lambda: next(made, None) or get_searcher(settings["searcher"], space, seed=settings["seed"], **options)


def _step_factory(settings: dict, run):
    """New search steps like the local loop's, over new searchers like ``run``'s (told nothing)."""
    make_searcher = _searcher_factory(settings, run.space, run.searcher)
    pool = fit_pool(settings["pool"], run.space)[0]
    schedule = RefitSchedule(warmup=settings["warmup"], every=settings["refit_every"])
    return lambda: RankedSearcher(make_searcher(), run.space, run.predictor, pool, schedule, float(settings["explore"]),
                                  settings["seed"])


def run_worker(storage, study_name: str, settings: dict, stale_after: float = DEFAULT_STALE_AFTER,
               worker_index: int = 0) -> int:
    """Query cells for the study until ``budget`` trials are COMPLETE; returns how many this worker completed.

    ``storage`` is a storage URL or an opened storage; ``settings`` the study's complete settings (``open_study``);
    ``worker_index`` picks this worker's device from ``--devices``.
    """
    if isinstance(storage, (str, Path)):
        storage = open_storage(str(storage))
    study_id = storage.get_study_id_from_name(study_name)
    run = build(settings, worker=worker_index)
    replay = _Replay(run.space, _step_factory(settings, run))
    budget = settings["budget"]
    worker = f"{socket.gethostname()}:{os.getpid()}"
    # workers share the searcher's seed; this only spreads out retries after a lost claim
    pause = random.Random(os.getpid())
    stale = StaleClaims(stale_after)
    done = 0
    heartbeat = Heartbeat(storage, interval=max(stale_after / 4, 0.05))
    try:
        while True:
            completed, running = study_trials(storage, study_id)
            if len(completed) >= budget:
                return done
            if len(completed) + len(running) >= budget:
                if not stale.release(storage, study_id, running):
                    time.sleep(POLL)
                continue
            replay.sync(completed)
            # whichever worker refits fits on the completed trials, its own and the others'
            arch = replay.step.ask(1, pending=[run.space.parse(t.user_attrs[CELL]) for t in running])[0]
            cell = run.space.format(arch)
            trial_id = claim(storage, study_id, cell, budget, worker)
            if trial_id is None:
                time.sleep(pause.uniform(0, POLL / 4))
                continue
            heartbeat.trial_id = trial_id
            t0 = time.perf_counter()
            try:
                evaluation = run.oracle.query(arch)
            except BaseException:
                # give the cell and the budget slot back now rather than after stale_after
                storage.set_trial_state_values(trial_id, trial_states().FAIL)
                raise
            finally:
                heartbeat.trial_id = None
            seconds = time.perf_counter() - t0
            if finish(storage, trial_id, query_record(len(completed), cell, evaluation, seconds)):
                done += 1
    finally:
        heartbeat.stop()


def worker_main(storage_url, study_name, settings, stale_after, worker_index):
    """One worker process of ``--workers N``: ``run_worker`` on its own storage connection."""
    uses_torch = settings["predictor"] != "none" or settings["training"] is not None
    with torch_threads(1 if uses_torch else None):  # several workers share the machine's cores
        return run_worker(storage_url, study_name, settings, stale_after, worker_index)


def run_study(given: dict, storage_url: str, study_name: str, workers: int = DEFAULT_WORKERS,
              stale_after: float = DEFAULT_STALE_AFTER, progress: bool = False) -> SearchResult:
    """Create or join ``study_name`` in the storage and run ``workers`` worker processes until the budget is COMPLETE."""
    from tqdm.auto import tqdm

    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise DistributedError(f"workers must be an integer >= 1, got {workers!r}")
    if not stale_after > 0:
        raise DistributedError(f"stale_after must be positive seconds, got {stale_after!r}")
    storage = open_storage(storage_url)
    built = {}

    def validate(settings):
        if settings["objectives"]:  # a study's trials hold one value and its workers one objective
            raise DistributedError("--objectives runs in one process: a shared --storage study searches valid alone")
        built["parts"] = build(settings)  # a bad space/searcher/benchmark fails here, before any study exists
        fit_pool(settings["pool"], built["parts"].space)  # as is an absurd pool

    study_id, settings = open_study(storage, study_name, given, validate)
    run = built.get("parts") or build(settings)
    check_restriction(storage, study_id, study_name, run.space)
    size = run.space.size
    if size is not None and settings["budget"] > size:
        raise DistributedError(f"budget {settings['budget']} exceeds the {size:,d} cells of {run.space.name}")
    before = len(completed_trials(storage, study_id))
    notice = None
    if workers > max(1, settings["budget"] - before):
        # a worker per remaining query at most: the others would only start (seconds each), find no work and exit
        warnings.warn(f"{settings['budget'] - before} queries left of the budget; running "
                      f"{max(1, settings['budget'] - before)} workers, not {workers}", NasflowWarning)
        workers = max(1, settings["budget"] - before)
    start = time.perf_counter()
    bar = tqdm(total=settings["budget"], initial=min(before, settings["budget"]), disable=not progress,
               desc=f"{study_name} ({workers} workers)", unit="query")
    try:
        if workers == 1:
            run_worker(storage, study_name, settings, stale_after)
        else:
            replaced = _run_processes(storage, study_id, storage_url, study_name, settings, workers, stale_after, bar)
            notice = "; ".join(([notice] if notice else []) + replaced) or None
    finally:
        bar.close()
    wall = time.perf_counter() - start
    completed = completed_trials(storage, study_id)
    trajectory = study_trajectory(completed)
    new = trajectory[before:]
    oracle_seconds = sum(q.seconds for q in new)
    config = {**run_meta(settings, run), "storage": storage_url, "study": study_name, "workers": workers}
    if settings["training"] is not None:
        from ..training import speed_summary

        config["training_speed"] = speed_summary(t.user_attrs[QUERY]["extra"] for t in completed[before:])
    return SearchResult(
        trajectory=trajectory,
        config=config,
        overhead_per_query=(wall * workers - oracle_seconds) / len(new) if new else 0.0,
        resumed_queries=before,
        notice=notice,
        optimum=optimum_of(run.oracle, run.space),
    )


def _run_processes(storage, study_id, storage_url, study_name, settings, workers, stale_after, bar) -> list[str]:
    """Run the workers, replacing any that dies; returns a line per replacement."""
    from ..workerpool import WorkerPool

    host = socket.gethostname()

    def progress():
        bar.n = min(len(completed_trials(storage, study_id)), settings["budget"])
        bar.refresh()

    pool = WorkerPool(
        worker_main, lambda i: (storage_url, study_name, settings, stale_after, i), workers,
        max_restarts=MAX_RESTARTS, on_exit=lambda pid: release_claims(storage, study_id, f"{host}:{pid}"),
        finished=lambda: len(completed_trials(storage, study_id)) >= settings["budget"], on_tick=progress)
    pool.run()
    return pool.notes
