"""Ranking metrics of the predictor literature: Kendall tau, Spearman rho, Precision@K%.

All take ``(pred, true)`` arrays of equal length and handle ties the way scipy does
(tau-b; rho on average ranks). Pure numpy, so evaluation needs no scipy.
"""
from __future__ import annotations

import numpy as np

from .errors import DataError

_CHUNK = 512  # rows per block of the pairwise comparison in kendall_tau


def _pair(pred, true) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(pred, dtype=np.float64).ravel()
    t = np.asarray(true, dtype=np.float64).ravel()
    if p.shape != t.shape:
        raise DataError(f"predictions and true values differ in length ({p.size} vs {t.size})")
    if p.size < 2:
        raise DataError(f"ranking metrics need at least 2 values, got {p.size}")
    if not (np.isfinite(p).all() and np.isfinite(t).all()):
        raise DataError("predictions or true values contain NaN or infinity")
    return p, t


def kendall_tau(pred, true) -> float:
    """Kendall's tau-b (ties in either ranking reduce the denominator, as in scipy).

    Counts concordant minus discordant pairs in blocks of rows, so memory stays
    O(block * n) while all arithmetic is vectorised.
    """
    p, t = _pair(pred, true)
    n = p.size
    s = 0.0
    ties_p = ties_t = 0.0
    for start in range(0, n, _CHUNK):
        stop = min(start + _CHUNK, n)
        dp = np.sign(p[start:stop, None] - p[None, :])
        dt = np.sign(t[start:stop, None] - t[None, :])
        s += float((dp * dt).sum())
        ties_p += float((dp == 0).sum())
        ties_t += float((dt == 0).sum())
    # Each unordered pair was counted twice and every element tied with itself once.
    s /= 2.0
    pairs = n * (n - 1) / 2.0
    untied_p = pairs - (ties_p - n) / 2.0
    untied_t = pairs - (ties_t - n) / 2.0
    if untied_p == 0 or untied_t == 0:
        return float("nan")
    return float(s / np.sqrt(untied_p * untied_t))


def rankdata(x) -> np.ndarray:
    """Ranks 1..n, ties receiving the average of the ranks they span."""
    x = np.asarray(x, dtype=np.float64).ravel()
    order = np.argsort(x, kind="stable")
    sorted_x = x[order]
    starts = np.concatenate([[True], sorted_x[1:] != sorted_x[:-1]])
    group = np.cumsum(starts) - 1
    first = np.flatnonzero(starts)
    last = np.concatenate([first[1:], [x.size]]) - 1
    average = (first + last) / 2.0 + 1.0
    ranks = np.empty(x.size)
    ranks[order] = average[group]
    return ranks


def spearman_rho(pred, true) -> float:
    """Spearman's rho: Pearson correlation of the average ranks."""
    p, t = _pair(pred, true)
    rp, rt = rankdata(p), rankdata(t)
    rp -= rp.mean()
    rt -= rt.mean()
    denom = np.sqrt((rp * rp).sum() * (rt * rt).sum())
    if denom == 0:
        return float("nan")
    return float((rp * rt).sum() / denom)


def precision_at_k(pred, true, ratio: float) -> float:
    """|top-K by prediction ∩ top-K by truth| / K with K = int(N * ratio), as TA-GATES defines it.

    Ties are broken by position (the earlier item ranks higher), in both rankings.
    """
    p, t = _pair(pred, true)
    k = int(p.size * ratio)
    if not 0 < ratio <= 1 or k < 1:
        raise DataError(f"Precision@K needs 0 < ratio <= 1 and at least one item in the top K; got ratio {ratio} of {p.size}")
    top_pred = np.argsort(-p, kind="stable")[:k]
    top_true = np.argsort(-t, kind="stable")[:k]
    return len(np.intersect1d(top_pred, top_true)) / k


def ranking_report(pred, true) -> dict:
    """tau, rho, P@1% and P@5% in one dict (P@K is NaN where K would be 0)."""
    n = np.asarray(pred).size
    return {
        "tau": kendall_tau(pred, true),
        "rho": spearman_rho(pred, true),
        "p@1%": precision_at_k(pred, true, 0.01) if int(n * 0.01) >= 1 else float("nan"),
        "p@5%": precision_at_k(pred, true, 0.05) if int(n * 0.05) >= 1 else float("nan"),
    }
