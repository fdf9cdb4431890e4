"""History events in the JSON shape the Durable extension sends to an out-of-process orchestrator.

Each builder returns one event dict. `EventId` is the task's sequence number on the event that
schedules it (TaskScheduled, TimerCreated, SubOrchestrationInstanceCreated) and -1 elsewhere; the
completion events point back with `TaskScheduledId` (or `TimerId`), which is how the SDK's executor
finds the task it completes. `IsPlayed` is false here; `played` marks past episodes on replay.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from typing import Any

from azure.durable_functions.models.history.HistoryEventType import HistoryEventType as Kind
from dateutil.parser import parse as dateutil_parse

Event = dict[str, Any]

# The SDK parses and writes timestamps in this format (azure.durable_functions.constants).
TIMESTAMP_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


def stamp(moment: datetime) -> str:
    """A UTC timestamp as the extension writes it."""
    return moment.astimezone(UTC).strftime(TIMESTAMP_FORMAT)


def parse_stamp(text: str) -> datetime:
    """What dateutil makes of a timestamp, read the quick way when it is one `stamp` wrote.

    The SDK's executor parses every event's timestamp with dateutil on every replay; in a long
    simulation that is half the host's time. `stamp`'s fixed shape (27 characters, UTC `Z`) is
    read by `datetime.fromisoformat` to an equal aware datetime; anything else goes to dateutil.
    """
    if len(text) == 27 and text[-1] == "Z":
        return datetime.fromisoformat(text)
    parsed: datetime = dateutil_parse(text)
    return parsed


def read_stamps_quickly() -> None:
    """Point the SDK's history events at `parse_stamp` (its module imports dateutil's `parse`
    as `dt_parse`); the executor, its replay and its results are otherwise untouched."""
    module = sys.modules["azure.durable_functions.models.history.HistoryEvent"]
    module.dt_parse = parse_stamp  # type: ignore[attr-defined]


def _event(kind: Kind, now: datetime, event_id: int = -1, **fields: Any) -> Event:
    return {
        "EventType": int(kind),
        "EventId": event_id,
        "IsPlayed": False,
        "Timestamp": stamp(now),
        **fields,
    }


def played(events: list[Event]) -> list[Event]:
    """Events of earlier episodes, flagged as replayed."""
    return [{**event, "IsPlayed": True} for event in events]


def orchestrator_started(now: datetime) -> Event:
    """Opens an episode; its timestamp is the orchestrator's `current_utc_datetime`."""
    return _event(Kind.ORCHESTRATOR_STARTED, now)


def orchestrator_completed(now: datetime) -> Event:
    return _event(Kind.ORCHESTRATOR_COMPLETED, now)


def execution_started(
    now: datetime, name: str, input_text: str | None, parent_instance_id: str | None
) -> Event:
    return _event(
        Kind.EXECUTION_STARTED,
        now,
        Name=name,
        Input=input_text,
        Version="",
        ParentInstance=parent_instance_id,
    )


def execution_completed(now: datetime, status: str, result: str | None) -> Event:
    return _event(Kind.EXECUTION_COMPLETED, now, OrchestrationStatus=status, Result=result)


def execution_terminated(now: datetime, reason: str) -> Event:
    return _event(Kind.EXECUTION_TERMINATED, now, Input=reason)


def task_scheduled(now: datetime, event_id: int, name: str, input_text: str | None) -> Event:
    return _event(Kind.TASK_SCHEDULED, now, event_id, Name=name, Input=input_text)


def task_completed(now: datetime, scheduled_id: int, result: str | None) -> Event:
    return _event(Kind.TASK_COMPLETED, now, TaskScheduledId=scheduled_id, Result=result)


def task_failed(now: datetime, scheduled_id: int, reason: str, details: str) -> Event:
    return _event(
        Kind.TASK_FAILED, now, TaskScheduledId=scheduled_id, Reason=reason, Details=details
    )


def timer_created(now: datetime, event_id: int, fire_at: datetime) -> Event:
    return _event(Kind.TIMER_CREATED, now, event_id, FireAt=stamp(fire_at))


def timer_fired(now: datetime, timer_id: int, fire_at: datetime) -> Event:
    return _event(Kind.TIMER_FIRED, now, TimerId=timer_id, FireAt=stamp(fire_at))


def sub_orchestration_created(
    now: datetime, event_id: int, name: str, instance_id: str, input_text: str | None
) -> Event:
    return _event(
        Kind.SUB_ORCHESTRATION_INSTANCE_CREATED,
        now,
        event_id,
        Name=name,
        InstanceId=instance_id,
        Input=input_text,
    )


def sub_orchestration_completed(now: datetime, scheduled_id: int, result: str | None) -> Event:
    return _event(
        Kind.SUB_ORCHESTRATION_INSTANCE_COMPLETED, now, TaskScheduledId=scheduled_id, Result=result
    )


def sub_orchestration_failed(now: datetime, scheduled_id: int, reason: str, details: str) -> Event:
    return _event(
        Kind.SUB_ORCHESTRATION_INSTANCE_FAILED,
        now,
        TaskScheduledId=scheduled_id,
        Reason=reason,
        Details=details,
    )


def event_raised(now: datetime, name: str, input_text: str | None) -> Event:
    return _event(Kind.EVENT_RAISED, now, Name=name, Input=input_text)
