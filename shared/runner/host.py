"""The local durable host: runs a DFApp's orchestrations without the Functions host.

It plays the Durable extension's part on Azure Storage, and is as strict as it:
- An episode takes every event waiting for the instance (DTFx dequeues them as one batch), but the
  orchestrator runs only once the task its last `yield` awaits is done: the extension's
  out-of-process shim awaits it (`Task.WhenAll` for task_all, the whole retry loop for a
  `*_with_retry` call), so it never sees a task_all with some children still running. The other
  episodes are the engine's own (completions, retry timers), recorded in the history as DTFx does.
- A call to an activity or orchestrator the app does not have fails the whole orchestration
  (the extension's `ThrowIfFunctionDoesNotExist`), not just the task.
- Only client starts are deduplicated: a sub-orchestration started with the id of a running
  instance replaces it with a new execution, and the replaced one's parent is never told
  (DurableTask.AzureStorage `OrchestrationSessionManager`: "de-duplication when creating
  top-level orchestrations but not for sub-orchestrations").
- The timer after a retry's final failed attempt is due at once (DurableTask.Core
  `RetryInterceptor`); the SDK's RetryAbleTask waits for it before it fails the task.
- `continue_as_new` starts the instance's next execution under the same id: a fresh history and
  the new input; the outcome of anything the old execution started and never heard back from
  (say, the loser of a task_any) is dropped, as DurableTask.AzureStorage drops messages addressed
  to an earlier execution.
- A custom status over 16 KB fails the orchestration (the extension's
  `DurableOrchestrationContext.SetCustomStatus`).
- An activity past host.json's `functionTimeout` fails with the Functions host's timeout message,
  and, as the worker process restarts, every other activity then running is delivered again.
- `at_least_once=True` runs every activity a second time after it succeeded (queue messages are
  delivered at least once), so tests can show that activities converge.
Task ids follow the SDK's sequence numbers, including the backoff timers and re-scheduled attempts
of retries.

Nothing runs in the background: `run_until_idle` and `run_timers` drive the work, so tests and the
CLI decide when virtual time moves.
"""

from __future__ import annotations

import heapq
import itertools
import json
import os
import re
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

import azure.functions as func
from azure.durable_functions.models.actions.ActionType import ActionType
from azure.durable_functions.models.history.HistoryEventType import HistoryEventType as Kind

from shared.clock import SettableClock

from . import actions as act
from . import history as h
from .client_endpoint import ClientEndpoint
from .errors import (
    InstanceExistsError,
    InstanceGoneError,
    InstanceNotFoundError,
    UnknownFunctionError,
)
from .functions import AppFunctions, call_activity, call_client_function
from .instances import ACTIVE, Call, Instance, InstanceSizes, InstanceStatus
from .timers import TimerSchedule, resolve_setting

# Azure Storage's limits, sent as the extension does; longer timers are split by the SDK.
_TIMER_LIMITS = {
    "maximumShortTimerDuration": "6.00:00:00",
    "longRunningTimerIntervalDuration": "3.00:00:00",
}
_INVALID_ID = re.compile(r"^@|[/\\#?\x00-\x1f\x7f]")
# {name}, {name:constraint}, {name?}, {*rest}: the route template parameters Functions accepts.
_ROUTE_PARAM = re.compile(r"\{\*?(\w+)(?::[^}?]+)?(\?)?\}")
_TIMESPAN = re.compile(r"(?:(\d+)\.)?(\d+):(\d+):(\d+(?:\.\d+)?)")
_RETRYING = {ActionType.CALL_ACTIVITY_WITH_RETRY, ActionType.CALL_SUB_ORCHESTRATOR_WITH_RETRY}
_ACTIVITIES = {ActionType.CALL_ACTIVITY, ActionType.CALL_ACTIVITY_WITH_RETRY}
_SUB_ORCHESTRATORS = {
    ActionType.CALL_SUB_ORCHESTRATOR,
    ActionType.CALL_SUB_ORCHESTRATOR_WITH_RETRY,
}
_COMPLETIONS = {Kind.TASK_COMPLETED, Kind.SUB_ORCHESTRATION_INSTANCE_COMPLETED}
_FAILURES = {Kind.TASK_FAILED, Kind.SUB_ORCHESTRATION_INSTANCE_FAILED}
MAX_CUSTOM_STATUS_BYTES = 16 * 1024


