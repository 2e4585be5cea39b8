"""The package layers only point down, and only the edges read configuration.

cli → serve → api → workers → pipelines (use cases) → jobs (runner) → ingest / evaluation →
retrieval / models / catalog → config → errors.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "embplat"

#: A package may import only packages of a lower rank (never one of its own rank).
RANK = {
    "errors": 0,
    "progress": 0,
    "lazy": 0,
    "config": 1,
    "catalog": 2,
    "models": 2,
    "retrieval": 2,
    "evaluation": 3,
    "ingest": 3,
    "jobs": 4,
    "pipelines": 5,
    "workers": 6,
    "api": 7,
    "serve": 8,
    "cli": 9,
    "__main__": 10,
    "__init__": 10,
}

#: Leaf modules (declarations importing nothing of the project's) any layer may import.
LEAVES = {"embplat.retrieval.backends"}

#: Where Settings and the environment may be read.
CONFIG_READERS = ("cli/", "workers/", "api/", "config.py", "catalog/migrations/env.py")


def _modules() -> list[tuple[str, Path, ast.Module]]:
    out = []
    for file in sorted(SRC.rglob("*.py")):
        rel = file.relative_to(SRC).as_posix()
        out.append((rel, file, ast.parse(file.read_text(encoding="utf-8"))))
    return out


def _package(rel: str) -> str:
    return rel.split("/")[0].removesuffix(".py")


def _imports(tree: ast.Module) -> list[tuple[str, int]]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        found += [(n, node.lineno) for n in names if n.startswith("embplat.")]
    return found


def test_every_package_has_a_rank():
    packages = {_package(rel) for rel, _, _ in _modules()}
    assert packages <= set(RANK), f"give {sorted(packages - set(RANK))} a rank in this test"


@pytest.mark.parametrize("rel,file,tree", _modules(), ids=lambda v: v if isinstance(v, str) else "")
def test_imports_only_point_down(rel, file, tree):
    own = _package(rel)
    wrong = [
        f"{rel}:{line} imports {name}"
        for name, line in _imports(tree)
        if (target := name.split(".")[1]) != own
        and name not in LEAVES
        and RANK[target] >= RANK[own]
    ]
    assert not wrong, "\n".join(wrong)


def test_leaves_import_nothing_of_the_project():
    for leaf in LEAVES:
        file = SRC.joinpath(*leaf.split(".")[1:]).with_suffix(".py")
        imported = [n for n, _ in _imports(ast.parse(file.read_text(encoding="utf-8")))]
        assert not imported, f"{leaf} must stay a leaf: it imports {imported}"


def test_only_the_edges_read_settings_or_the_environment():
    readers = []
    for rel, _, tree in _modules():
        if rel.startswith(CONFIG_READERS):
            continue
        for node in ast.walk(tree):
            name = node.attr if isinstance(node, ast.Attribute) else getattr(node, "id", None)
            if name in {"load_settings", "Settings", "environ", "getenv"}:
                readers.append(f"{rel}:{node.lineno} uses {name}")
    assert not readers, "\n".join(readers)
