"""Replication: the catch-up timer, the per-backup copy orchestration, and their steps."""

import azure.durable_functions as df

from shared.activities import replication
from shared.functions.wiring import (
    Payload,
    register_activities,
    register_orchestrators,
    register_timer,
    start_once,
)
from shared.orchestrations.replication import (
    replicate_backup,
    replicate_pending,
    replication_instance_id,
)

bp = df.Blueprint()
register_timer(bp, "replicate_pending", "BACKUPDR_REPLICATE_SCHEDULE")
register_orchestrators(bp, replicate_backup, replicate_pending)
register_activities(
    bp,
    replication.list_pending_replications,
    replication.start_replication,
    replication.check_replication,
    replication.fail_replication,
)


@bp.activity_trigger(input_name="payload")
@bp.durable_client_input(client_name="client")
async def begin_replication(payload: Payload, client: df.DurableOrchestrationClient) -> Payload:
    """Start a backup's copy as an orchestration of its own (`replicate-<backup id>`, the id
    the CLI starts it under), so that the backup that asks for it does not wait for it. Once an
    instance of that id exists, in any state, a repeat starts nothing: a copy that failed is
    the catch-up run's to retry.

    Input: {vm_key, backup_id, target_region}."""
    item = {key: payload[key] for key in ("vm_key", "backup_id", "target_region")}
    return await start_once(
        client, "replicate_backup", replication_instance_id(payload["backup_id"]), item
    )
