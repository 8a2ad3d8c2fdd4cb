"""Data augmentation applied to a whole batch where it already lives (CPU or GPU).

NAS-Bench-201 trains its CIFAR networks with the standard recipe: zero-pad 4 pixels on every
side, crop a random H x W window back out, and flip horizontally with probability 0.5. Here
the batch is padded once and every image's window is gathered in one indexing operation, so
the cost does not grow with a Python loop over images and no batch leaves the device.
"""
from __future__ import annotations

PADDING = 4


def standard_augment(x, generator, padding: int = PADDING):
    """Random crop of the zero-padded batch ``x`` (B x C x H x W) back to H x W, then a random horizontal flip.

    Every random number comes from ``generator`` (drawn on its device), so the same generator
    state gives the same batch. Per axis the padding is at most the side minus one, so every
    crop keeps at least one row and one column of the image (a 1-pixel-wide axis is not
    shifted at all) instead of showing the network a blank image. Returns a new tensor of
    ``x``'s shape, dtype and device; ``x`` is not modified.
    """
    import torch
    import torch.nn.functional as F

    if x.ndim != 4:
        raise ValueError(f"standard_augment takes a B x C x H x W batch, got shape {tuple(x.shape)}")
    if padding < 0:
        raise ValueError(f"padding must be >= 0, got {padding}")
    b, c, h, w = x.shape
    pad_h, pad_w = min(padding, h - 1), min(padding, w - 1)
    draw = {"generator": generator, "device": generator.device}
    top = torch.randint(0, 2 * pad_h + 1, (b,), **draw).to(x.device)
    left = torch.randint(0, 2 * pad_w + 1, (b,), **draw).to(x.device)
    flip = (torch.rand(b, **draw) < 0.5).to(x.device)

    padded = F.pad(x, (pad_w, pad_w, pad_h, pad_h))
    width = w + 2 * pad_w
    rows = top[:, None] + torch.arange(h, device=x.device)  # B x H
    cols = left[:, None] + torch.arange(w, device=x.device)  # B x W
    cols = torch.where(flip[:, None], cols.flip(1), cols)  # reading the window right to left flips it
    # one flat index per output pixel into each image's padded plane, shared by its channels
    index = (rows[:, :, None] * width + cols[:, None, :]).reshape(b, 1, h * w).expand(b, c, h * w)
    return padded.reshape(b, c, padded.shape[2] * width).gather(2, index).reshape(b, c, h, w)
