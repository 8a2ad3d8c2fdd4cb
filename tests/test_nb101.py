import itertools
import json
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nasflow.errors import ArchError, BenchmarkError
from nasflow.spaces import get_space
from nasflow.spaces.nb101 import MAX_EDGES, MAX_VERTICES, OPS, NB101Arch, NB101Space
from nasflow.spaces.nb101_table import NB101TableOracle

space = NB101Space()
C3, C1, MP = OPS
# input -> conv3x3 -> conv1x1 -> output plus a skip input -> output
CHAIN = ([[0, 1, 0, 1], [0, 0, 1, 0], [0, 0, 0, 1], [0, 0, 0, 0]], ["input", C3, C1, "output"])


@pytest.fixture(scope="session")
def nb101_rows(nb101_jsonl):
    return [json.loads(line) for line in open(nb101_jsonl)]


def upper_triangular_cells():
    bits = st.lists(st.integers(0, 1), min_size=21, max_size=21)
    ops = st.lists(st.sampled_from(OPS), min_size=5, max_size=5)
    return st.tuples(bits, ops)


def build(bits, ops):
    m = np.zeros((7, 7), dtype=int)
    m[np.triu_indices(7, 1)] = bits
    return m, ["input", *ops, "output"]


def write_lines(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def is_valid_cell(arch):
    m = arch.array()
    n = len(m)
    # every vertex but the output has an out-edge and every vertex but the input an in-edge
    pruned = all(m[v].any() for v in range(n - 1)) and all(m[:, v].any() for v in range(1, n))
    return (
        pruned
        and n <= MAX_VERTICES
        and m.sum() <= MAX_EDGES
        and not np.tril(m).any()
        and arch.ops[0] == "input"
        and arch.ops[-1] == "output"
        and all(op in OPS for op in arch.ops[1:-1])
    )


def test_all_official_hashes_reproduce(nb101_rows):
    assert len(nb101_rows) == 1000
    wrong = [r["hash"] for r in nb101_rows if NB101Arch(r["matrix"], r["ops"]).key != r["hash"]]
    assert wrong == []


def test_isomorphic_cells_are_equal(nb101_rows):
    checked = 0
    for row in nb101_rows[:40]:
        m, ops = np.array(row["matrix"]), row["ops"]
        n = len(m)
        original = NB101Arch(m, ops)
        for perm in itertools.permutations(range(1, n - 1)):
            order = [0, *perm, n - 1]
            pm = m[np.ix_(order, order)]
            if np.tril(pm).any() or list(perm) == sorted(perm):
                continue
            relabelled = NB101Arch(pm, [ops[i] for i in order])
            assert relabelled == original and hash(relabelled) == hash(original)
            checked += 1
    assert checked > 20
    # same shape, ops swapped between the two parallel branches: same cell
    a = space.make([[0, 1, 1, 0], [0, 0, 0, 1], [0, 0, 0, 1], [0, 0, 0, 0]], ["input", C3, C1, "output"])
    b = space.make([[0, 1, 1, 0], [0, 0, 0, 1], [0, 0, 0, 1], [0, 0, 0, 0]], ["input", C1, C3, "output"])
    assert a == b
    # in a chain the order of ops matters
    c = space.make(CHAIN[0], ["input", C1, C3, "output"])
    assert c != space.make(*CHAIN)


def test_pruning_drops_dead_vertices_and_padding():
    cell = space.make(*CHAIN)
    # vertex 2 has no way to the output, vertex 3 is unreachable from the input, 4 is padding
    m = [
        [0, 1, 1, 0, 0, 0, 1],
        [0, 0, 0, 0, 0, 1, 0],
        [0, 0, 0, 0, 0, 0, 0],
        [0, 0, 0, 0, 0, 1, 0],
        [0, 0, 0, 0, 0, 0, 0],
        [0, 0, 0, 0, 0, 0, 1],
        [0, 0, 0, 0, 0, 0, 0],
    ]
    pruned = space.make(m, ["input", C3, MP, MP, C1, C1, "output"])
    assert pruned.matrix == ((0, 1, 0, 1), (0, 0, 1, 0), (0, 0, 0, 1), (0, 0, 0, 0))
    assert pruned.ops == ("input", C3, C1, "output")
    assert pruned == cell and pruned.num_edges == 4
    # edges to dead vertices do not count against the limit of 9
    dense = np.zeros((7, 7), dtype=int)
    dense[0, 1:] = 1  # 6 edges, only 0 -> 6 is live
    dense[1, 2:6] = 1  # 4 more dead edges: 10 in total
    assert space.make(dense, ["input"] + [C3] * 5 + ["output"]).matrix == ((0, 1), (0, 0))


@pytest.mark.parametrize(
    "matrix, ops, message",
    [
        ([[0, 1, 0], [0, 0, 1]], ["input", C3, "output"], "square"),
        ([[0, 1], [0, 0, 1]], ["input", "output"], "square"),
        (np.triu(np.ones((8, 8), dtype=int), 1) * np.eye(8, k=1, dtype=int), ["input"] + [C3] * 6 + ["output"], "7 vertices"),
        (np.triu(np.ones((7, 7), dtype=int), 1), ["input"] + [C3] * 5 + ["output"], "9 edges"),
        ([[0, 1], [1, 0]], ["input", "output"], "upper-triangular"),
        ([[1, 1], [0, 0]], ["input", "output"], "upper-triangular"),
        ([[0, 2], [0, 0]], ["input", "output"], "0 and 1"),
        ([[0, 1, 0], [0, 0, 1], [0, 0, 0]], ["input", "conv5x5", "output"], "unknown NAS-Bench-101 operation"),
        ([[0, 1, 0], [0, 0, 1], [0, 0, 0]], ["input", C3], "3 vertices but 2 ops"),
        ([[0, 1, 0], [0, 0, 1], [0, 0, 0]], [C3, C3, "output"], "first op"),
        ([[0, 1, 0], [0, 0, 0], [0, 0, 0]], ["input", C3, "output"], "not connected"),
        ([[0]], ["input"], "at least an input and an output"),
        (None, ["input", "output"], "square, got shape scalar"),
        ([[0, 1], [0, 0]], None, "list of vertex labels"),
        ([[0, 1], [0, 0]], "input,output", "list of vertex labels"),
    ],
)
def test_bad_cells_raise_one_line(matrix, ops, message):
    with pytest.raises(ArchError, match=message) as e:
        space.make(matrix, ops)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "0100",
        "010:input,output",
        "0200:input,output",
        "0100:input,conv9x9,output",
        "0000:input,output",
        "0110:input,output",
        "{not json",
        '{"matrix": [[0, 1], [0, 0]]}',
        '{"matrix": [[0, 1], [0, 0]], "ops": ["input", "output", "output"]}',
    ],
)
def test_malformed_text_raises_one_line(text):
    with pytest.raises(ArchError) as e:
        space.parse(text)
    assert "\n" not in str(e.value)


