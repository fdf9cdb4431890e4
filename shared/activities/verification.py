"""Verification steps: restore each snapshot of a backup to a test disk, check it, record it.

Test disks live in the region's DR-test group, tagged with the test id and an expiry, and are
deleted by the clean-up steps (`cleanup.py`) whatever happened (the sweeper catches what a crash
left).
"""

from __future__ import annotations

import time
from datetime import timedelta
from functools import partial

from shared.activities.common import (
    Payload,
    audited,
    load_backup,
    parse_time,
    test_tags,
)
from shared.adapters import telemetry
from shared.domain import names
from shared.domain.anomaly import HISTORY_DAYS, entropy_anomaly
from shared.domain.disk_layout import inspect
from shared.domain.models import (
    VM,
    Backup,
    BackupState,
    DiskContent,
    PartitionInfo,
    Verification,
    VerificationState,
)
from shared.domain.policy import Cadence, PolicyError, Regions, policy_for
from shared.errors import NotFoundError, sanitise
from shared.services import Services

TEST_DISK_TTL = timedelta(hours=6)
READ_ACCESS_SECONDS = 900  # a read SAS outlives the few MiB verification reads, no longer
MAX_PER_RUN = 50
CADENCE_DAYS = {Cadence.WEEKLY: 7, Cadence.MONTHLY: 30}


def list_verifications_due(payload: Payload, svc: Services) -> Payload:
    """Unverified backups to verify now, by each VM's `verify` cadence (oldest first).

    daily: every unverified backup; weekly/monthly: the newest unverified one once per period.
    A VM that is gone or misconfigured keeps the default cadence: its backups still matter.
    """
    now = parse_time(payload["now"])
    cadences = {vm.key: _cadence(vm, svc.settings.regions) for vm in svc.gateway.list_vms()}
    due: list[Backup] = []
    periodic: dict[str, Backup] = {}
    for backup in svc.catalog.unverified_backups():
        cadence = cadences.get(backup.vm_key, Cadence.DAILY)
        if cadence is Cadence.DAILY:
            due.append(backup)
        elif cadence in CADENCE_DAYS:
            periodic[backup.vm_key] = backup  # oldest first, so the newest wins
    for vm_key, backup in periodic.items():
        recent = svc.catalog.verification_report(
            now=now, days=CADENCE_DAYS[cadences[vm_key]], vm_key=vm_key
        )
        if not any(summary.total for summary in recent):
            due.append(backup)
    return {
        "due": [
            {"vm_key": b.vm_key, "backup_id": b.backup_id, "region": b.region}
            for b in due[:MAX_PER_RUN]
        ]
    }


def _cadence(vm: VM, regions: Regions) -> Cadence:
    try:
        policy = policy_for(vm, regions)
    except PolicyError:
        return Cadence.DAILY
    return Cadence.OFF if policy is None else policy.verify


def begin_verification(payload: Payload, svc: Services) -> Payload:
    """Start creating one test disk per snapshot of the backup."""
    backup = load_backup(svc, payload)
    if backup.state is not BackupState.COMPLETED:
        raise NotFoundError(f"backup {backup.backup_id} is {backup.state}, nothing to verify")
    group = svc.settings.drtest_group(backup.region)
    tags = test_tags(payload["test_id"], backup.backup_id, svc.clock.now(), TEST_DISK_TTL)
    disks = []
    poll_after = 0.0
    for ref in backup.snapshots:
        name = names.verify_disk_name(ref.snapshot_id.rsplit("/", 1)[-1])
        accepted = audited(
            svc,
            "create",
            f"{group}/disks/{name}",
            partial(
                svc.gateway.begin_disk_from_snapshot,
                name=name,
                resource_group=group,
                region=backup.region,
                snapshot_id=ref.snapshot_id,
                sku="Standard_LRS",
                zone=None,
                tags=tags,
            ),
            vm_key=backup.vm_key,
            operation="verify",
        )
        poll_after = max(poll_after, accepted.poll_after_seconds)
        disks.append(
            {"role": ref.disk_role, "disk_id": accepted.resource_id, "snapshot_id": ref.snapshot_id}
        )
    return {"disks": disks, "poll_after": poll_after}


def check_verification(payload: Payload, svc: Services) -> Payload:
    """Once every test disk is provisioned: it exists, is unattached, and matches its snapshot."""
    disks = [svc.gateway.get_disk(d["disk_id"]) for d in payload["disks"]]
    if any(d.provisioning_state not in ("Succeeded", "Failed") for d in disks):
        return {"done": False}
    created = all(d.provisioning_state == "Succeeded" for d in disks)
    sources = [svc.gateway.get_snapshot(d["snapshot_id"]) for d in payload["disks"]]
    mismatched = [
        f"{item['role']}: disk {disk.size_gb} GiB, snapshot {source.size_gb} GiB"
        for item, disk, source in zip(payload["disks"], disks, sources, strict=True)
        if disk.size_gb != source.size_gb
    ]
    errors = [
        f"{d.name}: provisioning {d.provisioning_state}"
        for d in disks
        if d.provisioning_state != "Succeeded"
    ]
    contents = (
        [_read_content(svc, item) for item in payload["disks"]]
        if created and all(d.disk_state == "Unattached" for d in disks)
        else []
    )
    unreadable = [f"{c.role}: {'; '.join(c.failures)}" for c in contents if c.failures]
    return {
        "done": True,
        "test_disk_created": created,
        "size_matches": not mismatched,
        "disk_readable": bool(contents) and not unreadable,
        "disks": [c.to_dict() for c in contents],
        "error": "; ".join(errors + mismatched + unreadable) or None,
    }


