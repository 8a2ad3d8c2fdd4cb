"""The DARTS / NB-301 space: both cell formats, canonical keys, bad cells, moves, the graph, the network and
its closed-form counts, the suite table and the CLI on it."""
import json
import re
from collections import Counter
from math import comb

import numpy as np
import pytest

from clirun import run_cli
from nasflow.errors import ArchError, BenchmarkError
from nasflow.spaces import get_space
from nasflow.spaces.darts import CELL_SIZE, OPS, SIZE, DartsArch, format_genotype

# DARTS's own DARTS_V2 cell (quark0/darts cnn/genotypes.py), the one its paper trains at C=36, 20 cells
DARTS_V2 = ("Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), ('sep_conv_3x3', 1), "
            "('sep_conv_3x3', 1), ('skip_connect', 0), ('skip_connect', 0), ('dil_conv_3x3', 2)], normal_concat=[2, 3, 4, 5], "
            "reduce=[('max_pool_3x3', 0), ('max_pool_3x3', 1), ('skip_connect', 2), ('max_pool_3x3', 1), ('max_pool_3x3', 0), "
            "('skip_connect', 2), ('skip_connect', 2), ('max_pool_3x3', 1)], reduce_concat=[2, 3, 4, 5])")
# the suite file's first row, as NASLib wrote it (pairs in NASLib's order, not canonical)
SUITE_ROW = ("(((0, 5), (1, 3), (1, 5), (2, 0), (1, 5), (2, 1), (0, 5), (4, 4)), "
             "((0, 4), (1, 0), (0, 5), (2, 5), (0, 2), (3, 1), (2, 3), (4, 1)))")


@pytest.fixture(scope="module")
def darts():
    return get_space("darts")


def one_line_arch_error(fn, *args, match=""):
    with pytest.raises(ArchError, match=match) as e:
        fn(*args)
    assert "\n" not in str(e.value)
    return str(e.value)


# ------------------------------------------------------------------------------ formats
def test_ops_follow_naslibs_compact_order():
    # NASLib's convert_compact_to_genotype indexes this list; a different order would misread every table row
    assert OPS == ("max_pool_3x3", "avg_pool_3x3", "skip_connect", "sep_conv_3x3", "sep_conv_5x5",
                   "dil_conv_3x3", "dil_conv_5x5")


def test_compact_and_genotype_name_the_same_cell(darts):
    arch = darts.parse(SUITE_ROW)
    genotype = format_genotype(arch)
    assert genotype.startswith("Genotype(normal=[('dil_conv_3x3', 0), ('sep_conv_3x3', 1), ('dil_conv_3x3', 1), ('max_pool_3x3', 2)")
    assert darts.parse(genotype) == arch and darts.genotype(arch) == genotype
    assert darts.parse(genotype.replace("[2, 3, 4, 5]", "range(2, 6)")) == arch
    assert darts.parse(genotype.replace("'", '"').replace(", ", ",\n   ")) == arch  # quotes and line breaks
    assert darts.parse(SUITE_ROW.replace("(", "[").replace(")", "]")) == arch  # NASLib's mutable (list) form
    v2 = darts.parse(DARTS_V2)
    assert v2.normal[:4] == ((0, 3), (1, 3), (0, 3), (1, 3)) and v2.reduce[-2:] == ((1, 0), (2, 2))


def test_the_order_of_a_nodes_two_inputs_does_not_matter(darts):
    # a node sums its two ops: swapping them is the same cell, the same key and the same graph
    swapped = SUITE_ROW.replace("(1, 3), (1, 5), (2, 0)", "(1, 3), (2, 0), (1, 5)")
    assert swapped != SUITE_ROW
    a, b = darts.parse(SUITE_ROW), darts.parse(swapped)
    assert a == b and hash(a) == hash(b) and a.key == b.key and darts.to_graph(a) == darts.to_graph(b)
    assert a.key == darts.format(a) and darts.parse(a.key) == a
    # but moving an op to the other input is another cell
    assert darts.parse(SUITE_ROW.replace("((0, 5), (1, 3)", "((0, 3), (1, 5)")) != a


