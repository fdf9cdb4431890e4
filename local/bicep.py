"""Reads infra/*.bicep as pycep-parser's syntax trees (the Bicep compiler is not available here).

One reader for the infra tests and the ARM simulator (its authorization, the DR-test network it
seeds), so what the tests review is exactly what the simulator enforces.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pycep import BicepParser

INFRA = Path(__file__).resolve().parent.parent / "infra"
_INTERPOLATION = re.compile(r"\$\{(\w+)\}")  # '${name}' in a string


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


def evaluate(file: str, expression: Any, scope: Mapping[str, Any]) -> Any:
    """The value of an expression of one file, `scope` giving its parameters (and resources by
    symbolic name, as {"id": ...}): literals, arrays, objects, the file's `var`s, `'${name}'`
    interpolation, `c ? a : b`, `!x`, `a.b` and concat(). Anything else raises ValueError.

    pycep-parser gives a string literal and a name alike, so a string naming a parameter or a
    `var` is read as that name.
    """
    if isinstance(expression, list):
        return [evaluate(file, item, scope) for item in expression]
    if isinstance(expression, dict) and set(expression) == {"operator"}:
        return _operator(file, expression["operator"], scope)
    if isinstance(expression, dict) and set(expression) == {"function"}:
        return _function(file, expression["function"], scope)
    if isinstance(expression, dict):
        return {key: evaluate(file, value, scope) for key, value in expression.items()}
    if isinstance(expression, str):
        if expression in scope:
            return scope[expression]
        if expression in template(file).get("variables", {}):
            return evaluate(file, variable(file, expression), scope)
        return _INTERPOLATION.sub(lambda name: str(scope[name[1]]), expression)
    return expression


def _operator(file: str, operator: dict[str, Any], scope: Mapping[str, Any]) -> Any:
    operands = operator["operands"]
    if operator["type"] == "conditional":
        chosen = "true_value" if evaluate(file, operands["condition"], scope) else "false_value"
        return evaluate(file, operands[chosen], scope)
    if operator["type"] == "not":
        return not evaluate(file, operands["bool_value"], scope)
    if operator["type"] == "property_accessor":
        return evaluate(file, operands["operand_1"], scope)[operands["operand_2"]]
    raise ValueError(f"{file}: cannot evaluate the operator {operator['type']}")


def _function(file: str, function: dict[str, Any], scope: Mapping[str, Any]) -> Any:
    if function["type"] == "concat":
        values = [evaluate(file, arg, scope) for arg in function["parameters"].values()]
        return functools.reduce(lambda joined, value: joined + value, values)
    raise ValueError(f"{file}: cannot evaluate the function {function['type']}()")


def target_scope(file: str) -> str:
    """A file's `targetScope` ("resourceGroup" when it declares none, as Bicep defaults)."""
    return str(template(file).get("globals", {}).get("scope", {}).get("value", "resourceGroup"))
