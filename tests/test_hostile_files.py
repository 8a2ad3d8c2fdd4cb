"""Hostile files at every place nasflow reads one: nothing runs, and each ends in one line.

The payloads are written here, at test time, in every format torch writes: a TorchScript
archive whose ``__setstate__`` writes a marker file (torch 2.2.1 runs it even from
``torch.load(weights_only=True)``, CVE-2025-32434), and a pickle ``__reduce__`` payload
in torch's zip format, its legacy format and as a plain pickle. ``test_payloads_are_live``
shows each payload does write its marker when loaded the way torch would, so the other
tests, which find no marker, are not passing by accident. On top, torch's and pickle's
loaders are replaced by recorders: nasflow must not call them at all.
"""
from __future__ import annotations

import contextlib
import json
import os
import pickle
import re
from pathlib import Path
from typing import Tuple

import numpy as np
import pytest
import torch

from clirun import run_cli
from nasflow import safe_io
from nasflow.errors import BenchmarkError, CheckpointError

REPO = Path(__file__).resolve().parents[1]
PAYLOAD = b"pwned\n"


class WritesMarker(torch.nn.Module):
    """A TorchScript module whose ``__setstate__``, run by torch.jit.load, writes ``PAYLOAD`` to ``marker``."""

    def __init__(self, marker: str):
        super().__init__()
        self.marker = marker
        self.buf = torch.zeros(1, dtype=torch.uint8)

    def forward(self, x):
        return x

    @torch.jit.export
    def __getstate__(self) -> Tuple[str, bool]:
        return (self.marker, self.training)

    @torch.jit.export
    def __setstate__(self, state: Tuple[str, bool]) -> None:
        self.marker = state[0]
        self.training = state[1]
        # TorchScript has no open(); a shared file mapping creates the file and writes it.
        # Kept in an attribute, else TorchScript drops the calls as dead code.
        written = torch.from_file(self.marker, True, 6, dtype=torch.uint8)
        written.copy_(torch.tensor([112, 119, 110, 101, 100, 10], dtype=torch.uint8))
        self.buf = written


