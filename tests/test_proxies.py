"""Zero-cost params/FLOPs: the closed-form counts against real networks, and the disk cache."""
import numpy as np
import pytest

from nasflow.errors import NasflowError
from nasflow.proxies import PROXIES, cache_path, count_macs, count_params, zero_cost
from nasflow.spaces.nb201 import NB201Space


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("NASFLOW_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


class BuildOnlySpace:
    """NB-201 without the closed form, so the proxies must build and count every network."""

    name = "nb201-built"
    network_counts = None

    def network(self, arch):
        return NB201Space().network(arch)


def test_closed_form_matches_real_networks_on_a_random_sample():
    space = NB201Space()
    rng = np.random.default_rng(7)
    archs = [space.sample(rng) for _ in range(4)] + [space.arch_at(0), space.make(["nor_conv_3x3"] * 6)]
    # the build-only space builds every network and counts it with count_params / count_macs hooks
    built = BuildOnlySpace()
    assert built.network_counts is None
    np.testing.assert_array_equal(zero_cost(built, archs, "params"), zero_cost(space, archs, "params"))
    np.testing.assert_array_equal(zero_cost(built, archs, "flops"), zero_cost(space, archs, "flops"))


def test_counters_on_a_network_counted_by_hand():
    import torch

    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.Flatten(), torch.nn.Linear(4 * 5 * 5, 2))
    assert count_params(net) == 3 * 4 * 9 + 4 + 100 * 2 + 2
    assert count_macs(net, (3, 5, 5)) == (3 * 4 * 9 + 4) * 25 + 100 * 2 + 2


def test_whole_nb201_space_is_fast_and_sane():
    space = NB201Space()
    archs = space.enumerate()
    params = zero_cost(space, archs, "params")
    flops = zero_cost(space, archs, "flops")
    assert params.shape == flops.shape == (15_625,)
    assert params[0] == 129_306  # NAS-Bench-201's own figure for index 0 (0.129306 M)
    assert flops[0] == 15_647_370  # NAS-Bench-201 reports 15.64737 MFLOPs for index 0
    all_conv3 = archs.index(space.make(["nor_conv_3x3"] * 6))
    assert params.argmax() == all_conv3 and flops.argmax() == all_conv3
    # cells without convolutions share the skeleton's count, the minimum
    assert params.min() == params[archs.index(space.make(["none"] * 6))]


def test_cache_is_written_and_reused(private_cache):
    space = NB201Space()
    archs = [space.arch_at(i) for i in (5, 3, 5, 9)]
    first = zero_cost(space, archs, "params")
    assert first[0] == first[2]
    files = list((private_cache / "proxies").glob("nb201-params.*.npz"))
    assert files == [cache_path(space, "params")]
    # poison the cached value: a reused cache returns it, proving no recomputation
    with np.load(files[0]) as z:
        keys, values = z["keys"], z["values"].copy()
    values[list(keys).index(archs[1].key)] = -1.0
    np.savez_compressed(files[0], keys=keys, values=values)
    again = zero_cost(space, archs, "params")
    assert again[1] == -1.0 and again[0] == first[0]
    assert zero_cost(space, archs, "params", cache=False)[1] == first[1]


def test_damaged_cache_is_recomputed(private_cache):
    space = NB201Space()
    archs = [space.arch_at(1)]
    expected = zero_cost(space, archs, "flops")
    for f in (private_cache / "proxies").glob("*.npz"):
        f.write_bytes(b"not a zip")
    np.testing.assert_array_equal(zero_cost(space, archs, "flops"), expected)


def test_unknown_proxy_is_a_one_line_error():
    with pytest.raises(NasflowError, match="unknown zero-cost proxy 'synflw'.*params"):
        zero_cost(NB201Space(), [], "synflw")
    assert {"params", "flops"} <= set(PROXIES)


def test_nb101_params_proxy_matches_the_table(nb101_jsonl):
    from nasflow.spaces.nb101_table import NB101TableOracle

    from nasflow.spaces.nb101 import NB101Space

    space = NB101Space()
    table = NB101TableOracle(nb101_jsonl)
    archs = table.archs()
    params = zero_cost(space, archs, "params")
    assert (params == [table.query(a).extra["params"] for a in archs]).all()
    assert (zero_cost(space, archs, "flops") > 0).all()


def test_nb101_network_trains_on_digits(tmp_path):
    from nasflow.data import load_digits
    from nasflow.training import TrainingOracle

    from nasflow.spaces.nb101 import NB101Space

    space = NB101Space()
    arch = space.make([[0, 1, 1, 0], [0, 0, 0, 1], [0, 0, 0, 1], [0, 0, 0, 0]],
                      ["input", "conv3x3-bn-relu", "maxpool3x3", "output"])
    ev = TrainingOracle(space, load_digits(), epochs=2, width=8, cells=1, cache_dir=tmp_path).query(arch)
    assert ev.valid > 50 and ev.extra["params"] == count_params(space.network(arch, 10, 1, 8, 1))


def test_proxy_vote_averages_each_proxys_ranks():
    from nasflow.proxies import proxy_vote

    space = NB201Space()
    archs = [space.arch_at(i) for i in (0, 7, 100, 2000, 9000)]
    params, flops = zero_cost(space, archs, "params"), zero_cost(space, archs, "flops")
    # 0-based rank, ties sharing the average of the ranks they span: cells below + (cells equal - 1) / 2
    ranks = [np.array([(v < x).sum() + ((v == x).sum() - 1) / 2 for x in v]) for v in (params, flops)]
    np.testing.assert_allclose(proxy_vote(space, archs, ["params", "flops"]), (ranks[0] + ranks[1]) / 2 / 4)
    one = proxy_vote(space, archs, ["params"])
    assert one.min() == 0.0 and one.max() == 1.0 and np.argmax(one) == np.argmax(params)
    # tied cells share their average rank, whatever their order: here the same cell twice between two others
    tied = proxy_vote(space, [archs[0], archs[1], archs[1], archs[4]], ["params"])
    assert tied[1] == tied[2] and sorted(tied.tolist()) == [0.0, 0.5, 0.5, 1.0]
    with pytest.raises(NasflowError, match="unknown zero-cost proxy 'flop'"):
        proxy_vote(space, archs, ["params", "flop"])
