"""What an orchestrator episode answered: the OrchestratorState JSON, read as the extension does.

The SDK returns every action the orchestration has taken so far (append-only, grouped, with
WhenAll/WhenAny as compound actions). Flattened depth-first, that list is in the same order as the
SDK's task sequence numbers, which is what lets the host give each new task the id the SDK expects.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from azure.durable_functions.models.actions.ActionType import ActionType

Action = dict[str, Any]

# Where the SDK appends the orchestrator state to the message of the exception it raises.
_OUT_OF_PROC_LABEL = "\n\n$OutOfProcData$:"
_COMPOUND = {ActionType.WHEN_ALL, ActionType.WHEN_ANY}

# Actions the host runs; anything else fails the instance with a clear message.
SUPPORTED = {
    ActionType.CALL_ACTIVITY,
    ActionType.CALL_ACTIVITY_WITH_RETRY,
    ActionType.CALL_SUB_ORCHESTRATOR,
    ActionType.CALL_SUB_ORCHESTRATOR_WITH_RETRY,
    ActionType.CREATE_TIMER,
    ActionType.WAIT_FOR_EXTERNAL_EVENT,
}


@dataclass(frozen=True)
class Episode:
    """One orchestrator invocation's answer."""

    done: bool
    actions: list[Action]  # flattened, in task-sequence order
    output: Any = None
    error: str | None = None
    custom_status: Any = None
    has_custom_status: bool = False
    # The last top-level action (what the orchestrator now waits on): its kind and how many of
    # the flattened actions, at the end of `actions`, belong to it.
    awaited_kind: ActionType | None = None
    awaited_count: int = 0
    # `continue_as_new` was called: the instance starts over with this input (JSON text).
    continued: bool = False
    new_input: str | None = None


def read_state(state_text: str, error: str | None = None) -> Episode:
    """Parse the OrchestratorState JSON an orchestrator returned (or attached to its error)."""
    state = json.loads(state_text)
    every = top_level(state.get("actions", []))
    top = [action for action in every if kind(action) is not ActionType.CONTINUE_AS_NEW]
    continued = next((a for a in every if kind(a) is ActionType.CONTINUE_AS_NEW), None)
    awaited = top[-1] if top else None
    return Episode(
        done=bool(state.get("isDone")) and error is None,
        actions=flatten(top),
        output=state.get("output"),
        error=error,
        custom_status=state.get("customStatus"),
        has_custom_status="customStatus" in state,
        awaited_kind=None if awaited is None else kind(awaited),
        awaited_count=0 if awaited is None else len(flatten([awaited])),
        continued=continued is not None and error is None,
        new_input=None if continued is None else continued.get("input"),
    )


def read_failure(exc: Exception) -> Episode:
    """The orchestrator raised: the SDK puts the user's message first, the state after a label."""
    message = str(exc)
    error, label, state_text = message.partition(_OUT_OF_PROC_LABEL)
    if not label:
        return Episode(done=False, actions=[], error=message or type(exc).__name__)
    return read_state(state_text, error=error)


def top_level(actions: list[Any]) -> list[Action]:
    """The actions as the orchestrator yielded them, one per `yield` (a WhenAll/WhenAny is one),
    without the SDK's grouping lists."""
    found: list[Action] = []
    for item in actions:
        found.extend(top_level(item) if isinstance(item, list) else [item])
    return found


def flatten(actions: list[Any]) -> list[Action]:
    """Depth-first list of the atomic actions inside groups and WhenAll/WhenAny compounds."""
    flat: list[Action] = []
    for item in actions:
        if isinstance(item, list):
            flat.extend(flatten(item))
        elif item.get("actionType") in _COMPOUND:
            flat.extend(flatten(item.get("compoundActions", [])))
        else:
            flat.append(item)
    return flat


def kind(action: Action) -> ActionType:
    return ActionType(action["actionType"])


def takes_sequence_number(action: Action) -> bool:
    """Every task but an external-event wait takes the next sequence number (the SDK keys those by
    event name)."""
    return kind(action) is not ActionType.WAIT_FOR_EXTERNAL_EVENT


def signature(action: Action) -> str:
    """What must match between replays: the kind of call, its target and its input."""
    action_kind = kind(action)
    if action_kind is ActionType.CREATE_TIMER:
        return f"CreateTimer(fire_at={action.get('fireAt')})"
    if action_kind is ActionType.WAIT_FOR_EXTERNAL_EVENT:
        return f"WaitForExternalEvent({action.get('externalEventName')})"
    target = action.get("functionName")
    return f"{action_kind.name}({target}, input={action.get('input')})"


def fire_time(action: Action) -> datetime:
    """A timer's due time as an aware UTC datetime (the SDK writes naive UTC with a Z)."""
    moment = datetime.fromisoformat(action["fireAt"])
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
