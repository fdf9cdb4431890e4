"""Every activity may run twice, even after it succeeded (queue messages are delivered at least
once): the same days with each successful activity run a second time end in the same state."""

from __future__ import annotations

import itertools
import logging
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from local.azurite import Azurite
from local.demo import DEMO_SETTINGS
from local.stack import FLEETS, local_stack
from shared.adapters import telemetry

START = datetime(2026, 11, 2, tzinfo=UTC)
DAYS = 8  # a week and a day: daily and weekly backups, verifications and DR tests all run
# Outcome events: one per outcome however often a step runs. Observations, and the report of
# each retention run (a repeated run reports itself), may repeat.
# AuditRecorded goes to Application Insights each time a call is audited, so a step run twice
# sends its entry twice; the audit table keeps one row (the "audit" part checks that).
OUTCOMES = {
    name
    for name in telemetry.EVENTS
    if not name.endswith("Observed") and name not in {"RetentionApplied", "AuditRecorded"}
}
_prefixes = (f"twice{n}" for n in itertools.count())


class _Events(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.seen: Counter[tuple[str, str, str]] = Counter()

    def emit(self, record: logging.LogRecord) -> None:
        name = record.getMessage()
        if name in OUTCOMES:
            self.seen[
                (name, str(getattr(record, "vm", "")), str(getattr(record, "backup_id", "")))
            ] += 1


def _run(azurite: Azurite, *, at_least_once: bool) -> dict[str, Any]:
    events = _Events()
    logger = logging.getLogger(telemetry.EVENTS_LOGGER)
    logger.addHandler(events)
    try:
        with local_stack(
            FLEETS / "demo-small.json",
            start=START,
            azurite=azurite,
            table_prefix=next(_prefixes),
            settings=DEMO_SETTINGS,
            at_least_once=at_least_once,
        ) as stack:
            stack.host.run_timers(until=START + timedelta(days=DAYS))
            stack.host.run_until_idle()
            catalog, now = stack.services.catalog, stack.clock.now()
            vms = sorted(vm.key for vm in stack.services.gateway.list_vms())
            # Moments and durations may shift (a repeated PUT answers with other poll hints);
            # what was done, and how it ended, may not.
            return {
                "backups": {
                    key: [
                        # when retention ran, and when its follow-up's reserved writes came: moments
                        {**b.to_dict(), "deleted_at": None, "measure_from": None}
                        for b in catalog.list_backups(key, include_deleted=True)
                    ]
                    for key in vms
                },
                "jobs": Counter(
                    (j.backup_id, j.disk_role, str(j.status))
                    for j in catalog.list_replication_jobs()
                ),
                "verifications": [
                    (v.vm_key, v.total, v.passed)
                    for v in catalog.verification_report(now=now, days=DAYS + 1)
                ],
                "dr_tests": {
                    key: [
                        (t.id, t.backup_name, t.success, t.cleanup_succeeded, t.error_message)
                        for t in catalog.dr_history(key, now=now, days=DAYS + 1)
                    ]
                    for key in vms
                },
                "audit": {
                    (e.action, e.resource_id, e.result) for e in catalog.audit_entries(since=START)
                },
                "snapshots": sorted(s["id"] for s in stack.simulator.snapshots()),
                "events": events.seen,
                "statuses": Counter(s.runtime_status for s in stack.host.instances()),
            }
    finally:
        logger.removeHandler(events)


@pytest.fixture(scope="module")
def runs(azurite: Azurite) -> tuple[dict[str, Any], dict[str, Any]]:
    return _run(azurite, at_least_once=False), _run(azurite, at_least_once=True)


@pytest.mark.parametrize(
    "part", ["backups", "jobs", "verifications", "dr_tests", "audit", "snapshots", "events"]
)
def test_running_every_activity_twice_ends_in_the_same_state(
    runs: tuple[dict[str, Any], dict[str, Any]], part: str
) -> None:
    once, twice = runs
    assert once[part], f"the run produced no {part}"
    assert twice[part] == once[part]


def test_every_instance_completes_when_activities_run_twice(
    runs: tuple[dict[str, Any], dict[str, Any]],
) -> None:
    once, twice = runs
    assert set(twice["statuses"]) == {"Completed"}
    assert twice["statuses"] == once["statuses"]
