"""Paths a user gives: input files that must be files, outputs that must be writable.

Commands that compute for minutes and only then write their result lost that work when
the output path was a directory, a file or not writable (issue 16). Every command with
an output path therefore checks it here before any work starts; nothing is created by
the check except a probe file that is removed at once.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

from .errors import NasflowError


class OutputError(NasflowError):
    """An output path that cannot be written."""


def input_file(path, what: str, error: type = NasflowError) -> Path:
    """``path`` as a Path if it is a file; else ``error`` saying it is missing or a directory."""
    path = Path(path).expanduser()
    if path.is_dir():
        raise error(f"{what} {path} is a directory, not a file; give the path of the file itself")
    if not path.is_file():
        raise error(f"{what} not found: {path}")
    return path


def output_file(path, what: str = "output file") -> Path:
    """Check that ``path`` can be written as a file (replacing one that is there); missing folders are creatable."""
    path = Path(path).expanduser()
    if path.is_dir():
        raise OutputError(f"cannot write {what} {path}: it is a directory; give a file path")
    _check_writable_folder(path.parent, path, what)
    return path


def output_dir(path, what: str = "output folder") -> Path:
    """Check that ``path`` is, or can be created as, a folder nasflow can write into."""
    path = Path(path).expanduser()
    if path.exists() and not path.is_dir():
        raise OutputError(f"cannot write {what} {path}: it is a file, not a folder; choose another path")
    _check_writable_folder(path, path, what)
    return path


def _check_writable_folder(folder: Path, target: Path, what: str) -> None:
    # The nearest existing folder decides: the command creates the missing ones below it.
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise OutputError(f"cannot write {what} {target}: {existing} is a file, not a folder")
    # A real probe, not os.access: access() answers for the real uid and misses read-only
    # mounts on some filesystems; creating and removing a file asks the filesystem itself.
    try:
        fd, probe = tempfile.mkstemp(dir=existing, prefix=".nasflow-write-check.")
    except OSError as e:
        raise OutputError(f"cannot write {what} {target}: {existing} is not writable ({e.strerror or e})") from None
    os.close(fd)
    os.unlink(probe)
