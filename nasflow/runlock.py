"""An OS-level lock on a run directory, held for the whole life of the run that uses it.

Two processes on one directory (two ``--out`` of the same new directory, two ``--resume``)
both exited 0 and mixed or lost each other's records (issue 16). The lock is an
``flock``-style lock (the ``filelock`` package; ``fcntl.flock`` on Unix) on
``RUN_DIR/.lock``: the kernel releases it when its holder exits, even on SIGKILL, so a
killed run never leaves a stale lock behind. The second process fails at once.
"""
from __future__ import annotations

import contextlib
from pathlib import Path

from .errors import NasflowError

LOCK_NAME = ".lock"


class RunDirBusy(NasflowError):
    """Another process holds the run directory."""


@contextlib.contextmanager
def lock_run_dir(run_dir, create: bool = True):
    """Hold the lock of ``run_dir`` (created first if ``create``) or raise RunDirBusy without waiting.

    Re-entrant within a process: the CLI holds it across the search and the writing of its
    results, and the loop it calls takes it again.
    """
    from filelock import FileLock, Timeout

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        if not create:
            yield  # nothing to guard: resuming a missing run fails on its missing journal
            return
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise NasflowError(f"cannot create run directory {run_dir}: {e.strerror or e}") from None
    # is_singleton: one lock object per path in this process, so taking it again nests instead of
    # conflicting with our own descriptor; the lock file stays, as deleting it would let a third
    # process lock a new file while a second still waits on the old one.
    lock = FileLock(run_dir / LOCK_NAME, timeout=0, is_singleton=True, preserve_lock_file=True)
    try:
        lock.acquire()
    except Timeout:
        raise RunDirBusy(f"{run_dir} is in use by another nasflow process; wait for it to finish or choose "
                         f"another --out") from None
    except OSError as e:
        raise NasflowError(f"cannot lock run directory {run_dir}: {e.strerror or e}") from None
    try:
        yield
    finally:
        lock.release()
