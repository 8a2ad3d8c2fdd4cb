"""Multi-fidelity schedules: which cell to train next, for how many epochs, and which to promote.

A schedule wraps any searcher: the searcher proposes new cells, the schedule decides at which fidelity
(epochs) each is trained and which are promoted to the next rung. Three rules, as in the literature:

- ``sh``: successive halving (Jamieson & Talwalkar 2016), synchronous brackets: ``n`` new cells at the
  lowest rung, then the best ``1/eta`` of them at the next rung, ... to the top; then the next bracket.
- ``hyperband`` (Li et al. 2018): successive-halving brackets that start at each rung in turn, from the
  most exploratory (``n`` cells at the lowest rung) to the least (a few cells at full fidelity only).
- ``asha`` (Li et al. 2020): asynchronous. Whenever a job is free, promote a cell that is in the top
  ``1/eta`` of its rung and not promoted yet (highest rung first), else start a new cell at the lowest rung.
  It never waits for a rung to fill, so workers never idle; in one process its jobs run one after another,
  but the rule is ASHA's, so a shared study's workers can take their jobs from it (``pending``).

``local=W`` (ASHA only) adds a local search at full fidelity: before a new cell is started, a cell of the
rung below the top that is a neighbour (one edit, ``space.neighbours``) of the best full-fidelity cell so far
is promoted if it is in the top ``W/eta`` of its rung, a window ``W`` times the rule's. Why: on NB-201 the
table's best cell and its neighbour that is best at 12 epochs swap order between 12 and 200 epochs (84.38
against 84.75 at 12, 91.61 against 91.55 at 200), so the best cell, once screened, waited thousands of
epochs for its turn (docs/RESULTS.md, issue 20).

``scout=1`` (ASHA only) screens the incumbent's neighbourhood: when no promotion is due, the next neighbour of
the best full-fidelity cell that has not been trained is started at the lowest rung instead of a cell the
searcher proposes, until none is left. The searcher is not told these screens (``Job.scout``): its population
and model stay its own. Why both: evolution proposed NB-201's best cell, the incumbent's neighbour, thousands of
epochs late in 1 run of 15; screening the neighbours fixed that, but told to evolution they filled its
population and held a run in the incumbent's basin for its whole budget (docs/RESULTS.md).

``around=K`` (with ``local`` or ``scout``) centres both on the ``K`` best full-fidelity cells rather than the best
alone: their neighbourhoods in turn, the best's first. Why: on NB-201 a cell of valid 91.55 and test 93.89, two
edits from the table's best (91.61 valid, 94.37 test), takes over as the best full-fidelity cell from its
neighbour of valid 91.42; centred on it alone, local search and scouting left the best cell, one edit from the
cell it replaced, unscreened for thousands of epochs (3 of the 4 runs in 600 held that way, docs/RESULTS.md).

Rungs: on a table, its fidelities between ``min`` and ``max`` (both must be among them): NB-201 has 12 and
200 epochs, NB-101 4/12/36/108. For an oracle that trains any epoch count: ``min * eta**k`` below ``max``, then
``max``. ``eta`` is always the promotion ratio.

A scheduler's state is a function of the results it was reported, in order (as a searcher's is of its told
history, ``searchers.base``): a resumed run replays its journal through it and takes the same decisions.
Pure core: nothing here imports a space, searcher or oracle.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Collection, NamedTuple, Optional

from .core import Arch
from .errors import NasflowError

KINDS = ("sh", "hyperband", "asha")
KEYS = ("min", "max", "eta", "n", "local", "scout", "around")
# a schedule's fidelity model (``nasflow.fidelity_model``): none, as before it existed, or one fitted on every rung
MODELS = ("none", "ridge")


class ScheduleError(NasflowError, ValueError):
    """A schedule that cannot run: bad text, eta < 2, min > max, a fidelity the oracle lacks."""


@dataclass(frozen=True)
class Schedule:
    """``KIND:min=MIN,max=MAX,eta=ETA[,n=N][,local=W][,scout=1][,around=K][,model=MODEL]``: the rule, the lowest and
    highest fidelity (epochs), the promotion ratio, the cells a bracket starts at its lowest rung (sh, hyperband;
    default ``eta ** (rungs - 1)``), the window of the local search at full fidelity (asha; 0, the default: none),
    whether the incumbent's neighbours are screened (asha; 0, the default: no), how many of the best full-fidelity
    cells both centre on (1, the default: the best alone), and the model of every rung's labels that
    ranks the searcher's proposals and the promotions (``ridge``: ``nasflow.fidelity_model``; ``none``, the
    default: the searcher's own order and each rung's valid)."""

    kind: str
    min: int
    max: int
    eta: int = 3
    n: Optional[int] = None
    model: str = "none"
    local: int = 0
    scout: int = 0
    around: int = 1

    @classmethod
    def parse(cls, text: str) -> "Schedule":
        kind, _, rest = str(text).strip().partition(":")
        if kind not in KINDS:
            raise ScheduleError(f"unknown schedule {kind!r} in {text!r}; use {', '.join(KINDS)}, "
                                f"e.g. sh:min=12,max=200,eta=3")
        values: dict = {}
        for part in filter(None, (p.strip() for p in rest.split(","))):
            key, eq, value = part.partition("=")
            if key == "model" and eq:
                values[key] = value.strip()
                continue
            if key not in KEYS or not eq:
                raise ScheduleError(f"bad schedule option {part!r} in {text!r}; options are {', '.join(KEYS)} as KEY=INTEGER "
                                    f"and model={'|'.join(MODELS)}")
            try:
                values[key] = int(value)
            except ValueError:
                raise ScheduleError(f"schedule option {key} must be an integer, got {value!r} in {text!r}") from None
        missing = [k for k in ("min", "max") if k not in values]
        if missing:
            raise ScheduleError(f"schedule {text!r} needs {' and '.join(missing)}, e.g. {kind}:min=12,max=200,eta=3")
        return cls(kind, **values)

    def __post_init__(self):
        if self.min < 1:
            raise ScheduleError(f"schedule min must be at least 1 epoch, got {self.min}")
        if self.min > self.max:
            raise ScheduleError(f"schedule min ({self.min}) is above its max ({self.max})")
        if self.eta < 2:
            raise ScheduleError(f"schedule eta must be at least 2 (the share promoted is 1/eta), got {self.eta}")
        if self.n is not None and self.n < 1:
            raise ScheduleError(f"schedule n must be at least 1 cell, got {self.n}")
        if self.model not in MODELS:
            raise ScheduleError(f"unknown schedule model {self.model!r}; use {', '.join(MODELS)}")
        if self.local < 0:
            raise ScheduleError(f"schedule local must be 0 (none) or a window of at least 1, got {self.local}")
        if self.local and self.kind != "asha":
            raise ScheduleError(f"schedule local={self.local} is a rule of asha, not of {self.kind}")
        if self.scout not in (0, 1):
            raise ScheduleError(f"schedule scout must be 0 (off) or 1 (screen the incumbent's neighbours), got {self.scout}")
        if self.scout and self.kind != "asha":
            raise ScheduleError(f"schedule scout=1 is a rule of asha, not of {self.kind}")
        if self.around < 1:
            raise ScheduleError(f"schedule around must be at least 1 (the best full-fidelity cell), got {self.around}")
        if self.around > 1 and not (self.local or self.scout):
            raise ScheduleError(f"schedule around={self.around} centres local=W and scout=1; give one of them")

    def __str__(self) -> str:
        n = "" if self.n is None else f",n={self.n}"
        local = f",local={self.local}" if self.local else ""
        local += ",scout=1" if self.scout else ""
        local += f",around={self.around}" if self.around > 1 else ""
        model = "" if self.model == "none" else f",model={self.model}"  # so texts of before models stay as they were
        return f"{self.kind}:min={self.min},max={self.max},eta={self.eta}{n}{local}{model}"

    def rungs(self, fidelities: Optional[tuple[int, ...]]) -> tuple[int, ...]:
        """The fidelities cells are trained to, ascending. ``fidelities``: the oracle's (``Oracle.fidelities``),
        None for one that trains any epoch count."""
        if fidelities is None:
            out, epochs = [], self.min
            while epochs < self.max:
                out.append(epochs)
                epochs *= self.eta
            return tuple(out) + (self.max,)
        for end in (self.min, self.max):
            if end not in fidelities:
                have = ", ".join(map(str, fidelities)) if fidelities else "no named fidelities"
                raise ScheduleError(f"the benchmark has no accuracies at {end} epochs (it has {have}); "
                                    f"set the schedule's min and max to two of them")
        return tuple(f for f in fidelities if self.min <= f <= self.max)

    def scheduler(self, fidelities: Optional[tuple[int, ...]]) -> "Scheduler":
        rungs = self.rungs(fidelities)
        n = self.eta ** (len(rungs) - 1) if self.n is None else self.n
        scheduler = {"sh": SuccessiveHalving, "hyperband": Hyperband, "asha": ASHA}[self.kind](rungs, self.eta, n)
        scheduler.local = self.local
        scheduler.scout = bool(self.scout)
        scheduler.around = self.around
        return scheduler


class Job(NamedTuple):
    """Train ``arch`` (None: a new cell the searcher proposes) to rung ``rung``. ``scout``: a new cell the schedule
    chose itself (``scout=1``), whose result the searcher is not told."""

    arch: Optional[Arch]
    rung: int
    scout: bool = False


def top(results: dict[Arch, float], k: int) -> list[Arch]:
    """The ``k`` cells of highest value, ties to the first reported (dicts keep report order)."""
    return sorted(results, key=lambda a: -results[a])[:k]


class Scheduler:
    """Shared state: each rung's results (cell -> validation accuracy, in report order).

    ``scorer``: None promotes by validation accuracy at the rung; else a function ``(rung, results) -> scores``
    of a rung's results, by which its cells are promoted instead (``nasflow.fidelity_model``: the predicted
    full-fidelity valid). How many cells a rung promotes stays the rule's.
    """

    def __init__(self, rungs: tuple[int, ...], eta: int, n: int):
        self.rungs, self.eta, self.n = tuple(rungs), int(eta), int(n)
        self.results: list[dict[Arch, float]] = [{} for _ in self.rungs]
        self.reported: list[tuple[Arch, int, float]] = []  # every (cell, rung, valid) in report order
        self.scorer: Optional[Callable[[int, dict[Arch, float]], dict[Arch, float]]] = None
        self.local = 0  # ASHA's local search window at full fidelity (Schedule.local); 0: none
        self.scout = False  # ASHA screens the incumbent's neighbours (Schedule.scout)
        self.around = 1  # how many of the best full-fidelity cells local and scout centre on (Schedule.around)
        # a cell's neighbours (one edit), for the local search: the loop sets it to the space's
        self.neighbours: Optional[Callable[[Arch], Collection[Arch]]] = None

    def ranked(self, rung: int, results: dict[Arch, float]) -> dict[Arch, float]:
        """What ``results`` (cells of ``rung``) are promoted by: their valid, or the scorer's scores."""
        return results if self.scorer is None else self.scorer(rung, results)

    def report(self, arch: Arch, rung: int, valid: float) -> None:
        self.results[rung][arch] = float(valid)
        self.reported.append((arch, rung, float(valid)))

    def next_job(self, pending: Collection[Job] = ()) -> Optional[Job]:  # pragma: no cover - abstract
        """The next job; None: wait for a pending one (never in one process, whose jobs are all reported)."""
        raise NotImplementedError

    def rung_of(self, arch: Arch) -> int:
        """The highest rung ``arch`` was reported at (-1: none)."""
        return max((k for k, r in enumerate(self.results) if arch in r), default=-1)


