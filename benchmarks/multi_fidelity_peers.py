"""Multi-fidelity peers on NB-201 and NB-101 (issue 20): Optuna's TPE with its HyperbandPruner and SuccessiveHalvingPruner.

Each trial suggests the space's categorical parameters (NB-201's six edges; TPESampler(seed=seed), its defaults),
is trained to the lowest fidelity (``--min``, 12 epochs on NB-201: it reports that validation accuracy as its
intermediate value at step 12) and, unless the pruner prunes it there, is continued rung by rung (the table's
fidelities: NB-101 4/12/36/108) to the full fidelity (``--max``, 200) and returns that validation accuracy. The
cost accounting is nasflow's (``nasflow.scheduled_loop``): a trial costs 12 epochs, 200 if continued (the table
stands for a training continued from its checkpoint, not 12 + 200); a cell suggested again is trained again and
paid again, as an Optuna study would. On NB-101's 20k table (``--space nb101``) a suggestion decodes to the
nearest labelled cell, as nasflow's TPE's do (``nasflow.restricted``); that table has no test accuracies, so
its records' best_test is None and the benchmark reads best_valid. A study stops at
the first training that does not fit in the budget (``--budget-epochs``), as nasflow's loop does. The best cell so far is nasflow's rule:
the best valid among the cells trained furthest, reported by its full-fidelity test accuracy.

    python benchmarks/multi_fidelity_peers.py --seeds 30 --budget-epochs 20000 --out runs/mf/peers
    python benchmarks/multi_fidelity_peers.py --space nb101 --seeds 30 --budget-epochs 10800 --out runs/mf/peers101

Pruners: ``HyperbandPruner(min_resource=MIN, max_resource=MAX, reduction_factor=3)`` and
``SuccessiveHalvingPruner(min_resource=MIN, reduction_factor=3)``. Records are compare records (the same
fields as ``nasflow compare --schedule``'s, searcher ``optuna-tpe``, schedule the pruner), stored under
OUT/runs, so a stopped benchmark resumes and ``benchmarks/multi_fidelity.py`` tabulates them beside nasflow's.
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np

PRUNERS = ("hyperband", "sh")
TABLES = {"nb201": "nb201_cifar.csv", "nb101": "nb101_20k.jsonl"}


class CostCurve:
    """A peer run as nasflow records a scheduled one: after each training the epochs spent and the best cell so far
    (the best valid among the cells trained furthest, reported by its full-fidelity test accuracy), and the epochs
    until the table's best-valid cell was trained to full fidelity."""

    def __init__(self, oracle, rungs, optimum):
        self.oracle, self.rungs, self.optimum = oracle, rungs, optimum
        self.top, self.full = len(rungs) - 1, rungs[-1]
        self.spent, self.epochs, self.best_valid, self.best_test, self.found = 0, [], [], [], None
        self.key, self.valid, self.test = None, None, None

    def add(self, arch, level: int, valid: float, cost: int) -> None:
        self.spent += cost
        if self.key is None or (level, valid) > self.key:
            self.key, self.valid, self.test = (level, valid), valid, self.oracle.query(arch).test
        self.epochs.append(self.spent)
        self.best_valid.append(self.valid)
        self.best_test.append(self.test)
        if level == self.top and self.found is None and valid >= self.optimum["valid"]:
            self.found = self.spent

    def climb(self, arch, budget: int, decide) -> bool:
        """Train ``arch`` rung by rung, each rung continued from the one below's checkpoint (charged its extra
        epochs), while the peer's ``decide(level, fidelity, valid)`` says to go on (it hears the top rung's result
        too). False once a rung does not fit in ``budget``: the run ends there, as nasflow's loop does."""
        for level, fidelity in enumerate(self.rungs):
            cost = fidelity - (self.rungs[level - 1] if level else 0)
            if level and self.spent + cost > budget:
                return False
            valid = self.oracle.query(arch, fidelity).valid
            self.add(arch, level, valid, cost)
            if not decide(level, fidelity, valid):
                break
        return True

    def record(self, searcher: str, schedule: str, seed: int, budget: int) -> dict:
        return {"searcher": searcher, "predictor": "none", "seed": seed, "schedule": schedule,
                "best_valid": self.best_valid, "best_test": self.best_test, "epochs": self.epochs,
                "full_epochs": self.full, "budget_epochs": budget, "epochs_to_optimum": self.found,
                "optimum": self.optimum}


def optuna_run(pruner_name, seed, rungs, budget, space, oracle, optimum, out) -> dict:
    import optuna

    low, full = rungs[0], rungs[-1]
    path = Path(out) / "runs" / f"optuna-tpe-{pruner_name}-{low}-{full}-b{budget}-seed{seed}.json"
    if path.is_file():
        return json.loads(path.read_text())
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    pruner = (optuna.pruners.HyperbandPruner(min_resource=low, max_resource=full, reduction_factor=3)
              if pruner_name == "hyperband" else optuna.pruners.SuccessiveHalvingPruner(min_resource=low, reduction_factor=3))
    # a fixed name: HyperbandPruner draws each trial's bracket from a hash of the study name, which is random unless
    # given, so its runs were not reproducible
    study = optuna.create_study(study_name=f"seed{seed}", direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed),
                                pruner=pruner)
    encoding = space.categorical
    curve = CostCurve(oracle, rungs, optimum)
    stop = False
    while not stop and curve.spent + rungs[0] <= budget:  # as nasflow's loop: stop at the first training that does not fit
        trial = study.ask()
        arch = encoding.decode({name: trial.suggest_categorical(name, list(values))
                                for name, values in encoding.choices.items()})

        def decide(level, fidelity, valid):
            if level == len(rungs) - 1:
                study.tell(trial, valid)
                return False
            trial.report(valid, fidelity)
            if trial.should_prune():
                study.tell(trial, state=optuna.trial.TrialState.PRUNED)
                return False
            return True

        stop = not curve.climb(arch, budget, decide)
    record = curve.record("optuna-tpe", f"optuna-{pruner_name}", seed, budget)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record) + "\n")
    return record