@pytest.mark.parametrize("text, message", [
    ("not a cell", "malformed DARTS cell"),
    ("((0, 1), (1, 2))", "the normal cell must list \\(input, op index\\) pairs"),
    ("((0, 1), (1, 2), (2, 3))", "two tuples"),
    (SUITE_ROW.replace(", (4, 4))", ")"), "exactly two inputs each: expected 8 \\(input, op\\) pairs, got 7"),
    (SUITE_ROW.replace("(4, 4))", "(4, 4), (1, 2))"), "pairs, got 9"),
    (SUITE_ROW.replace("(1, 3)", "(0, 3)"), "node 2 of the normal cell takes node 0 twice"),
    (SUITE_ROW.replace("(4, 4))", "(5, 4))"), "node 5 of the normal cell takes input 5, which is not an earlier node"),
    (SUITE_ROW.replace("(2, 3), (4, 1)", "(2, 3), (-1, 1)"), "reduce cell takes input -1"),
    (SUITE_ROW.replace("(1, 3)", "(1, 7)"), "op index 7"),
    (SUITE_ROW.replace("(1, 3)", "(1, 3, 0)"), "not an \\(input, op index\\) pair"),
    (SUITE_ROW[:-1], "unclosed"),
    (SUITE_ROW + " (1, 2)", "text after the end"),
    ("(((0, 5)) + __import__('os').system('false'))", "unexpected"),
    ("(" * 1_000 + ")" * 1_000, "three deep at most"),  # past Python's recursion limit, within the length cap
    (DARTS_V2.replace("dil_conv_3x3", "none"), "unknown DARTS operation 'none'"),
    (DARTS_V2.replace("('dil_conv_3x3', 2)", "('dil_conv_3x3', 2), ('skip_connect', 1)"), "pairs, got 9"),
    (DARTS_V2.replace("normal_concat=[2, 3, 4, 5]", "normal_concat=[4, 5]"), "normal_concat must be"),
    (DARTS_V2.replace("Genotype(", "Genotype(evil=__import__('os'), "), "malformed DARTS genotype"),
    (DARTS_V2 + "\n" * 2_000, "too long"),
])
def test_bad_cells_are_one_line_arch_errors(darts, text, message):
    one_line_arch_error(darts.parse, text, match=message)


def test_cells_are_checked_however_they_are_made(darts):
    one_line_arch_error(darts.parse, 42, match="is text")
    one_line_arch_error(DartsArch, ((0, 1),) * 8, ((0, 1), (1, 1)) * 4, match="takes node 0 twice")
    one_line_arch_error(DartsArch, ((0, True), (1, 1)) * 4, ((0, 1), (1, 1)) * 4, match="pair of integers")
    one_line_arch_error(DartsArch, (0, 1) * 4, ((0, 1), (1, 1)) * 4, match="pair of integers")
    one_line_arch_error(DartsArch, None, ((0, 1), (1, 1)) * 4, match="sequence of \\(input, op index\\) pairs")


# ------------------------------------------------------------------------------ size and moves
def test_size_counts_canonical_cells():
    # per node k: every ordered choice of two different inputs and two ops, folded by the canonical order
    for k in range(2, 6):
        folded = {tuple(sorted([(a, x), (b, y)])) for a in range(k) for b in range(k) if a != b
                  for x in range(len(OPS)) for y in range(len(OPS))}
        assert len(folded) == comb(k, 2) * len(OPS) ** 2
    assert CELL_SIZE == 1 * 3 * 6 * 10 * 49**4 and SIZE == CELL_SIZE**2 == 1_076_746_950_455_072_400


