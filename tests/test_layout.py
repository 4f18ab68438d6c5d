"""The core's layout: imports run one way between stages, with no circles.

Every import statement of every core module is read with ``ast`` (lazy
imports inside functions and ``TYPE_CHECKING`` blocks included), resolved
to a module of the package, and checked against the allowed direction.
"""

from __future__ import annotations

import ast
import pickle
from pathlib import Path

import pytest

import zarrsample_core

CORE = Path(zarrsample_core.__file__).parent
STAGES = ("sources", "planning", "reading", "epochs", "inference", "cli")
#: Stage -> the stages it may import (the shared top-level leaves are open to all).
ALLOWED = {
    "sources": set(),
    "planning": {"sources"},
    "reading": {"sources"},
    "epochs": {"sources", "planning", "reading"},
    "inference": {"sources", "planning", "reading", "epochs"},
    "cli": {"sources", "planning", "reading", "epochs", "inference"},
}
#: Top-level modules that are not shared leaves: the face and its helpers.
FACE = {"zarrsample_core", "zarrsample_core.__main__", "zarrsample_core._moved"}


def module_name(path: Path) -> str:
    parts = path.relative_to(CORE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path) -> set[str]:
    """Every module of the package named by an import statement in ``path``."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.add(target)
            # "from . import x" / "from .stage import _mod" may name submodules
            found.update(f"{target}.{alias.name}" for alias in node.names)
    modules = {module_name(p) for p in CORE.rglob("*.py")}
    return {m for m in found if m in modules}


def stage_of(module: str) -> str | None:
    """The stage of a module or stage package; None for the face and the shared leaves."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in STAGES else None


def core_modules() -> list[Path]:
    return sorted(CORE.rglob("*.py"))


def test_every_module_lives_in_a_stage_or_is_a_shared_leaf():
    leaves = {"zarrsample_core._errors", "zarrsample_core._checks", "zarrsample_core._lazy",
              "zarrsample_core._progress", "zarrsample_core._version"}
    for path in core_modules():
        name = module_name(path)
        assert stage_of(name) or name in leaves | FACE, name


def test_imports_run_one_way_between_stages():
    wrong = []
    for path in core_modules():
        name = module_name(path)
        stage = stage_of(name)
        for target in imported_modules(path):
            if target == "zarrsample_core" and name not in FACE:
                wrong.append(f"{name} imports the package face")
                continue
            target_stage = stage_of(target)
            if name in FACE or target_stage is None or target_stage == stage:
                if stage is None and name not in FACE and target_stage is not None:
                    wrong.append(f"shared leaf {name} imports {target}")
                continue
            if stage is None or target_stage not in ALLOWED[stage]:
                wrong.append(f"{name} ({stage}) imports {target} ({target_stage})")
    assert not wrong, "\n".join(wrong)


def test_no_import_circles():
    graph = {module_name(p): imported_modules(p) - {module_name(p)} for p in core_modules()}
    state: dict[str, int] = {}
    stack: list[str] = []
    circles: list[list[str]] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                circles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    assert not circles, "\n".join(" -> ".join(c) for c in circles)


def test_the_checker_resolves_relative_imports():
    """The reader of import statements resolves relative imports (so it can fail)."""
    path = CORE / "sources" / "_io.py"
    imports = imported_modules(path)
    assert "zarrsample_core.sources._image" in imports
    assert "zarrsample_core._errors" in imports
    assert all(stage_of(m) != "planning" for m in imports)
    assert "zarrsample_core.sources._collection" in imported_modules(CORE / "planning" / "_coverage.py")


@pytest.mark.parametrize("old", ["zarrsample_core._sampler", "zarrsample_core._image"])
def test_pickles_naming_the_flat_layout_still_load(old):
    """A pickle written before the stage subpackages names e.g. ``zarrsample_core._sampler``."""
    sampler = zarrsample_core.PatchSampler(16, stride=8)
    new = type(sampler).__module__
    assert new == "zarrsample_core.planning._sampler"
    data = pickle.dumps(sampler, protocol=0)
    assert new.encode() in data
    legacy = data.replace(new.encode(), b"zarrsample_core._sampler")
    assert b"zarrsample_core.planning" not in legacy
    loaded = pickle.loads(legacy)
    assert type(loaded) is type(sampler)
    assert repr(loaded) == repr(sampler)
    module = __import__(old, fromlist=["_"])
    assert module.__name__ == old.replace("zarrsample_core.", "zarrsample_core." + (
        "planning." if old.endswith("_sampler") else "sources."))