class RunsCode:
    """Unpickling this writes ``PAYLOAD`` to the marker (as any code could run)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'wb').write({PAYLOAD!r})",))


def write_torchscript(path, marker):
    torch.jit.save(torch.jit.script(WritesMarker(str(marker))), str(path))


def write_torch_zip(path, marker):
    # inside a dict shaped like an old nasflow checkpoint, so only the payload can refuse it
    torch.save({"format": "nasflow-predictor", "version": 1, "space": RunsCode(marker)}, path)


def write_torch_legacy(path, marker):
    torch.save({"format": "nasflow-predictor", "version": 1, "space": RunsCode(marker)}, path,
               _use_new_zipfile_serialization=False)  # fmt: skip


def write_pickle(path, marker):
    path.write_bytes(pickle.dumps(RunsCode(marker), protocol=4))


FORMATS = {
    "torchscript": write_torchscript,
    "torch-zip": write_torch_zip,
    "torch-legacy": write_torch_legacy,
    "pickle": write_pickle,
}
# how torch (or Python) would load each: what nasflow must never do
LOADERS = {
    "torchscript": lambda path: torch.load(path, weights_only=True),
    "torch-zip": lambda path: torch.load(path, weights_only=False),
    "torch-legacy": lambda path: torch.load(path, weights_only=False),
    "pickle": lambda path: pickle.loads(path.read_bytes()),
}


@pytest.fixture()
def marker(tmp_path):
    path = tmp_path / "MARKER"
    yield path
    assert not path.exists(), f"a hostile file ran code: {path} was written"


@pytest.fixture()
def no_unsafe_loading(monkeypatch):
    """Replace every loader that can run code by one that records the call and refuses."""
    calls = []

    def refuse(name):
        def loader(*args, **kwargs):
            calls.append(name)
            raise AssertionError(f"nasflow called {name}")

        return loader

    for owner, name in [(torch, "load"), (torch.serialization, "load"), (torch.jit, "load"),
                        (torch.jit._serialization, "load"), (torch._C, "import_ir_module"),
                        (torch._C, "import_ir_module_from_buffer"), (pickle, "load"), (pickle, "loads")]:  # fmt: skip
        monkeypatch.setattr(owner, name, refuse(f"{owner.__name__}.{name}"))
    yield calls
    assert calls == [], f"unsafe loaders called: {calls}"


@pytest.mark.parametrize("fmt", FORMATS)
def test_payloads_are_live(fmt, tmp_path):
    """Each payload really writes its marker when loaded the usual way; else the tests below prove nothing."""
    live = tmp_path / "LIVE"
    path = tmp_path / "payload.pt"
    FORMATS[fmt](path, live)
    with contextlib.suppress(Exception):  # the load may fail after the payload ran
        LOADERS[fmt](path)
    assert live.read_bytes() == PAYLOAD


def _cli(*args, cache):
    r = run_cli(*args, cache=cache)
    return r.returncode, r.stdout, r.stderr


def _assert_one_line_exit_2(code, stderr):
    lines = stderr.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("nasflow: error: "), (code, stderr)
    assert "Traceback" not in stderr


@pytest.mark.parametrize("fmt", FORMATS)
def test_search_predictor(fmt, tmp_path, marker, no_unsafe_loading, nb201_csv):
    path = tmp_path / "hostile.pt"
    FORMATS[fmt](path, marker)
    code, _, err = _cli("search", "--space", "nb201", "--benchmark", str(nb201_csv), "--predictor", str(path),
                        "--budget", "3", "--out", str(tmp_path / "run"), cache=tmp_path / "cache")  # fmt: skip
    _assert_one_line_exit_2(code, err)
    assert "hostile.pt" in err


@pytest.mark.parametrize("fmt", FORMATS)
def test_train_predictor_init_from(fmt, tmp_path, marker, no_unsafe_loading, nb201_csv):
    path = tmp_path / "hostile.pt"
    FORMATS[fmt](path, marker)
    code, _, err = _cli("train-predictor", "--benchmark", str(nb201_csv), "--init-from", str(path),
                        "--out", str(tmp_path / "out.safetensors"), cache=tmp_path / "cache")  # fmt: skip
    _assert_one_line_exit_2(code, err)
    assert not (tmp_path / "out.safetensors").exists()


@pytest.mark.parametrize("fmt", FORMATS)
def test_predictor_load(fmt, tmp_path, marker, no_unsafe_loading):
    from nasflow import Predictor

    path = tmp_path / "hostile.pt"
    FORMATS[fmt](path, marker)
    with pytest.raises(CheckpointError) as info:
        Predictor.load(path)
    assert "\n" not in str(info.value)
    expected = "TorchScript archive" if fmt == "torchscript" else "convert-checkpoint"
    assert expected in str(info.value)


@pytest.mark.parametrize("fmt", FORMATS)
def test_info_benchmark(fmt, tmp_path, marker, no_unsafe_loading):
    path = tmp_path / "NAS-Bench-201-v1_1-096897.pth"
    FORMATS[fmt](path, marker)
    code, _, err = _cli("info", "--space", "nb201", "--benchmark", str(path), cache=tmp_path / "cache")
    _assert_one_line_exit_2(code, err)
    from nasflow.spaces.nb201_official import NB201OfficialOracle

    with pytest.raises(BenchmarkError) as info:
        NB201OfficialOracle(path, cache_dir=tmp_path / "cache")
    assert ("TorchScript" if fmt == "torchscript" else "refusing to load builtins.exec") in str(info.value)
    assert not (tmp_path / "cache").exists()


@pytest.mark.parametrize("fmt", FORMATS)
def test_convert_checkpoint(fmt, tmp_path, marker, no_unsafe_loading):
    path = tmp_path / "hostile.pt"
    FORMATS[fmt](path, marker)
    code, _, err = _cli("convert-checkpoint", str(path), str(tmp_path / "new.safetensors"), cache=tmp_path / "cache")
    _assert_one_line_exit_2(code, err)
    assert not (tmp_path / "new.safetensors").exists()


TINY = dict(dim=8, layers=1, pretrain_epochs=1, pretrain_batch=64, epochs=2, proxy="params")


@pytest.fixture(scope="module")
def cells(nb201):
    return nb201.enumerate()[:40]


@pytest.mark.parametrize("fmt", [*FORMATS, "garbage", "empty", "directory", "other-cache"])
def test_planted_pretraining_cache_is_recomputed(fmt, tmp_path, marker, cells, monkeypatch, no_unsafe_loading):
    from nasflow import Predictor

    monkeypatch.setenv("NASFLOW_CACHE", str(tmp_path / "cache"))
    reference = Predictor("nb201", seed=3, cache=False, **TINY).pretrain(cells)
    predictor = Predictor("nb201", seed=3, **TINY)
    tag = _pretrain_tag(cells)
    path = predictor._fgp_config(tag).cache_path()
    path.parent.mkdir(parents=True)
    if fmt in FORMATS:
        FORMATS[fmt](path, marker)
    elif fmt == "garbage":
        path.write_bytes(os.urandom(4096))
    elif fmt == "empty":
        path.write_bytes(b"")
    elif fmt == "directory":
        path.mkdir()
    else:  # a well-formed cache entry of another configuration, copied to this name
        other = Predictor("nb201", seed=4, **TINY).pretrain(cells)
        os.replace(other._fgp_config(tag).cache_path(), path)
    # a directory in the way cannot be replaced: pre-training runs and says the cache is not used
    with pytest.warns(UserWarning, match="is a directory") if fmt == "directory" else contextlib.nullcontext():
        predictor.pretrain(cells)
    assert not predictor.pretrain_from_cache
    for k, v in reference._pretrained["encoder"].items():
        torch.testing.assert_close(predictor._pretrained["encoder"][k], v)
    if fmt != "directory":  # the entry was rewritten: the next run loads it
        assert Predictor("nb201", seed=3, **TINY).pretrain(cells).pretrain_from_cache


def _pretrain_tag(archs):
    """The cache tag ``pretrain(archs)`` uses (a hash of the cells' keys)."""
    import hashlib

    return hashlib.sha1("\n".join(sorted(a.key for a in archs)).encode()).hexdigest()


# ---------------------------------------------------------------- damaged or foreign new-format files

@pytest.fixture(scope="module")
def saved(tmp_path_factory, cells):
    from nasflow import Predictor

    path = tmp_path_factory.mktemp("saved") / "p.safetensors"
    values = np.arange(len(cells), dtype=np.float64)
    Predictor("nb201", pretrain="none", **TINY).fit(cells, values).save(path)
    return path


def _rewrite(saved, tmp_path, change):
    """A copy of ``saved`` changed by hand: written with safetensors itself, so even JSON that
    nasflow would never write (Infinity) can be planted."""
    from safetensors.torch import save_file

    document, tensors = safe_io.load(saved, "nasflow-predictor", "checkpoint")
    change(document, tensors)
    path = tmp_path / "changed.safetensors"
    save_file(tensors, path, metadata={safe_io.META_KEY: json.dumps(document)})
    return path


def _set_option(key, value):
    return lambda document, tensors: document["config"].__setitem__(key, value)


@pytest.mark.parametrize("change, message", [
    (lambda d, t: d.pop("space"), "no 'space'"),
    (lambda d, t: d.__setitem__("space", 7), "no 'space'"),
    (lambda d, t: d.__setitem__("space", "nb999"), "unknown search space"),
    (lambda d, t: d.__setitem__("version", 99), "version 99"),
    (lambda d, t: d.__setitem__("format", "something-else"), "not a nasflow predictor checkpoint"),
    (lambda d, t: d.__setitem__("config", "many"), "'config' must be"),
    (lambda d, t: d.__setitem__("vocab", None), "'vocab' must be"),
    (lambda d, t: d.__setitem__("model", "yes"), "'model' must be"),
    (lambda d, t: d.__setitem__("pretrained", ["brain"]), "'pretrained' must"),
    (_set_option("epochs", "many"), "epochs='many' is not an integer"),
    (_set_option("lr", "fast"), "lr='fast' is not a number"),
    (_set_option("lr", float("inf")), "lr=inf is not a number"),
    (_set_option("dim", 8.5), "dim=8.5 is not an integer"),
    (_set_option("unified", "yes"), "unified='yes' is not true/false"),
    (_set_option("features", "zcp"), "features='zcp' is not a list"),
    (_set_option("encoder", "transformer"), "unknown encoder"),
    (_set_option("colour", "red"), "unknown predictor option 'colour'"),
    (_set_option("dim", 16), "does not match"),  # weights of another width
    (lambda d, t: t.pop(next(iter(t))), "does not match"),
    (lambda d, t: t.__setitem__("model/extra", torch.zeros(1)), "does not match"),
    (lambda d, t: t.__setitem__("elsewhere", torch.zeros(1)), "unexpected tensor"),
])  # fmt: skip
def test_damaged_checkpoints_are_one_line(saved, tmp_path, change, message, no_unsafe_loading):
    from nasflow import Predictor

    path = _rewrite(saved, tmp_path, change)
    with pytest.raises(CheckpointError, match=re.escape(message)) as info:
        Predictor.load(path)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("content", [b"", b"\x00" * 7, b"\xff" * 64, b"{}", (2**62).to_bytes(8, "little") + b"{}"])
def test_garbage_is_one_line(tmp_path, content, no_unsafe_loading):
    from nasflow import Predictor

    path = tmp_path / "garbage.safetensors"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match="not a readable predictor checkpoint") as info:
        Predictor.load(path)
    assert "\n" not in str(info.value)


