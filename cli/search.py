"""`nasflow search` and `nasflow compare`: options in, the loop in nasflow.experiments.runs/compare, a summary out."""
from __future__ import annotations

from pathlib import Path

import click

from nasflow.errors import NasflowError

from .options import SEED, benchmark_option, show_progress, training_options, training_settings

_PREDICTOR_HELP = "fgp (FGP-pretrained GIN fine-tuned online), scratch (same GIN, random init), none, or a saved predictor PATH."


def _loop_options(f):
    options = [
        click.option("--budget", type=int, default=None, help="Oracle queries  [default: 100; 50 when training on data]"),
        click.option("--pool", type=int, default=None,
                     help="Candidates the predictor ranks per step  [default: 100; 25 for tpe]"),
        click.option("--batch", type=int, default=None, help="Cells queried per step  [default: 1]"),
        click.option("--refit-every", type=int, default=None, help="Queries between predictor re-fits  [default: 5]"),
        click.option("--explore", type=float, default=None,
                     help="Share of queries that take the searcher's own proposal, not the predictor's pick  [default: 0.2]"),
        click.option("--dataset", default=None, help="Benchmark dataset; search on its valid split  [default: cifar10]"),
        click.option("--warm-start", default=None, metavar="PROXY[:SAMPLES]",
                     help="Start evolution/bananas from the best of SAMPLES uniform cells by a zero-cost proxy, "
                          "e.g. synflow:1000 (random and tpe ignore it in compare)  [default: none]"),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def _fmt(value, spec=".4f"):
    return "n/a" if value is None else format(value, spec)


@click.command("search")
@click.option("--space", default=None, help="Search space (see `nasflow spaces`)  [default: nb201]")
@click.option("--searcher", default=None, help="random, evolution, tpe or bananas  [default: evolution]")
@click.option("--predictor", default=None, metavar="fgp|scratch|none|PATH", help=_PREDICTOR_HELP + "  [default: none]")
@_loop_options
@benchmark_option
@training_options
@click.option("--seed", type=SEED, default=None, help="Seed of the searcher, predictor and loop  [default: 0]")
@click.option("--out", default=None, metavar="RUN_DIR", help="Run directory (journal, result.json, trajectory.csv).")
@click.option("--resume", default=None, metavar="RUN_DIR", help="Continue the killed run in RUN_DIR with its own settings.")
@click.option("--storage", default=None, metavar="URL",
              help="Share the search through an Optuna storage: sqlite:///file.db, postgresql://..., or a journal file path.")
@click.option("--study", default=None, metavar="NAME", help="Study name in --storage; joins it if it exists  [default: nasflow]")
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="Worker processes on this machine for --storage  [default: 1]")
@click.option("--stale-after", type=click.FloatRange(min=0, min_open=True), default=None, metavar="SECONDS",
              help="Release a claimed cell whose worker's heartbeat stopped this long ago  [default: 60]")
