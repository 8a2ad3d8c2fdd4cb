"""The files a comparison writes, written one way: CSV from a list of dicts, and a figure as a PNG.

Shared by the query-based comparison (``compare``), its training-cost view (``cost_compare``) and the
multi-objective fronts (``fronts``). Both write atomically (``nasflow.atomic``), so a killed run never leaves
half a file where an earlier complete one stood.
"""
from __future__ import annotations

import csv
import io
from typing import Sequence

from ..atomic import atomic_write


def dicts_csv(rows: Sequence[dict]) -> str:
    """``rows`` as CSV text, the first row's keys as the header."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def save_png(fig, path) -> None:
    """Write the matplotlib ``fig`` to ``path`` as a PNG and close it, also when the write fails."""
    import matplotlib.pyplot as plt

    try:
        atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=120))
    finally:
        plt.close(fig)
