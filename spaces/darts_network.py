"""The DARTS CIFAR evaluation network for a cell pair: a 3x3 stem of 3C channels, then 3 stages of N normal
cells with a reduction cell between stages (DARTS's 20 cells are N=6: reductions at 1/3 and 2/3 of the
depth), global average pooling and a linear classifier. No auxiliary head.

Written for nasflow after the definitions of DARTS (Liu et al., ICLR 2019), evaluation mode: each cell
preprocesses c_{k-2} with a 1x1 ReLU-conv-BN (a FactorizedReduce after a reduction cell) and c_{k-1} with a
1x1 ReLU-conv-BN; ops reading a cell input in a reduction cell have stride 2. sep_conv is two stacked
ReLU-depthwise-pointwise-BN blocks, dil_conv one (dilation 2), pools have no BN (their BN is the search
network's), skip_connect with stride 2 is a FactorizedReduce. Drop path is optional (DARTS trains with 0.2).
Two generalisations leave DARTS's network unchanged where DARTS runs: a FactorizedReduce to an odd width
splits it unevenly, and on an odd side its shifted branch is padded so both branches agree.

``network_counts`` gives the exact parameters and multiply-accumulates (conv and linear layers, as
``nasflow.proxies.count_macs`` counts them) of many cells in closed form, without building networks.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch import nn

from .conv_ops import FactorizedReduce, ReLUConvBN
from .darts import OPS, PAIRS

STEM_MULTIPLIER = 3  # DARTS's stem has 3C channels
MULTIPLIER = 4  # a cell outputs its four intermediate nodes, concatenated


def _depthwise_pointwise(c: int, kernel: int, stride: int, dilation: int) -> list[nn.Module]:
    pad = dilation * (kernel - 1) // 2
    return [nn.ReLU(inplace=False),
            nn.Conv2d(c, c, kernel, stride=stride, padding=pad, dilation=dilation, groups=c, bias=False),
            nn.Conv2d(c, c, 1, bias=False), nn.BatchNorm2d(c)]


def make_op(name: str, c: int, stride: int) -> nn.Module:
    """One operation of a cell, ``c`` channels in and out."""
    if name == "max_pool_3x3":
        return nn.MaxPool2d(3, stride=stride, padding=1)
    if name == "avg_pool_3x3":
        return nn.AvgPool2d(3, stride=stride, padding=1, count_include_pad=False)
    if name == "skip_connect":
        return nn.Identity() if stride == 1 else FactorizedReduce(c, c)
    if name in ("sep_conv_3x3", "sep_conv_5x5"):
        k = int(name[-1])
        return nn.Sequential(*_depthwise_pointwise(c, k, stride, 1), *_depthwise_pointwise(c, k, 1, 1))
    if name in ("dil_conv_3x3", "dil_conv_5x5"):
        return nn.Sequential(*_depthwise_pointwise(c, int(name[-1]), stride, 2))
    raise ValueError(f"unknown DARTS operation {name!r}")


def drop_path(x: torch.Tensor, drop: float) -> torch.Tensor:
    keep = 1.0 - drop
    mask = torch.empty(x.shape[0], 1, 1, 1, device=x.device, dtype=x.dtype).bernoulli_(keep)
    return x / keep * mask


class Cell(nn.Module):
    def __init__(self, pairs, c_pp: int, c_p: int, c: int, reduction: bool, reduction_prev: bool, drop: float):
        super().__init__()
        self.preprocess0 = FactorizedReduce(c_pp, c) if reduction_prev else ReLUConvBN(c_pp, c, 1)
        self.preprocess1 = ReLUConvBN(c_p, c, 1)
        self.inputs = tuple(j for j, _ in pairs)
        self.edge_ops = nn.ModuleList(make_op(OPS[op], c, 2 if reduction and j < 2 else 1) for j, op in pairs)
        self.drop = drop

    def forward(self, s0, s1):
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        for n in range(PAIRS // 2):
            total = 0
            for p in (2 * n, 2 * n + 1):
                op = self.edge_ops[p]
                h = op(states[self.inputs[p]])
                if self.training and self.drop > 0 and not isinstance(op, nn.Identity):
                    h = drop_path(h, self.drop)
                total = total + h
            states.append(total)
        return torch.cat(states[2:], dim=1)


def layout(cells: int) -> list[bool]:
    """Whether each cell of the network is a reduction cell: N normal, reduction, N normal, reduction, N normal
    (DARTS puts its reductions at layers // 3 and 2 * layers // 3 of 3N + 2 layers: the same places)."""
    return [i in (cells, 2 * cells + 1) for i in range(3 * cells + 2)]


class DartsNetwork(nn.Module):
    def __init__(self, normal, reduce, num_classes: int = 10, in_channels: int = 3, width: int = 36, cells: int = 6,
                 drop_path: float = 0.0):
        super().__init__()
        c_stem = STEM_MULTIPLIER * width
        self.stem = nn.Sequential(nn.Conv2d(in_channels, c_stem, 3, padding=1, bias=False), nn.BatchNorm2d(c_stem))
        c_pp, c_p, c = c_stem, c_stem, width
        reduction_prev = False
        self.cells = nn.ModuleList()
        for reduction in layout(cells):
            if reduction:
                c *= 2
            self.cells.append(Cell(reduce if reduction else normal, c_pp, c_p, c, reduction, reduction_prev, drop_path))
            reduction_prev = reduction
            c_pp, c_p = c_p, MULTIPLIER * c
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c_p, num_classes)

    def forward(self, x):
        s0 = s1 = self.stem(x)
        for cell in self.cells:
            s0, s1 = s1, cell(s0, s1)
        return self.classifier(self.pool(s1).flatten(1))