def test_sampling_is_uniform_over_inputs_and_ops(darts):
    rng = np.random.default_rng(0)
    archs = [darts.sample(rng) for _ in range(3_000)]
    inputs = Counter((a.reduce[6][0], a.reduce[7][0]) for a in archs)  # node 5 of the reduce cell: 10 pairs
    ops = Counter(op for a in archs for _, op in a.normal)
    assert sorted(inputs) == [(a, b) for a in range(5) for b in range(a + 1, 5)]
    assert max(inputs.values()) / min(inputs.values()) < 1.4  # 300 expected each
    assert max(ops.values()) / min(ops.values()) < 1.15  # 3,429 expected each
    assert len(set(archs)) == len(archs)


def test_neighbours_change_one_op_or_one_input(darts):
    arch = darts.parse(SUITE_ROW)
    near = darts.neighbours(arch)
    # 16 pairs x 6 other ops, plus per cell 0 + 2 + 4 + 6 other inputs for nodes 2..5
    assert len(near) == len(set(near)) == 16 * 6 + 2 * 12
    for other in near:
        changed = [(c, n) for c in ("normal", "reduce") for n in range(4)
                   if getattr(other, c)[2 * n: 2 * n + 2] != getattr(arch, c)[2 * n: 2 * n + 2]]
        assert len(changed) == 1
        c, n = changed[0]
        before, after = set(getattr(arch, c)[2 * n: 2 * n + 2]), set(getattr(other, c)[2 * n: 2 * n + 2])
        assert len(before - after) == 1 and len(after - before) == 1


def test_categorical_decode_rejects_what_the_space_rejects(darts):
    encoding = darts.categorical
    params = encoding.encode(darts.parse(DARTS_V2))
    assert params["normal_node5_inputs"] == "0,2" and params["normal_node5_op_b"] == "dil_conv_3x3"
    assert encoding.choices["normal_node2_inputs"] == ("0,1",) and len(encoding.choices["reduce_node5_inputs"]) == 10
    for key, bad in (("normal_node3_inputs", "1,1"), ("normal_node3_inputs", "2,1"), ("reduce_node4_op_a", "none")):
        one_line_arch_error(encoding.decode, {**params, key: bad}, match="is not an input pair")
    one_line_arch_error(encoding.decode, {k: v for k, v in params.items() if k != "reduce_node2_op_b"}, match="reduce node 2")


# ------------------------------------------------------------------------------ the graph
def test_graph_is_a_reduction_cell_then_the_normal_cell(darts):
    arch = darts.parse(DARTS_V2)
    g = darts.to_graph(arch)
    assert g.num_nodes == 18 and g.ops[1:9] == tuple(OPS[op] for _, op in arch.reduce)
    into = {v: {u for u, w in g.edges if w == v} for v in range(18)}
    assert {u for u in into[17]} == set(range(9, 17))  # normal ops feed the output, reduction ops do not
    assert into[9] == {0} and into[10] == set(range(1, 9))  # normal node 2: c_{k-2} = input, c_{k-1} = the reduction cell
    assert into[16] == {9, 10}  # normal node 5's second op reads node 2, the sum of ops 9 and 10
    # the normal cell keeps which input an op reads; the cell roles are not interchangeable
    moved = darts.make(((1, 3), (0, 3)) + arch.normal[2:], arch.reduce)  # same inputs, ops crossed: same cell
    assert moved == arch
    other = darts.make(((0, 3), (1, 2)) + arch.normal[2:], arch.reduce)
    crossed = darts.make(((0, 2), (1, 3)) + arch.normal[2:], arch.reduce)
    assert darts.to_graph(other) != darts.to_graph(crossed)
    assert darts.to_graph(darts.make(arch.reduce, arch.normal)) != g


# ------------------------------------------------------------------------------ the network
def test_darts_v2_network_has_the_papers_parameters(darts):
    from nasflow.proxies import count_params

    v2 = darts.parse(DARTS_V2)
    counts = darts.network_counts([v2], num_classes=10, width=36, cells=6)
    # the DARTS paper reports 3.3M parameters (its count leaves out the auxiliary head, as this network
    # has none) and 528M multiply-adds on a 32x32 image
    assert counts["params"][0] == 3_349_342 and counts["flops"][0] == 528_359_050
    assert count_params(darts.network(v2)) == 3_349_342


