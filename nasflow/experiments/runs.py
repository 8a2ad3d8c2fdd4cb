"""Runs as the CLI describes them: settings -> oracle, searcher, predictor -> the loop.

``nasflow search`` and ``nasflow compare`` both go through ``run_search``; the settings
dict is also the journal header, so ``--resume`` rebuilds the very same run from it.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

from ..errors import NasflowError
from ..loop import SearchResult, search

PREDICTOR_KINDS = ("fgp", "scratch", "none")
# A searcher that models the objective itself takes the predictor as its ensemble.
ENSEMBLE_SEARCHERS = ("bananas",)
ENSEMBLE_MEMBERS = 3
# Searchers that start from uniform samples, which a zero-cost warm start replaces (nasflow.warm_start).
WARM_START_SEARCHERS = ("evolution", "bananas")
# Without --predictor-seed a run's predictor seed is its seed modulo this: a 30-seed grid then
# pre-trains FGP 5 times (plus the ensemble's neighbours), not 30, and still varies the pre-training.
PREDICTOR_SEEDS = 5
# The loop refits every few queries: 100 fine-tuning epochs rank as well as the Predictor's 200
# on the loop's own histories (docs/RESULTS.md, issue 9) in 40% of the time.
LOOP_PREDICTOR = {"epochs": 100}
# numpy's legacy RandomState (the field's permutations) and torch take seeds below 2**32
MAX_SEED = 2**32 - 1

DEFAULTS = {
    "space": "nb201",
    "searcher": "evolution",
    "predictor": "none",
    "budget": None,  # 100 queries of a benchmark table; 50 real trainings (about 2 minutes on 2 cores)
    "batch": 1,
    "pool": None,  # 100 cells, 25 for tpe (each Optuna suggestion costs milliseconds)
    "refit_every": 5,
    "warmup": 10,
    # share of queries that take the searcher's own proposal over the predictor's pick: without it, FGP-guided
    # evolution stalled on a local optimum whose one better neighbour the predictor kept ranking low
    # (docs/RESULTS.md, "Search (issue 9)")
    "explore": 0.2,
    "dataset": "cifar10",
    "benchmark": None,
    "seed": 0,
    "predictor_seed": None,  # None: the run's seed % PREDICTOR_SEEDS; fixed: every run shares one pre-training
    "training": None,  # {data, recipe, epochs, batch_size, lr, augment, width, cells, precision} without a benchmark
    "hardware": None,  # {device, devices, cuda_graph, checkpoint_every}: how trainings run; not a run's identity
    "predictor_options": None,  # extra Predictor keyword options for fgp/scratch, e.g. {"dim": 32}
    "warm_start": None,  # "PROXY[:SAMPLES]": start from the best of SAMPLES uniform cells by a zero-cost proxy
}


def complete(settings: dict) -> dict:
    """``settings`` with every default filled in (None means 'use the default')."""
    out = {**DEFAULTS, **{k: v for k, v in settings.items() if v is not None}}
    # numpy and torch refuse negative seeds only deep inside a run, after its journal header is written
    for key in ("seed", "predictor_seed"):
        value = out[key]
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_SEED):
            raise NasflowError(f"{key.replace('_', ' ')} must be an integer in 0..{MAX_SEED}, got {value!r}")
    if out["budget"] is None:
        out["budget"] = 50 if out["benchmark"] is None and out["training"] is not None else 100
    if out["pool"] is None:
        out["pool"] = 25 if out["searcher"] == "tpe" else 100
    if out["benchmark"] is not None:
        out["benchmark"] = str(Path(out["benchmark"]).expanduser().resolve())
        out["training"] = None
    return out


def continued(stored: dict, given: dict) -> dict:
    """Complete settings of a run or study continued from its ``stored`` settings: of what the caller
    ``given`` now, only the budget (it may be raised) and the hardware (a resume or a joining worker may
    train elsewhere) replace the stored values."""
    changes = {**({"budget": given["budget"]} if given.get("budget") is not None else {}),
               **({"hardware": given["hardware"]} if given.get("hardware") else {})}
    return complete({**{k: stored[k] for k in DEFAULTS if k in stored}, **changes})


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


def predictor_seed_of(settings: dict) -> int:
    given = settings["predictor_seed"]
    return settings["seed"] % PREDICTOR_SEEDS if given is None else given


def run_predictors(space, settings: dict) -> list:
    """The run's predictors: one, or an ensemble searcher's members. Members take consecutive seeds, so each
    has its own pre-training, shared with neighbouring runs' caches. Entries are None for predictor 'none'."""
    members = ENSEMBLE_MEMBERS if settings["searcher"] in ENSEMBLE_SEARCHERS else 1
    seed = predictor_seed_of(settings)
    return [make_predictor(space, settings["predictor"], seed + m, settings["predictor_options"]) for m in range(members)]