def build_network(normal, reduce, num_classes: int = 10, in_channels: int = 3, width: int = 36, cells: int = 6,
                  drop_path: float = 0.0) -> DartsNetwork:
    return DartsNetwork(normal, reduce, num_classes, in_channels, width, cells, drop_path)


# ------------------------------------------------------------------------------ closed-form counts
def _half(side: int) -> int:
    return (side + 1) // 2  # every stride-2 op here (padded k x k, 1x1, shifted 1x1) gives ceil(side / 2)


def op_counts(c: int, stride: int, pixels: int) -> dict[str, tuple[int, int]]:
    """(params, multiply-accumulates) of each op at ``c`` channels with ``pixels`` output pixels."""
    out = {"max_pool_3x3": (0, 0), "avg_pool_3x3": (0, 0),
           "skip_connect": (0, 0) if stride == 1 else (c * c + 2 * c, c * c * pixels)}
    for k in (3, 5):
        out[f"sep_conv_{k}x{k}"] = (2 * (c * k * k + c * c + 2 * c), 2 * (c * k * k + c * c) * pixels)
        out[f"dil_conv_{k}x{k}"] = (c * k * k + c * c + 2 * c, (c * k * k + c * c) * pixels)
    return out


def skeleton_counts(num_classes: int, in_channels: int, width: int, cells: int, image_size: int):
    """What every cell pair's network shares, and what each op costs summed over its places.

    Returns ``(fixed_params, fixed_macs, per_op)``: ``per_op[kind]`` is an (ops, 2) array of (params, macs)
    for kind 0 = a normal-cell op, 1 = a reduction-cell op reading a cell input (stride 2), 2 = a
    reduction-cell op reading an intermediate node; a network's count is fixed + one lookup per (input, op) pair.
    """
    c_stem = STEM_MULTIPLIER * width
    fixed_p = in_channels * c_stem * 9 + 2 * c_stem
    fixed_m = in_channels * c_stem * 9 * image_size**2
    per_op = np.zeros((3, len(OPS), 2), dtype=np.int64)
    c_pp, c_p, c = c_stem, c_stem, width
    side0 = side1 = image_size  # sides of the cell's inputs s0, s1
    reduction_prev = False
    for reduction in layout(cells):
        if reduction:
            c *= 2
        pre0_pixels = _half(side0) ** 2 if reduction_prev else side0**2
        fixed_p += c_pp * c + 2 * c + c_p * c + 2 * c
        fixed_m += c_pp * c * pre0_pixels + c_p * c * side1**2
        side = _half(side1) if reduction else side1
        kinds = ((1, 2), (2, 1)) if reduction else ((0, 1),)
        for kind, stride in kinds:
            counts = op_counts(c, stride, side**2)
            per_op[kind] += np.array([counts[op] for op in OPS], dtype=np.int64)
        reduction_prev = reduction
        c_pp, c_p = c_p, MULTIPLIER * c
        side0, side1 = side1, side
    fixed_p += c_p * num_classes + num_classes
    fixed_m += c_p * num_classes + num_classes
    return fixed_p, fixed_m, per_op


def network_counts(cell_pairs: Sequence[tuple], num_classes: int = 10, in_channels: int = 3, width: int = 36,
                   cells: int = 6, image_size: int = 32) -> dict:
    """Exact ``{"params", "flops"}`` int64 arrays of the networks of many (normal, reduce) cell pairs."""
    fixed_p, fixed_m, per_op = skeleton_counts(num_classes, in_channels, width, cells, image_size)
    kinds, ops = [], []
    for normal, reduce in cell_pairs:
        kinds.append([0] * PAIRS + [1 if j < 2 else 2 for j, _ in reduce])
        ops.append([op for _, op in normal] + [op for _, op in reduce])
    total = per_op[np.array(kinds, dtype=np.int64).reshape(-1, 2 * PAIRS),
                   np.array(ops, dtype=np.int64).reshape(-1, 2 * PAIRS)].sum(axis=1)
    return {"params": fixed_p + total[:, 0], "flops": fixed_m + total[:, 1]}
