"""The one way nasflow writes a whole file: atomically, so a reader never sees half of one.

Run results, journals' rewritten headers, checkpoints, caches, CSV tables and plots all go
through :func:`atomic_write`. A process killed mid-write, or a full disk, leaves the
previous file (or none) in place and no temporary file behind.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import BinaryIO, Callable, Union

Content = Union[str, bytes, Callable[[BinaryIO], object]]


def atomic_write(path, content: Content) -> None:
    """Replace ``path`` with ``content``: text (written as UTF-8), bytes, or a function that writes
    to the open binary file (for writers that stream, such as ``np.savez`` or ``savefig``).

    The content goes to a temporary file in the same directory (a rename is only atomic within
    one file system), is fsync'ed, then renamed over ``path``; on any failure the temporary file
    is removed and the error raised. The directory must exist.
    """
    if isinstance(content, str):
        data = content.encode("utf-8")
        content = lambda f: f.write(data)  # noqa: E731
    elif isinstance(content, (bytes, bytearray, memoryview)):
        data = content
        content = lambda f: f.write(data)  # noqa: E731
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            content(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