def test_parse_reads_format_and_json(nb101_rows):
    row = nb101_rows[0]
    arch = NB101Arch(row["matrix"], row["ops"])
    assert space.parse(json.dumps({"matrix": row["matrix"], "ops": row["ops"]})) == arch
    text = space.format(arch)
    assert space.parse(f"  {text}\n") == arch
    bits, ops = text.split(":")
    assert len(bits) == arch.num_vertices**2 and ops.split(",") == list(arch.ops)


@given(upper_triangular_cells())
@settings(max_examples=150, deadline=None)
def test_parse_format_roundtrip(cell):
    try:
        arch = space.make(*build(*cell))
    except ArchError:
        return
    assert is_valid_cell(arch)
    back = space.parse(space.format(arch))
    assert back == arch and back.matrix == arch.matrix and back.ops == arch.ops


@given(st.integers(0, 2**32 - 1))
@settings(max_examples=60, deadline=None)
def test_sample_and_mutate_give_valid_different_cells(seed):
    rng = np.random.default_rng(seed)
    a = space.sample(rng)
    b = space.mutate(a, rng)
    assert is_valid_cell(a) and is_valid_cell(b)
    assert b != a and b.key != a.key


def test_sampling_is_seeded():
    first = [space.sample(np.random.default_rng(5)) for _ in range(2)]
    assert first[0] == first[1]
    many = {space.sample(np.random.default_rng(s)) for s in range(30)}
    assert len(many) > 15


def test_neighbours_are_distinct_valid_and_contain_mutations():
    rng = np.random.default_rng(0)
    for _ in range(5):
        a = space.sample(rng)
        n = space.neighbours(a)
        assert a not in n and len(set(n)) == len(n) > 0
        assert all(is_valid_cell(b) for b in n)
        assert all(space.mutate(a, np.random.default_rng(s)) in n for s in range(5))
    # the chain: 6 edge slots (removing 0->1, 1->2 or 2->3 leaves the skip path, so all
    # flips are valid), 4 op changes, and new vertices
    chain = space.make(*CHAIN)
    ops_changed = {b for b in space.neighbours(chain) if b.num_vertices == 4 and b.num_edges == 4}
    assert len(ops_changed) == 4


def test_the_smallest_cell_can_still_grow():
    smallest = space.make([[0, 1], [0, 0]], ["input", "output"])
    grown = space.neighbours(smallest)
    assert sorted(b.ops[1] for b in grown) == sorted(OPS)
    assert all(b.num_vertices == 3 and b.num_edges == 3 for b in grown)
    assert space.mutate(smallest, np.random.default_rng(1)) in grown


