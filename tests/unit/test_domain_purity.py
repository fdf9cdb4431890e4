"""The domain stays pure: no Azure SDK, no clock reads (time is always passed in)."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

DOMAIN = Path(__file__).parents[2] / "shared" / "domain"
MODULES = sorted(DOMAIN.glob("*.py"))
CLOCK_CALLS = {"now", "utcnow", "today", "time", "monotonic", "perf_counter"}
ALLOWED_ROOTS = {"__future__", "shared", "croniter"}


def _imports(tree: ast.AST) -> set[str]:
    roots = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


def test_the_domain_has_modules_to_check() -> None:
    assert {p.stem for p in MODULES} >= {"policy", "schedule", "tiers", "retention", "names"}


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.name)
def test_domain_module_imports_only_stdlib_and_croniter(path: Path) -> None:
    roots = _imports(ast.parse(path.read_text()))
    foreign = {r for r in roots if r not in ALLOWED_ROOTS and r not in sys.stdlib_module_names}
    assert not foreign, f"{path.name} imports {sorted(foreign)}"
    assert "azure" not in roots
    assert "time" not in roots, f"{path.name} imports time: pass time in instead"


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.name)
def test_domain_module_never_reads_the_clock(path: Path) -> None:
    calls = [
        node.func.attr
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr in CLOCK_CALLS
    ]
    assert not calls, f"{path.name} calls {calls}"


def test_domain_modules_import_nothing_outside_the_domain() -> None:
    for path in MODULES:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("shared."):
                assert (node.module or "").startswith("shared.domain"), (
                    f"{path.name}: {node.module}"
                )