class _Missing(Exception):
    """An activity that a redeploy removed while a call to it was under way."""


@dataclass
class _ActivityRun:
    """An activity invocation in the pool; the host forgets it when it times out or is killed."""

    inst: Instance
    task_id: int
    call: Call
    started: float  # time.monotonic(): functionTimeout is wall-clock time


class LocalDurableHost:
    """Runs a DFApp's orchestrators, activities, HTTP and timer functions on a given clock."""

    def __init__(
        self,
        app: Any,
        clock: SettableClock,
        *,
        host_json: Path | None = None,
        settings: Mapping[str, str] | None = None,
        function_timeout: timedelta | None = None,
        at_least_once: bool = False,
    ) -> None:
        h.read_stamps_quickly()
        self._clock = clock
        self._settings = dict(settings or {})
        self._functions = AppFunctions(app)
        document = _host_document(host_json)
        durable: dict[str, Any] = document.get("extensions", {}).get("durableTask", {})
        self.function_timeout = function_timeout or _timespan(document.get("functionTimeout"))
        self.at_least_once = at_least_once
        self.hub_name = resolve_setting(
            str(durable.get("hubName", "TestHubName")), self._settings, "host.json hubName"
        )
        self.max_activities = int(
            durable.get("maxConcurrentActivityFunctions", 10 * (os.cpu_count() or 1))
        )
        self._schedules = [
            TimerSchedule(function, self._settings) for function in self._functions.timers.values()
        ]
        self._lock = threading.Condition()
        self._instances: dict[str, Instance] = {}
        self._ready: deque[Instance] = deque()
        self._timers: list[tuple[datetime, int, int, Instance]] = []
        self._sequence = itertools.count()
        self._running: dict[int, _ActivityRun] = {}
        self._run_ids = itertools.count()
        self.replaced: list[str] = []  # running instances a sub-orchestration start replaced
        self._pool: ThreadPoolExecutor | None = None
        self._endpoint: ClientEndpoint | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def __enter__(self) -> LocalDurableHost:
        self._pool = ThreadPoolExecutor(self.max_activities, thread_name_prefix="activity")
        self._endpoint = ClientEndpoint(self)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._endpoint is not None:
            self._endpoint.close()
        if self._pool is not None:
            self._pool.shutdown(wait=True)
        self._endpoint, self._pool = None, None

    # -- the client's operations -------------------------------------------------------------

    def start(self, name: str, input: Any = None, instance_id: str | None = None) -> str:
        """Create an instance of orchestrator `name`; it runs when the host is driven."""
        if name not in self._functions.orchestrators:
            raise UnknownFunctionError(
                f"The function '{name}' doesn't exist, is disabled, or is not an orchestrator "
                "function."
            )
        if instance_id is not None and _INVALID_ID.search(instance_id):
            raise ValueError(
                f"instance id {instance_id!r} must not start with @ or contain /, \\, #, ? "
                "or control characters"
            )
        input_text = None if input is None else json.dumps(input)
        with self._lock:
            iid = instance_id or uuid.uuid4().hex
            existing = self._instances.get(iid)
            if existing is not None and existing.status in ACTIVE:
                raise InstanceExistsError(
                    f"An Orchestration instance with the status {existing.status} already exists."
                )
            self._create(name, iid, input_text)
            return iid

    def status(self, instance_id: str) -> InstanceStatus:
        with self._lock:
            return self._get(instance_id).snapshot()

    def history(self, instance_id: str) -> list[h.Event]:
        """The instance's history events as the orchestrator last saw them (for diagnosis)."""
        with self._lock:
            return h.played(self._get(instance_id).history)

    def sizes(self, instance_id: str) -> InstanceSizes:
        """How much JSON the instance holds in the task hub (input, output, status, history)."""
        with self._lock:
            return self._get(instance_id).sizes()

    def redeploy(self, app: Any) -> None:
        """Swap in new code, as a deployment does: in-flight instances replay against it at their
        next episode (and fail as nondeterministic if it takes other steps)."""
        functions = AppFunctions(app)
        with self._lock:
            self._functions = functions
            self._schedules = [
                TimerSchedule(function, self._settings) for function in functions.timers.values()
            ]

    def instances(self) -> list[InstanceStatus]:
        """Every instance, sub-orchestrations included, oldest first."""
        with self._lock:
            found = [inst.snapshot() for inst in self._instances.values()]
        return sorted(found, key=lambda st: st.created_at)

    def raise_event(self, instance_id: str, event_name: str, data: Any = None) -> None:
        with self._lock:
            inst = self._active(instance_id)
            text = None if data is None else json.dumps(data)
            self._deliver(inst, h.event_raised(self._clock.now(), event_name, text))

    def terminate(self, instance_id: str, reason: str) -> None:
        """Stop an instance; like the extension, its parent is not told."""
        with self._lock:
            inst = self._active(instance_id)
            now = self._clock.now()
            inst.history += [h.execution_terminated(now, reason)]
            self._finish(inst, "Terminated", reason, now)

    def purge(self, instance_id: str) -> None:
        """Forget an instance and its history."""
        with self._lock:
            self._get(instance_id)
            del self._instances[instance_id]

    def client_binding(self) -> str:
        """The durableClient binding JSON, for `DurableOrchestrationClient` and client functions."""
        if self._endpoint is None:
            raise RuntimeError("the host's client endpoint runs only inside `with host:`")
        return self._endpoint.binding(self.hub_name)

    # -- functions with a client binding -----------------------------------------------------

    def http_triggers(self) -> dict[str, dict[str, Any]]:
        """Each HTTP function's trigger binding (route, methods, authLevel), by function name."""
        return {name: dict(function.settings) for name, function in self._functions.http.items()}

    def timer_schedules(self) -> dict[str, str]:
        """Each timer function's NCRONTAB schedule, its app setting resolved, by function name."""
        return {s.function.name: s.expression for s in self._schedules}

    def call_http(
        self, function_name: str, req: func.HttpRequest, *, served: bool = False
    ) -> func.HttpResponse:
        """Run an HTTP function. In-process (`served` False), as if `req` had reached this host:
        its route values are read from its path and its URL points here. `served`: `req` came
        through a front door that routed it (local/serve.py), so its URL and route values stand.
        """
        function = self._functions.http.get(function_name)
        if function is None:
            raise UnknownFunctionError(f"the app has no HTTP function named {function_name!r}")
        binding = self.client_binding()
        if not served:
            req = self._in_process(req, str(function.settings.get("route") or function_name))
        response: func.HttpResponse = call_client_function(function, req, binding)
        return response

    def _in_process(self, req: func.HttpRequest, route: str) -> func.HttpRequest:
        assert self._endpoint is not None
        parts = urlsplit(req.url)
        return func.HttpRequest(
            method=req.method,
            url=f"{self._endpoint.origin}{parts.path}" + (f"?{parts.query}" if parts.query else ""),
            headers=dict(req.headers),
            params=dict(req.params),
            route_params=dict(req.route_params) or _match_route(route, parts.path),
            body=req.get_body(),
        )

    def run_timers(self, until: datetime) -> None:
        """Fire the app's timer triggers on schedule up to `until`, running all work between ticks
        (durable timers fire in time order with the ticks); leaves the clock at `until`."""
        while self._schedules:
            now = self._clock.now()
            upcoming = [(schedule.next_after(now), schedule) for schedule in self._schedules]
            tick = min(moment for moment, _ in upcoming)
            if tick > until:
                break
            self._run(deadline=tick)
            self._clock.advance_to(tick)
            binding = self.client_binding()
            for moment, schedule in upcoming:
                if moment == tick:
                    request = schedule.request(self._clock.now())
                    call_client_function(schedule.function, request, binding)
        self._run(deadline=until)
        self._clock.advance_to(until)

    def fire_missed_timers(self, since: datetime) -> None:
        """Fire, once each, the timer triggers with a tick in (since, now]: the clock moved past
        them without this host (another process moved the shared virtual clock, or real time
        passed between polls). Once each, as in the Functions host: after an invocation its next
        tick is the first after that moment, so ticks missed meanwhile collapse into one
        (Azure/azure-webjobs-sdk-extensions, Timers/Listener/TimerListener.cs,
        InvokeJobFunction)."""
        now = self._clock.now()
        due = [schedule for schedule in self._schedules if schedule.next_after(since) <= now]
        binding = self.client_binding() if due else ""
        for schedule in due:
            call_client_function(schedule.function, schedule.request(now), binding)

    def next_timer(self) -> datetime | None:
        """When the earliest durable timer of a running instance fires (None: none waits)."""
        with self._lock:
            live = [
                fire_at
                for fire_at, _, timer_id, inst in self._timers
                if self._live(inst) and timer_id in inst.timers
            ]
        return min(live, default=None)

    # -- driving the work --------------------------------------------------------------------

    def run_until_idle(self, max_virtual_seconds: float | None = None) -> None:
        """Run episodes and activities, firing durable timers in time order, until nothing is left
        to do (or the next timer lies beyond `max_virtual_seconds` from now)."""
        deadline = None
        if max_virtual_seconds is not None:
            deadline = self._clock.now() + timedelta(seconds=max_virtual_seconds)
        self._run(deadline)

    def _run(self, deadline: datetime | None) -> None:
        if self._pool is None:
            raise RuntimeError("run the host inside `with host:` (it owns the activity pool)")
        while True:
            with self._lock:
                self._fire_timers(self._clock.now())
                inst = self._next_ready()
                if inst is None:
                    if self._running:
                        self._lock.wait(self._until_first_timeout())
                        self._expire_activities()
                    elif not self._advance_clock(deadline):
                        return
                    continue
            self._run_episode(inst)

    def _next_ready(self) -> Instance | None:
        while self._ready:
            inst = self._ready.popleft()
            inst.queued = False
            if self._live(inst) and inst.inbox:
                return inst
        return None

    def _advance_clock(self, deadline: datetime | None) -> bool:
        """Move the clock to the earliest live timer (within the deadline); False when none."""
        while self._timers:
            fire_at, _, timer_id, inst = self._timers[0]
            if not self._live(inst) or timer_id not in inst.timers:
                heapq.heappop(self._timers)
                continue
            if deadline is not None and fire_at > deadline:
                return False
            self._clock.advance_to(fire_at)
            return True
        return False

    def _fire_timers(self, now: datetime) -> None:
        while self._timers and self._timers[0][0] <= now:
            fire_at, _, timer_id, inst = heapq.heappop(self._timers)
            if self._live(inst) and timer_id in inst.timers:
                inst.timers.discard(timer_id)
                self._deliver(inst, h.timer_fired(now, timer_id, fire_at))

    # -- one episode -------------------------------------------------------------------------

    def _run_episode(self, inst: Instance) -> None:
        with self._lock:
            events = list(inst.inbox)
            inst.inbox.clear()
            now = self._clock.now()
            new_events = [h.orchestrator_started(now), *events]
            work: list[Callable[[], None]] = []
            produced = [e for event in events for e in self._retry(inst, event, now, work)]
            inst.status = "Running"
            inst.last_updated_at = now
            if not self._wakes(inst, events):
                inst.history += [*new_events, *produced, h.orchestrator_completed(now)]
                for start in work:
                    start()
                return
            context = json.dumps(
                {
                    "history": h.played(inst.history) + new_events,
                    "input": inst.input_text,
                    "instanceId": inst.instance_id,
                    "isReplaying": bool(inst.history),
                    "parentInstanceId": inst.parent_id,
                    "upperSchemaVersion": 1,
                    "upperSchemaVersionNew": 2,
                    **_TIMER_LIMITS,
                }
            )
            orchestrator = self._functions.orchestrators[inst.name]
        try:
            episode = act.read_state(orchestrator(context))
        except Exception as exc:  # the SDK raises to report the orchestrator's own failure
            episode = act.read_failure(exc)
        with self._lock:
            if not self._live(inst):
                return  # terminated, purged or replaced meanwhile
            inst.history += new_events
            if episode.has_custom_status:
                inst.custom_status = episode.custom_status
            failure = (
                episode.error
                or self._refusal(inst, episode.actions)
                or _custom_status_refusal(inst, episode)
            )
            if failure is None:
                produced += self._schedule_new(inst, episode.actions, now, work)
                self._drop_cancelled_timers(inst, episode.actions)
                self._await(inst, episode)
            inst.history += [*produced, h.orchestrator_completed(now)]
            if failure is not None:
                self._finish(inst, "Failed", failure, now)
            elif episode.continued:
                self._continue_as_new(inst, episode.new_input, now)
            elif episode.done:
                self._finish(inst, "Completed", episode.output, now)
            else:
                for start in work:
                    start()
                if inst.inbox:
                    self._enqueue(inst)

    def _wakes(self, inst: Instance, events: list[h.Event]) -> bool:
        """Whether the orchestrator runs this episode: at its start, on an external event, or
        once what its last `yield` awaits is done (any one of it for task_any)."""
        if not inst.history or any(e["EventType"] == Kind.EVENT_RAISED for e in events):
            return True
        done = [task_id in inst.finished for task_id in inst.awaiting if task_id is not None]
        return any(done) if inst.await_any else bool(done) and all(done)

    def _await(self, inst: Instance, episode: act.Episode) -> None:
        count = episode.awaited_count
        inst.awaiting = inst.action_ids[len(inst.action_ids) - count :] if count else []
        inst.await_any = episode.awaited_kind is ActionType.WHEN_ANY

    def _retry(
        self, inst: Instance, event: h.Event, now: datetime, work: list[Callable[[], None]]
    ) -> list[h.Event]:
        """The engine's part of an event: mark what it finishes and, after a failed attempt of a
        retried call, what the SDK's RetryAbleTask expects: a backoff timer (after the final
        attempt too, due at once, as DTFx does), and once it fires, the next attempt."""
        kind = event["EventType"]
        if kind in _FAILURES:
            call = inst.calls.pop(event["TaskScheduledId"], None)
            if call is None:
                return []
            if call.retry_interval is None:
                inst.finished.add(call.root_id)
                return []
            timer_id = inst.take_id()
            inst.retry_timers[timer_id] = call
            final = call.attempt >= call.max_attempts
            fire_at = now if final else now + call.retry_interval
            work.append(lambda: self._set_timer(inst, timer_id, fire_at))
            return [h.timer_created(now, timer_id, fire_at)]
        if kind == Kind.TIMER_FIRED:
            call = inst.retry_timers.pop(event["TimerId"], None)
            if call is None:
                inst.finished.add(event["TimerId"])
                return []
            if call.attempt >= call.max_attempts:
                inst.finished.add(call.root_id)
                return []
            call.attempt += 1
            return [self._schedule_call(inst, call, inst.take_id(), now, work)]
        if kind in _COMPLETIONS:
            call = inst.calls.pop(event["TaskScheduledId"], None)
            if call is not None:
                inst.finished.add(call.root_id)
        return []

    def _refusal(self, inst: Instance, actions: list[act.Action]) -> str | None:
        """Why the episode's actions cannot go on: a replay that differs from the history (the
        nondeterminism check), or an action the host does not run."""
        for action in actions:
            if act.kind(action) not in act.SUPPORTED:
                return (
                    f"the local durable host does not run {act.kind(action).name} actions "
                    f"(used by {inst.name})"
                )
        for action in actions[len(inst.signatures) :]:
            missing = self._missing_function(action)
            if missing is not None:
                return missing
        replayed = [act.signature(action) for action in actions]
        for index, recorded in enumerate(inst.signatures):
            produced = replayed[index] if index < len(replayed) else "nothing"
            if produced != recorded:
                return (
                    "NonDeterministicOrchestrationException: Non-Deterministic workflow detected: "
                    f"action {index} is {recorded} in the history but the replay produced "
                    f"{produced}"
                )
        return None

    def _missing_function(self, action: act.Action) -> str | None:
        """The extension's `ThrowIfFunctionDoesNotExist` message for a call to a function the
        app does not have; it fails the whole orchestration, not just the task."""
        kind, name = act.kind(action), action.get("functionName")
        if kind in _ACTIVITIES and name not in self._functions.activities:
            role = "an activity"
        elif kind in _SUB_ORCHESTRATORS and name not in self._functions.orchestrators:
            role = "an orchestrator"
        else:
            return None
        return f"The function '{name}' doesn't exist, is disabled, or is not {role} function."

    def _schedule_new(
        self,
        inst: Instance,
        actions: list[act.Action],
        now: datetime,
        work: list[Callable[[], None]],
    ) -> list[h.Event]:
        produced: list[h.Event] = []
        for action in actions[len(inst.signatures) :]:
            inst.signatures.append(act.signature(action))
            task_id = inst.take_id() if act.takes_sequence_number(action) else None
            inst.action_ids.append(task_id)
            kind = act.kind(action)
            if task_id is None:
                continue  # an external-event wait: the event itself completes it
            if kind is ActionType.CREATE_TIMER:
                fire_at = act.fire_time(action)
                produced.append(h.timer_created(now, task_id, fire_at))
                work.append(partial(self._set_timer, inst, task_id, fire_at))
            else:
                call = _call(action)
                call.root_id = task_id
                produced.append(self._schedule_call(inst, call, task_id, now, work))
        return produced

    def _drop_cancelled_timers(self, inst: Instance, actions: list[act.Action]) -> None:
        """A cancelled timer would still fire in Azure, unheard; here it must not hold up time."""
        for action, task_id in zip(actions, inst.action_ids, strict=True):
            if action.get("isCanceled") and task_id is not None:
                inst.timers.discard(task_id)

    def _schedule_call(
        self,
        inst: Instance,
        call: Call,
        task_id: int,
        now: datetime,
        work: list[Callable[[], None]],
    ) -> h.Event:
        inst.calls[task_id] = call
        if call.activity:
            work.append(lambda: self._start_activity(inst, task_id, call))
            return h.task_scheduled(now, task_id, call.name, call.input_text)
        sub_id = call.instance_id or f"{inst.instance_id}:{task_id:04X}"
        work.append(lambda: self._start_sub_orchestration(inst, task_id, call, sub_id))
        return h.sub_orchestration_created(now, task_id, call.name, sub_id, call.input_text)

    # -- work started by an episode ----------------------------------------------------------

    def _set_timer(self, inst: Instance, timer_id: int, fire_at: datetime) -> None:
        inst.timers.add(timer_id)
        heapq.heappush(self._timers, (fire_at, next(self._sequence), timer_id, inst))

    def _start_activity(self, inst: Instance, task_id: int, call: Call) -> None:
        assert self._pool is not None
        token = next(self._run_ids)
        self._running[token] = _ActivityRun(inst, task_id, call, time.monotonic())
        self._pool.submit(self._run_activity, token, task_id, call)

    def _run_activity(self, token: int, task_id: int, call: Call) -> None:
        """Runs on a pool thread and reports back, unless the host has given up on this run."""
        event = self._activity_outcome(task_id, call)
        if self.at_least_once and event["EventType"] == Kind.TASK_COMPLETED:
            event = self._activity_outcome(task_id, call)
        with self._lock:
            run = self._running.pop(token, None)
            if run is not None and self._live(run.inst):
                self._deliver(run.inst, event)
            self._lock.notify_all()

    def _until_first_timeout(self) -> float | None:
        """Seconds until the oldest running activity passes functionTimeout (None: no limit)."""
        if self.function_timeout is None or not self._running:
            return None
        oldest = min(run.started for run in self._running.values())
        limit = self.function_timeout.total_seconds()
        return max(oldest + limit - time.monotonic(), 0.0)

    def _expire_activities(self) -> None:
        """Fail the activities past functionTimeout; the worker process restarts, so every
        other activity it was running is delivered again (its first run's result is lost)."""
        if self.function_timeout is None:
            return
        limit = self.function_timeout.total_seconds()
        now = time.monotonic()
        expired = {t: r for t, r in self._running.items() if now - r.started >= limit}
        if not expired:
            return
        for token, run in expired.items():
            del self._running[token]
            message = (
                f"Timeout value of {_format_timespan(self.function_timeout)} exceeded by "
                f"function 'Functions.{run.call.name}'. Initiating cancellation."
            )
            reason = f"Activity function '{run.call.name}' failed: {message}"
            if self._live(run.inst):
                failed = h.task_failed(self._clock.now(), run.task_id, reason, message)
                self._deliver(run.inst, failed)
        for token, run in list(self._running.items()):
            del self._running[token]
            if self._live(run.inst):
                self._start_activity(run.inst, run.task_id, run.call)

    def _activity_outcome(self, task_id: int, call: Call) -> h.Event:
        """TaskCompleted, or TaskFailed with the reason the extension gives: the activity's name
        and the worker's `Type: message` text (the exception's type itself is lost)."""
        activity = self._functions.activities.get(call.name)
        try:
            if activity is None:
                raise _Missing(f"Activity function '{call.name}' does not exist.")
            binding = self.client_binding() if activity.client_arg else ""
            result = call_activity(activity, call.input_text, binding)
        except Exception as exc:
            message = str(exc) if isinstance(exc, _Missing) else f"{type(exc).__name__}: {exc}"
            reason = f"Activity function '{call.name}' failed: {message}"
            return h.task_failed(self._clock.now(), task_id, reason, message)
        return h.task_completed(self._clock.now(), task_id, result)

    def _start_sub_orchestration(
        self, parent: Instance, task_id: int, call: Call, sub_id: str
    ) -> None:
        """Start (or, if the id is running, replace) a sub-orchestration: Azure Storage does
        not deduplicate these, and the replaced execution's parent waits forever."""
        existing = self._instances.get(sub_id)
        if existing is not None and existing.status in ACTIVE:
            self.replaced.append(sub_id)
        self._create(call.name, sub_id, call.input_text, parent, task_id)

    # -- bookkeeping (all under the lock) ----------------------------------------------------

    def _create(
        self,
        name: str,
        instance_id: str,
        input_text: str | None,
        parent: Instance | None = None,
        parent_task_id: int | None = None,
    ) -> None:
        now = self._clock.now()
        inst = Instance(
            instance_id=instance_id,
            name=name,
            input_text=input_text,
            created_at=now,
            parent_id=parent.instance_id if parent else None,
            parent_task_id=parent_task_id,
            parent_execution=parent,
        )
        self._instances[instance_id] = inst
        self._deliver(inst, h.execution_started(now, name, input_text, inst.parent_id))

    def _finish(self, inst: Instance, status: str, output: Any, now: datetime) -> None:
        """Record the end of an instance and tell its parent, as DTFx does for Completed and
        Failed (not Terminated)."""
        if status == "Failed":
            output = f"Orchestrator function '{inst.name}' failed: {output}"
        inst.status, inst.output, inst.last_updated_at = status, output, now
        inst.inbox.clear()
        inst.timers.clear()
        result = json.dumps(output)
        inst.history.append(h.execution_completed(now, status, result))
        parent = inst.parent_execution
        if parent is None or not self._live(parent) or inst.parent_task_id is None:
            return
        if status == "Completed":
            self._deliver(parent, h.sub_orchestration_completed(now, inst.parent_task_id, result))
        elif status == "Failed":
            self._deliver(
                parent, h.sub_orchestration_failed(now, inst.parent_task_id, output, output)
            )

    def _continue_as_new(self, inst: Instance, input_text: str | None, now: datetime) -> None:
        """Replace the execution: same id, parent and creation time, a new history from
        ExecutionStarted with the new input. The old execution's timers and calls no longer
        reach it (`_live` compares the instance object)."""
        fresh = Instance(
            instance_id=inst.instance_id,
            name=inst.name,
            input_text=input_text,
            created_at=inst.created_at,
            parent_id=inst.parent_id,
            parent_task_id=inst.parent_task_id,
            parent_execution=inst.parent_execution,
            custom_status=inst.custom_status,
        )
        self._instances[inst.instance_id] = fresh
        self._deliver(fresh, h.execution_started(now, inst.name, input_text, inst.parent_id))

    def _deliver(self, inst: Instance, event: h.Event) -> None:
        inst.inbox.append(event)
        self._enqueue(inst)
        self._lock.notify_all()

    def _enqueue(self, inst: Instance) -> None:
        if not inst.queued:
            inst.queued = True
            self._ready.append(inst)

    def _live(self, inst: Instance) -> bool:
        return self._instances.get(inst.instance_id) is inst and inst.status in ACTIVE

    def _get(self, instance_id: str) -> Instance:
        inst = self._instances.get(instance_id)
        if inst is None:
            raise InstanceNotFoundError(f"No instance with ID '{instance_id}' found.")
        return inst

    def _active(self, instance_id: str) -> Instance:
        inst = self._get(instance_id)
        if inst.status not in ACTIVE:
            raise InstanceGoneError(f"Instance with ID {instance_id} is gone: it is {inst.status}")
        return inst