def test_to_graph_is_topological(nb101_rows):
    arch = NB101Arch(nb101_rows[3]["matrix"], nb101_rows[3]["ops"])
    g = space.to_graph(arch)
    assert g.ops == arch.ops and g.ops[0] == "input" and g.ops[-1] == "output"
    assert all(u < v for u, v in g.edges) and len(g.edges) == arch.num_edges
    assert all(o in space.vocab for o in g.ops)


def test_arch_at_rejects_what_is_not_an_index_without_enumerating():
    assert space.enumerable  # listing the cells is tested at a small scale in test_nb101_enumerate
    for bad in (True, -1, 423_624, 1.0, "3"):
        with pytest.raises(ArchError, match="index must be an integer"):
            space.arch_at(bad)
    with pytest.raises(ArchError, match="not a NAS-Bench-101 cell"):
        space.index_of("0110:input,output")


def test_registry_and_constants():
    sp = get_space("nb101")
    assert isinstance(sp, NB101Space) and sp.size == 423_624 and sp.datasets == ("cifar10",)


@pytest.fixture(scope="session")
def nb101_oracle(nb101_jsonl):
    return NB101TableOracle(nb101_jsonl)


def test_table_oracle_numbers(nb101_oracle, nb101_rows):
    assert len(nb101_oracle) == 1000
    row = nb101_rows[17]
    e = nb101_oracle.query(space.make(row["matrix"], row["ops"]))
    assert e.valid == row["valid_acc_108"] and e.test is None
    assert e.cost == row["train_time_s_108"] and e.extra["params"] == row["params"]
    (best,), value = nb101_oracle.best("valid")
    assert value == max(r["valid_acc_108"] for r in nb101_rows) == 94.6715
    assert best.key == "009a0f4922f1f1ef74542d849f60fbf2"
    with pytest.raises(BenchmarkError, match="no test"):
        nb101_oracle.best("test")


def test_table_oracle_other_epochs(tmp_path, nb101_rows):
    oracle = NB101TableOracle(write_lines(tmp_path / "t.jsonl", nb101_rows[:10]), epochs=12)
    row = nb101_rows[5]
    e = oracle.query(space.make(row["matrix"], row["ops"]))
    assert e.valid == row["valid_acc_12"] and e.cost is None


def test_cell_not_in_table(nb101_oracle):
    with pytest.raises(BenchmarkError, match="not in"):
        nb101_oracle.query(space.make([[0, 1], [0, 0]], ["input", "output"]))


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda r: {**r, "hash": "0" * 32}, "jsonl:2: hash 0000"),
        (lambda r: json.dumps(r)[:40], "jsonl:2: not a JSON object"),
        (lambda r: {k: v for k, v in r.items() if k != "valid_acc_108"}, "jsonl:2: missing valid_acc_108"),
        (lambda r: {**r, "ops": ["input"] + ["conv9x9"] * (len(r["ops"]) - 2) + ["output"]}, "jsonl:2: unknown"),
        (lambda r: {**r, "valid_acc_108": "high"}, "jsonl:2: valid_acc_108"),
    ],
)
def test_bad_table_lines_name_the_line(tmp_path, nb101_rows, change, message):
    path = write_lines(tmp_path / "t.jsonl", [nb101_rows[0], change(nb101_rows[1])])
    with pytest.raises(BenchmarkError, match=message) as e:
        NB101TableOracle(path)
    assert "\n" not in str(e.value)


def test_open_oracle_finds_files_and_rejects_bad_requests(tmp_path, monkeypatch, nb101_jsonl, nb101_rows):
    (tmp_path / "nb101").mkdir()
    write_lines(tmp_path / "nb101" / "nb101_1k.jsonl", nb101_rows[:3])
    monkeypatch.setenv("NASFLOW_BENCHMARKS", str(tmp_path))
    assert len(space.open_oracle()) == 3
    assert len(space.open_oracle(str(tmp_path / "nb101" / "nb101_1k.jsonl"))) == 3
    with pytest.raises(BenchmarkError, match="cifar10 only"):
        space.open_oracle(str(nb101_jsonl), dataset="cifar100")
    monkeypatch.setenv("NASFLOW_BENCHMARKS", str(tmp_path / "empty"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    with pytest.raises(BenchmarkError, match="nasbench_only108.tfrecord.*github.com/google-research/nasbench"):
        space.open_oracle()


def test_cli_info_prints_best_valid_and_no_test(nb101_jsonl):
    out = subprocess.run(
        [sys.executable, "-m", "nasflow.cli.main", "info", "--space", "nb101", "--benchmark", str(nb101_jsonl)],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    lines = dict(line.split(None, 2)[1:] for line in out.stdout.splitlines() if line.startswith("best"))
    assert lines["valid"].startswith("94.6715  011111000001000100000010000001000000:input,")
    assert lines["test"] == "n/a in this benchmark"
