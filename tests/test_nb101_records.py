"""The TF-free reader of official NAS-Bench-101 .tfrecord files, on small files written here
in the official format; ModelMetrics is encoded by Google's protobuf runtime (an encoder
independent of the decoder under test), framing and CRCs follow the TFRecord spec."""
import base64
import json
import os
import struct
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nasflow.errors import BenchmarkError
from nasflow.spaces.nb101 import NB101Arch, NB101Space
from nasflow.spaces.nb101_records import NB101RecordOracle, load_records
from nasflow.spaces.nb101_tfrecord import crc32c, crc32c_many, decode_model_metrics, mask_crc
from nasflow.spaces import nb101_records

space = NB101Space()
EVAL_FIELDS = ("current_epoch", "training_time", "train_accuracy", "validation_accuracy", "test_accuracy")


def model_metrics_class():
    """ModelMetrics built from a descriptor that spells out nasbench's model_metrics.proto."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    F = descriptor_pb2.FieldDescriptorProto
    proto = descriptor_pb2.FileDescriptorProto(name="model_metrics.proto", package="nasbench", syntax="proto2")
    ev = proto.message_type.add(name="EvaluationData")
    for number, name in enumerate(EVAL_FIELDS, start=1):
        ev.field.add(name=name, number=number, type=F.TYPE_DOUBLE, label=F.LABEL_OPTIONAL)
    ev.field.add(name="checkpoint_path", number=6, type=F.TYPE_STRING, label=F.LABEL_OPTIONAL)
    mm = proto.message_type.add(name="ModelMetrics")
    mm.field.add(
        name="evaluation_data", number=1, type=F.TYPE_MESSAGE, type_name=".nasbench.EvaluationData", label=F.LABEL_REPEATED
    )
    mm.field.add(name="trainable_parameters", number=2, type=F.TYPE_INT32, label=F.LABEL_OPTIONAL)
    mm.field.add(name="total_time", number=3, type=F.TYPE_DOUBLE, label=F.LABEL_OPTIONAL)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("nasbench.ModelMetrics"))


ModelMetrics = model_metrics_class()


def metrics_bytes(params, evaluations, total_time=0.0, checkpoint=""):
    m = ModelMetrics(trainable_parameters=params, total_time=total_time)
    for ev in evaluations:
        m.evaluation_data.add(**ev, **({"checkpoint_path": checkpoint} if checkpoint else {}))
    return m.SerializeToString()


def frame(payloads):
    out = bytearray()
    for data in payloads:
        length = struct.pack("<Q", len(data))
        out += length + struct.pack("<I", mask_crc(crc32c(length))) + data + struct.pack("<I", mask_crc(crc32c(data)))
    return bytes(out)


def record(arch: NB101Arch, epochs: int, metrics: bytes) -> bytes:
    bits = "".join(str(x) for row in arch.matrix for x in row)
    return json.dumps([arch.key, epochs, bits, ",".join(arch.ops), base64.b64encode(metrics).decode()]).encode()


def evaluations(rng, epochs):
    """initial, halfway and final evaluation of one run, accuracies as fractions."""
    out = []
    for k, epoch in enumerate((0.0, epochs / 2, float(epochs))):
        out.append(
            dict(
                current_epoch=epoch,
                training_time=float(rng.uniform(100, 3000)) * k,
                train_accuracy=float(rng.uniform(0.1, 1)),
                validation_accuracy=float(rng.uniform(0.1, 0.95)),
                test_accuracy=float(rng.uniform(0.1, 0.95)),
            )
        )
    return out


@pytest.fixture(scope="session")
def cells(nb101_jsonl):
    rows = [json.loads(line) for _, line in zip(range(12), open(nb101_jsonl))]
    return [NB101Arch(r["matrix"], r["ops"]) for r in rows]


@pytest.fixture(scope="session")
def official(tmp_path_factory, cells):
    """A tiny nasbench_full-style file: 12 cells x 3 repeats x epochs {4, 108}, and the expected means."""
    rng = np.random.default_rng(0)
    payloads, runs = [], {}
    for i, arch in enumerate(cells):
        for epochs in (4, 108):
            for repeat in range(3):
                evs = evaluations(rng, epochs)
                runs.setdefault((arch, epochs), []).append(evs)
                # some runs carry checkpoint paths, as protobuf writes them when set
                ckpt = f"/ckpt/{i}/{repeat}/model.ckpt-1" if repeat == 1 else ""
                payloads.append(record(arch, epochs, metrics_bytes(1000 + i, evs, 42.0, ckpt)))
    path = tmp_path_factory.mktemp("nb101") / "nasbench_full.tfrecord"
    path.write_bytes(frame(payloads))
    return path, runs


def test_crc32c_standard_vectors():
    assert crc32c(b"123456789") == 0xE3069283
    # RFC 3720 (iSCSI) test vectors
    assert crc32c(bytes(32)) == 0x8A9136AA
    assert crc32c(b"\xff" * 32) == 0x62A8AB43
    assert crc32c(bytes(range(32))) == 0x46DD794E


def test_vectorised_crc_matches_scalar():
    rng = np.random.default_rng(3)
    buf = rng.integers(0, 256, size=5000, dtype=np.uint8)
    starts = rng.integers(0, 4000, size=300)
    lengths = rng.integers(0, 1000, size=300)
    got = crc32c_many(buf, starts, lengths)
    data = buf.tobytes()
    assert [int(c) for c in got] == [crc32c(data[s : s + n]) for s, n in zip(starts, lengths)]
    assert [int(c) for c in mask_crc(got)] == [mask_crc(int(c)) for c in got]


doubles = st.floats(allow_nan=False, allow_infinity=True, width=64)
evaluation_strategy = st.fixed_dictionaries({}, optional={f: doubles for f in EVAL_FIELDS})


@given(st.integers(-(2**31), 2**31 - 1), st.lists(evaluation_strategy, max_size=4), doubles, st.text(max_size=30))
@settings(max_examples=150, deadline=None)
def test_decoder_agrees_with_protobuf(params, evs, total_time, checkpoint):
    raw = metrics_bytes(params, evs, total_time, checkpoint)
    got = decode_model_metrics(raw)
    reference = ModelMetrics.FromString(raw)
    assert got["trainable_parameters"] == reference.trainable_parameters == params
    assert got["total_time"] == reference.total_time
    assert len(got["evaluation_data"]) == len(reference.evaluation_data)
    for mine, theirs in zip(got["evaluation_data"], reference.evaluation_data):
        assert mine == {f: getattr(theirs, f) for f in EVAL_FIELDS + ("checkpoint_path",)}


def test_decoder_skips_unknown_fields_and_rejects_garbage():
    raw = metrics_bytes(7, [dict(validation_accuracy=0.5)])
    # field 9 varint, field 10 fixed32, field 11 bytes: unknown, must be skipped
    extra = bytes([9 << 3 | 0, 0x96, 0x01, 10 << 3 | 5, 1, 2, 3, 4, 11 << 3 | 2, 2, 0xAA, 0xBB])
    assert decode_model_metrics(extra + raw)["evaluation_data"][0]["validation_accuracy"] == 0.5
    for bad in (raw[:-3], bytes([0x0A, 0x40, 0x09]), bytes([1 << 3 | 3])):
        with pytest.raises(ValueError):
            decode_model_metrics(bad)


def test_oracle_means_over_repeats(official, cells, tmp_path):
    path, runs = official
    oracle = NB101RecordOracle(path, cache_dir=tmp_path)
    assert len(oracle) == len(cells) == 12
    for i, arch in enumerate(cells):
        e = oracle.query(arch)
        final = [r[2] for r in runs[(arch, 108)]]
        half = [r[1] for r in runs[(arch, 108)]]
        assert e.valid == pytest.approx(100 * np.mean([f["validation_accuracy"] for f in final]), rel=1e-12)
        assert e.test == pytest.approx(100 * np.mean([f["test_accuracy"] for f in final]), rel=1e-12)
        assert e.cost == pytest.approx(np.mean([f["training_time"] for f in final]), rel=1e-12)
        assert e.extra["halfway_valid"] == pytest.approx(100 * np.mean([h["validation_accuracy"] for h in half]))
        assert e.extra["params"] == 1000 + i and e.extra["repeats"] == 3
    (best,), value = oracle.best("valid")
    assert value == max(oracle.query(a).valid for a in cells) == oracle.query(best).valid
    assert set(oracle.archs()) == set(cells)
    assert [(a, e) for a, e in oracle.items()][3] == (oracle.archs()[3], oracle.query(oracle.archs()[3]))
    # cells from the file are the pruned cells, equal to ones built from matrices
    built = oracle.archs()[0]
    assert space.make(built.matrix, built.ops) == built and built in oracle
    with pytest.raises(BenchmarkError, match="not in"):
        oracle.query(space.make([[0, 1], [0, 0]], ["input", "output"]))


def test_other_epoch_budgets(official, cells, tmp_path):
    path, runs = official
    oracle = NB101RecordOracle(path, epochs=4, cache=False)
    expected = np.mean([r[2]["validation_accuracy"] for r in runs[(cells[2], 4)]]) * 100
    assert oracle.query(cells[2]).valid == pytest.approx(expected, rel=1e-12)
    with pytest.raises(BenchmarkError, match="no 36-epoch results; epochs in this file: 4, 108"):
        NB101RecordOracle(path, epochs=36, cache=False)


def test_cache_is_reused_and_invalidated(official, tmp_path, monkeypatch):
    path, _ = official
    copy = tmp_path / "copy.tfrecord"
    copy.write_bytes(path.read_bytes())
    first = load_records(copy, cache_dir=tmp_path / "cache")
    assert len(list((tmp_path / "cache").glob("nb101-*.npz"))) == 1

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded although cached")

    monkeypatch.setattr(nb101_records, "_decode_file", no_decoding)
    again = load_records(copy, cache_dir=tmp_path / "cache")
    assert first.keys() == again.keys() and all(np.array_equal(first[k], again[k]) for k in first)
    os.utime(copy, ns=(1, 1))  # a changed file must not be answered from the old cache
    with pytest.raises(AssertionError, match="decoded although cached"):
        load_records(copy, cache_dir=tmp_path / "cache")


def damaged(tmp_path, data: bytes):
    path = tmp_path / "bad.tfrecord"
    path.write_bytes(data)
    return path


def record_offsets(data: bytes):
    offsets, pos = [], 0
    while pos < len(data):
        offsets.append(pos)
        pos += 16 + struct.unpack_from("<Q", data, pos)[0]
    return offsets


@pytest.mark.parametrize(
    "cut, message",
    [
        (lambda o: o[4] + 5, "record 5 is truncated"),
        (lambda o: o[4] + 40, "record 5 is truncated"),
        (lambda o: o[5] - 2, "record 5 is truncated"),
    ],
)
def test_truncated_file_names_the_record(official, tmp_path, cut, message):
    data = official[0].read_bytes()
    with pytest.raises(BenchmarkError, match=message) as e:
        load_records(damaged(tmp_path, data[: cut(record_offsets(data))]), cache=False)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize(
    "where, message",
    [
        (lambda o: o[6] + 30, "record 7 is corrupted"),
        (lambda o: o[6] + 1, "record 7 has a corrupted length"),
        (lambda o: o[6] + 9, "record 7 has a corrupted length"),
    ],
)
def test_corrupted_file_names_the_record(official, tmp_path, where, message):
    data = bytearray(official[0].read_bytes())
    data[where(record_offsets(bytes(data)))] ^= 0x04
    with pytest.raises(BenchmarkError, match=message):
        load_records(damaged(tmp_path, bytes(data)), cache=False)


@pytest.mark.parametrize(
    "payload",
    [
        b"not json",
        b'["00005c142e6f48ac74fdcf73e3439874", 108, "0100", "input,output"]',
        b'["00005c142e6f48ac74fdcf73e3439874", 108, "0100", "input,conv5x5,output", ""]',
        b'["00005c142e6f48ac74fdcf73e3439874", 108, "0100", "input,output", "!!notbase64"]',
        b'["00005c142e6f48ac74fdcf73e3439874", 108, "0b10", "input,output", ""]',
        b'["00005c142e6f48ac74fdcf73e3439874", 108, "0100", "input,output", "CgA="]',
    ],
)
def test_malformed_records_name_the_record(official, tmp_path, payload):
    data = official[0].read_bytes()
    first_two = data[: record_offsets(data)[2]]
    with pytest.raises(BenchmarkError, match="record 3 is not a NAS-Bench-101 record") as e:
        load_records(damaged(tmp_path, first_two + frame([payload])), cache=False)
    assert "\n" not in str(e.value)


def test_empty_and_missing_files(tmp_path):
    with pytest.raises(BenchmarkError, match="is empty"):
        load_records(damaged(tmp_path, b""), cache=False)
    with pytest.raises(BenchmarkError, match="not found"):
        load_records(tmp_path / "nope.tfrecord")


def test_skipping_data_crc_still_reads(official, cells):
    oracle = NB101RecordOracle(official[0], cache=False)
    fast = load_records(official[0], cache=False, check_data_crc=False)
    assert np.array_equal(fast["valid"], oracle._table.t["valid"])


def test_space_and_cli_open_the_official_file(official, tmp_path, monkeypatch):
    path, _ = official
    monkeypatch.setenv("HOME", str(tmp_path))  # without $NASFLOW_CACHE, the cache lives under ~/.nasflow
    monkeypatch.delenv("NASFLOW_CACHE", raising=False)
    monkeypatch.setenv("NASFLOW_BENCHMARKS", str(path.parent))
    oracle = space.open_oracle()
    assert isinstance(oracle, NB101RecordOracle) and len(oracle) == 12
    assert list((tmp_path / ".nasflow" / "cache").glob("nb101-*.npz"))
    out = subprocess.run(
        [sys.executable, "-m", "nasflow.cli.main", "info", "--space", "nb101"],
        capture_output=True,
        text=True,
        env=os.environ.copy(),
    )
    assert out.returncode == 0, out.stderr
    (best,), valid = oracle.best("valid")
    (_,), test = oracle.best("test")
    assert f"best valid {valid:.4f}  {space.format(best)}" in out.stdout
    assert f"best test  {test:.4f}" in out.stdout


def write_synthetic(path, n_records: int, seed: int = 0):
    """A file of n_records official-format records over random cells (3 repeats each), for timing."""
    rng = np.random.default_rng(seed)
    archs = [space.sample(rng) for _ in range(max(1, n_records // 3))]
    evs = evaluations(rng, 108)
    payloads = [record(archs[i // 3 % len(archs)], 108, metrics_bytes(10**6 + i, evs, 1.0)) for i in range(n_records)]
    path.write_bytes(frame(payloads))
    return path


def test_progress_bar_goes_to_stderr(official, capsys):
    load_records(official[0], cache=False, progress=True)
    captured = capsys.readouterr()
    assert "reading nasbench_full.tfrecord" in captured.err and "72/72" in captured.err and captured.out == ""
