"""The app's functions, found by trigger, and how the host invokes each the way the worker would."""

from __future__ import annotations

import asyncio
import atexit
import inspect
import threading
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
    client_arg: str | None = None  # its durableClient argument, if it starts orchestrations


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
            self.activities[trigger.get("activity") or name] = Activity(
                user_fn, trigger["name"], client_arg
            )
        elif kind in ("httpTrigger", "timerTrigger"):
            table = self.http if kind == "httpTrigger" else self.timers
            table[name] = ClientFunction(name, user_fn, trigger["name"], client_arg, trigger)


def call_activity(activity: Activity, input_text: str | None, client_binding: str) -> str:
    """Run an activity with its input decoded and its result encoded by the worker's converter
    (and the durable client binding, if it has that argument)."""
    value = ActivityTriggerConverter.decode(
        meta.Datum(value=input_text if input_text is not None else "null", type="json"),
        trigger_metadata=None,
    )
    kwargs = {activity.input_name: value}
    if activity.client_arg is not None:
        kwargs[activity.client_arg] = client_binding
    result = run_to_completion(activity.fn(**kwargs))
    encoded = ActivityTriggerConverter.encode(result, expected_type=None)
    return str(encoded.value)


def call_client_function(function: ClientFunction, trigger_value: Any, client_binding: str) -> Any:
    """Run an HTTP or timer function with its trigger argument and the durable client binding."""
    kwargs = {function.trigger_arg: trigger_value}
    if function.client_arg is not None:
        kwargs[function.client_arg] = client_binding
    return run_to_completion(function.fn(**kwargs))


def run_to_completion(result: Any) -> Any:
    """Finish an async function's coroutine on the host's one event loop; plain values pass
    through. Use it for DurableOrchestrationClient calls made outside a client function too."""
    if inspect.isawaitable(result):
        return _WORKER_LOOP.run(result)
    return result


class _WorkerLoop:
    """One event loop, on a thread of its own, for every async function the host runs, as the
    Python worker runs them all on its one loop (sync functions go to a thread pool):
    azure-functions-runtime, handle_event.py, `invocation_request`: an async function is
    awaited in place, a sync one goes to `_loop.run_in_executor(threadpool, ...)`.

    The SDK's DurableOrchestrationClient keeps one aiohttp session per process, bound to the
    loop that opened it: async activities running at once on loops of their own would use it
    from the wrong loop and hang."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def run(self, awaitable: Awaitable[Any]) -> Any:
        loop = self._started()
        if threading.current_thread() is self._thread:
            raise RuntimeError("an async function waited for another on the worker's loop")
        return asyncio.run_coroutine_threadsafe(_awaited(awaitable), loop).result()

    def _started(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                self._thread = threading.Thread(
                    target=loop.run_forever, name="worker-event-loop", daemon=True
                )
                self._thread.start()
                self._loop = loop
                atexit.register(self._close_client_session)
            return self._loop

    def _close_client_session(self) -> None:
        """Close the SDK's session on its loop when the process ends (aiohttp warns otherwise)."""
        if self._loop is not None:
            closing = http_utils._close_session()
            asyncio.run_coroutine_threadsafe(closing, self._loop).result(timeout=10)


async def _awaited(awaitable: Awaitable[Any]) -> Any:
    return await awaitable


_WORKER_LOOP = _WorkerLoop()
