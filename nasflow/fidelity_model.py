"""A model of every rung's labels at once, so that the cheap evaluations of a multi-fidelity run teach it.

Under a schedule most labels are low-fidelity (on NB-201 about 27 cells at 12 epochs for each at 200). The
searcher is told each cell once, from its first result; this model instead learns from every evaluation,
with the fidelity as an input: a cell's validation accuracy at rung ``k`` is

    v(x, k) = b_k + w . phi(x) + u_k . phi(x)

where ``phi`` is the one-hot cell graph (each node's operation, the adjacency and the operation counts of
``space.to_graph``), ``w`` is shared by the rungs and ``u_k`` is rung ``k``'s own deviation from it (rung 0 has
none), held near zero by a stronger ridge penalty (``shift_ridge``) so that a rung with few labels borrows the
shared ``w`` learnt from the many cheap ones. The intercepts ``b_k`` are not penalised: they carry the average gain of training
longer. One linear solve, milliseconds on a run's few hundred labels, so it is refitted at every decision.

Why linear: on NB-201 CIFAR-10 the 12-epoch valid of a cell is a noisy view of its 200-epoch one, and a
model additive in the edges' operations smooths that noise. Fitted on 300 12-epoch labels drawn from the 1,500
best cells by 12-epoch valid (3 draws), it correlates with the 200-epoch valid of the 100 best by 12-epoch valid
better than their 12-epoch valid does (Spearman 0.56-0.61 against 0.50); it puts the table's best 200-epoch cell
2nd to 4th in the whole space, and the promotion score 8th to 9th among those 100 cells, where its 12-epoch valid
puts it 17th (session 12, helper mf2; a ridge with edge pairs overfits such labels: 0.40-0.49).

Two uses (``nasflow.scheduled_loop``): ``full_view`` ranks a searcher's proposals by their predicted
full-fidelity valid, and ``promotion_scores`` orders a rung's cells for promotion by
``model(x, top) + keep * (observed - model(x, k))``: the predicted full-fidelity valid with a share
``keep`` of the cell's own residual at its rung kept (1: its label plus the predicted gain, 0: the model
alone).

Pure core: numpy (and threadpoolctl, to solve on one thread); the space comes in as an object. Its state is a function of the labels it was
fitted on, in order, so a resumed run refits the same model.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from .core import Arch, graph_arrays
from .errors import NasflowError


class FidelityModelError(NasflowError, ValueError):
    """A fidelity model that cannot be built: an unknown kind, a bad penalty or share."""


_blas = None


def one_blas_thread():
    """A context in which BLAS/LAPACK run on one thread: the model solves a system of a few hundred unknowns at
    every decision, 0.5 ms on one thread and 19-60 ms when OpenBLAS spreads it over 2 busy cores."""
    global _blas
    if _blas is None:
        from threadpoolctl import ThreadpoolController  # scikit-learn's dependency

        _blas = ThreadpoolController()
    return _blas.limit(limits=1, user_api="blas")


class CrossFidelityRidge:
    """``fit(labels)`` on ``(arch, rung, valid)`` triples, then ``predict(archs, rung)``.

    ``rungs``: how many rungs the schedule has (rung indices 0..rungs-1; the last is full fidelity).
    ``ridge``: the penalty on the shared weights ``w``; ``shift_ridge``: on each rung's deviation ``u_k``
    (rung 0 has none: it is the reference the others deviate from); ``keep``: the share of a cell's own
    residual its promotion score keeps. The defaults are the best of a sweep on NB-201 with evolution + ASHA
    eta=27 + synflow warm start (10 seeds each): keep 0.75 put all 10 runs on the table's best cell within 6,667
    epochs, 0.5 and 0.25 nine, 0 eight and 1 (promotion by the rung's valid plus a common gain) one; ridge 10 or 30
    against 1, and shift_ridge 30 against 3 (five), are ahead by the median epochs to it.
    """

    def __init__(self, space, rungs: int, ridge: float = 10.0, shift_ridge: float = 30.0, keep: float = 0.75):
        for name, value in (("ridge", ridge), ("shift_ridge", shift_ridge)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise FidelityModelError(f"fidelity model {name} must be a number > 0, got {value!r}")
        if isinstance(keep, bool) or not isinstance(keep, (int, float)) or not 0.0 <= keep <= 1.0:
            raise FidelityModelError(f"fidelity model keep must be a share between 0 and 1, got {keep!r}")
        if not isinstance(rungs, int) or rungs < 1:
            raise FidelityModelError(f"a fidelity model needs at least one rung, got {rungs!r}")
        self.space, self.rungs = space, rungs
        self.ridge, self.shift_ridge, self.keep = float(ridge), float(shift_ridge), float(keep)
        self.coef = None  # [w, u_1..u_{R-1}, b_0..b_{R-1}], set by fit
        self.fitted_on = 0  # how many labels the model was last fitted on
        self._graphs: dict = {}
        self._gram = self._xty = None  # the normal equations of the labels fitted so far
        self._counts = np.zeros(rungs, dtype=np.int64)
        self._phi: dict[Arch, np.ndarray] = {}
        self._width = self._fitted_width = 0
        self._labels: Sequence = ()
        self._rung_rows: dict[int, tuple[list, np.ndarray]] = {}
        self._stand_in = list(range(rungs))  # the rung each rung predicts as (itself where it has labels)

    def features(self, archs: Sequence[Arch]) -> np.ndarray:
        """phi: each node's operation one-hot, the adjacency (both padded to the widest cell seen), and each
        operation's count (where a space's cells vary in size, as NB-101's, an operation's effect is not
        tied to a node position). Cached per cell."""
        phi = self._phi
        if not len(archs):
            return np.zeros((0, self._dim()))
        missing = [a for a in dict.fromkeys(archs) if a not in phi]
        if missing:
            graphs = [self.space.to_graph(a) for a in missing]
            width = max(self._width, max(g.num_nodes for g in graphs))
            if width != self._width:
                # a wider cell changes every cell's layout: recompute the cached ones at the new width
                missing, graphs = missing + list(phi), graphs + [self.space.to_graph(a) for a in phi]
                phi.clear()
                self._width = width
            op_ids, adj, _ = graph_arrays(graphs, self.space.vocab, max_nodes=width)
            onehot = np.zeros(op_ids.shape + (len(self.space.vocab),))
            rows, cols = np.nonzero(op_ids >= 0)
            onehot[rows, cols, op_ids[rows, cols]] = 1.0
            x = np.concatenate([onehot.reshape(len(missing), -1), adj.reshape(len(missing), -1), onehot.sum(axis=1)],
                               axis=1)
            phi.update(zip(missing, x))
        return np.stack([phi[a] for a in archs])

    def _design(self, archs: Sequence[Arch], rungs: np.ndarray) -> np.ndarray:
        phi = self.features(archs)
        d, n = phi.shape[1], len(archs)
        x = np.zeros((n, d * self.rungs + self.rungs))
        x[:, :d] = phi
        for k in range(1, self.rungs):
            at = rungs == k
            x[at, d * k: d * (k + 1)] = phi[at]
        x[np.arange(n), d * self.rungs + rungs] = 1.0
        return x

    def fit(self, labels: Sequence[tuple[Arch, int, float]]) -> "CrossFidelityRidge":
        """Fit on ``labels``. A run's labels only grow, so when they extend the ones of the last fit only the
        new ones are added to the normal equations (a refit at every decision costs one small solve)."""
        if not labels:
            raise FidelityModelError("a fidelity model needs at least one label to fit")
        if (self.coef is not None and labels is self._labels and self.fitted_on == len(labels)
                and self._width == self._fitted_width):
            return self  # nothing new since the last fit
        self.features([a for a, _, _ in labels[self.fitted_on:]])
        if self._width != self._fitted_width or self.fitted_on > len(labels) or self._gram is None:
            self._gram, self._xty, self._counts, self.fitted_on = None, None, np.zeros(self.rungs, dtype=np.int64), 0
        new = labels[self.fitted_on:]
        if new:
            rungs = np.array([k for _, k, _ in new], dtype=np.int64)
            if rungs.min() < 0 or rungs.max() >= self.rungs:
                raise FidelityModelError(f"rung indices must be in 0..{self.rungs - 1}, got {sorted(set(rungs.tolist()))}")
            x = self._design([a for a, _, _ in new], rungs)
            y = np.array([v for _, _, v in new], dtype=np.float64)
            gram, xty = x.T @ x, x.T @ y
            self._gram = gram if self._gram is None else self._gram + gram
            self._xty = xty if self._xty is None else self._xty + xty
            self._counts += np.bincount(rungs, minlength=self.rungs)
        d = (self._gram.shape[0] - self.rungs) // self.rungs
        seen = self._counts > 0
        # the intercept of a rung without labels would be free (a singular system): penalise it
        penalty = np.concatenate([np.full(d, self.ridge), np.full(d * (self.rungs - 1), self.shift_ridge),
                                  np.where(seen, 0.0, self.ridge)])
        with one_blas_thread():
            self.coef = np.linalg.solve(self._gram + np.diag(penalty), self._xty)
        # a rung without labels says nothing about the gain of training longer: it predicts as the nearest rung
        # below it that has labels (else above)
        have = np.flatnonzero(seen)
        self._stand_in = [int(have[have <= k][-1]) if (have <= k).any() else int(have[0]) for k in range(self.rungs)]
        self.fitted_on, self._fitted_width, self._labels = len(labels), self._width, labels
        return self

    def predict(self, archs: Sequence[Arch], rung: int) -> np.ndarray:
        if not archs:
            return np.zeros(0)
        return self._predict(self.features(archs), rung)

    def _predict(self, phi: np.ndarray, rung: int) -> np.ndarray:
        if self.coef is None:
            raise FidelityModelError("the fidelity model predicts only after a fit")
        if self._width != self._fitted_width:
            self.fit(self._labels)  # a cell wider than every fitted one changed the layout of the features
        d, rung = phi.shape[1], self._stand_in[rung]
        weights = self.coef[:d] + (self.coef[d * rung: d * (rung + 1)] if rung > 0 else 0.0)
        return phi @ weights + self.coef[d * self.rungs + rung]

    def promotion_scores(self, rung: int, results: Mapping[Arch, float]) -> dict[Arch, float]:
        """Each of a rung's cells (cell -> its valid there) scored by its predicted full-fidelity valid."""
        archs = list(results)
        if not archs:
            return {}
        phi = self._rung_features(rung, archs)
        observed = np.array([results[a] for a in archs], dtype=np.float64)
        at_rung, at_top = self._predict(phi, rung), self._predict(phi, self.rungs - 1)
        scores = at_top + self.keep * (observed - at_rung)
        return dict(zip(archs, scores.tolist()))

    def _rung_features(self, rung: int, archs: list) -> np.ndarray:
        """phi of a rung's cells, kept between calls: a schedule's rung only gains cells, so each call adds the
        new ones (a rung of a thousand cells is scored at every decision)."""
        cached, rows = self._rung_rows.get(rung, ([], None))
        n = len(cached)
        if (rows is None or len(archs) < n or rows.shape[1] != self._dim()
                or any(a is not b for a, b in zip(archs, cached))):
            cached, rows, n = [], None, 0
        if len(archs) > n:
            new = self.features(archs[n:])
            if rows is None or rows.shape[1] != new.shape[1]:
                rows = self.features(archs)  # the first rows, or new cells widened the layout
            else:
                rows = np.concatenate([rows, new])
        self._rung_rows[rung] = (list(archs), rows)
        return rows

    def _dim(self) -> int:
        vocab = len(self.space.vocab)
        return self._width * vocab + self._width ** 2 + vocab

    def full_view(self, labels: list) -> "FullFidelityView":
        return FullFidelityView(self, labels)


class FullFidelityView:
    """The model as a loop's predictor (``fit(archs, values)``/``predict(archs)``): a fit refits it on every
    label of the run so far (``labels``, a list the loop appends to), not only on the told first results it
    is handed, and it predicts the full-fidelity valid."""

    name = "ridge"

    def __init__(self, model: CrossFidelityRidge, labels: list):
        self.model, self.labels = model, labels

    def fit(self, archs, values) -> "FullFidelityView":
        self.model.fit(self.labels)
        return self

    def predict(self, archs) -> np.ndarray:
        return self.model.predict(list(archs), self.model.rungs - 1)
