"""Registering workflow pieces on a Blueprint, so each capability's module stays a short list."""

from __future__ import annotations

import logging
import typing
from collections.abc import Callable, Generator
from datetime import UTC, datetime
from typing import Any

import azure.durable_functions as df
import azure.functions as func

from shared.services import Services, services

# typing.Dict, not dict: the Functions worker refuses a PEP 585 generic on a bound parameter
# ("invalid non-type annotation") and then loads none of the app's functions.
Payload = typing.Dict[str, Any]  # noqa: UP006
Step = Callable[[Payload, Services], Payload]
Orchestrator = Callable[[Any], Generator[Any, Any, Any]]

log = logging.getLogger("backupdr.functions")


def register_activities(bp: df.Blueprint, *steps: Step) -> None:
    """Each step becomes an activity of the same name that runs with the installed services."""
    for step in steps:
        bp.activity_trigger(input_name="payload")(_activity(step))


def _activity(step: Step) -> Callable[[Payload], Payload]:
    def activity(payload: Payload) -> Payload:
        return step(payload, services())

    activity.__name__ = activity.__qualname__ = step.__name__
    activity.__doc__ = step.__doc__
    return activity


def register_orchestrators(bp: df.Blueprint, *orchestrators: Orchestrator) -> None:
    for orchestrator in orchestrators:
        bp.orchestration_trigger(context_name="context", input_type=dict)(orchestrator)


def register_timer(bp: df.Blueprint, orchestrator: str, schedule_setting: str) -> None:
    """A timer (NCRONTAB from an app setting) that starts `orchestrator` once per tick.

    The instance id is the tick's minute, so a tick delivered twice starts one orchestration.
    Every tick starts its own run, even while an earlier tick's run is still going: the runs
    claim their work in the catalog, so two of them never do the same work.
    """

    async def start(timer: func.TimerRequest, client: df.DurableOrchestrationClient) -> None:
        now = services().clock.now().astimezone(UTC)
        instance_id = f"{orchestrator}-{now:%Y%m%dt%H%M}"
        await start_unless_running(client, orchestrator, instance_id, None)

    start.__name__ = start.__qualname__ = f"{orchestrator}_timer"
    bp.timer_trigger(schedule=f"%{schedule_setting}%", arg_name="timer")(
        bp.durable_client_input(client_name="client")(start)
    )


RUNNING = (
    df.OrchestrationRuntimeStatus.Running,
    df.OrchestrationRuntimeStatus.Pending,
)


async def start_unless_running(
    client: df.DurableOrchestrationClient, orchestrator: str, instance_id: str, payload: Any
) -> bool:
    """Start an instance unless one with this id is already running; True if started."""
    status = await client.get_status(instance_id)
    if status is not None and status.runtime_status in RUNNING:
        log.info("%s is already running; not starting it again", instance_id)
        return False
    await client.start_new(orchestrator, instance_id=instance_id, client_input=payload)
    return True


async def start_once(
    client: df.DurableOrchestrationClient, orchestrator: str, instance_id: str, payload: Any
) -> Payload:
    """Start an orchestration that outlives the activity asking for it, unless an instance of
    that id exists in any state (a repeat of the step starts nothing). An activity may hold the
    client binding for this (Azure/azure-functions-durable-extension#87)."""
    status = await client.get_status(instance_id)
    if status is not None and status.runtime_status is not None:
        return {"instance_id": instance_id, "started": False}
    await client.start_new(orchestrator, instance_id=instance_id, client_input=payload)
    return {"instance_id": instance_id, "started": True}


def utc_now() -> datetime:
    return services().clock.now().astimezone(UTC)
