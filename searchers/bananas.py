"""A BANANAS-style searcher (White et al., 2021): an ensemble of predictors, candidates
made by mutating the best cells found so far, chosen by an acquisition over the ensemble.

The ensemble is any list of objects with ``fit(archs, values)`` / ``predict(archs)``
(e.g. several ``nasflow.predictors.Predictor`` with different seeds); by default a few
random-feature ridge regressions on a one-hot encoding of the cell graph, each on its own
seed and bootstrap of the history.
Acquisition ``ucb`` is mean + kappa * std over the members, ``mean`` the mean alone, ``its``
independent Thompson sampling (NASLib's default).
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from nasflow.core import Arch, exploring, graph_arrays
from nasflow.step import RefitSchedule

from . import SearcherError
from .base import BaseSearcher


class RandomFeatureRidge:
    """One ensemble member: ridge regression on random ReLU features of the one-hot cell graph.

    Fitting is one linear solve, so the whole ensemble refits in milliseconds after every
    query; members differ by their random features and a bootstrap of the history.
    """

    def __init__(self, space, seed: int = 0, width: int = 256, alpha: float = 1.0):
        self.space, self.seed, self.width, self.alpha = space, seed, width, alpha
        self._cache: dict[Arch, np.ndarray] = {}

    def features(self, archs: Sequence[Arch]) -> np.ndarray:
        missing = [a for a in dict.fromkeys(archs) if a not in self._cache]
        if missing:
            graphs = [self.space.to_graph(a) for a in missing]
            vocab = self.space.vocab
            op_ids, adj, _ = graph_arrays(graphs, vocab, max_nodes=max(7, max(g.num_nodes for g in graphs)))
            onehot = np.zeros(op_ids.shape + (len(vocab),), dtype=np.float64)
            rows, cols = np.nonzero(op_ids >= 0)
            onehot[rows, cols, op_ids[rows, cols]] = 1.0
            x = np.concatenate([onehot.reshape(len(missing), -1), adj.reshape(len(missing), -1)], axis=1)
            self._cache.update(zip(missing, x))
        return np.stack([self._cache[a] for a in archs])

    def _hidden(self, x: np.ndarray) -> np.ndarray:
        if not hasattr(self, "_w") or self._w.shape[0] != x.shape[1]:
            rng = np.random.default_rng([self.seed, 1])
            self._w = rng.standard_normal((x.shape[1], self.width)) / np.sqrt(x.shape[1] / 4)
            self._b = rng.standard_normal(self.width) * 0.5
        return np.concatenate([x, np.maximum(x @ self._w + self._b, 0.0)], axis=1)

    def fit(self, archs, values):
        values = np.asarray(values, dtype=np.float64)
        rng = np.random.default_rng([self.seed, 2, len(values)])
        rows = rng.integers(len(values), size=len(values))  # bootstrap: members see different data
        h = self._hidden(self.features([archs[i] for i in rows]))
        y = values[rows]
        self._mean = y.mean()
        # the dual form solves an n x n system: far cheaper while the history is smaller than the features
        dual = np.linalg.solve(h @ h.T + self.alpha * np.eye(len(y)), y - self._mean)
        self._coef = h.T @ dual
        return self

    def predict(self, archs) -> np.ndarray:
        return self._hidden(self.features(archs)) @ self._coef + self._mean


ACQUISITIONS = ("ucb", "mean", "its")
POOLS = ("mutation", "mutation+random", "space")


class Bananas(BaseSearcher):
    """BANANAS: fit the ensemble on the told cells, propose the candidates with the best acquisition.

    ``pool`` is the acquisition optimiser: ``mutation`` scores ``candidates`` mutants of the
    ``parents`` best cells (the paper's), ``mutation+random`` half of them and half uniform
    samples, ``space`` every untold cell of an enumerable space. The ensemble is fitted after
    ``initial`` random cells and then every ``refit_every`` tells, always on the first cells of
    the history up to that point, so its state is a function of the seed and the history.
    Its predictions are cached until the next fit: between fits asks only look them up.
    Acquisition ``its`` is independent Thompson sampling: each candidate's score is drawn from
    a normal with the ensemble's mean and standard deviation for it.
    ``standardise`` puts each member on the scale of its own predictions on the fitted cells
    before they are combined, for members trained on a ranking loss whose scale is arbitrary.
    The ``initial`` cells are uniform samples, or the first cells of ``initial_design`` (a zero-cost
    warm start, ``nasflow.experiments.warm_start``).
    A share ``explore`` of the asks, evenly spaced, returns plain mutants of the best cells.
    """

    name = "bananas"
    takes_warm_start = True
    takes_ensemble = True

    def __init__(
        self,
        space,
        seed: int = 0,
        ensemble: Optional[Sequence] = None,
        members: int = 5,
        initial: int = 10,
        candidates: int = 100,
        parents: int = 10,
        acquisition: str = "ucb",
        kappa: float = 0.5,
        refit_every: int = 1,
        pool: str = "mutation",
        standardise: bool = False,
        explore: float = 0.0,
        initial_design: Sequence[Arch] = (),
    ):
        super().__init__(space, seed, initial_design)
        if acquisition not in ACQUISITIONS:
            raise SearcherError(f"bananas acquisition must be 'ucb', 'mean' or 'its', got {acquisition!r}")
        if pool not in POOLS:
            raise SearcherError(f"bananas pool must be one of {', '.join(POOLS)}, got {pool!r}")
        if pool == "space" and not space.enumerable:
            raise SearcherError(f"bananas pool 'space' needs an enumerable space; {space.name} is not: use pool='mutation'")
        for option, value, low in (("members", members, 1), ("initial", initial, 2), ("candidates", candidates, 1),
                                   ("parents", parents, 1), ("refit_every", refit_every, 1)):
            if not isinstance(value, int) or value < low:
                raise SearcherError(f"bananas {option} must be an integer >= {low}, got {value!r}")
        if isinstance(kappa, bool) or not isinstance(kappa, (int, float)) or not kappa >= 0:
            raise SearcherError(f"bananas kappa must be a number >= 0, got {kappa!r}")
        if isinstance(explore, bool) or not isinstance(explore, (int, float)) or not 0.0 <= explore <= 1.0:
            raise SearcherError(f"bananas explore must be a share between 0 and 1, got {explore!r}")
        self.ensemble = list(ensemble) if ensemble is not None else [
            RandomFeatureRidge(space, seed=self.seed * 1000 + m) for m in range(members)
        ]
        if not self.ensemble:
            raise SearcherError("bananas needs at least one ensemble member")
        self.initial, self.candidates, self.parents = initial, candidates, parents
        self.acquisition, self.kappa, self.refit_every = acquisition, float(kappa), refit_every
        # the loop's schedule: with a run's predictors as its ensemble, BANANAS refits them as the loop would
        self.schedule = RefitSchedule(warmup=initial, every=refit_every)
        self.pool, self.standardise, self.explore = pool, bool(standardise), float(explore)
        self.fitted_on = 0  # how many of the first told cells the ensemble was fitted on
        self.predictions = 0  # cells sent to the ensemble for prediction (each cached until the next fit)
        self._moments: dict[Arch, tuple[float, float]] = {}
        self._scales: list[tuple[float, float]] = []
        self._cells: Optional[list[Arch]] = None

    def _refit(self) -> None:
        due = self.schedule.due(self.history, self.fitted_on)
        if due is None:
            return
        archs, values = due
        for member in self.ensemble:
            member.fit(archs, values)
        self.fitted_on = len(archs)
        self._moments = {}
        if self.standardise:
            preds = self._predict(archs)
            self._scales = [(float(p.mean()), float(p.std()) or 1.0) for p in preds]

    def _predict(self, archs: list[Arch]) -> np.ndarray:
        self.predictions += len(archs)
        return np.stack([np.asarray(m.predict(archs), dtype=np.float64) for m in self.ensemble])

    def moments(self, archs: Sequence[Arch]) -> tuple[np.ndarray, np.ndarray]:
        """The ensemble's mean and standard deviation for each cell, from the cache where it can."""
        missing = [a for a in dict.fromkeys(archs) if a not in self._moments]
        if missing:
            preds = self._predict(missing)
            if self.standardise:
                loc = np.array([s[0] for s in self._scales])[:, None]
                scale = np.array([s[1] for s in self._scales])[:, None]
                preds = (preds - loc) / scale
            self._moments.update(zip(missing, zip(preds.mean(axis=0).tolist(), preds.std(axis=0).tolist())))
        table = np.array([self._moments[a] for a in archs], dtype=np.float64).reshape(len(archs), 2)
        return table[:, 0], table[:, 1]

    def scores(self, archs: Sequence[Arch], rng: Optional[np.random.Generator] = None) -> np.ndarray:
        """The acquisition of each cell under the current ensemble (``its`` draws with ``rng``)."""
        mean, std = self.moments(archs)
        if self.acquisition == "ucb":
            return mean + self.kappa * std
        if self.acquisition == "its":
            rng = rng if rng is not None else np.random.default_rng([self.seed, self.fitted_on])
            return mean + std * rng.standard_normal(len(mean))
        return mean

    def _candidates(self, n: int, rng: np.random.Generator) -> list[Arch]:
        if self.pool == "space":
            if self._cells is None:
                self._cells = list(self.space.enumerate())
            return [a for a in self._cells if a not in self.history]
        size = max(self.candidates, n)
        mutants = size if self.pool == "mutation" else max(n, size // 2)
        parents = self.best(self.parents)
        per_parent = -(-mutants // len(parents))
        pool: list[Arch] = []
        for parent in parents:
            pool += self._fresh(per_parent, lambda r, p=parent: self.space.mutate(p, r), rng)
        if self.pool == "mutation+random":
            pool += self._fresh(size - mutants, self.space.sample, rng)
        return list(dict.fromkeys(pool))

    def ask(self, n: int) -> list[Arch]:
        rng = self._rng()
        if len(self.history) < self.initial:
            return self._initial(n, rng)
        if exploring(len(self.history), n, self.explore):
            parents = self.best(self.parents)
            return self._fresh(n, lambda r: self.space.mutate(parents[r.integers(len(parents))], r), rng)
        self._refit()
        pool = self._candidates(n, rng)
        order = np.argsort(-self.scores(pool, rng), kind="stable")
        return [pool[i] for i in order[:n]]
