"""Optuna's TPE as a searcher, driven through ``study.ask()`` / ``study.tell()``.

A cell is a set of categorical parameters: NB-201 one per edge; NB-101 one bit per
upper-triangular entry of the 7x7 matrix plus one op per inner vertex, and suggestions
the space rejects (disconnected, > 9 edges) are told to Optuna as failed trials. A
suggestion of an already evaluated cell is answered from the history (told to Optuna
with the known value) instead of being proposed again. Trials proposed but not chosen
by the loop are closed as failed at the next ``ask``, so TPE only learns from real
evaluations. The sampler is re-seeded from ``(seed, len(history), asks)`` at each ask,
keeping the searcher's state a function of its seed and its history.
"""
from __future__ import annotations

import itertools

from nasflow.core import Arch, Evaluation
from nasflow.errors import NasflowError

from . import SearcherError
from .base import MAX_TRIES, BaseSearcher

NB101_VERTICES = 7
NB101_PAIRS = tuple(itertools.combinations(range(NB101_VERTICES), 2))


class _NB201Encoding:
    def __init__(self, space):
        from optuna.distributions import CategoricalDistribution

        self.space = space
        self.distributions = {f"edge{k}": CategoricalDistribution(space.ops) for k in range(6)}

    def suggest(self, trial):
        return self.space.make([trial.suggest_categorical(name, d.choices) for name, d in self.distributions.items()])

    def params(self, arch) -> dict:
        return {f"edge{k}": op for k, op in enumerate(arch.ops)}


class _NB101Encoding:
    def __init__(self, space):
        from optuna.distributions import CategoricalDistribution

        self.space = space
        self.distributions = {f"e{i}_{j}": CategoricalDistribution((0, 1)) for i, j in NB101_PAIRS}
        self.distributions.update(
            {f"op{v}": CategoricalDistribution(space.ops) for v in range(1, NB101_VERTICES - 1)}
        )

    def suggest(self, trial):
        n = NB101_VERTICES
        matrix = [[0] * n for _ in range(n)]
        for i, j in NB101_PAIRS:
            matrix[i][j] = trial.suggest_categorical(f"e{i}_{j}", (0, 1))
        ops = ["input"] + [trial.suggest_categorical(f"op{v}", self.space.ops) for v in range(1, n - 1)] + ["output"]
        return self.space.make(matrix, ops)

    def params(self, arch) -> dict:
        """Pad a pruned cell to 7 vertices: its output moves to vertex 6, unused vertices stay unconnected."""
        m, ops = arch.matrix, arch.ops
        n = len(ops)
        slot = list(range(n - 1)) + [NB101_VERTICES - 1]
        out = {name: 0 for name in self.distributions if name.startswith("e")}
        for i in range(n):
            for j in range(n):
                if m[i][j]:
                    out[f"e{slot[i]}_{slot[j]}"] = 1
        for v in range(1, NB101_VERTICES - 1):
            out[f"op{v}"] = ops[v] if v < n - 1 else self.space.ops[0]
        return out


ENCODINGS = {"nb201": _NB201Encoding, "nb101": _NB101Encoding}


class TPESearch(BaseSearcher):
    name = "tpe"
    default_pool = 25  # each Optuna suggestion costs milliseconds, so a step asks TPE for fewer candidates

    def __init__(self, space, seed: int = 0, startup: int = 10, multivariate: bool = True):
        super().__init__(space, seed)
        if space.name not in ENCODINGS:
            raise SearcherError(f"tpe has no encoding for space {space.name!r}; it supports {', '.join(ENCODINGS)}")
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)  # library code does not print trial logs
        self._optuna = optuna
        self.startup = startup
        self.multivariate = multivariate
        self.encoding = ENCODINGS[space.name](space)
        self.study = optuna.create_study(direction="maximize", sampler=self._sampler(0))
        self._pending: dict[Arch, object] = {}

    def _sampler(self, salt: int):
        return self._optuna.samplers.TPESampler(
            seed=salt, n_startup_trials=self.startup, multivariate=self.multivariate
        )

    def ask(self, n: int) -> list[Arch]:
        fail = self._optuna.trial.TrialState.FAIL
        for trial in self._pending.values():
            self.study.tell(trial, state=fail)
        self._pending = {}
        rng = self._rng()
        self.study.sampler = self._sampler(int(rng.integers(2**31)))
        out: list[Arch] = []
        for _ in range(MAX_TRIES * n):
            if len(out) == n:
                break
            trial = self.study.ask()
            try:
                arch = self.encoding.suggest(trial)
            except NasflowError:  # a cell the space rejects
                self.study.tell(trial, state=fail)
                continue
            if arch in self.history:
                self.study.tell(trial, self.history[arch].valid)
            elif arch in self._pending:
                self.study.tell(trial, state=fail)
            else:
                self._pending[arch] = trial
                out.append(arch)
        if len(out) < n:
            out += self._fresh(n - len(out), self.space.sample, rng)
        return out

    def _observe(self, arch: Arch, evaluation: Evaluation) -> None:
        trial = self._pending.pop(arch, None)
        if trial is not None:
            self.study.tell(trial, evaluation.valid)
        else:  # told without being asked (a loop fallback, a warm start): add it as a finished trial
            self.study.add_trial(
                self._optuna.trial.create_trial(
                    params=self.encoding.params(arch), distributions=self.encoding.distributions, value=evaluation.valid
                )
            )
