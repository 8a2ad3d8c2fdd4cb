"""Ranking metrics against scipy and hand-worked examples, ties included."""
import numpy as np
import pytest
from scipy import stats

from nasflow.errors import DataError
from nasflow.metrics import kendall_tau, precision_at_k, rankdata, ranking_report, spearman_rho


@pytest.mark.parametrize("seed", range(6))
def test_against_scipy_on_random_data_with_ties(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 1500))
    true = rng.normal(size=n)
    pred = true + rng.normal(scale=float(rng.uniform(0.1, 3)), size=n)
    if seed % 2:  # heavy ties in both
        true, pred = np.round(true, 1), np.round(pred)
    assert kendall_tau(pred, true) == pytest.approx(stats.kendalltau(pred, true).correlation, abs=1e-10)
    assert spearman_rho(pred, true) == pytest.approx(stats.spearmanr(pred, true).correlation, abs=1e-10)
    np.testing.assert_allclose(rankdata(pred), stats.rankdata(pred))


def test_hand_examples():
    assert kendall_tau([1, 2, 3, 4], [10, 20, 30, 40]) == 1.0
    assert kendall_tau([4, 3, 2, 1], [10, 20, 30, 40]) == -1.0
    # pairs: (1,2)+ (1,3)+ (2,3)- -> (2-1)/3
    assert kendall_tau([1, 3, 2], [1, 2, 3]) == pytest.approx(1 / 3)
    # tau-b with a tie in pred: S=2, untied pairs 2 and 3 -> 2/sqrt(6)
    assert kendall_tau([1, 1, 2], [1, 2, 3]) == pytest.approx(2 / np.sqrt(6))
    assert spearman_rho([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    np.testing.assert_array_equal(rankdata([5, 1, 5, 3]), [3.5, 1, 3.5, 2])


def test_precision_at_k_hand_examples():
    true = np.arange(100, dtype=float)  # item 99 is best
    assert precision_at_k(true, true, 0.05) == 1.0
    assert precision_at_k(-true, true, 0.05) == 0.0
    pred = true.copy()
    pred[99], pred[0] = pred[0], pred[99]  # swap the best with the worst
    assert precision_at_k(pred, true, 0.05) == pytest.approx(4 / 5)
    assert precision_at_k(pred, true, 0.01) == 0.0
    # K = int(N * ratio): 7 items at 30% -> K = 2
    assert precision_at_k([7, 6, 0, 0, 0, 0, 5], [7, 0, 0, 0, 0, 0, 6], 0.3) == pytest.approx(1 / 2)


def test_precision_matches_ta_gates_definition_on_random_data():
    rng = np.random.default_rng(0)
    for _ in range(20):
        n = int(rng.integers(50, 400))
        true, pred = rng.normal(size=n), rng.normal(size=n)
        k = int(n * 0.05)
        order = np.argsort(true)[::-1]  # TA-GATES: reorder predictions by true rank
        ranks = np.argsort(pred[order])[::-1]
        want = np.sum(ranks[:k] < k) / k
        assert precision_at_k(pred, true, 0.05) == pytest.approx(want)


@pytest.mark.parametrize(
    "pred,true,ratio",
    [([1, 2], [1, 2, 3], 0.5), ([1], [1], 0.5), ([1, np.nan], [1, 2], 0.5), ([1, 2, 3], [1, 2, 3], 0.1), ([1, 2], [1, 2], 1.5)],
)
def test_bad_inputs_raise_data_error(pred, true, ratio):
    with pytest.raises(DataError):
        precision_at_k(pred, true, ratio)


def test_report_and_constant_input():
    rep = ranking_report(np.arange(50.0), np.arange(50.0))
    assert rep["tau"] == rep["rho"] == rep["p@5%"] == 1.0 and np.isnan(rep["p@1%"])
    assert np.isnan(kendall_tau([1, 1, 1], [1, 2, 3]))
