"""Orchestration instances: the host's record of each one, and the status it reports."""

from __future__ import annotations

import json
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from .history import Event

ACTIVE = ("Pending", "Running")


@dataclass(frozen=True)
class InstanceStatus:
    """What the extension's status query reports, with input and output as Python values."""

    instance_id: str
    name: str
    runtime_status: str  # Pending | Running | Completed | Failed | Terminated
    input: Any
    output: Any
    custom_status: Any
    created_at: datetime
    last_updated_at: datetime
    history_length: int


@dataclass
class Call:
    """A scheduled activity or sub-orchestration, kept so a failure can be retried."""

    activity: bool
    name: str
    input_text: str | None
    instance_id: str | None = None  # a sub-orchestration's requested instance id
    retry_interval: timedelta | None = None  # None: no retry options
    max_attempts: int = 1
    attempt: int = 1
    root_id: int = -1  # the task id of the first attempt: what the orchestrator awaits


@dataclass(frozen=True)
class InstanceSizes:
    """Bytes of JSON an instance keeps in the task hub: what a large fan-out makes expensive."""

    input: int
    output: int
    custom_status: int
    history: int


@dataclass(eq=False)
class Instance:
    """One orchestration instance; mutated only under the host's lock."""

    instance_id: str
    name: str
    input_text: str | None
    created_at: datetime
    parent_id: str | None = None
    parent_task_id: int | None = None
    # The parent's execution that started this one: a parent that continued as new is another
    # execution and is never told (DTFx addresses the answer to the execution id).
    parent_execution: Instance | None = None
    status: str = "Pending"
    output: Any = None
    custom_status: Any = None
    last_updated_at: datetime | None = None
    history: list[Event] = field(default_factory=list)
    inbox: deque[Event] = field(default_factory=deque)
    queued: bool = False
    next_id: int = 0  # mirrors the SDK's task sequence number
    signatures: list[str] = field(default_factory=list)  # actions seen, for the replay check
    action_ids: list[int | None] = field(default_factory=list)
    calls: dict[int, Call] = field(default_factory=dict)  # by scheduled event id
    retry_timers: dict[int, Call] = field(default_factory=dict)  # by backoff timer id
    timers: set[int] = field(default_factory=set)  # durable timers not yet fired
    # What the orchestrator's last `yield` waits on (first-attempt task ids; None for an
    # external event), whether any one of them is enough (task_any), and which have finished.
    awaiting: list[int | None] = field(default_factory=list)
    await_any: bool = False
    finished: set[int] = field(default_factory=set)

    def take_id(self) -> int:
        task_id = self.next_id
        self.next_id += 1
        return task_id

    def sizes(self) -> InstanceSizes:
        return InstanceSizes(
            input=len((self.input_text or "").encode()),
            output=_json_bytes(self.output),
            custom_status=_json_bytes(self.custom_status),
            history=_json_bytes(self.history),
        )

    def snapshot(self) -> InstanceStatus:
        return InstanceStatus(
            instance_id=self.instance_id,
            name=self.name,
            runtime_status=self.status,
            input=None if self.input_text is None else json.loads(self.input_text),
            output=self.output,
            custom_status=self.custom_status,
            created_at=self.created_at,
            last_updated_at=self.last_updated_at or self.created_at,
            history_length=len(self.history),
        )


def _json_bytes(value: Any) -> int:
    return 0 if value is None else len(json.dumps(value).encode())
