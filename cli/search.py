"""`nasflow search` and `nasflow compare`: options in, the loop in nasflow.experiments.runs/compare, a summary out."""
from __future__ import annotations

from pathlib import Path

import click

from nasflow.errors import NasflowError
from nasflow.experiments.runs import (  # torch-free: keeps --help fast
    describe_restriction, searcher_declared_options, searcher_option_value, searcher_pools, warm_start_searchers,
)
from nasflow.searchers import COMPARED_BY_DEFAULT, SEARCHERS
from nasflow.spec import (
    DEFAULT, DEFAULT_BUDGET, DEFAULT_POOL, DEFAULT_STALE_AFTER, DEFAULT_WORKERS, PREDICTOR_SEEDS, TRAINING_BUDGET,
)

from .options import (
    SCHEDULE_HELP, SEED, benchmark_option, budget_epochs_option, show_progress, training_options, training_settings,
)

_PREDICTOR_HELP = "fgp (FGP-pretrained GIN fine-tuned online), scratch (same GIN, random init), none, or a saved predictor PATH."


def _searcher_options(ctx, param, items) -> dict | None:
    """{'population': 40} from ('population=40',): an integer, else a number, else the text; the searcher checks them."""
    options = {}
    for item in items:
        key, eq, text = (part.strip() for part in item.partition("="))
        if not eq or not key:
            raise NasflowError(f"--searcher-option {item!r} is not KEY=VALUE, e.g. population=40")
        options[key] = searcher_option_value(text)
    return options or None


def _loop_options(f):
    pools = "".join(f"; {pool} for {name}" for name, pool in searcher_pools().items())
    warm = warm_start_searchers()
    declared = "; ".join(f"{name}: {', '.join(opts)}" for name, opts in searcher_declared_options().items())
    options = [
        click.option("--budget", type=int, default=None,
                     help=f"Oracle queries  [default: {DEFAULT_BUDGET}; {TRAINING_BUDGET} when training on data]"),
        click.option("--pool", type=int, default=None,
                     help=f"Candidates the predictor ranks per step  [default: {DEFAULT_POOL}{pools}]"),
        click.option("--batch", type=int, default=None, help=f"Cells queried per step  [default: {DEFAULT.batch}]"),
        click.option("--refit-every", type=int, default=None,
                     help=f"Queries between predictor re-fits  [default: {DEFAULT.refit_every}]"),
        click.option("--explore", type=float, default=None,
                     help=f"Share of queries that take the searcher's own proposal, not the predictor's pick  "
                          f"[default: {DEFAULT.explore}]"),
        click.option("--searcher-option", "searcher_options", multiple=True, metavar="KEY=VALUE",
                     callback=_searcher_options,
                     help=f"An option of the searcher (repeatable), e.g. population=40 ({declared})  "
                          f"[default: the searcher's]"),
        click.option("--dataset", default=None,
                     help=f"Benchmark dataset; search on its valid split  [default: {DEFAULT.dataset}]"),
        click.option("--warm-start", default=None, metavar="PROXY[:SAMPLES]",
                     help=f"Start {'/'.join(warm)} from the best of SAMPLES uniform cells by a zero-cost proxy, "
                          f"e.g. synflow:1000 (the other searchers ignore it in compare)  [default: none]"),
        click.option("--constraint", "constraints", multiple=True, metavar="METRIC<=BOUND",
                     help="Search only cells that satisfy it (repeatable): params or flops of the official network "
                          "(suffixes K, M, G), or a column of --metrics-table; operators <=, <, >=, >, "
                          "e.g. --constraint pixel3<=20 --constraint params<=1.0M"),
        click.option("--objectives", default=None, metavar="METRIC,-METRIC",
                     help="Search for the Pareto front of several objectives, '-' to minimise: valid (the oracle's "
                          "accuracy) and cost metrics as for --constraint, e.g. valid,-pixel3; searchers random, "
                          "nsga2, tpe (MOTPE) and hvi (predictor-guided)  [default: valid alone]"),
        click.option("--metrics-table", default=None, metavar="PATH",
                     help="CSV of measured cost metrics per cell (an arch column, one metric per numeric column), "
                          "e.g. nb201_latency_ms.csv; found like benchmark files."),
        click.option("--latency-batch", type=click.IntRange(min=1), default=None, metavar="N",
                     help="Images per timed forward pass of a latency constraint or objective (measured live on this machine: "
                          "the network a training search trains, on its device, else the official one on the CPU)  "
                          "[default: 1]"),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def _fmt(value, spec=".4f"):
    return "n/a" if value is None else format(value, spec)


@click.command("search")
@click.option("--space", default=None, help=f"Search space (see `nasflow spaces`)  [default: {DEFAULT.space}]")
@click.option("--searcher", default=None, help=f"{', '.join(SEARCHERS)}  [default: {DEFAULT.searcher}]")
@click.option("--predictor", default=None, metavar="fgp|scratch|none|PATH",
              help=f"{_PREDICTOR_HELP}  [default: {DEFAULT.predictor}]")
@_loop_options
@benchmark_option
@training_options
@click.option("--seed", type=SEED, default=None, help=f"Seed of the searcher, predictor and loop  [default: {DEFAULT.seed}]")
@click.option("--schedule", default=None, metavar="KIND:min=..,max=..,eta=..", help=f"{SCHEDULE_HELP}  [default: none]")
@budget_epochs_option
@click.option("--out", default=None, metavar="RUN_DIR", help="Run directory (journal, result.json, trajectory.csv).")
@click.option("--resume", default=None, metavar="RUN_DIR", help="Continue the killed run in RUN_DIR with its own settings.")
@click.option("--storage", default=None, metavar="URL",
              help="Share the search through an Optuna storage: sqlite:///file.db, postgresql://..., or a journal file path.")
@click.option("--study", default=None, metavar="NAME", help="Study name in --storage; joins it if it exists  [default: nasflow]")
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help=f"Worker processes on this machine: for --storage [default: {DEFAULT_WORKERS}], or for an "
                   f"asha --schedule, whose jobs they train as they free up  [default: none, one process]")
