"""Read files written by ``torch.save`` without ``torch.load`` and without running code.

Why not ``torch.load`` with ``weights_only=True``: torch 2.2.1 (pinned by DGL) hands any zip
that looks like a TorchScript archive to the TorchScript loader before the weights-only check, and a
TorchScript ``__setstate__`` runs while it loads (CVE-2025-32434). So the archive is
inspected here first (only the members ``torch.save`` writes are accepted; ``code/``,
``constants.pkl``, ``bytecode.pkl`` and anything else are refused), and the pickle is read by
an unpickler that can build only containers, numbers, numpy arrays and scalars, and
tensors over storages this module reads from the file itself.

Both formats ``torch.save`` writes are read: the zip archive (torch >= 1.6, default) and the
legacy stream of pickles (``_use_new_zipfile_serialization=False``, torch < 1.6, the format
of the official NAS-Bench-201 files). This is the one module of nasflow that unpickles.
"""
from __future__ import annotations

import _compat_pickle
import io
import pickle
import re
import struct
import zipfile
from typing import BinaryIO, Optional

from .errors import NasflowError

# torch's legacy format starts with this number, pickled (torch/serialization.py)
LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001
ZIP_MAGIC = b"PK\x03\x04"
# members that only TorchScript (or mobile) archives have; torch.load runs those even when weights_only
TORCHSCRIPT_MEMBERS = ("code/", "constants.pkl", "bytecode.pkl", "extra/", ".data/version")
# what torch.save's zip holds under its one top-level folder
_SAVE_MEMBER = re.compile(r"^(data\.pkl|version|byteorder|data/\d+|\.data/serialization_id)$")


class TorchFileError(NasflowError):
    """A file that is not a readable ``torch.save`` file (damaged, foreign or holding code)."""


class TorchScriptError(TorchFileError):
    """A TorchScript archive: it carries code that torch would run while loading it."""


def sniff(head: bytes) -> str:
    """What a file starting with ``head`` (its first 8+ bytes) is: 'zip', 'pickle', 'tar' or 'other'.

    A legacy torch file is a pickle; a tar is torch's pre-1.0 format. Nothing is unpickled.
    """
    if head.startswith(ZIP_MAGIC):
        return "zip"
    if head[:1] == b"\x80" and len(head) > 1 and 2 <= head[1] <= 5:  # pickle PROTO opcode
        return "pickle"
    if len(head) >= 262 and head[257:262] == b"ustar":
        return "tar"
    return "other"


def torchscript_members(names) -> list[str]:
    """Members of a zip (by name) that mark it as a TorchScript archive."""
    found = []
    for name in names:
        inner = name.split("/", 1)[1] if "/" in name else name
        if inner.startswith(TORCHSCRIPT_MEMBERS) or inner in ("constants.pkl", "bytecode.pkl"):
            found.append(name)
    return found


def read(f: BinaryIO):
    """The object a ``torch.save`` file holds; ``f`` is a seekable binary file at its start.

    Raises TorchScriptError for a TorchScript archive (before anything in it is read),
    TorchFileError for anything else that is not a complete torch.save file of plain data.
    """
    start = f.tell()
    head = f.read(8)
    f.seek(start)
    kind = sniff(head)
    try:
        if kind == "zip":
            return _read_zip(f)
        if kind == "pickle":
            return _read_legacy(f)
    except TorchFileError:
        raise
    except Exception as e:  # a damaged file can fail with almost any exception type
        raise TorchFileError(_describe(e)) from e
    if kind == "tar":
        raise TorchFileError("a tar archive (torch's pre-1.0 format), which nasflow does not read")
    raise TorchFileError("not a file written by torch.save (neither a zip archive nor a pickle)")


def _describe(e: BaseException) -> str:
    text = (str(e).strip().splitlines() or [""])[0][:200]
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


# ---------------------------------------------------------------- the restricted unpickler

class _StorageType:
    """What a ``torch.FloatStorage``-like global unpickles to: only a dtype, never callable."""

    def __init__(self, dtype):
        self.dtype = dtype


