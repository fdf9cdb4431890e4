"""Reads infra/*.bicep as pycep-parser's syntax trees (the Bicep compiler is not available here).

One reader for the role allow-list test and the ARM simulator's authorization, so the grants the
test reviews are exactly the grants the simulator enforces.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pycep import BicepParser

INFRA = Path(__file__).resolve().parent.parent / "infra"


@functools.cache
def template(file: str) -> dict[str, Any]:
    """One file's syntax tree, by its path under infra/ ("main.bicep", "app/roles.bicep")."""
    return dict(_parser().parse(file_path=INFRA / file))


@functools.cache
def _parser() -> BicepParser:
    """One parser for every file: building its grammar takes a second."""
    # pycep-parser is a dev dependency: only the simulator and the tests read Bicep, so the CLI
    # against real Azure must not need it at import time.
    from pycep import BicepParser

    return BicepParser(cache=False)


def files() -> list[str]:
    """Every .bicep file under infra/, as paths relative to it."""
    return sorted(path.relative_to(INFRA).as_posix() for path in INFRA.rglob("*.bicep"))


def resources(of_type: str) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(file, symbolic name, config) of every resource of one type, loops unwrapped."""
    for file in files():
        for name, resource in template(file).get("resources", {}).items():
            if resource["type"] == of_type:
                yield file, name, unwrap(resource["config"])


def unwrap(config: dict[str, Any]) -> dict[str, Any]:
    """The body of a `for` loop (or the config itself when there is none)."""
    inner = config.get("config")
    return unwrap(inner) if "loop_type" in config and isinstance(inner, dict) else config


def accessor(expression: Any) -> list[str]:
    """`a.b.c` as ["a", "b", "c"]; `a[i].b` as ["a", "b"]; a plain name as [name]."""
    if isinstance(expression, str):
        return [expression]
    operator = expression["operator"]
    if operator["type"] not in {"property_accessor", "index_accessor"}:
        raise ValueError(f"not a property or index accessor: {expression}")
    operands = operator["operands"]
    head = accessor(operands["operand_1"])
    return head if operator["type"] == "index_accessor" else head + accessor(operands["operand_2"])


def variable(file: str, name: str) -> Any:
    """The value of a `var` in one file."""
    return template(file).get("variables", {})[name]["value"]


def target_scope(file: str) -> str:
    """A file's `targetScope` ("resourceGroup" when it declares none, as Bicep defaults)."""
    return str(template(file).get("globals", {}).get("scope", {}).get("value", "resourceGroup"))
