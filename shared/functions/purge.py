"""Purge: the daily timer that deletes finished workflow histories from the task hub.

The Durable extension keeps every instance's history and status until someone purges them, so a
task hub grows with every fleet run, backup and poll. Results that matter are in the catalog;
the task hub only needs what is running and what is recent enough to diagnose.
"""

import logging
from datetime import UTC, datetime, timedelta

import azure.durable_functions as df
import azure.functions as func

from shared.services import services

bp = df.Blueprint()
log = logging.getLogger("backupdr.functions")

FINISHED = [
    df.OrchestrationRuntimeStatus.Completed,
    df.OrchestrationRuntimeStatus.Failed,
    df.OrchestrationRuntimeStatus.Terminated,
]
# The extension refuses a purge without createdTimeFrom (400, "Please provide value for
# 'createdTimeFrom' parameter."); the Unix epoch is before any instance of this app.
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@bp.timer_trigger(schedule="%BACKUPDR_PURGE_SCHEDULE%", arg_name="timer")
@bp.durable_client_input(client_name="client")
async def purge_history_timer(
    timer: func.TimerRequest, client: df.DurableOrchestrationClient
) -> None:
    """Purge instances that finished (Completed, Failed, Terminated) and were created before the
    retention window; running instances are never touched, however old.

    One purge call, not an orchestration: it is a single request to the extension, and an
    orchestration would only add its own history to the hub it is trimming.
    """
    svc = services()
    cutoff = svc.clock.now().astimezone(UTC) - timedelta(days=svc.settings.history_retention_days)
    result = await client.purge_instance_history_by(
        created_time_from=EPOCH, created_time_to=cutoff, runtime_status=FINISHED
    )
    log.info(
        "purged %d finished instance histories created before %s",
        result.instances_deleted,
        cutoff.isoformat(),
    )
