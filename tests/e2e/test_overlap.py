"""Overlapping runs on a host as strict as Durable on Azure Storage start no work twice.

Snapshots and copies are slow here, so every backup is still running when the next fleet tick,
a catch-up run and a manual request for the same VM arrive, and every replication is still
copying when the catch-up timer lists pending copies. On Azure Storage a sub-orchestration
started under a running instance's id replaces it and strands its parent; the local host does
the same, so any reliance on the engine to deduplicate would leave instances Running forever.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import azure.functions as func
import pytest

from function_app import build_app
from local.armsim import Durations
from local.azurite import Azurite
from local.stack import FLEETS, Stack, local_stack
from shared.domain.models import BackupState
from shared.domain.policy import PolicyError, policy_for
from shared.domain.schedule import next_slot, slot_at

START = datetime(2026, 11, 2, tzinfo=UTC)
DAYS = 10
END = START + timedelta(days=DAYS)
MANUAL_VM = "web-eastus-01"
SETTINGS = {
    # Production's 15-minute fleet tick over the hours where the fleet's slots fall.
    "BACKUPDR_FLEET_BACKUP_SCHEDULE": "0 */15 0-3 * * *",
    "BACKUPDR_REPLICATE_SCHEDULE": "0 7,37 * * * *",
    "BACKUPDR_VERIFY_SCHEDULE": "0 20 4 * * *",
    "BACKUPDR_DRTEST_SCHEDULE": "0 0 5 * * *",
    "BACKUPDR_SWEEPER_SCHEDULE": "0 45 5 * * *",
    "BACKUPDR_MANUAL_LIMIT_PER_HOUR": "10",
}
# Snapshots outlast two fleet ticks; copies outlast two catch-up runs.
SLOW = Durations(snapshot_seconds=40 * 60, copy_base_seconds=90 * 60)
# Soft-deleted, purging, deleted: expired by retention since.
TAKEN = {
    BackupState.COMPLETED,
    BackupState.SOFT_DELETED,
    BackupState.PURGING,
    BackupState.DELETED,
}
NOT_OUTCOMES = ("total", "under_way", "misconfigured", "not_protectable")
_prefixes = (f"overlap{n}" for n in itertools.count())


@pytest.fixture(scope="module")
def ran(azurite: Azurite) -> Iterator[Stack]:
    with local_stack(
        FLEETS / "demo-small.json",
        start=START,
        durations=SLOW,
        azurite=azurite,
        table_prefix=next(_prefixes),
        settings=SETTINGS,
    ) as stack:
        host = stack.host
        for day in range(DAYS):
            midnight = START + timedelta(days=day)
            if day == DAYS // 2:  # a deployment while copies and backups are in flight
                host.run_timers(until=midnight + timedelta(hours=2, minutes=10))
                host.redeploy(build_app())
            host.run_timers(until=midnight + timedelta(hours=2, minutes=20))
            host.start("fleet_backup_v4", instance_id=f"catch-up-{day}")
            host.run_timers(until=midnight + timedelta(hours=2, minutes=40))
            host.start("replicate_pending", instance_id=f"replicate-catch-up-{day}")
            # After its own slot's backup and copy: the manual backup's copy then overlaps
            # the catch-up timer's runs.
            host.run_timers(until=midnight + timedelta(hours=4, minutes=30))
            request = func.HttpRequest(
                method="POST", url=f"http://localhost/api/backups/{MANUAL_VM}", body=b""
            )
            assert host.call_http("start_backup", request).status_code == 202
        host.run_timers(until=END)
        host.run_until_idle()  # everything started has run to its end
        yield stack


def test_no_instance_is_left_running_and_none_was_replaced(ran: Stack) -> None:
    statuses = ran.host.instances()
    assert [s.instance_id for s in statuses if s.runtime_status in ("Running", "Pending")] == []
    assert ran.host.replaced == []
    assert {s.runtime_status for s in statuses} == {"Completed"}


def test_every_slot_has_exactly_one_backup_and_each_snapshot_was_created_once(ran: Stack) -> None:
    catalog = ran.services.catalog
    for vm in ran.services.gateway.list_vms():
        try:
            policy = policy_for(vm, ran.services.settings.regions)
        except PolicyError:
            continue
        if policy is None:
            continue
        scheduled = [b for b in catalog.list_backups(vm.key, include_deleted=True) if not b.manual]
        assert sorted(b.slot for b in scheduled) == _slots(policy.schedule), vm.name
        assert {b.state for b in scheduled} <= TAKEN, vm.name
    creates = Counter(
        entry.resource_id
        for entry in catalog.audit_entries(since=START)
        if entry.action == "create" and entry.operation in ("snapshot", "replicate")
    )
    assert creates, "the run created nothing"
    assert [rid for rid, n in creates.items() if n > 1] == []


def test_fleet_outcomes_are_counted_per_vm_and_add_up(ran: Stack) -> None:
    runs = [s for s in ran.host.instances() if s.name == "fleet_backup_v4"]
    assert any(run.instance_id.startswith("catch-up-") for run in runs)
    for run in runs:
        counts = {k: v for k, v in run.output.items() if k not in NOT_OUTCOMES}
        assert sum(counts.values()) == run.output["total"], run.instance_id
    completed = sum(run.output.get("completed", 0) for run in runs)
    scheduled = [
        b
        for vm in ran.services.gateway.list_vms()
        for b in ran.services.catalog.list_backups(vm.key, include_deleted=True)
        if not b.manual and b.state in TAKEN
    ]
    assert completed == len(scheduled)
    assert sum(run.output["under_way"] for run in runs) > 0  # the overlaps did happen


def test_each_replication_ran_once_though_the_backup_and_the_catch_up_both_asked(
    ran: Stack,
) -> None:
    catch_ups = [s for s in ran.host.instances() if s.name == "replicate_pending"]
    under_way = [
        s
        for s in ran.host.instances()
        if s.name == "replicate_backup" and (s.output or {}).get("state") == "under_way"
    ]
    assert catch_ups
    assert under_way or all(s.output["total"] == 0 for s in catch_ups)
    replicated = [
        b
        for vm in ran.services.gateway.list_vms()
        for b in ran.services.catalog.list_backups(vm.key)
        if b.replica_region and b.state is BackupState.COMPLETED
    ]
    assert replicated
    assert all(str(b.replication_status) == "completed" for b in replicated[:-12])


def test_the_fleet_run_keeps_keys_and_counts_in_its_history_not_vm_records(ran: Stack) -> None:
    runs = [s for s in ran.host.instances() if s.name == "fleet_backup_v4"]
    biggest = max(ran.host.sizes(run.instance_id).history for run in runs)
    assert biggest < 64 * 1024


def _slots(cron: str) -> list[datetime]:
    """The schedule's slots the run covers: the one due at the start (caught up once), then
    every later one."""
    found = [slot_at(cron, START)]
    while (moment := next_slot(cron, found[-1])) <= END:
        found.append(moment)
    return found
