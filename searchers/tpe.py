"""Optuna's TPE as a searcher, driven through ``study.ask()`` / ``study.tell()``.

A cell is the set of categorical parameters its space declares (``space.categorical``),
and suggestions the space rejects (an NB-101 cell disconnected or with > 9 edges) are
told to Optuna as failed trials. A suggestion of an already evaluated cell is answered
from the history (told to Optuna with the known value) instead of being proposed again.
Trials proposed but not chosen by the loop are closed as failed at the next ``ask``, so
TPE only learns from real evaluations. The sampler is re-seeded from ``(seed, len(history), asks)`` at each ask,
keeping the searcher's state a function of its seed and its history.

With ``objectives`` (``nasflow.objectives.Objectives``) the study has one direction per objective and is told
each cell's objective values: Optuna's TPESampler is then MOTPE (Ozaki et al., 2020).
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
    takes_objectives = True

    def __init__(self, space, seed: int = 0, startup: int = 10, multivariate: bool = True, objectives=None):
        super().__init__(space, seed)
        self.objectives = objectives
        if space.categorical is None:
            raise SearcherError(f"tpe needs a space with a categorical encoding; {space.name!r} declares none")
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)  # library code does not print trial logs
        self._optuna = optuna
        self.startup = startup
        self.multivariate = multivariate
        self.encoding = _Encoding(space.categorical)
        if objectives is None:
            self.study = optuna.create_study(direction="maximize", sampler=self._sampler(0))
        else:
            directions = ["maximize" if sense == "max" else "minimize" for sense in objectives.senses]
            self.study = optuna.create_study(directions=directions, sampler=self._sampler(0))
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
                self.study.tell(trial, self._values(arch))
            elif arch in self._pending:
                self.study.tell(trial, state=fail)
            else:
                self._pending[arch] = trial
                out.append(arch)
        if len(out) < n:
            out += self._fresh(n - len(out), self.space.sample, rng)
        return out

    def _values(self, arch: Arch):
        """What the study is told of a told cell: its valid, or its objective values."""
        if self.objectives is None:
            return self.history[arch].valid
        return self.objectives.values([arch], [self.history[arch]])[0].tolist()

    def _observe(self, arch: Arch, evaluation: Evaluation) -> None:
        trial = self._pending.pop(arch, None)
        if trial is not None:
            self.study.tell(trial, self._values(arch))
        else:  # told without being asked (a loop fallback, a warm start): add it as a finished trial
            value = self._values(arch)
            self.study.add_trial(
                self._optuna.trial.create_trial(
                    params=self.encoding.params(arch), distributions=self.encoding.distributions,
                    **({"values": value} if isinstance(value, list) else {"value": value}),
                )
            )
