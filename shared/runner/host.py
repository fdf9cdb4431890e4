"""The local durable host: runs a DFApp's orchestrations without the Functions host.

It plays the Durable extension's part. Each episode hands the registered orchestrator the history
as the extension sends it (earlier episodes replayed, then OrchestratorStarted and ONE new event),
reads back the actions, and turns the new ones into work: activities in a thread pool, durable
timers on the shared virtual clock, sub-orchestrations as new instances. One new event per episode
is a history the extension can also produce, and it keeps the host's task ids in step with the
SDK's sequence numbers, including the backoff timers and re-scheduled attempts of retries.

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
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
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
from .instances import ACTIVE, Call, Instance, InstanceStatus
from .timers import TimerSchedule, resolve_setting

# Azure Storage's limits, sent as the extension does; longer timers are split by the SDK.
_TIMER_LIMITS = {
    "maximumShortTimerDuration": "6.00:00:00",
    "longRunningTimerIntervalDuration": "3.00:00:00",
}
_INVALID_ID = re.compile(r"^@|[/\\#?\x00-\x1f\x7f]")
# {name}, {name:constraint}, {name?}, {*rest}: the route template parameters Functions accepts.
_ROUTE_PARAM = re.compile(r"\{\*?(\w+)(?::[^}?]+)?(\?)?\}")
_RETRYING = {ActionType.CALL_ACTIVITY_WITH_RETRY, ActionType.CALL_SUB_ORCHESTRATOR_WITH_RETRY}
_ACTIVITIES = {ActionType.CALL_ACTIVITY, ActionType.CALL_ACTIVITY_WITH_RETRY}


class _Missing(Exception):
    """The extension's own failure for a call to an activity the app does not have."""


