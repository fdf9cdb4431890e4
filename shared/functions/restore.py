"""Restore: a VM's backup (or its replica) as new disks and a new VM, started by the CLI."""

import azure.durable_functions as df

from shared.activities import restore
from shared.functions.wiring import register_activities, register_orchestrators
from shared.orchestrations.restore import restore_backup, restore_backup_v2

bp = df.Blueprint()
# restore_backup stays registered for instances started before restore_backup_v2 (README).
register_orchestrators(bp, restore_backup, restore_backup_v2)
register_activities(
    bp,
    restore.check_restore,
    restore.begin_restore_disks,
    restore.begin_restore_vm,
    restore.list_restored,
    restore.record_restore,
)
