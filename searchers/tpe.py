"""Optuna's TPE as a searcher, driven through ``study.ask()`` / ``study.tell()``.

A cell is the set of categorical parameters its space declares (``space.categorical``),
and suggestions the space rejects (an NB-101 cell disconnected or with > 9 edges) are
told to Optuna as failed trials. A suggestion of an already evaluated cell is answered
from the history (told to Optuna with the known value) instead of being proposed again.
Trials proposed but not chosen by the loop are closed as failed at the next ``ask``, so
TPE only learns from real evaluations. The sampler is re-seeded from ``(seed, len(history), asks)`` at each ask,
keeping the searcher's state a function of its seed and its history.
"""
from __future__ import annotations

from nasflow.core import Arch, Evaluation
from nasflow.errors import NasflowError

from . import SearcherError
from .base import MAX_TRIES, BaseSearcher


class _Encoding:
    """A space's categorical encoding (``space.categorical``) as Optuna distributions."""

    def __init__(self, categorical):
        from optuna.distributions import CategoricalDistribution

        self.categorical = categorical
        self.distributions = {name: CategoricalDistribution(choices) for name, choices in categorical.choices.items()}

    def suggest(self, trial):
        # suggested in the declared order: the sampler's random startup draws depend on it
        return self.categorical.decode(
            {name: trial.suggest_categorical(name, choices) for name, choices in self.categorical.choices.items()}
        )

    def params(self, arch) -> dict:
        return self.categorical.encode(arch)


class TPESearch(BaseSearcher):
    name = "tpe"
    default_pool = 25  # each Optuna suggestion costs milliseconds, so a step asks TPE for fewer candidates

    def __init__(self, space, seed: int = 0, startup: int = 10, multivariate: bool = True):
        super().__init__(space, seed)
        if space.categorical is None:
            raise SearcherError(f"tpe needs a space with a categorical encoding; {space.name!r} declares none")
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)  # library code does not print trial logs
        self._optuna = optuna
        self.startup = startup
        self.multivariate = multivariate
        self.encoding = _Encoding(space.categorical)
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
