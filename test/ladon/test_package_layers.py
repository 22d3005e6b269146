"""Layers inside ``ladon``, read from the real imports (AST, function-level imports included): data sets below
training and evaluation, and evaluation independent of training.

    ladon.datasets     imports neither ladon.train nor ladon.evaluation
    ladon.evaluation   does not import ladon.train
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

LADON = Path(__file__).resolve().parents[2] / "ladon"
FORBIDDEN = {"datasets": ("ladon.train", "ladon.evaluation"), "evaluation": ("ladon.train",)}


def imported_modules(path: Path) -> set[str]:
    """Absolute names of the modules imported by the ``ladon`` module at ``path`` (relative imports resolved)."""
    parts = path.relative_to(LADON.parent).with_suffix("").parts
    package = parts[:-1]  # the package of a module, or the package itself for its __init__.py
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = list(package[: len(package) - node.level + 1]) if node.level else []
            prefix = ".".join(base + ([node.module] if node.module else []))
            found.add(prefix)
            found.update(f"{prefix}.{alias.name}" for alias in node.names)
    return found


@pytest.mark.parametrize("subpackage", sorted(FORBIDDEN))
def test_subpackage_does_not_import_the_layers_above_it(subpackage: str) -> None:
    wrong = [f"{path.relative_to(LADON.parent)} imports {name}"
             for path in sorted((LADON / subpackage).rglob("*.py")) for name in sorted(imported_modules(path))
             if any(name == f or name.startswith(f + ".") for f in FORBIDDEN[subpackage])]
    assert not wrong, "\n".join(wrong)


def test_the_import_reader_resolves_relative_imports() -> None:
    names = imported_modules(LADON / "evaluation" / "predictors.py")
    assert {"ladon.teacher", "ladon.evaluation.config", "ladon.heads.top_k_classes"} <= names
    assert "ladon.train.pipeline" in imported_modules(LADON / "train" / "__init__.py")
