"""The shared study's storage: opening it, claiming a cell, heartbeats, releasing stale claims, reading results.

Each oracle query is one Optuna trial whose user attribute ``cell`` names the cell; its
value is the validation accuracy and the user attribute ``query`` holds the full record
(``nasflow.journal.query_record``). The worker and its heartbeat are trial system
attributes, so the user attributes a person reads in Optuna's dashboard stay the data.

Why this module calls Optuna's storage (``optuna.storages.BaseStorage``'s public methods)
rather than ``Study.ask``/``Study.tell``:

- A claim must carry its cell in the one call that creates and numbers the trial.
  ``Study.ask`` creates a bare RUNNING trial and the cell would follow in a second call
  (``set_user_attr``); meanwhile another worker sees a claim without a cell. Worker A asks
  trial 5; worker B asks trial 6, names cell X and, seeing no cell on trial 5, keeps X;
  A names X too and, seeing X only on the later trial 6, keeps it: both evaluate X.
  ``create_new_trial(template_trial=...)`` writes cell, worker and first heartbeat at once,
  and the storage serialises trial creation (RDB: the study row is locked FOR UPDATE;
  journal file: the file lock orders the log), so of two claims the later always sees the
  earlier: no cell is evaluated twice and no more than ``budget`` trials ever complete.
  ``Study.ask`` would also run the study's sampler, which is not the nasflow searcher.
- A finished query's record must be on the trial before it turns COMPLETE (workers replay
  COMPLETE trials from their records), and releasing a stale claim fails a trial another
  process owns. Optuna offers no ``Study`` method to set a user attribute of a trial known
  only by number (``optuna.trial.Trial(study, trial_id)`` is documented as not for direct
  use), and the heartbeat is a system attribute, which ``Study`` no longer writes.
- Trial ids come from ``get_trial_id_from_study_id_trial_number``, never from
  ``FrozenTrial``'s private fields.
"""
from __future__ import annotations

import contextlib
import random
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional

from ..errors import NasflowError
from ..journal import record_evaluation
from ..step import Query, Trajectory

CELL = "cell"
QUERY = "query"
HEARTBEAT = "nasflow:heartbeat"
WORKER = "nasflow:worker"
RELEASED = "nasflow:released"  # on a claim failed because its worker exited: why


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


def trial_states():
    """Optuna's ``TrialState``, imported when a storage is used (``nasflow --help`` imports no optuna)."""
    from optuna.trial import TrialState

    return TrialState


def _completion_order(trial):
    return (trial.datetime_complete, trial.number)


def is_ours(trial) -> bool:
    """Whether ``trial`` is a nasflow query (a claim carries its cell from the start)."""
    return CELL in trial.user_attrs


def study_trials(storage, study_id: int) -> tuple[list, list]:
    """(COMPLETE trials in completion order, RUNNING trials): the queries done and the cells claimed."""
    states = trial_states()
    trials = [t for t in storage.get_all_trials(study_id, deepcopy=False, states=(states.RUNNING, states.COMPLETE))
              if is_ours(t)]
    completed = sorted((t for t in trials if t.state == states.COMPLETE), key=_completion_order)
    return completed, [t for t in trials if t.state == states.RUNNING]


def completed_trials(storage, study_id: int) -> list:
    states = trial_states()
    trials = storage.get_all_trials(study_id, deepcopy=False, states=(states.COMPLETE,))
    return sorted((t for t in trials if is_ours(t)), key=_completion_order)


def study_trajectory(completed) -> list[Query]:
    """The study's queries in completion order, with the best-so-far (by validation) after each."""
    trajectory = Trajectory()
    start = min((t.datetime_start for t in completed), default=None)
    for trial in completed:
        record = trial.user_attrs[QUERY]
        trajectory.add(trial.user_attrs[CELL], record_evaluation(record), float(record["seconds"]),
                       (trial.datetime_complete - start).total_seconds())
    return trajectory.queries


def claim(storage, study_id: int, cell: str, budget: int, worker: str) -> Optional[int]:
    """The id of a RUNNING trial now owning ``cell`` and a budget slot, or None if another worker got there first.

    The trial is created with its cell, then the study is read: the claim stands only if no
    lower-numbered RUNNING/COMPLETE trial has the same cell and fewer than ``budget`` of them exist.
    """
    from optuna.trial import FrozenTrial

    states = trial_states()
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
        if t.number < number and is_ours(t)
    ]
    if len(earlier) >= budget or any(t.user_attrs[CELL] == cell for t in earlier):
        storage.set_trial_state_values(trial_id, states.FAIL)
        return None
    return trial_id


def finish(storage, trial_id: int, record: dict) -> bool:
    """Complete the trial; False if it was released as stale meanwhile (the evaluation is discarded)."""
    try:
        storage.set_trial_user_attr(trial_id, QUERY, record)
        return storage.set_trial_state_values(trial_id, trial_states().COMPLETE, [record["valid"]])
    except Exception as e:
        import optuna

        if isinstance(e, (optuna.exceptions.UpdateFinishedTrialError, RuntimeError)):
            return False
        raise


class Heartbeat:
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


class StaleClaims:
    """Spots RUNNING trials whose heartbeat has not moved for ``stale_after`` seconds of this worker's clock.

    Heartbeat values are only compared with each other, never with this machine's time, so
    clock skew between machines cannot make a live worker's claim look stale.
    """

    def __init__(self, stale_after: float):
        self.stale_after = stale_after
        self.seen: dict[int, tuple[object, float]] = {}  # trial number -> (heartbeat, when it was first seen)

    def release(self, storage, study_id: int, running) -> int:
        """Fail the stale ones among the study's ``running`` trials; returns how many this call released."""
        now = time.monotonic()
        seen, released = {}, 0
        for trial in running:
            beat = trial.system_attrs.get(HEARTBEAT)
            last = self.seen.get(trial.number)
            seen[trial.number] = last if last is not None and last[0] == beat else (beat, now)
            if now - seen[trial.number][1] > self.stale_after:
                try:
                    trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, trial.number)
                    storage.set_trial_state_values(trial_id, trial_states().FAIL)
                    released += 1
                except Exception:  # finished meanwhile, or another worker released it first
                    pass
        self.seen = seen
        return released


def release_claims(storage, study_id: int, worker: str) -> int:
    """Fail the RUNNING trials claimed by ``worker`` (``host:pid``), which has exited; returns how many.

    A worker that dies mid-query leaves its claim RUNNING; the parent that saw it die
    releases the claim at once rather than after ``stale_after`` of a still heartbeat.
    """
    states = trial_states()
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
