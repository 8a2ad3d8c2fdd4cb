"""Runs as the CLI describes them: a run spec -> oracle, searcher, predictor -> the loop.

``nasflow search`` and ``nasflow compare`` both go through ``run_search``; the spec's JSON
(``nasflow.spec.RunSpec``) is also the journal header, so ``--resume`` rebuilds the very same run
from it. Here the spec meets the searchers: ``complete`` and ``continued`` hand it the pool each
searcher declares.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Mapping, NamedTuple, Optional

from ..cost_metrics import CostMetrics, feasible_space, open_metrics_table, parse_constraints
from ..errors import NasflowError
from ..journal import JournalError, read_header
from ..loop import SearchResult, search
from ..restricted import restrict_to_table, restriction_of
from ..schedulers import Schedule
from ..spec import RunSpec, SpecMismatch
from .scheduled import check_schedule, check_workers, run_scheduled

PREDICTOR_KINDS = ("fgp", "scratch", "none")
# How many predictors a searcher that takes an ensemble (``takes_ensemble``) gets.
ENSEMBLE_MEMBERS = 3
# The loop refits every few queries: 100 fine-tuning epochs rank as well as the Predictor's 200
# on the loop's own histories (docs/RESULTS.md, issue 9) in 40% of the time.
LOOP_PREDICTOR = {"epochs": 100}


def searcher_pools() -> dict[str, int]:
    """The default pool of each registered searcher that declares one (``BaseSearcher.default_pool``)."""
    from nasflow.searchers import SEARCHERS, searcher_class

    return {name: searcher_class(name).default_pool for name in SEARCHERS
            if searcher_class(name).default_pool is not None}


def searcher_declared_options() -> dict[str, tuple[str, ...]]:
    """The options each registered searcher that has any declares (``BaseSearcher.options``)."""
    from nasflow.searchers import SEARCHERS, searcher_class

    return {name: searcher_class(name).options for name in SEARCHERS if searcher_class(name).options}


def warm_start_searchers() -> list[str]:
    """The registered searchers that start from uniform samples, which a zero-cost warm start replaces."""
    from nasflow.searchers import SEARCHERS, searcher_class

    return [name for name in SEARCHERS if searcher_class(name).takes_warm_start]


def takes_warm_start(searcher: str) -> bool:
    """Whether registered searcher ``searcher`` starts from uniform samples that a warm start replaces."""
    from nasflow.searchers import searcher_class

    return searcher_class(searcher).takes_warm_start


def takes_ensemble(searcher: str) -> bool:
    """Whether registered searcher ``searcher`` models the objective itself, taking the run's predictors as its ensemble."""
    from nasflow.searchers import searcher_class

    return searcher_class(searcher).takes_ensemble


def complete(given: Mapping) -> RunSpec:
    """The run spec of ``given`` settings, every default filled in (None means 'use the default')."""
    return RunSpec.complete(given, searcher_pools())


def continued(stored: Mapping, given: Mapping) -> RunSpec:
    """The spec of a run or study continued from its ``stored`` settings (a journal header, a study's
    attribute) by a caller that ``given`` these now: see ``RunSpec.continued``."""
    pools = searcher_pools()
    return RunSpec.from_json(stored, pools).continued(given, pools)


def resumed(run_dir, given: Mapping) -> RunSpec:
    """The spec that resumes the run in ``run_dir``: its own, with the budget and hardware ``given``."""
    try:
        return continued(read_header(run_dir), given)
    except SpecMismatch as e:
        raise JournalError(f"{run_dir} was made with {e.detail}; resume it without changing that option") from None


def default_run_dir(spec: RunSpec) -> Path:
    """Where a run goes without --out: runs/SPACE-SEARCHER-PREDICTOR-seedN-TIME."""
    return Path("runs") / (f"{spec.space}-{spec.searcher}-{Path(spec.predictor).name}-seed{spec.seed}-"
                           f"{time.strftime('%Y%m%d-%H%M%S')}")