def _read_content(svc: Services, item: Payload) -> DiskContent:
    """Read the test disk through a read SAS that never leaves this step: its partition
    table, file systems and a sample of its written blocks (`disk_layout`)."""
    started = time.perf_counter()
    with svc.gateway.read_access(item["disk_id"], READ_ACCESS_SECONDS) as disk:
        size = disk.size()
        found = inspect(
            disk.read,
            size,
            disk.written(),
            svc.settings.verify_sample_bytes,
            os_disk=item["role"] == "os",
        )
    return DiskContent(
        role=item["role"],
        table=found.layout.table,
        partitions=tuple(
            PartitionInfo(p.number, p.type, p.size, p.file_system, p.label)
            for p in found.layout.partitions
        ),
        bytes_read=found.bytes_read,
        read_seconds=round(time.perf_counter() - started, 3),
        zero_fraction=round(found.sample.zero_fraction, 4),
        entropy=round(found.sample.entropy, 3),
        written_bytes=found.sample.written_bytes,
        problems=found.layout.problems,
        failures=found.failures,
    )


def _described(disk: DiskContent) -> str:
    """ "os: gpt EFI system/FAT32, Linux data/ext4": a disk's table and file systems in words."""
    parts = ", ".join(f"{p.type}/{p.file_system or 'unknown'}" for p in disk.partitions)
    return f"{disk.role}: {disk.table} {parts}".strip()


def _entropy_anomaly(svc: Services, verification: Verification) -> str | None:
    """Whether a test disk's data reads as random where the VM's earlier verifications of
    that disk did not (the other face of mass encryption: the bytes, not their amount)."""
    earlier = svc.catalog.verifications(
        verification.vm_key, now=verification.verified_at, days=HISTORY_DAYS
    )
    for disk in verification.disks:
        history = [
            d.entropy
            for v in earlier
            if v.id != verification.id
            for d in v.disks
            if d.role == disk.role and d.entropy
        ]
        reason = entropy_anomaly(disk.entropy, history)
        if reason:
            return f"{disk.role}: {reason}"
    return None


def record_verification(payload: Payload, svc: Services) -> Payload:
    """Write the verification row and the backup's verification state (once: a repeat of this
    step at the same moment rewrites the same row and emits no second event)."""
    backup = load_backup(svc, payload)
    now = svc.clock.now()
    repeat = backup.verified_at == now
    checks = payload.get("checks") or {}
    error = payload.get("error") or checks.get("error")
    if not backup.snapshots:  # every check of no disks holds, and proves nothing
        error = "; ".join(filter(None, [error, "backup has no snapshots: nothing to restore"]))
    success = bool(
        backup.snapshots
        and checks.get("test_disk_created")
        and checks.get("size_matches")
        and checks.get("disk_readable")
        and payload.get("cleanup_ok")
        and not payload.get("error")
    )
    if not payload.get("cleanup_ok"):
        error = "; ".join(filter(None, [error, "test disk not deleted"]))
    verification = Verification(
        id=payload["test_id"],
        vm_key=backup.vm_key,
        backup_name=backup.backup_id,
        vm_name=backup.vm_name,
        verified_at=now,
        success=success,
        disk_readable=checks.get("disk_readable"),
        size_matches=checks.get("size_matches"),
        test_disk_created=checks.get("test_disk_created"),
        test_disk_deleted=bool(payload.get("cleanup_ok")),
        error_message=sanitise(error, limit=500) if error else None,
        verification_time_seconds=(now - parse_time(payload["started"])).total_seconds(),
        disks=tuple(DiskContent.from_dict(d) for d in checks.get("disks") or ()),
    )
    anomaly = _entropy_anomaly(svc, verification)
    svc.catalog.save_verification(verification)
    if anomaly and not backup.anomaly:
        svc.catalog.update_backup(backup.vm_key, backup.backup_id, anomaly=anomaly)
        telemetry.emit(
            "ChurnAnomaly",
            vm=backup.vm_key,
            backup_id=backup.backup_id,
            measure="entropy",
            reason=anomaly,
        )
    svc.catalog.update_backup(
        backup.vm_key,
        backup.backup_id,
        verification=VerificationState.PASSED if success else VerificationState.FAILED,
        verified_at=now,
    )
    if not repeat:
        telemetry.emit(
            "VerificationCompleted",
            vm=backup.vm_key,
            backup_id=backup.backup_id,
            success=success,
            size_matches=verification.size_matches,
            duration_seconds=verification.verification_time_seconds,
            error=verification.error_message,
            bytes_read=sum(d.bytes_read for d in verification.disks),
            disks="; ".join(_described(d) for d in verification.disks) or None,
        )
    return verification.to_dict()
