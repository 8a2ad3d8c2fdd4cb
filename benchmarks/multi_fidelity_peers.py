"""Multi-fidelity peers on NB-201 (issue 20): Optuna's TPE with its HyperbandPruner and SuccessiveHalvingPruner.

Each trial suggests NB-201's six edges as categorical parameters (TPESampler(seed=seed), its defaults), is
trained to the low fidelity (``--min``, 12 epochs: it reports that validation accuracy as its intermediate
value at step 12) and, unless the pruner prunes it there, is continued to the full fidelity (``--max``, 200)
and returns that validation accuracy. The cost accounting is nasflow's (``nasflow.scheduled_loop``): a trial
costs 12 epochs, 200 if continued (the table stands for a training continued from its checkpoint, not
12 + 200); a cell suggested again is trained again and paid again, as an Optuna study would. A study stops at
the first training that does not fit in the budget (``--budget-epochs``), as nasflow's loop does. The best cell so far is nasflow's rule:
the best valid among the cells trained furthest, reported by its full-fidelity test accuracy.

    python benchmarks/multi_fidelity_peers.py --seeds 30 --budget-epochs 20000 --out runs/mf/peers

Pruners: ``HyperbandPruner(min_resource=12, max_resource=200, reduction_factor=3)`` and
``SuccessiveHalvingPruner(min_resource=12, reduction_factor=3)``. Records are compare records (the same
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


def optuna_run(pruner_name, seed, low, full, budget, space, oracle, optimum, out) -> dict:
    import optuna

    path = Path(out) / "runs" / f"optuna-tpe-{pruner_name}-{low}-{full}-b{budget}-seed{seed}.json"
    if path.is_file():
        return json.loads(path.read_text())
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    pruner = (optuna.pruners.HyperbandPruner(min_resource=low, max_resource=full, reduction_factor=3)
              if pruner_name == "hyperband" else optuna.pruners.SuccessiveHalvingPruner(min_resource=low, reduction_factor=3))
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed), pruner=pruner)
    encoding = space.categorical
    spent, epochs, best_valid, best_test = 0, [], [], []
    incumbent = {"key": None, "valid": None, "test": None}
    found = [None]

    def evaluated(arch, level, valid, cost):
        nonlocal spent
        spent += cost
        if incumbent["key"] is None or (level, valid) > incumbent["key"]:
            incumbent.update(key=(level, valid), valid=valid, test=oracle.query(arch).test)
        epochs.append(spent)
        best_valid.append(incumbent["valid"])
        best_test.append(incumbent["test"])
        if level == 1 and found[0] is None and valid >= optimum["valid"]:
            found[0] = spent

    while spent + low <= budget:  # as nasflow's loop: stop at the first training that does not fit
        trial = study.ask()
        arch = encoding.decode({name: trial.suggest_categorical(name, list(values))
                                for name, values in encoding.choices.items()})
        screened = oracle.query(arch, low).valid
        evaluated(arch, 0, screened, low)
        trial.report(screened, low)
        if trial.should_prune():
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            continue
        if spent + full - low > budget:
            break
        valid = oracle.query(arch, full).valid
        evaluated(arch, 1, valid, full - low)
        study.tell(trial, valid)
    record = {"searcher": "optuna-tpe", "predictor": "none", "seed": seed, "schedule": f"optuna-{pruner_name}",
              "best_valid": best_valid, "best_test": best_test, "epochs": epochs, "full_epochs": full,
              "budget_epochs": budget, "epochs_to_optimum": found[0], "optimum": optimum}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record) + "\n")
    return record


SYNE_TUNE = ("st-asha", "st-hyperband", "st-bohb")


def syne_tune_run(name, seed, low, full, budget, space, oracle, optimum, out) -> dict:
    """One Syne Tune scheduler driven by hand: ``suggest`` a trial, report its low-fidelity result
    (``on_trial_result``: CONTINUE or STOP, the stopping-type ASHA rule), and continue a trial it keeps to full
    fidelity (``on_trial_complete``). st-asha: ``ASHA`` (random proposals, one bracket); st-hyperband: the
    same with 3 brackets (its asynchronous Hyperband); st-bohb: ``BOHB`` (its KDE searcher in front of ASHA)."""
    import datetime

    from syne_tune.backend.trial_status import Trial
    from syne_tune.config_space import choice
    from syne_tune.optimizer.baselines import ASHA, BOHB
    from syne_tune.optimizer.scheduler import SchedulerDecision

    path = Path(out) / "runs" / f"{name}-{low}-{full}-b{budget}-seed{seed}.json"
    if path.is_file():
        return json.loads(path.read_text())
    np.random.seed(seed)  # Syne Tune draws a trial's bracket from numpy's global generator
    encoding = space.categorical
    config_space = {k: choice(list(v)) for k, v in encoding.choices.items()}
    options = dict(config_space=config_space, metric="valid", time_attr="epoch", max_t=full, grace_period=low,
                   reduction_factor=3, do_minimize=False, random_seed=seed, brackets=3 if name == "st-hyperband" else 1)
    scheduler = BOHB(**options) if name == "st-bohb" else ASHA(**options)
    spent, epochs, best_valid, best_test, found = 0, [], [], [], None
    incumbent = {"key": None, "valid": None, "test": None}
    trial_id, stop = 0, False
    while not stop and spent + low <= budget:  # as nasflow's loop: stop at the first training that does not fit
        config = scheduler.suggest().config
        arch = encoding.decode({k: config[k] for k in encoding.choices})
        trial = Trial(trial_id=trial_id, config=config, creation_time=datetime.datetime.now())
        trial_id += 1
        scheduler.on_trial_add(trial)
        for level, fidelity in ((0, low), (1, full)):
            if level == 1 and spent + full - low > budget:
                stop = True
                break
            valid = oracle.query(arch, fidelity).valid
            spent += fidelity - (low if level else 0)
            if incumbent["key"] is None or (level, valid) > incumbent["key"]:
                incumbent.update(key=(level, valid), valid=valid, test=oracle.query(arch).test)
            epochs.append(spent)
            best_valid.append(incumbent["valid"])
            best_test.append(incumbent["test"])
            if level == 1:
                found = spent if found is None and valid >= optimum["valid"] else found
                scheduler.on_trial_complete(trial, {"valid": valid, "epoch": fidelity})
            elif scheduler.on_trial_result(trial, {"valid": valid, "epoch": fidelity}) == SchedulerDecision.STOP:
                break
    record = {"searcher": name, "predictor": "none", "seed": seed, "schedule": name, "best_valid": best_valid,
              "best_test": best_test, "epochs": epochs, "full_epochs": full, "budget_epochs": budget,
              "epochs_to_optimum": found, "optimum": optimum}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record) + "\n")
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=30)
    parser.add_argument("--budget-epochs", type=int, default=20_000)
    parser.add_argument("--min", type=int, default=12)
    parser.add_argument("--max", type=int, default=200)
    parser.add_argument("--pruners", default=",".join(PRUNERS),
                        help=f"Optuna pruners ({', '.join(PRUNERS)}) and Syne Tune schedulers ({', '.join(SYNE_TUNE)}, "
                             f"where syne-tune is installed)  [default: %(default)s]")
    parser.add_argument("--out", default="runs/mf/peers")
    args = parser.parse_args()

    from tqdm.auto import tqdm

    from nasflow import get_space
    from nasflow.experiments import cost_compare
    from nasflow.loop import optimum_of

    space = get_space("nb201")
    oracle = space.open_oracle("nb201_cifar.csv", "cifar10")
    optimum = optimum_of(oracle)
    records = []
    for pruner in (p.strip() for p in args.pruners.split(",") if p.strip()):
        for seed in tqdm(range(args.seeds), desc=pruner if pruner in SYNE_TUNE else f"optuna-tpe + {pruner}", unit="run"):
            run = syne_tune_run if pruner in SYNE_TUNE else optuna_run
            records.append(run(pruner, seed, args.min, args.max, args.budget_epochs, space, oracle, optimum, args.out))
    print(cost_compare.format_table(cost_compare.summary_rows(records)))
    cost_compare.write_outputs(records, args.out)


if __name__ == "__main__":
    os.environ.setdefault("NASFLOW_BENCHMARKS", str(Path(__file__).resolve().parents[2] / "shared" / "benchmarks"))
    main()
