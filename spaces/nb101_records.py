"""The official NAS-Bench-101 files (``nasbench_only108.tfrecord``, ``nasbench_full.tfrecord``)
as a table of cells, read without TensorFlow or the protobuf runtime.

Each record (framing and ModelMetrics decoding in nb101_tfrecord) is JSON
``[hash, epochs, adjacency_bits, ops_csv, base64 ModelMetrics]``.
As in the benchmark's own API, ``evaluation_data[1]`` is the halfway and
``evaluation_data[2]`` the final evaluation. Each cell was trained 3 times per epoch
budget; the oracle answers with the mean over those repeats. The records store the
pruned cell and its hash, which the oracle trusts (checking 423,624 hashes would take
minutes; the CRCs already catch corruption).

Decoding the real only108 file (1.27M records) takes a while, so the decoded table is
cached under ``$NASFLOW_CACHE`` (default ``~/.nasflow/cache``), keyed by the file's path, size and mtime.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
import mmap
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Optional

import numpy as np

from nasflow import cache as nasflow_cache
from nasflow.core import Evaluation, TabularOracle
from nasflow.errors import BenchmarkError

from .nb101 import INPUT, OPS, OUTPUT, NB101Arch
from .nb101_enumerate import matrix_of_bits  # the adjacency column is laid out as the enumeration's
from .nb101_tfrecord import TEST, TIME, VALID, frame_records, model_metrics, verify_records

_CHUNK = 65_536  # records verified and decoded per step: bounds memory, moves the progress bar
CACHE_VERSION = 2  # 2: the cache holds the identity of its file and is checked column by column
# what each cached column must be; ops is 2-D (cells x inner vertices), every other column 1-D
_CACHED = {"hash": "S32", "vertices": "uint8", "adjacency": "int64", "ops": "int8", "params": "int64",
           "repeats": "int32", "valid": "float64", "test": "float64", "cost": "float64",
           "halfway_valid": "float64", "halfway_test": "float64"}


# --- records -> table -----------------------------------------------------------------

_OP_CODE = {op: i for i, op in enumerate(OPS)}
_COLUMNS = ("valid", "test", "cost", "halfway_valid", "halfway_test")
_PADDED = [-1] * 5


def _row(record, epochs: int):
    """One parsed record as (hash, vertices, adjacency bits, op codes, params, values), or its
    epoch count when that is not ``epochs``. Raises ValueError on anything malformed."""
    if type(record) is not list or len(record) != 5:
        raise ValueError("expected a JSON list [hash, epochs, adjacency, operations, metrics]")
    module_hash, record_epochs, adjacency, operations, metrics = record
    if type(record_epochs) is not int:
        raise ValueError(f"epochs {record_epochs!r} is not an integer")
    if record_epochs != epochs:
        return record_epochs
    if type(module_hash) is not str or len(module_hash) != 32:
        raise ValueError(f"bad module hash {module_hash!r}")
    n = math.isqrt(len(adjacency))
    if n * n != len(adjacency) or not 2 <= n <= 7 or adjacency.strip("01"):
        raise ValueError(f"bad adjacency bits {adjacency!r}")
    ops = operations.split(",")
    if len(ops) != n or ops[0] != INPUT or ops[-1] != OUTPUT:
        raise ValueError(f"operations {operations!r} do not match the {n}x{n} adjacency")
    codes = [_OP_CODE[op] for op in ops[1:-1]]  # KeyError on an unknown op
    evaluations, params, _ = model_metrics(base64.b64decode(metrics, validate=True))
    if len(evaluations) < 3:
        raise ValueError(f"{len(evaluations)} evaluations, expected initial, halfway and final")
    half, final = evaluations[1], evaluations[2]
    values = (final[VALID], final[TEST], final[TIME], half[VALID], half[TEST])
    return module_hash, n, int(adjacency, 2), codes + _PADDED[: 7 - n], params, values


def _parse_chunk(payloads: list, first: int, path: Path) -> list:
    """JSON of many records in one call (per-record calls cost more than the parsing)."""
    try:
        records = json.loads(b"[" + b",".join(payloads) + b"]")
        if len(records) == len(payloads):
            return records
    except ValueError:
        pass
    for i, payload in enumerate(payloads):  # find the record to blame
        try:
            json.loads(payload)
        except ValueError as e:
            raise BenchmarkError(f"{path}: record {first + i + 1} is not a NAS-Bench-101 record (bad JSON: {e})") from None
    raise BenchmarkError(f"{path}: records {first + 1}..{first + len(payloads)} do not parse one by one")  # pragma: no cover


def _decode_file(path: Path, epochs: int, progress: bool, check_data_crc: bool) -> dict[str, np.ndarray]:
    from tqdm import tqdm

    rows = []
    other_epochs: set = set()
    try:
        f = open(path, "rb")
    except OSError as e:
        raise BenchmarkError(f"cannot read {path}: {e}") from None
    with f:
        if os.fstat(f.fileno()).st_size == 0:
            raise BenchmarkError(f"{path} is empty; expected a NAS-Bench-101 .tfrecord file")
        # Not closed explicitly: numpy views (also in tracebacks) keep it exported; it unmaps when freed.
        mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        buf = np.frombuffer(mm, dtype=np.uint8)
        starts, lengths = frame_records(mm, buf, path)
        bar = tqdm(total=len(starts), unit="rec", desc=f"reading {path.name}", disable=not progress)
        for first in range(0, len(starts), _CHUNK):
            s, n = starts[first : first + _CHUNK], lengths[first : first + _CHUNK]
            verify_records(buf, s, n, first, path, check_data_crc)
            records = _parse_chunk([mm[a : a + b] for a, b in zip(s.tolist(), n.tolist())], first, path)
            for i, record in enumerate(records):
                try:
                    row = _row(record, epochs)
                except (ValueError, KeyError, TypeError, binascii.Error) as e:
                    raise BenchmarkError(
                        f"{path}: record {first + i + 1} is not a NAS-Bench-101 record ({type(e).__name__}: {e})"
                    ) from None
                if type(row) is tuple:
                    rows.append(row)
                else:
                    other_epochs.add(row)
            bar.update(len(s))
        bar.close()
    if not rows:
        found = ", ".join(str(e) for e in sorted(other_epochs)) or "none"
        raise BenchmarkError(f"{path} has no {epochs}-epoch results; epochs in this file: {found}")
    return _aggregate(*zip(*rows))


def _aggregate(hashes, sizes, bits, codes, params, values) -> dict[str, np.ndarray]:
    """Mean over each cell's repeats; cells sorted by hash so lookups are a binary search."""
    keys, first, inverse, repeats = np.unique(
        np.array(hashes, dtype="S32"), return_index=True, return_inverse=True, return_counts=True
    )
    values = np.array(values, dtype=np.float64)
    table = {
        "hash": keys,
        "vertices": np.array(sizes, dtype=np.uint8)[first],
        "adjacency": np.array(bits, dtype=np.int64)[first],
        "ops": np.array(codes, dtype=np.int8)[first],
        "params": np.array(params, dtype=np.int64)[first],
        "repeats": repeats.astype(np.int32),
    }
    for k, name in enumerate(_COLUMNS):
        mean = np.bincount(inverse, weights=values[:, k], minlength=len(keys)) / repeats
        table[name] = mean * 100.0 if name != "cost" else mean
    return table


