import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nasflow.errors import ArchError, BenchmarkError
from nasflow.spaces.nb201 import EDGES, OPS, NB201Arch, NB201Space, NB201TableOracle

BEST_TEST = {
    "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|",
    "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_1x1~1|nor_conv_3x3~2|",
}

ops_strategy = st.tuples(*[st.sampled_from(OPS)] * len(EDGES))
space = NB201Space()


@given(ops_strategy)
def test_parse_format_roundtrip(ops):
    arch = NB201Arch(ops)
    assert space.parse(space.format(arch)) == arch
    assert hash(space.parse(str(arch))) == hash(arch)


@given(st.integers(0, 2**32 - 1))
@settings(max_examples=50)
def test_sample_and_mutate_stay_in_space(seed):
    rng = np.random.default_rng(seed)
    a = space.sample(rng)
    b = space.mutate(a, rng)
    assert all(op in OPS for op in a.ops + b.ops)
    assert sum(x != y for x, y in zip(a.ops, b.ops)) == 1
    assert b in space.neighbours(a)


def test_enumeration_is_complete_and_in_official_order(nb201_oracle, nb201_csv):
    archs = space.enumerate()
    assert len(archs) == len(set(archs)) == 15_625 == space.size
    # the published files give each cell's official index
    import csv

    rows = list(csv.DictReader(open(nb201_csv)))
    assert all(space.arch_at(int(r["index"])) == space.parse(r["arch"]) for r in rows)
    assert space.index_of(space.parse(rows[123]["arch"])) == int(rows[123]["index"])


def test_neighbours_are_24_distinct_one_edge_changes():
    a = space.arch_at(0)
    n = space.neighbours(a)
    assert len(set(n)) == 24 and a not in n


def test_to_graph_is_a_topological_op_on_node_dag():
    g = space.to_graph(space.arch_at(7))
    assert g.num_nodes == 8 and g.ops[0] == "input" and g.ops[-1] == "output"
    assert all(u < v for u, v in g.edges)
    # every op node lies on an input->output path; the edge (1->2) op is fed by (0->1)
    assert (1, 3) in g.edges and (6, 7) in g.edges and (0, 1) in g.edges
    outs = {u for u, _ in g.edges}
    ins = {v for _, v in g.edges}
    assert set(range(7)) <= outs and set(range(1, 8)) <= ins


@pytest.mark.parametrize(
    "text",
    [
        "",
        "|nor_conv_3x3~0|+|nor_conv_3x3~0|",
        "|conv_7x7~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|",
        "nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|",
    ],
)
def test_bad_arch_strings_raise_one_line(text):
    with pytest.raises(ArchError) as e:
        space.parse(text)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("index", [-1, 15_625, 1.5, "3"])
def test_out_of_range_index(index):
    with pytest.raises(ArchError):
        space.arch_at(index)


def test_table_oracle_real_optima(nb201_oracle):
    valid_cells, best_valid = nb201_oracle.best("valid")
    test_cells, best_test = nb201_oracle.best("test")
    assert best_valid == pytest.approx(91.6067)
    assert best_test == pytest.approx(94.3733)
    assert {str(a) for a in test_cells} == BEST_TEST
    e = nb201_oracle.query(space.arch_at(0))
    assert (e.valid, e.test) == (pytest.approx(81.9827), pytest.approx(85.8633))
    assert nb201_oracle.datasets == ("cifar10", "cifar100")


def test_table_oracle_other_dataset(nb201_csv):
    oracle = NB201TableOracle(nb201_csv, "cifar100")
    assert oracle.best("test")[1] == pytest.approx(73.5133)
    assert oracle.best("valid")[1] == pytest.approx(73.4933)


def test_table_oracle_bad_files(tmp_path, nb201_csv):
    missing_col = tmp_path / "a.csv"
    missing_col.write_text("arch,foo\n" + str(space.arch_at(0)) + ",1\n")
    with pytest.raises(BenchmarkError, match="no column cifar10_valid"):
        NB201TableOracle(missing_col)
    truncated = tmp_path / "b.csv"
    truncated.write_text(nb201_csv.read_text()[:5000])
    with pytest.raises(BenchmarkError, match="truncated"):
        NB201TableOracle(truncated)
    bad_arch = tmp_path / "c.csv"
    bad_arch.write_text("arch,cifar10_valid,cifar10_test\n|bad|,1,2\n")
    with pytest.raises(BenchmarkError, match=":2:"):
        NB201TableOracle(bad_arch)
    with pytest.raises(BenchmarkError, match="not found"):
        space.open_oracle(str(tmp_path / "nope.csv"))


def test_partial_table_and_unknown_cell(tmp_path):
    a, b = space.arch_at(0), space.arch_at(1)
    p = tmp_path / "t.csv"
    p.write_text(f"arch,x_valid,x_test\n{a},50.5,51\n")
    oracle = NB201TableOracle(p, "x")
    assert oracle.query(a).valid == 50.5 and len(oracle) == 1
    with pytest.raises(BenchmarkError, match="not in"):
        oracle.query(b)


def test_discovery_through_env(monkeypatch, benchmarks_dir, tmp_path):
    monkeypatch.setenv("NASFLOW_BENCHMARKS", str(benchmarks_dir))
    assert len(space.open_oracle(dataset="cifar10")) == 15_625
    monkeypatch.setenv("NASFLOW_BENCHMARKS", str(tmp_path))
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(BenchmarkError, match="NAS-Bench-201-v1_1-096897.pth"):
        space.open_oracle(dataset="cifar10")


def test_table_rejects_nan_and_duplicate_rows(tmp_path):
    a = space.arch_at(0)
    nan = tmp_path / "nan.csv"
    nan.write_text(f"arch,cifar10_valid,cifar10_test\n{a},nan,1\n")
    with pytest.raises(BenchmarkError, match="finite"):
        NB201TableOracle(nan)
    dup = tmp_path / "dup.csv"
    dup.write_text(f"arch,cifar10_valid,cifar10_test\n{a},1,1\n{a},2,2\n")
    with pytest.raises(BenchmarkError, match="twice"):
        NB201TableOracle(dup)


def test_index_of_and_arch_at_reject_foreign_input():
    with pytest.raises(ArchError):
        space.arch_at(True)


def test_graph_arrays_names_unknown_ops():
    from nasflow.core import CellGraph, graph_arrays
    from nasflow.errors import SpaceError

    with pytest.raises(SpaceError, match="conv_9x9"):
        graph_arrays([CellGraph(("input", "conv_9x9", "output"), ((0, 1), (1, 2)))], space.vocab)