class LocalDurableHost:
    """Runs a DFApp's orchestrators, activities, HTTP and timer functions on a given clock."""

    def __init__(
        self,
        app: Any,
        clock: SettableClock,
        *,
        host_json: Path | None = None,
        settings: Mapping[str, str] | None = None,
    ) -> None:
        self._clock = clock
        self._settings = dict(settings or {})
        self._functions = AppFunctions(app)
        durable = _durable_settings(host_json)
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
        self._in_flight = 0
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

    def call_http(self, function_name: str, req: func.HttpRequest) -> func.HttpResponse:
        """Run an HTTP function as if `req` had reached this host, so status URLs point here."""
        function = self._functions.http.get(function_name)
        if function is None:
            raise UnknownFunctionError(f"the app has no HTTP function named {function_name!r}")
        binding = self.client_binding()
        assert self._endpoint is not None
        parts = urlsplit(req.url)
        route_params = dict(req.route_params) or _match_route(
            str(function.settings.get("route") or function_name), parts.path
        )
        local = func.HttpRequest(
            method=req.method,
            url=f"{self._endpoint.origin}{parts.path}" + (f"?{parts.query}" if parts.query else ""),
            headers=dict(req.headers),
            params=dict(req.params),
            route_params=route_params,
            body=req.get_body(),
        )
        response: func.HttpResponse = call_client_function(function, local, binding)
        return response

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
                    if self._in_flight:
                        self._lock.wait()
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
            event = inst.inbox.popleft()
            now = self._clock.now()
            new_events = [h.orchestrator_started(now), event]
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
                return  # terminated or purged meanwhile
            inst.history += new_events
            inst.status = "Running"
            inst.last_updated_at = now
            if episode.has_custom_status:
                inst.custom_status = episode.custom_status
            work: list[Callable[[], None]] = []
            produced = self._retry(inst, event, now, work)
            failure = episode.error or self._refusal(inst, episode.actions)
            if failure is None:
                produced += self._schedule_new(inst, episode.actions, now, work)
                self._drop_cancelled_timers(inst, episode.actions)
            inst.history += [*produced, h.orchestrator_completed(now)]
            if failure is not None:
                self._finish(inst, "Failed", failure, now)
            elif episode.done:
                self._finish(inst, "Completed", episode.output, now)
            else:
                for start in work:
                    start()
                if inst.inbox:
                    self._enqueue(inst)

    def _retry(
        self, inst: Instance, event: h.Event, now: datetime, work: list[Callable[[], None]]
    ) -> list[h.Event]:
        """What the SDK's RetryAbleTask expects after a failed attempt: a backoff timer (even after
        the last attempt, as DTFx does), and once it fires, the next attempt."""
        kind = event["EventType"]
        if kind in (Kind.TASK_FAILED, Kind.SUB_ORCHESTRATION_INSTANCE_FAILED):
            call = inst.calls.pop(event["TaskScheduledId"], None)
            if call is None or call.retry_interval is None:
                return []
            timer_id = inst.take_id()
            inst.retry_timers[timer_id] = call
            fire_at = now + call.retry_interval
            work.append(lambda: self._set_timer(inst, timer_id, fire_at))
            return [h.timer_created(now, timer_id, fire_at)]
        if kind == Kind.TIMER_FIRED:
            call = inst.retry_timers.pop(event["TimerId"], None)
            if call is None or call.attempt >= call.max_attempts:
                return []
            call.attempt += 1
            return [self._schedule_call(inst, call, inst.take_id(), now, work)]
        if kind in (Kind.TASK_COMPLETED, Kind.SUB_ORCHESTRATION_INSTANCE_COMPLETED):
            inst.calls.pop(event["TaskScheduledId"], None)
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
                produced.append(self._schedule_call(inst, _call(action), task_id, now, work))
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
        self._in_flight += 1
        self._pool.submit(self._run_activity, inst, task_id, call)

    def _run_activity(self, inst: Instance, task_id: int, call: Call) -> None:
        """Runs on a pool thread and reports back to the instance."""
        event = None
        try:
            event = self._activity_outcome(task_id, call)
        finally:
            with self._lock:
                self._in_flight -= 1
                if event is not None and self._live(inst):
                    self._deliver(inst, event)
                self._lock.notify_all()

    def _activity_outcome(self, task_id: int, call: Call) -> h.Event:
        """TaskCompleted, or TaskFailed with the reason the extension gives: the activity's name
        and the worker's `Type: message` text (the exception's type itself is lost)."""
        activity = self._functions.activities.get(call.name)
        try:
            if activity is None:
                raise _Missing(f"Activity function '{call.name}' does not exist.")
            result = call_activity(activity, call.input_text)
        except Exception as exc:
            message = str(exc) if isinstance(exc, _Missing) else f"{type(exc).__name__}: {exc}"
            reason = f"Activity function '{call.name}' failed: {message}"
            return h.task_failed(self._clock.now(), task_id, reason, message)
        return h.task_completed(self._clock.now(), task_id, result)

    def _start_sub_orchestration(
        self, parent: Instance, task_id: int, call: Call, sub_id: str
    ) -> None:
        existing = self._instances.get(sub_id)
        problem = None
        if call.name not in self._functions.orchestrators:
            problem = (
                f"The function '{call.name}' doesn't exist, is disabled, or is not an "
                "orchestrator function."
            )
        elif existing is not None and existing.status in ACTIVE:
            problem = f"An Orchestration instance with the status {existing.status} already exists."
        if problem is not None:
            now = self._clock.now()
            self._deliver(parent, h.sub_orchestration_failed(now, task_id, problem, problem))
        else:
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
        parent = self._instances.get(inst.parent_id or "")
        if parent is None or parent.status not in ACTIVE or inst.parent_task_id is None:
            return
        if status == "Completed":
            self._deliver(parent, h.sub_orchestration_completed(now, inst.parent_task_id, result))
        elif status == "Failed":
            self._deliver(
                parent, h.sub_orchestration_failed(now, inst.parent_task_id, output, output)
            )

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


def _durable_settings(host_json: Path | None) -> dict[str, Any]:
    """host.json's extensions.durableTask section ({} without a host.json)."""
    if host_json is None:
        return {}
    try:
        document = json.loads(host_json.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot read {host_json}: {exc}") from exc
    section: dict[str, Any] = document.get("extensions", {}).get("durableTask", {})
    return section


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
