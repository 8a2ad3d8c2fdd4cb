"""Training recipes: a named preset plus the user's overrides, validated in one place.

A recipe is everything that decides what number a training produces (optimiser, schedule,
augmentation, network size, numeric precision), so the training oracle's cache key is the
resolved recipe plus the device class. Torch-free: the CLI reads the presets for --help.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Optional

from .errors import NasflowError

AUGMENTS = ("none", "standard")
PRECISIONS = ("auto", "fp32", "bf16")


@dataclass(frozen=True)
class Recipe:
    """SGD with Nesterov momentum, learning rate annealed by a cosine to zero over every step.

    ``width``/``cells`` of None mean the space's small network (its ``small_network``).
    ``augment`` "standard" is NAS-Bench-201's 4-pixel pad + random crop and horizontal flip.
    """

    name: str
    epochs: int
    batch_size: int
    lr: float
    weight_decay: float = 5e-4
    momentum: float = 0.9
    augment: str = "none"
    width: Optional[int] = None
    cells: Optional[int] = None

    def replace(self, **overrides) -> "Recipe":
        """This recipe with the overrides that are not None, checked."""
        given = {k: v for k, v in overrides.items() if v is not None}
        unknown = set(given) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise NasflowError(f"unknown recipe option(s) {sorted(unknown)}")
        return check(dataclasses.replace(self, **given))

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


PRESETS = {
    # the embedded digits: 96-99% test after 5 epochs in about 1.5 CPU-s a query (docs/RESULTS.md, issue 5)
    "digits": Recipe("digits", epochs=5, batch_size=64, lr=0.1),
    # NAS-Bench-201's own: 200 epochs, batch 256, crop + flip, the C=16, N=5 network
    "nb201": Recipe("nb201", epochs=200, batch_size=256, lr=0.1, augment="standard", width=16, cells=5),
}
DEFAULT_RECIPE = "digits"


def check(recipe: Recipe) -> Recipe:
    for label in ("epochs", "batch_size"):
        value = getattr(recipe, label)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise NasflowError(f"{label.replace('_', ' ')} must be a positive integer, got {value!r}")
    for label in ("width", "cells"):
        value = getattr(recipe, label)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise NasflowError(f"{label} must be a positive integer, got {value!r}")
    for label in ("lr", "weight_decay", "momentum"):
        value = getattr(recipe, label)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0 or value == float("inf"):
            raise NasflowError(f"{label.replace('_', ' ')} must be a finite number >= 0, got {value!r}")
    if recipe.lr == 0:
        raise NasflowError("the learning rate must be > 0")
    if recipe.augment not in AUGMENTS:
        raise NasflowError(f"unknown augmentation {recipe.augment!r}: use {' or '.join(AUGMENTS)}")
    return recipe


def get_recipe(name: Optional[str] = None, **overrides) -> Recipe:
    """The preset ``name`` (default: digits) with ``overrides`` (None = keep the preset's)."""
    name = DEFAULT_RECIPE if name is None else name
    if name not in PRESETS:
        raise NasflowError(f"unknown recipe {name!r}: choose one of {', '.join(PRESETS)}")
    return PRESETS[name].replace(**overrides)
