"""The Functions Python worker's own indexing accepts every function the app registers.

Before it loads an app, the worker checks each bound parameter's annotation and refuses a PEP 585
generic such as `dict[str, Any]`; one refused function fails the whole app (issue 10). These
tests run the worker's code itself, from the pinned azure-functions-runtime package (the Makefile
installs it), rather than a copy of its rules: the binding registry is loaded as the worker loads
it at init, `loader.index_function_app` imports the app module as the worker does, and
`Registry.add_indexed_function` validates each function.
"""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from azure_functions_runtime import loader  # type: ignore[import-untyped]
from azure_functions_runtime.bindings import meta  # type: ignore[import-untyped]
from azure_functions_runtime.functions import (  # type: ignore[import-untyped]
    FunctionLoadError,
    Registry,
)

ROOT = Path(__file__).resolve().parents[2]

# The worker is handed the host's generated gRPC messages as `protos`; indexing reads only
# BindingInfo's enum numbers from them (Direction: in 0, out 1, inout 2; DataType: undefined 0),
# which the SDK's bindings report as the same integers.
PROTOS = SimpleNamespace(
    BindingInfo=SimpleNamespace(**{"in": 0, "out": 1, "inout": 2, "undefined": 0}),
)


@pytest.fixture(autouse=True)
def worker_binding_registry() -> None:
    """The worker loads the app's azure.functions binding registry before it indexes."""
    meta.load_binding_registry()


def load(indexed: list[Any]) -> tuple[list[str], list[str]]:
    """Each indexed function added to a fresh worker Registry: the names it loaded, and its
    refusals in its own words."""
    registry = Registry()
    loaded, refused = [], []
    for function in indexed:
        try:
            loaded.append(registry.add_indexed_function(function=function, protos=PROTOS).name)
        except FunctionLoadError as error:
            refused.append(str(error))
    return loaded, refused


def trigger_type(function: Any) -> str:
    return next(str(b.type) for b in function.get_bindings() if str(b.type).endswith("Trigger"))


def test_the_worker_indexes_every_function_the_app_registers_and_refuses_none(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The worker imports function_app.py afresh in its own process; so does this test.
    monkeypatch.delitem(sys.modules, "function_app", raising=False)
    indexed = loader.index_function_app(str(ROOT / "function_app.py"))

    from function_app import build_app

    registered = [f.get_function_name() for f in build_app().get_functions()]
    loaded, refused = load(indexed)

    assert refused == []
    assert len(indexed) == len(registered)
    assert sorted(loaded) == sorted(registered)
    # Every kind of function the app has went through the check, activities included.
    assert {trigger_type(f) for f in indexed} == {
        "activityTrigger",
        "orchestrationTrigger",
        "httpTrigger",
        "timerTrigger",
    }


def tiny_app(directory: Path, module: str, annotation: str) -> str:
    """A function_app-style module whose one activity's bound parameter has `annotation`."""
    path = directory / f"{module}.py"
    path.write_text(
        textwrap.dedent(
            f"""
            import typing
            from typing import Any

            import azure.durable_functions as df

            bp = df.Blueprint()


            @bp.activity_trigger(input_name="payload")
            def echo(payload: {annotation}) -> {annotation}:
                return payload


            app = df.DFApp()
            app.register_functions(bp)
            """
        )
    )
    return str(path)


def test_the_worker_refuses_an_activity_annotated_with_a_pep_585_dict(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(tmp_path))
    indexed = loader.index_function_app(tiny_app(tmp_path, "pep585_app", "dict[str, Any]"))

    loaded, refused = load(indexed)

    assert loaded == []
    assert refused == [
        "cannot load the echo function: "
        "binding payload has invalid non-type annotation dict[str, typing.Any]"
    ]


def test_the_worker_accepts_the_same_activity_annotated_with_typing_dict(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(tmp_path))
    indexed = loader.index_function_app(
        tiny_app(tmp_path, "typing_dict_app", "typing.Dict[str, Any]")
    )

    loaded, refused = load(indexed)

    assert refused == []
    assert loaded == ["echo"]
