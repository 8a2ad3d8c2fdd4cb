"""The TransNAS-Bench-101 micro network with the classification head (class_scene, class_object).

Built after the benchmark's definition (Duan et al., CVPR 2021; its ``MacroNet`` with a micro cell):
a stem of two stride-2 3x3 convolutions (width/2, then width channels), five modules of ``cells``
cells following the skeleton "41414" (4: twice the channels at half the resolution, 1: unchanged),
global average pooling and one linear layer. In a module's first cell the edges leaving the cell's
input change channels and stride: there ``skip_connect`` becomes a factorized reduction and
``none`` a zero tensor of the output's shape. Every node sums its incoming edges; node 3 is the
cell's output. Convolutions start from Kaiming-normal (fan out) weights, batch norms at (1, 0), as
in the benchmark. With width 64, 2 cells per module and 63 (class_scene) or 100 (class_object)
classes, the parameter counts equal the table's ``params_m_class_*`` columns for every cell.

The dense tasks (segmentation, normals, autoencoding, room layout, jigsaw) put large decoders on
the same encoder; they are not built here.

torch is imported here only: the space module loads this lazily.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
from torch import nn

from nasflow.errors import SpaceError

from .conv_ops import FactorizedReduce, ReLUConvBN
from .edge_cell import EDGES

# module skeleton: "4" doubles the channels and halves the resolution, "1" keeps both
SKELETON = "41414"


def _reduces(module_type: str) -> bool:
    return module_type == "4"


class Zero(nn.Module):
    """``none``: zeros of the output's shape (kept on the input's graph where the shapes allow)."""

    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.c_in, self.c_out, self.stride = c_in, c_out, stride

    def forward(self, x):
        if self.c_in == self.c_out:
            return x[:, :, :: self.stride, :: self.stride].mul(0.0)
        b, _, h, w = x.shape
        return x.new_zeros(b, self.c_out, (h + self.stride - 1) // self.stride, (w + self.stride - 1) // self.stride)


def edge_op(op: str, c_in: int, c_out: int, stride: int) -> nn.Module:
    if op == "none":
        return Zero(c_in, c_out, stride)
    if op == "skip_connect":
        return nn.Identity() if stride == 1 and c_in == c_out else FactorizedReduce(c_in, c_out, stride)
    if op == "nor_conv_1x1":
        return ReLUConvBN(c_in, c_out, 1, stride)
    if op == "nor_conv_3x3":
        return ReLUConvBN(c_in, c_out, 3, stride)
    raise ValueError(f"unknown TransNAS-Bench-101 micro operation {op!r}")


class MicroCell(nn.Module):
    def __init__(self, ops: Sequence[str], c_in: int, c_out: int, stride: int):
        super().__init__()
        # the edges leaving the cell's input carry the change of channels and resolution
        self.edges = nn.ModuleList(edge_op(op, c_in, c_out, stride) if src == 0 else edge_op(op, c_out, c_out, 1)
                                   for op, (src, _) in zip(ops, EDGES))

    def forward(self, x):
        nodes = [x]
        for dst in (1, 2, 3):
            nodes.append(sum(self.edges[k](nodes[src]) for k, (src, d) in enumerate(EDGES) if d == dst))
        return nodes[3]


class MicroNetwork(nn.Module):
    def __init__(self, ops: Sequence[str], num_classes: int, in_channels: int, width: int, cells: int):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, width // 2, 3, 2, 1, bias=False), nn.BatchNorm2d(width // 2),
            ReLUConvBN(width // 2, width, 3, 2),
        )
        layers, c = [], width
        for module_type in SKELETON:
            c_out, stride = (2 * c, 2) if _reduces(module_type) else (c, 1)
            layers += [MicroCell(ops, c, c_out, stride)] + [MicroCell(ops, c_out, c_out, 1) for _ in range(cells - 1)]
            c = c_out
        self.cells = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(c, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1.0)
                nn.init.constant_(m.bias, 0.0)

    def forward(self, x):
        return self.head(self.pool(self.cells(self.stem(x))).flatten(1))


def build_network(ops: Sequence[str], num_classes: int = 10, in_channels: int = 3, width: int = 64,
                  cells: int = 2) -> MicroNetwork:
    if width < 4 or width % 2:
        raise SpaceError(f"a TransNAS-Bench-101 micro network needs an even width of at least 4, got {width}")
    return MicroNetwork(tuple(ops), num_classes, in_channels, width, cells)


def network_counts(cells_ops: Sequence[Sequence[str]], ops: Sequence[str], num_classes: int = 10,
                   in_channels: int = 3, width: int = 64, cells: int = 2, image_size: int = 32) -> dict:
    """Exact ``{"params", "flops"}`` arrays (int64) of ``build_network`` for many cells, in closed form.

    FLOPs are multiply-accumulates of the convolutions and the linear layer, biases included, on one
    ``image_size`` input (``nasflow.proxies.count_macs``'s convention). An edge's share depends only on
    its operation and on whether it leaves the cell's input, so each cell sums six table lookups.
    """
    params = np.zeros((2, len(ops)), dtype=np.int64)  # [edge leaves the input?][op]
    macs = np.zeros((2, len(ops)), dtype=np.int64)

    def add(from_input, c_in, c_out, stride, side):
        for j, op in enumerate(ops):
            if op == "skip_connect" and (stride != 1 or c_in != c_out):
                p, m = c_in * c_out + 2 * c_out, c_in * c_out * side * side
            elif op in ("nor_conv_1x1", "nor_conv_3x3"):
                k2 = 1 if op == "nor_conv_1x1" else 9
                p, m = c_in * c_out * k2 + 2 * c_out, c_in * c_out * k2 * side * side
            else:  # none, and skip_connect as the identity
                p = m = 0
            params[from_input, j] += p
            macs[from_input, j] += m

    half = width // 2
    side1 = (image_size - 1) // 2 + 1
    side = (side1 - 1) // 2 + 1
    fixed_params = in_channels * half * 9 + 2 * half + half * width * 9 + 2 * width
    fixed_macs = in_channels * half * 9 * side1 * side1 + half * width * 9 * side * side
    c = width
    for module_type in SKELETON:
        for k in range(cells):
            c_out, stride = (2 * c, 2) if k == 0 and _reduces(module_type) else (c, 1)
            side = (side - 1) // stride + 1
            add(1, c, c_out, stride, side)
            add(0, c_out, c_out, 1, side)
            c = c_out
    fixed_params += c * num_classes + num_classes
    fixed_macs += c * num_classes + num_classes
    index = {op: j for j, op in enumerate(ops)}
    ids = np.array([[index[o] for o in cell] for cell in cells_ops], dtype=np.int64).reshape(-1, len(EDGES))
    from_input = np.array([src == 0 for src, _ in EDGES], dtype=np.int64)
    return {"params": fixed_params + params[from_input, ids].sum(axis=1),
            "flops": fixed_macs + macs[from_input, ids].sum(axis=1)}
