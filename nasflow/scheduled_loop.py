"""The search loop under a multi-fidelity schedule: the budget is training epochs, not queries.

The searcher proposes (through the same ``RankedSearcher`` step as ``nasflow.loop``, so a predictor ranks
its proposals the same way), the schedule (``nasflow.schedulers``) decides at which fidelity each cell is
trained and which cells are promoted. What the searcher learns: each cell once, its first result (for
successive halving and ASHA: the lowest rung, the one every cell has, so its labels share one scale).
A promotion is not told again: a searcher's history holds a cell once (``searchers.base``).
A schedule with a model (``model=ridge``, ``nasflow.fidelity_model``) learns from every result instead: the
model, refitted on all rungs' results at each decision, ranks the searcher's proposals in place of a predictor
and orders each rung's promotions by predicted full-fidelity valid (``Scheduler.scorer``).

Cost: a cell trained to ``f`` epochs costs ``f``; promoted from ``f`` to ``g`` it costs ``g - f`` where the
oracle ``continues`` (a table stands for a training continued from its checkpoint, as the training oracle
resumes one), else ``g``. So 12 then 200 epochs on NB-201 cost 200, not 212. A job is started only while it
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
from typing import Optional

import numpy as np

from .core import TabularOracle
from .journal import Journal, JournalError, query_record, record_evaluation
from .loop import SearchError, SearchResult, fit_pool, optimum_of
from .runlock import lock_run_dir
from .schedulers import Schedule
from .step import Query, RankedSearcher, RefitSchedule


@dataclass
class ScheduledResult(SearchResult):
    """A scheduled run: ``trajectory`` as a search's (``valid``/``test`` of each evaluation at its fidelity;
    ``best_*`` of the best cell so far, its test at full fidelity on a table), plus per evaluation its
    ``fidelities`` and charged ``epochs``."""

    fidelities: list[int] = field(default_factory=list)
    epochs: list[int] = field(default_factory=list)

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
                     progress: bool = False, setup_seconds: float = 0.0) -> ScheduledResult:
    """Search ``space`` under ``schedule`` until the next job does not fit in ``budget_epochs`` epochs of training.
    The other options are ``nasflow.loop.search``'s (one cell per step: the schedule decides what is trained)."""
    for name, value, low in (("budget epochs", budget_epochs, 1), ("refit_every", refit_every, 1),
                             ("warmup", warmup, 1), ("seed", seed, 0)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise SearchError(f"{name} must be an integer >= {low}, got {value!r}")
    if resume and run_dir is None:
        raise SearchError("resume needs the run directory to continue")
    scheduler = schedule.scheduler(oracle.fidelities)  # a fidelity the oracle lacks is refused before any work
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
    if run_dir is None:
        return _run(space, oracle, step, scheduler, config, None, progress, setup_seconds)
    with lock_run_dir(run_dir, create=not resume):
        # the query budget a header may hold is no limit here: the journal is bounded in epochs (checked below)
        header = {k: v for k, v in config.items() if k != "budget"}
        journal = Journal.resume(run_dir, header) if resume else Journal.create(run_dir, config)
        try:
            spent = sum(int(r.get("epochs", 0)) for r in journal.records)
            if spent > budget_epochs:
                raise JournalError(f"{run_dir} already spent {spent:,d} epochs, more than a budget of {budget_epochs:,d}; "
                                   f"resume with --budget-epochs {spent} or more")
            result = _run(space, oracle, step, scheduler, config, journal, progress, setup_seconds)
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


def _run(space, oracle, step, scheduler, config, journal, progress, setup_seconds) -> ScheduledResult:
    from tqdm.auto import tqdm

    budget, rungs = config["budget_epochs"], scheduler.rungs
    continues = oracle.continues
    on_table = isinstance(oracle, TabularOracle)
    replay = list(journal.records) if journal is not None else []
    queries, fidelities, charged = [], [], []
    incumbent = Incumbent()
    spent, oracle_seconds, start = 0, 0.0, time.perf_counter()
    bar = tqdm(total=budget, disable=not progress, desc=f"{config['searcher']}+{config['predictor']} {config['schedule']}",
               unit="epoch")
    try:
        while True:
            job = scheduler.next_job()
            before = scheduler.rung_of(job.arch) if job.arch is not None else -1
            cost = rungs[job.rung] - (rungs[before] if before >= 0 and continues else 0)
            if spent + cost > budget:
                break
            arch = job.arch if job.arch is not None else step.ask(1)[0]
            n = len(queries)
            if n < len(replay):
                record = replay[n]
                if record["arch"] != space.format(arch) or record.get("fidelity") != rungs[job.rung]:
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
                    journal.append(query_record(n, space.format(arch), evaluation, seconds, epochs=cost))
            if job.arch is None:
                scheduler.started(arch)
                step.tell(arch, evaluation)  # the searcher learns each cell once: its first result
            scheduler.report(arch, job.rung, evaluation.valid)
            spent += cost
            text = space.format(arch)
            full_test = (lambda a=arch: oracle.query(a).test) if on_table else (lambda e=evaluation: e.test)
            incumbent.offer(text, job.rung, evaluation.valid, full_test)
            queries.append(Query(n=n + 1, arch=text, valid=evaluation.valid, test=evaluation.test,
                                 best_valid=incumbent.valid, best_test=incumbent.test, best_arch=incumbent.arch,
                                 seconds=seconds, wall=time.perf_counter() - start))
            fidelities.append(rungs[job.rung])
            charged.append(cost)
            bar.update(cost)
    finally:
        bar.close()
    resumed = min(len(replay), len(queries))
    new = len(queries) - resumed
    wall = time.perf_counter() - start
    return ScheduledResult(
        trajectory=queries, config=config,
        overhead_per_query=(wall - oracle_seconds + setup_seconds) / new if new else 0.0,
        resumed_queries=resumed, notice=journal.notice if journal is not None else None,
        optimum=optimum_of(oracle, space), fidelities=fidelities, epochs=charged,
    )
