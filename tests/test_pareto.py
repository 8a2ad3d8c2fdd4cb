"""nasflow.pareto: fronts, NSGA-II ranks and crowding, and exact hypervolume, checked against brute force."""
import numpy as np
import pytest

from nasflow.errors import DataError
from nasflow.pareto import crowding_distance, hypervolume, minimised, nondominated_ranks, pareto_mask


def brute_force_mask(p):
    return np.array([not any(np.all(q <= x) and np.any(q < x) for q in p) for x in p])


@pytest.mark.parametrize("d", [2, 3])
def test_the_front_is_what_nothing_dominates(d):
    rng = np.random.default_rng(d)
    p = rng.integers(0, 8, size=(300, d)).astype(float)  # small integers: many ties and repeated points
    np.testing.assert_array_equal(pareto_mask(p), brute_force_mask(p))


def test_two_objectives_sorted_and_general_paths_agree():
    p = np.random.default_rng(1).normal(size=(500, 2)).round(1)
    padded = np.c_[p, np.zeros(len(p))]  # a constant third objective changes no dominance: the general path
    np.testing.assert_array_equal(pareto_mask(p), pareto_mask(padded))


def test_ranks_peel_fronts_and_crowding_favours_the_lonely():
    p = np.array([[1, 3], [2, 2], [3, 1], [2, 3], [3, 3], [4, 4]], dtype=float)
    np.testing.assert_array_equal(nondominated_ranks(p), [0, 0, 0, 1, 2, 3])
    front = np.array([[0, 4], [1, 3], [1.5, 2.5], [4, 0]], dtype=float)
    distance = crowding_distance(front)
    assert np.isinf(distance[0]) and np.isinf(distance[3])
    assert distance[2] > distance[1]  # (1.5, 2.5) has the wider gap to its neighbours along both objectives
    assert distance[1] == pytest.approx((1.5 - 0) / 4 + (4 - 2.5) / 4)


def test_hypervolume_exact_values():
    front = np.array([[1, 3], [2, 2], [3, 1]], dtype=float)
    assert hypervolume(front, [4, 4]) == pytest.approx(6.0)
    assert hypervolume(np.r_[front, [[3, 3], [5, 0]]], [4, 4]) == pytest.approx(6.0)  # dominated / outside: nothing
    assert hypervolume([[0, 0, 0]], [1, 2, 3]) == pytest.approx(6.0)
    # boxes [0,2]^3 (8) and [1,2]x[1,2]x[-1,2] (3), overlapping in [1,2]x[1,2]x[0,2] (2): 8 + 3 - 2
    assert hypervolume([[0, 0, 0], [1, 1, -1]], [2, 2, 2]) == pytest.approx(9.0)
    assert hypervolume(np.c_[front, np.full(3, 0.5)], [4, 4, 2]) == pytest.approx(6.0 * 1.5)
    assert hypervolume([[5, 5]], [4, 4]) == 0.0


def test_hypervolume_in_three_objectives_matches_monte_carlo():
    rng = np.random.default_rng(7)
    p = rng.uniform(0, 1, size=(30, 3))
    ref = np.array([1.2, 1.1, 1.3])
    samples = rng.uniform(0, 1, size=(200_000, 3)) * ref
    dominated = np.zeros(len(samples), dtype=bool)
    for x in p:
        dominated |= np.all(samples >= x, axis=1)
    estimate = dominated.mean() * np.prod(ref)
    assert hypervolume(p, ref) == pytest.approx(estimate, rel=0.01)


def test_senses_and_bad_input():
    values = np.array([[93.1, 12.0], [91.0, 5.0]])
    np.testing.assert_array_equal(minimised(values, ["max", "min"]), [[-93.1, 12.0], [-91.0, 5.0]])
    for bad, message in [(([[1.0, 2.0]], ["max"]), "one sense"), (([[1.0, 2.0]], ["max", "up"]), "one sense")]:
        with pytest.raises(DataError, match=message):
            minimised(*bad)
    with pytest.raises(DataError, match="finite"):
        pareto_mask([[1.0, float("nan")]])
    with pytest.raises(DataError, match=r"\(n, d\) array"):
        hypervolume([1.0, 2.0], [3.0, 3.0])
    with pytest.raises(DataError, match="reference point needs 2 finite values"):
        hypervolume([[1.0, 2.0]], [3.0])