def search(space, searcher, predictor, budget, pool, batch, refit_every, explore, dataset, warm_start, benchmark,
           seed, out, resume, storage, study, workers, stale_after, **training):
    """Search a space for the best cell within a budget of oracle queries."""
    import time

    from nasflow.journal import IDENTITY, JournalError, read_header
    from nasflow.paths import output_dir
    from nasflow.experiments.runs import complete, continued, run_search

    given = training_settings(dict(space=space, searcher=searcher, predictor=predictor, budget=budget, pool=pool,
                                   batch=batch, refit_every=refit_every, explore=explore, dataset=dataset,
                                   warm_start=warm_start, benchmark=benchmark, seed=seed, **training))
    if storage is None and (study is not None or workers is not None or stale_after is not None):
        raise NasflowError("--study, --workers and --stale-after need --storage URL (the shared Optuna storage)")
    if storage is not None:
        if resume is not None:
            raise NasflowError("--resume continues a run directory; a --storage study resumes by running it again")
        from nasflow.experiments.distributed import DEFAULT_STALE_AFTER, run_study

        study = study or "nasflow"
        if out is not None:
            output_dir(out, "run directory")  # checked before the study runs, not after
        result = run_study(given, storage, study, workers=workers or 1,
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
        header = read_header(resume)
        for key in IDENTITY + ("benchmark",):
            if given.get(key) is not None and key in header and complete(given)[key] != header[key]:
                raise JournalError(f"{resume} was made with {key}={header[key]!r}, not {complete(given)[key]!r}; "
                                   f"resume it without changing that option")
        settings = continued(header, given)
        run_dir = Path(resume)
    else:
        settings = complete(given)
        run_dir = Path(out) if out is not None else Path("runs") / (
            f"{settings['space']}-{settings['searcher']}-{Path(settings['predictor']).name}-seed{settings['seed']}-"
            f"{time.strftime('%Y%m%d-%H%M%S')}")
    if resume is None:
        output_dir(run_dir, "run directory")  # before a warm start or pre-training spends minutes
    # the run saves its results in run_dir itself, under the run directory's lock
    result = run_search(settings, run_dir=run_dir, resume=resume is not None, progress=show_progress())
    if result.notice:
        click.echo(f"nasflow: warning: {result.notice}", err=True)
    _report(run_dir, settings, result)


def _report(where, settings, result) -> None:
    s = result.summary()
    click.echo(f"run        {where}")
    click.echo(f"search     {settings['space']} with {settings['searcher']} + predictor {settings['predictor']}, seed {settings['seed']}")
    click.echo(f"oracle     {result.config.get('oracle', '')}")
    click.echo(f"queries    {s['queries']} (of budget {settings['budget']}; {s['resumed_queries']} from "
               f"{'the study' if 'study' in result.config else 'the journal'})")
    click.echo(f"best cell  {s['best_arch']}")
    click.echo(f"valid      {_fmt(s['best_valid'])}" + (f"  (regret {_fmt(s.get('regret_valid'))} to the table's {_fmt(s.get('optimum_valid'))})" if "optimum_valid" in s else ""))
    click.echo(f"test       {_fmt(s['best_test'])}" + (f"  (regret {_fmt(s.get('regret_test'))} to the table's {_fmt(s.get('optimum_test'))})" if "optimum_test" in s else ""))
    if "queries_to_optimum" in s:
        found = s["queries_to_optimum"]
        click.echo(f"optimum    {'best-valid cell found after ' + str(found) + ' queries' if found else 'best-valid cell not found'}")
    click.echo(f"overhead   {s['overhead_per_query_s']:.3f} s per query outside the oracle")
    speed = result.config.get("training_speed")
    if speed:
        click.echo(f"training   on {speed['device']}: {speed['images_per_s']:,.0f} images/s on average over "
                   f"{speed['trainings']} training(s) in this session")


@click.command("compare")
@click.option("--space", default="nb201", show_default=True, help="Search space.")
@click.option("--searchers", default="random,evolution,tpe,bananas", show_default=True, help="Comma-separated searchers.")
@click.option("--predictor", "predictors", default="none,scratch,fgp", show_default=True,
              help="Comma-separated predictors: fgp, scratch, none or saved predictor paths.")
@click.option("--seeds", type=int, default=30, show_default=True, help="Seeds 0..N-1 per combination.")
@_loop_options
@benchmark_option
@click.option("--predictor-seed", type=SEED, default=None,
              help="Seed of every run's predictor (pre-training + fine-tuning)  [default: the run's seed mod 5]")
@click.option("--jobs", type=int, default=None, help="Worker processes  [default: min(2, CPUs)]")
@click.option("--out", default="compare", show_default=True, metavar="DIR",
              help="Output directory: curves.csv, summary.csv, curves.png, runs/ (finished runs are reused).")
def compare(space, searchers, predictors, seeds, budget, pool, batch, refit_every, explore, dataset, warm_start, benchmark,
            predictor_seed,
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
            "dataset": dataset, "warm_start": warm_start, "benchmark": benchmark, "predictor_seed": predictor_seed}
    if benchmark is None:
        from nasflow.spaces import get_space

        # comparisons need a table: running 30 seeds x 12 combinations through real training is not a default
        get_space(space).open_oracle(None, dataset or "cifar10")
    jobs = jobs if jobs is not None else min(2, os.cpu_count() or 1)
    records = cmp.compare(names, kinds, seeds, out, base={k: v for k, v in base.items() if v is not None},
                          jobs=jobs, progress=show_progress())
    paths = cmp.write_outputs(records, out, kinds)
    click.echo(cmp.format_table(cmp.summary_rows(records)))
    paired = cmp.format_paired(cmp.paired_rows(records, kinds))
    if paired:
        click.echo(paired)
    click.echo(f"wrote {', '.join(str(p) for p in paths.values())}")