def test_network_counts_match_built_networks_on_odd_sizes(darts):
    import torch

    from nasflow.proxies import count_macs, count_params
    from nasflow.spaces.darts_network import layout

    assert [i for i, r in enumerate(layout(6)) if r] == [20 // 3, 2 * 20 // 3]  # DARTS's reductions of 20 cells
    rng = np.random.default_rng(3)
    archs = [darts.sample(rng) for _ in range(3)]
    counts = darts.network_counts(archs, num_classes=7, in_channels=1, width=5, cells=2, image_size=7)
    for k, arch in enumerate(archs):
        net = darts.network(arch, num_classes=7, in_channels=1, width=5, cells=2, drop_path=0.3)
        assert count_params(net) == counts["params"][k] and count_macs(net, (1, 7, 7)) == counts["flops"][k]
        torch.manual_seed(0)
        out = net.train()(torch.randn(3, 1, 7, 7))
        out.sum().backward()
        assert out.shape == (3, 7) and torch.isfinite(out).all()


# ------------------------------------------------------------------------------ the suite table
def test_suite_table_gives_199_cells_per_dataset(benchmarks_dir, darts):
    path = benchmarks_dir / "suite" / "suite_scifar100_svhn.jsonl"
    svhn, cifar = darts.open_oracle(str(path), "svhn"), darts.open_oracle(str(path), "scifar100")
    assert len(svhn) == len(cifar) == 199 and set(svhn.archs()) == set(cifar.archs())
    assert svhn.datasets == ("scifar100", "svhn") and svhn.query(darts.parse(SUITE_ROW)).test is None
    assert round(svhn.best()[1], 4) == 97.5069 and cifar.best()[1] == 52.6
    assert cifar.query(darts.parse(SUITE_ROW)).valid == 47.33


ROW = {"space": "darts", "dataset": "svhn", "naslib_arch": SUITE_ROW, "val_accuracy": 90.0}
OTHER_ROW = ("(((1, 5), (0, 4), (0, 2), (1, 3), (3, 0), (2, 5), (3, 3), (1, 5)), "
             "((1, 3), (0, 1), (2, 5), (1, 1), (0, 1), (3, 0), (0, 4), (4, 6)))")


@pytest.mark.parametrize("line, message", [
    ("{not json", "not a JSON object"),
    ("[1, 2]", "expected a JSON object"),
    (json.dumps({**ROW, "space": 3}), "field 'space' must be a string"),
    (json.dumps({**ROW, "val_accuracy": "90"}), "val_accuracy must be a finite number"),
    (json.dumps({**ROW, "val_accuracy": float("nan")}), "val_accuracy must be a finite number"),
    (json.dumps({**ROW, "naslib_arch": None}), "'naslib_arch' must be a cell string"),
    (json.dumps({**ROW, "naslib_arch": "__import__('os').system('false')"}), "malformed DARTS cell"),
    (json.dumps({**ROW, "naslib_arch": SUITE_ROW.replace("(1, 3)", "(0, 3)")}), "takes node 0 twice"),
    (json.dumps({**ROW, "naslib_arch": OTHER_ROW.replace("((1, 5), (0, 4)", "((0, 4), (1, 5)")}), "appears twice"),
    ("x" * 20_000, "a line of 20,001 characters"),
])
def test_bad_suite_lines_are_one_line_errors_with_file_and_line(tmp_path, darts, line, message):
    path = tmp_path / "suite.jsonl"
    first = json.dumps({**ROW, "naslib_arch": OTHER_ROW})
    path.write_text(json.dumps({**ROW, "space": "nb201", "naslib_arch": "(0, 1)"}) + "\n" + first + "\n\n" + line + "\n")
    with pytest.raises(BenchmarkError, match=message) as e:
        darts.open_oracle(str(path), "svhn")
    assert str(e.value).startswith(f"{path}:4: ") and "\n" not in str(e.value)


def test_missing_datasets_and_spaces_are_named(tmp_path, darts):
    path = tmp_path / "suite.jsonl"
    path.write_text(json.dumps(ROW) + "\n")
    with pytest.raises(BenchmarkError, match="no darts rows for dataset 'cifar10'; its darts datasets are svhn"):
        darts.open_oracle(str(path))
    path.write_text(json.dumps({**ROW, "space": "nb201"}) + "\n")
    with pytest.raises(BenchmarkError, match="no rows of space 'darts'"):
        darts.open_oracle(str(path), "svhn")
    (tmp_path / "suite.csv").write_text(json.dumps(ROW) + "\n")
    with pytest.raises(BenchmarkError, match="not a suite benchmark file by its extension '.csv'"):
        darts.open_oracle(str(tmp_path / "suite.csv"), "svhn")


def test_a_bare_file_name_is_found_in_the_one_folder_holding_it(tmp_path, monkeypatch):
    from nasflow.benchfiles import locate

    (tmp_path / "suite").mkdir()
    (tmp_path / "suite" / "t.jsonl").write_text("")
    monkeypatch.setenv("NASFLOW_BENCHMARKS", str(tmp_path))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert locate("t.jsonl", "darts") == tmp_path / "suite" / "t.jsonl"
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "t.jsonl").write_text("")
    assert str(locate("t.jsonl", "darts")) == "t.jsonl"  # two candidates: none is guessed


