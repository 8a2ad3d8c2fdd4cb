"""Convolution blocks shared by several spaces' networks (NB-201, TransNAS-Bench-101 micro, DARTS).

torch is imported here: only network modules, which their spaces load lazily, import this one.
"""
from __future__ import annotations

import torch
from torch import nn


class ReLUConvBN(nn.Sequential):
    """ReLU, a bias-free k x k convolution (same padding), batch norm: NB-201's and DARTS's conv op."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int = 1):
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=kernel // 2, bias=False),
            nn.BatchNorm2d(c_out),
        )


class FactorizedReduce(nn.Module):
    """A skip that changes width or resolution: two 1x1 convolutions, the second on the input shifted by one
    pixel, each giving half the output channels (the second the larger half where the width is odd)."""

    def __init__(self, c_in: int, c_out: int, stride: int = 2):
        super().__init__()
        self.relu = nn.ReLU(inplace=False)
        self.conv_a = nn.Conv2d(c_in, c_out // 2, 1, stride=stride, bias=False)
        self.conv_b = nn.Conv2d(c_in, c_out - c_out // 2, 1, stride=stride, bias=False)
        self.bn = nn.BatchNorm2d(c_out)

    def forward(self, x):
        x = self.relu(x)
        # shifted by one pixel, zero-padded at the far edge: the same size as x, so odd sides work too
        shifted = nn.functional.pad(x, (0, 1, 0, 1))[:, :, 1:, 1:]
        return self.bn(torch.cat([self.conv_a(x), self.conv_b(shifted)], dim=1))
