"""The README's module table names every module of the packages a newcomer changes, so it cannot drift."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("orchestrator", "analysis", "jobs", "cluster", "benchmarks")


def defines_something(path: Path) -> bool:
    """False for a package marker: an ``__init__.py`` holding only its docstring and plain assignments."""
    tree = ast.parse(path.read_text())
    return any(isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) for node in tree.body)


def modules() -> list[str]:
    """Every module under the packages, as a repository path (``orchestrator/datasets/folds.py``)."""
    found = []
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            if "__pycache__" in path.parts or (path.name == "__init__.py" and not defines_something(path)):
                continue
            found.append(path.relative_to(REPO).as_posix())
    return found


def test_readme_names_every_module():
    found = modules()
    assert len(found) > 60 and "orchestrator/datasets/__init__.py" in found  # the walk sees the packages
    readme = (REPO / "README.md").read_text()
    missing = [module for module in found if f"`{module}`" not in readme]
    assert missing == [], f"add these to the README's module table: {missing}"
