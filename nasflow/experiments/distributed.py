"""Search with many workers sharing one Optuna study (SQLite, a journal file, or an RDB URL).

The study is the only shared state. Each oracle query is one Optuna trial whose user
attribute ``cell`` names the cell; its value is the validation accuracy and the user
attribute ``query`` holds the full record (``nasflow.journal.query_record``).

- History replay: before each query a worker tells its searcher the COMPLETE trials in
  completion order. Searchers are functions of (seed, told history), so any worker, on
  any machine, rebuilds the same state from storage, and a dead worker loses at most its
  in-flight query.
- Claims: a worker creates a RUNNING trial carrying the cell in one storage call, then
  reads the study. It keeps the claim only if no lower-numbered RUNNING/COMPLETE trial has
  the same cell and fewer than ``budget`` of them exist; otherwise it fails its trial and
  proposes again. Trial creation is serialised by the storage (RDB: the study row is locked
  FOR UPDATE; journal file: the file lock orders the log), so of two trials the later one
  always sees the earlier one: no cell is evaluated twice and no more than ``budget``
  trials ever complete.
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

import contextlib
import os
import random
import socket
import threading
import time
import warnings
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional

import numpy as np

from ..core import Arch, Evaluation, exploring
from ..devices import torch_threads
from ..errors import NasflowError, NasflowWarning
from ..journal import IDENTITY, _json_safe, query_record, record_evaluation
from ..loop import Query, SearchResult, _choose, _optimum, fit_pool
from .runs import build, complete, continued, searcher_options

CELL = "cell"
QUERY = "query"
HEARTBEAT = "nasflow:heartbeat"
WORKER = "nasflow:worker"
RELEASED = "nasflow:released"  # on a claim failed because its worker exited: why
SETTINGS = "nasflow"
# Settings two invocations must agree on to share a study (the budget may be raised).
STUDY_IDENTITY = tuple(k for k in IDENTITY if k != "batch") + ("benchmark", "training")
POLL = 0.2  # seconds between looks at the study while every budget slot is claimed
DEFAULT_STALE_AFTER = 60.0
# deaths of worker processes one command replaces: a kill now and then is survived; more means every
# worker fails the same way (a bug, memory), and the study is kept for a rerun
MAX_RESTARTS = 5


class DistributedError(NasflowError):
    """A storage that cannot be opened, or a study that belongs to another search."""


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


def open_storage(url: str):
    """An Optuna storage: ``dialect://...`` is an RDB URL (sqlite, postgresql, mysql), anything else a journal file."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # library code does not print trial logs
    if "://" in url:
        try:
            return _open_rdb(url)
        except Exception as e:  # sqlalchemy / driver errors: unknown dialect, unreachable server, missing driver
            raise DistributedError(f"cannot open storage {url}: {_first_line(e)}") from None
    path = Path(url).expanduser()
    if not path.parent.is_dir():
        raise DistributedError(f"cannot open journal storage {url}: directory {path.parent} does not exist")
    if path.is_dir():
        raise DistributedError(f"journal storage {url} is a directory; give a file path or an RDB URL such as sqlite:///study.db")
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    try:
        return JournalStorage(JournalFileBackend(str(path)))
    except Exception as e:
        raise DistributedError(f"cannot open journal storage {url}: {_first_line(e)}") from None


SCHEMA_TRIES = 5  # opening attempts of an RDB storage that another process is creating at the same moment


def _open_rdb(url: str):
    """An RDBStorage whose schema is created once, however many processes open a new database together.

    Optuna creates its tables and stamps the alembic version on first connection, with no
    guard against a second process doing the same: of 10 simultaneous cold starts on one
    new SQLite file, some died with ``UNIQUE constraint failed: alembic_version.version_num``
    (issue 16). For a SQLite file, the processes on its machine take turns under a lock file
    beside it; for a server (or a lock that cannot be taken) the loser of that race retries,
    and then finds the schema made.
    """
    import optuna
    import sqlalchemy.exc

    # sqlite serialises writers; a long busy timeout makes concurrent workers wait instead of failing
    kwargs = {"connect_args": {"timeout": 120}} if url.startswith("sqlite") else {}
    with _schema_lock(url):
        for attempt in range(SCHEMA_TRIES):
            try:
                return optuna.storages.RDBStorage(url, engine_kwargs=kwargs)
            except sqlalchemy.exc.DatabaseError as e:
                # another process created the same tables ("already exists") or version rows (IntegrityError) first
                raced = isinstance(e, sqlalchemy.exc.IntegrityError) or "already exists" in str(e)
                if not raced or attempt == SCHEMA_TRIES - 1:
                    raise
                time.sleep(random.uniform(0.05, 0.2) * 2 ** attempt)


