"""`nasflow train-predictor` and `nasflow evaluate-predictor` (the field's protocol)."""
from __future__ import annotations

import click

from nasflow.devices import torch_threads

from .options import SEED, benchmark_option, dataset_option, show_progress, space_option

# spelled out rather than imported: predictors.encoders imports torch, which `--help` must not
# (tests/test_predictor.py checks the two lists agree)
ENCODER_CHOICES = click.Choice(["gin", "gatedgcn", "flow", "flan"])
PRETRAIN_CHOICES = click.Choice(["fgp", "none"])


def _ratio(ctx, param, value):
    ratios = value if isinstance(value, tuple) else (value,)
    for r in ratios:
        if not 0 < r <= 1:
            raise click.BadParameter(f"{r:g} is outside (0, 1]; use e.g. 0.01 for 1% of the pool", param=param)
    return value


def _int_list(ctx, param, value):
    try:
        return tuple(int(x) for x in value.split(",") if x.strip())
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a comma-separated list of integers", param=param) from None


def _float_list(ctx, param, value):
    try:
        ratios = tuple(float(x) for x in value.split(",") if x.strip())
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a comma-separated list of numbers", param=param) from None
    if not ratios:
        raise click.BadParameter("give at least one ratio", param=param)
    return _ratio(ctx, param, ratios)


def _labeled_cells(space, oracle):
    """Every cell of the benchmark with its `*_valid` label, in the space's official order."""
    import numpy as np

    from nasflow.predictors.fgp import ENUMERATE_LIMIT

    if space.enumerable and space.size <= ENUMERATE_LIMIT:
        archs = [a for a in space.enumerate() if a in oracle]
    else:
        archs = sorted(oracle.archs(), key=lambda a: a.key)
    return archs, np.array([oracle.query(a).valid for a in archs], dtype=np.float64)


def _pool(space, n_cells, pool):
    from nasflow.errors import DataError
    from nasflow.predictors.protocol import N_VAL

    pool = pool or space.protocol_pool or n_cells // 2
    if not 2 <= pool < n_cells - N_VAL:
        raise DataError(f"a training pool of {pool} cells does not fit {n_cells} benchmark cells; pass a smaller --pool")
    return pool


@click.command("train-predictor")
@space_option
@benchmark_option
@dataset_option
@click.option("--encoder", type=ENCODER_CHOICES, default="gin", show_default=True)
@click.option("--pretrain", type=PRETRAIN_CHOICES, default="fgp", show_default=True, help="FGP pre-training or none.")
@click.option("--proxy", default="flops", show_default=True, metavar="NAME[+NAME...]",
              help="FGP's auxiliary ranking target: a zero-cost proxy (`nasflow proxies`), or several joined by '+' "
                   "for their rank vote, e.g. synflow+jacov+naswot (network proxies are computed for every "
                   "pre-training cell first).")  # fmt: skip
@click.option("--train-ratio", type=float, default=0.01, show_default=True, callback=_ratio,
              help="Share of the training pool used as labeled cells, in (0, 1].")  # fmt: skip
@click.option("--pool", type=int, default=None, help="Training pool size (default: the field's, 7,813 for nb201).")
@click.option("--perm-seed", type=SEED, default=21, show_default=True, help="Permutation of the cells (21 = official order).")
@click.option("--seed", type=SEED, default=0, show_default=True, help="Model seed.")
@click.option("--epochs", type=click.IntRange(min=1), default=None,
              help="Fine-tuning epochs (default: the predictor's, 200; 50 with --init-from).")  # fmt: skip
@click.option("--unified", is_flag=True,
              help="Shared NB-101/NB-201 op vocabulary: the saved predictor can seed --init-from in the other space.")  # fmt: skip
@click.option("--init-from", "init_from", metavar="PATH", default=None,
              help="Start from a saved predictor (other dataset, or a --unified one of the other space) instead of "
                   "pre-training; its encoder settings are used.")  # fmt: skip
