"""Worker processes watched by their parent: a dead one is replaced, a user error stops them all.

``concurrent.futures.ProcessPoolExecutor`` breaks as a whole when one of its processes
dies: a single SIGKILLed worker ended ``search --workers 4`` with a ``BrokenProcessPool``
traceback and stopped the other three (issue 16). Here each worker is a plain spawned
process; the parent waits on their sentinels and, when one exits:

- exit 0: its share of the work is done;
- a ``NasflowError`` (bad input the user can fix): the others are stopped and the error is
  raised again in the parent, with the worker's one-line message, so the command still
  ends with that line and exit 2 instead of restarting a worker that will fail the same way;
- anything else (a signal, the OOM killer, an unexpected exception): ``on_exit`` is told
  its pid (the caller releases what it held), and a new process takes its place, up to
  ``max_restarts`` times per pool; after that the pool stops with one line.
"""
from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import signal
import traceback
from typing import Callable, Optional

from .errors import NasflowError

USER_ERROR = "user-error"
CRASH = "crash"
POLL = 0.5  # seconds between progress callbacks while no worker exits
STOP_GRACE = 5.0  # seconds a stopped worker gets to exit on SIGTERM before it is killed


class WorkerPoolError(NasflowError):
    """Workers kept dying: more deaths than the pool may replace."""


def _child(report, target, args):
    """Run ``target(*args)`` in the worker, telling the parent how an exception ended it."""
    try:
        target(*args)
    except NasflowError as e:
        report.send((USER_ERROR, str(e).replace("\n", " ")))
        raise SystemExit(2)
    except KeyboardInterrupt:  # Ctrl-C reaches the whole process group: the parent says "interrupted"
        raise SystemExit(130)
    except BaseException as e:
        # the parent reports one line; the traceback stays here, where a developer can read it
        traceback.print_exc()
        lines = str(e).strip().splitlines()
        report.send((CRASH, f"{type(e).__name__}: {lines[0]}" if lines else type(e).__name__))
        raise SystemExit(1)


def _report(receive):
    """What the worker sent before exiting, or None (it exited cleanly, or died before it could say)."""
    try:
        return receive.recv() if receive.poll() else None
    except (EOFError, OSError):  # poll() is also true once the other end is closed with nothing sent
        return None
    finally:
        receive.close()


def describe_exit(code: Optional[int]) -> str:
    if code is not None and code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with status {code}"


class WorkerPool:
    """``workers`` processes running ``target(*args(i))`` for slot i, supervised until all exit 0.

    ``on_exit(pid)`` runs in the parent after any worker exits (cleanly or not) and after the
    pool stops the rest; ``finished()`` says the work needs no replacement any more;
    ``on_tick()`` runs about every ``POLL`` seconds. ``notes`` collects one line per replacement.
    """

    def __init__(self, target: Callable, args: Callable[[int], tuple], workers: int, max_restarts: int,
                 on_exit: Callable[[int], None] = lambda pid: None, finished: Callable[[], bool] = lambda: False,
                 on_tick: Callable[[], None] = lambda: None):
        self.target, self.args, self.workers, self.max_restarts = target, args, workers, max_restarts
        self.on_exit, self.finished, self.on_tick = on_exit, finished, on_tick
        self.notes: list[str] = []
        self.restarts = 0
        # spawn: forking a process that has loaded torch/dgl threads is unsafe
        self._context = multiprocessing.get_context("spawn")

    def _start(self, slot: int):
        receive, send = self._context.Pipe(duplex=False)
        process = self._context.Process(target=_child, args=(send, self.target, self.args(slot)))
        process.start()
        send.close()  # the child holds the only writing end now
        return process, receive

    def run(self) -> None:
        running: dict[int, tuple] = {}
        try:
            for slot in range(self.workers):
                running[slot] = self._start(slot)
            while running:
                by_sentinel = {p.sentinel: slot for slot, (p, _) in running.items()}
                for sentinel in multiprocessing.connection.wait(list(by_sentinel), timeout=POLL):
                    slot = by_sentinel[sentinel]
                    process, receive = running.pop(slot)
                    process.join()
                    report = _report(receive)
                    self.on_exit(process.pid)
                    if process.exitcode == 0:
                        continue
                    if report is not None and report[0] == USER_ERROR:
                        raise NasflowError(report[1])
                    why = report[1] if report is not None else describe_exit(process.exitcode)
                    if self.finished():
                        continue  # nothing left for a replacement to do
                    self.restarts += 1
                    if self.restarts > self.max_restarts:
                        raise WorkerPoolError(
                            f"worker processes died {self.restarts} times (last: {why}); stopped the search; "
                            f"its completed queries are kept: run the same command again to continue")
                    self.notes.append(f"worker {process.pid} {why}; started another in its place")
                    running[slot] = self._start(slot)
                self.on_tick()
        finally:
            self._stop([p for p, _ in running.values()])

    def _stop(self, processes) -> None:
        for process in processes:
            process.terminate()
        for process in processes:
            process.join(STOP_GRACE)
            if process.exitcode is None:
                process.kill()
                process.join()
            self.on_exit(process.pid)
