"""NAS-Bench-201's network: a 3x3 stem, three stages of N cells at widths C, 2C, 4C joined by
residual reduction blocks, BN-ReLU, global average pooling and a linear head.

Written for nasflow after the structure of NAS-Bench-201 (Dong & Yang, ICLR 2020): at C=16,
N=5 and 10 classes its parameter count is the benchmark's own figure. Besides the modules,
``stage_counts`` gives the exact parameter and multiply-accumulate counts of every building
block in closed form, so a whole space can be counted without building 15,625 networks.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
from torch import nn

from .conv_ops import ReLUConvBN
from .nb201 import EDGES, OPS


class Zero(nn.Module):
    def forward(self, x):
        # multiplying keeps the graph connected, so an all-`none` cell still trains its stem/head
        return x.mul(0.0)


def make_op(name: str, channels: int) -> nn.Module:
    """One edge operation inside a cell (stride 1, equal in and out widths)."""
    if name == "none":
        return Zero()
    if name == "skip_connect":
        return nn.Identity()
    if name == "nor_conv_1x1":
        return ReLUConvBN(channels, channels, 1)
    if name == "nor_conv_3x3":
        return ReLUConvBN(channels, channels, 3)
    if name == "avg_pool_3x3":
        return nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)
    raise ValueError(f"unknown NAS-Bench-201 operation {name!r}")


class Cell(nn.Module):
    """Four nodes; node k is the sum of the edge operations applied to every earlier node."""

    def __init__(self, ops: Sequence[str], channels: int):
        super().__init__()
        self.edges = nn.ModuleList(make_op(op, channels) for op in ops)

    def forward(self, x):
        nodes = [x]
        for dst in range(1, 4):
            nodes.append(sum(self.edges[k](nodes[src]) for k, (src, d) in enumerate(EDGES) if d == dst))
        return nodes[3]


class ResidualReduction(nn.Module):
    """ResNet basic block with stride 2: two ReLU-Conv-BN, shortcut avg-pool + 1x1 conv."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.conv_a = ReLUConvBN(c_in, c_out, 3, stride=2)
        self.conv_b = ReLUConvBN(c_out, c_out, 3)
        # ceil_mode: same as NB-201 on even sizes, and odd sizes (a user's 7x7 images) keep both
        # branches the same size instead of failing or broadcasting
        self.shortcut = nn.Sequential(nn.AvgPool2d(2, stride=2, ceil_mode=True), nn.Conv2d(c_in, c_out, 1, bias=False))

    def forward(self, x):
        return self.shortcut(x) + self.conv_b(self.conv_a(x))


class NB201Network(nn.Module):
    def __init__(self, ops: Sequence[str], num_classes: int = 10, in_channels: int = 3, width: int = 16, cells: int = 5):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, width, 3, padding=1, bias=False), nn.BatchNorm2d(width))
        layers: list[nn.Module] = []
        c = width
        for stage in range(3):
            if stage:
                layers.append(ResidualReduction(c, 2 * c))
                c *= 2
            layers.extend(Cell(ops, c) for _ in range(cells))
        self.layers = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.BatchNorm2d(c), nn.ReLU(inplace=False), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.classifier = nn.Linear(c, num_classes)

    def forward(self, x):
        return self.classifier(self.head(self.layers(self.stem(x))))


def build_network(ops: Sequence[str], num_classes: int = 10, in_channels: int = 3, width: int = 16, cells: int = 5) -> NB201Network:
    return NB201Network(ops, num_classes=num_classes, in_channels=in_channels, width=width, cells=cells)


def _conv_bn(c_in: int, c_out: int, kernel: int) -> int:
    return c_in * c_out * kernel * kernel + 2 * c_out


def op_params(channels: int) -> dict[str, int]:
    """Trainable parameters of each edge operation at ``channels`` wide."""
    return {
        "none": 0,
        "skip_connect": 0,
        "nor_conv_1x1": _conv_bn(channels, channels, 1),
        "nor_conv_3x3": _conv_bn(channels, channels, 3),
        "avg_pool_3x3": 0,
    }


def op_macs(channels: int, pixels: int) -> dict[str, int]:
    """Multiply-accumulates of each edge operation on a ``pixels``-pixel feature map.

    Counted as NAS-Bench-201 counts FLOPs: convolutions and linear layers only (k*k*Cin*Cout
    per output pixel); BN, ReLU, pooling, additions are free.
    """
    return {
        "none": 0,
        "skip_connect": 0,
        "nor_conv_1x1": channels * channels * pixels,
        "nor_conv_3x3": 9 * channels * channels * pixels,
        "avg_pool_3x3": 0,
    }


def _out_size(size: int) -> int:
    """Side of a reduction's output: the stride-2 3x3 conv (padding 1) and the ceil-mode pool give ceil(size / 2)."""
    return (size + 1) // 2


def skeleton_counts(num_classes: int = 10, in_channels: int = 3, width: int = 16, cells: int = 5, image_size: int = 32):
    """What every cell of the space shares, and what each edge op costs per stage.

    Returns ``(fixed_params, fixed_macs, per_op_params, per_op_macs)``: the last two are
    dicts op -> total over all ``3 * cells`` cells (one edge each), so a cell's count is
    ``fixed + sum over its six edges of per_op[edge op]``.
    """
    h = image_size
    fixed_params = _conv_bn(in_channels, width, 3)
    fixed_macs = 9 * in_channels * width * h * h
    per_op_params = dict.fromkeys(OPS, 0)
    per_op_macs = dict.fromkeys(OPS, 0)
    c = width
    for stage in range(3):
        if stage:
            h_out = _out_size(h)
            fixed_params += _conv_bn(c, 2 * c, 3) + _conv_bn(2 * c, 2 * c, 3) + c * 2 * c
            fixed_macs += (9 * c * 2 * c + 9 * 2 * c * 2 * c + c * 2 * c) * h_out * h_out
            c, h = 2 * c, h_out
        for op in OPS:
            per_op_params[op] += cells * op_params(c)[op]
            per_op_macs[op] += cells * op_macs(c, h * h)[op]
    fixed_params += 2 * c + c * num_classes + num_classes
    fixed_macs += c * num_classes + num_classes
    return fixed_params, fixed_macs, per_op_params, per_op_macs


def network_counts(cells_ops: Sequence[Sequence[str]], num_classes: int = 10, in_channels: int = 3, width: int = 16,
                   cells: int = 5, image_size: int = 32) -> dict:
    """Exact parameter and multiply-accumulate counts for many cells at once.

    Both are additive over edges within a stage (every cell of a network repeats the same
    ops), so a cell's count is the shared skeleton plus one table lookup per edge.
    """
    fixed_p, fixed_m, per_p, per_m = skeleton_counts(num_classes, in_channels, width, cells, image_size)
    index = {op: i for i, op in enumerate(OPS)}
    ids = np.array([[index[o] for o in ops] for ops in cells_ops], dtype=np.int64).reshape(-1, len(EDGES))
    table_p = np.array([per_p[o] for o in OPS], dtype=np.int64)
    table_m = np.array([per_m[o] for o in OPS], dtype=np.int64)
    return {"params": fixed_p + table_p[ids].sum(1), "flops": fixed_m + table_m[ids].sum(1)}
