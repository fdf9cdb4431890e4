"""Nothing is lost: a backup that fails midway leaves no snapshot the catalog does not know of,
retention clears a failing VM's partial snapshots, every failed backup is an event (and its
alert), and a backup of no disks is never completed or verified.

Through the gateway on the real SDK clients against the ARM simulator, the local durable host,
and Azurite's catalog.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from local.armsim import FaultRule
from local.azurite import Azurite
from local.stack import FLEETS, Stack, local_stack
from shared.activities.backup import MAX_ATTEMPTS, begin_backup, check_backup, fail_backup
from shared.activities.verification import record_verification
from shared.adapters.telemetry import captured_events
from shared.domain import names
from shared.domain.models import VM, Backup, BackupState, Tier, VerificationState
from shared.errors import PermanentError, TransientError
from shared.ports import ComputeGateway
from shared.services import Services, install

START = datetime(2026, 11, 10, tzinfo=UTC)
GROUP = "rg-app-eastus"
WEB = f"{GROUP}~web-01"  # tiny fleet: daily 02:00, an OS disk and a data disk (lun0)
DB = f"{GROUP}~db-01"  # tiny fleet: daily 02:00, an OS disk only
SLOT = datetime(2026, 11, 9, 2, tzinfo=UTC)  # the slot due at START
NO_DISKS = "no managed disks to back up"
_prefixes = (f"partial{n}" for n in itertools.count())


@pytest.fixture
def stack(azurite: Azurite) -> Iterator[Stack]:
    with local_stack(
        FLEETS / "tiny.json", start=START, azurite=azurite, table_prefix=next(_prefixes)
    ) as running:
        yield running


class _Gateway:
    """The stack's gateway with one method replaced, like a fault Azure or the VM brings."""

    def __init__(self, inner: ComputeGateway, method: str, call: Callable[..., Any]) -> None:
        self._inner, self._method, self._call = inner, method, call

    def __getattr__(self, name: str) -> Any:
        return self._call if name == self._method else getattr(self._inner, name)


def _replace_gateway(stack: Stack, method: str, call: Callable[..., Any]) -> None:
    svc = stack.services
    gateway = _Gateway(svc.gateway, method, call)
    stack.services = Services(svc.settings, gateway, svc.catalog, svc.clock)
    install(stack.services)


def _backups(stack: Stack, vm_key: str) -> list[Backup]:
    return stack.services.catalog.list_backups(vm_key, include_deleted=True)


def _catalogued(stack: Stack) -> set[str]:
    """Every snapshot (and replica) id any catalog row names, deleted rows included."""
    rows = [b for key in (WEB, DB) for b in _backups(stack, key)]
    ids = [i for b in rows for ref in b.snapshots for i in (ref.snapshot_id, ref.replica_id)]
    return {i.lower() for i in ids if i}


def _in_azure(stack: Stack, vm_name: str = "") -> set[str]:
    return {
        s["id"].lower()
        for s in stack.simulator.snapshots()
        if f"/snapshots/{vm_name}" in s["id"].lower()
    }


def _one_fleet_run(stack: Stack) -> dict[str, Any]:
    instance = stack.host.start("fleet_backup_v4", instance_id="fleet-1")
    stack.host.run_until_idle()
    output: dict[str, Any] = stack.host.status(instance).output
    return output


def _web_01_data_disk_put_fails(stack: Stack) -> None:
    """Every PUT of web-01's second snapshot (its data disk, lun0) answers 500."""
    stack.simulator.add_fault(
        FaultRule(operation="snapshots.create", resource="*/snapshots/web-01-lun0-*", kind="5xx")
    )


# -- 1. a backup that fails midway leaves no uncatalogued snapshot ---------------------------


def test_every_snapshot_is_recorded_before_the_first_put_and_a_retry_puts_the_same(
    stack: Stack,
) -> None:
    _web_01_data_disk_put_fails(stack)
    item = {"resource_group": GROUP, "name": "web-01", "slot": SLOT.isoformat()}
    with pytest.raises(TransientError):
        begin_backup(item, stack.services)
    [backup] = _backups(stack, WEB)
    assert backup.state is BackupState.CREATING
    assert [ref.disk_role for ref in backup.snapshots] == ["os", "lun0"]
    planned = {ref.snapshot_id.lower() for ref in backup.snapshots}
    assert len(_in_azure(stack, "web-01")) == 1, "the OS disk's snapshot was taken"
    assert _in_azure(stack) <= planned

    stack.clock.advance(600)
    with pytest.raises(TransientError):  # the activity retried: the same try, the same row
        begin_backup(item, stack.services)
    assert _backups(stack, WEB) == [backup]
    assert len(_in_azure(stack, "web-01")) == 1, "the same name, no second snapshot"
    failed = fail_backup(
        {**item, "vm_key": WEB, "backup_id": backup.backup_id, "error": "500"}, stack.services
    )
    assert failed["state"] == "failed"

    stack.simulator.clear_faults()
    stack.clock.advance(600)
    begun = begin_backup(item, stack.services)  # the next run retries the failed slot
    assert begun["state"] == "creating"
    [retried] = _backups(stack, WEB)
    assert (retried.state, retried.taken_at, retried.tier, retried.attempts) == (
        BackupState.CREATING,
        backup.taken_at,
        backup.tier,
        backup.attempts + 1,
    )
    assert {ref.snapshot_id.lower() for ref in retried.snapshots} == planned
    assert _in_azure(stack) == planned, "the same names, no second snapshot"