@contextlib.contextmanager
def _schema_lock(url: str):
    """Hold ``FILE.lock`` beside a SQLite database file while its schema may be created; nothing for other URLs."""
    from filelock import FileLock

    try:
        import sqlalchemy.engine

        database = sqlalchemy.engine.make_url(url).database if url.startswith("sqlite") else None
    except Exception:  # a malformed URL: RDBStorage gives the message
        database = None
    if not database or database == ":memory:" or database.startswith("file:"):
        yield
        return
    # kept after release (as the run-directory lock is): deleting it would let a third process lock a
    # new file while a second still waits on the old one
    lock = FileLock(f"{Path(database).expanduser()}.lock", timeout=120, preserve_lock_file=True)
    try:
        lock.acquire()
    except Exception:  # an unwritable directory, a lock held for minutes: fall back to retrying
        yield
        return
    try:
        yield
    finally:
        lock.release()


def open_study(storage, name: str, given: dict, validate=None) -> tuple[int, dict]:
    """(study id, complete settings): create the study with ``given`` or join it, checking they agree.

    ``validate(settings)`` runs before a new study is created, so settings that cannot work
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
        settings = complete(given)
        storage.set_study_user_attr(study_id, SETTINGS, _json_safe(settings))
        return study_id, settings
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
    wanted = complete(given)
    for key in STUDY_IDENTITY:
        if given.get(key) not in (None, {}) and _json_safe(wanted[key]) != stored.get(key):
            raise DistributedError(
                f"study {name!r} was made with {key}={stored.get(key)!r}, not {wanted[key]!r}; "
                f"join it without that option or choose another --study"
            )
    settings = continued(stored, given)
    return study_id, settings


def _states():
    from optuna.trial import TrialState

    return TrialState


def _completion_order(trial):
    return (trial.datetime_complete, trial.number)


class _Replay:
    """A searcher kept equal to one told the study's COMPLETE trials in completion order."""

    def __init__(self, space, make_searcher):
        self.space = space
        self.make_searcher = make_searcher
        self._restart()

    def _restart(self):
        self.searcher = self.make_searcher()
        self.told: list[str] = []
        self.history: dict[Arch, Evaluation] = {}

    def sync(self, completed) -> None:
        keys = [t.user_attrs[CELL] for t in completed]
        if keys[: len(self.told)] != self.told:
            # a trial finished 'in the past' (clock skew, equal timestamps): replay from scratch
            self._restart()
        for trial in completed[len(self.told):]:
            arch = self.space.parse(trial.user_attrs[CELL])
            evaluation = record_evaluation(trial.user_attrs[QUERY])
            self.searcher.tell(arch, evaluation)
            self.history[arch] = evaluation
            self.told.append(trial.user_attrs[CELL])


class _Heartbeat:
    """Refreshes the heartbeat of the trial being evaluated, from a thread, so slow oracles stay claimed."""

    def __init__(self, storage, interval: float):
        self.storage, self.interval = storage, interval
        self.trial_id: Optional[int] = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, daemon=True)
        self._thread.start()

    def _beat(self):
        while not self._stop.wait(self.interval):
            trial_id = self.trial_id
            if trial_id is not None:
                try:
                    self.storage.set_trial_system_attr(trial_id, HEARTBEAT, time.time())
                except Exception:  # finished or failed meanwhile: the main thread finds out at tell time
                    pass

    def stop(self):
        self._stop.set()
        self._thread.join()


def _searcher_factory(settings: dict, space, first):
    """New searchers like ``first`` (told nothing); a predictor ensemble is shared, as each fit starts afresh."""
    from nasflow.searchers import get_searcher

    options = searcher_options(settings, getattr(first, "ensemble", None), space)
    made = iter([first])
    return lambda: next(made, None) or get_searcher(settings["searcher"], space, seed=settings["seed"], **options)


def _is_ours(trial) -> bool:
    return CELL in trial.user_attrs


class _StaleClaims:
    """Spots RUNNING trials whose heartbeat has not moved for ``stale_after`` seconds of this worker's clock.

    Heartbeat values are only compared with each other, never with this machine's time, so
    clock skew between machines cannot make a live worker's claim look stale.
    """

    def __init__(self, stale_after: float):
        self.stale_after = stale_after
        self.seen: dict[int, tuple[object, float]] = {}  # trial id -> (heartbeat, when it was first seen)

    def release(self, storage, running) -> int:
        """Fail the stale ones; returns how many this call released."""
        now = time.monotonic()
        seen, released = {}, 0
        for trial in running:
            beat = trial.system_attrs.get(HEARTBEAT)
            last = self.seen.get(trial._trial_id)
            seen[trial._trial_id] = last if last is not None and last[0] == beat else (beat, now)
            if now - seen[trial._trial_id][1] > self.stale_after:
                try:
                    storage.set_trial_state_values(trial._trial_id, _states().FAIL)
                    released += 1
                except Exception:  # finished meanwhile, or another worker released it first
                    pass
        self.seen = seen
        return released


