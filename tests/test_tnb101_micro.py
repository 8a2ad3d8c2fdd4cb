"""TransNAS-Bench-101 micro (tnb101-micro): the cell and its three spellings, the reading of the table's
digits (checked against every row's parameter count), the seven-task oracle, the search restricted to the
711 labelled cells, and each CLI command on the space."""
import csv
import json
import re

import numpy as np
import pytest

from clirun import run_cli
from nasflow.errors import ArchError, BenchmarkError, NasflowError
from nasflow.spaces import get_space
from nasflow.spaces.edge_cell import GRAPH_EDGES
from nasflow.spaces.tnb101_micro import OPS, TASKS, TNB101MicroArch, TNB101MicroTableOracle

space = get_space("tnb101-micro")
CELL = "102333"
READABLE = "|skip_connect~0|+|none~0|nor_conv_1x1~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|"
# the best cell of each task and its value, read off the table (ties listed)
BEST = {
    "class_scene": ({"312212"}, 54.796974182128906),
    "class_object": ({"301121", "312011"}, 45.73049545288086),
    "room_layout": ({"311310"}, -0.6094987988471985),
    "jigsaw": ({"032223"}, 94.99403381347656),
    "segmentsemantic": ({"323322"}, 94.75481414794922),
    "normal": ({"321122"}, 0.5784200429916382),
    "autoencoder": ({"311101"}, 0.5719112753868103),
}


@pytest.fixture(scope="module")
def tnb_csv(benchmarks_dir):
    path = benchmarks_dir / "tnb101" / "tnb101_micro.csv"
    if not path.is_file():
        pytest.skip(f"{path} not found")
    return path


@pytest.fixture(scope="module")
def rows(tnb_csv):
    with open(tnb_csv, newline="") as f:
        return list(csv.DictReader(f))


# ---------------------------------------------------------------- the cell
def test_three_spellings_of_one_cell():
    arch = space.parse(CELL)
    assert arch.ops == ("skip_connect", "none", "nor_conv_1x1", "nor_conv_3x3", "nor_conv_3x3", "nor_conv_3x3")
    assert space.format(arch) == str(arch) == arch.key == CELL
    assert space.readable(arch) == READABLE and space.official(arch) == "64-41414-1_02_333"
    assert space.parse(READABLE) == space.parse(" 64-41414-1_02_333 ") == arch
    # the readable form is NAS-Bench-201's arch string of the same operations
    assert get_space("nb201").parse(READABLE).ops == arch.ops


@pytest.mark.parametrize("text, says", [
    ("10233", "malformed"), ("1023334", "malformed"), ("", "malformed"), ("1-0-2-3-3-3", "malformed"),
    ("102334", "operation code 4"), ("902333", "operation code 9"), ("64-41414-1_02_335", "operation code 5"),
    (READABLE.replace("none", "avg_pool_3x3"), "unknown TransNAS-Bench-101 micro operation 'avg_pool_3x3'"),
    (READABLE.replace("none", "conv3x3"), "unknown TransNAS-Bench-101 micro operation 'conv3x3'"),
])
def test_bad_cells_are_one_line_arch_errors(text, says):
    with pytest.raises(ArchError, match=says) as caught:
        space.parse(text)
    assert "\n" not in str(caught.value)
    with pytest.raises(ArchError):
        space.parse(None)
    with pytest.raises(ArchError, match="cell has 6 edges, got 5 operations"):
        TNB101MicroArch(OPS + ("none",))


def test_enumeration_is_the_base_4_order_of_the_digits():
    every = space.enumerate()
    assert len(every) == len(set(every)) == 4_096 == space.size
    assert [space.format(every[i]) for i in (0, 1, 27, 4_095)] == ["000000", "000001", "000123", "333333"]
    assert all(space.arch_at(i) == every[i] for i in (0, 5, 1_000, 4_095))
    for bad in (-1, 4_096, 1.0, True):
        with pytest.raises(ArchError):
            space.arch_at(bad)


def test_neighbours_mutation_graph_and_categorical():
    arch = space.parse(CELL)
    near = space.neighbours(arch)
    assert len(set(near)) == 18 and arch not in near
    assert all(sum(a != b for a, b in zip(n.ops, arch.ops)) == 1 for n in near)
    rng = np.random.default_rng(0)
    assert all(space.mutate(arch, rng) in near for _ in range(20))
    assert {op for _ in range(50) for op in space.sample(rng).ops} == set(OPS)
    graph = space.to_graph(arch)
    assert graph.ops == ("input",) + arch.ops + ("output",) and graph.edges == GRAPH_EDGES
    assert space.to_graph(arch).edges == get_space("nb201").to_graph(get_space("nb201").parse(READABLE)).edges
    assert all(choices == OPS for choices in space.categorical.choices.values())
    assert space.categorical.decode(space.categorical.encode(arch)) == arch