def _cache_ident(path: Path, epochs: int, check_data_crc: bool) -> str:
    st = path.stat()
    return f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}|{epochs}|{check_data_crc}"


def _cache_file(directory, ident: str) -> Path:
    return nasflow_cache.entry(None, f"nb101-{hashlib.sha1(ident.encode()).hexdigest()[:20]}", CACHE_VERSION, ".npz",
                               directory=directory)


def _read_cache(target: Path, ident: str) -> Optional[dict]:
    """The cached table, or None: absent, or (warned) damaged, written for another file, or not a whole table."""
    arrays = nasflow_cache.load_npz(target)
    if arrays is None:
        return None
    found = arrays.pop("ident", None)
    if found is None or found.shape != () or str(found) != ident:
        nasflow_cache.report_damaged(target, "written for another file")
        return None
    if arrays.keys() != _CACHED.keys() or any(arrays[k].dtype != np.dtype(t) for k, t in _CACHED.items()):
        nasflow_cache.report_damaged(target, "not a NAS-Bench-101 table")
        return None
    n = len(arrays["hash"])
    hashes = arrays["hash"]
    if (any(a.shape[:1] != (n,) or a.ndim != (2 if k == "ops" else 1) for k, a in arrays.items())
            or not np.all(hashes[1:] > hashes[:-1])  # lookups are a binary search over unique sorted hashes
            or not all(np.isfinite(arrays[k]).all() for k in _COLUMNS)):
        nasflow_cache.report_damaged(target, "columns of different lengths, unsorted cells or non-finite numbers")
        return None
    return arrays


