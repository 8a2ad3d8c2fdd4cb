"""`nasflow proxies`: zero-cost proxy scores of a whole space (or a seeded sample) to CSV."""
from __future__ import annotations

import click

from nasflow.proxies import ZCP_DEFAULT  # torch-free: keeps --help fast

from .options import SEED, show_progress, space_option

# The most cells scored without --sample: one network per cell, so NB-101's 423,624 must be sampled.
WHOLE_SPACE = 50_000


@click.command()
@space_option
@click.option("--proxies", "names", default=",".join(ZCP_DEFAULT), show_default=True,
              help="Comma-separated zero-cost proxies (see nasflow.proxies.PROXIES).")
@click.option("--sample", type=click.IntRange(min=1), default=None,
              help="Score this many random cells (drawn with --seed) instead of the whole space.")
@click.option("--seed", type=SEED, default=0, show_default=True, help="Seed of --sample.")
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True,
              help="Processes scoring the network proxies (one torch thread each).")
@click.option("--out", "out_path", required=True, metavar="PATH.csv", help="CSV to write: arch, then one column per proxy.")
def proxies(space, names, sample, seed, workers, out_path):
    """Zero-cost proxy scores of cells, cached per space so each cell is paid for once."""
    import csv
    import io

    import numpy as np

    from nasflow.errors import NasflowError
    from nasflow.atomic import atomic_write
    from nasflow.paths import output_file
    from nasflow.proxies import check_names, zero_cost_table
    from nasflow.spaces import get_space

    sp = get_space(space)
    chosen = check_names([n.strip() for n in names.split(",") if n.strip()])
    out = output_file(out_path, "proxy table")  # before the scoring, which can take many minutes
    if sample is None:
        if sp.enumerable and sp.size > WHOLE_SPACE:
            raise NasflowError(f"{sp.name} has {sp.size:,d} cells, too many to score one network each; "
                               f"score a random sample with --sample N")
        try:
            archs = sp.enumerate()
        except NasflowError as e:
            raise NasflowError(f"{e}; or score a random sample with --sample N") from None
    else:
        rng = np.random.default_rng(seed)
        if sample > sp.size:
            raise NasflowError(f"--sample {sample} is more than the {sp.size:,d} cells of {sp.name}")
        archs = _distinct_sample(sp, rng, sample)
    scores = zero_cost_table(sp, archs, chosen, progress=show_progress(), workers=workers)
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(["arch", *chosen])
    for i, arch in enumerate(archs):
        writer.writerow([sp.format(arch), *(repr(float(scores[n][i])) for n in chosen)])
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(out, text.getvalue())
    click.echo(f"wrote {len(archs):,d} cells x {len(chosen)} proxies to {out}")


def _distinct_sample(space, rng, n: int) -> list:
    """``n`` different cells; spaces with an index draw without replacement directly."""
    if space.arch_at is not None:
        return [space.arch_at(int(i)) for i in rng.choice(space.size, size=n, replace=False)]
    seen = {}
    while len(seen) < n:
        arch = space.sample(rng)
        seen.setdefault(arch.key, arch)
    return list(seen.values())