# ---------------------------------------------------------------- what the digits mean
def test_the_network_of_every_labelled_cell_has_the_tables_parameter_count(rows):
    """The digits are the benchmark's own cell code (0 none, 1 skip, 2 conv 1x1, 3 conv 3x3, NB-201 edge
    order), not NASLib's declared reading: the official network built that way has exactly the table's
    parameter count for all 711 cells and both classification heads (63 scene, 100 object classes)."""
    archs = [space.parse(r["arch"]) for r in rows]
    for task, classes in (("class_scene", 63), ("class_object", 100)):
        counted = space.network_counts(archs, num_classes=classes)["params"]
        assert list(counted) == [round(float(r[f"params_m_{task}"]) * 1e6) for r in rows]


def test_closed_form_counts_match_the_built_network():
    from nasflow.proxies import count_macs, count_params

    archs = [space.parse(c) for c in ("102333", "011021", "000000")]
    counts = space.network_counts(archs, num_classes=7, width=16, cells=1, image_size=20)
    for k, arch in enumerate(archs):
        net = space.network(arch, num_classes=7, width=16, cells=1)
        assert counts["params"][k] == count_params(net) and counts["flops"][k] == count_macs(net, (3, 20, 20))
    with pytest.raises(NasflowError, match="even width"):
        space.network(archs[0], width=7)


def run_network(code, seed=0):
    import torch

    torch.manual_seed(seed)
    net = space.network(space.parse(code), width=8, cells=1).eval()
    with torch.no_grad():
        return net(torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(1)))


def test_rows_with_equal_numbers_are_one_computation_and_stay_two_cells(tnb_csv):
    """000202 and 000212 differ only by a skip out of node 1, which is all zeros (its one input edge is
    'none'): the same network from the same initial weights, so the benchmark's deterministic training gave
    both the same numbers. Cells of one function whose initial weights come in another order (010201:
    skip, then conv; 020101: conv, then skip) got other numbers: the benchmark trained every cell on its own,
    so the space keeps all 4,096 (as NB-201 keeps its isomorphic cells) and the oracle all 711 rows."""
    assert np.array_equal(run_network("000202").numpy(), run_network("000212").numpy())
    assert not np.array_equal(run_network("010201").numpy(), run_network("020101").numpy())
    oracle = TNB101MicroTableOracle(tnb_csv, "class_scene")
    assert len(oracle) == 711
    assert oracle.query(space.parse("000202")) == oracle.query(space.parse("000212"))
    assert oracle.query(space.parse("010201")).valid != oracle.query(space.parse("020101")).valid


# ---------------------------------------------------------------- the table
def test_each_task_has_its_best_cell_no_test_split_and_the_params(tnb_csv):
    assert space.datasets == TASKS
    for task, (cells, value) in BEST.items():
        oracle = space.open_oracle(str(tnb_csv), task)
        best, top = oracle.best()
        assert {space.format(a) for a in best} == cells and top == value
        evaluation = oracle.query(best[0])
        assert evaluation.test is None and isinstance(evaluation.extra["params"], int)
        with pytest.raises(BenchmarkError, match="no test"):
            oracle.best("test")
    assert space.open_oracle(str(tnb_csv), "jigsaw").query(space.parse("000202")).extra["params"] == 6_170_632


def test_unknown_task_and_broken_tables_are_one_line(tnb_csv, tmp_path):
    with pytest.raises(BenchmarkError, match="no task 'cifar10'; choose --dataset from class_scene, class_object"):
        TNB101MicroTableOracle(tnb_csv, "cifar10")
    header = "arch,class_scene\n"
    for body, says in [("102334,50\n", ":2: operation code 4"), ("10233,50\n", ":2: arch '10233' is not six digits"),
                       ("102333,50\n102333,51\n", ":3: cell 102333 appears twice"),
                       ("102333,nan\n", "not a finite number"), ("102333\n", "expected 2 fields"), ("", "no cells")]:
        path = tmp_path / "t.csv"
        path.write_text(header + body)
        with pytest.raises(BenchmarkError, match=says) as caught:
            TNB101MicroTableOracle(path, "class_scene")
        assert "\n" not in str(caught.value)
    (tmp_path / "t.csv").write_text("cell,jigsaw\n102333,50\n")
    with pytest.raises(BenchmarkError, match="needs one column 'arch'"):
        TNB101MicroTableOracle(tmp_path / "t.csv", "jigsaw")