@click.option("--stale-after", type=click.FloatRange(min=0, min_open=True), default=None, metavar="SECONDS",
              help=f"Release a claimed cell whose worker's heartbeat stopped this long ago  [default: {DEFAULT_STALE_AFTER:g}]")
def search(space, searcher, predictor, budget, pool, batch, refit_every, explore, searcher_options, dataset, warm_start,
           constraints, objectives, metrics_table, latency_batch, benchmark, seed, schedule, budget_epochs, out, resume,
           storage, study, workers, stale_after, **training):
    """Search a space for the best cell within a budget of oracle queries."""
    from nasflow.experiments.runs import complete, default_run_dir, resumed, run_search
    from nasflow.paths import output_dir

    given = training_settings(dict(space=space, searcher=searcher, predictor=predictor, budget=budget, pool=pool,
                                   batch=batch, refit_every=refit_every, explore=explore,
                                   searcher_options=searcher_options, dataset=dataset,
                                   warm_start=warm_start, constraints=list(constraints) or None,
                                   objectives=objectives, metrics_table=metrics_table, latency_batch=latency_batch,
                                   benchmark=benchmark, seed=seed, schedule=schedule, budget_epochs=budget_epochs,
                                   **training))
    if storage is None and (study is not None or stale_after is not None):
        raise NasflowError("--study and --stale-after need --storage URL (the shared Optuna storage)")
    if storage is not None and (schedule is not None or budget_epochs is not None):
        raise NasflowError("--schedule runs on one machine, not on a shared study: drop --storage (an asha schedule takes "
                           "--workers N), or --schedule for a shared study")
    if storage is not None:
        if resume is not None:
            raise NasflowError("--resume continues a run directory; a --storage study resumes by running it again")
        from nasflow.experiments.distributed import run_study

        study = study or "nasflow"
        if out is not None:
            output_dir(out, "run directory")  # checked before the study runs, not after
        result = run_study(given, storage, study, workers=workers or DEFAULT_WORKERS,
                           stale_after=stale_after or DEFAULT_STALE_AFTER, progress=show_progress())
        if result.notice:
            click.echo(f"nasflow: warning: {result.notice}", err=True)
        if out is not None:
            result.save(out)
        _report(f"study {study} in {storage}" + (f" (saved to {out})" if out else ""), result.config, result)
        return
    if resume is not None:
        if out is not None and Path(out).resolve() != Path(resume).resolve():
            raise NasflowError("pass either --out or --resume: --resume RUN_DIR continues the run in RUN_DIR")
        spec, run_dir = resumed(resume, given), Path(resume)
    else:
        spec = complete(given)
        run_dir = Path(out) if out is not None else default_run_dir(spec)
        output_dir(run_dir, "run directory")  # before a warm start or pre-training spends minutes
    # the run saves its results in run_dir itself, under the run directory's lock
    result = run_search(spec, run_dir=run_dir, resume=resume is not None, progress=show_progress(), workers=workers)
    if result.notice:
        click.echo(f"nasflow: warning: {result.notice}", err=True)
    _report(run_dir, spec, result)


