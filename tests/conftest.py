"""Shared fixtures: the real benchmark tables in ../shared/benchmarks (or $NASFLOW_BENCHMARKS)."""
import os
import shutil
import tempfile
from pathlib import Path

import pytest

# One intra-op thread for torch in the tests and the CLI subprocesses they start: the models
# here are tiny, and on a busy 2-core machine two threads per process oversubscribe the cores
# (a one-cell encoder forward measured 2.1 s with torch's default threads vs 0.01 s with one).
# Set before any test module imports torch, which reads these at start-up.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

# Every cache the tests fill (and the CLI subprocesses they start) lives in one temporary folder: a
# test run never reads what an earlier run or another nasflow left in ~/.nasflow or $NASFLOW_CACHE,
# and leaves nothing there. Tests of the cache's own rules set their roots themselves.
TEST_CACHE = tempfile.mkdtemp(prefix="nasflow-test-cache-")
os.environ["NASFLOW_CACHE"] = TEST_CACHE

REPO = Path(__file__).resolve().parents[1]
# The reason every data-backed test gives when skipped; the summary below counts them by it.
NO_BENCHMARKS = "benchmark tables not found (set NASFLOW_BENCHMARKS)"



@pytest.fixture(scope="session")
def digits():
    """The embedded digits dataset (read-only here), loaded once for every training test."""
    from nasflow.data import load_digits

    return load_digits()

def _benchmarks_dir():
    env = os.environ.get("NASFLOW_BENCHMARKS")
    candidates = [Path(env)] if env else []
    candidates.append(REPO.parent / "shared" / "benchmarks")
    for c in candidates:
        if (c / "nb201" / "nb201_cifar.csv").is_file():
            return c
    return None


@pytest.fixture(scope="session")
def benchmarks_dir():
    d = _benchmarks_dir()
    if d is None:
        pytest.skip(NO_BENCHMARKS)
    return d


@pytest.fixture(scope="session")
def nb201_csv(benchmarks_dir):
    return benchmarks_dir / "nb201" / "nb201_cifar.csv"


@pytest.fixture(scope="session")
def nb101_jsonl(benchmarks_dir):
    return benchmarks_dir / "nb101" / "nb101_1k.jsonl"


@pytest.fixture(scope="session")
def nb201_oracle(nb201_csv):
    from nasflow.spaces.nb201 import NB201TableOracle

    return NB201TableOracle(nb201_csv, "cifar10")


@pytest.fixture(scope="session")
def nb201():
    from nasflow.spaces import get_space

    return get_space("nb201")


@pytest.fixture
def one_thread():
    from nasflow.devices import torch_threads

    # tiny graphs: on a loaded 2-core machine two torch threads make each op ~100x slower
    with torch_threads(1):
        yield


@pytest.fixture
def crash_after_checkpoints(monkeypatch):
    """``crash(n, error)`` makes the trainer raise ``error`` right after its ``n``-th checkpoint, as a process
    killed there would, and returns the list of epochs checkpointed so far; ``crash.undo()`` restores the
    real checkpointing for the resumed training."""
    import nasflow.trainer as trainer

    real = trainer.save_training_state

    def crash(n, error):
        saved = []

        def save_then_die(*args):
            real(*args)
            saved.append(args[5])  # the epoch the checkpoint holds
            if len(saved) == n:
                raise error

        monkeypatch.setattr(trainer, "save_training_state", save_then_die)
        return saved

    crash.undo = lambda: monkeypatch.setattr(trainer, "save_training_state", real)
    return crash


def pytest_terminal_summary(terminalreporter):
    """One line saying how many tests did not run for want of the benchmark tables, and how to run them."""
    skipped = [r for r in terminalreporter.stats.get("skipped", [])
               if isinstance(r.longrepr, tuple) and NO_BENCHMARKS in str(r.longrepr[-1])]
    if skipped:
        terminalreporter.write_line(
            f"{len(skipped)} test{'s' if len(skipped) != 1 else ''} skipped for want of benchmark data: run "
            f"NASFLOW_BENCHMARKS=/path/to/benchmarks pytest (a folder holding nb201/nb201_cifar.csv and "
            f"nb101/nb101_1k.jsonl; see README.md, Tests)")


def pytest_sessionfinish(session):
    shutil.rmtree(TEST_CACHE, ignore_errors=True)
