"""Backup: the fleet timer, the fleet and per-VM orchestrations, and their steps."""

import azure.durable_functions as df

from shared.activities import backup, claims, retention
from shared.functions.wiring import register_activities, register_orchestrators, register_timer
from shared.orchestrations.backup import (
    fleet_backup,
    fleet_backup_v2,
    fleet_backup_v3,
    vm_backup,
    vm_backup_v2,
)

bp = df.Blueprint()
register_timer(bp, "fleet_backup_v3", "BACKUPDR_FLEET_BACKUP_SCHEDULE")
register_orchestrators(bp, fleet_backup, fleet_backup_v2, fleet_backup_v3, vm_backup, vm_backup_v2)
register_activities(
    bp,
    backup.list_due_vms,
    backup.begin_backup,
    backup.check_backup,
    backup.fail_backup,
    retention.apply_retention,
    retention.fail_retention,
    # Claims are taken and released by the backup and replication workflows alike.
    claims.claim_work,
    claims.release_claim,
)