def _claim(storage, study_id: int, cell: str, budget: int, worker: str) -> Optional[int]:
    """The id of a RUNNING trial now owning ``cell`` and a budget slot, or None if another worker got there first."""
    from optuna.trial import FrozenTrial

    states = _states()
    template = FrozenTrial(
        number=-1, state=states.RUNNING, value=None, datetime_start=datetime.now(timezone.utc),
        datetime_complete=None, params={}, distributions={}, user_attrs={CELL: cell},
        system_attrs={WORKER: worker, HEARTBEAT: time.time()}, intermediate_values={}, trial_id=-1,
    )
    trial_id = storage.create_new_trial(study_id, template_trial=template)
    # trial numbers count a study's trials in creation order (RDB and journal storages alike)
    number = storage.get_trial_number_from_id(trial_id)
    earlier = [
        t for t in storage.get_all_trials(study_id, deepcopy=False, states=(states.RUNNING, states.COMPLETE))
        if t.number < number and _is_ours(t)
    ]
    if len(earlier) >= budget or any(t.user_attrs[CELL] == cell for t in earlier):
        storage.set_trial_state_values(trial_id, states.FAIL)
        return None
    return trial_id


def _finish(storage, trial_id: int, record: dict) -> bool:
    """Complete the trial; False if it was released as stale meanwhile (the evaluation is discarded)."""
    try:
        storage.set_trial_user_attr(trial_id, QUERY, record)
        return storage.set_trial_state_values(trial_id, _states().COMPLETE, [record["valid"]])
    except Exception as e:
        import optuna

        if isinstance(e, (optuna.exceptions.UpdateFinishedTrialError, RuntimeError)):
            return False
        raise


def run_worker(storage, study_name: str, settings: dict, stale_after: float = DEFAULT_STALE_AFTER,
               worker_index: int = 0) -> int:
    """Query cells for the study until ``budget`` trials are COMPLETE; returns how many this worker completed.

    ``storage`` is a storage URL or an opened storage; ``settings`` the study's complete settings (``open_study``);
    ``worker_index`` picks this worker's device from ``--devices``.
    """
    if isinstance(storage, (str, Path)):
        storage = open_storage(str(storage))
    study_id = storage.get_study_id_from_name(study_name)
    space, oracle, searcher, predictor, _ = build(settings, worker=worker_index)
    pool = fit_pool(settings["pool"], space)[0]
    replay = _Replay(space, _searcher_factory(settings, space, searcher))
    states = _states()
    budget, warmup, refit_every = settings["budget"], settings["warmup"], settings["refit_every"]
    worker = f"{socket.gethostname()}:{os.getpid()}"
    # workers share the searcher's seed; this only spreads out retries after a lost claim
    pause = random.Random(os.getpid())
    stale = _StaleClaims(stale_after)
    fitted_at = None
    done = 0
    heartbeat = _Heartbeat(storage, interval=max(stale_after / 4, 0.05))
    try:
        while True:
            trials = [t for t in storage.get_all_trials(study_id, deepcopy=False,
                                                         states=(states.RUNNING, states.COMPLETE)) if _is_ours(t)]
            completed = sorted((t for t in trials if t.state == states.COMPLETE), key=_completion_order)
            running = [t for t in trials if t.state == states.RUNNING]
            if len(completed) >= budget:
                return done
            if len(completed) + len(running) >= budget:
                if not stale.release(storage, running):
                    time.sleep(POLL)
                continue
            replay.sync(completed)
            history = replay.history
            due = fitted_at is None or len(history) - fitted_at >= refit_every
            if predictor is not None and len(history) >= warmup and due:
                # whichever worker gets here fits on every completed trial, its own and the others'
                archs = list(history)
                predictor.fit(archs, np.array([history[a].valid for a in archs], dtype=np.float64))
                fitted_at = len(history)
            taken = {**history, **{space.parse(t.user_attrs[CELL]): None for t in running}}
            # the explore share counts every claimed query, so workers together keep the loop's spacing
            ranking = predictor is not None and fitted_at is not None and not exploring(len(taken), 1, settings["explore"])
            chosen = _choose(space, replay.searcher, predictor if ranking else None, taken,
                             pool if ranking else 1, 1, settings["seed"])
            cell = space.format(chosen[0])
            trial_id = _claim(storage, study_id, cell, budget, worker)
            if trial_id is None:
                time.sleep(pause.uniform(0, POLL / 4))
                continue
            heartbeat.trial_id = trial_id
            t0 = time.perf_counter()
            try:
                evaluation = oracle.query(chosen[0])
            except BaseException:
                # give the cell and the budget slot back now rather than after stale_after
                storage.set_trial_state_values(trial_id, states.FAIL)
                raise
            finally:
                heartbeat.trial_id = None
            seconds = time.perf_counter() - t0
            if _finish(storage, trial_id, query_record(len(completed), cell, evaluation, seconds)):
                done += 1
    finally:
        heartbeat.stop()


