"""Sweeper: the hourly timer that removes expired test resources a crash left behind, and the
clean-up steps it shares with every DR test and verification."""

import azure.durable_functions as df

from shared.activities import cleanup
from shared.functions.wiring import register_activities, register_orchestrators, register_timer
from shared.orchestrations.sweeper import sweeper

bp = df.Blueprint()
register_timer(bp, "sweeper", "BACKUPDR_SWEEPER_SCHEDULE")
register_orchestrators(bp, sweeper)
register_activities(
    bp, cleanup.list_expired_tests, cleanup.begin_test_cleanup, cleanup.check_test_cleanup
)
