"""Predictor-guided multi-objective search: query the cells of highest predicted hypervolume improvement.

A cell's accuracy is predicted by the ensemble (the run's ``--predictor``: FGP-pre-trained or scratch GIN;
by default BANANAS's random-feature ridges), mapped onto the accuracy scale of the told cells (the GIN is
fine-tuned on a ranking loss, so its scores have no unit; see ``calibrated``). A cost metric a table or a
closed form gives is exact for every cell; a live one (``latency``) is predicted by ``nasflow.op_cost.OpCostModel``
fitted on the cells measured so far. Each ask returns the candidates whose predicted point adds most to the
hypervolume of the told cells' front (greedily, one after another, for a batch); where none adds any, the
ones closest to the front.

- ``reference``: ``median`` (default) is the median of the predicted points of 500 uniform cells (drawn once),
  close to the space's median cell, the point nasflow measures a front against (``nasflow.objectives.reference_point``), so queries
  go to the better half of the space in every objective; ``front`` is the front's nadir pushed out by a tenth
  of its range (BoTorch's ``infer_reference_point`` heuristic), which seeks the whole front, its degenerate
  extremes too.
- ``pool``: ``mutation`` (default) is ``candidates`` mutants of the told cells of the best non-dominated
  ranks (the front first, 10 parents in all) and as many uniform samples; ``space`` is every untold cell of an
  enumerable space (one batched prediction per fit). On NB-201 (Pixel 3, FGP, seeds 1-3, session 11) the
  mutation pool ended ahead of the whole space (85% against 79% of the true front's hypervolume after 100
  queries, in a version that standardised scores per batch): the predictor ranks the neighbours of good
  cells better than it ranks the whole space. Without the ``explore`` share (0.2 in a run) it ended at 63%.

A share ``explore`` of the asks, evenly spaced, returns plain mutants of the front's cells.
Without objectives it maximises valid (the improvement over the best told accuracy).
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from nasflow.core import Arch, exploring
from nasflow.objectives import ACCURACY
from nasflow.op_cost import OpCostModel
from nasflow.pareto import hypervolume_improvement, minimised, nondominated_ranks
from nasflow.step import RefitSchedule

from . import SearcherError
from .bananas import RandomFeatureRidge
from .base import BaseSearcher

# An enumerable space of at most this many cells has them all as candidates: one batched prediction per fit.
WHOLE_SPACE = 50_000
REFERENCE_MARGIN = 0.1  # the acquisition's reference: the front's nadir plus this share of its range
REFERENCES = ("median", "front")
POOLS = ("space", "mutation")
PARENTS = 10
REFERENCE_SAMPLE = 500  # uniform cells whose median predicted point is the ``median`` reference


def calibrated(told_scores, told_values, scores) -> np.ndarray:
    """``scores`` on the scale of ``told_values``: the told cells' score quantiles mapped to their value
    quantiles (monotone, so the ranking is kept), extended above the told range by the slope of a line fitted
    on the upper half of the told cells (else no candidate could be predicted better than the best told)."""
    s, v = np.sort(np.asarray(told_scores, dtype=np.float64)), np.sort(np.asarray(told_values, dtype=np.float64))
    scores = np.asarray(scores, dtype=np.float64)
    out = np.interp(scores, s, v)
    upper = slice(len(s) // 2, None)
    spread = np.ptp(s[upper]) if len(s) > 2 else 0.0
    slope = max(np.polyfit(s[upper], v[upper], 1)[0], 0.0) if spread > 0 else 0.0
    above = scores > s[-1]
    out[above] = v[-1] + slope * (scores[above] - s[-1])
    return out


class HypervolumeSearch(BaseSearcher):
    name = "hvi"
    takes_objectives = True
    takes_ensemble = True
    takes_warm_start = True
    ensemble_size = 1  # the run's predictor fine-tuned once per fit: the whole space is its pool

    def __init__(self, space, seed: int = 0, objectives=None, ensemble: Optional[Sequence] = None, members: int = 3,
                 initial: int = 10, candidates: int = 200, refit_every: int = 1, explore: float = 0.0,
                 reference: str = "median", pool: str = "mutation",
                 initial_design: Sequence[Arch] = ()):
        super().__init__(space, seed, initial_design)
        for option, value, low in (("members", members, 1), ("initial", initial, 2), ("candidates", candidates, 1),
                                   ("refit_every", refit_every, 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise SearcherError(f"hvi {option} must be an integer >= {low}, got {value!r}")
        if isinstance(explore, bool) or not isinstance(explore, (int, float)) or not 0.0 <= explore <= 1.0:
            raise SearcherError(f"hvi explore must be a share between 0 and 1, got {explore!r}")
        if reference not in REFERENCES:
            raise SearcherError(f"hvi reference must be 'median' or 'front', got {reference!r}")
        if pool not in POOLS:
            raise SearcherError(f"hvi pool must be 'space' or 'mutation', got {pool!r}")
        self.objectives, self.reference, self.pool = objectives, reference, pool
        self.ensemble = list(ensemble) if ensemble is not None else [
            RandomFeatureRidge(space, seed=self.seed * 1000 + m) for m in range(members)]
        self.initial, self.candidates, self.explore = initial, candidates, float(explore)
        self.schedule = RefitSchedule(warmup=initial, every=refit_every)
        self.fitted_on = 0
        self._accuracy: dict[Arch, float] = {}  # calibrated predictions of the current fit
        self._cells: Optional[list[Arch]] = None
        self._uniform: Optional[list[Arch]] = None

    @property
    def names(self) -> tuple[str, ...]:
        return (ACCURACY,) if self.objectives is None else self.objectives.names

    @property
    def senses(self) -> tuple[str, ...]:
        return ("max",) if self.objectives is None else self.objectives.senses

    def told_points(self) -> tuple[list[Arch], np.ndarray]:
        archs = list(self.history)
        evaluations = [self.history[a] for a in archs]
        if self.objectives is None:
            return archs, -np.array([[e.valid] for e in evaluations], dtype=np.float64)
        return archs, self.objectives.points(archs, evaluations)

    def _refit(self) -> None:
        due = self.schedule.due(self.history, self.fitted_on)
        if due is None:
            return
        archs, values = due
        for member in self.ensemble:
            member.fit(archs, values)
        self.fitted_on = len(archs)
        # each member on the scale of its own predictions for the fitted cells, fixed until the next fit: the
        # same cell gets the same score in whatever batch it is scored
        told = self._predict(archs)
        self._scales = (told.mean(axis=1, keepdims=True), told.std(axis=1, keepdims=True) + 1e-12)
        self._told_scores = self._score(archs, told)
        self._told_values = values
        self._accuracy = {}

    def _predict(self, archs: list[Arch]) -> np.ndarray:
        return np.stack([np.asarray(m.predict(archs), dtype=np.float64) for m in self.ensemble])

    def _score(self, archs: list[Arch], predictions: Optional[np.ndarray] = None) -> np.ndarray:
        """The ensemble's mean score, each member standardised by its fitted cells' predictions."""
        preds = self._predict(archs) if predictions is None else predictions
        loc, scale = self._scales
        return ((preds - loc) / scale).mean(axis=0)

    def predicted_accuracy(self, archs: Sequence[Arch]) -> np.ndarray:
        missing = [a for a in dict.fromkeys(archs) if a not in self._accuracy]
        if missing:
            values = calibrated(self._told_scores, self._told_values, self._score(missing))
            self._accuracy.update(zip(missing, values.tolist()))
        return np.array([self._accuracy[a] for a in archs], dtype=np.float64)

    def predicted_points(self, archs: list[Arch]) -> np.ndarray:
        """Candidates' points to minimise: predicted accuracy, exact or modelled costs."""
        columns = []
        for metric in self.names:
            if metric == ACCURACY:
                columns.append(self.predicted_accuracy(archs))
            elif self.objectives.known_without_measuring(metric):
                columns.append(self.objectives.costs(metric, archs))
            else:  # measured only for queried cells: a cost model of the measured ones ranks the rest
                told = list(self.history)
                model = OpCostModel(self.space).fit(told, self.objectives.costs(metric, told))
                columns.append(model.predict(archs))
        return minimised(np.stack(columns, axis=1), self.senses)

    def _median_cell(self) -> np.ndarray:
        """The median of the predicted points of REFERENCE_SAMPLE uniform cells drawn once from the seed: the
        space's median cell as the run sees it (a pool of mutants of good cells would set a tighter box)."""
        if self._uniform is None:
            rng = np.random.default_rng([self.seed, REFERENCE_SAMPLE])
            self._uniform = list(dict.fromkeys(self.space.sample(rng) for _ in range(REFERENCE_SAMPLE)))
        return np.median(self.predicted_points(self._uniform), axis=0)

    def _pool(self, parents: list[Arch], rng: np.random.Generator) -> list[Arch]:
        if self.pool == "space" and self.space.enumerable and (self.space.size or 0) <= WHOLE_SPACE:
            if self._cells is None:
                self._cells = list(self.space.enumerate())
            return [a for a in self._cells if a not in self.history]
        per_parent = -(-self.candidates // len(parents))
        pool: list[Arch] = []
        for parent in parents:
            pool += self._fresh(per_parent, lambda r, p=parent: self.space.mutate(p, r), rng)
        pool += self._fresh(self.candidates, self.space.sample, rng)
        return list(dict.fromkeys(pool))

    def ask(self, n: int) -> list[Arch]:
        rng = self._rng()
        if len(self.history) < self.initial:
            return self._initial(n, rng)
        archs, points = self.told_points()
        ranks = nondominated_ranks(points)
        on_front = ranks == 0
        front = [a for a, on in zip(archs, on_front) if on]
        if exploring(len(self.history), n, self.explore):
            return self._fresh(n, lambda r: self.space.mutate(front[r.integers(len(front))], r), rng)
        self._refit()
        # the parents of a mutation pool: the front, then the next fronts, PARENTS cells in all (a lone best
        # cell of one objective has too few distinct mutants to fill a pool)
        pool = self._pool([archs[i] for i in np.argsort(ranks, kind="stable")[:PARENTS]], rng)
        predicted = self.predicted_points(pool)
        front_points = points[on_front]
        reference = self._median_cell() if self.reference == "median" else None
        chosen: list[int] = []
        for _ in range(min(n, len(pool))):
            scores = acquisition(front_points, predicted, reference)
            scores[chosen] = -np.inf
            best = int(np.argmax(scores))  # ties: the first candidate, so the choice is a function of the history
            chosen.append(best)
            front_points = np.vstack([front_points, predicted[best]])  # the next pick adds to the predicted front
        return [pool[i] for i in chosen]


def acquisition(front: np.ndarray, candidates: np.ndarray, reference: Optional[np.ndarray] = None) -> np.ndarray:
    """Predicted hypervolume improvement over ``front`` (points, minimised) against ``reference`` (None: the
    front's nadir pushed out by a tenth of its range); where no candidate improves, minus the distance to the
    front (normalised by the objectives' ranges: how much a candidate must improve in its best objective to
    escape domination)."""
    low, high = front.min(axis=0), front.max(axis=0)
    span = np.where(high > low, high - low, 1.0)
    if reference is None:
        reference = high + REFERENCE_MARGIN * span
    gain = hypervolume_improvement(front, candidates, reference)
    if np.any(gain > 0):
        return gain
    gap = np.maximum((candidates[:, None, :] - front[None, :, :]) / span, 0.0).min(axis=2)
    return -gap.max(axis=1)
