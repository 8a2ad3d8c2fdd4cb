"""A user's images as an image-folder tree: one sub-folder per class (torchvision's ``ImageFolder`` layout).

``root/cat/001.png, root/dog/xyz.jpg, ...``: the classes are the sorted sub-folder names,
the images are the files below each (recursively) with a common image extension; hidden
files and folders are ignored. Decoding thousands of files takes a while, so the tree is
decoded once into a uint8 array cached as an .npz under ``$NASFLOW_CACHE/images``, keyed by
the tree's relative paths, sizes and modification times: a later load of the unchanged tree
opens no image at all. No image is resized: one dataset is one size and one channel count.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

from . import cache
from .data import Dataset, split
from .errors import DataError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
CACHE_VERSION = 1  # bump when the decoding below changes what a cached array holds

# Pillow modes -> the mode decoded to. Alpha is dropped (the networks take grey or colour),
# palette and other colour spaces become RGB. 16-bit and float modes are refused rather
# than clipped into uint8 without a word.
_TARGET_MODE = {"1": "L", "L": "L", "LA": "L", "La": "L",
                "P": "RGB", "PA": "RGB", "RGB": "RGB", "RGBA": "RGB", "RGBa": "RGB", "RGBX": "RGB",
                "CMYK": "RGB", "YCbCr": "RGB", "LAB": "RGB", "HSV": "RGB"}
_CHANNELS = {"L": 1, "RGB": 3}


def load_image_folder(path, progress: bool = False, cache_dir=None) -> Dataset:
    """The images under ``path`` (one sub-folder per class), split and standardised like ``load_npz``.

    ``progress`` shows a bar while images are decoded (only the first load of a tree decodes);
    ``cache_dir`` defaults to ``nasflow.cache.cache_dir() / "images"``.
    """
    root = Path(path).expanduser()
    classes, files = list_image_files(root)
    target = _cache_file(root, files, cache_dir)
    cached = _read_cache(target, files)
    if cached is not None:
        x, labels = cached
    else:
        x, labels = decode_images(root, classes, files, progress)
        # an unwritable cache only costs the next load its decoding time
        cache.write(target, lambda f: np.savez(f, x=x, labels=labels, classes=np.array(classes)))
    return split(x.astype(np.float32), np.array(classes)[labels], name=root.name)


def list_image_files(root: Path) -> tuple[list[str], list[tuple[str, int]]]:
    """Sorted class names, and (path relative to ``root``, class index) for every image, in a fixed order."""
    if not root.is_dir():
        what = "is a file, not a folder" if root.exists() else "not found"
        raise DataError(f"image folder {what}: {root}")
    classes = sorted(entry.name for entry in os.scandir(root) if entry.is_dir() and not entry.name.startswith("."))
    layout = f"put each class's images in a sub-folder of its own ({root}/<class>/<image>.png)"
    if not classes:
        raise DataError(f"{root} has no class sub-folders; {layout}")
    if len(classes) < 2:
        raise DataError(f"{root} has one class folder only ({classes[0]!r}); classification needs at least two; {layout}")
    files: list[tuple[str, int]] = []
    for index, name in enumerate(classes):
        found = []
        for folder, subfolders, names in os.walk(root / name):
            subfolders[:] = sorted(d for d in subfolders if not d.startswith("."))  # os.walk descends in this order
            found.extend(os.path.relpath(os.path.join(folder, n), root) for n in sorted(names)
                         if not n.startswith(".") and n.lower().endswith(IMAGE_EXTENSIONS))
        if not found:
            raise DataError(f"class folder {root / name} holds no images (looked for {' '.join(IMAGE_EXTENSIONS)})")
        files.extend((f, index) for f in found)
    return classes, files


def decode_images(root: Path, classes: list[str], files: list[tuple[str, int]], progress: bool = False):
    """``(x, labels)``: uint8 N x C x H x W and int64 class indices; a mixed or unreadable tree is refused."""
    from PIL import Image
    from tqdm.auto import tqdm

    # Headers first (Pillow reads only the header on open): a mixed tree is refused before
    # the long decoding, with every size seen, and the array is allocated once.
    shapes: dict[tuple[int, int, int], str] = {}
    for relative, _ in files:
        with _open_image(root, relative) as image:
            shape = (_channels(image.mode, root, relative), image.height, image.width)
        shapes.setdefault(shape, relative)
    if len({c for c, _, _ in shapes}) > 1:
        seen = ", ".join(f"{c} in {f}" for (c, _, _), f in shapes.items())
        raise DataError(f"{root}: images have different channel counts ({seen}); convert them all to grey or all to RGB")
    if len(shapes) > 1:
        (first_shape, first), (other_shape, other) = list(shapes.items())[:2]
        seen = ", ".join(f"{sh}x{sw}" for _, sh, sw in shapes)
        raise DataError(f"{root}: {other} is {other_shape[1]}x{other_shape[2]} but {first} is "
                        f"{first_shape[1]}x{first_shape[2]} (height x width seen: {seen}); resize all images to one size first")
    (c, h, w), = shapes
    x = np.empty((len(files), c, h, w), dtype=np.uint8)
    labels = np.array([index for _, index in files], dtype=np.int64)
    for i, (relative, _) in enumerate(tqdm(files, desc=f"decoding {root.name}", unit="image",
                                           leave=False, disable=not progress)):
        with _open_image(root, relative) as image:
            try:
                pixels = np.asarray(image.convert(_TARGET_MODE[image.mode]))
            except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
                raise DataError(f"cannot decode image {root / relative} ({type(e).__name__}: {e}); "
                                f"replace or remove it") from None
        # a file rewritten since the header pass could differ: refuse rather than broadcast
        if pixels.shape[:2] != (h, w):
            raise DataError(f"{root / relative} changed while it was read; load the folder again")
        x[i] = pixels.reshape(h, w, c).transpose(2, 0, 1)
    return x, labels


def _open_image(root: Path, relative: str):
    from PIL import Image

    try:
        return Image.open(root / relative)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise DataError(f"cannot read image {root / relative} ({type(e).__name__}: {e}); replace or remove it") from None


def _channels(mode: str, root: Path, relative: str) -> int:
    if mode not in _TARGET_MODE:
        raise DataError(f"{root / relative} has Pillow mode {mode!r} (16-bit or float pixels); "
                        f"save it as 8-bit grey or RGB")
    return _CHANNELS[_TARGET_MODE[mode]]


def _cache_file(root: Path, files: list[tuple[str, int]], cache_dir) -> Path:
    """The cache path for this tree: any file added, removed, renamed, resized or touched changes it."""
    digest = hashlib.sha256(b"nasflow-image-folder")
    for relative, index in files:
        st = os.stat(root / relative)
        digest.update(f"\0{relative}\0{index}\0{st.st_size}\0{st.st_mtime_ns}".encode())
    return cache.entry("images", digest.hexdigest()[:24], CACHE_VERSION, ".npz", directory=cache_dir)


def _read_cache(target: Path, files: list[tuple[str, int]]):
    arrays = cache.load_npz(target)
    if arrays is None:
        return None  # absent or damaged: decoded again and rewritten
    x, labels = arrays.get("x"), arrays.get("labels")
    # the labels follow from the file list alone, so they must match it exactly
    if (x is None or labels is None or x.dtype != np.uint8 or x.ndim != 4 or len(x) != len(files)
            or labels.dtype.kind not in "iu" or not np.array_equal(labels, [index for _, index in files])):
        cache.report_damaged(target, "not the decoded images of this folder")
        return None
    return x, labels