def _report(where, settings, result) -> None:
    """The summary of a finished run; ``settings`` is its spec, or a study's result config (the spec's JSON and more)."""
    s = result.summary()
    click.echo(f"run        {where}")
    options = settings.get("searcher_options") or {}
    searcher = settings["searcher"] + (f" ({', '.join(f'{k}={v}' for k, v in options.items())})" if options else "")
    click.echo(f"search     {settings['space']} with {searcher} + predictor {settings['predictor']}, seed {settings['seed']}")
    click.echo(f"oracle     {result.config.get('oracle', '')}")
    restricted = describe_restriction(result.config)
    if restricted:
        click.echo(f"space      {restricted}")
    if "epochs" in s:  # a scheduled run (nasflow.scheduled_loop)
        click.echo(f"schedule   {result.config['schedule']} (rungs {', '.join(map(str, result.config['rungs']))} epochs)")
        scouted = f", {s['scouted']} scouted" if s.get("scouted") else ""
        click.echo(f"trainings  {s['queries']} ({s['full_fidelity_trainings']} to full fidelity{scouted}), {s['epochs']:,d} epochs "
                   f"of budget {result.config['budget_epochs']:,d}; {s['resumed_queries']} from the journal")
    else:
        click.echo(f"queries    {s['queries']} (of budget {settings['budget']}; {s['resumed_queries']} from "
                   f"{'the study' if 'study' in result.config else 'the journal'})")
    click.echo(f"best cell  {s['best_arch']}")
    # a constrained search queries feasible cells only: its best cell and the optimum are the feasible ones
    feasible = "feasible " if result.config.get("constraints") else ""
    table = f"the table's {feasible}best"
    click.echo(f"valid      {_fmt(s['best_valid'])}" + (f"  (regret {_fmt(s.get('regret_valid'))} to {table} {_fmt(s.get('optimum_valid'))})" if "optimum_valid" in s else ""))
    click.echo(f"test       {_fmt(s['best_test'])}" + (f"  (regret {_fmt(s.get('regret_test'))} to {table} {_fmt(s.get('optimum_test'))})" if "optimum_test" in s else ""))
    if "epochs_to_optimum" in s:
        found = s["epochs_to_optimum"]
        click.echo(f"optimum    {feasible}best-valid cell {'trained to full fidelity after ' + format(found, ',d') + ' epochs' if found else 'not found'}")
    if "queries_to_optimum" in s:
        found = s["queries_to_optimum"]
        click.echo(f"optimum    {feasible}best-valid cell {'found after ' + str(found) + ' queries' if found else 'not found'}")
    click.echo(f"overhead   {s['overhead_per_query_s']:.3f} s per query outside the oracle")
    if getattr(result, "front", None):
        _report_front(result.front, where)
    speed = result.config.get("training_speed")
    if speed:
        click.echo(f"training   on {speed['device']}: {speed['images_per_s']:,.0f} images/s on average over "
                   f"{speed['trainings']} training(s) in this session")


def _report_front(report: dict, where) -> None:
    """A multi-objective run's front, one line per cell, and its hypervolume against the table's true front."""
    names = [o.lstrip("-") for o in report["objectives"]]
    click.echo(f"front      {len(report['front'])} cells of the {len(report['points'])} queried are on the Pareto "
               f"front of {','.join(report['objectives'])} (front.csv, front.png in {where}):")
    click.echo("           " + "  ".join(f"{n:>12s}" for n in names) + f"  {'test':>8s}  cell")
    for row in report["front"]:
        click.echo("           " + "  ".join(f"{row[n]:12.6g}" for n in names) + f"  {_fmt(row['test'], '8.3f')}  {row['arch']}")
    hv = report["hypervolume"][-1]
    line = f"hypervol.  {hv:.6g} with reference {report['reference_note']}"
    if "true_hypervolume" in report:
        line += f"; the table's true front {report['true_hypervolume']:.6g} ({hv / report['true_hypervolume']:.1%})"
    click.echo(line)


@click.command("compare")
@click.option("--space", default=DEFAULT.space, show_default=True, help="Search space.")
@click.option("--searchers", default=",".join(COMPARED_BY_DEFAULT), show_default=True,
              help=f"Comma-separated searchers, of {', '.join(SEARCHERS)}.")
@click.option("--predictor", "predictors", default="none,scratch,fgp", show_default=True,
              help="Comma-separated predictors: fgp, scratch, none or saved predictor paths.")
