"""The app's functions, found by trigger, and how the host invokes each the way the worker would."""

from __future__ import annotations

import asyncio
import inspect
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from azure.durable_functions.models.utils import http_utils
from azure.functions import meta
from azure.functions.durable_functions import ActivityTriggerConverter

# DFApp.get_functions() refuses a second call on the same app (it re-validates names against the
# ones it already indexed), so the index is read once per app and kept here.
_INDEX: weakref.WeakKeyDictionary[Any, list[Any]] = weakref.WeakKeyDictionary()


@dataclass(frozen=True)
class Activity:
    fn: Callable[..., Any]
    input_name: str


@dataclass(frozen=True)
class ClientFunction:
    """An HTTP or timer function: its trigger argument, its durableClient argument and trigger
    settings (route and methods, or schedule)."""

    name: str
    fn: Callable[..., Any]
    trigger_arg: str
    client_arg: str | None
    settings: dict[str, Any]


class AppFunctions:
    """A DFApp's orchestrators, activities, HTTP functions and timer functions by name."""

    def __init__(self, app: Any) -> None:
        if app not in _INDEX:
            _INDEX[app] = list(app.get_functions())
        self.orchestrators: dict[str, Callable[[str], str]] = {}
        self.activities: dict[str, Activity] = {}
        self.http: dict[str, ClientFunction] = {}
        self.timers: dict[str, ClientFunction] = {}
        for function in _INDEX[app]:
            self._add(function)

    def _add(self, function: Any) -> None:
        name: str = function.get_function_name()
        bindings = [binding.get_dict_repr() for binding in function.get_bindings()]
        trigger = next(b for b in bindings if str(b["type"]).endswith("Trigger"))
        client_arg = next((b["name"] for b in bindings if b["type"] == "durableClient"), None)
        user_fn = function.get_user_function()
        kind = trigger["type"]
        if kind == "orchestrationTrigger":
            self.orchestrators[trigger.get("orchestration") or name] = user_fn
        elif kind == "activityTrigger":
            self.activities[trigger.get("activity") or name] = Activity(user_fn, trigger["name"])
        elif kind in ("httpTrigger", "timerTrigger"):
            table = self.http if kind == "httpTrigger" else self.timers
            table[name] = ClientFunction(name, user_fn, trigger["name"], client_arg, trigger)


def call_activity(activity: Activity, input_text: str | None) -> str:
    """Run an activity with its input decoded and its result encoded by the worker's converter."""
    value = ActivityTriggerConverter.decode(
        meta.Datum(value=input_text if input_text is not None else "null", type="json"),
        trigger_metadata=None,
    )
    result = run_to_completion(activity.fn(**{activity.input_name: value}))
    encoded = ActivityTriggerConverter.encode(result, expected_type=None)
    return str(encoded.value)


def call_client_function(function: ClientFunction, trigger_value: Any, client_binding: str) -> Any:
    """Run an HTTP or timer function with its trigger argument and the durable client binding."""
    kwargs = {function.trigger_arg: trigger_value}
    if function.client_arg is not None:
        kwargs[function.client_arg] = client_binding
    return run_to_completion(function.fn(**kwargs))


def run_to_completion(result: Any) -> Any:
    """Finish an async function's coroutine on a fresh event loop; plain values pass through.

    Use it for DurableOrchestrationClient calls made outside a client function too: it closes the
    SDK's shared HTTP session before the loop ends, which a bare `asyncio.run` would leave broken
    for the next call."""
    if inspect.isawaitable(result):
        return asyncio.run(_closing_client_session(result))
    return result


async def _closing_client_session(awaitable: Awaitable[Any]) -> Any:
    # The SDK's DurableOrchestrationClient keeps one aiohttp session per process, bound to the
    # event loop that opened it; close it before this loop ends so the next call opens its own.
    try:
        return await awaitable
    finally:
        await http_utils._close_session()
