"""A run's settings as one frozen spec: its defaults, its identity, its JSON.

``RunSpec`` is what ``nasflow search`` and ``nasflow compare`` run. Its JSON (``to_json``) is the
journal header of a run directory and the user attribute of a shared study, so ``--resume`` and a
joining worker rebuild the very same run from it (``from_json``, ``continued``). Which settings make
two runs the same run is ``IDENTITY``, compared in one place (``mismatch``).

Defaults that depend on a searcher (TPE ranks a smaller pool) are declared by the searcher and handed
in by ``nasflow.experiments`` as ``pools``: this module imports none of the rooms.
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Iterator, Optional

from .benchfiles import locate
from .cost_metrics import LIVE, canonical_constraints, parse_constraints
from .errors import NasflowError
from .objectives import canonical_objectives

# numpy's legacy RandomState (the field's permutations) and torch take seeds below 2**32
MAX_SEED = 2**32 - 1
# Without a predictor seed a run's predictor seed is its seed modulo this: a 30-seed grid then
# pre-trains FGP 5 times (plus the ensemble's neighbours), not 30, and still varies the pre-training.
PREDICTOR_SEEDS = 5
DEFAULT_BUDGET = 100  # queries of a benchmark table
TRAINING_BUDGET = 50  # real trainings (about 2 minutes on 2 cores with the embedded digits)
DEFAULT_POOL = 100  # candidates the predictor ranks per step, unless the searcher declares its own
# How a shared study's workers run; not settings of the run (a study may be joined with other values).
DEFAULT_WORKERS = 1
DEFAULT_STALE_AFTER = 60.0  # seconds a claim's heartbeat may stand still before the claim is released

# Settings that decide the trajectory: a resumed run or a joined study must agree on them. The budget
# may be raised and the hardware may change (``RunSpec.continued``). "restricted" is no setting but a run's
# header records it (``nasflow.experiments.runs.run_meta``): the cells of a partial table the search was
# restricted to, which an edited table file would change under the same benchmark path (or the feasible
# cells of constraints, which an edited metrics table would change).
IDENTITY = ("space", "seed", "searcher", "predictor", "predictor_seed", "dataset", "pool", "batch", "refit_every",
            "warmup", "explore", "predictor_options", "searcher_options", "warm_start", "benchmark", "training", "constraints",
            "metrics_table", "latency_batch", "restricted", "schedule", "objectives")


class SpecError(NasflowError, ValueError):
    """Run settings that cannot describe a run (an unknown setting, a bad seed)."""


class SpecMismatch(NasflowError):
    """Settings given to continue a run (or join a study) that differ from the ones it was made with."""

    def __init__(self, detail: str):
        self.detail = detail  # "KEY=STORED, not GIVEN", for callers that say which run or study
        super().__init__(f"the run was made with {detail}")


def json_safe(value):
    """``value`` as standard JSON data: mappings with string keys, lists, numbers, strings, None.

    NaN and infinities become None (JSON has neither), numpy scalars Python numbers, and anything
    else its string.
    """
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


@dataclasses.dataclass(frozen=True)
class RunSpec(Mapping):
    """The complete settings of one run. Build it with ``complete`` (or ``from_json``): fields left None
    are filled in, so every RunSpec is complete. It reads as a mapping too (``spec["budget"]``,
    ``{**spec}``), the shape its JSON has; its dict fields belong to it and are not to be changed."""

    space: str = "nb201"
    searcher: str = "evolution"
    predictor: str = "none"  # fgp, scratch, none, a saved predictor's path, or members joined by '+'
    budget: Optional[int] = None  # DEFAULT_BUDGET queries of a table, TRAINING_BUDGET real trainings
    batch: int = 1
    pool: Optional[int] = None  # the searcher's declared pool, else DEFAULT_POOL
    refit_every: int = 5
    warmup: int = 10
    # share of queries that take the searcher's own proposal over the predictor's pick: without it, FGP-guided
    # evolution stalled on a local optimum whose one better neighbour the predictor kept ranking low
    # (docs/RESULTS.md, "Search (issue 9)")
    explore: float = 0.2
    dataset: str = "cifar10"
    benchmark: Optional[str] = None  # a table file; None with training: the training oracle
    seed: int = 0
    # None: the run's seed % PREDICTOR_SEEDS (``resolved_predictor_seed``); fixed: every run shares one pre-training.
    # Kept None rather than resolved, so a spec's JSON is the header older versions wrote and compared.
    predictor_seed: Optional[int] = None
    training: Optional[dict] = None  # {data, recipe, epochs, batch_size, lr, augment, width, cells, precision}
    hardware: Optional[dict] = None  # {device, devices, cuda_graph, checkpoint_every}: how trainings run; not identity
    predictor_options: Optional[dict] = None  # extra Predictor keyword options for fgp/scratch, e.g. {"dim": 32}
    warm_start: Optional[str] = None  # "PROXY[:SAMPLES]": start from the best of SAMPLES uniform cells by a proxy
    # options of the searcher it declares (``BaseSearcher.options``), e.g. {"population": 40} for evolution; None
    # without any, so the headers of runs made before it existed stay as they were
    searcher_options: Optional[dict] = None
    # "METRIC<=BOUND" strings (nasflow.cost_metrics), kept canonical and sorted: every searcher proposes only the
    # cells that satisfy them all. None (not an empty tuple) without any, so unconstrained headers stay as they were.
    constraints: Optional[tuple] = None
    metrics_table: Optional[str] = None  # a CSV of measured cost metrics per cell, e.g. nb201_latency_ms.csv
    # images per timed forward pass of a live ``latency`` constraint (None: one image, as before it existed)
    latency_batch: Optional[int] = None
    # a multi-fidelity schedule "KIND:min=..,max=..,eta=.." (nasflow.schedulers), kept canonical; None: every cell at
    # full fidelity, as before schedules existed. A scheduled run's budget is training epochs: budget_epochs, by
    # default ``budget`` full trainings' worth (budget x max).
    schedule: Optional[str] = None
    budget_epochs: Optional[int] = None
    # a multi-objective search's objectives ("valid", "-pixel3"; nasflow.objectives), canonical, in their order;
    # None for a search of valid alone, so single-objective settings stay as they were
    objectives: Optional[tuple] = None

    def __post_init__(self):
        # numpy and torch refuse bad seeds only deep inside a run, after its journal header is written
        for key in ("seed", "predictor_seed"):
            value = getattr(self, key)
            if (value is not None or key == "seed") and (
                    isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_SEED):
                raise SpecError(f"{key.replace('_', ' ')} must be an integer in 0..{MAX_SEED}, got {value!r}")
        fill = self._fill
        for key in ("training", "hardware", "predictor_options"):
            if getattr(self, key) is not None:
                fill(key, dict(getattr(self, key)))  # a copy: the caller's dict may change later
        if self.searcher_options is not None:
            # a sorted copy, so equal options give one JSON; no options is the default (None), however given
            fill("searcher_options", dict(sorted(dict(self.searcher_options).items())) or None)
        if self.benchmark is not None:
            # resolved once, so a run resumed from another working directory names the same file
            fill("benchmark", str(locate(self.benchmark, self.space).resolve()))
            fill("training", None)
        fill("constraints", canonical_constraints(self.constraints))
        fill("objectives", canonical_objectives(self.objectives))
        if self.metrics_table is not None:
            fill("metrics_table", str(locate(self.metrics_table, self.space).resolve()))
        if self.latency_batch is not None:
            if isinstance(self.latency_batch, bool) or not isinstance(self.latency_batch, int) or self.latency_batch < 1:
                raise SpecError(f"latency batch must be an integer >= 1, got {self.latency_batch!r}")
            timed = [c.metric for c in parse_constraints(self.constraints)] + [o.lstrip("+-") for o in self.objectives or ()]
            if not any(metric in LIVE for metric in timed):
                raise SpecError("--latency-batch sets the batch a live latency is timed on; this run has no "
                                "constraint or objective on latency (add --constraint 'latency<=MS')")
        if self.trains and self.dataset != RunSpec.dataset:
            # a run that trains reads --data (or the digits): a dataset of a table it never opens was ignored
            raise SpecError(f"--dataset {self.dataset} names a dataset of a benchmark table, but this run trains each "
                            f"cell (no --benchmark); pass --benchmark FILE to search that table, or --data for your own data")
        if self.budget is None:
            fill("budget", TRAINING_BUDGET if self.trains else DEFAULT_BUDGET)
        if self.pool is None:
            fill("pool", DEFAULT_POOL)
        if self.schedule is not None:
            from .schedulers import Schedule

            schedule = Schedule.parse(self.schedule)
            fill("schedule", str(schedule))
            if self.budget_epochs is None:
                fill("budget_epochs", self.budget * schedule.max)
        elif self.budget_epochs is not None:
            raise SpecError("a budget in epochs (--budget-epochs) needs a schedule (--schedule); "
                            "a search at full fidelity counts queries (--budget)")
        if self.budget_epochs is not None and (isinstance(self.budget_epochs, bool)
                                               or not isinstance(self.budget_epochs, int) or self.budget_epochs < 1):
            raise SpecError(f"budget epochs must be an integer >= 1, got {self.budget_epochs!r}")

    def _fill(self, key: str, value) -> None:
        object.__setattr__(self, key, value)  # frozen to everyone else; completing itself is __post_init__'s job

    @classmethod
    def complete(cls, given: Mapping, pools: Optional[Mapping[str, int]] = None) -> "RunSpec":
        """The spec of ``given`` settings, where None (or a missing key) means the default: the pool the
        searcher declares (``pools``, by searcher name), else the spec's own defaults."""
        unknown = [k for k in given if k not in FIELDS]
        if unknown:
            raise SpecError(f"unknown run setting {', '.join(map(repr, unknown))}; the settings are {', '.join(FIELDS)}")
        values = {k: v for k, v in given.items() if v is not None}
        searcher = values.get("searcher", DEFAULT.searcher)
        if "pool" not in values and pools and searcher in pools:
            values["pool"] = pools[searcher]
        return cls(**values)

    @classmethod
    def from_json(cls, data, pools: Optional[Mapping[str, int]] = None) -> "RunSpec":
        """The spec a journal header or a study attribute holds. Keys that are not settings (the header's
        format, the oracle's description) are ignored; settings it lacks, from a version before they
        existed, take their defaults."""
        if not isinstance(data, Mapping):
            raise SpecError(f"run settings must be a JSON object, got {type(data).__name__}")
        return cls.complete({k: data[k] for k in FIELDS if k in data}, pools)

    def to_json(self) -> dict:
        """The spec as JSON data: ``from_json(spec.to_json()) == spec``."""
        return json_safe({k: getattr(self, k) for k in FIELDS})

    def continued(self, given: Mapping, pools: Optional[Mapping[str, int]] = None) -> "RunSpec":
        """This (stored) run continued by an invocation ``given`` these settings (None or {}: not given).

        An identity setting given must equal this run's: ``SpecMismatch`` names the first that does not.
        Of the rest, only the budget (it may be raised) and the hardware (a resume or a joining worker
        may train elsewhere) replace this run's.
        """
        named = [k for k, v in given.items() if v is not None and v != {}]
        # normalised as a new run's would be: resolved paths, checked seeds (an epoch budget is checked against
        # the stored schedule, not alone), on this run's constraints and objectives where none are given, so a
        # --latency-batch given alone is checked against what this run times
        stored = {"constraints": self.constraints, "objectives": self.objectives}
        wanted = RunSpec.complete({**stored, **{k: v for k, v in given.items() if k != "budget_epochs" and v is not None}},
                                  pools)
        wrong = mismatch(self, {k: wanted[k] for k in named})
        if wrong is not None:
            raise SpecMismatch(wrong)
        budget, budget_epochs = given.get("budget"), given.get("budget_epochs")
        return dataclasses.replace(self, budget=self.budget if budget is None else budget,
                                   budget_epochs=self.budget_epochs if budget_epochs is None else budget_epochs,
                                   hardware=given.get("hardware") or self.hardware)

    @property
    def trains(self) -> bool:
        """Whether the run's oracle trains each cell (no table named, training options given)."""
        return self.benchmark is None and self.training is not None

    @property
    def resolved_predictor_seed(self) -> int:
        """The seed of the run's predictor (pre-training and fine-tuning)."""
        return self.seed % PREDICTOR_SEEDS if self.predictor_seed is None else self.predictor_seed

    # read as a mapping: the settings dict of earlier versions, and the JSON's shape
    def __getitem__(self, key: str):
        if key not in FIELDS:
            raise KeyError(key)
        return getattr(self, key)

    def __iter__(self) -> Iterator[str]:
        return iter(FIELDS)

    def __len__(self) -> int:
        return len(FIELDS)


FIELDS = tuple(f.name for f in dataclasses.fields(RunSpec))
DEFAULT = RunSpec()


def mismatch(stored: Mapping, wanted: Mapping) -> Optional[str]:
    """The first IDENTITY setting on which ``wanted`` and ``stored`` differ as JSON, as "KEY=STORED, not
    WANTED", or None when they agree. A setting either side lacks is not compared: a caller names only
    what it was given, and a journal of the library loop holds no benchmark."""
    for key in IDENTITY:
        if key in wanted and key in stored:
            before, now = json_safe(stored[key]), json_safe(wanted[key])
            if before != now:
                return f"{key}={before!r}, not {now!r}"
    return None
