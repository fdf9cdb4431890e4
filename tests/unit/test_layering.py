"""Dependencies point down: nothing under shared/ imports local/, cli/ or function_app.

Production deploys shared/ without local/ and cli/, so one such import would break the app in
Azure. The scan reads every module's syntax tree, so imports inside functions count too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN = ("local", "cli", "function_app")


def forbidden_imports(source: str, filename: str = "<source>") -> list[str]:
    """Top-level packages of FORBIDDEN that the module imports, as 'line N: module'."""
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        found += [f"line {node.lineno}: {n}" for n in names if n.split(".")[0] in FORBIDDEN]
    return found


def shared_modules() -> list[Path]:
    return sorted((ROOT / "shared").rglob("*.py"))


def test_shared_has_modules_to_scan() -> None:
    assert (ROOT / "shared" / "ports.py") in shared_modules()


@pytest.mark.parametrize(
    "path", shared_modules(), ids=lambda p: str(p.relative_to(ROOT / "shared"))
)
def test_shared_module_imports_nothing_from_local_cli_or_function_app(path: Path) -> None:
    assert forbidden_imports(path.read_text(encoding="utf-8"), str(path)) == []


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        pytest.param("import local.armsim\n", ["line 1: local.armsim"], id="import local"),
        pytest.param("from cli.main import app\n", ["line 1: cli.main"], id="from cli"),
        pytest.param(
            "def f():\n    import function_app\n", ["line 2: function_app"], id="inside a function"
        ),
        pytest.param("import localisation\nfrom shared import clock\n", [], id="lookalikes pass"),
        pytest.param("from .local import x\n", [], id="relative import of a sibling passes"),
    ],
)
def test_scan_finds_forbidden_imports(source: str, expected: list[str]) -> None:
    assert forbidden_imports(source) == expected
