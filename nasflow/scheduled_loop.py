"""The search loop under a multi-fidelity schedule: the budget is training epochs, not queries.

The searcher proposes (through the same ``RankedSearcher`` step as ``nasflow.loop``, so a predictor ranks
its proposals the same way), the schedule (``nasflow.schedulers``) decides at which fidelity each cell is
trained and which cells are promoted. What the searcher learns: each cell once, its first result (for
successive halving and ASHA: the lowest rung, the one every cell has, so its labels share one scale).
A promotion is not told again: a searcher's history holds a cell once (``searchers.base``). A cell the schedule
started itself (``scout=1``) is never told, and the searcher never proposes it (it is passed as taken).
A schedule with a model (``model=ridge``, ``nasflow.fidelity_model``) learns from every result instead: the
model, refitted on all rungs' results at each decision, ranks the searcher's proposals in place of a predictor
and orders each rung's promotions by predicted full-fidelity valid (``Scheduler.scorer``).

Cost: a cell trained to ``f`` epochs costs ``f``; promoted from ``f`` to ``g`` it costs ``g - f`` where the
oracle ``continues`` (a table stands for a training continued from its checkpoint; the training oracle
continues one: ``for_schedule``), else ``g``. So 12 then 200 epochs on NB-201 cost 200, not 212. A job is started only while it
fits in the budget; the run ends at the first that does not.

The best cell so far is the best by validation accuracy among the cells at the highest rung any cell has
reached (a cell trained longer outranks any cell trained shorter); on a table the run reports that cell's
full-fidelity test accuracy, which is what a user would get by training it fully.

Every evaluation is journaled with its fidelity and epochs; resuming replays the deterministic loop and
answers the journaled jobs from the journal, so no evaluation is repeated.
"""
from __future__ import annotations

import csv
import io
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Optional

import numpy as np

from .core import TabularOracle
from .journal import Journal, JournalError, query_record, record_evaluation
from .loop import SearchError, SearchResult, fit_pool, optimum_of
from .runlock import lock_run_dir
from .schedulers import Schedule
from .scheduled_workers import check_workers, run_with_workers, was_run_with_workers
from .step import Query, RankedSearcher, RefitSchedule


@dataclass
class ScheduledResult(SearchResult):
    """A scheduled run: ``trajectory`` as a search's (``valid``/``test`` of each evaluation at its fidelity;
    ``best_*`` of the best cell so far, its test at full fidelity on a table), plus per evaluation its
    ``fidelities`` and charged ``epochs``, and how many cells the schedule started itself (``scouted``)."""

    fidelities: list[int] = field(default_factory=list)
    epochs: list[int] = field(default_factory=list)
    scouted: int = 0

    def total_epochs(self) -> np.ndarray:
        return np.cumsum(np.array(self.epochs, dtype=np.int64))

    def epochs_to_optimum(self) -> Optional[int]:
        """Training epochs spent until the table's best-valid cell was trained to full fidelity (None: never)."""
        target = self.optimum.get("valid")
        if target is None or not self.fidelities:
            return None
        full = max(self.fidelities)
        for q, f, total in zip(self.trajectory, self.fidelities, self.total_epochs()):
            if f == full and q.valid >= target:
                return int(total)
        return None

    def summary(self) -> dict:
        out = super().summary()
        out.pop("queries_to_optimum", None)
        out["epochs"] = int(self.total_epochs()[-1]) if self.epochs else 0
        out["full_fidelity_trainings"] = int(sum(f == max(self.fidelities) for f in self.fidelities)) if self.fidelities else 0
        if self.scouted:
            out["scouted"] = self.scouted
        if "valid" in self.optimum:
            out["epochs_to_optimum"] = self.epochs_to_optimum()
        return out

    def trajectory_csv(self) -> str:
        buf = io.StringIO()
        names = list(Query.__dataclass_fields__) + ["fidelity", "epochs", "total_epochs"]
        writer = csv.DictWriter(buf, fieldnames=names, lineterminator="\n")
        writer.writeheader()
        for q, f, e, t in zip(self.trajectory, self.fidelities, self.epochs, self.total_epochs()):
            writer.writerow({**asdict(q), "fidelity": f, "epochs": e, "total_epochs": int(t)})
        return buf.getvalue()


