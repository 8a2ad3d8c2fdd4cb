"""A committee of predictors: the ensemble behind `--predictor fgp+scratch`, BANANAS-style searches
and the protocol's `--ensemble K`."""
from __future__ import annotations

import numpy as np


class Committee:
    """Predictors fitted on the same cells whose scores, standardised per call, are averaged.

    Standardising keeps a member with a wider score scale from outvoting the others.
    """

    def __init__(self, members: list, name: str):
        self.members, self.name = members, name

    def pretrain(self, progress: bool = False):
        for m in self.members:
            m.pretrain(progress=progress)
        return self

    def fit(self, archs, values):
        for m in self.members:
            m.fit(archs, values)
        return self

    def predict(self, archs) -> np.ndarray:
        total = np.zeros(len(archs))
        for m in self.members:
            scores = np.asarray(m.predict(archs), dtype=np.float64)
            total += (scores - scores.mean()) / (scores.std() or 1.0)
        return total / len(self.members)