def _storage_types() -> dict:
    import torch

    dtypes = {
        "FloatStorage": torch.float32, "DoubleStorage": torch.float64, "HalfStorage": torch.float16,
        "BFloat16Storage": torch.bfloat16, "LongStorage": torch.int64, "IntStorage": torch.int32,
        "ShortStorage": torch.int16, "CharStorage": torch.int8, "ByteStorage": torch.uint8,
        "BoolStorage": torch.bool, "ComplexFloatStorage": torch.complex64, "ComplexDoubleStorage": torch.complex128,
        "UntypedStorage": torch.uint8,
    }  # fmt: skip
    found = {("torch", name): _StorageType(dtype) for name, dtype in dtypes.items()}
    found[("torch.storage", "UntypedStorage")] = found[("torch", "UntypedStorage")]
    return found


def _rebuild_tensor(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None, metadata=None):
    """torch._utils._rebuild_tensor_v2, over a storage read by this module (a flat tensor)."""
    import torch

    if not isinstance(storage, torch.Tensor) or storage.dim() != 1:
        raise pickle.UnpicklingError("a tensor without a storage from this file")
    # as_strided checks the view against the storage's bounds, so a lying size cannot read past it
    return storage.as_strided(tuple(size), tuple(stride), int(storage_offset))


def _rebuild_parameter(data, requires_grad=True, backward_hooks=None):
    import torch

    return torch.nn.Parameter(data, bool(requires_grad))


def _allowed_globals() -> dict:
    import _codecs
    import collections

    import numpy
    import numpy.core.multiarray as multiarray
    import torch

    allowed = {
        ("collections", "OrderedDict"): collections.OrderedDict,
        # pickle protocol 2 (torch.save's) rebuilds bytes, sets and the like through these
        ("_codecs", "encode"): _codecs.encode,
        ("builtins", "set"): set,
        ("builtins", "frozenset"): frozenset,
        ("builtins", "bytearray"): bytearray,
        ("builtins", "complex"): complex,
        ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
        ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
        ("torch", "Size"): torch.Size,
        ("numpy", "dtype"): numpy.dtype,
        ("numpy", "ndarray"): numpy.ndarray,
        **_storage_types(),
    }
    # Files written with numpy 2 name the same functions under numpy._core.
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed[(module, "scalar")] = multiarray.scalar
        allowed[(module, "_reconstruct")] = multiarray._reconstruct
    return allowed


class _RestrictedUnpickler(pickle.Unpickler):
    """C-speed unpickler that can build only containers, numbers, numpy values and tensors.

    Why not torch's weights-only unpickler: besides the TorchScript hand-off, in torch 2.2 it
    is pure Python, 8-22x slower on a file in the official NAS-Bench-201 layout (a quarter of
    an hour for the 4.7 GB file), and it rejects numpy scalars. Refusing every global outside
    the list is what makes reading a file unable to run code.
    """

    _allowed: Optional[dict] = None

    def __init__(self, file, storage):
        super().__init__(file)
        self._storage = storage

    def find_class(self, module, name):
        if _RestrictedUnpickler._allowed is None:
            _RestrictedUnpickler._allowed = _allowed_globals()
        # Protocol-2 pickles spell builtins the Python 2 way (__builtin__.set); pickle's own
        # find_class undoes that and so must this override.
        module, name = _compat_pickle.NAME_MAPPING.get((module, name), (module, name))
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"refusing to load {module}.{name}: only numbers, strings, containers and tensors are read"
            ) from None

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) in (5, 6) and pid[0] == "storage"):
            raise pickle.UnpicklingError(f"unexpected persistent id {str(pid)[:80]}")
        storage_type, key, _location, numel = pid[1:5]
        if not isinstance(storage_type, _StorageType) or not isinstance(key, str) or not isinstance(numel, int):
            raise pickle.UnpicklingError("malformed storage record")
        return self._storage(key, storage_type.dtype, numel, pid[5] if len(pid) == 6 else None)


# ---------------------------------------------------------------- the two formats

def _empty(dtype, numel: int, limit: int):
    """A storage of ``numel`` elements, refused if the file is too small to fill it."""
    import torch

    nbytes = numel * torch.empty(0, dtype=dtype).element_size()
    if numel < 0 or nbytes > limit:
        raise TorchFileError(f"a storage of {numel} elements does not fit the file")
    return torch.empty(numel, dtype=dtype)