def test_a_backup_whose_second_snapshot_cannot_be_taken_leaves_no_unknown_snapshot(
    stack: Stack,
) -> None:
    _web_01_data_disk_put_fails(stack)
    output = _one_fleet_run(stack)
    assert (output["completed"], output["failed"]) == (1, 1)
    [failed] = _backups(stack, WEB)
    assert failed.state is not BackupState.COMPLETED
    assert [ref.disk_role for ref in failed.snapshots] == ["os", "lun0"]
    assert _in_azure(stack) <= _catalogued(stack)
    assert _backups(stack, DB)[0].state is BackupState.COMPLETED, "one VM's failure stays its own"


# -- 2. retention runs after a failed backup ---------------------------------------------------


def test_a_vm_that_fails_every_day_keeps_at_most_its_newest_failed_slots_snapshots(
    stack: Stack,
) -> None:
    svc = stack.services

    def refused(**kwargs: Any) -> Any:
        if kwargs["disk"].role == "lun0" and "web-01" in kwargs["name"]:
            raise PermanentError("snapshot PUT refused: disk web-01_lun0 is not accessible")
        return svc.gateway.begin_snapshot(**kwargs)

    _replace_gateway(stack, "begin_snapshot", refused)
    stack.host.run_timers(until=START + timedelta(days=4, hours=6))
    backups = _backups(stack, WEB)
    assert len({b.slot for b in backups}) == 6, "tried at every slot, 9 to 14 November"
    assert not [b for b in backups if b.state is BackupState.COMPLETED]
    assert all(b.attempts <= MAX_ATTEMPTS for b in backups)
    newest = max(backups, key=lambda b: b.slot)
    assert _in_azure(stack, "web-01") <= {ref.snapshot_id.lower() for ref in newest.snapshots}
    assert _in_azure(stack) <= _catalogued(stack)


# -- 3. a failed backup is an event, even when it failed before its row was written ------------


def test_a_backup_whose_network_cannot_be_read_is_a_backup_failed_event(stack: Stack) -> None:
    # The run's list of NICs fails, so each backup reads its own; db-01's cannot be read.
    stack.simulator.add_fault(FaultRule(operation="nics.list", kind="5xx"))
    stack.simulator.add_fault(FaultRule(operation="nics.get", resource="*/db-01*", kind="5xx"))
    with captured_events() as events:
        output = _one_fleet_run(stack)
    assert _backups(stack, DB) == [], "no row: the VM's network was never read"
    [failed] = [e for e in events if e["event"] == "BackupFailed"]
    assert failed["vm"] == DB
    assert failed["backup_id"] == names.backup_id(DB, SLOT)
    assert "db-01" in str(failed["error"])
    assert "sig=" not in str(failed["error"])
    assert (output["completed"], output["failed"]) == (1, 1)


# -- 4. a backup of no disks is never completed or verified ----------------------------------


def _without_disks(vm: VM) -> VM:
    return dataclasses.replace(vm, disks=()) if vm.name == "db-01" else vm


def test_a_vm_with_no_managed_disks_is_not_protectable_and_nothing_is_recorded(
    stack: Stack,
) -> None:
    gateway = stack.services.gateway

    def page_without_disks(page: str | None) -> tuple[list[VM], str | None]:
        vms, next_page = gateway.list_vms_page(page)
        return [_without_disks(v) for v in vms], next_page

    _replace_gateway(stack, "list_vms_page", page_without_disks)
    output = _one_fleet_run(stack)
    assert output["not_protectable"] == [{"vm": "db-01", "vm_key": DB, "reason": NO_DISKS}]
    assert output["completed"] == 1
    assert _backups(stack, DB) == []

    _replace_gateway(
        stack, "get_vm", lambda group, name: _without_disks(gateway.get_vm(group, name))
    )
    item = {"resource_group": GROUP, "name": "db-01", "slot": SLOT.isoformat()}
    begun = begin_backup(item, stack.services)
    assert (begun["state"], begun["error"]) == ("not_protectable", NO_DISKS)
    assert _backups(stack, DB) == []


def _zero_disk_backup(stack: Stack, state: BackupState) -> Backup:
    """A row of no snapshots, as an older app version could have written one."""
    vm = stack.services.gateway.get_vm(GROUP, "db-01")
    backup = Backup(
        backup_id=names.backup_id(DB, SLOT),
        vm_key=DB,
        vm_id=vm.id,
        vm_name=vm.name,
        region=vm.location,
        slot=SLOT,
        taken_at=START,
        tier=Tier.MONTHLY,
        state=state,
    )
    stack.services.catalog.save_backup(backup)
    return backup


def test_a_backup_of_no_snapshots_is_failed_not_completed(stack: Stack) -> None:
    backup = _zero_disk_backup(stack, BackupState.CREATING)
    ref = {"vm_key": DB, "backup_id": backup.backup_id}
    with captured_events() as events:
        checked = check_backup(ref, stack.services)
    assert checked["state"] == "failed"
    assert NO_DISKS in checked["error"]
    [row] = _backups(stack, DB)
    assert row.state is BackupState.FAILED
    assert [e["event"] for e in events] == ["BackupFailed"]


def test_a_backup_of_no_snapshots_never_passes_verification(stack: Stack) -> None:
    backup = _zero_disk_backup(stack, BackupState.COMPLETED)
    checks = {"test_disk_created": True, "size_matches": True, "disk_readable": True}
    recorded = record_verification(
        {
            "vm_key": DB,
            "backup_id": backup.backup_id,
            "test_id": "verify-zero-disks",
            "started": START.isoformat(),
            "checks": checks,
            "error": None,
            "cleanup_ok": True,
        },
        stack.services,
    )
    assert recorded["success"] is False
    assert "no snapshots" in recorded["error_message"]
    [row] = _backups(stack, DB)
    assert row.verification is VerificationState.FAILED
