"""Records cross the durable boundary and the catalog: to_dict -> JSON -> from_dict is identity."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from shared.domain.models import (
    VM,
    AuditEntry,
    Backup,
    BackupState,
    Disk,
    DrTest,
    JsonRecord,
    NicConfig,
    ReplicationJob,
    ReplicationStatus,
    SnapshotRef,
    Tier,
    Verification,
    VerificationState,
    vm_key,
)
from tests.unit.builders import at

T = at("2026-11-29T02:00")

VM_ID = "/subscriptions/s/resourceGroups/RG-Lost/providers/Microsoft.Compute/virtualMachines/app"
NIC_ID = "/subscriptions/s/resourceGroups/RG-Lost/providers/Microsoft.Network/networkInterfaces/n"
GONE_BACKUP = Backup(
    backup_id="20261129t020000z-9876543210",
    vm_key="rg-lost~app",
    vm_id=VM_ID,
    vm_name="app",
    region="eastus",
    slot=T,
    taken_at=T,
    tier=Tier.DAILY,
    snapshots=(
        SnapshotRef("os", "/d/app-os", "snap-os", 30, sku="Premium_LRS", caching="ReadWrite"),
        SnapshotRef("lun2", "/d/app-2", "snap-2", 64, lun=2, sku="StandardSSD_LRS"),
    ),
    vm_size="Standard_D4s_v5",
    security_type="TrustedLaunch",
    secure_boot=True,
    vtpm=True,
    hyper_v_generation="V2",
    zones=("2",),
    resource_group="RG-Lost",
    tags={"env": "prod"},
    policy="schedule=0 2 * * *;daily=7",
    license_type="RHEL_BYOS",
    boot_diagnostics=True,
    nics=(NicConfig(NIC_ID, "/vnet/subnets/s", "Static", "10.0.0.9", True),),
)

RECORDS = [
    pytest.param(
        VM(
            id="/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/web",
            name="web",
            resource_group="rg",
            location="eastus",
            disks=(
                Disk("d-os", "web-os", 30, "Premium_LRS"),
                Disk("d-1", "web-1", 128, "StandardSSD_LRS", lun=1),
            ),
            tags={"backup-policy": "daily=7"},
            zone="1",
        ),
        id="vm-with-disks",
    ),
    pytest.param(
        Backup(
            backup_id="20261129t020000z-0123456789",
            vm_key="rg~web",
            vm_id="/subscriptions/s/.../web",
            vm_name="web",
            region="eastus",
            slot=T,
            taken_at=T + timedelta(seconds=42),
            tier=Tier.WEEKLY,
            state=BackupState.COMPLETED,
            snapshots=(
                SnapshotRef(
                    disk_role="os",
                    source_disk_id="d-os",
                    snapshot_id="snap-os",
                    size_gb=30,
                    replica_id="replica-os",
                    replica_status=ReplicationStatus.COMPLETED,
                ),
            ),
            size_gb=30,
            replica_region="westus2",
            replication_status=ReplicationStatus.IN_PROGRESS,
            verification=VerificationState.PASSED,
            verified_at=T + timedelta(hours=1),
            hold=True,
        ),
        id="backup-with-snapshots",
    ),
    pytest.param(GONE_BACKUP, id="backup-with-the-vm-configuration"),
    pytest.param(
        ReplicationJob(
            "job-1", "rg~web", "b-1", "os", "snap", "snap-r", "eastus", "westus2",
            ReplicationStatus.FAILED, T, T + timedelta(minutes=5), "CopyFailed", 42.5,
        ),
        id="replication-job",
    ),
    pytest.param(
        Verification("v-1", "rg~web", "snap", "web", T, True, True, True, True, True, None, 12.5),
        id="verification",
    ),
    pytest.param(
        DrTest(
            "t-1", "rg~web", "web", "b-1", "westus2", T, T + timedelta(minutes=9), True,
            phase_seconds={"restore": 120.0, "boot": 60.5}, rto_seconds=540.0,
            rto_target_seconds=900.0,
        ),
        id="dr-test",
    ),
    pytest.param(
        AuditEntry(T, "delete", "/subscriptions/s/snap", "ok", vm_key="rg~web"), id="audit"
    ),
]  # fmt: skip


@pytest.mark.parametrize("record", RECORDS)
def test_record_round_trips_through_json(record: JsonRecord) -> None:
    text = json.dumps(record.to_dict())
    assert type(record).from_dict(json.loads(text)) == record


def test_datetimes_are_stored_as_iso_text_with_their_zone() -> None:
    backup = RECORDS[1].values[0]
    assert isinstance(backup, Backup)
    assert backup.to_dict()["slot"] == "2026-11-29T02:00:00+00:00"


def test_vm_key_is_case_insensitive_like_azure_names() -> None:
    assert vm_key("RG-App", "Web-01") == vm_key("rg-app", "web-01") == "rg-app~web-01"


def test_a_vm_that_is_gone_is_rebuilt_from_its_last_backup() -> None:
    vm = VM.from_backup(GONE_BACKUP)
    assert vm.gone
    assert (vm.id, vm.name, vm.resource_group, vm.key) == (VM_ID, "app", "RG-Lost", "rg-lost~app")
    assert (vm.location, vm.zone, vm.vm_size) == ("eastus", "2", "Standard_D4s_v5")
    assert (vm.security_type, vm.secure_boot, vm.vtpm) == ("TrustedLaunch", True, True)
    assert [(d.role, d.sku, d.size_gb, d.caching) for d in vm.disks] == [
        ("os", "Premium_LRS", 30, "ReadWrite"),
        ("lun2", "StandardSSD_LRS", 64, None),
    ]
    # its recorded policy stands in for the tag the recorded tags lack (older rows: no tags)
    assert vm.tags == {"env": "prod", "backup-policy": "schedule=0 2 * * *;daily=7"}
    assert vm.nic_ids == (NIC_ID,)
    assert GONE_BACKUP.subnet_id == "/vnet/subnets/s"


def test_an_older_backup_row_finds_its_resource_group_in_the_vm_id() -> None:
    older = Backup.from_dict(
        {k: v for k, v in GONE_BACKUP.to_dict().items() if k not in {"resource_group", "nics"}}
    )
    assert older.source_resource_group == "RG-Lost"
    assert (older.nics, older.subnet_id) == ((), None)