def _call(action: act.Action) -> Call:
    kind = act.kind(action)
    retry = action.get("retryOptions") if kind in _RETRYING else None
    return Call(
        activity=kind in _ACTIVITIES,
        name=action["functionName"],
        input_text=action.get("input"),
        instance_id=action.get("instanceId"),
        retry_interval=(
            timedelta(milliseconds=retry["firstRetryIntervalInMilliseconds"]) if retry else None
        ),
        max_attempts=retry["maxNumberOfAttempts"] if retry else 1,
    )


def _custom_status_refusal(inst: Instance, episode: act.Episode) -> str | None:
    if not episode.has_custom_status:
        return None
    size = len(json.dumps(episode.custom_status).encode())
    if size <= MAX_CUSTOM_STATUS_BYTES:
        return None
    return (
        f"The custom status of orchestration '{inst.name}' is {size} bytes of JSON; it must not "
        f"exceed {MAX_CUSTOM_STATUS_BYTES // 1024} KB."
    )


def _host_document(host_json: Path | None) -> dict[str, Any]:
    """host.json as a dict ({} without one)."""
    if host_json is None:
        return {}
    try:
        document: dict[str, Any] = json.loads(host_json.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot read {host_json}: {exc}") from exc
    return document


def _timespan(text: str | None) -> timedelta | None:
    """host.json's "hh:mm:ss" (or "d.hh:mm:ss"); None for no limit ("-1" or absent)."""
    if not text or text.strip() == "-1":
        return None
    parts = _TIMESPAN.fullmatch(text.strip())
    if parts is None:
        raise ValueError(f"host.json functionTimeout {text!r} is not [d.]hh:mm:ss")
    days, hours, minutes, seconds = (float(part or 0) for part in parts.groups())
    return timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)


def _format_timespan(span: timedelta) -> str:
    total = int(span.total_seconds())
    return f"{total // 3600:02d}:{total % 3600 // 60:02d}:{total % 60:02d}"


def _match_route(template: str, path: str) -> dict[str, str]:
    """Route parameters of an HTTP function's route template ('backups/{vm}') in a URL path."""
    pattern = ""
    for segment in template.strip("/").split("/"):
        param = _ROUTE_PARAM.fullmatch(segment)
        if param is None:
            pattern += "/" + re.escape(segment)
        else:
            pattern += f"(?:/(?P<{param[1]}>[^/]+)){'?' if param[2] else ''}"
    match = re.search(pattern + "/?$", path)
    return {key: value for key, value in match.groupdict().items() if value} if match else {}