@click.option("--seeds", type=int, default=30, show_default=True, help="Seeds 0..N-1 per combination.")
@_loop_options
@benchmark_option
@click.option("--schedule", "schedules", multiple=True, metavar="KIND:min=..,max=..,eta=..|none",
              help=f"{SCHEDULE_HELP}. Repeatable; none: every cell at full fidelity. With any, the outputs are "
                   f"curves against training epochs (cost_*.csv, cost_curves.png)")
@budget_epochs_option
@click.option("--predictor-seed", type=SEED, default=None,
              help=f"Seed of every run's predictor (pre-training + fine-tuning)  [default: the run's seed mod {PREDICTOR_SEEDS}]")
@click.option("--jobs", type=int, default=None, help="Worker processes  [default: min(2, CPUs)]")
@click.option("--out", default="compare", show_default=True, metavar="DIR",
              help="Output directory: curves.csv, summary.csv, curves.png, runs/ (finished runs are reused).")
def compare(space, searchers, predictors, seeds, budget, pool, batch, refit_every, explore, searcher_options, dataset,
            warm_start, constraints, objectives, metrics_table, latency_batch, benchmark, schedules, budget_epochs, predictor_seed,
            jobs, out):
    """Every searcher x predictor over seeds: anytime curves (CSV + PNG) and a summary table."""
    import os

    from nasflow.experiments import compare as cmp
    from nasflow.paths import output_dir

    output_dir(out, "compare output folder")  # before hours of runs, not after
    names = [s.strip() for s in searchers.split(",") if s.strip()]
    kinds = [p.strip() for p in predictors.split(",") if p.strip()]
    if not names or not kinds:
        raise NasflowError("--searchers and --predictor each need at least one name")
    base = {"space": space, "budget": budget, "pool": pool, "batch": batch, "refit_every": refit_every, "explore": explore,
            "searcher_options": searcher_options, "dataset": dataset, "warm_start": warm_start, "benchmark": benchmark, "predictor_seed": predictor_seed,
            "constraints": list(constraints) or None, "metrics_table": metrics_table, "latency_batch": latency_batch,
            "objectives": objectives}
    if benchmark is None:
        from nasflow.spaces import get_space

        # comparisons need a table: running 30 seeds x 12 combinations through real training is not a default
        get_space(space).open_oracle(None, dataset or DEFAULT.dataset)
    jobs = jobs if jobs is not None else min(2, os.cpu_count() or 1)
    if schedules or budget_epochs is not None:
        _compare_costs(names, kinds, seeds, out, base, schedules, budget_epochs, jobs)
        return
    records = cmp.compare(names, kinds, seeds, out, base=base, jobs=jobs, progress=show_progress())
    paths = cmp.write_outputs(records, out, kinds)
    if constraints:
        click.echo(f"constrained by {', '.join(records[0]['settings']['constraints'])}: every run queried feasible cells "
                   f"only, and its optimum is the table's best feasible cell")
    click.echo(cmp.format_table(cmp.summary_rows(records), cmp.merit(records)))
    click.echo(cmp.format_anytime(records))
    if objectives:
        from nasflow.experiments.fronts import format_hypervolume

        click.echo(format_hypervolume(records))
    paired = cmp.format_paired(cmp.paired_rows(records, kinds))
    if paired:
        click.echo(paired)
    click.echo(f"wrote {', '.join(str(p) for p in paths.values())}")


def _compare_costs(names, kinds, seeds, out, base, schedules, budget_epochs, jobs) -> None:
    """The grid once per schedule ('none': at full fidelity), compared in training epochs."""
    from nasflow.experiments import compare as cmp
    from nasflow.experiments import cost_compare
    from nasflow.schedulers import Schedule

    if not schedules:
        raise NasflowError("--budget-epochs is the budget of a scheduled comparison; add --schedule KIND:...")
    for text in schedules:  # every schedule checked before the first runs
        if text != cost_compare.NO_SCHEDULE:
            Schedule.parse(text)
    records = []
    for text in schedules:
        scheduled = text != cost_compare.NO_SCHEDULE
        given = {**base, "schedule": text if scheduled else None, "budget_epochs": budget_epochs if scheduled else None}
        records += cmp.compare(names, kinds, seeds, out, base=given, jobs=jobs, progress=show_progress())
    metric = cmp.merit(records)
    paths = cost_compare.write_outputs(records, out, metric)
    click.echo(cost_compare.format_table(cost_compare.summary_rows(records, metric), metric))
    click.echo(f"wrote {', '.join(str(p) for p in paths.values())}")
