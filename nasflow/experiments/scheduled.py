"""Runs under a multi-fidelity schedule, as the CLI describes them: the spec's schedule checked against the
searcher and the oracle before any work, then ``nasflow.scheduled_loop``.

Here the spec meets the searchers (whether one takes a schedule), so it belongs with ``runs``; the loop
itself is pure core.
"""
from __future__ import annotations

from ..errors import NasflowError
from ..schedulers import Schedule


def takes_schedule(searcher: str) -> bool:
    """Whether registered searcher ``searcher`` may be wrapped by a schedule (``BaseSearcher.takes_schedule``)."""
    from nasflow.searchers import searcher_class

    return searcher_class(searcher).takes_schedule


def model_searchers() -> list[str]:
    """The searchers a schedule's model can rank the proposals of (not one ranking them with its own ensemble)."""
    from nasflow.searchers import SEARCHERS

    from .runs import takes_ensemble

    return [name for name in SEARCHERS if takes_schedule(name) and not takes_ensemble(name)]


def check_schedule(settings, oracle) -> None:
    """Refuse, before a warm start or pre-training, a schedule this run cannot follow: one on a searcher that
    cannot take it, with a batch (a schedule decides each job itself), or at a fidelity the oracle lacks."""
    if settings["schedule"] is None:
        return
    from nasflow.searchers import SEARCHERS

    if not takes_schedule(settings["searcher"]):
        able = [name for name in SEARCHERS if takes_schedule(name)]
        raise NasflowError(f"searcher {settings['searcher']!r} cannot follow a schedule; use {', '.join(able)}")
    if settings["batch"] != 1:
        raise NasflowError(f"a scheduled run trains one cell per step (the schedule picks it); drop --batch {settings['batch']}")
    if settings.get("objectives"):
        # the schedule ranks cells by valid at each rung: a front of several objectives is not what it promotes
        raise NasflowError("a scheduled run promotes cells by valid accuracy alone; --objectives needs a run without "
                           "--schedule")
    schedule = Schedule.parse(settings["schedule"])
    if schedule.model != "none" and settings["predictor"] != "none":
        # the model of every rung's labels ranks the proposals; a second ranker would overrule it
        raise NasflowError(f"schedule model={schedule.model} ranks the proposals itself; drop --predictor "
                           f"{settings['predictor']} or the schedule's model")
    if schedule.model != "none" and settings["searcher"] not in model_searchers():
        raise NasflowError(f"searcher {settings['searcher']!r} ranks its proposals with its own ensemble; schedule "
                           f"model={schedule.model} needs a searcher without one ({', '.join(model_searchers())})")
    schedule.rungs(oracle.fidelities)


def check_workers(settings, workers) -> None:
    """Refuse, before any work, local workers for a run they cannot serve: one without a schedule, or with a
    schedule that waits for whole rungs."""
    if workers is None:
        return
    if settings["schedule"] is None:
        raise NasflowError("--workers needs --storage URL (a shared study), or --schedule asha:... (local workers)")
    from ..scheduled_workers import check_workers as check

    check(Schedule.parse(settings["schedule"]), workers)


def worker_oracle(settings, index: int):
    """The oracle of worker ``index`` of a run with workers (its device from ``--devices``)."""
    from nasflow.spaces import get_space

    from .runs import open_oracle

    return open_oracle(get_space(settings["space"]), settings, worker=index)[0]


def run_scheduled(settings, run, run_dir=None, resume: bool = False, progress: bool = False, meta=None,
                  workers=None):
    """The scheduled search of complete ``settings`` with its built parts ``run`` (``runs.build``), in ``workers``
    processes (None: in this one)."""
    from functools import partial

    from ..scheduled_loop import scheduled_search

    return scheduled_search(
        run.space, run.oracle, run.searcher, Schedule.parse(settings["schedule"]), predictor=run.predictor,
        budget_epochs=settings["budget_epochs"], pool=settings["pool"], refit_every=settings["refit_every"],
        warmup=settings["warmup"], explore=settings["explore"], seed=settings["seed"], run_dir=run_dir,
        resume=resume, meta=meta, progress=progress, setup_seconds=run.setup_seconds, workers=workers,
        make_oracle=None if workers is None else partial(worker_oracle, settings),
    )
