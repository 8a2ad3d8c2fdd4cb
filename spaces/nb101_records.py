"""The official NAS-Bench-101 files (``nasbench_only108.tfrecord``, ``nasbench_full.tfrecord``)
read without TensorFlow or the protobuf runtime.

TFRecord framing, per record: uint64 length, uint32 masked CRC32C of those 8 bytes, the
data, uint32 masked CRC32C of the data (all little-endian). Each record's data is JSON
``[hash, epochs, adjacency_bits, ops_csv, base64 ModelMetrics]``, where ModelMetrics is
google-research/nasbench's ``model_metrics.proto``:

    ModelMetrics   { repeated EvaluationData evaluation_data = 1; int32 trainable_parameters = 2;
                     double total_time = 3; }
    EvaluationData { double current_epoch = 1; double training_time = 2; double train_accuracy = 3;
                     double validation_accuracy = 4; double test_accuracy = 5; string checkpoint_path = 6; }

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
import struct
from collections.abc import Mapping
from pathlib import Path
from typing import Iterator, Optional

import numpy as np

from nasflow import cache as nasflow_cache
from nasflow.core import Evaluation, TabularOracle
from nasflow.errors import BenchmarkError

from .nb101 import INPUT, OPS, OUTPUT, NB101Arch

_CASTAGNOLI = 0x82F63B78  # reflected CRC-32C polynomial
_MASK_DELTA = 0xA282EAD8
_CHUNK = 65_536  # records verified and decoded per step: bounds memory, moves the progress bar
CACHE_VERSION = 2  # 2: the cache holds the identity of its file and is checked column by column
# what each cached column must be; ops is 2-D (cells x inner vertices), every other column 1-D
_CACHED = {"hash": "S32", "vertices": "uint8", "adjacency": "int64", "ops": "int8", "params": "int64",
           "repeats": "int32", "valid": "float64", "test": "float64", "cost": "float64",
           "halfway_valid": "float64", "halfway_test": "float64"}


def _crc_table() -> np.ndarray:
    t = np.arange(256, dtype=np.uint32)
    for _ in range(8):
        t = np.where(t & 1, (t >> 1) ^ np.uint32(_CASTAGNOLI), t >> 1).astype(np.uint32)
    return t


_TABLE = _crc_table()
_TABLE_LIST = _TABLE.tolist()


def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli) of ``data``."""
    crc = 0xFFFFFFFF
    for b in data:
        crc = _TABLE_LIST[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def mask_crc(crc):
    """TFRecord's masked CRC; works on ints and on uint32 arrays."""
    if isinstance(crc, np.ndarray):
        return ((crc >> np.uint32(15)) | (crc << np.uint32(17))) + np.uint32(_MASK_DELTA)
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + _MASK_DELTA) & 0xFFFFFFFF


