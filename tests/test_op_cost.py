"""nasflow.op_cost.OpCostModel: a cost as a constant plus one cost per operation label, fitted on few cells."""
import numpy as np
import pytest

from nasflow.errors import DataError
from nasflow.op_cost import OpCostModel
from nasflow.spaces import get_space

nb201 = get_space("nb201")
CELLS = nb201.enumerate()


def additive_cost(archs, space, per_op):
    return np.array([5.0 + sum(per_op.get(op, 0.0) for op in space.to_graph(a).ops) for a in archs])


def test_an_additive_cost_is_recovered_from_a_few_cells():
    per_op = {"nor_conv_3x3": 3.0, "nor_conv_1x1": 1.2, "avg_pool_3x3": 0.4, "skip_connect": 0.05}
    truth = additive_cost(CELLS, nb201, per_op)
    picked = np.random.default_rng(0).choice(len(CELLS), size=20, replace=False)
    model = OpCostModel(nb201, ridge=1e-6).fit([CELLS[i] for i in picked], truth[picked])
    np.testing.assert_allclose(model.predict(CELLS), truth, atol=1e-3)
    costs = model.per_label()
    assert costs["nor_conv_3x3"] - costs["none"] == pytest.approx(3.0, abs=1e-3)
    assert costs["nor_conv_1x1"] - costs["none"] == pytest.approx(1.2, abs=1e-3)


def test_ridge_keeps_a_fit_on_two_cells_defined():
    # two cells, seven labels: without the penalty the fit has no single solution
    a, b, c = (nb201.parse(t) for t in ("|none~0|+|none~0|none~1|+|none~0|none~1|none~2|",
                                         "|nor_conv_3x3~0|+|nor_conv_3x3~0|none~1|+|none~0|none~1|none~2|",
                                         "|nor_conv_3x3~0|+|none~0|none~1|+|none~0|none~1|none~2|"))
    model = OpCostModel(nb201).fit([a, b], [5.0, 9.0])
    assert np.all(np.isfinite(model.predict(CELLS)))
    low, high, middle = model.predict([a, b, c])
    assert low < middle < high and high - low == pytest.approx(4.0, abs=0.1)


def test_other_spaces_count_their_own_labels():
    macro = get_space("nas-bench-macro")
    cells = macro.enumerate()
    per_op = {"mb6_k5": 4.0, "mb3_k3": 1.5, "mb6_k5_s2": 2.0, "mb3_k3_s2": 0.8, "conv1x1_s2": 0.3}
    truth = additive_cost(cells, macro, per_op)
    model = OpCostModel(macro, ridge=1e-6).fit(cells[::200], truth[::200])
    np.testing.assert_allclose(model.predict(cells), truth, atol=1e-3)


@pytest.mark.parametrize("archs, values, message", [
    (CELLS[:3], [1.0, 2.0], "3 cells but 2 measured values"),
    (CELLS[:1], [1.0], "at least 2 measured cells"),
    (CELLS[:2], [1.0, float("nan")], "must be finite"),
])
def test_unusable_measurements_are_one_line_data_errors(archs, values, message):
    with pytest.raises(DataError, match=message) as e:
        OpCostModel(nb201).fit(archs, values)
    assert "\n" not in str(e.value)


def test_predicting_before_fitting_and_a_negative_ridge_are_refused():
    with pytest.raises(DataError, match="not fitted yet"):
        OpCostModel(nb201).predict(CELLS[:2])
    with pytest.raises(DataError, match="ridge must be >= 0"):
        OpCostModel(nb201, ridge=-1.0)


def information(model, archs):
    x = np.hstack([model.counts(archs), np.ones((len(archs), 1))])
    return np.linalg.slogdet(x.T @ x + 1e-3 * np.eye(x.shape[1]))[1]


def test_the_chosen_cells_pin_the_costs_down_better_than_uniform_ones():
    model = OpCostModel(nb201)
    chosen = model.choose_cells(CELLS, 20, seed=3)
    assert len(set(chosen)) == 20 and set(chosen) <= set(CELLS)
    assert chosen == model.choose_cells(CELLS, 20, seed=3)  # a function of the seed
    rng = np.random.default_rng(0)
    uniform = [information(model, [CELLS[i] for i in rng.choice(len(CELLS), 20, replace=False)]) for _ in range(20)]
    assert information(model, chosen) > max(uniform)


def test_the_chosen_cells_recover_a_cost_with_one_label_nearly_free():
    # a cost where the rare difference matters: uniform cells can miss it, the design spreads every label
    per_op = {"nor_conv_3x3": 3.0, "nor_conv_1x1": 1.0, "avg_pool_3x3": 0.2, "skip_connect": 0.1}
    truth = additive_cost(CELLS, nb201, per_op)
    chosen = OpCostModel(nb201).choose_cells(CELLS, 8, seed=0)
    model = OpCostModel(nb201, ridge=1e-6).fit(chosen, additive_cost(chosen, nb201, per_op))
    np.testing.assert_allclose(model.predict(CELLS), truth, atol=1e-2)


@pytest.mark.parametrize("n", [0, 15_626, 2.5, True])
def test_an_impossible_number_of_cells_is_one_line(n):
    with pytest.raises(DataError, match="cells to measure"):
        OpCostModel(nb201).choose_cells(CELLS, n)