def for_schedule(oracle, top: int):
    """The oracle a schedule queries: one that trains follows a single learning-rate schedule of the top rung's
    ``top`` epochs, so that a promoted cell continues from its state at the rung below
    (``TrainingOracle.for_schedule``); a table is used as it is."""
    return oracle if oracle.for_schedule is None else oracle.for_schedule(top)


class Incumbent:
    """The best cell so far: highest rung first, then validation accuracy (strictly better replaces)."""

    def __init__(self):
        self.key: Optional[tuple[int, float]] = None
        self.arch: Optional[str] = None
        self.valid = float("nan")
        self.test: Optional[float] = None

    def offer(self, arch_text: str, rung: int, valid: float, full_test) -> None:
        if self.key is None or (rung, valid) > self.key:
            self.key, self.arch, self.valid = (rung, valid), arch_text, valid
            self.test = full_test()


def scheduled_search(space, oracle, searcher, schedule: Schedule, predictor=None, budget_epochs: int = 20_000,
                     pool: Optional[int] = None, refit_every: int = 5, warmup: int = 10, explore: float = 0.2,
                     seed: int = 0, run_dir=None, resume: bool = False, meta: Optional[dict] = None,
                     progress: bool = False, setup_seconds: float = 0.0, workers: Optional[int] = None,
                     make_oracle: Optional[Callable] = None) -> ScheduledResult:
    """Search ``space`` under ``schedule`` until the next job does not fit in ``budget_epochs`` epochs of training.
    The other options are ``nasflow.loop.search``'s (one cell per step: the schedule decides what is trained).

    ``workers``: evaluate in that many processes (ASHA only; ``nasflow.scheduled_workers``), each querying the
    oracle ``make_oracle(worker_index)`` makes (picklable: it is sent to the workers)."""
    for name, value, low in (("budget epochs", budget_epochs, 1), ("refit_every", refit_every, 1),
                             ("warmup", warmup, 1), ("seed", seed, 0)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise SearchError(f"{name} must be an integer >= {low}, got {value!r}")
    if resume and run_dir is None:
        raise SearchError("resume needs the run directory to continue")
    check_workers(schedule, workers)
    if workers is not None and make_oracle is None:
        raise SearchError("workers need make_oracle, the (picklable) function that makes each worker's oracle")
    if resume and workers is None and was_run_with_workers(run_dir):
        # its journal is in the order results arrived, which one process could not reproduce step by step
        raise SearchError(f"{run_dir} was run with --workers; resume it with --workers N")
    scheduler = schedule.scheduler(oracle.fidelities)  # a fidelity the oracle lacks is refused before any work
    scheduler.neighbours = space.neighbours  # local=...: a cell's neighbours in the space searched
    oracle = for_schedule(oracle, scheduler.rungs[-1])
    ranker = with_fidelity_model(space, schedule, scheduler, predictor)
    pool = (1 if ranker is None else 100) if pool is None else pool
    pool, _ = fit_pool(pool, space)
    if budget_epochs < scheduler.rungs[0]:
        raise SearchError(f"a budget of {budget_epochs:,d} epochs does not fit one training of {scheduler.rungs[0]} epochs")
    config = {
        "space": space.name, "seed": int(seed), "searcher": getattr(searcher, "name", type(searcher).__name__),
        "predictor": "none" if predictor is None else getattr(predictor, "name", type(predictor).__name__),
        "schedule": str(schedule), "budget_epochs": int(budget_epochs), "rungs": list(scheduler.rungs),
        "pool": pool, "refit_every": refit_every, "warmup": warmup, "explore": float(explore), **(meta or {}),
    }
    step = RankedSearcher(searcher, space, ranker, pool, RefitSchedule(warmup, refit_every), float(explore), seed)
    parallel = None if workers is None else (workers, make_oracle, run_dir)
    if run_dir is None:
        return _run(space, oracle, step, scheduler, config, None, progress, setup_seconds, parallel)
    with lock_run_dir(run_dir, create=not resume):
        # the query budget a header may hold is no limit here: the journal is bounded in epochs (checked below)
        header = {k: v for k, v in config.items() if k != "budget"}
        journal = Journal.resume(run_dir, header) if resume else Journal.create(run_dir, config)
        try:
            spent = sum(int(r.get("epochs", 0)) for r in journal.records)
            if spent > budget_epochs:
                raise JournalError(f"{run_dir} already spent {spent:,d} epochs, more than a budget of {budget_epochs:,d}; "
                                   f"resume with --budget-epochs {spent} or more")
            result = _run(space, oracle, step, scheduler, config, journal, progress, setup_seconds, parallel)
        finally:
            journal.close()
        result.save(run_dir)
        return result


def with_fidelity_model(space, schedule: Schedule, scheduler, predictor):
    """What ranks the searcher's proposals: ``predictor``, or under a schedule with a model the model of every
    rung's labels (``nasflow.fidelity_model``), which then orders the promotions too."""
    if schedule.model == "none":
        return predictor
    if predictor is not None:
        raise SearchError(f"schedule model={schedule.model} ranks the proposals itself; drop the predictor "
                          f"{getattr(predictor, 'name', type(predictor).__name__)!r} or the model")
    from .fidelity_model import CrossFidelityRidge

    model = CrossFidelityRidge(space, len(scheduler.rungs))
    labels = scheduler.reported  # every result, at every rung: the cheap ones teach the model
    scheduler.scorer = lambda rung, results: model.fit(labels).promotion_scores(rung, results) if results else results
    return model.full_view(labels)


class Ledger:
    """What a scheduled run has learnt, one evaluation at a time, in the order they were answered: the
    scheduler's rungs, the searcher's history (each cell once, its first result), the incumbent, and per
    evaluation its query row, fidelity and charged epochs. The sequential loop and the workers' share it."""

    def __init__(self, space, oracle, step, scheduler):
        self.space, self.oracle, self.step, self.scheduler = space, oracle, step, scheduler
        self.on_table = isinstance(oracle, TabularOracle)
        self.incumbent = Incumbent()
        self.queries: list[Query] = []
        self.fidelities: list[int] = []
        self.charged: list[int] = []
        self.spent = 0
        self.start = time.perf_counter()
        self.notes: list[str] = []  # what the run survived (a worker's death), for its notice
        self.scouted: list = []  # cells the schedule started itself: taken for the searcher, never told to it

    def cost(self, job) -> int:
        """The epochs ``job`` is charged: the rung's, less those its cell already has where the oracle continues."""
        rungs = self.scheduler.rungs
        before = self.scheduler.rung_of(job.arch) if job.arch is not None else -1
        return rungs[job.rung] - (rungs[before] if before >= 0 and self.oracle.continues else 0)

    def add(self, arch, rung: int, evaluation, cost: int, seconds: float, scout: bool = False) -> None:
        if scout:
            self.scouted.append(arch)
        elif self.scheduler.rung_of(arch) < 0:
            self.step.tell(arch, evaluation)  # the searcher learns each cell once: its first result
        self.scheduler.report(arch, rung, evaluation.valid)
        self.spent += cost
        text = self.space.format(arch)
        oracle = self.oracle
        full_test = (lambda: oracle.query(arch).test) if self.on_table else (lambda: evaluation.test)
        incumbent = self.incumbent
        incumbent.offer(text, rung, evaluation.valid, full_test)
        self.queries.append(Query(n=len(self.queries) + 1, arch=text, valid=evaluation.valid, test=evaluation.test,
                                  best_valid=incumbent.valid, best_test=incumbent.test, best_arch=incumbent.arch,
                                  seconds=seconds, wall=time.perf_counter() - self.start))
        self.fidelities.append(self.scheduler.rungs[rung])
        self.charged.append(cost)

    def result(self, config, journal, resumed: int, busy_seconds: float) -> ScheduledResult:
        """The run's result; ``busy_seconds``: time the loop itself counts as overhead (with the setup's)."""
        new = len(self.queries) - resumed
        return ScheduledResult(
            trajectory=self.queries, config=config, overhead_per_query=busy_seconds / new if new else 0.0,
            resumed_queries=resumed, notice=journal.notice if journal is not None else None,
            optimum=optimum_of(self.oracle, self.space), fidelities=self.fidelities, epochs=self.charged,
            scouted=len(self.scouted),
        )


def _run(space, oracle, step, scheduler, config, journal, progress, setup_seconds, parallel) -> ScheduledResult:
    from tqdm.auto import tqdm

    ledger = Ledger(space, oracle, step, scheduler)
    bar = tqdm(total=config["budget_epochs"], disable=not progress, unit="epoch",
               desc=f"{config['searcher']}+{config['predictor']} {config['schedule']}")
    try:
        if parallel is None:
            resumed, oracle_seconds = _one_process(ledger, config, journal, bar)
        else:
            workers, make_oracle, run_dir = parallel
            resumed = len(journal.records) if journal is not None else 0
            oracle_seconds = run_with_workers(ledger, scheduler, config, journal, run_dir, workers, make_oracle, bar)
            oracle_seconds /= workers  # the workers' evaluations overlap in the wall time
    finally:
        bar.close()
    wall = time.perf_counter() - ledger.start
    result = ledger.result(config, journal, resumed, wall - oracle_seconds + setup_seconds)
    if parallel is not None:
        result.config = {**config, "workers": parallel[0]}
        if ledger.notes:
            result.notice = "; ".join(filter(None, [result.notice, *ledger.notes]))
    return result


def _one_process(ledger, config, journal, bar) -> tuple[int, float]:
    """The schedule in this process, one job after another (deterministic: a resumed run replays its journal
    and checks that it takes the same decisions). Returns (evaluations replayed, oracle seconds)."""
    space, oracle, step, scheduler = ledger.space, ledger.oracle, ledger.step, ledger.scheduler
    budget, rungs = config["budget_epochs"], scheduler.rungs
    replay = list(journal.records) if journal is not None else []
    oracle_seconds = 0.0
    while True:
        job = scheduler.next_job()
        cost = ledger.cost(job)
        if ledger.spent + cost > budget:
            break
        arch = job.arch if job.arch is not None else step.ask(1, pending=ledger.scouted)[0]
        n = len(ledger.queries)
        if n < len(replay):
            record = replay[n]
            if (record["arch"] != space.format(arch) or record.get("fidelity") != rungs[job.rung]
                    or bool(record.get("scout")) != job.scout):
                raise JournalError(
                    f"the resumed run chose {space.format(arch)} at {rungs[job.rung]} epochs as evaluation {n + 1} "
                    f"but the journal has {record['arch']} at {record.get('fidelity')}; the run is not "
                    f"reproducible (changed code or options?)")
            evaluation, seconds = record_evaluation(record), float(record["seconds"])
        else:
            t0 = time.perf_counter()
            evaluation = oracle.query(arch, rungs[job.rung])
            seconds = time.perf_counter() - t0
            oracle_seconds += seconds
            if journal is not None:
                journal.append(query_record(n, space.format(arch), evaluation, seconds, epochs=cost, scout=job.scout))
        if job.arch is None:
            scheduler.started(arch)
        ledger.add(arch, job.rung, evaluation, cost, seconds, scout=job.scout)
        bar.update(cost)
    return min(len(replay), len(ledger.queries)), oracle_seconds
