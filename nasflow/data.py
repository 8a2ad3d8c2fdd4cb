"""Image classification data for the training oracle: the embedded digits, a user's .npz or image folder.

The embedded default is scikit-learn's bundled handwritten digits (1,797 8x8 grey images,
10 classes), which ship inside scikit-learn: no download. A user's data is one .npz file
with arrays ``x`` (N x C x H x W, any real numbers) and ``y`` (N labels of any kind, at
least two distinct), or an image folder with one sub-folder per class (``nasflow.image_folder``);
``load_data`` takes either. All are split train/valid/test by a fixed seed, stratified by class,
and standardised per channel with the training split's statistics.
"""
from __future__ import annotations

import hashlib
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import DataError

SPLIT_SEED = 0
FRACTIONS = (0.6, 0.2, 0.2)  # train, valid, test
MIN_SAMPLES = 30
MIN_SIDE = 4  # two stride-2 reductions need at least 4x4 images


@dataclass(frozen=True)
class Dataset:
    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_valid: np.ndarray
    y_valid: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int
    classes: tuple = ()
    fingerprint: str = field(default="", compare=False)

    @property
    def in_channels(self) -> int:
        return int(self.x_train.shape[1])

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(int(s) for s in self.x_train.shape[1:])

    @property
    def nbytes(self) -> int:
        """Bytes of all splits as the trainer holds them (float32 images, int64 labels): what must fit on the device."""
        images = sum(x.size for x in (self.x_train, self.x_valid, self.x_test))
        labels = sum(y.size for y in (self.y_train, self.y_valid, self.y_test))
        return 4 * int(images) + 8 * int(labels)

    def describe(self) -> str:
        c, h, w = self.image_shape
        return (f"{self.name}: {len(self.y_train)}/{len(self.y_valid)}/{len(self.y_test)} train/valid/test "
                f"images of {c}x{h}x{w}, {self.num_classes} classes")


def load_digits() -> Dataset:
    """The embedded default: scikit-learn's 8x8 digits, split 60/20/20 with a fixed seed."""
    from sklearn.datasets import load_digits as sk_digits

    d = sk_digits()
    x = d.images.astype(np.float32)[:, None, :, :] / 16.0
    return split(x, d.target, name="digits (embedded)")


def load_data(path, progress: bool = False) -> Dataset:
    """A user's dataset: a folder with one sub-folder per class, or an .npz file with ``x`` and ``y``."""
    path = Path(path).expanduser()
    forms = "give an .npz file with arrays x and y, or a folder with one sub-folder of images per class"
    if path.is_dir():
        from .image_folder import load_image_folder

        return load_image_folder(path, progress=progress)
    if path.suffix.lower() == ".npz":
        return load_npz(path)
    if not path.exists():
        raise DataError(f"data not found: {path}; {forms}")
    raise DataError(f"{path} is neither an .npz file nor a folder; {forms}")


def load_npz(path) -> Dataset:
    """A user's dataset from ``path`` (.npz with arrays ``x`` N x C x H x W and ``y`` N)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise DataError(f"data file not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as z:
            names = set(z.files)
            for needed in ("x", "y"):
                if needed not in names:
                    have = ", ".join(sorted(names)) or "none"
                    raise DataError(f"{path} has no array '{needed}' (arrays found: {have}); save with np.savez(path, x=images, y=labels)")
            x, y = z["x"], z["y"]
    except DataError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
        raise DataError(f"cannot read {path} as an .npz file ({type(e).__name__}: {e}); save it with np.savez(path, x=..., y=...)") from None
    if x.ndim != 4:
        raise DataError(f"{path}: x must be 4-D (N x C x H x W), got shape {x.shape}")
    if y.ndim != 1:
        raise DataError(f"{path}: y must be 1-D (one label per image), got shape {y.shape}")
    if len(x) != len(y):
        raise DataError(f"{path}: x has {len(x)} images but y has {len(y)} labels")
    if not np.issubdtype(x.dtype, np.number) or np.issubdtype(x.dtype, np.complexfloating):
        raise DataError(f"{path}: x must hold real numbers, got dtype {x.dtype}")
    if not np.isfinite(x).all():
        raise DataError(f"{path}: x contains NaN or infinite values; clean or impute them first")
    if y.dtype.kind == "f" and not np.isfinite(y).all():
        raise DataError(f"{path}: y contains NaN or infinite labels")
    return split(x.astype(np.float32), y, name=path.name)


def split(x: np.ndarray, y: np.ndarray, name: str) -> Dataset:
    """Stratified train/valid/test split with a fixed seed, standardised by the training split."""
    if len(y) < MIN_SAMPLES:
        raise DataError(f"{name}: {len(y)} images are too few; at least {MIN_SAMPLES} are needed for train/valid/test splits")
    if min(x.shape[2:]) < MIN_SIDE:
        raise DataError(f"{name}: images are {x.shape[2]}x{x.shape[3]}; the networks need at least {MIN_SIDE}x{MIN_SIDE}")
    classes, labels = np.unique(y, return_inverse=True)
    if len(classes) < 2:
        raise DataError(f"{name}: all labels are {classes[0]!r}; classification needs at least two classes")
    rng = np.random.default_rng(SPLIT_SEED)
    parts: list[list[int]] = [[], [], []]
    for c in range(len(classes)):
        idx = rng.permutation(np.flatnonzero(labels == c))
        a = int(round(FRACTIONS[0] * len(idx)))
        b = a + int(round(FRACTIONS[1] * len(idx)))
        for part, chunk in zip(parts, (idx[:a], idx[a:b], idx[b:])):
            part.extend(chunk.tolist())
    order = [np.array(sorted(p), dtype=np.int64) for p in parts]
    if any(len(o) == 0 for o in order):
        raise DataError(f"{name}: too few images per class to fill train, valid and test splits")
    train = x[order[0]]
    mean = train.mean(axis=(0, 2, 3), keepdims=True)
    std = train.std(axis=(0, 2, 3), keepdims=True)
    std[std == 0] = 1.0  # a constant channel carries no information; leave it at zero
    xs = [np.ascontiguousarray((x[o] - mean) / std, dtype=np.float32) for o in order]
    ys = [labels[o].astype(np.int64) for o in order]
    h = hashlib.sha256()
    for arr in xs + ys:
        h.update(str(arr.shape).encode())
        h.update(arr.tobytes())
    return Dataset(name, xs[0], ys[0], xs[1], ys[1], xs[2], ys[2], num_classes=len(classes),
                   classes=tuple(classes.tolist()), fingerprint=h.hexdigest()[:16])
