"""Restore: a VM's backup as new disks (and a new VM) in its own region, started by the CLI."""

import azure.durable_functions as df

from shared.activities import restore
from shared.functions.wiring import register_activities, register_orchestrators
from shared.orchestrations.restore import restore_backup

bp = df.Blueprint()
register_orchestrators(bp, restore_backup)
register_activities(bp, restore.begin_restore_disks, restore.begin_restore_vm)
