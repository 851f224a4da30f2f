"""Benchmarks and scripts import only what the package still has (they are not imported by the tests)."""

from __future__ import annotations

import ast
import importlib
import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = sorted(p for d in ("benchmarks", "scripts") for p in (ROOT / d).rglob("*.py"))


def _drcnet_imports(tree: ast.AST) -> list[tuple[str, str, int]]:
    """(module, name, line) of every ``from drcnet... import name`` outside an ``except ImportError`` fallback."""
    fallback: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ExceptHandler) and "ImportError" in ast.unparse(node.type or ast.Name("")):
            fallback.update(id(n) for n in ast.walk(node))
    return [
        (node.module, alias.name, node.lineno)
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("drcnet") and id(node) not in fallback
        for alias in node.names
    ]


def test_the_scan_sees_a_removed_module_and_skips_a_fallback() -> None:
    tree = ast.parse(
        "from drcnet.predict import predict_arrays\n"
        "try:\n    from drcnet.x import y\nexcept ImportError:\n    from drcnet.old import z\n"
    )
    assert _drcnet_imports(tree) == [("drcnet.predict", "predict_arrays", 1), ("drcnet.x", "y", 3)]


@pytest.mark.parametrize("path", SCRIPTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_drcnet_import_of_a_script_resolves(path: Path) -> None:
    for module, name, line in _drcnet_imports(ast.parse(path.read_text())):
        try:
            mod = importlib.import_module(module)
        except ImportError as err:
            pytest.fail(f"{path.name}:{line}: {module} is gone ({err})")
        assert hasattr(mod, name) or importlib.util.find_spec(f"{module}.{name}") is not None, (
            f"{path.name}:{line}: {module} has no {name}"
        )