def load_records(
    path,
    epochs: int = 108,
    progress: bool = False,
    cache: bool = True,
    cache_dir=None,
    check_data_crc: bool = True,
) -> dict[str, np.ndarray]:
    """The per-cell table of an official NAS-Bench-101 file, as numpy columns sorted by hash.

    Columns: hash (S32), vertices, adjacency (row-major bits of the pruned matrix as an
    integer), ops (op codes of the inner vertices, -1 padded), params, repeats, and the
    repeat means valid, test, halfway_valid, halfway_test (percent) and cost (seconds).
    ``check_data_crc=False`` skips the data checksums (the length checksums are always
    checked), for files already verified once.
    """
    path = Path(path)
    if not path.is_file():
        raise BenchmarkError(f"benchmark file not found: {path}")
    if not cache:
        return _decode_file(path, epochs, progress, check_data_crc)
    ident = _cache_ident(path, epochs, check_data_crc)
    target = _cache_file(cache_dir, ident)
    table = _read_cache(target, ident)
    if table is None:  # absent or unusable: decoded again; an unwritable cache only costs the next load its speed
        table = _decode_file(path, epochs, progress, check_data_crc)
        nasflow_cache.write(target, lambda f: np.savez(f, ident=np.array(ident), **table))
    return table


def _arch(table: dict, i: int) -> NB101Arch:
    n = int(table["vertices"][i])
    matrix = matrix_of_bits(n, int(table["adjacency"][i]))
    ops = (INPUT,) + tuple(OPS[c] for c in table["ops"][i][: n - 2]) + (OUTPUT,)
    return NB101Arch.from_record(matrix, ops, table["hash"][i].decode())


class _CellTable(Mapping):
    """Arch -> Evaluation over the compact columns; Arch objects are made only when asked for."""

    def __init__(self, table: dict):
        self.t = table

    def row(self, arch) -> int:
        if not isinstance(arch, NB101Arch):
            return -1
        key = arch.key.encode()
        i = int(np.searchsorted(self.t["hash"], key))
        return i if i < len(self.t["hash"]) and self.t["hash"][i] == key else -1

    def evaluation(self, i: int) -> Evaluation:
        t = self.t
        return Evaluation(
            valid=float(t["valid"][i]),
            test=float(t["test"][i]),
            cost=float(t["cost"][i]),
            extra={
                "params": int(t["params"][i]),
                "halfway_valid": float(t["halfway_valid"][i]),
                "halfway_test": float(t["halfway_test"][i]),
                "repeats": int(t["repeats"][i]),
            },
        )

    def __getitem__(self, arch) -> Evaluation:
        i = self.row(arch)
        if i < 0:
            raise KeyError(arch)
        return self.evaluation(i)

    def __contains__(self, arch) -> bool:
        return self.row(arch) >= 0

    def __iter__(self):
        return (_arch(self.t, i) for i in range(len(self)))

    def __len__(self) -> int:
        return len(self.t["hash"])


class NB101RecordOracle(TabularOracle):
    """NAS-Bench-101 from the official .tfrecord: per cell the mean over its 3 training runs.

    valid/test are final validation/test accuracy in percent, cost the final training
    time in seconds; extra holds params, halfway_valid, halfway_test and repeats.
    """

    dataset = "cifar10"

    def __init__(self, path, epochs: int = 108, progress: bool = False, cache: bool = True, cache_dir=None):
        self.source = str(path)
        self.epochs = epochs
        self._set_table(_CellTable(load_records(path, epochs, progress=progress, cache=cache, cache_dir=cache_dir)))

    def best(self, metric: str = "valid"):
        column = self._table.t[metric]
        top = column.max()
        return [_arch(self._table.t, int(i)) for i in np.flatnonzero(column == top)], float(top)
