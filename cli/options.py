"""Options shared by several commands, so each is spelled and documented once."""
from __future__ import annotations

import click

space_option = click.option("--space", default="nb201", show_default=True, help="Search space (see `nasflow spaces`).")
benchmark_option = click.option(
    "--benchmark",
    default=None,
    metavar="PATH",
    help="Benchmark file (official file or table export); default: found in $NASFLOW_BENCHMARKS or ~/.nasflow.",
)
dataset_option = click.option("--dataset", default="cifar10", show_default=True, help="Benchmark dataset.")
