"""`nasflow spaces` and `nasflow info`."""
from __future__ import annotations

import click

from nasflow.errors import NasflowError

from .options import benchmark_option, dataset_option, show_progress, space_option


@click.command()
def spaces():
    """List the search spaces and their sizes."""
    from nasflow.spaces import SPACES, get_space

    sizes = {name: get_space(name).size for name in SPACES}
    counts = {name: "uncounted" if size is None else format(size, ",d") for name, size in sizes.items()}
    column, count_column = max(map(len, SPACES)), max(map(len, counts.values()))
    for name, (_, _, description) in SPACES.items():
        click.echo(f"{name:{column}s} {counts[name]:>{count_column}s} cells  {description}")


@click.command()
@space_option
@benchmark_option
@dataset_option
def info(space, benchmark, dataset):
    """Size of a space and the best cells of its benchmark table."""
    from nasflow.spaces import get_space

    sp = get_space(space)
    oracle = sp.open_oracle(benchmark, dataset, progress=show_progress())
    click.echo(f"space      {sp.name} ({sp.size:,d} cells)")
    click.echo(f"benchmark  {oracle.source} ({len(oracle):,d} cells, dataset {dataset})")
    if oracle.metric_note:
        click.echo(f"metrics    {oracle.metric_note}")
    for metric in ("valid", "test"):
        try:
            cells, value = oracle.best(metric)
        except NasflowError:
            click.echo(f"best {metric:5s} n/a in this benchmark")
            continue
        click.echo(f"best {metric:5s} {value:.4f}  {sp.format(cells[0])}")
        for extra in cells[1:]:
            click.echo(f"{'':16s}{sp.format(extra)} (tied)")