def make_predictor(space, spec: str, seed: int, options: Optional[dict] = None):
    """'fgp' (pre-trained GIN fine-tuned online), 'scratch' (same GIN, random init), 'none', a checkpoint path,
    or members joined by '+' (e.g. 'fgp+scratch'): a committee averaging their standardised scores."""
    if spec == "none":
        return None
    if "+" in spec:
        parts = spec.split("+")
        if "none" in parts or len(parts) < 2 or "" in parts:
            raise NasflowError(f"bad predictor committee {spec!r}: join fgp, scratch or paths with '+', e.g. fgp+scratch")
        from nasflow.predictors.committee import Committee

        return Committee([make_predictor(space, part, seed, options) for part in parts], spec)
    if spec not in ("fgp", "scratch") and not Path(spec).expanduser().is_file():
        raise NasflowError(f"unknown predictor {spec!r}: use fgp, scratch, none or the path of a saved predictor")
    from nasflow.predictors import Predictor

    if spec in ("fgp", "scratch"):
        options = {**LOOP_PREDICTOR, **(options or {})}
        return Predictor(space, encoder="gin", pretrain="fgp" if spec == "fgp" else "none", seed=seed, **options)
    return Predictor.load(Path(spec).expanduser(), space=space)


def run_predictors(space, settings: RunSpec) -> list:
    """The run's predictors: one, or an ensemble searcher's members. Members take consecutive seeds, so each
    has its own pre-training, shared with neighbouring runs' caches. Entries are None for predictor 'none'."""
    from nasflow.searchers import searcher_class

    members = (searcher_class(settings["searcher"]).ensemble_size or ENSEMBLE_MEMBERS
               if takes_ensemble(settings["searcher"]) else 1)
    seed = settings.resolved_predictor_seed
    return [make_predictor(space, settings["predictor"], seed + m, settings["predictor_options"]) for m in range(members)]


def open_oracle(space, spec: RunSpec, progress: bool = False, worker: int = 0):
    """(oracle, one-line description): the benchmark table, else the real-training oracle (on the device of
    worker number ``worker`` when several share ``--devices``)."""
    training = spec.training
    if spec.trains:
        from ..devices import parse_devices, worker_device
        from ..training import default_training_oracle

        hardware = spec.hardware or {}
        devices = parse_devices(hardware.get("devices"))
        options = {k: v for k, v in training.items() if k not in ("data", "lr")}
        if spec.schedule is not None:
            # a scheduled training runs one learning-rate schedule of the top rung's epochs (for_schedule)
            top = Schedule.parse(spec.schedule).max
            if options.get("epochs") not in (None, top):
                raise NasflowError(f"--epochs {options['epochs']} disagrees with the schedule's max={top}: a scheduled "
                                   f"training's epochs are its top rung's; drop --epochs")
            options["epochs"] = top
        oracle, description = default_training_oracle(
            space, data_path=training.get("data"), seed=spec.seed, progress=progress,
            learning_rate=training.get("lr"), cuda_graph=hardware.get("cuda_graph"),
            checkpoint_every=hardware.get("checkpoint_every"),
            device=worker_device(hardware.get("device", "auto"), devices, worker), **options,
        )
        if spec.schedule is not None:
            # not every query trains the top rung's epochs: say what a query is under the schedule
            description += f"; under schedule {spec.schedule} a query stops at a rung of that one training"
        return oracle, description
    oracle = space.open_oracle(spec.benchmark, spec.dataset, progress=progress)
    note = f"; {oracle.metric_note}" if oracle.metric_note else ""
    return oracle, f"benchmark {oracle.source} ({spec.dataset}){note}"


class Built(NamedTuple):
    """A run's parts, made from its complete settings by ``build``."""

    space: Any
    oracle: Any
    searcher: Any
    predictor: Any  # None without one, or when the searcher took the predictors as its ensemble
    description: str  # of the oracle, one line
    setup_seconds: float  # spent making the searcher (e.g. scoring a warm start): the loop counts it as overhead
    objectives: Any = None  # a multi-objective run's nasflow.objectives.Objectives


