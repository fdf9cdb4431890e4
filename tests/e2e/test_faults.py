"""Injected faults end in recorded, correct states: nothing duplicated, nothing kept is deleted,
failed DR tests are cleaned up, and failures show in the catalog with sanitised messages."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from local.armsim import FaultRule
from local.azurite import Azurite
from local.stack import FLEETS, Stack, local_stack
from shared.domain.models import Backup, BackupState, ReplicationStatus
from shared.domain.policy import policy_for
from shared.domain.retention import plan_retention
from shared.ports import ComputeGateway
from shared.services import Services, install

START = datetime(2026, 11, 10, tzinfo=UTC)
WEB = "rg-app-eastus~web-01"  # tiny fleet: daily 02:00, replicates to westus2
DB = "rg-app-eastus~db-01"  # tiny fleet: daily 02:00, no replication
_prefixes = (f"faults{n}" for n in itertools.count())


@pytest.fixture
def stack(azurite: Azurite) -> Iterator[Stack]:
    with local_stack(
        FLEETS / "tiny.json", start=START, azurite=azurite, table_prefix=next(_prefixes)
    ) as running:
        yield running


def _backups(stack: Stack, vm_key: str) -> list[Backup]:
    return stack.services.catalog.list_backups(vm_key, include_deleted=True)


def _one_backup_per_slot(stack: Stack, vm_key: str) -> list[Backup]:
    backups = _backups(stack, vm_key)
    slots = [b.slot for b in backups]
    assert len(slots) == len(set(slots)), "a slot was backed up twice"
    return backups


def _app_snapshots(stack: Stack) -> list[str]:
    return sorted(s["id"] for s in stack.simulator.snapshots())


def test_a_429_storm_delays_backups_but_loses_and_duplicates_none(stack: Stack) -> None:
    stack.simulator.add_fault(FaultRule(operation="snapshots.*", kind="429", count=12))
    stack.host.run_timers(until=START + timedelta(days=2))
    for vm_key in (WEB, DB):
        backups = _one_backup_per_slot(stack, vm_key)
        assert [b.state for b in backups] == [BackupState.COMPLETED] * 3
    assert len(_app_snapshots(stack)) == len(set(_app_snapshots(stack)))


def test_5xx_on_snapshot_reads_are_retried_to_completion(stack: Stack) -> None:
    stack.simulator.add_fault(FaultRule(operation="snapshots.get", kind="5xx", count=6))
    stack.host.run_timers(until=START + timedelta(days=1))
    assert all(b.state is BackupState.COMPLETED for b in _one_backup_per_slot(stack, DB))


def test_a_failed_copy_is_recorded_then_caught_up(stack: Stack) -> None:
    stack.simulator.add_fault(FaultRule(operation="snapshots.copy", kind="copy-fails", count=1))
    stack.host.run_timers(until=START + timedelta(hours=1))
    jobs = stack.services.catalog.list_replication_jobs(vm_key=WEB)
    failed = [j for j in jobs if j.status is ReplicationStatus.FAILED]
    assert failed
    assert all(j.error_message for j in failed)
    stack.host.run_timers(until=START + timedelta(hours=6))
    first = _backups(stack, WEB)[-1]
    assert first.replication_status is ReplicationStatus.COMPLETED
    assert all(ref.replica_id for ref in first.snapshots)


def test_a_region_outage_during_replication_fails_the_copy_then_catches_up(stack: Stack) -> None:
    stack.simulator.add_fault(FaultRule(kind="region-outage", region="westus2"))
    stack.host.run_timers(until=START + timedelta(hours=3))
    first = _backups(stack, WEB)[-1]
    assert first.state is BackupState.COMPLETED, "the source region is fine"
    assert first.replication_status is ReplicationStatus.FAILED
    jobs = stack.services.catalog.list_replication_jobs(vm_key=WEB)
    assert any("ServiceUnavailable" in (j.error_message or "") for j in jobs)
    stack.simulator.clear_faults()
    stack.host.run_timers(until=START + timedelta(hours=8))
    assert _backups(stack, WEB)[-1].replication_status is ReplicationStatus.COMPLETED


def test_a_long_region_outage_costs_a_few_backed_off_attempts_not_one_per_run(
    stack: Stack,
) -> None:
    stack.simulator.add_fault(FaultRule(kind="region-outage", region="westus2"))
    stack.host.run_timers(until=START + timedelta(hours=12))
    first = _backups(stack, WEB)[-1]
    jobs = stack.services.catalog.list_replication_jobs(vm_key=WEB)
    attempts = {j.id.rsplit("-", 1)[-1] for j in jobs if j.backup_id == first.backup_id}
    assert all(j.status is ReplicationStatus.FAILED for j in jobs)
    assert 3 <= len(attempts) <= 6, "24 catch-up runs, backoff 30 min doubling"


def test_a_restored_vm_that_never_boots_fails_the_dr_test_and_is_cleaned_up(
    stack: Stack,
) -> None:
    stack.host.run_timers(until=START + timedelta(hours=2))  # a backup with a replica
    stack.simulator.add_fault(FaultRule(operation="vms.create", kind="never-boots"))
    instance = stack.host.start("dr_test_v2", input={"vm_key": WEB, "test_region": "westus2"})
    stack.host.run_until_idle()
    [test] = stack.services.catalog.dr_history(WEB, now=stack.clock.now(), days=1)
    assert stack.host.status(instance).output["id"] == test.id
    assert (test.success, test.restore_succeeded, test.boot_succeeded) == (False, True, False)
    assert test.cleanup_succeeded
    assert "boot" in (test.error_message or "")
    assert test.phase_seconds["boot"] >= 15 * 60, "the failed boot wait counts as boot time"
    assert [r for r in stack.simulator.vms() if "drtest" in r["id"]] == []
    assert [r for r in stack.simulator.disks() if "drtest" in r["id"]] == []
    assert [r for r in stack.simulator.nics() if "drtest" in r["id"]] == []


class _CrashAfter:
    """A gateway whose `method` does its work in Azure and then dies, like a crashed worker."""

    def __init__(self, inner: ComputeGateway, method: str, times: int) -> None:
        self._inner, self._method, self._left = inner, method, times

    def __getattr__(self, name: str) -> Any:
        call: Callable[..., Any] = getattr(self._inner, name)
        if name != self._method:
            return call

        def crashing(*args: Any, **kwargs: Any) -> Any:
            result = call(*args, **kwargs)
            if self._left > 0:
                self._left -= 1
                raise ConnectionResetError("worker died after the PUT")
            return result

        return crashing


def test_an_activity_that_crashes_after_its_snapshot_is_retried_without_a_duplicate(
    stack: Stack,
) -> None:
    svc = stack.services
    install(
        Services(
            svc.settings, _CrashAfter(svc.gateway, "begin_snapshot", 2), svc.catalog, svc.clock
        )
    )
    stack.host.run_timers(until=START + timedelta(hours=1))
    backups = _one_backup_per_slot(stack, DB)
    assert [b.state for b in backups] == [BackupState.COMPLETED]
    disks = len(backups[0].snapshots)
    assert sum(1 for s in _app_snapshots(stack) if "db-01" in s) == disks


def test_a_backup_that_cannot_be_taken_is_recorded_failed_with_a_sanitised_reason(
    stack: Stack,
) -> None:
    stack.simulator.add_fault(
        FaultRule(operation="snapshots.create", resource="*db-01*", kind="fail-operation")
    )
    stack.host.run_timers(until=START + timedelta(hours=1))
    backup = _backups(stack, DB)[0]
    assert backup.state is BackupState.FAILED
    assert backup.error_message
    assert "sig=" not in backup.error_message
    assert _backups(stack, WEB)[0].state is BackupState.COMPLETED, "one VM's failure stays its own"


def test_an_overlapping_fleet_run_for_the_same_slot_starts_no_second_backup(
    stack: Stack,
) -> None:
    stack.clock.advance_to(START + timedelta(hours=2, minutes=5))
    first = stack.host.start("fleet_backup_v4", instance_id="fleet-a")
    second = stack.host.start("fleet_backup_v4", instance_id="fleet-b")
    stack.host.run_until_idle()
    for vm_key in (WEB, DB):
        assert len(_one_backup_per_slot(stack, vm_key)) == 1
    outputs = [stack.host.status(i).output for i in (first, second)]
    assert sum(o.get("completed", 0) for o in outputs) == 2
    snapshots = _app_snapshots(stack)
    assert len(snapshots) == len(set(snapshots))


def test_retention_never_deletes_a_backup_the_plan_keeps_under_delete_faults(
    azurite: Azurite,
) -> None:
    with local_stack(
        FLEETS / "tiny.json",
        start=START,
        azurite=azurite,
        table_prefix=next(_prefixes),
        settings={"BACKUPDR_SOFT_DELETE_DAYS": "1"},  # purges (the deletes) within the run
    ) as stack:
        stack.simulator.add_fault(
            FaultRule(operation="snapshots.delete", kind="5xx", probability=0.3)
        )
        stack.host.run_timers(until=START + timedelta(days=10))
        _plan_keeps_what_is_live(stack)


def _plan_keeps_what_is_live(stack: Stack) -> None:
    vm = next(v for v in stack.services.gateway.list_vms() if v.key == WEB)
    history = _backups(stack, WEB)
    live = [b for b in history if b.state is BackupState.COMPLETED]
    assert any(b.state is BackupState.DELETED for b in history), "retention purged something"
    plan = plan_retention(live, policy_for(vm, stack.services.settings.regions), stack.clock.now())
    assert set(plan.to_keep) == {b.backup_id for b in live}
    for backup in live:
        for ref in backup.snapshots:
            assert (
                stack.services.gateway.get_snapshot(ref.snapshot_id).provisioning_state
                == "Succeeded"
            )
