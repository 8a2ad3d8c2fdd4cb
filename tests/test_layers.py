"""DESIGN.md's layer rules, enforced by parsing every package module's imports (ast; nothing is imported).

- The pure core (``nasflow/`` except the composition package ``nasflow/experiments/``) imports none of
  the rooms: spaces, predictors, searchers, cli, experiments.
- Spaces, searchers and predictors never import each other, nor experiments or cli; they meet through
  the core's protocols. ``experiments`` (the composition layer) wires rooms together but never the CLI.
- No private name (``_x``) crosses a module: neither ``from m import _x`` nor ``m._x`` on an imported module,
  nor ``C._x`` on a class or function imported from another module.
- Modules stay small: under 400 lines, ``predictors/predictor.py`` (the facade) under 250.

Imports inside functions count (a lazy import is still a dependency). ``from nasflow import get_space``
counts as importing the module the name is lazily loaded from (``nasflow/__init__.py``'s ``_LAZY``).
"""
from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _rooms() -> dict[str, str]:
    """setup.py's ROOMS (installed package -> folder), read from its source."""
    tree = ast.parse((ROOT / "setup.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "ROOMS" for t in node.targets):
            return ast.literal_eval(node.value)
    raise AssertionError("setup.py has no ROOMS")


def _lazy_names() -> dict[str, str]:
    """nasflow/__init__.py's lazily loaded public names -> the module each comes from."""
    tree = ast.parse((ROOT / "nasflow" / "__init__.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "_LAZY" for t in node.targets):
            return ast.literal_eval(node.value)
    return {}


ROOMS = _rooms()
LAZY = _lazy_names()


@dataclass(frozen=True)
class Module:
    name: str  # installed dotted name, e.g. nasflow.predictors.unified
    path: Path
    is_package: bool

    @property
    def package(self) -> str:
        return self.name if self.is_package else self.name.rpartition(".")[0]


def package_modules() -> list[Module]:
    """Every module of the installed packages; a file belongs to the deepest folder of ROOMS holding it."""
    folders = sorted(((ROOT / folder, pkg) for pkg, folder in ROOMS.items()), key=lambda fp: -len(fp[0].parts))
    out = {}
    for folder, pkg in folders:
        for path in folder.rglob("*.py"):
            if path in out or any(part.startswith(".") for part in path.relative_to(ROOT).parts):
                continue
            owner = next(p for f, p in folders if path.is_relative_to(f))
            if owner != pkg:
                continue
            rel = path.relative_to(folder).with_suffix("").parts
            is_package = rel[-1] == "__init__"
            out[path] = Module(".".join((pkg,) + (rel[:-1] if is_package else rel)), path, is_package)
    return sorted(out.values(), key=lambda m: m.name)


MODULES = package_modules()
NAMES = {m.name for m in MODULES}


def room(name: str) -> str:
    """The room of a nasflow module name: core, experiments, spaces, predictors, searchers or cli."""
    parts = name.split(".")
    if parts[0] != "nasflow":
        return "external"
    if len(parts) > 1 and parts[1] in ("experiments", "spaces", "predictors", "searchers", "cli"):
        return parts[1]
    return "core"


# room -> the rooms it may import (besides itself and third-party code)
ALLOWED = {
    "core": {"core"},
    "spaces": {"core"},
    "predictors": {"core"},
    "searchers": {"core"},
    "experiments": {"core", "spaces", "predictors", "searchers"},
    "cli": {"core", "spaces", "predictors", "searchers", "experiments"},
}


@dataclass(frozen=True)
class Import:
    module: str  # the module depended on
    line: int
    private: Optional[str] = None  # a private name taken from it, if any


def _absolute(mod: Module, level: int, target: Optional[str]) -> str:
    base = mod.package
    for _ in range(level - 1):
        base = base.rpartition(".")[0]
    return f"{base}.{target}" if target else base


def imports(mod: Module, source: Optional[str] = None) -> Iterator[Import]:
    """Every dependency of ``mod`` on another module, with the private names that cross."""
    tree = ast.parse(source if source is not None else mod.path.read_text(), str(mod.path))
    # local name bound by an import -> the module it comes from (the module itself, or the one defining
    # the imported class or function): ``name._x`` on it takes a private name from that module
    bound: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                yield Import(a.name, node.lineno)
                top = a.name if a.asname else a.name.split(".")[0]
                bound[a.asname or top] = top
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(mod, node.level, node.module) if node.level else node.module
            for a in node.names:
                sub = f"{base}.{a.name}"
                if sub in NAMES:
                    target = sub  # `from package import module`
                elif base == "nasflow" and a.name in LAZY:
                    target = LAZY[a.name]
                else:
                    target = base
                bound[a.asname or a.name] = target
                yield Import(target, node.lineno, a.name if _private(a.name) and target == base else None)
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and _private(node.attr):
            module = bound.get(node.value.id)
            if module is not None:
                yield Import(module, node.lineno, node.attr)


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def layer_violations(modules=MODULES) -> list[str]:
    out = []
    for mod in modules:
        own = room(mod.name)
        for imp in imports(mod):
            other = room(imp.module)
            if other not in ("external", own) and other not in ALLOWED[own]:
                out.append(f"{mod.path.relative_to(ROOT)}:{imp.line}: {own} imports {imp.module} ({other})")
    return out


def private_violations(modules=MODULES) -> list[str]:
    out = []
    for mod in modules:
        for imp in imports(mod):
            # third-party private names (torch._foreach_add_) are those libraries' business, not a layer breach
            if imp.private and imp.module != mod.name and room(imp.module) != "external":
                out.append(f"{mod.path.relative_to(ROOT)}:{imp.line}: {imp.private} from {imp.module}")
    return out


def test_every_room_is_found_and_every_module_is_parsed():
    found = {room(m.name) for m in MODULES}
    assert found == set(ALLOWED), found
    assert {"nasflow.core", "nasflow.spaces.nb201", "nasflow.predictors.unified", "nasflow.searchers.tpe",
            "nasflow.cli.main", "nasflow.experiments.runs"} <= NAMES


def test_relative_imports_resolve_to_the_modules_they_name():
    unified = next(m for m in MODULES if m.name == "nasflow.predictors.unified")
    spaces = next(m for m in MODULES if m.name == "nasflow.spaces")
    got = {i.module for i in imports(unified, "from .graphs import GraphCache\nfrom .. import errors\n"
                                              "from ..spaces import nb201\nfrom . import fgp\n")}
    assert got == {"nasflow.predictors.graphs", "nasflow.errors", "nasflow.spaces.nb201", "nasflow.predictors.fgp"}
    assert {i.module for i in imports(spaces, "from .nb201 import OPS\nfrom . import nb101")} == {
        "nasflow.spaces.nb201", "nasflow.spaces.nb101"}


def test_the_checker_catches_each_kind_of_breach():
    unified = next(m for m in MODULES if m.name == "nasflow.predictors.unified")
    loop = next(m for m in MODULES if m.name == "nasflow.loop")

    def breaches(mod, source):
        mod_imports = list(imports(mod, source))
        layers = [i.module for i in mod_imports if room(i.module) not in ("external", room(mod.name))
                  and room(i.module) not in ALLOWED[room(mod.name)]]
        return layers, [i.private for i in mod_imports if i.private]

    assert breaches(unified, "def f():\n    from nasflow.spaces import get_space\n") == (["nasflow.spaces"], [])
    spaces = next(m for m in MODULES if m.name == "nasflow.spaces.nb201")
    assert breaches(spaces, "from nasflow import Predictor\n") == (["nasflow.predictors"], [])  # through _LAZY
    assert breaches(loop, "from .experiments.runs import build\n") == (["nasflow.experiments.runs"], [])
    assert breaches(loop, "from .searchers.base import _x\n") == (["nasflow.searchers.base"], ["_x"])
    assert breaches(loop, "from .journal import _json_safe\n") == ([], ["_json_safe"])
    assert breaches(loop, "from nasflow import cache as c\nc._index = 1\n") == ([], ["_index"])
    assert breaches(loop, "from . import metrics\nmetrics._x\nmetrics.__name__\n") == ([], ["_x"])
    assert breaches(loop, "def f():\n    return Arch._make()\nfrom .core import Arch\n") == ([], ["_make"])


def test_the_pure_core_and_the_rooms_import_only_what_design_allows():
    found = layer_violations()
    assert not found, "layer rule broken (DESIGN.md, 'Rooms'):\n" + "\n".join(found)


def test_no_private_name_crosses_a_module():
    found = private_violations()
    assert not found, "private names used across modules:\n" + "\n".join(found)


LIMITS = {"nasflow.predictors.predictor": 250}


@pytest.mark.parametrize("mod", MODULES, ids=lambda m: m.name)
def test_modules_stay_small(mod):
    limit = LIMITS.get(mod.name, 400)
    lines = len(mod.path.read_text().splitlines())
    assert lines < limit, f"{mod.path.relative_to(ROOT)} has {lines} lines; split it by concern (limit {limit})"