def build(settings: dict, progress: bool = False, worker: int = 0) -> Built:
    """The run's parts for complete settings. A table that holds fewer cells than the space restricts the
    search to its cells (``nasflow.restricted``); the predictors keep the whole space, so their pre-training
    is the one every other run of the space shares."""
    from nasflow.searchers import get_searcher
    from nasflow.spaces import get_space

    space = get_space(settings["space"])
    oracle, description = open_oracle(space, settings, progress, worker)
    check_schedule(settings, oracle)
    searched = constrained(restrict_to_table(space, oracle), settings, progress, oracle)
    check_budget(searched, settings["budget"], constrained_by=settings["constraints"])
    from .fronts import objectives_for

    objectives = objectives_for(settings, cost_metrics(searched, settings, progress, oracle))  # before predictors
    seed = settings["seed"]
    predictors = run_predictors(space, settings)
    started = time.perf_counter()
    options = searcher_options(settings, predictors, searched, progress)
    if objectives is not None:
        options["objectives"] = objectives
    searcher = get_searcher(settings["searcher"], searched, seed=seed, **options)
    setup_seconds = time.perf_counter() - started
    predictor = None if takes_ensemble(settings["searcher"]) else predictors[0]
    return Built(searched, oracle, searcher, predictor, description, setup_seconds, objectives)


def cost_metrics(space, settings, progress: bool = False, oracle=None) -> CostMetrics:
    """The cost metrics of the run's cells: its metrics table (opened and checked whenever one is named, before
    any work), closed forms, and a live latency that times the network the training ``oracle`` trains, on its
    data and device (with a table, the official network on the CPU), on ``latency_batch`` images."""
    from ..latency import LatencySetup
    from ..training import TrainingOracle

    table = open_metrics_table(settings["metrics_table"], space) if settings["metrics_table"] else None
    batch = settings.get("latency_batch") or 1
    latency = oracle.latency_setup(batch) if isinstance(oracle, TrainingOracle) else LatencySetup(batch_size=batch)
    return CostMetrics(space, table, progress, latency)


def constrained(space, settings, progress: bool = False, oracle=None) -> Any:
    """``space`` cut down to the cells that satisfy the run's constraints (``nasflow.cost_metrics``), else itself."""
    metrics = cost_metrics(space, settings, progress, oracle)
    constraints = parse_constraints(settings["constraints"])
    if not constraints:
        return space
    return feasible_space(space, constraints, metrics)


def check_budget(space, budget: int, constrained_by=None) -> None:
    """Refuse, before any work, a budget beyond the cells a run can query: a restricted search could never
    spend it (the loop would refuse it too, but only after a warm start or pre-training)."""
    restriction = restriction_of(space)
    if restriction is not None and budget > restriction["cells"]:
        cells = restriction["cells"]
        if constrained_by:
            raise NasflowError(f"budget {budget:,d} exceeds the {cells:,d} cells of {space.name} that satisfy the "
                               f"{restriction['source']}; use --budget {cells:,d} or less, or loosen a constraint")
        raise NasflowError(
            f"budget {budget:,d} exceeds the {cells:,d} labelled cells of {restriction['source']}, "
            f"to which the {space.name} search is restricted; use --budget {cells:,d} or less, "
            f"or a complete benchmark"
        )


def run_meta(settings: RunSpec, run: "Built") -> dict:
    """What a run's config and journal header record beyond its spec: the oracle and any restriction,
    which a resumed run must share (a table edited in between would restrict it to other cells)."""
    meta = {**settings.to_json(), "oracle": run.description}
    restriction = restriction_of(run.space)
    if restriction is not None:
        meta["restricted"] = restriction
    return meta