def _worker_main(storage_url, study_name, settings, stale_after, worker_index):
    uses_torch = settings["predictor"] != "none" or settings["training"] is not None
    with torch_threads(1 if uses_torch else None):  # several workers share the machine's cores
        return run_worker(storage_url, study_name, settings, stale_after, worker_index)


def completed_trials(storage, study_id: int) -> list:
    states = _states()
    trials = storage.get_all_trials(study_id, deepcopy=False, states=(states.COMPLETE,))
    return sorted((t for t in trials if _is_ours(t)), key=_completion_order)


def study_trajectory(space, completed) -> list[Query]:
    """The study's queries in completion order, with the best-so-far (by validation) after each."""
    out: list[Query] = []
    best = None
    start = min((t.datetime_start for t in completed), default=None)
    for n, trial in enumerate(completed, start=1):
        evaluation = record_evaluation(trial.user_attrs[QUERY])
        cell = trial.user_attrs[CELL]
        if best is None or evaluation.valid > best[1].valid:
            best = (cell, evaluation)
        out.append(Query(
            n=n, arch=cell, valid=evaluation.valid, test=evaluation.test, best_valid=best[1].valid,
            best_test=best[1].test, best_arch=best[0], seconds=float(trial.user_attrs[QUERY]["seconds"]),
            wall=(trial.datetime_complete - start).total_seconds(),
        ))
    return out


def run_study(given: dict, storage_url: str, study_name: str, workers: int = 1,
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
        built["parts"] = build(settings)  # a bad space/searcher/benchmark fails here, before any study exists
        fit_pool(settings["pool"], built["parts"][0])  # as is an absurd pool

    study_id, settings = open_study(storage, study_name, given, validate)
    space, oracle, _, _, description = built.get("parts") or build(settings)
    size = getattr(space, "size", None)
    if size is not None and settings["budget"] > size:
        raise DistributedError(f"budget {settings['budget']} exceeds the {size:,d} cells of {space.name}")
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
    trajectory = study_trajectory(space, completed)
    new = trajectory[before:]
    oracle_seconds = sum(q.seconds for q in new)
    config = {**settings, "oracle": description, "storage": storage_url, "study": study_name, "workers": workers}
    if settings["training"] is not None:
        from ..training import speed_summary

        config["training_speed"] = speed_summary(t.user_attrs[QUERY]["extra"] for t in completed[before:])
    return SearchResult(
        trajectory=trajectory,
        config=config,
        overhead_per_query=(wall * workers - oracle_seconds) / len(new) if new else 0.0,
        resumed_queries=before,
        notice=notice,
        optimum=_optimum(oracle),
    )


def release_claims(storage, study_id: int, worker: str) -> int:
    """Fail the RUNNING trials claimed by ``worker`` (``host:pid``), which has exited; returns how many.

    A worker that dies mid-query leaves its claim RUNNING; the parent that saw it die
    releases the claim at once rather than after ``stale_after`` of a still heartbeat.
    """
    states = _states()
    released = 0
    for trial in storage.get_all_trials(study_id, deepcopy=False, states=(states.RUNNING,)):
        if trial.system_attrs.get(WORKER) == worker:
            try:
                trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, trial.number)
                storage.set_trial_system_attr(trial_id, RELEASED, "its worker exited")
                storage.set_trial_state_values(trial_id, states.FAIL)
                released += 1
            except Exception:  # a waiting worker released it as stale first
                pass
    return released


def _run_processes(storage, study_id, storage_url, study_name, settings, workers, stale_after, bar) -> list[str]:
    """Run the workers, replacing any that dies; returns a line per replacement."""
    from ..workerpool import WorkerPool

    host = socket.gethostname()

    def progress():
        bar.n = min(len(completed_trials(storage, study_id)), settings["budget"])
        bar.refresh()

    pool = WorkerPool(
        _worker_main, lambda i: (storage_url, study_name, settings, stale_after, i), workers,
        max_restarts=MAX_RESTARTS, on_exit=lambda pid: release_claims(storage, study_id, f"{host}:{pid}"),
        finished=lambda: len(completed_trials(storage, study_id)) >= settings["budget"], on_tick=progress)
    pool.run()
    return pool.notes
