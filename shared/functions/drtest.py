"""DR tests: the cadence timer, the DR test chain, and its steps."""

import azure.durable_functions as df

from shared.activities import drtest
from shared.functions.wiring import register_activities, register_orchestrators, register_timer
from shared.orchestrations.drtest import dr_test, dr_test_v2, dr_tests, dr_tests_v2

bp = df.Blueprint()
register_timer(bp, "dr_tests_v2", "BACKUPDR_DRTEST_SCHEDULE")
# `dr_tests` and `dr_test` (and the steps only `dr_test` calls) stay registered, unchanged, until
# none of their instances is Pending or Running.
register_orchestrators(bp, dr_tests_v2, dr_test_v2, dr_tests, dr_test)
register_activities(
    bp,
    drtest.list_dr_tests_due,
    drtest.plan_dr_test,
    drtest.prepare_dr_test,
    drtest.begin_dr_restore,
    drtest.check_dr_disks,
    drtest.begin_dr_vm,
    drtest.check_dr_vm,
    drtest.begin_dr_guest_check,
    drtest.check_dr_guest,
    drtest.record_dr_test,
)
