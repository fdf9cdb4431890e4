"""What the orchestrations share: retries, waiting on Azure, and bounded fan-out.

Waiting uses durable timers between reads, never a sleep. The first wait is Azure's hint
(Retry-After or the operation's expected duration); later waits follow the step's own estimate
(`poll_after` in its result) or double, up to a cap, so a slow copy costs a bounded number of
history events.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Generator, Sequence
from datetime import timedelta
from typing import Any, TypeVar

import azure.durable_functions as df
from azure.durable_functions.models.Task import TaskState

MIN_WAIT_SECONDS = 5.0
MAX_WAIT_SECONDS = 900.0
# Activities retry transient Azure errors (5xx, 429, timeouts) with a growing pause.
RETRY = df.RetryOptions(first_retry_interval_in_milliseconds=10_000, max_number_of_attempts=4)

Payload = dict[str, Any]
Context = Any  # df.DurableOrchestrationContext; the SDK ships no type information
T = TypeVar("T")


def poll(
    context: Context,
    activity: str,
    payload: Payload,
    *,
    first_wait: float,
    timeout: timedelta,
    done: Callable[[Payload], bool],
) -> Generator[Any, Any, Payload | None]:
    """Call `activity` after growing waits until `done(result)`; None once `timeout` passes."""
    deadline = context.current_utc_datetime + timeout
    wait = min(max(first_wait, MIN_WAIT_SECONDS), MAX_WAIT_SECONDS)
    while True:
        fire_at = min(context.current_utc_datetime + timedelta(seconds=wait), deadline)
        yield context.create_timer(fire_at)
        result: Payload = yield context.call_activity_with_retry(activity, RETRY, payload)
        if done(result):
            return result
        if context.current_utc_datetime >= deadline:
            return None
        hint = float(result.get("poll_after") or 0)
        wait = min(max(hint, MIN_WAIT_SECONDS) if hint else wait * 2, MAX_WAIT_SECONDS)


def fan_out(
    context: Context,
    orchestrator: str,
    items: Sequence[Payload],
    instance_id: Callable[[Payload], str],
    batch_size: int,
    results: list[Payload] | None = None,
) -> Generator[Any, Any, Payload]:
    """Run a sub-orchestration per item, `batch_size` at a time, and count outcomes per item.

    `instance_id` must never name a running instance: Azure Storage does not deduplicate
    sub-orchestrations, and a start on a running id replaces that instance and leaves its
    parent waiting forever. So callers make ids unique to the run or to a claim, and whether
    the work is already under way is decided before (from the catalog's claims), never by the
    engine. One failed child counts as failed; its siblings' outcomes stand. `results`, when
    given, receives each child's output in item order (a failed child: its state and error).
    """
    counts: Counter[str] = Counter()
    size = max(batch_size, 1)
    for start in range(0, len(items), size):
        context.set_custom_status({"done": start, "total": len(items)})
        tasks = [
            context.call_sub_orchestrator(orchestrator, item, instance_id(item))
            for item in items[start : start + size]
        ]
        try:
            yield context.task_all(tasks)
        except Exception:
            # The SDK resumes at the first failure; a timer due now lets it read the siblings'
            # outcomes (the extension resumes task_all only once every child has finished).
            yield context.create_timer(context.current_utc_datetime)
        counts.update(_outcome(task) for task in tasks)
        if results is not None:
            results.extend(_result(task) for task in tasks)
    return {"total": len(items), **{state: counts[state] for state in sorted(counts)}}


def _outcome(task: Any) -> str:
    if task.state is TaskState.SUCCEEDED and isinstance(task.result, dict):
        return str(task.result.get("state") or "completed")
    return "failed"


def _result(task: Any) -> Payload:
    if task.state is TaskState.SUCCEEDED and isinstance(task.result, dict):
        return dict(task.result)
    if task.state is TaskState.SUCCEEDED:
        return {"state": "completed", "result": task.result}
    error = task.result if isinstance(task.result, Exception) else Exception(str(task.result))
    return {"state": "failed", "error": failure_text(error)}


# The extension's wrappers, one per level the failure crossed (an activity in a sub-orchestration
# gets two), and the worker's `Type: ` before an app error that already names its class: the
# Python worker reports an activity's exception as `f"{type(exc).__name__}: {exc}"`
# (Azure/azure-functions-python-worker, azure_functions_worker/dispatcher.py,
# `Dispatcher._serialize_exception`), and a `BackupDrError`'s text starts with its class name.
_WRAPPERS = re.compile(r"^\s*(?:(?:Activity|Orchestrator) function '[^']*' failed:\s*)+")
_REPEATED_TYPE = re.compile(r"^(\w+): (?=\1: )")


def failure_text(error: Exception) -> str:
    """The first line of a failed task's reason, without the durable framework's prefix."""
    return failure_reason(str(error)) or type(error).__name__


def failure_reason(text: str) -> str:
    """A failure's first line as people read it: no framework wrapper, one `Type: ` prefix."""
    first = next((line for line in text.splitlines() if line.strip()), "")
    return _REPEATED_TYPE.sub("", _WRAPPERS.sub("", first).strip())[:500]
