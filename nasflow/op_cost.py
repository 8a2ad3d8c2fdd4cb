"""A cost model from a few measured cells: a cell's latency (or energy, memory) as a sum of per-operation costs.

Latency on a device is close to additive over a cell's operations, the observation behind kernel-level
predictors such as nn-Meter: each operation of the searched cell runs at a resolution and width that its
position fixes, so counting the operations (node labels of ``space.to_graph``, which mark downsampling layers
apart where a space has them) and fitting one cost per label plus a constant is a model with as many
parameters as the space has labels. From 20 measured NB-201 cells it ranks all 15,625 cells' latency with
Spearman rho 0.91-1.00 on HELP's three devices, ahead of the GNN predictor fitted on the same cells
(``benchmarks/latency_predictor.py``, docs/RESULTS.md). Ridge regularisation keeps the fit defined with fewer
measured cells than labels.

Pure core: numpy only; the space comes in as an object.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from .errors import DataError


class OpCostModel:
    """``fit(archs, values)`` on measured cells, then ``predict(archs)``: cost = constant + sum of per-label costs.

    ``ridge`` is the penalty on the per-label costs (not on the constant), in squared units of the values.
    """

    def __init__(self, space, ridge: float = 0.1):
        if not ridge >= 0:
            raise DataError(f"ridge must be >= 0, got {ridge!r}")
        self.space = space
        self.ridge = float(ridge)
        self.labels = tuple(space.vocab)  # every node label a graph of the space can carry
        self.costs = None  # per-label costs, then the constant; set by fit

    def counts(self, archs: Sequence) -> np.ndarray:
        """How many nodes of each label each cell's graph has (input and output included: constant per space)."""
        column = {label: j for j, label in enumerate(self.labels)}
        out = np.zeros((len(archs), len(self.labels)))
        for i, arch in enumerate(archs):
            for op in self.space.to_graph(arch).ops:
                if op not in column:
                    raise DataError(f"{self.space.name} cell {self.space.format(arch)} has an operation {op!r} "
                                    f"outside the space's vocabulary")
                out[i, column[op]] += 1
        return out

    def choose_cells(self, archs: Sequence, n: int, seed: int = 0, candidates: int = 2000) -> list:
        """The ``n`` cells of ``archs`` worth measuring: a greedy D-optimal design for this model.

        Measuring costs real device time, so which cells are measured matters as much as how many. Starting
        from one random cell, each step adds the cell with the highest leverage ``x' A^-1 x`` on the label
        counts (with the constant) of the cells chosen so far, which multiplies the determinant of their
        information matrix the most: the chosen cells spread the label counts so that every per-label cost is
        pinned down. Over ``candidates`` cells drawn with ``seed`` (all of ``archs`` when fewer), so a large
        space costs a bounded amount; from 20 cells on the Pixel 3 it lifts Spearman rho from 0.897 +- 0.004
        (20 uniform cells, 30 seeds) to 0.911 +- 0.000, near the model's ceiling of 0.912 (docs/RESULTS.md).
        """
        if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= len(archs):
            raise DataError(f"choose between 1 and {len(archs):,d} cells to measure, got {n!r}")
        rng = np.random.default_rng([int(seed), 29])
        pool = np.arange(len(archs)) if len(archs) <= candidates else rng.choice(len(archs), candidates, replace=False)
        x = np.hstack([self.counts([archs[i] for i in pool]), np.ones((len(pool), 1))])
        chosen = [int(rng.integers(len(pool)))]
        for _ in range(n - 1):
            # a tiny ridge keeps A invertible while fewer cells are chosen than the model has parameters
            inverse = np.linalg.inv(x[chosen].T @ x[chosen] + 1e-3 * np.eye(x.shape[1]))
            leverage = np.einsum("ij,jk,ik->i", x, inverse, x)
            leverage[chosen] = -np.inf  # each cell is measured once
            chosen.append(int(np.argmax(leverage)))
        return [archs[pool[i]] for i in chosen]

    def fit(self, archs: Sequence, values) -> "OpCostModel":
        y = np.asarray(values, dtype=np.float64).reshape(-1)
        if len(archs) != y.size:
            raise DataError(f"{len(archs)} cells but {y.size} measured values; pass one value per cell")
        if y.size < 2:
            raise DataError(f"a cost model needs at least 2 measured cells, got {y.size}")
        if not np.all(np.isfinite(y)):
            raise DataError("measured values must be finite numbers (a NaN or inf among them)")
        x = self.counts(archs)
        mean_x, mean_y = x.mean(0), y.mean()
        xc = x - mean_x  # centring leaves the constant unpenalised
        costs = np.linalg.solve(xc.T @ xc + max(self.ridge, 1e-12) * np.eye(x.shape[1]), xc.T @ (y - mean_y))
        self.costs = np.append(costs, mean_y - mean_x @ costs)
        return self

    def predict(self, archs: Sequence) -> np.ndarray:
        if self.costs is None:
            raise DataError("the cost model is not fitted yet: call fit(archs, values) first")
        return self.counts(archs) @ self.costs[:-1] + self.costs[-1]

    def per_label(self) -> dict:
        """The fitted cost of each label (the constant under "constant"). Where every cell of a space has as many
        nodes (NB-201's six edges), only differences between labels are determined: read them as such."""
        if self.costs is None:
            raise DataError("the cost model is not fitted yet: call fit(archs, values) first")
        return {**dict(zip(self.labels, self.costs[:-1].tolist())), "constant": float(self.costs[-1])}