# ------------------------------------------------------------------------------ the CLI
def test_cli_lists_informs_and_searches_the_labelled_cells(benchmarks_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("NASFLOW_BENCHMARKS", str(benchmarks_dir))
    done = run_cli("spaces", cache=tmp_path / "c")
    assert done.returncode == 0 and re.search(r"^darts +1,076,746,950,455,072,400 cells", done.stdout, re.M)
    done = run_cli("info", "--space", "darts", "--dataset", "svhn", cache=tmp_path / "c")
    assert done.returncode == 0 and "(199 cells, dataset svhn)" in done.stdout and "best valid 97.5069" in done.stdout
    out = tmp_path / "run"
    done = run_cli("search", "--space", "darts", "--benchmark", "suite_scifar100_svhn.jsonl", "--dataset", "svhn",
                   "--searcher", "evolution", "--budget", "12", "--out", str(out), cache=tmp_path / "c")
    assert done.returncode == 0, done.stderr
    result = json.loads((out / "result.json").read_text())
    assert result["config"]["restricted"]["cells"] == 199 and result["best_valid"] > 96.0


def test_cli_trains_and_evaluates_a_tiny_predictor(benchmarks_dir, tmp_path):
    suite = str(benchmarks_dir / "suite" / "suite_scifar100_svhn.jsonl")
    done = run_cli("train-predictor", "--space", "darts", "--benchmark", suite, "--dataset", "scifar100",
                   "--pretrain", "none", "--train-ratio", "0.5", "--epochs", "5", "--out", str(tmp_path / "p"),
                   cache=tmp_path / "c")
    assert done.returncode == 0, done.stderr
    assert "29 training cells" in done.stdout and "test on 100 cells" in done.stdout
    done = run_cli("evaluate-predictor", "--space", "darts", "--benchmark", suite, "--dataset", "svhn",
                   "--encoder", "gin", "--pretrain", "none", "--ratios", "0.2", "--seeds", "1", "--perms", "21",
                   "--epochs", "5", cache=tmp_path / "c")
    assert done.returncode == 0, done.stderr
    assert "pool 59" in done.stdout and "| 0.2 | 11 | gin |" in done.stdout


@pytest.mark.parametrize("args, message", [
    (["info", "--space", "darts"], "no darts rows for dataset 'cifar10'"),
    (["search", "--space", "darts", "--dataset", "svhn", "--budget", "300"], "budget 300 exceeds the 199 labelled cells"),
])
def test_bad_cli_input_is_one_line_and_exit_2(benchmarks_dir, tmp_path, args, message):
    suite = str(benchmarks_dir / "suite" / "suite_scifar100_svhn.jsonl")
    done = run_cli(*args, "--benchmark", suite, cache=tmp_path / "c")
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1 and message in lines[0], done.stderr


@pytest.mark.parametrize("cell, message", [
    (SUITE_ROW.replace("(4, 4))", "(7, 4))"), "node 5 of the normal cell takes input 7, which is not an earlier node"),
    (SUITE_ROW.replace(", (4, 4))", ")"), "a DARTS normal cell has 4 intermediate nodes of exactly two inputs each: "
                                          "expected 8 (input, op) pairs, got 7"),
    (SUITE_ROW.replace("(1, 3)", "(0, 3)"), "node 2 of the normal cell takes node 0 twice"),
    (DARTS_V2.replace("dil_conv_3x3", "conv_7x1_1x7"), "unknown DARTS operation 'conv_7x1_1x7'"),
    (DARTS_V2.replace("normal=[", "normal=("), "malformed DARTS genotype"),
])
def test_bad_cells_in_a_table_through_the_cli(tmp_path, cell, message):
    path = tmp_path / "suite.jsonl"
    path.write_text(json.dumps({**ROW, "naslib_arch": DARTS_V2}) + "\n" + json.dumps({**ROW, "naslib_arch": cell}) + "\n")
    done = run_cli("info", "--space", "darts", "--benchmark", str(path), "--dataset", "svhn", cache=tmp_path / "c")
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1 and f"{path}:2: {message}" in lines[0], done.stderr


def test_a_one_query_search_trains_a_small_darts_network_on_the_digits(tmp_path):
    from sklearn.datasets import load_digits

    digits = load_digits()  # 200 of the embedded digits keep the training to a second
    np.savez(tmp_path / "digits.npz", x=digits.images[:200, None].astype(np.float32), y=digits.target[:200])
    out = tmp_path / "run"
    done = run_cli("search", "--space", "darts", "--searcher", "random", "--budget", "1", "--epochs", "1",
                   "--data", str(tmp_path / "digits.npz"), "--out", str(out), cache=tmp_path / "c")
    assert done.returncode == 0, done.stderr
    assert "darts network (width 8, 1 cell(s) per stage)" in done.stdout
    result = json.loads((out / "result.json").read_text())
    assert result["config"]["training"]["epochs"] == 1 and 0.0 <= result["best_valid"] <= 100.0


def test_cli_compares_on_the_labelled_cells_and_scores_proxies(benchmarks_dir, tmp_path):
    import csv

    suite = str(benchmarks_dir / "suite" / "suite_scifar100_svhn.jsonl")
    done = run_cli("compare", "--space", "darts", "--benchmark", suite, "--dataset", "svhn", "--searchers",
                   "random,local", "--predictor", "none", "--seeds", "2", "--budget", "6", "--jobs", "1",
                   "--out", str(tmp_path / "cmp"), cache=tmp_path / "c")
    assert done.returncode == 0, done.stderr
    with open(tmp_path / "cmp" / "summary.csv", newline="") as f:
        summary = list(csv.DictReader(f))
    assert sorted(r["searcher"] for r in summary) == ["local", "random"]
    done = run_cli("proxies", "--space", "darts", "--sample", "2", "--proxies", "params,flops",
                   "--out", str(tmp_path / "z.csv"), cache=tmp_path / "c")
    assert done.returncode == 0, done.stderr
    with open(tmp_path / "z.csv", newline="") as f:
        rows = list(csv.reader(f))  # a DARTS cell's string holds commas: the file quotes it
    assert rows[0] == ["arch", "params", "flops"] and len(rows) == 3
    darts = get_space("darts")
    counts = darts.network_counts([darts.parse(r[0]) for r in rows[1:]])
    assert [float(r[1]) for r in rows[1:]] == list(counts["params"])
