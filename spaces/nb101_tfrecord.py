"""The TFRecord framing and protobuf wire format of the official NAS-Bench-101 files, read without
TensorFlow or the protobuf runtime (nothing here knows about cells: nb101_records turns records into a table).

TFRecord framing, per record: uint64 length, uint32 masked CRC32C of those 8 bytes, the
data, uint32 masked CRC32C of the data (all little-endian). ModelMetrics is
google-research/nasbench's ``model_metrics.proto``:

    ModelMetrics   { repeated EvaluationData evaluation_data = 1; int32 trainable_parameters = 2;
                     double total_time = 3; }
    EvaluationData { double current_epoch = 1; double training_time = 2; double train_accuracy = 3;
                     double validation_accuracy = 4; double test_accuracy = 5; string checkpoint_path = 6; }
"""
from __future__ import annotations

import struct
from pathlib import Path
from typing import Iterator

import numpy as np

from nasflow.errors import BenchmarkError

_CASTAGNOLI = 0x82F63B78  # reflected CRC-32C polynomial
_MASK_DELTA = 0xA282EAD8


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


def crc32c_many(buf: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
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
    crcs = crc32c_many(buf, heads, np.full(len(heads), 8, dtype=np.int64))
    return mask_crc(crcs) != _uint32_at(buf, heads + 8)


def frame_records(mm, buf: np.ndarray, path: Path) -> tuple[np.ndarray, np.ndarray]:
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


def verify_records(buf, starts, lengths, first: int, path: Path, check_data_crc: bool) -> None:
    bad = _bad_lengths(buf, starts - 12)
    if bad.any():
        raise BenchmarkError(f"{path}: record {first + int(np.argmax(bad)) + 1} has a corrupted length (checksum mismatch)")
    if check_data_crc:
        bad = mask_crc(crc32c_many(buf, starts, lengths)) != _uint32_at(buf, starts + lengths)
        if bad.any():
            raise BenchmarkError(f"{path}: record {first + int(np.argmax(bad)) + 1} is corrupted (data checksum mismatch)")


# --- protobuf wire format -------------------------------------------------------------

_EVAL_FIELDS = ("current_epoch", "training_time", "train_accuracy", "validation_accuracy", "test_accuracy")
_EVAL_KEYS = _EVAL_FIELDS + ("checkpoint_path",)
VALID, TEST, TIME = 3, 4, 1  # positions of those values in an evaluation tuple of model_metrics
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


def model_metrics(data: bytes) -> tuple[list, int, float]:
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
    evaluations, params, total_time = model_metrics(data)
    return {
        "evaluation_data": [dict(zip(_EVAL_KEYS, e)) for e in evaluations],
        "trainable_parameters": params,
        "total_time": total_time,
    }
