"""The import contract of the package: imports flow one way (README, "Code layout").

Every ``import``/``from ... import`` of a drcnet module anywhere in ``src/drcnet`` (module level or
inside a function) is read with :mod:`ast` and checked against the layers below. A module may import
its own package and any package of a LOWER layer, never one of the same or a higher layer.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "drcnet"

# lowest first; a package may import only packages of lower layers (and itself)
LAYERS: list[set[str]] = [
    {"conventions", "paper"},
    {"provenance", "paths", "outputs", "notices"},
    {"instrument", "library"},
    {"reduce"},
    {"simulate"},
    {"data"},
    {"models", "calibration"},
    {"catalogue"},  # model outputs -> catalogue columns: used by inference, metrics and the exposure catalogue
    {"train", "inference", "metrics", "plots"},
    {"workflows"},
    {"api"},  # the public Python API (drcnet.load_model, ...): inference and the exposure workflow
    {"cli"},
    {"demo", "__main__"},
]
LAYER_OF = {name: i for i, names in enumerate(LAYERS) for name in names}
# entry points (run as scripts, imported by nobody) may import the CLI
ENTRY_POINTS = {"drcnet.__main__", "drcnet.demo"}


def _module_name(path: Path) -> str:
    rel = path.relative_to(SRC.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _drcnet_imports(path: Path) -> list[tuple[int, str]]:
    """(line, imported drcnet module) for every import statement in ``path``."""
    tree = ast.parse(path.read_text(), filename=str(path))
    me = _module_name(path)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    out: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names if a.name.split(".")[0] == "drcnet"]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative import
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            if mod.split(".")[0] == "drcnet":
                if mod == "drcnet":  # ``from drcnet import x``: x is a module or a name of drcnet/__init__
                    out += [(node.lineno, f"drcnet.{a.name}" if (SRC / a.name).exists() or (SRC / f"{a.name}.py").exists()
                             else "drcnet") for a in node.names]
                else:
                    out.append((node.lineno, mod))
    return out


def _top(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _all_modules() -> list[Path]:
    return sorted(p for p in SRC.rglob("*.py") if "pretrained" not in p.parts)


def test_every_package_has_a_layer():
    tops = {_top(_module_name(p)) for p in _all_modules()} - {""}
    assert tops <= set(LAYER_OF), f"packages without a layer in this test: {sorted(tops - set(LAYER_OF))}"


def test_imports_flow_downwards_only():
    bad = []
    for path in _all_modules():
        me = _module_name(path)
        my_top = _top(me)
        if not my_top:
            continue  # drcnet/__init__.py re-exports the version and CLASSES only (checked below)
        for line, target in _drcnet_imports(path):
            other = _top(target)
            if other in ("", my_top):
                continue
            if me in ENTRY_POINTS and other == "cli":
                continue
            if LAYER_OF[other] >= LAYER_OF[my_top]:
                bad.append(f"{path.relative_to(SRC)}:{line} ({my_top}, layer {LAYER_OF[my_top]}) imports {target} "
                           f"(layer {LAYER_OF[other]})")
    assert not bad, "imports that flow upwards or sideways:\n" + "\n".join(bad)


def test_package_root_imports_only_conventions_and_the_api_lazily():
    """``import drcnet`` loads the conventions alone; the API (torch) only inside ``__getattr__``."""
    tree = ast.parse((SRC / "__init__.py").read_text())
    top = {n.module for n in tree.body if isinstance(n, ast.ImportFrom) and (n.module or "").startswith("drcnet")}
    assert top == {"drcnet.conventions"}
    targets = {t for _, t in _drcnet_imports(SRC / "__init__.py")}
    assert targets == {"drcnet.conventions", "drcnet.api"}


@pytest.mark.parametrize("package, forbidden, allowed", [
    # the instrument's numbers (pydantic configs) may be passed around; its file I/O may not be reached
    ("reduce", ("drcnet.simulate", "drcnet.instrument", "drcnet.library", "drcnet.workflows", "drcnet.data"),
     ("drcnet.instrument.config",)),
    ("models", ("drcnet.data", "drcnet.train", "drcnet.simulate", "drcnet.reduce", "drcnet.instrument"), ()),
])
def test_named_contracts(package, forbidden, allowed):
    """reduce/ reads no files through the adapter and never calls the simulator; models/ imports nothing above it."""
    bad = [f"{p.relative_to(SRC)}:{line} imports {t}" for p in (SRC / package).rglob("*.py")
           for line, t in _drcnet_imports(p) if t.startswith(forbidden) and t not in allowed]
    assert not bad, "\n".join(bad)


def test_nobody_imports_the_cli():
    bad = [f"{p.relative_to(SRC)}:{line}" for p in _all_modules() if _top(_module_name(p)) != "cli"
           and _module_name(p) not in ENTRY_POINTS for line, t in _drcnet_imports(p) if _top(t) == "cli"]
    assert not bad, f"modules importing drcnet.cli: {bad}"


def test_the_checker_sees_a_violation(tmp_path):
    """The AST reader finds module-level, function-level and relative imports (so the contract can fail)."""
    pkg = SRC / "reduce"
    fake = pkg / "_contract_probe_tmp.py"
    fake.write_text("from drcnet.simulate import render\n\ndef f():\n    from ..workflows import qa\n    import drcnet.cli\n")
    try:
        found = [t for _, t in _drcnet_imports(fake)]
    finally:
        fake.unlink()
    assert found == ["drcnet.simulate", "drcnet.workflows", "drcnet.cli"]