def describe_restriction(config: Mapping) -> Optional[str]:
    """The run summary's line about a restricted search, None for a search of the whole space."""
    r = config.get("restricted")
    if not r:
        return None
    if config.get("constraints"):
        return f"restricted to the {r['cells']:,d} feasible cells (of {r['of']:,d} in {config['space']}): {r['source']}"
    return f"restricted to the {r['cells']:,d} labelled cells of {r['source']} (of {r['of']:,d} in {config['space']})"


def searcher_options(settings: dict, ensemble, space, progress: bool = False) -> dict:
    """The searcher's options beyond its seed: an ensemble searcher ranks its own candidates, so it takes the
    predictors as its ensemble and the loop's explore share and refit cadence. Without them BANANAS+FGP stalled
    on local optima its ensemble ranked above their better neighbours, and found the best cell mostly right after
    a refit (docs/RESULTS.md, issue 9, BANANAS). A warm start becomes the searcher's initial design.
    Distributed workers rebuild searchers with the same options."""
    options = dict(checked_searcher_options(settings["searcher"], settings.get("searcher_options")))
    if settings.get("warm_start") is not None:
        from .warm_start import parse, warm_start_cells

        parse(settings["warm_start"], space.size)  # reported first, whatever the searcher
        if not takes_warm_start(settings["searcher"]):
            names = warm_start_searchers()
            listed = ", ".join(names[:-1]) + " and " + names[-1] if len(names) > 1 else names[0]
            raise NasflowError(f"--warm-start applies to {listed}, not {settings['searcher']!r}")
        options["initial_design"] = warm_start_cells(space, settings["warm_start"], settings["seed"], progress)
    if not takes_ensemble(settings["searcher"]):
        return options
    options["explore"] = settings["explore"]
    if settings["predictor"] != "none":
        options.update(ensemble=ensemble, refit_every=settings["refit_every"])
    return options


def searcher_option_value(text: str):
    """A searcher option's value as given on a command line: an integer, else a number, else the text (the
    searcher checks it)."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def checked_searcher_options(searcher: str, options) -> dict:
    """``options`` (``--searcher-option``), refused in one line unless searcher ``searcher`` declares each
    (``BaseSearcher.options``); their values are the searcher's to check."""
    from nasflow.searchers import searcher_class

    declared = searcher_class(searcher).options
    for key in options or {}:
        if key not in declared:
            takes = f"its options are {', '.join(declared)}" if declared else "it takes none"
            raise NasflowError(f"searcher {searcher!r} has no option {key!r}; {takes}")
    return dict(options or {})


def run_search(settings: dict, run_dir=None, resume: bool = False, progress: bool = False,
               workers: Optional[int] = None) -> SearchResult:
    """The run of ``settings``; ``workers``: a scheduled run's local worker processes (None: this process)."""
    settings = complete(settings)
    check_workers(settings, workers)
    run = build(settings, progress)
    if settings.schedule is not None:
        return run_scheduled(settings, run, run_dir, resume, progress, meta=run_meta(settings, run), workers=workers)
    result = search(
        run.space, run.oracle, run.searcher, predictor=run.predictor, budget=settings["budget"],
        pool=settings["pool"], batch=settings["batch"],
        refit_every=settings["refit_every"], warmup=settings["warmup"], explore=settings["explore"], seed=settings["seed"],
        run_dir=run_dir, resume=resume, meta=run_meta(settings, run), progress=progress,
        setup_seconds=run.setup_seconds,
    )
    if run.oracle.speed_summary is not None:
        result.config["training_speed"] = run.oracle.speed_summary()
    if run.objectives is not None:
        from .fronts import front_report, write_front

        result.front = front_report(result, run.space, run.oracle, run.objectives)
        if run_dir is not None:
            write_front(result.front, run_dir)
    return result


def pretrain_for(settings: dict, progress: bool = False) -> None:
    """Run (or load from the disk cache) the pre-training a run will need, so parallel runs share it."""
    settings = complete(settings)
    from nasflow.spaces import get_space

    for predictor in run_predictors(get_space(settings["space"]), settings):
        if predictor is not None:
            predictor.pretrain(progress=progress)
