"""Options shared by several commands, so each is spelled and documented once."""
from __future__ import annotations

import click

from nasflow.runs import MAX_SEED  # numpy only, no torch: keeps --help fast

space_option = click.option("--space", default="nb201", show_default=True, help="Search space (see `nasflow spaces`).")
benchmark_option = click.option(
    "--benchmark",
    default=None,
    metavar="PATH",
    help="Benchmark file (official file or table export); default: found in $NASFLOW_BENCHMARKS or ~/.nasflow.",
)
dataset_option = click.option("--dataset", default="cifar10", show_default=True, help="Benchmark dataset.")
# numpy and torch refuse negative seeds (RandomState and torch ones >= 2**32) deep inside a command, after
# work or a journal header; refused here as the option is parsed
SEED = click.IntRange(0, MAX_SEED)


def training_options(f):
    """--data/--epochs/--width/--cells: the training oracle used when there is no --benchmark."""
    from nasflow.training import DEFAULT_EPOCHS  # torch-free module: keeps --help fast

    options = [
        click.option("--data", "data_path", default=None, metavar="PATH.npz",
                     help="Train on your own images: .npz with x (N x C x H x W) and y (N labels); "
                          "default: the embedded 8x8 digits."),
        click.option("--epochs", type=click.IntRange(min=1), default=None,
                     help=f"Training epochs per queried cell (default {DEFAULT_EPOCHS})."),
        click.option("--width", type=click.IntRange(min=1), default=None,
                     help="Channels of the first stage of the trained network (default: small, e.g. 8 for nb201)."),
        click.option("--cells", type=click.IntRange(min=1), default=None,
                     help="Cells per stage of the trained network (default 1)."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def show_progress() -> bool:
    """Whether commands draw progress bars: at a terminal, or when NASFLOW_PROGRESS=1.

    In pipes and logs a bar would bury the one-line error a failing command ends with.
    """
    import os
    import sys

    return sys.stderr.isatty() or os.environ.get("NASFLOW_PROGRESS") == "1"
