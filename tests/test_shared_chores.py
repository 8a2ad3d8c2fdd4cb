"""Shared chores have one home each: the atomic writer, the torch thread limit, the cache root.

Parsed, not grepped: a call in package code (nasflow, spaces, predictors, searchers, cli) to one of
these outside its home would be a second helper for the same chore.
"""
import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ROOMS = ("nasflow", "spaces", "predictors", "searchers", "cli")

# call (the last two parts of its dotted name) -> the modules allowed to make it
HOMES = {
    "os.replace": {"nasflow/atomic.py"},
    "os.rename": {"nasflow/atomic.py"},
    "tempfile.mkstemp": {"nasflow/atomic.py", "nasflow/paths.py"},  # paths.py: a probe that an output is writable
    "tempfile.NamedTemporaryFile": {"nasflow/atomic.py"},
    "torch.set_num_threads": {"nasflow/devices.py"},
    "torch.set_num_interop_threads": {"nasflow/devices.py"},
    "Path.home": {"nasflow/cache.py", "nasflow/benchfiles.py"},  # the cache root; where benchmark files are looked for
}


def _calls(path: Path):
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            owner = node.func.value
            name = owner.id if isinstance(owner, ast.Name) else owner.attr if isinstance(owner, ast.Attribute) else None
            if name is not None:
                yield f"{name}.{node.func.attr}", node.lineno


def _package_files():
    return sorted(p for room in ROOMS for p in (REPO / room).rglob("*.py"))


def test_each_chore_is_done_only_in_its_home():
    strays = [f"{path.relative_to(REPO)}:{line} calls {call}"
              for path in _package_files() for call, line in _calls(path)
              if call in HOMES and str(path.relative_to(REPO)) not in HOMES[call]]
    assert not strays, "\n".join(strays)


def test_the_check_sees_a_stray_call(tmp_path):
    stray = tmp_path / "stray.py"
    stray.write_text("import os, torch\ntorch.set_num_threads(1)\nos.replace('a', 'b')\n")
    assert [call for call, _ in _calls(stray)] == ["torch.set_num_threads", "os.replace"]


# calls no module makes today, listed so that a new use has one place to go
UNUSED = {"os.rename", "tempfile.NamedTemporaryFile", "torch.set_num_interop_threads"}


@pytest.mark.parametrize("call", sorted(set(HOMES) - UNUSED))
def test_every_home_still_makes_its_call(call):
    """A home that no longer makes the call names a rule that guards nothing: update HOMES with the code."""
    assert any(call in {c for c, _ in _calls(REPO / home)} for home in HOMES[call])


def test_torch_threads_limits_inside_and_restores_after_also_as_a_decorator():
    import torch

    from nasflow.devices import torch_threads

    before = torch.get_num_threads()
    with torch_threads(before + 1):
        assert torch.get_num_threads() == before + 1
        with torch_threads(0), torch_threads(None):  # 0 and None: as torch is set
            assert torch.get_num_threads() == before + 1
    assert torch.get_num_threads() == before

    @torch_threads(before + 2)
    def job():
        return torch.get_num_threads()

    assert job() == before + 2 and job() == before + 2  # a fresh context per call
    assert torch.get_num_threads() == before
