"""nasflow.atomic.atomic_write: the one writer of whole files (text, bytes or a streaming writer)."""
import os

import numpy as np
import pytest

from nasflow.atomic import atomic_write


def test_text_bytes_and_a_streaming_writer_each_replace_the_file(tmp_path):
    path = tmp_path / "out"
    atomic_write(path, "grüße\n")
    assert path.read_bytes() == "grüße\n".encode("utf-8")
    atomic_write(path, b"\x00\xff")
    assert path.read_bytes() == b"\x00\xff"
    atomic_write(path, lambda f: np.savez(f, x=np.arange(3)))
    with np.load(path) as z:
        assert z["x"].tolist() == [0, 1, 2]
    assert os.listdir(tmp_path) == ["out"]  # no temporary file left beside it


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "out"
    atomic_write(path, "old")

    def half_then_fail(f):
        f.write(b"new, but only half")
        raise KeyboardInterrupt  # a kill mid-write: not only Exceptions must clean up

    with pytest.raises(KeyboardInterrupt):
        atomic_write(path, half_then_fail)
    assert path.read_text() == "old"
    assert os.listdir(tmp_path) == ["out"]


def test_a_missing_directory_is_an_error_not_created(tmp_path):
    with pytest.raises(FileNotFoundError):
        atomic_write(tmp_path / "absent" / "out", "x")
    assert not (tmp_path / "absent").exists()
