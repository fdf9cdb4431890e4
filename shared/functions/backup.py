"""Backup: the fleet timer, the fleet and per-VM orchestrations, and their steps."""

import azure.durable_functions as df

from shared.activities import backup, changes, claims, retention
from shared.functions.wiring import (
    Payload,
    register_activities,
    register_orchestrators,
    register_timer,
    start_once,
)
from shared.orchestrations.backup import (
    after_backup,
    after_backup_instance_id,
    fleet_backup,
    fleet_backup_v2,
    fleet_backup_v3,
    fleet_backup_v4,
    vm_backup,
    vm_backup_v2,
    vm_backup_v3,
)

bp = df.Blueprint()
register_timer(bp, "fleet_backup_v4", "BACKUPDR_FLEET_BACKUP_SCHEDULE")
register_orchestrators(
    bp,
    fleet_backup,
    fleet_backup_v2,
    fleet_backup_v3,
    fleet_backup_v4,
    vm_backup,
    vm_backup_v2,
    vm_backup_v3,
    after_backup,
)
register_activities(
    bp,
    backup.list_due_vms,
    backup.begin_backup,
    backup.check_backup,
    backup.fail_backup,
    changes.measure_backup,
    retention.apply_retention,
    retention.fail_retention,
    # Claims are taken and released by the backup and replication workflows alike.
    claims.claim_work,
    claims.release_claim,
)


@bp.activity_trigger(input_name="payload")
@bp.durable_client_input(client_name="client")
async def begin_after_backup(payload: Payload, client: df.DurableOrchestrationClient) -> Payload:
    """Start a backup's follow-up (`after_backup`) as an orchestration of its own, so that
    neither the backup nor the fleet run waits for it.

    Input: {vm_key, backup_id}."""
    ref = {key: payload[key] for key in ("vm_key", "backup_id")}
    return await start_once(
        client, "after_backup", after_backup_instance_id(payload["backup_id"]), ref
    )