SYNE_TUNE = ("st-asha", "st-hyperband", "st-bohb")


def syne_tune_run(name, seed, rungs, budget, space, oracle, optimum, out) -> dict:
    """One Syne Tune scheduler driven by hand: ``suggest`` a trial, report its low-fidelity result
    (``on_trial_result``: CONTINUE or STOP, the stopping-type ASHA rule), and continue a trial it keeps to full
    fidelity (``on_trial_complete``). st-asha: ``ASHA`` (random proposals, one bracket); st-hyperband: the
    same with 3 brackets (its asynchronous Hyperband); st-bohb: ``BOHB`` (its KDE searcher in front of ASHA)."""
    import datetime

    from syne_tune.backend.trial_status import Trial
    from syne_tune.config_space import choice
    from syne_tune.optimizer.baselines import ASHA, BOHB
    from syne_tune.optimizer.scheduler import SchedulerDecision

    low, full = rungs[0], rungs[-1]
    path = Path(out) / "runs" / f"{name}-{low}-{full}-b{budget}-seed{seed}.json"
    if path.is_file():
        return json.loads(path.read_text())
    np.random.seed(seed)  # Syne Tune draws a trial's bracket from numpy's global generator
    encoding = space.categorical
    config_space = {k: choice(list(v)) for k, v in encoding.choices.items()}
    options = dict(config_space=config_space, metric="valid", time_attr="epoch", max_t=full, grace_period=low,
                   reduction_factor=3, do_minimize=False, random_seed=seed, brackets=3 if name == "st-hyperband" else 1)
    scheduler = BOHB(**options) if name == "st-bohb" else ASHA(**options)
    curve = CostCurve(oracle, rungs, optimum)
    trial_id, stop = 0, False
    while not stop and curve.spent + low <= budget:  # as nasflow's loop: stop at the first training that does not fit
        config = scheduler.suggest().config
        arch = encoding.decode({k: config[k] for k in encoding.choices})
        trial = Trial(trial_id=trial_id, config=config, creation_time=datetime.datetime.now())
        trial_id += 1
        scheduler.on_trial_add(trial)

        def decide(level, fidelity, valid):
            if level == len(rungs) - 1:
                scheduler.on_trial_complete(trial, {"valid": valid, "epoch": fidelity})
                return False
            return scheduler.on_trial_result(trial, {"valid": valid, "epoch": fidelity}) != SchedulerDecision.STOP

        stop = not curve.climb(arch, budget, decide)
    record = curve.record(name, name, seed, budget)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record) + "\n")
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=30)
    parser.add_argument("--budget-epochs", type=int, default=20_000)
    parser.add_argument("--space", default="nb201", choices=sorted(TABLES))
    parser.add_argument("--benchmark", default=None, help="the table (default: nb201_cifar.csv, nb101_20k.jsonl)")
    parser.add_argument("--min", type=int, default=None, help="lowest fidelity (default: the table's lowest)")
    parser.add_argument("--max", type=int, default=None, help="highest fidelity (default: the table's full one)")
    parser.add_argument("--pruners", default=",".join(PRUNERS),
                        help=f"Optuna pruners ({', '.join(PRUNERS)}) and Syne Tune schedulers ({', '.join(SYNE_TUNE)}, "
                             f"where syne-tune is installed)  [default: %(default)s]")
    parser.add_argument("--out", default="runs/mf/peers")
    args = parser.parse_args()

    from tqdm.auto import tqdm

    from nasflow import get_space
    from nasflow.experiments import cost_compare
    from nasflow.loop import optimum_of
    from nasflow.restricted import restrict_to_table

    oracle = get_space(args.space).open_oracle(args.benchmark or TABLES[args.space], "cifar10", progress=True)
    # a partial table (NB-101's 20k cells) is searched among its cells: suggestions decode to the nearest labelled
    # cell, as nasflow's TPE gets them (nasflow.restricted)
    space = restrict_to_table(get_space(args.space), oracle)
    low = oracle.fidelities[0] if args.min is None else args.min
    full = oracle.fidelities[-1] if args.max is None else args.max
    rungs = [f for f in oracle.fidelities if low <= f <= full]
    if not rungs or rungs[0] != low or rungs[-1] != full:
        parser.error(f"--min and --max must be fidelities of the table ({', '.join(map(str, oracle.fidelities))})")
    optimum = optimum_of(oracle)
    records = []
    for pruner in (p.strip() for p in args.pruners.split(",") if p.strip()):
        for seed in tqdm(range(args.seeds), desc=pruner if pruner in SYNE_TUNE else f"optuna-tpe + {pruner}", unit="run"):
            run = syne_tune_run if pruner in SYNE_TUNE else optuna_run
            records.append(run(pruner, seed, rungs, args.budget_epochs, space, oracle, optimum, args.out))
    print(cost_compare.format_table(cost_compare.summary_rows(records)))
    cost_compare.write_outputs(records, args.out)


if __name__ == "__main__":
    os.environ.setdefault("NASFLOW_BENCHMARKS", str(Path(__file__).resolve().parents[2] / "shared" / "benchmarks"))
    main()
