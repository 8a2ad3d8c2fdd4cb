"""Test doubles for the search tests: a predictor that peeks at the table, an oracle that dies."""
import numpy as np


class PeekingPredictor:
    """Predicts the table's validation accuracy plus seeded noise; records every fit."""

    name = "peek"

    def __init__(self, oracle, noise=0.0, seed=0):
        self.oracle, self.noise, self.seed = oracle, noise, seed
        self.fits = []

    def fit(self, archs, values):
        assert len(archs) == len(values)
        self.fits.append((list(archs), np.asarray(values).copy()))
        return self

    def predict(self, archs):
        assert self.fits, "predict before fit"
        rng = np.random.default_rng([self.seed, len(self.fits)])
        true = np.array([self.oracle.query(a).valid for a in archs])
        return true + self.noise * rng.standard_normal(len(archs))


class DyingOracle:
    """Answers like ``oracle`` for ``lives`` queries, then raises (a stand-in for a killed run)."""

    def __init__(self, oracle, lives):
        self.oracle, self.lives, self.calls = oracle, lives, 0

    def query(self, arch):
        if self.calls >= self.lives:
            raise RuntimeError("oracle died")
        self.calls += 1
        return self.oracle.query(arch)

    def best(self, metric="valid"):
        return self.oracle.best(metric)


class CountingOracle(DyingOracle):
    def __init__(self, oracle):
        super().__init__(oracle, lives=10**9)
