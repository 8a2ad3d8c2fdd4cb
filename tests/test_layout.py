"""The layout the issues ask for: rooms installed under the nasflow namespace."""
import importlib
from pathlib import Path

from setuptools import distutils  # noqa: F401  (setuptools' bundled distutils)
from distutils.core import run_setup

REPO = Path(__file__).resolve().parents[1]


def test_rooms_are_installed_under_nasflow():
    for room in ("spaces", "predictors", "searchers", "cli"):
        module = importlib.import_module(f"nasflow.{room}")
        assert Path(module.__file__).resolve().parent == REPO / room


def test_setup_installs_nothing_generic(monkeypatch):
    monkeypatch.chdir(REPO)
    dist = run_setup(str(REPO / "setup.py"), stop_after="init")
    assert dist.packages and all(p == "nasflow" or p.startswith("nasflow.") for p in dist.packages)
    assert dist.package_dir["nasflow.spaces"] == "spaces"
    assert "torch==2.2.1" in dist.install_requires and "dgl==2.1.0" in dist.install_requires
