"""NAS-Bench-Macro's network as torch modules, built from the layer plan of ``nas_bench_macro``.

Written for nasflow after the benchmark's definition (xiusu/NAS-Bench-Macro, train/model.py): a 3x3
conv-BN-ReLU stem of ``width`` channels; the 8 searched layers in stages of 2, 3, 3 at 2x, 4x and 8x
``width``, each stage opened by a stride-2 layer; then a 1x1 conv-BN-ReLU to 40x ``width`` (1280 at the
benchmark's 32), global average pooling and a linear classifier. The MobileNetV2 blocks use plain ReLU
(not ReLU6), bias-free convs and BN, and a residual only where stride and channels are kept. At the
defaults on 32x32 images with 10 classes the parameter count is the table's ``params`` column.
"""
from __future__ import annotations

from torch import nn

from .nas_bench_macro import Block, MacroArch, head_channels, layer_blocks


def conv_bn(c_in: int, c_out: int, kernel: int, stride: int = 1, groups: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=kernel // 2, groups=groups, bias=False),
            nn.BatchNorm2d(c_out)]


class InvertedResidual(nn.Module):
    """1x1 expand, k x k depthwise (carrying the stride), 1x1 linear projection."""

    def __init__(self, b: Block):
        super().__init__()
        hidden = b.c_in * b.expansion
        self.residual = b.residual
        self.conv = nn.Sequential(
            *conv_bn(b.c_in, hidden, 1), nn.ReLU(inplace=True),
            *conv_bn(hidden, hidden, b.kernel, stride=b.stride, groups=hidden), nn.ReLU(inplace=True),
            *conv_bn(hidden, b.c_out, 1),
        )

    def forward(self, x):
        return x + self.conv(x) if self.residual else self.conv(x)


def make_block(b: Block) -> nn.Module:
    if b.kind == "identity":
        return nn.Identity()
    if b.kind == "project":
        return nn.Sequential(*conv_bn(b.c_in, b.c_out, 1, stride=b.stride))
    return InvertedResidual(b)


class MacroNetwork(nn.Module):
    def __init__(self, arch: MacroArch, num_classes: int = 10, in_channels: int = 3, width: int = 32, cells: int = 1):
        super().__init__()
        self.stem = nn.Sequential(*conv_bn(in_channels, width, 3), nn.ReLU(inplace=True))
        blocks = [b for layer, choice in enumerate(arch.choices) for b in layer_blocks(layer, choice, width, cells)]
        self.features = nn.Sequential(*(make_block(b) for b in blocks))
        head = head_channels(width)
        self.head = nn.Sequential(*conv_bn(blocks[-1].c_out, head, 1), nn.ReLU(inplace=True),
                                  nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.classifier = nn.Linear(head, num_classes)

    def forward(self, x):
        return self.classifier(self.head(self.features(self.stem(x))))


def build_network(arch: MacroArch, num_classes: int = 10, in_channels: int = 3, width: int = 32,
                  cells: int = 1) -> MacroNetwork:
    return MacroNetwork(arch, num_classes=num_classes, in_channels=in_channels, width=width, cells=cells)
