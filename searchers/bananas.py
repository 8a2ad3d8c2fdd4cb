"""A BANANAS-style searcher (White et al., 2021): an ensemble of predictors, candidates
made by mutating the best cells found so far, chosen by an acquisition over the ensemble.

The ensemble is any list of objects with ``fit(archs, values)`` / ``predict(archs)``
(e.g. several ``nasflow.predictors.Predictor`` with different seeds); by default a few
random-feature ridge regressions on a one-hot encoding of the cell graph, each on its own
seed and bootstrap of the history.
Acquisition ``ucb`` is mean + kappa * std over the members, ``mean`` the mean alone.
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from nasflow.core import Arch, graph_arrays

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


class Bananas(BaseSearcher):
    name = "bananas"

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
    ):
        super().__init__(space, seed)
        if acquisition not in ("ucb", "mean"):
            raise SearcherError(f"bananas acquisition must be 'ucb' or 'mean', got {acquisition!r}")
        for option, value, low in (("members", members, 1), ("initial", initial, 2), ("candidates", candidates, 1),
                                   ("parents", parents, 1), ("refit_every", refit_every, 1)):
            if not isinstance(value, int) or value < low:
                raise SearcherError(f"bananas {option} must be an integer >= {low}, got {value!r}")
        self.ensemble = list(ensemble) if ensemble is not None else [
            RandomFeatureRidge(space, seed=self.seed * 1000 + m) for m in range(members)
        ]
        if not self.ensemble:
            raise SearcherError("bananas needs at least one ensemble member")
        self.initial, self.candidates, self.parents = initial, candidates, parents
        self.acquisition, self.kappa, self.refit_every = acquisition, kappa, refit_every
        self._fitted_at: Optional[int] = None

    def _refit(self) -> None:
        due = self._fitted_at is None or len(self.history) - self._fitted_at >= self.refit_every
        if due:
            archs = list(self.history)
            values = np.array([self.history[a].valid for a in archs], dtype=np.float64)
            for member in self.ensemble:
                member.fit(archs, values)
            self._fitted_at = len(self.history)

    def scores(self, archs: Sequence[Arch]) -> np.ndarray:
        """The acquisition of each cell under the current ensemble."""
        preds = np.stack([np.asarray(m.predict(list(archs)), dtype=np.float64) for m in self.ensemble])
        mean = preds.mean(axis=0)
        return mean + self.kappa * preds.std(axis=0) if self.acquisition == "ucb" else mean

    def ask(self, n: int) -> list[Arch]:
        rng = self._rng()
        if len(self.history) < self.initial:
            return self._fresh(n, self.space.sample, rng)
        self._refit()
        parents = self.best(self.parents)
        per_parent = max(1, -(-max(self.candidates, n) // len(parents)))
        pool: list[Arch] = []
        for parent in parents:
            pool += self._fresh(per_parent, lambda r, p=parent: self.space.mutate(p, r), rng)
        pool = list(dict.fromkeys(pool))
        order = np.argsort(-self.scores(pool), kind="stable")
        return [pool[i] for i in order[:n]]
