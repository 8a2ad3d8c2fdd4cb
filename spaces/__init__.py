"""Search spaces: one module each, registered by name in ``nasflow.registry`` (one line there)."""
from __future__ import annotations

from nasflow.registry import SPACES, get_space

__all__ = ["SPACES", "get_space"]
