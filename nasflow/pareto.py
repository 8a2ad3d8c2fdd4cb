"""Pareto fronts and hypervolume for multi-objective search (issue 21): accuracy against latency or size.

Every function takes points as an (n, d) array in which smaller is better in every column; ``minimised``
turns objectives with a sense ("max" or "min") into that form, so accuracy to maximise becomes its negation.
A point dominates another when it is no worse in every objective and better in one; the front is the points
nothing dominates. Hypervolume is the measure of the region the front dominates up to a reference point
that every counted point must beat in every objective: the quantity a multi-objective search is judged by
after n queries, and whose share of the true front's (a complete table's) says how close a search came.

Pure core: numpy only.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from .errors import DataError

SENSES = ("max", "min")


def minimised(values, senses: Sequence[str]) -> np.ndarray:
    """(n, d) objective values as points to minimise: the columns whose sense is "max" are negated."""
    points = _points(values)
    if len(senses) != points.shape[1] or any(s not in SENSES for s in senses):
        raise DataError(f"need one sense ('max' or 'min') per objective: {points.shape[1]} objectives, got {list(senses)}")
    sign = np.array([-1.0 if s == "max" else 1.0 for s in senses])
    return points * sign


def pareto_mask(points) -> np.ndarray:
    """True for the points no other point dominates (equal points are all kept)."""
    p = _points(points)
    n = len(p)
    keep = np.ones(n, dtype=bool)
    if p.shape[1] == 2:  # sort by the first objective, then a point is kept when it improves the second
        order = np.lexsort((p[:, 1], p[:, 0]))
        best_second = np.inf
        for k, i in enumerate(order):
            # a point ties with an earlier one on both objectives: kept as its equal, not dominated
            same = k > 0 and np.array_equal(p[i], p[order[k - 1]]) and keep[order[k - 1]]
            if p[i, 1] < best_second or same:
                best_second = min(best_second, p[i, 1])
            else:
                keep[i] = False
        return keep
    for start in range(0, n, 512):  # blocks: an n x n x d comparison would not fit for a whole table
        block = p[start : start + 512]
        no_worse = np.all(p[None, :, :] <= block[:, None, :], axis=2)
        better = np.any(p[None, :, :] < block[:, None, :], axis=2)
        keep[start : start + len(block)] = ~np.any(no_worse & better, axis=1)
    return keep


def nondominated_ranks(points) -> np.ndarray:
    """NSGA-II's front of each point: 0 for the Pareto front, 1 for the front once it is removed, and so on."""
    p = _points(points)
    ranks = np.full(len(p), -1)
    left = np.arange(len(p))
    rank = 0
    while left.size:
        front = pareto_mask(p[left])
        ranks[left[front]] = rank
        left = left[~front]
        rank += 1
    return ranks


def crowding_distance(points) -> np.ndarray:
    """NSGA-II's crowding distance within one front: the perimeter of the box between each point's neighbours
    along every objective (normalised by the objective's range); the extremes get infinity."""
    p = _points(points)
    n, d = p.shape
    distance = np.zeros(n)
    if n <= 2:
        return np.full(n, np.inf)
    for j in range(d):
        order = np.argsort(p[:, j], kind="stable")
        span = p[order[-1], j] - p[order[0], j]
        distance[order[0]] = distance[order[-1]] = np.inf
        if span > 0:
            distance[order[1:-1]] += (p[order[2:], j] - p[order[:-2], j]) / span
    return distance


def hypervolume(points, reference) -> float:
    """The measure dominated by ``points`` and bounded by ``reference`` (minimisation); points that do not beat
    the reference in every objective add nothing. Exact: a sweep in 2-D, slicing along the last objective above."""
    p = _points(points)
    ref = np.asarray(reference, dtype=np.float64).reshape(-1)
    if ref.size != p.shape[1] or not np.all(np.isfinite(ref)):
        raise DataError(f"the reference point needs {p.shape[1]} finite values, got {list(ref)}")
    p = p[np.all(p < ref, axis=1)]
    if not len(p):
        return 0.0
    return float(_volume(p[pareto_mask(p)], ref))


def hypervolume_improvement(front, candidates, reference) -> np.ndarray:
    """How much each of ``candidates`` (alone) would add to the hypervolume of ``front`` (points, minimised),
    up to ``reference``: a multi-objective acquisition. Exact; vectorised over the candidates in 2-D, where the
    part of a candidate's box that ``front`` already dominates is the hypervolume of the points max(f, c)."""
    c = _points(candidates)
    ref = np.asarray(reference, dtype=np.float64).reshape(-1)
    f = np.asarray(front, dtype=np.float64).reshape(-1, c.shape[1])
    if ref.size != c.shape[1] or not np.all(np.isfinite(ref)):
        raise DataError(f"the reference point needs {c.shape[1]} finite values, got {list(ref)}")
    f = f[np.all(f < ref, axis=1)]
    f = f[pareto_mask(f)] if len(f) else f
    inside = np.all(c < ref, axis=1)
    gain = np.zeros(len(c))
    box = np.prod(ref - c, axis=1)
    if not len(f):
        gain[inside] = box[inside]
        return gain
    if c.shape[1] != 2:
        base = hypervolume(f, ref)
        for i in np.flatnonzero(inside):
            gain[i] = hypervolume(np.vstack([f, c[i]]), ref) - base
        return gain
    f = f[np.lexsort((f[:, 1], f[:, 0]))]  # a staircase: x ascending, y descending
    cin = c[inside]
    gx = np.maximum(f[None, :, 0], cin[:, None, 0])
    gy = np.maximum(f[None, :, 1], cin[:, None, 1])
    widths = np.diff(np.concatenate([gx, np.full((len(cin), 1), ref[0])], axis=1), axis=1)
    covered = np.sum(widths * (ref[1] - np.minimum.accumulate(gy, axis=1)), axis=1)
    gain[inside] = np.maximum(box[inside] - covered, 0.0)
    return gain


def _volume(p: np.ndarray, ref: np.ndarray) -> float:
    if p.shape[1] == 1:
        return float(ref[0] - p[:, 0].min())
    if p.shape[1] == 2:
        order = np.argsort(p[:, 0], kind="stable")
        xs, ys = p[order, 0], np.minimum.accumulate(p[order, 1])
        widths = np.diff(np.append(xs, ref[0]))
        return float(np.sum(widths * (ref[1] - ys)))
    # slices between consecutive values of the last objective: each is the (d-1)-volume of the points at or
    # below it, times its thickness
    levels = np.unique(p[:, -1])
    bounds = np.append(levels, ref[-1])
    total = 0.0
    for k, level in enumerate(levels):
        below = p[p[:, -1] <= level, :-1]
        total += _volume(below[pareto_mask(below)], ref[:-1]) * (bounds[k + 1] - level)
    return total


def _points(values) -> np.ndarray:
    p = np.asarray(values, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] < 1:
        raise DataError(f"points must be an (n, d) array of objective values, got shape {p.shape}")
    if not np.all(np.isfinite(p)):
        raise DataError("objective values must be finite numbers (a NaN or inf among them)")
    return p
