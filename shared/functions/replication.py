"""Replication: the catch-up timer, the per-backup copy orchestration, and their steps."""

import azure.durable_functions as df

from shared.activities import replication
from shared.functions.wiring import register_activities, register_orchestrators, register_timer
from shared.orchestrations.replication import replicate_backup, replicate_pending

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