class SuccessiveHalving(Scheduler):
    """Brackets of ``n`` new cells at rung ``first`` (0), the best ``1/eta`` of each rung promoted to the next."""

    first = 0

    def __init__(self, rungs, eta, n):
        super().__init__(rungs, eta, n)
        self.bracket: list[list[Arch]] = []  # the current bracket's cells per rung, from its first rung
        self.size = n  # cells at the current bracket's first rung

    def _sizes(self, first: int, n: int) -> list[int]:
        return [max(1, n // self.eta ** i) for i in range(len(self.rungs) - first)]

    def _start(self) -> None:
        """Begin the next bracket (successive halving: always the same one)."""
        self.bracket = [[]]

    def next_job(self, pending=()):
        if not self.bracket:
            self._start()
        busy = {j.arch for j in pending}
        while True:
            sizes = self._sizes(self.first, self.size)
            level = len(self.bracket) - 1
            rung = self.first + level
            cells = self.bracket[level]
            if len(cells) < sizes[level]:
                if level == 0:
                    return Job(None, rung)
                below = {a: self.results[rung - 1][a] for a in self.bracket[level - 1]}
                arch = next(a for a in top(self.ranked(rung - 1, below), sizes[level]) if a not in cells)
                cells.append(arch)
                return Job(arch, rung)
            if any(a in busy or a not in self.results[rung] for a in cells):
                return None  # a synchronous rung waits until all its cells are reported
            if level + 1 < len(sizes):
                self.bracket.append([])
            else:
                self._start()

    def started(self, arch: Arch) -> None:
        """A new cell the searcher proposed for the pending Job(None, ...) joins the bracket."""
        self.bracket[0].append(arch)


class Hyperband(SuccessiveHalving):
    """Successive-halving brackets starting at rung s_max - s for s = s_max..0 in turn, with
    ceil(n * (s_max + 1) / (s + 1) / eta**(s_max - s)) cells (n = eta**s_max: Li et al.'s bracket sizes)."""

    def __init__(self, rungs, eta, n):
        super().__init__(rungs, eta, n)
        self.brackets = 0  # brackets started

    def _start(self) -> None:
        s_max = len(self.rungs) - 1
        s = s_max - self.brackets % (s_max + 1)
        self.first = s_max - s
        self.size = max(1, math.ceil(self.n * (s_max + 1) / (s + 1) / self.eta ** (s_max - s)))
        self.brackets += 1
        self.bracket = [[]]


class ASHA(Scheduler):
    """Asynchronous successive halving: promote any cell in the top 1/eta of its rung that is not promoted yet,
    highest rung first; else a new cell at the lowest rung."""

    def next_job(self, pending=()):
        busy = {j.arch for j in pending}
        below_top = None  # the rung below the top, ranked: the local search reads it too
        for k in range(len(self.rungs) - 2, -1, -1):
            done = self.results[k]
            above = self.results[k + 1]
            ranked = self.ranked(k, done)
            if below_top is None:
                below_top = ranked
            for arch in top(ranked, len(done) // self.eta):
                if arch not in above and arch not in busy:
                    return Job(arch, k + 1)
        job = self._local_job(below_top, busy)
        if job is None:  # scouting only when the local search promotes nothing: its scan is not needed before
            job = self._scout_job(busy)
        return job if job is not None else Job(None, 0)

    def _neighbourhood(self) -> list[Arch]:
        """The neighbours of the ``around`` best full-fidelity cells, the best's first, each once (ties to the first
        reported, as top())."""
        if self.neighbours is None:
            raise ValueError("a schedule with local=... or scout=1 needs the space's neighbours (Scheduler.neighbours)")
        return list(dict.fromkeys(a for centre in top(self.results[-1], self.around) for a in self.neighbours(centre)))

    def _local_job(self, below_top, busy) -> Optional[Job]:
        """A neighbour of the best full-fidelity cells (``around``), promoted to full fidelity from the top
        ``local/eta`` of ``below_top``, the rung below ranked (None: no local search, no full-fidelity cell yet, or no
        such neighbour)."""
        full = self.results[-1]
        if not self.local or not full or below_top is None:
            return None
        near = set(self._neighbourhood())
        for arch in top(below_top, self.local * (len(below_top) // self.eta)):
            if arch in near and arch not in full and arch not in busy:
                return Job(arch, len(self.rungs) - 1)
        return None

    def _scout_job(self, busy) -> Optional[Job]:
        """The first neighbour of the best full-fidelity cells (``around``) not trained yet, started at the lowest
        rung (None: no scouting, no full-fidelity cell yet, or every neighbour trained or in flight)."""
        if not self.scout or not self.results[-1]:
            return None
        for arch in self._neighbourhood():
            if self.rung_of(arch) < 0 and arch not in busy:
                return Job(arch, 0, scout=True)
        return None

    def started(self, arch: Arch) -> None:
        """ASHA keeps no bracket: a new cell is known once reported."""
