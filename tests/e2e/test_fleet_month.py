"""Thirty simulated days of the app's own timers over a realistic fleet, through the local host.

The fleet (local/fleets/realistic.json) mixes generation 1 and 2 VMs, Trusted Launch, Windows and
Linux, Standard HDD / Standard SSD / Premium disks, zonal and regional VMs with up to four data
disks, VM names at Azure's 64-character limit, several resource groups in two regions, and VMs
the app cannot protect (an ephemeral OS disk, unmanaged VHDs).

Azurite holds the catalog, the ARM simulator plays Azure over HTTPS, and the workflows run in the
real azure-functions-durable executor. The assertions read the end state: the catalog, the
simulator's resources and request log, and what `plan_retention` says about them.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from croniter import croniter

from local.azurite import Azurite
from local.stack import FLEETS, Stack, local_stack
from shared.domain.models import VM, Backup, BackupState, ReplicationStatus, VerificationState
from shared.domain.policy import BackupPolicy, Cadence, PolicyError, policy_for
from shared.domain.retention import plan_retention
from shared.domain.schedule import slot_at
from shared.domain.tiers import tier_for
from shared.health import fleet_status

START = datetime(2026, 11, 10, tzinfo=UTC)  # crosses a month end and several ISO weeks
END = START + timedelta(days=30)
PHASES = {"restore", "create_vm", "boot", "guest_check", "cleanup"}
# Tagged for backup, but with disks Azure cannot snapshot: reported, never backed up.
NOT_PROTECTABLE = {
    "stateless-eastus-01": "ephemeral OS disk: Azure cannot snapshot it",
    "sql-legacy-01": "unmanaged (VHD) OS disk: Azure snapshots managed disks only; "
    "unmanaged (VHD) disk lun 0: Azure snapshots managed disks only; "
    "unmanaged (VHD) disk lun 1: Azure snapshots managed disks only",
}
# Azure's name limits (learn.microsoft.com/azure/azure-resource-manager/management/
# resource-name-rules): snapshots, disks and NICs 80 characters, VMs 64.
NAME_LIMITS = {
    "microsoft.compute/snapshots": 80,
    "microsoft.compute/disks": 80,
    "microsoft.network/networkinterfaces": 80,
    "microsoft.compute/virtualmachines": 64,
}
_PUT_PATH = re.compile(r"/providers/(?P<type>[^/]+/[^/]+)/(?P<name>[^/?]+)$")


@pytest.fixture(scope="module")
def month(azurite: Azurite) -> Iterator[Stack]:
    with local_stack(
        FLEETS / "realistic.json", start=START, azurite=azurite, table_prefix="month"
    ) as stack:
        stack.host.run_timers(until=END)
        stack.host.run_until_idle()  # let what the last ticks started finish
        yield stack


def _protected(stack: Stack) -> list[tuple[VM, BackupPolicy]]:
    protected = []
    for vm in stack.services.gateway.list_vms():
        try:
            policy = policy_for(vm, stack.services.settings.regions)
        except PolicyError:
            continue
        if policy is not None and not vm.not_protectable:
            protected.append((vm, policy))
    assert len(protected) >= 15, "the fleet protects most of its VMs"
    return protected


def _raw_vms(stack: Stack) -> dict[str, dict[str, Any]]:
    """The fleet's own VMs as Azure shows them (not the DR-test group's)."""
    return {
        vm["name"]: vm
        for vm in stack.simulator.vms()
        if "/resourcegroups/rg-backupdr-drtest-" not in vm["id"].lower()
    }


def _history(stack: Stack, vm: VM) -> list[Backup]:
    return stack.services.catalog.list_backups(vm.key, include_deleted=True)


def _live(backups: list[Backup]) -> list[Backup]:
    """Backups whose snapshots are still in Azure (soft-deleted ones included)."""
    return [b for b in backups if b.state is not BackupState.DELETED]


def _restorable(backups: list[Backup]) -> list[Backup]:
    return [b for b in backups if b.state is BackupState.COMPLETED]


def _expected_slots(cron: str) -> set[datetime]:
    first = slot_at(cron, START)
    slots = {first}
    for moment in croniter(cron, first).all_next(datetime):
        if moment > END:
            break
        slots.add(moment)
    return slots


def test_the_fleet_is_as_varied_as_a_real_one(month: Stack) -> None:
    vms = _raw_vms(month).values()
    props = [vm["properties"] for vm in vms]
    storage = [p["storageProfile"] for p in props]
    assert len(vms) >= 20
    assert {vm["location"] for vm in vms} == {"eastus", "westus2"}
    assert len({vm["id"].split("/")[4].lower() for vm in vms}) >= 5, "several resource groups"
    assert {s["osDisk"]["osType"] for s in storage} == {"Linux", "Windows"}
    assert {(p.get("securityProfile") or {}).get("securityType") for p in props} >= {
        "TrustedLaunch",
        "Standard",
    }
    skus = {
        d["managedDisk"]["storageAccountType"]
        for s in storage
        for d in [s["osDisk"], *s["dataDisks"]]
        if "managedDisk" in d
    }
    assert skus >= {"Standard_LRS", "StandardSSD_LRS", "Premium_LRS"}
    assert any(vm.get("zones") for vm in vms)
    assert any(not vm.get("zones") for vm in vms)
    generations = {d["properties"].get("hyperVGeneration") for d in month.simulator.disks()}
    assert generations >= {"V1", "V2"}
    assert max(len(s["dataDisks"]) for s in storage) == 4
    assert max(len(vm["name"]) for vm in vms) == 64
    windows = [
        vm["name"] for vm, s in zip(vms, storage, strict=True) if s["osDisk"]["osType"] == "Windows"
    ]
    assert all(len(name) <= 15 for name in windows), "Windows computer names are at most 15"


def test_every_protected_vm_has_exactly_one_backup_per_scheduled_slot(month: Stack) -> None:
    raw = _raw_vms(month)
    for vm, policy in _protected(month):
        backups = [b for b in _history(month, vm) if not b.manual]
        slots = [b.slot for b in backups]
        assert len(slots) == len(set(slots)), f"{vm.name}: a slot was backed up twice"
        expected = _expected_slots(policy.schedule)
        assert set(slots) <= expected, vm.name
        assert expected - set(slots) <= {max(expected)}, f"{vm.name}: missed slots"
        finished = (BackupState.COMPLETED, BackupState.SOFT_DELETED, BackupState.DELETED)
        assert all(b.state in finished for b in backups)
        # Every backup holds a snapshot of every disk the VM has: OS and each data disk.
        data = raw[vm.name]["properties"]["storageProfile"]["dataDisks"]
        roles = {"os"} | {f"lun{d['lun']}" for d in data}
        for backup in backups:
            assert {ref.disk_role for ref in backup.snapshots} == roles, backup.backup_id
            assert len(backup.snapshots) == len(roles), backup.backup_id


def test_no_vm_without_a_valid_policy_is_backed_up(month: Stack) -> None:
    protected = {vm.key for vm, _ in _protected(month)}
    for vm in month.services.gateway.list_vms():
        if vm.key not in protected:
            assert _history(month, vm) == [], vm.name


def test_vms_with_disks_azure_cannot_snapshot_are_reported_and_never_backed_up(
    month: Stack,
) -> None:
    runs = [s for s in month.host.instances() if s.name == "fleet_backup_v4"]
    assert runs
    for run in runs:
        reported = {m["vm"]: m["reason"] for m in run.output["not_protectable"]}
        assert reported == NOT_PROTECTABLE, run.instance_id
    health = fleet_status(
        month.services.gateway,
        month.services.catalog,
        month.clock.now(),
        month.services.settings.regions,
    )
    assert {m["vm"]: m["reason"] for m in health["not_protectable"]} == NOT_PROTECTABLE
    assert not {v["vm"] for v in health["vms"]} & set(NOT_PROTECTABLE)
    for vm in month.services.gateway.list_vms():
        if vm.name in NOT_PROTECTABLE:
            assert _history(month, vm) == [], vm.name
            entries = month.services.catalog.audit_entries(since=START, vm_key=vm.key)
            assert entries == [], vm.name


def test_every_name_the_app_gave_is_within_azure_limits(month: Stack) -> None:
    created: dict[str, set[str]] = {kind: set() for kind in NAME_LIMITS}
    for request in month.simulator.requests:
        found = _PUT_PATH.search(request.path) if request.method == "PUT" else None
        if found and found["type"].lower() in NAME_LIMITS:
            created[found["type"].lower()].add(found["name"])
    for kind, limit in NAME_LIMITS.items():
        assert created[kind], f"nothing of type {kind} was created"
        too_long = [name for name in created[kind] if len(name) > limit]
        assert too_long == [], kind
    long_vms = [vm for vm, _ in _protected(month) if len(vm.name) >= 60]
    assert len(long_vms) >= 3
    snapshot_names = created["microsoft.compute/snapshots"]
    for vm in long_vms:  # cut, with a hash so that two long names stay apart
        assert any(name.startswith(vm.name[:20]) for name in snapshot_names), vm.name


def test_tiers_follow_the_calendar_rules(month: Stack) -> None:
    for vm, _ in _protected(month):
        taken: list[datetime] = []
        for backup in sorted(_history(month, vm), key=lambda b: b.taken_at):
            assert backup.tier is tier_for(backup.taken_at, taken), (vm.name, backup.backup_id)
            taken.append(backup.taken_at)


def test_retention_leaves_exactly_the_set_the_plan_keeps(month: Stack) -> None:
    now = month.clock.now()
    for vm, policy in _protected(month):
        history = _history(month, vm)
        live = _restorable(history)
        assert plan_retention(live, policy, now).to_delete == (), vm.name
        as_if_never_pruned = [
            b if b.state is BackupState.COMPLETED else _undeleted(b) for b in history
        ]
        expected = plan_retention(as_if_never_pruned, policy, now, force=True).to_keep
        assert {b.backup_id for b in live} == set(expected), vm.name


def _undeleted(backup: Backup) -> Backup:
    """An expired backup as it was before retention: completed, never the newest of anything."""
    return dataclasses.replace(
        backup,
        state=BackupState.COMPLETED,
        verification=VerificationState.UNVERIFIED,
        replication_status=ReplicationStatus.NONE,
    )


def test_snapshots_in_azure_match_the_catalog_one_for_one(month: Stack) -> None:
    expected = {
        ref.snapshot_id.lower()
        for vm, _ in _protected(month)
        for backup in _live(_history(month, vm))
        for ref in backup.snapshots
    }
    expected |= {
        ref.replica_id.lower()
        for vm, _ in _protected(month)
        for backup in _live(_history(month, vm))
        for ref in backup.snapshots
        if ref.replica_id
    }
    in_azure = {s["id"].lower() for s in month.simulator.snapshots()}
    assert in_azure == expected


def test_every_live_backup_of_a_replicating_vm_has_a_complete_replica(month: Stack) -> None:
    replicating = [(vm, p) for vm, p in _protected(month) if p.replicate]
    assert replicating
    in_azure = {s["id"].lower(): s for s in month.simulator.snapshots()}
    for vm, policy in replicating:
        for backup in _restorable(_history(month, vm)):
            assert backup.replica_region == policy.replicate
            assert backup.replication_status is ReplicationStatus.COMPLETED, backup.backup_id
            for ref in backup.snapshots:
                replica = in_azure[(ref.replica_id or "").lower()]
                assert replica["location"] == policy.replicate
                assert replica["properties"]["completionPercent"] == 100


def test_every_backup_of_a_daily_verified_vm_passed_its_next_verification_run(month: Stack) -> None:
    daily = [(vm, p) for vm, p in _protected(month) if p.verify is Cadence.DAILY]
    assert daily
    last_run = max(s.created_at for s in month.host.instances() if s.name == "verify_backups")
    for vm, _ in daily:
        for backup in _restorable(_history(month, vm)):
            if backup.taken_at < last_run - timedelta(minutes=5):
                assert backup.verification is VerificationState.PASSED, backup.backup_id


def test_every_verification_read_each_disk_it_restored(month: Stack) -> None:
    """A pass means each disk was read: a partition table, a known file system on the OS disk."""
    raw = _raw_vms(month)
    os_file_systems: set[str] = set()
    read = 0
    for vm, _ in _protected(month):
        rows = month.services.catalog.verifications(vm.key, now=month.clock.now(), days=31)
        read += len(rows)
        data = raw[vm.name]["properties"]["storageProfile"]["dataDisks"]
        roles = {"os"} | {f"lun{d['lun']}" for d in data}
        for row in rows:
            assert row.success, (vm.name, row.error_message)
            assert row.disk_readable is True
            assert {d.role for d in row.disks} == roles, (vm.name, row.id)
            for disk in row.disks:
                assert disk.table in ("gpt", "mbr"), (vm.name, disk)
                assert disk.bytes_read > 0
                assert disk.failures == ()
            os_disk = next(d for d in row.disks if d.role == "os")
            os_file_systems |= {p.file_system for p in os_disk.partitions if p.file_system}
    assert read >= 30
    assert os_file_systems >= {"NTFS", "ext4", "XFS"}


def test_a_healthy_fleet_measures_its_churn_and_raises_no_anomaly(month: Stack) -> None:
    measured = 0
    for vm, _ in _protected(month):
        for backup in _history(month, vm):
            assert not backup.anomaly, (vm.name, backup.backup_id)
            measured += backup.changed_bytes is not None
    assert measured >= 300, "a month of daily backups, each with its page-range diff"


def test_dr_tests_are_recorded_with_rto_and_phases(month: Stack) -> None:
    tested = [(vm, p) for vm, p in _protected(month) if p.drtest is not Cadence.OFF]
    assert tested
    for vm, _ in tested:
        history = month.services.catalog.dr_history(vm.key, now=month.clock.now(), days=31)
        assert history, vm.name
        for test in history:
            assert test.success, (vm.name, test.error_message)
            assert test.rto_seconds
            assert test.rto_seconds > 0
            assert set(test.phase_seconds) == PHASES
            assert test.cleanup_succeeded


def test_no_verification_or_dr_resources_are_left_behind(month: Stack) -> None:
    leftovers = [
        r["id"]
        for r in month.simulator.disks() + month.simulator.vms() + month.simulator.nics()
        if "/resourcegroups/rg-backupdr-drtest-" in r["id"].lower()
    ]
    assert leftovers == []


def test_every_workflow_instance_completed(month: Stack) -> None:
    unfinished = [
        (s.instance_id, s.runtime_status, s.output)
        for s in month.host.instances()
        if s.runtime_status != "Completed"
    ]
    assert unfinished == []