@click.option("--out", required=True, metavar="PATH", help="Where to save the trained predictor.")
@torch_threads(1)  # the predictors' tiny graphs gain nothing from more threads
def train_predictor(space, benchmark, dataset, encoder, pretrain, proxy, train_ratio, pool, perm_seed, seed, epochs,
                    unified, init_from, out):  # fmt: skip
    """Train a predictor on the field's split and save it.

    Trains on the first ratio x pool cells of a seeded permutation, selects the model on
    the next 40 cells after the pool, and reports ranking quality on all other cells.
    With --init-from, fine-tuning starts from that predictor and is gentle (learning rate
    1e-4, 50 epochs): a few target labels should nudge a good source, not overwrite it.
    """
    from nasflow import Predictor, get_space
    from nasflow.metrics import ranking_report
    from nasflow.predictors.protocol import field_split

    from nasflow.paths import output_file

    output_file(out, "predictor file")  # before the training, which an unwritable --out used to lose
    progress = show_progress()
    sp = get_space(space)
    oracle = sp.open_oracle(benchmark, dataset, progress=progress)
    archs, values = _labeled_cells(sp, oracle)
    train, val, test = field_split(len(archs), perm_seed, train_ratio, _pool(sp, len(archs), pool))
    options = {"encoder": encoder, "pretrain": pretrain, "proxy": proxy, "unified": unified}
    source = None
    if init_from:
        source = Predictor.load(init_from)
        # the architecture must be the source's; fine-tuning settings from docs/RESULTS.md (transfer)
        keep = ("encoder", "dim", "layers", "dropout", "unified", "features", "zcp_proxies")
        options = {**{k: source.config()[k] for k in keep}, "pretrain": "none", "lr": 1e-4, "epochs": 50}
    predictor = Predictor(sp, seed=seed, **{**options, **({"epochs": epochs} if epochs else {})})
    predictor.fit([archs[i] for i in train], values[train], [archs[i] for i in val], values[val], progress=progress,
                  init_from=source)  # fmt: skip
    report = ranking_report(predictor.predict([archs[i] for i in test]), values[test])
    predictor.save(out)
    if source is not None:
        start = f"from {init_from} ({source.space.name})"
    elif pretrain == "fgp":
        start = "FGP " + ("loaded from cache" if predictor.pretrain_from_cache else "pre-trained")
    else:
        start = "no pre-training"
    click.echo(f"{predictor.encoder} ({start}), {len(train)} training cells")
    click.echo(f"validation Kendall tau {max(predictor.fit_history):.3f} on {len(val)} cells (best epoch kept)")
    click.echo(
        f"test on {len(test):,d} cells: Kendall tau {report['tau']:.3f}  Spearman rho {report['rho']:.3f}  "
        f"P@1% {report['p@1%']:.3f}  P@5% {report['p@5%']:.3f}"
    )
    click.echo(f"saved {out}")


@click.command("evaluate-predictor")
@space_option
@benchmark_option
@dataset_option
@click.option("--encoder", "encoders", type=ENCODER_CHOICES, multiple=True, default=("gin", "gatedgcn"), show_default=True)
@click.option("--pretrain", "pretrains", type=PRETRAIN_CHOICES, multiple=True, default=("none", "fgp"), show_default=True)
@click.option("--ratios", default="0.01,0.05,0.1", show_default=True, callback=_float_list, help="Train ratios in (0, 1].")
@click.option("--seeds", default="21,2021,202121", show_default=True, callback=_int_list, help="Model seeds.")
@click.option("--perms", default="21,2021,202121", show_default=True, callback=_int_list, help="Permutation seeds.")
@click.option("--pool", type=int, default=None, help="Training pool size (default: the field's, 7,813 for nb201).")
@click.option("--epochs", type=click.IntRange(min=1), default=None, help="Fine-tuning epochs (default: the predictor's, 200).")
@torch_threads(1)
def evaluate_predictor(space, benchmark, dataset, encoders, pretrains, ratios, seeds, perms, pool, epochs):
    """Run the field's predictor protocol and print mean ± std of tau, rho, P@1%, P@5%.

    Pool = first 7,813 cells of a seeded permutation; train on the first ratio x pool,
    validate on the next 40 after the pool, test on the rest; every model seed x
    permutation; supervised and FGP side by side.
    """
    from tqdm.auto import tqdm

    from nasflow import get_space
    from nasflow.predictors.protocol import format_table, run_protocol, summarise

    if not seeds or not perms:
        raise click.BadParameter("give at least one seed and one permutation")
    progress = show_progress()
    sp = get_space(space)
    oracle = sp.open_oracle(benchmark, dataset, progress=progress)
    archs, values = _labeled_cells(sp, oracle)
    pool = _pool(sp, len(archs), pool)
    total = len(encoders) * len(pretrains) * len(seeds) * len(perms) * len(ratios)
    with tqdm(total=total, desc="protocol runs", unit="run", disable=not progress) as bar:
        runs = run_protocol(
            sp, archs, values, encoders=encoders, pretrains=pretrains, ratios=ratios, seeds=seeds,
            perm_seeds=perms, pool=pool, options={"epochs": epochs} if epochs else None, progress=progress,
            on_run=lambda run: bar.update(1),
        )  # fmt: skip
    labels = f"{dataset} labels ({oracle.metric_note})" if oracle.metric_note else f"{dataset} validation labels"
    click.echo(f"{sp.name}, {labels}, pool {pool:,d}, {len(seeds)} seeds x {len(perms)} permutations")
    click.echo(format_table(summarise(runs)))


@click.command("convert-checkpoint")
@click.argument("old", metavar="OLD")
@click.argument("new", metavar="NEW")
def convert_checkpoint(old, new):
    """Rewrite a trusted old (.pt, torch.save) predictor checkpoint OLD in the safetensors format as NEW.

    nasflow no longer loads torch pickle files (with torch 2.2.1, loading one can run
    code). OLD is read by nasflow's restricted reader and TorchScript archives are refused,
    but convert only files you trust.
    """
    from pathlib import Path

    from nasflow.errors import NasflowError
    from nasflow.predictors import convert_checkpoint as convert

    if Path(new).exists() and Path(new).resolve() != Path(old).resolve():
        raise NasflowError(f"{new} already exists; choose a new path or remove it first")
    predictor = convert(old, new)
    click.echo(f"converted {old} ({predictor.space.name} {predictor.encoder}) to {new}")
