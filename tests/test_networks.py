"""Network builders: NB-201's skeleton and NB-101's network against the official parameter counts."""
import numpy as np
import pytest
import torch

from nasflow.proxies import count_params
from nasflow.spaces.nb201 import NB201Space

nb201 = NB201Space()


def test_nb201_index0_matches_the_official_parameter_count():
    net = nb201.network(nb201.arch_at(0))
    assert abs(count_params(net) - 129_306) <= 0.001 * 129_306


@pytest.mark.parametrize(
    "ops, expected",
    [
        # hand-counted: stem 464 + reductions 14,464 + 57,600 + final BN 128 + linear 650 = 73,306 ...
        (["none"] * 6, 73_306),
        (["skip_connect", "avg_pool_3x3", "none", "skip_connect", "avg_pool_3x3", "none"], 73_306),
        # ... plus 5 cells x (16*16 + 32*32 + 64*64) x 9 x 6 edges + 5 x (32 + 64 + 128) x 6 BN
        (["nor_conv_3x3"] * 6, 73_306 + 5 * 9 * (256 + 1024 + 4096) * 6 + 5 * 2 * (16 + 32 + 64) * 6),
    ],
)
def test_nb201_parameter_counts_by_hand(ops, expected):
    assert count_params(nb201.network(nb201.make(ops))) == expected


def test_nb201_network_shapes_and_options():
    arch = nb201.arch_at(123)
    net = nb201.network(arch, num_classes=7, in_channels=1, width=8, cells=1)
    out = net(torch.randn(2, 1, 8, 8))
    assert out.shape == (2, 7)
    counts = nb201.network_counts([arch], num_classes=7, in_channels=1, width=8, cells=1, image_size=8)
    assert counts["params"][0] == count_params(net)


def test_nb201_none_only_cell_still_runs_and_trains_its_head():
    net = nb201.network(nb201.make(["none"] * 6), width=8, cells=1)
    loss = net(torch.randn(4, 3, 8, 8)).sum()
    loss.backward()
    assert net.classifier.weight.grad is not None


@pytest.fixture(scope="session")
def nb101_rows(nb101_jsonl):
    import json

    from nasbench_pytorch.model import ModelSpec

    rows = []
    for line in open(nb101_jsonl, encoding="utf-8"):
        r = json.loads(line)
        spec = ModelSpec(np.array(r["matrix"]), r["ops"])  # prunes, as NB101Space.make does
        rows.append((spec.matrix.numpy(), spec.ops, r["params"]))
    return rows


def test_nb101_closed_form_params_match_all_1000_official_counts(nb101_rows):
    from nasflow.spaces.nb101_network import network_counts

    counts = network_counts([(m, ops) for m, ops, _ in nb101_rows])
    official = np.array([p for _, _, p in nb101_rows])
    assert len(official) == 1000
    assert (counts["params"] == official).all()


def test_nb101_real_networks_match_official_params_and_closed_form(nb101_rows):
    from nasflow.proxies import count_macs
    from nasflow.spaces.nb101_network import build_network, network_counts

    # the sample spans 4- to 7-vertex cells
    picks = [i for i in range(len(nb101_rows)) if len(nb101_rows[i][1]) in (4, 7)][:2] + [0]
    for i in picks:
        matrix, ops, official = nb101_rows[i]
        net = build_network(matrix, ops)
        assert count_params(net) == official
        assert count_macs(net, (3, 32, 32)) == network_counts([(matrix, ops)])["flops"][0]


def test_nb101_smallest_cell_and_bad_cells():
    from nasflow.errors import ArchError
    from nasflow.spaces.nb101_network import build_network, network_counts

    matrix, ops = [[0, 1], [0, 0]], ["input", "output"]
    net = build_network(matrix, ops, num_classes=4, in_channels=1, stem=8, stacks=2, cells=1)
    assert net(torch.randn(2, 1, 8, 8)).shape == (2, 4)
    counts = network_counts([(matrix, ops)], num_classes=4, in_channels=1, stem=8, stacks=2, cells=1, image_size=8)
    assert counts["params"][0] == count_params(net)
    with pytest.raises(ArchError, match="no path from input to output"):
        build_network([[0, 1, 0], [0, 0, 0], [0, 0, 0]], ["input", "conv3x3-bn-relu", "output"])
    with pytest.raises(ArchError, match="unknown NAS-Bench-101 operation"):
        network_counts([([[0, 1, 0], [0, 0, 1], [0, 0, 0]], ["input", "conv5x5", "output"])])


@pytest.mark.parametrize("side", [5, 6, 7])
def test_nb201_odd_and_small_images_keep_the_residual_shapes(side):
    from nasflow.proxies import count_macs

    arch = nb201.make(["nor_conv_3x3", "skip_connect", "avg_pool_3x3", "nor_conv_1x1", "none", "skip_connect"])
    net = nb201.network(arch, num_classes=3, in_channels=2, width=4, cells=1)
    assert net(torch.randn(2, 2, side, side)).shape == (2, 3)
    counts = nb201.network_counts([arch], num_classes=3, in_channels=2, width=4, cells=1, image_size=side)
    assert counts["flops"][0] == count_macs(net, (2, side, side))
