"""Where nasflow's disk caches live, and how every cache reads and writes its files.

Every cache sits under ``cache_dir()``: ``$NASFLOW_CACHE``, else ``~/.nasflow/cache``,
and names its files by ``entry()``: what was computed, then the cache's version number.
A cache only saves time, so nothing wrong with one may stop the work or change a
number: a file that is damaged, foreign or holds values that cannot be right is
reported as one ``NasflowWarning`` line and computed again; a cache that cannot be
written is reported once and the work goes on without it.
"""
from __future__ import annotations

import os
import warnings
import zipfile
import zlib
from pathlib import Path
from typing import BinaryIO, Callable, Optional

from .atomic import atomic_write
from .errors import NasflowWarning

# Paths already reported in this process. One damaged or unwritable cache meets many reads and
# writes in one run (every proxy, every training result): the user needs to hear of it once.
_reported: set = set()


def cache_dir() -> Path:
    """The root of every nasflow cache: ``$NASFLOW_CACHE``, else ``~/.nasflow/cache``."""
    env = os.environ.get("NASFLOW_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".nasflow" / "cache"


def entry(kind: Optional[str], name: str, version, suffix: str, directory=None) -> Path:
    """The file of cache ``kind`` for ``name`` at the cache's ``version``: ``<root>/<kind>/<name>.v<version><suffix>``.

    ``name`` says what was computed (a digest where the inputs are many), never how: a change in how
    a cache computes or stores its values bumps its version, which is how every cache retires its old
    files. ``directory`` replaces ``<root>/<kind>`` where a caller was given one; no ``kind``: the root.
    When the file is absent but one of the same name at another version is there, that one is of no use
    to this nasflow: it is reported (one warning line) and removed, and the caller computes the value again.
    """
    if directory is not None:
        base = Path(directory).expanduser()
    else:
        base = cache_dir() / kind if kind else cache_dir()
    path = base / f"{name}.v{version}{suffix}"
    _retire_other_versions(path, name, suffix)
    return path


def _retire_other_versions(path: Path, name: str, suffix: str) -> None:
    prefix = f"{name}.v"
    try:
        if path.exists():
            return
        others = [p for p in path.parent.iterdir()
                  if p.name.startswith(prefix) and p.name.endswith(suffix) and p.name != path.name
                  and "." not in p.name[len(prefix): len(p.name) - len(suffix)]]
    except OSError:  # no cache directory yet, or an unusable one (reported when written)
        return
    version = path.name[len(prefix): len(path.name) - len(suffix)]
    for old in others:
        found = old.name[len(prefix): len(old.name) - len(suffix)]
        _warn_once(old, f"cache file {old} is of cache version {found}, not {version}; computing it again")
        try:
            old.unlink()
        except OSError:  # a directory in its place, or not ours to remove: it is never read either way
            pass


def _warn_once(key, message: str) -> None:
    if key in _reported:
        return
    _reported.add(key)
    warnings.warn(message, NasflowWarning, stacklevel=3)


def report_damaged(path, why: str) -> None:
    """One warning line: the cache file ``path`` is not used and its content is computed again."""
    _warn_once(Path(path), f"cache file {path} is unusable ({why}); computing it again")


def readable(path) -> bool:
    """Whether the cache file ``path`` is there to be read: absent is silent, a directory in its place warns."""
    path = Path(path)
    try:
        if path.is_dir():
            _warn_once(path, f"cache file {path} is a directory; working without this cache")
            return False
        return path.is_file()
    except OSError:  # a parent that is a file, a path too long: as good as absent
        return False


def write(path, write_to: Callable[[BinaryIO], object]) -> bool:
    """Write a cache file atomically (``write_to`` gets the open binary file); False, with one
    warning per directory, if it cannot be written: a missing cache costs time, never the result."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, write_to)
        return True
    except OSError as e:
        report_unwritable(path, e)
        return False


def report_unwritable(path, error: OSError) -> None:
    """One warning per cache root (or directory outside it): ``path`` could not be written, the work goes on."""
    path = Path(path)
    # an unusable cache root fails every cache below it: one line for all of them
    root = cache_dir()
    where = root if root in path.parents else path.parent
    if path not in _reported:  # a directory in its place was reported when it was read
        _warn_once(where, f"cannot write the cache {path} ({error.strerror or error}); working without it")


def load_npz(path) -> Optional[dict]:
    """The arrays of an .npz cache file (never through pickle), or None: absent (silent) or unreadable (warned)."""
    import numpy as np

    path = Path(path)
    if not readable(path):
        return None
    try:
        loaded = np.load(path, allow_pickle=False)
        if not isinstance(loaded, np.lib.npyio.NpzFile):  # a lone .npy array is not what any cache writes
            raise ValueError("a single array")
        with loaded as z:
            return {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as e:
        # garbage is "pickled data" to np.load, an empty file an EOFError, a cut one a bad zip
        report_damaged(path, f"not a readable .npz: {type(e).__name__}")
        return None


def load_values(path, what: str, valid: Callable = None) -> dict:
    """``{arch key: value}`` of a table cache file (an .npz of ``keys`` and float64 ``values``), or {} if absent or
    unusable: a file of another shape is reported as not ``what``, one whose values fail ``valid`` (a boolean
    array of them) as holding impossible ones; either way its cells are computed again."""
    import numpy as np

    arrays = load_npz(path)
    if arrays is None:
        return {}
    keys, values = arrays.get("keys"), arrays.get("values")
    if (keys is None or values is None or keys.dtype.kind != "U" or values.dtype != np.float64
            or keys.ndim != 1 or keys.shape != values.shape):
        report_damaged(path, f"not {what}")
        return {}
    if valid is not None and not valid(values).all():
        report_damaged(path, f"impossible values for {what}")
        return {}
    return dict(zip(keys.tolist(), values.tolist()))


def save_values(path, table: dict, what: str, valid: Callable = None) -> None:
    """Write ``table`` (``{arch key: value}``) to ``path``, keeping the entries another process added since this
    one loaded the file: two long runs on one space would otherwise erase each other's work."""
    import numpy as np

    table = {**load_values(path, what, valid), **table}
    write(path, lambda f: np.savez_compressed(
        f, keys=np.array(list(table), dtype=str), values=np.array(list(table.values()), dtype=np.float64)))
