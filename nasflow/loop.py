"""The search loop: searcher proposes, predictor ranks, oracle answers, everyone learns.

Only oracle queries count against the budget and no cell is queried twice. Every query
goes to the run journal as it happens; resuming re-runs this deterministic loop from the
start and answers the journaled queries from the journal (checking each proposed cell
matches), so a resumed run has exactly the trajectory of an uninterrupted one.
"""
from __future__ import annotations

import csv
import io
import json
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

from .errors import NasflowError, NasflowWarning
from .atomic import atomic_write
from .core import TabularOracle
from .journal import Journal, JournalError, query_record, record_evaluation
from .restricted import RestrictedSpace
from .runlock import lock_run_dir
from .step import Query, RankedSearcher, RefitSchedule, Trajectory

# A step proposes and ranks ``pool`` cells. A step over a whole NB-201 space (15,625 cells) takes seconds;
# beyond this many the step takes minutes per query, which is never what a user meant.
MAX_POOL = 100_000


class SearchError(NasflowError, ValueError):
    """Search options that cannot work (budget, pool, batch, ...)."""


@dataclass
class SearchResult:
    trajectory: list[Query]
    config: dict
    overhead_per_query: float  # loop seconds per new query that were not spent in the oracle
    resumed_queries: int = 0
    notice: Optional[str] = None
    optimum: dict = field(default_factory=dict)  # the table's best valid/test where known
    front: Optional[dict] = None  # a multi-objective run's front (nasflow.experiments.fronts.front_report)

    @property
    def best(self) -> Query:
        return self.trajectory[-1]

    @property
    def queries(self) -> int:
        return len(self.trajectory)

    def best_valid_curve(self) -> np.ndarray:
        return np.array([q.best_valid for q in self.trajectory])

    def best_test_curve(self) -> np.ndarray:
        return np.array([np.nan if q.best_test is None else q.best_test for q in self.trajectory])

    def queries_to_optimum(self) -> Optional[int]:
        """Queries until the table's best-valid cell was found (None if never, or unknown)."""
        target = self.optimum.get("valid")
        if target is None:
            return None
        for q in self.trajectory:
            if q.best_valid >= target:
                return q.n
        return None

    def summary(self) -> dict:
        best = self.best
        out = {
            "best_arch": best.best_arch,
            "best_valid": best.best_valid,
            "best_test": best.best_test,
            "queries": self.queries,
            "overhead_per_query_s": self.overhead_per_query,
            "resumed_queries": self.resumed_queries,
        }
        if "valid" in self.optimum:
            out["optimum_valid"] = self.optimum["valid"]
            out["regret_valid"] = self.optimum["valid"] - best.best_valid
            out["queries_to_optimum"] = self.queries_to_optimum()
        if "test" in self.optimum and best.best_test is not None:
            out["optimum_test"] = self.optimum["test"]
            out["regret_test"] = self.optimum["test"] - best.best_test
        return out

    def trajectory_csv(self) -> str:
        buf = io.StringIO()
        names = list(Query.__dataclass_fields__)
        writer = csv.DictWriter(buf, fieldnames=names, lineterminator="\n")
        writer.writeheader()
        for q in self.trajectory:
            writer.writerow(asdict(q))
        return buf.getvalue()

    def save(self, run_dir) -> None:
        """``result.json`` (config + summary) and ``trajectory.csv``, each written atomically."""
        run_dir = Path(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write(run_dir / "result.json", json.dumps({"config": self.config, **self.summary()}, indent=2) + "\n")
        atomic_write(run_dir / "trajectory.csv", self.trajectory_csv())


def _check_int(name: str, value, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise SearchError(f"{name} must be an integer >= {low}, got {value!r}")
    return int(value)


def fit_pool(pool: int, space) -> tuple[int, Optional[str]]:
    """A pool beyond the space is clamped to it (proposals are distinct cells); an absurd one is refused."""
    if pool > MAX_POOL:
        raise SearchError(f"pool {pool:,d} is more cells than one step can rank; use at most {MAX_POOL:,d}")
    size = space.size
    if size is not None and pool > size:
        return size, f"pool {pool:,d} is more than the {size:,d} cells of {space.name}; ranking {size:,d} per step"
    return pool, None


def optimum_of(oracle, space=None) -> dict:
    """The best valid and test accuracies of the cells searched, where the oracle knows them: the table's,
    or, for a ``space`` restricted to some of a table's cells (a constrained search's feasible cells), theirs."""
    out = {}
    if isinstance(space, RestrictedSpace) and isinstance(oracle, TabularOracle):
        evaluations = [oracle.query(arch) for arch in space.cells if arch in oracle]
        for metric in ("valid", "test"):
            values = [getattr(e, metric) for e in evaluations if getattr(e, metric) is not None]
            if values:
                out[metric] = float(max(values))
        return out
    if oracle.best is not None:
        for metric in ("valid", "test"):
            try:
                out[metric] = float(oracle.best(metric)[1])
            except (NasflowError, TypeError, ValueError, NotImplementedError):
                pass
    return out


def search(
    space,
    oracle,
    searcher,
    predictor=None,
    budget: int = 100,
    pool: Optional[int] = None,
    batch: int = 1,
    refit_every: Optional[int] = None,
    warmup: int = 10,
    explore: float = 0.2,
    seed: int = 0,
    run_dir=None,
    resume: bool = False,
    meta: Optional[dict] = None,
    progress: bool = False,
    setup_seconds: float = 0.0,
) -> SearchResult:
    """Search ``space`` with ``searcher`` for ``budget`` oracle queries.

    Each step is ``nasflow.step.RankedSearcher``'s: the searcher proposes ``pool`` cells
    (``batch`` without a predictor); the predictor, once fitted, ranks them and the top
    ``batch`` go to the oracle. The predictor is fitted when ``warmup`` cells are known and
    again every ``refit_every`` queries (each ``fit`` restarts from its initial weights),
    always on the first ``warmup + k * refit_every`` queried cells (``nasflow.step.RefitSchedule``):
    with a ``batch`` that does not divide those points, the cells of the step that crossed one
    wait for the next fit, so that the predictor is a function of the history, as in a shared study. A share ``explore`` of the queries, evenly spaced, skips the predictor
    and takes the searcher's own first proposal: a predictor that keeps vetoing the one
    mutation out of a local optimum would otherwise stall the run there.
    With ``run_dir`` every query is journaled, the results are saved there at the end, and the
    directory is locked meanwhile (a second process fails at once); ``resume=True`` continues that run.
    The overhead per query counts ``setup_seconds`` too: time spent preparing the searcher
    before the loop (e.g. scoring a warm start, ``nasflow.experiments.runs.build``).
    """
    budget = _check_int("budget", budget, 1)
    batch = _check_int("batch", batch, 1)
    seed = _check_int("seed", seed, 0)  # before the journal: numpy refuses a negative seed only mid-run
    if pool is None:
        pool = batch if predictor is None else max(100, batch)
    pool = _check_int("pool", pool, 1)
    if pool < batch:
        raise SearchError(f"pool ({pool}) must be at least the batch ({batch}): the predictor picks the batch from the pool")
    pool, pool_notice = fit_pool(pool, space)
    if pool_notice and predictor is not None:  # without a predictor nothing ranks the pool: its size changes nothing
        warnings.warn(pool_notice, NasflowWarning)  # now, not after a run that may take hours
    refit_every = _check_int("refit_every", batch if refit_every is None else refit_every, 1)
    warmup = _check_int("warmup", warmup, 1)
    if isinstance(explore, bool) or not isinstance(explore, (int, float)) or not 0.0 <= explore <= 1.0:
        raise SearchError(f"explore must be a share between 0 and 1, got {explore!r}")
    size = space.size
    if size is not None and budget > size:
        raise SearchError(f"budget {budget} exceeds the {size:,d} cells of {space.name}")
    if resume and run_dir is None:
        raise SearchError("resume needs the run directory to continue")

    config = {
        "space": space.name,
        "seed": int(seed),
        "searcher": getattr(searcher, "name", type(searcher).__name__),
        "predictor": "none" if predictor is None else getattr(predictor, "name", type(predictor).__name__),
        "budget": budget,
        "pool": pool,
        "batch": batch,
        "refit_every": refit_every,
        "warmup": warmup,
        "explore": float(explore),
        **(meta or {}),
    }
    step = RankedSearcher(searcher, space, predictor, pool, RefitSchedule(warmup, refit_every), float(explore), seed)
    if run_dir is None:
        return _run(space, oracle, step, config, None, progress, setup_seconds)
    # held for the run's whole life, results included: a second process on this directory would mix its
    # records into ours, or resume the run between its last query and its results
    with lock_run_dir(run_dir, create=not resume):
        journal = Journal.resume(run_dir, config) if resume else Journal.create(run_dir, config)
        try:
            result = _run(space, oracle, step, config, journal, progress, setup_seconds)
        finally:
            journal.close()
        result.save(run_dir)
        return result


def _run(space, oracle, step: RankedSearcher, config, journal, progress, setup_seconds) -> SearchResult:
    from tqdm.auto import tqdm

    budget, batch = config["budget"], config["batch"]
    replay = list(journal.records) if journal is not None else []
    trajectory = Trajectory()
    oracle_seconds = 0.0
    start = time.perf_counter()
    bar = tqdm(total=budget, disable=not progress, desc=f"{config['searcher']}+{config['predictor']}", unit="query")
    try:
        while len(step.history) < budget:
            for arch in step.ask(min(batch, budget - len(step.history))):
                n = len(step.history)
                if n < len(replay):
                    record = replay[n]
                    if record["arch"] != space.format(arch):
                        raise JournalError(
                            f"the resumed run proposed {space.format(arch)} as query {n + 1} but the journal has "
                            f"{record['arch']}; the run is not reproducible (changed code or options?)"
                        )
                    evaluation, seconds = record_evaluation(record), float(record["seconds"])
                else:
                    t0 = time.perf_counter()
                    evaluation = oracle.query(arch)
                    seconds = time.perf_counter() - t0
                    oracle_seconds += seconds
                    if journal is not None:
                        journal.append(query_record(n, space.format(arch), evaluation, seconds))
                step.tell(arch, evaluation)
                trajectory.add(space.format(arch), evaluation, seconds, time.perf_counter() - start)
                bar.update(1)
    finally:
        bar.close()
    queries = trajectory.queries
    resumed = min(len(replay), len(queries))
    new = len(queries) - resumed
    wall = time.perf_counter() - start
    return SearchResult(
        trajectory=queries,
        config=config,
        overhead_per_query=(wall - oracle_seconds + setup_seconds) / new if new else 0.0,
        resumed_queries=resumed,
        notice=journal.notice if journal is not None else None,
        optimum=optimum_of(oracle, space),
    )
