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
