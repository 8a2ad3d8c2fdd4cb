"""NAS-Bench-Macro (issue 19, item 1): cells, graphs, the benchmark's network and its counts, the table
oracle on one seed, and the CLI on the space. The contract tests (test_contracts.py) check the rest."""
import math

import numpy as np
import pytest

from clirun import run_cli
from nasflow.errors import ArchError, BenchmarkError
from nasflow.spaces import get_space
from nasflow.spaces.nas_bench_macro import DATASETS, MacroArch, MacroTableOracle, canonical

space = get_space("nas-bench-macro")
STRINGS = [MacroArch(np.base_repr(i, 3).zfill(8)) for i in range(3 ** 8)]  # every string, the table's rows
HEADER = "arch,test_acc_seed0,test_acc_seed1,test_acc_seed2,mean_acc,std,params,flops"
ROW = "00000000,45.32,45.33,45.44,45.3633,0.0544,387882,7713280"  # the table's first row


@pytest.fixture(scope="module")
def macro_csv(benchmarks_dir):
    path = benchmarks_dir / "macro" / "nas_bench_macro_cifar10.csv"
    if not path.is_file():
        pytest.skip("benchmark tables not found (set NASFLOW_BENCHMARKS): no macro/nas_bench_macro_cifar10.csv")
    return path


@pytest.fixture(scope="module")
def oracle(macro_csv):
    return MacroTableOracle(macro_csv)


def one_line_refusal(result, message):
    lines = result.stderr.strip().splitlines()
    return result.returncode == 2 and len(lines) == 1 and lines[0].startswith("nasflow: error:") and message in lines[0]


# ------------------------------------------------------------------------------------------------ cells
@pytest.mark.parametrize("text, message", [
    ("", "got 0 characters"),
    ("0120120", "got 7 characters"),
    ("012012012", "got 9 characters"),
    ("01201203", "layer 7"),
    ("0120a201", "layer 4"),
    ("0120-201", "each digit must be 0 (identity), 1 (MB3_K3) or 2 (MB6_K5)"),
    ("0120 201", "layer 4"),
    ("|nor_conv_3x3~0|", "digits"),
    (12012012, "got int"),
])
def test_malformed_cells_are_one_line_arch_errors(text, message):
    with pytest.raises(ArchError, match=message.replace("(", r"\(").replace(")", r"\)")) as e:
        space.parse(text)
    assert "\n" not in str(e.value)


def test_the_space_is_its_3969_networks_in_the_tables_order():
    every = space.enumerate()
    assert [a.key for a in every[:4]] == ["00000000", "00000010", "00000011", "00000012"]
    assert every[-1].key == "22222222" and len(every) == 3_969 == space.size == len(set(STRINGS))
    assert set(every) == set(STRINGS) and all(a.digits == a.key for a in every)  # canonical strings only
    assert [int(a.key, 3) for a in every] == sorted(int(a.key, 3) for a in every)
    assert all(space.index_of(every[i]) == i and space.arch_at(i) == every[i] for i in range(0, 3_969, 97))
    assert space.index_of(space.parse("00000001")) == 1  # any string of a network finds the network
    cell = space.parse(" 01201201\n")  # surrounding whitespace of a table field is not the cell
    assert (cell.digits, cell.key, space.format(cell)) == ("01201201", "01210210", "01210210")
    assert cell == space.parse("01210210") and len({cell, space.parse("01210210")}) == 1
    for bad in (-1, 3_969, 1.0, "3", True):
        with pytest.raises(ArchError):
            space.arch_at(bad)