def _crc32c_many(buf: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """CRC-32C of many byte ranges of ``buf`` at once.

    A CRC is sequential within a record but independent across records, so the table
    step runs once per byte position over all records still that long (records sorted
    by length make those a prefix), instead of once per byte in Python.
    """
    order = np.argsort(-lengths, kind="stable")
    starts, lengths = starts[order], lengths[order]
    crc = np.full(len(starts), 0xFFFFFFFF, dtype=np.uint32)
    longest = int(lengths[0]) if len(lengths) else 0
    active = np.searchsorted(-lengths, -np.arange(longest), side="left")
    for j in range(longest):
        k = active[j]
        c = crc[:k]
        crc[:k] = _TABLE[(c ^ buf[starts[:k] + j]) & 0xFF] ^ (c >> np.uint32(8))
    out = np.empty_like(crc)
    out[order] = crc ^ np.uint32(0xFFFFFFFF)
    return out


def _uint32_at(buf: np.ndarray, positions: np.ndarray) -> np.ndarray:
    b = [buf[positions + i].astype(np.uint32) << np.uint32(8 * i) for i in range(4)]
    return b[0] | b[1] | b[2] | b[3]


def _bad_lengths(buf: np.ndarray, heads: np.ndarray) -> np.ndarray:
    """Which record headers fail their length checksum."""
    crcs = _crc32c_many(buf, heads, np.full(len(heads), 8, dtype=np.int64))
    return mask_crc(crcs) != _uint32_at(buf, heads + 8)


def _frame(mm, buf: np.ndarray, path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Start and length of every record's data; a truncated record is a BenchmarkError."""
    size = len(mm)
    heads, lengths = [], []
    pos = 0
    unpack = struct.Struct("<Q").unpack_from
    while pos < size:
        if pos + 12 > size:
            _raise_truncated(buf, heads, path, "its header")
        (length,) = unpack(mm, pos)
        heads.append(pos)
        lengths.append(length)
        pos += 12 + length + 4
        if pos > size:
            _raise_truncated(buf, heads, path, "it")
    heads = np.array(heads, dtype=np.int64)
    return heads + 12, np.array(lengths, dtype=np.int64)


def _raise_truncated(buf, heads: list, path: Path, inside: str):
    # A corrupted length sends the walk astray before the file seems to end; name that record.
    bad = _bad_lengths(buf, np.array(heads, dtype=np.int64)) if heads else np.zeros(0, dtype=bool)
    if bad.any():
        raise BenchmarkError(f"{path}: record {int(np.argmax(bad)) + 1} has a corrupted length (checksum mismatch)")
    number = len(heads) + (inside == "its header")
    raise BenchmarkError(f"{path}: record {number} is truncated (the file ends inside {inside}; incomplete download?)")


def _verify(buf, starts, lengths, first: int, path: Path, check_data_crc: bool) -> None:
    bad = _bad_lengths(buf, starts - 12)
    if bad.any():
        raise BenchmarkError(f"{path}: record {first + int(np.argmax(bad)) + 1} has a corrupted length (checksum mismatch)")
    if check_data_crc:
        bad = mask_crc(_crc32c_many(buf, starts, lengths)) != _uint32_at(buf, starts + lengths)
        if bad.any():
            raise BenchmarkError(f"{path}: record {first + int(np.argmax(bad)) + 1} is corrupted (data checksum mismatch)")


# --- protobuf wire format -------------------------------------------------------------

_EVAL_FIELDS = ("current_epoch", "training_time", "train_accuracy", "validation_accuracy", "test_accuracy")
_EVAL_KEYS = _EVAL_FIELDS + ("checkpoint_path",)
_VALID, _TEST, _TIME = 3, 4, 1  # positions in an evaluation tuple
# The layout protobuf writes for an EvaluationData with all five doubles set and no
# checkpoint path, and for a ModelMetrics starting with three of them (field 1, 45 bytes
# each). The tag bytes fix the parse completely, so matching them gives exactly what the
# general decoder gives, about ten times faster; over 1.27M records that is most of the
# load time.
_EVAL_FAST = struct.Struct("<xdxdxdxdxd")
_EVAL_FAST_TAGS = bytes([0x09, 0x11, 0x19, 0x21, 0x29])
_METRICS_FAST = struct.Struct("<" + "2xxdxdxdxdxd" * 3)
_METRICS_FAST_TAGS = (b"\x0a\x2d" + _EVAL_FAST_TAGS) * 3


class WireError(ValueError):
    pass


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(data):
            raise WireError("truncated varint")
        b = data[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if b < 0x80:
            return value, pos
        shift += 7
        if shift > 63:
            raise WireError("varint longer than 10 bytes")


def _fields(data: bytes) -> Iterator[tuple[int, int, object]]:
    """(field number, wire type, value) of each field; length-delimited values as bytes."""
    pos, end = 0, len(data)
    while pos < end:
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(data, pos)
        elif wire == 1:
            if pos + 8 > end:
                raise WireError("truncated 64-bit field")
            value, pos = data[pos : pos + 8], pos + 8
        elif wire == 2:
            n, pos = _varint(data, pos)
            if pos + n > end:
                raise WireError("truncated length-delimited field")
            value, pos = data[pos : pos + n], pos + n
        elif wire == 5:
            if pos + 4 > end:
                raise WireError("truncated 32-bit field")
            value, pos = data[pos : pos + 4], pos + 4
        else:
            raise WireError(f"unsupported wire type {wire}")
        if number == 0:
            raise WireError("field number 0")
        yield number, wire, value


def _double(wire: int, value, name: str) -> float:
    if wire != 1:
        raise WireError(f"{name} is not a double")
    return struct.unpack("<d", value)[0]


def _evaluation(data: bytes) -> tuple:
    """An EvaluationData as a tuple in _EVAL_KEYS order (unset doubles are 0.0, as in proto2)."""
    if len(data) == 45 and data[0::9] == _EVAL_FAST_TAGS:
        return _EVAL_FAST.unpack(data) + ("",)
    out = [0.0] * 5 + [""]
    for number, wire, value in _fields(data):
        if 1 <= number <= 5:
            out[number - 1] = _double(wire, value, _EVAL_FIELDS[number - 1])
        elif number == 6:
            if wire != 2:
                raise WireError("checkpoint_path is not a string")
            out[5] = value.decode("utf-8", "replace")
    return tuple(out)


def _metrics(data: bytes) -> tuple[list, int, float]:
    """A ModelMetrics as (evaluation tuples, trainable_parameters, total_time); unknown fields are
    skipped, as protobuf does."""
    evaluations, params, total_time = [], 0, 0.0
    if data[0:2] + data[2:47:9] + data[47:49] + data[49:94:9] + data[94:96] + data[96:141:9] == _METRICS_FAST_TAGS:
        v = _METRICS_FAST.unpack_from(data)
        evaluations, data = [v[0:5] + ("",), v[5:10] + ("",), v[10:15] + ("",)], data[141:]
        # and the usual tail: params (a varint of 1-5 bytes), then total_time
        end = len(data) - 9
        if 2 <= end <= 6 and data[0] == 0x10 and data[end] == 0x19 and data[end - 1] < 0x80:
            params, pos = _varint(data, 1)
            if pos == end:
                return evaluations, params, struct.unpack_from("<d", data, end + 1)[0]
    for number, wire, value in _fields(data):
        if number == 1:
            if wire != 2:
                raise WireError("evaluation_data is not a message")
            evaluations.append(_evaluation(value))
        elif number == 2:
            if wire != 0:
                raise WireError("trainable_parameters is not a varint")
            params = value - (1 << 64) if value >= 1 << 63 else value
        elif number == 3:
            total_time = _double(wire, value, "total_time")
    return evaluations, params, total_time


def decode_model_metrics(data: bytes) -> dict:
    """A ``ModelMetrics`` message as a dict: evaluation_data (list of dicts), trainable_parameters, total_time."""
    evaluations, params, total_time = _metrics(data)
    return {
        "evaluation_data": [dict(zip(_EVAL_KEYS, e)) for e in evaluations],
        "trainable_parameters": params,
        "total_time": total_time,
    }


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
    evaluations, params, _ = _metrics(base64.b64decode(metrics, validate=True))
    if len(evaluations) < 3:
        raise ValueError(f"{len(evaluations)} evaluations, expected initial, halfway and final")
    half, final = evaluations[1], evaluations[2]
    values = (final[_VALID], final[_TEST], final[_TIME], half[_VALID], half[_TEST])
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
        starts, lengths = _frame(mm, buf, path)
        bar = tqdm(total=len(starts), unit="rec", desc=f"reading {path.name}", disable=not progress)
        for first in range(0, len(starts), _CHUNK):
            s, n = starts[first : first + _CHUNK], lengths[first : first + _CHUNK]
            _verify(buf, s, n, first, path, check_data_crc)
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
    bits = format(int(table["adjacency"][i]), f"0{n * n}b")
    matrix = tuple(tuple(int(b) for b in bits[r * n : (r + 1) * n]) for r in range(n))
    ops = (INPUT,) + tuple(OPS[c] for c in table["ops"][i][: n - 2]) + (OUTPUT,)
    return NB101Arch._trusted(matrix, ops, table["hash"][i].decode())


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