def _fill(storage, data: bytes) -> None:
    import torch

    if len(data) != storage.numel() * storage.element_size():
        raise TorchFileError("a storage's data is shorter or longer than its record says")
    if data:
        storage.view(torch.uint8).copy_(torch.frombuffer(bytearray(data), dtype=torch.uint8))


def _read_zip(f: BinaryIO):
    with zipfile.ZipFile(f) as archive:
        names = archive.namelist()
        script = torchscript_members(names)
        if script:
            raise TorchScriptError(f"a TorchScript archive (it has {script[0]}), which can run code when loaded")
        prefixes = {name.split("/", 1)[0] for name in names}
        if len(prefixes) != 1 or not all("/" in n for n in names):
            raise TorchFileError("a zip archive that torch.save did not write (members outside one folder)")
        prefix = prefixes.pop() + "/"
        others = [n for n in names if not _SAVE_MEMBER.match(n[len(prefix):])]
        if others or prefix + "data.pkl" not in names:
            raise TorchFileError(f"a zip archive that torch.save did not write (it has {(others or names)[0]})")
        if prefix + "byteorder" in names and archive.read(prefix + "byteorder").strip() != b"little":
            raise TorchFileError("a big-endian torch file, which nasflow does not read")
        storages: dict = {}

        def storage(key, dtype, numel, _view):
            if key not in storages:
                name = f"{prefix}data/{key}"
                if name not in names:
                    raise TorchFileError(f"the archive lacks the storage {key}")
                storages[key] = _empty(dtype, numel, archive.getinfo(name).file_size)
                _fill(storages[key], archive.read(name))
            elif storages[key].dtype != dtype:
                raise TorchFileError(f"storage {key} is read with two dtypes")
            return storages[key]

        with archive.open(prefix + "data.pkl") as data:
            return _RestrictedUnpickler(io.BufferedReader(data, 1 << 20), storage).load()


def _read_legacy(f: BinaryIO):
    """torch's legacy format: pickles of the magic number, protocol and system info, the
    object, the storage keys, then each storage's element count (int64) and raw bytes."""
    start = f.tell()
    size = f.seek(0, io.SEEK_END) - start
    f.seek(start)

    def no_storage(*_):
        raise pickle.UnpicklingError("a tensor in a header pickle")

    header = [_RestrictedUnpickler(f, no_storage).load() for _ in range(3)]
    if header[0] != LEGACY_MAGIC or header[1] != LEGACY_PROTOCOL:
        raise TorchFileError("a pickle, not a file written by torch.save")
    if not isinstance(header[2], dict) or header[2].get("little_endian") is not True:
        raise TorchFileError("a big-endian torch file, which nasflow does not read")
    storages: dict = {}

    def storage(key, dtype, numel, view):
        if key not in storages:
            storages[key] = _empty(dtype, numel, size)
        root = storages[key]
        if root.dtype != dtype:
            raise TorchFileError(f"storage {key} is read with two dtypes")
        if view is None:
            return root
        # torch < 1.0 saved views of a storage: (view key, offset, size) in elements
        _view_key, offset, length = view
        if not (isinstance(offset, int) and isinstance(length, int) and 0 <= offset <= offset + length <= root.numel()):
            raise TorchFileError("a storage view outside its storage")
        return root[offset : offset + length]

    obj = _RestrictedUnpickler(f, storage).load()
    keys = _RestrictedUnpickler(f, no_storage).load()
    if not isinstance(keys, list) or set(keys) != set(storages):
        raise TorchFileError("the storage list does not match the storages the object uses")
    for key in keys:
        (numel,) = struct.unpack("<q", _exactly(f, 8))
        target = storages[key]
        if numel != target.numel():
            raise TorchFileError(f"storage {key} holds {numel} elements, not {target.numel()}")
        _fill(target, _exactly(f, numel * target.element_size()))
    return obj


def _exactly(f: BinaryIO, n: int) -> bytes:
    data = f.read(n)
    if len(data) != n:
        raise TorchFileError("the file ends in the middle of a storage (truncated?)")
    return data