# ---------------------------------------------------------------- through the CLI
def refused(done, says):
    lines = done.stderr.strip().splitlines()
    return done.returncode == 2 and len(lines) == 1 and lines[0].startswith("nasflow: error:") and says in lines[0]


def test_cli_spaces_and_info(tnb_csv, tmp_path):
    done = run_cli("spaces", cache=tmp_path)
    assert done.returncode == 0 and re.search(r"^tnb101-micro +4,096 cells  TransNAS-Bench-101 micro", done.stdout, re.M)
    done = run_cli("info", "--space", "tnb101-micro", "--benchmark", str(tnb_csv), "--dataset", "jigsaw", cache=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "711 cells, dataset jigsaw" in done.stdout and "best valid 94.9940  032223" in done.stdout


@pytest.mark.parametrize("task, searcher", [("class_object", "evolution"), ("room_layout", "tpe")])
def test_cli_search_is_restricted_to_the_labelled_cells(tnb_csv, tmp_path, task, searcher):
    # a bare file name is found under the benchmarks' tnb101/ folder, as the default table is
    done = run_cli("search", "--space", "tnb101-micro", "--benchmark", "tnb101_micro.csv", "--dataset", task,
                   "--searcher", searcher, "--predictor", "none", "--budget", "12", "--out", str(tmp_path / "r"),
                   cache=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert f"restricted to the 711 labelled cells of {tnb_csv} (of 4,096 in tnb101-micro)" in done.stdout
    assert "test       n/a" in done.stdout
    result = json.loads((tmp_path / "r" / "result.json").read_text())
    assert result["config"]["restricted"]["cells"] == 711 and result["config"]["dataset"] == task
    labelled = {r.split(",")[0] for r in tnb_csv.read_text().splitlines()[1:]}
    queried = [json.loads(line)["arch"] for line in (tmp_path / "r" / "journal.jsonl").read_text().splitlines()[1:]]
    assert len(queried) == 12 and set(queried) <= labelled


def test_cli_refuses_a_budget_beyond_the_table_an_unknown_task_and_a_bad_table(tnb_csv, tmp_path):
    base = ("search", "--space", "tnb101-micro", "--benchmark", str(tnb_csv), "--predictor", "none")
    done = run_cli(*base, "--dataset", "jigsaw", "--budget", "712", "--out", str(tmp_path / "a"), cache=tmp_path)
    assert refused(done, "budget 712 exceeds the 711 labelled cells") and not (tmp_path / "a").exists()
    done = run_cli(*base, "--dataset", "depth", "--budget", "5", "--out", str(tmp_path / "b"), cache=tmp_path)
    assert refused(done, "no task 'depth'; choose --dataset from class_scene")
    done = run_cli("info", "--space", "tnb101-micro", "--benchmark", str(tnb_csv), cache=tmp_path)
    assert refused(done, "no task 'cifar10'")  # the default dataset is no task: the user must choose one
    for body, says in (("0a0202,50\n", "is not six digits"), ("000204,50\n", "operation code 4")):
        bad = tmp_path / "bad.csv"
        bad.write_text("arch,jigsaw\n" + body)
        done = run_cli("info", "--space", "tnb101-micro", "--benchmark", str(bad), "--dataset", "jigsaw", cache=tmp_path)
        assert refused(done, says), done.stderr


def test_cli_compare_predictor_and_proxies(tnb_csv, tmp_path):
    done = run_cli("compare", "--space", "tnb101-micro", "--benchmark", str(tnb_csv), "--dataset", "normal",
                   "--searchers", "random,evolution", "--predictor", "none", "--seeds", "2", "--budget", "8",
                   "--jobs", "1", "--out", str(tmp_path / "c"), cache=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "c" / "summary.csv").is_file() and "evolution" in done.stdout
    small = ("--space", "tnb101-micro", "--benchmark", str(tnb_csv), "--dataset", "segmentsemantic",
             "--pretrain", "none", "--epochs", "5")
    done = run_cli("train-predictor", *small, "--train-ratio", "0.1", "--out", str(tmp_path / "p"), cache=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "35 training cells" in done.stdout and "test on 315 cells" in done.stdout  # the documented pool of 356
    done = run_cli("evaluate-predictor", *small, "--encoder", "gin", "--ratios", "0.05", "--seeds", "0", "--perms", "21",
                   cache=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "| 0.05 | 17 | gin | none [epochs=5] | 1 |" in done.stdout
    out = tmp_path / "z.csv"
    done = run_cli("proxies", "--space", "tnb101-micro", "--proxies", "params,flops,synflow", "--sample", "3",
                   "--out", str(out), cache=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr
    scored = list(csv.DictReader(open(out)))
    assert len(scored) == 3 and all(float(r["params"]) > 0 and float(r["synflow"]) > 0 for r in scored)