def test_neighbours_are_the_distinct_networks_one_layer_change_away():
    arch = space.parse("01200120")  # stage 2 is 2 then two identities: two of its changes give one network
    neighbours = space.neighbours(arch)
    assert len(neighbours) == 14 == len(set(neighbours))
    changed = {MacroArch(arch.key[:k] + d + arch.key[k + 1:]) for k in range(8) for d in "012" if d != arch.key[k]}
    assert set(neighbours) == changed and arch not in changed  # one change always alters some stage's blocks
    assert all(n.digits == n.key for n in neighbours)
    assert len(space.neighbours(space.parse("12121121"))) == 16  # no identity, no repeated block: all distinct
    assert len(space.neighbours(space.parse("12122122"))) == 14  # removing either of two equal blocks: one network
    rng = np.random.default_rng(0)
    assert {space.mutate(arch, rng) for _ in range(300)} == set(neighbours)
    # uniform over networks, not strings: ten equal bins of the network index get a tenth each
    shares = np.bincount([space.index_of(space.sample(rng)) * 10 // 3_969 for _ in range(20_000)]) / 20_000
    assert np.all(np.abs(shares - 0.1) < 0.01)


@pytest.mark.parametrize("arch, trained", [
    ("00000000", "00000000"),
    ("00000001", "00000010"),  # the benchmark's get_real_arch: identities behind the blocks of a stage
    ("10010001", "10010010"),
    ("10102001", "10120010"),
    ("02012102", "02012120"),
    ("22222222", "22222222"),
])
def test_canonical_is_the_network_the_benchmark_trained(arch, trained):
    assert canonical(MacroArch(arch)).key == trained
    assert canonical(MacroArch(trained)).key == trained


# ----------------------------------------------------------------------------------------------- graphs
def test_to_graph_is_the_chain_of_the_trained_network():
    g = space.to_graph(space.parse("10102001"))  # trained as 10120010
    assert g.ops == ("input", "mb3_k3_s2", "identity", "mb3_k3_s2", "mb6_k5", "identity",
                     "conv1x1_s2", "mb3_k3", "identity", "output")
    assert g.edges == tuple((k, k + 1) for k in range(9))
    assert space.to_graph(space.parse("00000001")) == space.to_graph(space.parse("00000010"))


def test_graphs_tell_apart_exactly_the_distinct_networks():
    graphs = {}
    for a in STRINGS:
        graphs.setdefault(space.to_graph(a), set()).add(canonical(a).digits)
    assert len(graphs) == len({canonical(a).digits for a in STRINGS}) == 3_969
    assert all(len(networks) == 1 for networks in graphs.values())
    # same blocks, other stage boundaries: without downsampling labels these two chains would read alike
    assert space.to_graph(space.parse("11100000")) != space.to_graph(space.parse("10110000"))


# --------------------------------------------------------------------------------- network and counts
def test_closed_form_counts_equal_the_tables_params_and_flops_for_every_string(oracle):
    counts = space.network_counts(STRINGS)  # each string as written: its stride-1 identities count nothing
    table = [oracle.query(a).extra for a in STRINGS]
    np.testing.assert_array_equal(counts["params"], [e["params"] for e in table])
    np.testing.assert_array_equal(counts["flops"], [e["flops"] for e in table])


@pytest.mark.parametrize("arch, config, image", [
    ("22222222", {}, (3, 32, 32)),
    ("01201201", {}, (3, 32, 32)),
    ("00000000", {}, (3, 32, 32)),
    ("12021120", {"num_classes": 5, "in_channels": 1, "width": 8, "cells": 2}, (1, 8, 8)),
    ("20110202", {"num_classes": 7, "in_channels": 3, "width": 4, "cells": 1}, (3, 7, 7)),  # odd sides round up
])
def test_built_network_matches_the_closed_form(arch, config, image, one_thread):
    import torch

    from nasflow.proxies import count_macs, count_params

    cell = space.parse(arch)
    net = space.network(cell, **config)
    counts = space.network_counts([cell], image_size=image[1], **config)
    assert count_params(net) == counts["params"][0]
    # nasflow's counter adds the classifier's bias terms, which the benchmark's does not count
    assert count_macs(net, image) == counts["flops"][0] + config.get("num_classes", 10)
    with torch.no_grad():
        assert net.eval()(torch.zeros(2, *image)).shape == (2, config.get("num_classes", 10))


def test_network_follows_the_benchmarks_definition():
    from torch import nn

    net = space.network(space.parse("10020001"))
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    assert (convs[0].in_channels, convs[0].out_channels, convs[0].kernel_size) == (3, 32, (3, 3))
    assert (convs[-1].in_channels, convs[-1].out_channels) == (256, 1280) and net.classifier.in_features == 1280
    strided = [(c.in_channels, c.out_channels, c.kernel_size[0], c.groups) for c in convs if c.stride == (2, 2)]
    # layer 0 an MB3_K3 (strided depthwise 3x3 over 32*3 channels), layers 2 and 5 identities (strided 1x1 convs)
    assert strided == [(96, 96, 3, 96), (64, 128, 1, 1), (128, 256, 1, 1)]
    assert not any(isinstance(m, (nn.ReLU6, nn.Hardtanh)) for m in net.modules())  # plain ReLU, as the benchmark
    blocks = [m for m in net.features if hasattr(m, "residual")]
    assert [b.residual for b in blocks] == [False, True, True]  # MB3 at layer 0 (strided), MB6 at 3, MB3 at 7


# --------------------------------------------------------------------------------------------- the table
def test_table_optima_and_seed_datasets(macro_csv, oracle):
    assert len(oracle) == 3_969 and oracle.datasets == DATASETS  # 6,561 rows, one per string, fold into networks
    cells, best = oracle.best("valid")
    assert best == 93.28 and [a.key for a in cells] == ["22212220"]  # the rows 22212202 and 22212220: one network
    cells, best = oracle.best("test")
    assert best == pytest.approx(93.1267, abs=1e-4) and [a.key for a in cells] == ["22212220"]
    assert oracle.query(space.parse("22212202")) == oracle.query(space.parse("22212220"))
    first = oracle.query(space.parse("00000000"))
    assert (first.valid, first.extra) == (45.32, {"params": 387_882, "flops": 7_713_280})
    assert first.test == pytest.approx((45.32 + 45.33 + 45.44) / 3)
    assert "seed 0" in oracle.metric_note and "mean" in oracle.metric_note
    seed2 = MacroTableOracle(macro_csv, "cifar10-seed2")
    assert seed2.query(space.parse("00000000")).valid == 45.44 and seed2.best("valid")[1] == 93.39
    assert seed2.query(space.parse("00000000")).test == first.test
    with pytest.raises(BenchmarkError, match="no dataset 'cifar100'; use cifar10, cifar10-seed1, cifar10-seed2"):
        MacroTableOracle(macro_csv, "cifar100")


def test_the_strings_of_one_network_fold_into_one_cell(tmp_path):
    path = tmp_path / "macro.csv"
    path.write_text(f"{HEADER}\n00000001,1,2,3,2,0,5,6\n00000010,1,2,3,2,0,5,6\n00000002,4,5,6,5,0,7,8\n")
    oracle = MacroTableOracle(path)
    assert len(oracle) == 2 and oracle.query(space.parse("00000001")).valid == 1.0
    assert {space.format(a) for a, _ in oracle.items()} == {"00000010", "00000020"}


@pytest.mark.parametrize("text, message", [
    (f"{HEADER}\n0000000,1,2,3,2,0,1,1\n", ":2: a NAS-Bench-Macro cell is 8 digits"),
    (f"{HEADER}\n{ROW}\n00000003,1,2,3,2,0,1,1\n", ":3: layer 7"),
    (f"{HEADER}\n{ROW}\n{ROW}\n", ":3: cell 00000000 appears twice"),
    (f"{HEADER}\n00000001,1,2,3,2,0,5,6\n00000010,1,2,4,2.3333,0,5,6\n",
     ":3: 00000010 and 00000001 (line 2) are one network, 00000010 (stride-1 identities compute nothing), but their "
     "numbers differ"),
    (f"{HEADER}\n00000001,nan,2,3,2,0,1,1\n", ":2: column test_acc_seed0 is not a finite number"),
    (f"{HEADER}\n00000001,1,2,3,9,0,1,1\n", ":2: mean_acc 9 is not the mean"),
    (f"{HEADER}\n00000001,1,2,3,2,0,1.5,1\n", ":2: column params is not a count"),
    (f"{HEADER}\n00000001,1,2,3\n", ":2: expected 8 fields, got 4"),
    ("arch,test_acc_seed0,params,flops\n00000001,1,1,1\n", "no column(s) test_acc_seed1, test_acc_seed2"),
    (f"{HEADER}\n", "has a header but no rows"),
    ("", "is empty"),
])
def test_bad_tables_are_one_line_benchmark_errors(tmp_path, text, message):
    path = tmp_path / "macro.csv"
    path.write_text(text)
    with pytest.raises(BenchmarkError) as e:
        MacroTableOracle(path)
    assert message in str(e.value) and "\n" not in str(e.value)
    assert str(path) in str(e.value)


def test_a_partial_table_is_read(tmp_path):
    path = tmp_path / "macro.csv"
    path.write_text(f"{HEADER}\n{ROW}\n00000001,64.34,64.21,64.12,64.2233,0.0903,791594,14115328\n")
    table = MacroTableOracle(path, "cifar10-seed1")
    assert len(table) == 2 and table.best("valid") == ([space.parse("00000001")], 64.21)


def test_the_table_is_found_in_its_folder_and_by_bare_name(monkeypatch, benchmarks_dir, macro_csv, tmp_path):
    monkeypatch.setenv("NASFLOW_BENCHMARKS", str(benchmarks_dir))
    assert space.open_oracle().source == str(macro_csv)  # under macro/, not under a folder named after the space
    assert space.open_oracle("nas_bench_macro_cifar10.csv").source == str(macro_csv)
    monkeypatch.setenv("NASFLOW_BENCHMARKS", str(tmp_path))
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(BenchmarkError, match="nas_bench_macro_cifar10.csv"):
        space.open_oracle()


# ------------------------------------------------------------------------------------------------- CLI
def test_cli_lists_describes_and_searches_the_space(macro_csv, tmp_path):
    listed = run_cli("spaces", cache=tmp_path / "cache")
    assert any(line.split()[:2] == ["nas-bench-macro", "3,969"] for line in listed.stdout.splitlines())
    info = run_cli("info", "--space", "nas-bench-macro", "--benchmark", str(macro_csv), "--dataset", "cifar10-seed1",
                   cache=tmp_path / "cache")
    assert info.returncode == 0, info.stderr
    assert "valid is seed 1's test accuracy" in info.stdout and "best test  93.1267  22212220" in info.stdout
    found = run_cli("search", "--space", "nas-bench-macro", "--searcher", "evolution", "--budget", "12",
                    "--benchmark", str(macro_csv), "--out", str(tmp_path / "run"), cache=tmp_path / "cache")
    assert found.returncode == 0, found.stderr
    oracle_line = next(line for line in found.stdout.splitlines() if line.startswith("oracle"))
    assert "valid is seed 0's test accuracy, as the table has no validation split; test the mean" in oracle_line
    assert "regret" in found.stdout and "of budget 12" in found.stdout


def test_cli_predictor_commands_and_proxies(macro_csv, tmp_path, one_thread):
    common = ("--space", "nas-bench-macro", "--benchmark", str(macro_csv), "--epochs", "3")
    trained = run_cli("train-predictor", *common, "--pretrain", "none", "--out", str(tmp_path / "p"),
                      cache=tmp_path / "cache")
    assert trained.returncode == 0, trained.stderr
    assert "19 training cells" in trained.stdout and "test on 1,945 cells" in trained.stdout  # the 1,984-cell pool
    evaluated = run_cli("evaluate-predictor", *common, "--encoder", "gin", "--pretrain", "none", "--ratios", "0.01",
                        "--seeds", "21", "--perms", "21", cache=tmp_path / "cache")
    assert evaluated.returncode == 0, evaluated.stderr
    assert "labels (valid is seed 0's test accuracy" in evaluated.stdout and "pool 1,984" in evaluated.stdout
    scored = run_cli("proxies", "--space", "nas-bench-macro", "--sample", "2", "--proxies", "params,flops,synflow",
                     "--out", str(tmp_path / "z.csv"), cache=tmp_path / "cache")
    assert scored.returncode == 0, scored.stderr
    rows = [line.split(",") for line in (tmp_path / "z.csv").read_text().splitlines()]
    assert rows[0] == ["arch", "params", "flops", "synflow"] and len(rows) == 3
    counts = space.network_counts([space.parse(r[0]) for r in rows[1:]])
    assert [float(r[1]) for r in rows[1:]] == list(counts["params"])
    assert all(math.isfinite(float(r[3])) for r in rows[1:])


def test_cli_compare_on_the_table(macro_csv, tmp_path):
    done = run_cli("compare", "--space", "nas-bench-macro", "--searchers", "random,tpe", "--predictor", "none",
                   "--seeds", "1", "--budget", "5", "--jobs", "1", "--benchmark", str(macro_csv),
                   "--out", str(tmp_path / "cmp"), cache=tmp_path / "cache")
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "cmp" / "summary.csv").is_file() and "tpe" in done.stdout


def test_cli_search_trains_a_small_network_on_the_digits(tmp_path):
    done = run_cli("search", "--space", "nas-bench-macro", "--searcher", "random", "--budget", "1", "--epochs", "1",
                   "--out", str(tmp_path / "run"), cache=tmp_path / "cache")
    assert done.returncode == 0, done.stderr
    assert "training on the embedded digits" in done.stdout and "nas-bench-macro network (width 8" in done.stdout
    valid = float(next(line for line in done.stdout.splitlines() if line.startswith("valid")).split()[1])
    assert 0 <= valid <= 100


@pytest.mark.parametrize("row, message", [
    ("0120120,1,2,3,2,0,1,1", ":2: a NAS-Bench-Macro cell is 8 digits, one per layer; got 7 characters"),
    ("01201203,1,2,3,2,0,1,1", ":2: layer 7 of NAS-Bench-Macro cell '01201203' is '3'"),
])
def test_cli_refuses_bad_cells_in_one_line(tmp_path, row, message):
    table = tmp_path / "bad.csv"
    table.write_text(f"{HEADER}\n{row}\n")
    for command in ("info", "search"):
        done = run_cli(command, "--space", "nas-bench-macro", "--benchmark", str(table),
                       *(("--out", str(tmp_path / "run")) if command == "search" else ()), cache=tmp_path / "cache")
        assert one_line_refusal(done, message), done.stderr
    assert not (tmp_path / "run" / "journal.jsonl").exists()


def test_cli_refuses_an_unknown_seed_dataset(macro_csv, tmp_path):
    done = run_cli("search", "--space", "nas-bench-macro", "--benchmark", str(macro_csv), "--dataset", "cifar10-seed3",
                   "--out", str(tmp_path / "run"), cache=tmp_path / "cache")
    assert one_line_refusal(done, "NAS-Bench-Macro has no dataset 'cifar10-seed3'"), done.stderr