def open_oracle(space, settings: dict, progress: bool = False, worker: int = 0):
    """(oracle, one-line description): the benchmark table, else the real-training oracle (on the device of
    worker number ``worker`` when several share ``--devices``)."""
    training = settings.get("training")
    if settings["benchmark"] is None and training is not None:
        from ..devices import parse_devices, worker_device
        from ..training import default_training_oracle

        hardware = settings.get("hardware") or {}
        devices = parse_devices(hardware.get("devices"))
        options = {k: v for k, v in training.items() if k not in ("data", "lr")}
        return default_training_oracle(
            space, data_path=training.get("data"), seed=settings["seed"], progress=progress,
            learning_rate=training.get("lr"), cuda_graph=hardware.get("cuda_graph"),
            checkpoint_every=hardware.get("checkpoint_every"),
            device=worker_device(hardware.get("device", "auto"), devices, worker), **options,
        )
    oracle = space.open_oracle(settings["benchmark"], settings["dataset"])
    return oracle, f"benchmark {oracle.source} ({settings['dataset']})"


def build(settings: dict, progress: bool = False, worker: int = 0):
    """(space, oracle, searcher, predictor, description) for complete settings."""
    from nasflow.searchers import get_searcher
    from nasflow.spaces import get_space

    space = get_space(settings["space"])
    oracle, description = open_oracle(space, settings, progress, worker)
    check_covers_space(space, oracle)
    seed = settings["seed"]
    predictors = run_predictors(space, settings)
    started = time.perf_counter()
    options = searcher_options(settings, predictors, space, progress)
    searcher = get_searcher(settings["searcher"], space, seed=seed, **options)
    searcher.setup_seconds = time.perf_counter() - started  # a warm start's proxy scoring is loop overhead
    predictor = None if settings["searcher"] in ENSEMBLE_SEARCHERS else predictors[0]
    return space, oracle, searcher, predictor, description


def check_covers_space(space, oracle) -> None:
    """Refuse a table that lacks cells of the space: searchers propose any cell, and the first one outside
    the table would end the run mid-way (the shipped nb101_1k.jsonl holds 1,000 of 423,624 cells)."""
    from ..core import TabularOracle

    size = space.size
    if isinstance(oracle, TabularOracle) and size is not None and len(oracle) < size:
        raise NasflowError(
            f"{oracle.source} holds {len(oracle):,d} of the {size:,d} {space.name} cells, and a search proposes "
            f"cells outside it; search with the complete benchmark (the official file), or use this table "
            f"to train a predictor (nasflow train-predictor)"
        )


def searcher_options(settings: dict, ensemble, space, progress: bool = False) -> dict:
    """The searcher's options beyond its seed: an ensemble searcher ranks its own candidates, so it takes the
    predictors as its ensemble and the loop's explore share and refit cadence. Without them BANANAS+FGP stalled
    on local optima its ensemble ranked above their better neighbours, and found the best cell mostly right after
    a refit (docs/RESULTS.md, issue 9, BANANAS). A warm start becomes the searcher's initial design.
    Distributed workers rebuild searchers with the same options."""
    options = {}
    if settings.get("warm_start") is not None:
        from .warm_start import parse, warm_start_cells

        parse(settings["warm_start"], space.size)  # reported first, whatever the searcher
        if settings["searcher"] not in WARM_START_SEARCHERS:
            raise NasflowError(f"--warm-start applies to {' and '.join(WARM_START_SEARCHERS)}, not {settings['searcher']!r}")
        options["initial_design"] = warm_start_cells(space, settings["warm_start"], settings["seed"], progress)
    if settings["searcher"] not in ENSEMBLE_SEARCHERS:
        return options
    options["explore"] = settings["explore"]
    if settings["predictor"] != "none":
        options.update(ensemble=ensemble, refit_every=settings["refit_every"])
    return options


def run_search(settings: dict, run_dir=None, resume: bool = False, progress: bool = False) -> SearchResult:
    settings = complete(settings)
    space, oracle, searcher, predictor, description = build(settings, progress)
    result = search(
        space, oracle, searcher, predictor=predictor, budget=settings["budget"],
        pool=settings["pool"], batch=settings["batch"],
        refit_every=settings["refit_every"], warmup=settings["warmup"], explore=settings["explore"], seed=settings["seed"],
        run_dir=run_dir, resume=resume, meta={**settings, "oracle": description}, progress=progress,
    )
    if oracle.speed_summary is not None:
        result.config["training_speed"] = oracle.speed_summary()
    return result


def pretrain_for(settings: dict, progress: bool = False) -> None:
    """Run (or load from the disk cache) the pre-training a run will need, so parallel runs share it."""
    settings = complete(settings)
    from nasflow.spaces import get_space

    for predictor in run_predictors(get_space(settings["space"]), settings):
        if predictor is not None:
            predictor.pretrain(progress=progress)