def test_truncated_checkpoint_is_one_line(saved, tmp_path, no_unsafe_loading):
    from nasflow import Predictor

    data = saved.read_bytes()
    for cut in (8, len(data) // 2, len(data) - 1):
        path = tmp_path / f"cut{cut}.safetensors"
        path.write_bytes(data[:cut])
        with pytest.raises(CheckpointError, match="not a readable predictor checkpoint"):
            Predictor.load(path)


def test_a_header_length_that_looks_like_a_pickle_still_loads(saved, tmp_path):
    """A safetensors header of 0x0280 or 0x0580 bytes starts with 0x80 0x02-0x05, as a pickle does."""
    from nasflow import Predictor

    document, tensors = safe_io.load(saved, "nasflow-predictor", "checkpoint")
    path = tmp_path / "looks-like-pickle.safetensors"

    def header_length(pad):
        document["padding"] = "x" * pad
        safe_io.save(path, tensors, document)
        return int.from_bytes(path.read_bytes()[:8], "little")

    base = header_length(0)
    target = next(n for n in range(base, base + 1 << 17) if n % 256 == 0x80 and 2 <= (n >> 8) % 256 <= 5)
    for pad in range(target - base - 8, target - base + 8):
        if header_length(pad) == target:
            break
    assert path.read_bytes()[0] == 0x80 and 2 <= path.read_bytes()[1] <= 5
    assert Predictor.load(path).is_fitted


def test_search_with_a_damaged_checkpoint_is_one_line(saved, tmp_path, nb201_csv):
    path = _rewrite(saved, tmp_path, _set_option("epochs", "many"))
    code, _, err = _cli("search", "--space", "nb201", "--benchmark", str(nb201_csv), "--predictor", str(path),
                        "--budget", "3", "--out", str(tmp_path / "run"), cache=tmp_path / "cache")  # fmt: skip
    _assert_one_line_exit_2(code, err)
    assert "epochs='many'" in err


# ---------------------------------------------------------------- nothing in the package unpickles

# pattern -> the only files allowed to contain it
SANCTIONED = {
    r"torch\.load\(": (),
    r"torch\.jit\.load": (),
    r"pickle\.loads?\(": (),
    r"allow_pickle\s*=\s*True": (),
    r"Unpickler\b": ("nasflow/torchfile.py",),  # the restricted unpickler, the one that reads torch files
    r"\.load\(\)": ("nasflow/torchfile.py",),
}


def test_no_unsafe_loading_in_the_package():
    found = []
    for room in ("nasflow", "spaces", "predictors", "searchers", "cli"):
        for path in sorted((REPO / room).rglob("*.py")):
            text = path.read_text(encoding="utf-8")
            rel = path.relative_to(REPO).as_posix()
            for pattern, allowed in SANCTIONED.items():
                if rel not in allowed and re.search(pattern, text):
                    found.append(f"{rel}: {pattern}")
    assert found == []


def test_a_header_only_read_gives_the_document_and_still_refuses_other_files(saved, tmp_path):
    import pickle

    document, tensors = safe_io.load(saved, "nasflow-predictor", "checkpoint")
    head, none = safe_io.load(saved, "nasflow-predictor", "checkpoint", tensors=False)
    assert head == document and none == {} and tensors
    with pytest.raises(CheckpointError, match="not a nasflow checkpoint"):
        safe_io.load(saved, "nasflow-training-state", "checkpoint", tensors=False)
    pickled = tmp_path / "old.pt"
    pickled.write_bytes(pickle.dumps({"a": 1}, protocol=2))
    with pytest.raises(CheckpointError, match="torch pickle"):
        safe_io.load(pickled, "nasflow-predictor", "checkpoint", tensors=False)
