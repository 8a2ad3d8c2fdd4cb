"""standard_augment: every output image is a crop of the zero-padded, maybe flipped, input."""
import pytest
import torch
import torch.nn.functional as F

from nasflow.augment import standard_augment


def windows(x, pad_h, pad_w):
    """Every crop the augmentation may produce: B x (2*pad_h+1) x (2*pad_w+1) x 2 (flip) x C x H x W."""
    b, c, h, w = x.shape
    padded = F.pad(x, (pad_w, pad_w, pad_h, pad_h))
    crops = padded.unfold(2, h, 1).unfold(3, w, 1)  # B x C x offsets_h x offsets_w x H x W
    crops = crops.permute(0, 2, 3, 1, 4, 5)
    return torch.stack([crops, crops.flip(-1)], dim=3)


def identify(x, out, pad_h, pad_w):
    """(top, left, flipped) of the one window each output image equals; fails if none or several do."""
    same = (windows(x, pad_h, pad_w) == out[:, None, None, None]).flatten(4).all(-1)  # B x oh x ow x 2
    assert (same.flatten(1).sum(1) == 1).all(), "an output image is not exactly one window of its input"
    return same.flatten(1).float().argmax(1), same.shape


@pytest.mark.parametrize("shape", [(3, 3, 5, 5), (4, 2, 9, 6), (2, 1, 12, 13), (5, 4, 7, 11)])
def test_every_image_is_a_crop_of_the_padded_input_within_the_padding(shape):
    x = torch.randn(shape) + 3  # no pixel is zero, so padding is told apart from image
    g = torch.Generator().manual_seed(1)
    for _ in range(5):
        identify(x, standard_augment(x, g), 4, 4)


def test_all_81_offsets_and_both_flips_occur_about_uniformly():
    x = torch.randn(4000, 2, 6, 5) + 3
    out = standard_augment(x, torch.Generator().manual_seed(0))
    which, (_, oh, ow, _) = identify(x, out, 4, 4)
    counts = torch.bincount(which, minlength=oh * ow * 2).reshape(oh, ow, 2)
    offsets = counts.sum(-1)
    assert (offsets > 0).all() and offsets.numel() == 81
    assert offsets.min() > 4000 / 81 / 3 and offsets.max() < 4000 / 81 * 3  # uniform within loose bounds
    flipped = counts[..., 1].sum().item() / 4000
    assert abs(flipped - 0.5) < 0.04  # about 5 standard deviations


def test_shape_dtype_device_kept_and_input_untouched():
    for dtype in (torch.float32, torch.float64, torch.bfloat16):
        x = torch.randn(6, 3, 8, 7).to(dtype)
        before = x.clone()
        out = standard_augment(x, torch.Generator().manual_seed(0))
        assert out.shape == x.shape and out.dtype == dtype and out.device == x.device
        assert torch.equal(x, before)
    empty = torch.zeros(0, 3, 8, 8)
    assert standard_augment(empty, torch.Generator()).shape == (0, 3, 8, 8)


def test_same_generator_state_same_batch_and_another_seed_another_batch():
    x = torch.randn(64, 3, 16, 16)
    first = standard_augment(x, torch.Generator().manual_seed(7))
    assert torch.equal(first, standard_augment(x, torch.Generator().manual_seed(7)))
    assert not torch.equal(first, standard_augment(x, torch.Generator().manual_seed(8)))
    g = torch.Generator().manual_seed(7)
    standard_augment(x, g)
    assert not torch.equal(first, standard_augment(x, g))  # the generator advances between batches


def test_without_padding_each_image_is_itself_or_its_mirror():
    x = torch.randn(200, 3, 5, 4)
    out = standard_augment(x, torch.Generator().manual_seed(0), padding=0)
    kept = (out == x).flatten(1).all(1)
    mirrored = (out == x.flip(-1)).flatten(1).all(1)
    assert (kept ^ mirrored).all() and kept.any() and mirrored.any()


@pytest.mark.parametrize("h, w", [(1, 1), (1, 6), (2, 3), (3, 9), (4, 4)])
def test_images_smaller_than_the_padding_never_become_blank(h, w):
    """Padding is capped at side - 1 per axis: every crop keeps a row and a column of the image."""
    x = torch.randn(500, 2, h, w) + 3
    out = standard_augment(x, torch.Generator().manual_seed(0))
    assert (out != 0).flatten(2).any(-1).all()
    if (h, w) == (1, 1):
        assert torch.equal(out, x)  # nothing to shift, and a 1-pixel mirror is itself
        return
    pad_h, pad_w = min(4, h - 1), min(4, w - 1)
    which, (_, oh, ow, _) = identify(x, out, pad_h, pad_w)
    assert torch.bincount(which // 2, minlength=oh * ow).gt(0).all()  # and every capped offset is used


def test_bad_calls_are_programming_errors():
    with pytest.raises(ValueError, match="B x C x H x W"):
        standard_augment(torch.zeros(3, 8, 8), torch.Generator())
    with pytest.raises(ValueError, match="padding"):
        standard_augment(torch.zeros(1, 3, 8, 8), torch.Generator(), padding=-1)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_on_cuda_with_a_cuda_or_cpu_generator():
    x = torch.randn(256, 3, 32, 32, device="cuda") + 3
    out = standard_augment(x, torch.Generator(device="cuda").manual_seed(0))
    assert out.device == x.device
    assert torch.equal(out, standard_augment(x, torch.Generator(device="cuda").manual_seed(0)))
    identify(x.cpu(), out.cpu(), 4, 4)
    from_cpu = standard_augment(x, torch.Generator().manual_seed(0))
    assert from_cpu.device == x.device
    torch.testing.assert_close(from_cpu.cpu(), standard_augment(x.cpu(), torch.Generator().manual_seed(0)))
