"""Verification: the timer, the orchestrations, and their steps (clean-up's are the sweeper's)."""

import azure.durable_functions as df

from shared.activities import verification
from shared.functions.wiring import register_activities, register_orchestrators, register_timer
from shared.orchestrations.verification import verify_backup, verify_backups

bp = df.Blueprint()
register_timer(bp, "verify_backups", "BACKUPDR_VERIFY_SCHEDULE")
register_orchestrators(bp, verify_backups, verify_backup)
register_activities(
    bp,
    verification.list_verifications_due,
    verification.begin_verification,
    verification.check_verification,
    verification.record_verification,
)
