"""Options shared by several commands, so each is spelled and documented once."""
from __future__ import annotations

import click

from nasflow.spec import DEFAULT, MAX_SEED  # no torch: keeps --help fast

space_option = click.option("--space", default=DEFAULT.space, show_default=True, help="Search space (see `nasflow spaces`).")
benchmark_option = click.option(
    "--benchmark",
    default=None,
    metavar="PATH",
    help="Benchmark file (official file or table export); default: found in $NASFLOW_BENCHMARKS or ~/.nasflow.",
)
dataset_option = click.option("--dataset", default=DEFAULT.dataset, show_default=True, help="Benchmark dataset.")
# numpy and torch refuse negative seeds (RandomState and torch ones >= 2**32) deep inside a command, after
# work or a journal header; refused here as the option is parsed
SEED = click.IntRange(0, MAX_SEED)


def training_options(f):
    """The training oracle used when there is no --benchmark: data, recipe and its overrides, hardware."""
    from nasflow.recipes import AUGMENTS, DEFAULT_RECIPE, PRECISIONS, PRESETS  # torch-free: keeps --help fast

    options = [
        click.option("--data", "data_path", default=None, metavar="PATH",
                     help="Train on your own images: an .npz with x (N x C x H x W) and y (N labels), or a folder "
                          "with one sub-folder of images per class; default: the embedded 8x8 digits."),
        click.option("--recipe", type=click.Choice(list(PRESETS)), default=None,
                     help=f"Training recipe: digits (5 epochs, batch 64) or nb201 (NAS-Bench-201's: 200 epochs, "
                          f"batch 256, crop+flip, C=16 N=5)  [default: {DEFAULT_RECIPE}]"),
        click.option("--epochs", type=click.IntRange(min=1), default=None,
                     help="Training epochs per queried cell  [default: the recipe's]"),
        click.option("--batch-size", type=click.IntRange(min=1), default=None,
                     help="Training batch size  [default: the recipe's]"),
        click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=None,
                     help="Initial learning rate (cosine to zero)  [default: the recipe's]"),
        click.option("--augment", type=click.Choice(list(AUGMENTS)), default=None,
                     help="standard: 4-pixel pad + random crop and horizontal flip, on the device  [default: the recipe's]"),
        click.option("--width", type=click.IntRange(min=1), default=None,
                     help="Channels of the first stage of the trained network  [default: the recipe's, or small]"),
        click.option("--cells", type=click.IntRange(min=1), default=None,
                     help="Cells per stage of the trained network  [default: the recipe's, or 1]"),
        click.option("--device", default=None, metavar="auto|cpu|cuda|cuda:N",
                     help="Where cells train; auto takes CUDA when there is one  [default: auto]"),
        click.option("--devices", default=None, metavar="0,1",
                     help="CUDA devices for --workers, assigned round-robin (several workers per GPU allowed)."),
        click.option("--precision", type=click.Choice(list(PRECISIONS)), default=None,
                     help="auto: bf16 autocast + channels_last on CUDA, fp32 on the CPU  [default: auto]"),
        click.option("--cuda-graph", is_flag=True, default=None,
                     help="Capture the whole training step in one CUDA graph (eager if capture fails)."),
        click.option("--checkpoint-every", type=click.FloatRange(min=0), default=None, metavar="SECONDS",
                     help="Checkpoint a long training this often, so a killed search resumes it  [default: 300]"),
    ]
    for option in reversed(options):
        f = option(f)
    return f


TRAINING_KEYS = ("data_path", "recipe", "epochs", "batch_size", "lr", "augment", "width", "cells", "precision")
HARDWARE_KEYS = ("device", "devices", "cuda_graph", "checkpoint_every")


def training_settings(given: dict) -> dict:
    """Move the training options out of ``given`` (the command's keyword arguments) into the run settings'
    ``training`` (what decides the measurement, part of a run's identity) and ``hardware`` (where it runs)."""
    training = {("data" if k == "data_path" else k): given.pop(k) for k in TRAINING_KEYS}
    hardware = {k: given.pop(k) for k in HARDWARE_KEYS}
    return {**given, "training": {k: v for k, v in training.items() if v is not None},
            "hardware": {k: v for k, v in hardware.items() if v is not None} or None}


def show_progress() -> bool:
    """Whether commands draw progress bars: at a terminal, or when NASFLOW_PROGRESS=1.

    In pipes and logs a bar would bury the one-line error a failing command ends with.
    """
    import os
    import sys

    return sys.stderr.isatty() or os.environ.get("NASFLOW_PROGRESS") == "1"


SCHEDULE_HELP = ("Multi-fidelity schedule KIND:min=EPOCHS,max=EPOCHS,eta=ETA[,n=CELLS][,local=W][,scout=1][,around=K]"
                 "[,model=ridge]; "
                 "KIND is sh (successive halving), hyperband or asha, e.g. sh:min=12,max=200,eta=3 on NB-201 (12 and 200 "
                 "epochs). The budget is then training epochs, a promotion costing only its extra epochs. model=ridge: a "
                 "model fitted on every rung's results ranks the proposals and the promotions by predicted full-fidelity "
                 "valid. asha only: local=W promotes the best full cell's neighbours from the top W/eta of the rung below; "
                 "scout=1 screens its untried neighbours before new cells, untold to the searcher; around=K centres both "
                 "on the K best full cells")
budget_epochs_option = click.option(
    "--budget-epochs", type=click.IntRange(min=1), default=None, metavar="EPOCHS",
    help="Training epochs a scheduled run may spend  [default: --budget full trainings, budget x the schedule's max]")
