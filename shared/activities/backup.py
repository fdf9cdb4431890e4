"""Backup steps: find due VMs, snapshot every disk, record the backup, apply retention.

Each step is idempotent: names and keys are deterministic from (VM, slot), so a retried step
PUTs the same snapshots and rewrites the same rows.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime
from functools import partial

from shared.activities import claims
from shared.activities.common import (
    APP,
    MANAGED_BY,
    Payload,
    audited,
    load_backup,
    parse_time,
)
from shared.adapters import telemetry
from shared.domain import names
from shared.domain.models import (
    VM,
    Backup,
    BackupState,
    NicConfig,
    SnapshotRef,
)
from shared.domain.policy import PolicyError, format_policy, policy_for
from shared.domain.schedule import is_due, rpo_target_seconds, slot_at
from shared.domain.tiers import tier_for
from shared.errors import sanitise
from shared.services import Services

SNAPSHOT_DONE = "Succeeded"
MAX_ATTEMPTS = 3
SNAPSHOT_FAILED = "Failed"


def list_due_vms(payload: Payload, svc: Services) -> Payload:
    """One paged list of the subscription's VMs -> those whose schedule is due at `now` and
    whose slot this run (`owner`) claimed; a slot another run holds is under way, not due.

    Also reports each protected VM's RPO, every misconfigured policy tag, and every VM whose
    policy asks for backups of disks Azure cannot snapshot (never backed up, with the reasons).
    """
    now = parse_time(payload["now"])
    owner = payload["owner"]
    under_way = 0
    latest = svc.catalog.latest_backups()
    due: list[Payload] = []
    misconfigured: list[Payload] = []
    not_protectable: list[Payload] = []
    for vm in svc.gateway.list_vms():
        try:
            policy = policy_for(vm)
        except PolicyError as error:
            misconfigured.append({"vm": vm.name, "vm_key": vm.key, "error": str(error)})
            telemetry.emit("RpoObserved", vm=vm.key, misconfigured=True)
            continue
        if policy is None:
            continue
        if vm.not_protectable:
            reason = vm.not_protectable_reason
            not_protectable.append({"vm": vm.name, "vm_key": vm.key, "reason": reason})
            telemetry.emit("RpoObserved", vm=vm.key, misconfigured=True, not_protectable=reason)
            continue
        last = latest.get(vm.key)
        rpo = None if last is None else (now - last.taken_at).total_seconds()
        target = rpo_target_seconds(policy.schedule, now)
        telemetry.emit(
            "RpoObserved", vm=vm.key, rpo_seconds=rpo, target_seconds=target, misconfigured=False
        )
        if rpo is not None:
            telemetry.record_rpo(vm.key, rpo, target)
        if not is_due(policy.schedule, None if last is None else last.slot, now):
            continue
        slot = slot_at(policy.schedule, now)
        if _gave_up(svc, vm.key, slot):
            continue
        work = names.backup_claim(names.backup_id(vm.key, slot))
        claim = svc.catalog.claim(
            vm.key, work, owner, now=svc.clock.now(), stale_after=claims.STALE_AFTER
        )
        if claim.owner != owner:
            under_way += 1
            continue
        due.append(
            {
                "vm_key": vm.key,
                "resource_group": vm.resource_group,
                "name": vm.name,
                "slot": slot.isoformat(),
                "owner": owner,
                "generation": claim.generation,
            }
        )
    return {
        "due": due,
        "under_way": under_way,
        "misconfigured": misconfigured,
        "not_protectable": not_protectable,
        "batch_size": svc.settings.fleet_batch_size,
    }


def _gave_up(svc: Services, vm_key: str, slot: datetime) -> bool:
    """A slot whose backup failed MAX_ATTEMPTS times waits for the next slot (and the alert)."""
    backup = svc.catalog.get_backup(vm_key, names.backup_id(vm_key, slot))
    return (
        backup is not None
        and backup.state is BackupState.FAILED
        and backup.attempts >= MAX_ATTEMPTS
    )


def begin_backup(payload: Payload, svc: Services) -> Payload:
    """Start an incremental snapshot of every disk of the VM, tagged in the same PUT.

    The VM and its policy are read here, not taken from the input (which carries keys only).
    The tier is fixed once: a retry finds the row it wrote and keeps its tier and time.
    """
    vm = svc.gateway.get_vm(payload["resource_group"], payload["name"])
    slot = parse_time(payload["slot"])
    manual = bool(payload.get("manual", False))
    policy = policy_for(vm)
    backup_id = names.backup_id(vm.key, slot, manual)
    if vm.not_protectable:  # its disks changed since it was listed: nothing is taken or recorded
        return {
            "vm_key": vm.key,
            "backup_id": backup_id,
            "state": "not_protectable",
            "error": vm.not_protectable_reason,
            "poll_after": 0,
        }
    existing = svc.catalog.get_backup(vm.key, backup_id)
    if existing is not None and existing.state is BackupState.COMPLETED:
        return {"vm_key": vm.key, "backup_id": backup_id, "state": "completed", "poll_after": 0}
    taken_at = existing.taken_at if existing else svc.clock.now()
    tier = existing.tier if existing else tier_for(taken_at, _earlier_backups(svc, vm.key))
    retried = existing is not None and existing.state is BackupState.FAILED
    attempts = existing.attempts + 1 if existing and retried else 1
    nics = _nics(svc, vm)  # before any snapshot: a backup that cannot record it takes none
    group = svc.settings.backup_group(vm.location)
    refs: list[SnapshotRef] = []
    poll_after = 0.0
    for disk in vm.disks:
        name = names.snapshot_name(vm.name, vm.key, disk.role, slot, manual)
        tags = {
            MANAGED_BY: APP,
            "backup-id": backup_id,
            "backup-vm": names.short_hash(vm.id.lower()),
            "backup-disk": disk.role,
            "backup-tier": str(tier),
            "backup-taken-at": taken_at.isoformat(),
        }
        accepted = audited(
            svc,
            "create",
            f"{group}/snapshots/{name}",
            partial(
                svc.gateway.begin_snapshot,
                name=name,
                resource_group=group,
                region=vm.location,
                disk=disk,
                tags=tags,
            ),
            vm_key=vm.key,
            operation="snapshot",
        )
        poll_after = max(poll_after, accepted.poll_after_seconds)
        refs.append(
            SnapshotRef(
                disk_role=disk.role,
                source_disk_id=disk.id,
                snapshot_id=accepted.resource_id,
                size_gb=disk.size_gb,
                lun=disk.lun,
                sku=disk.sku,
                caching=disk.caching,
            )
        )
    svc.catalog.save_backup(
        Backup(
            backup_id=backup_id,
            vm_key=vm.key,
            vm_id=vm.id,
            vm_name=vm.name,
            region=vm.location,
            slot=slot,
            taken_at=taken_at,
            tier=tier,
            state=BackupState.CREATING,
            snapshots=tuple(refs),
            size_gb=sum(ref.size_gb for ref in refs),
            manual=manual,
            vm_size=vm.vm_size,
            os_type=vm.os_type,
            security_type=vm.security_type,
            secure_boot=vm.secure_boot,
            vtpm=vm.vtpm,
            hyper_v_generation=vm.hyper_v_generation,
            zones=vm.zones,
            replica_region=policy.replicate if policy else None,
            attempts=attempts,
            resource_group=vm.resource_group,
            tags=dict(vm.tags),
            policy=format_policy(policy) if policy else None,
            license_type=vm.license_type,
            boot_diagnostics=vm.boot_diagnostics,
            boot_diagnostics_uri=vm.boot_diagnostics_uri,
            nics=nics,
        )
    )
    return {"vm_key": vm.key, "backup_id": backup_id, "state": "creating", "poll_after": poll_after}


def _nics(svc: Services, vm: VM) -> tuple[NicConfig, ...]:
    """The VM's NICs as a restore needs them, read once per backup (the first is primary).

    A NIC that cannot be read fails the backup: one that does not say how to rebuild the VM's
    network would not restore it."""
    return tuple(
        dataclasses.replace(svc.gateway.get_nic(nic_id), primary=index == 0)
        for index, nic_id in enumerate(vm.nic_ids)
    )


def _earlier_backups(svc: Services, vm_key: str) -> list[datetime]:
    """When this VM's earlier backups were taken (deleted ones count: they existed)."""
    return [
        backup.taken_at
        for backup in svc.catalog.list_backups(vm_key, include_deleted=True)
        if backup.state in (BackupState.COMPLETED, BackupState.DELETED)
    ]


def check_backup(payload: Payload, svc: Services) -> Payload:
    """Read every snapshot of the backup; record it completed or failed once Azure is done."""
    backup = load_backup(svc, payload)
    if backup.state is BackupState.COMPLETED:  # a repeat after success answers the same
        return {"state": "completed", "replica_region": backup.replica_region}
    if backup.state is not BackupState.CREATING:
        return {"state": str(backup.state), "error": backup.error_message}
    snapshots = [svc.gateway.get_snapshot(ref.snapshot_id) for ref in backup.snapshots]
    failed = [s.name for s in snapshots if s.provisioning_state == SNAPSHOT_FAILED]
    if failed:
        return _fail(svc, backup, f"snapshot provisioning failed: {', '.join(failed)}")
    if any(s.provisioning_state != SNAPSHOT_DONE for s in snapshots):
        return {"state": "creating"}
    refs = tuple(
        dataclasses.replace(ref, size_gb=snap.size_gb)
        for ref, snap in zip(backup.snapshots, snapshots, strict=True)
    )
    completed = svc.catalog.update_backup(
        backup.vm_key,
        backup.backup_id,
        state=BackupState.COMPLETED,
        snapshots=refs,
        size_gb=sum(ref.size_gb for ref in refs),
    )
    telemetry.emit(
        "BackupCompleted",
        vm=backup.vm_key,
        backup_id=backup.backup_id,
        tier=str(backup.tier),
        disks=len(refs),
        size_gb=completed.size_gb,
        duration_seconds=(svc.clock.now() - backup.taken_at).total_seconds(),
        manual=backup.manual,
    )
    return {"state": "completed", "replica_region": backup.replica_region}


def fail_backup(payload: Payload, svc: Services) -> Payload:
    """Record a backup that could not be completed (its partial snapshots expire by retention)."""
    backup = svc.catalog.get_backup(payload["vm_key"], payload["backup_id"])
    if backup is None or backup.state is not BackupState.CREATING:
        return {"state": None if backup is None else str(backup.state)}
    return _fail(svc, backup, payload["error"])


def _fail(svc: Services, backup: Backup, error: str) -> Payload:
    message = sanitise(error, limit=500)
    svc.catalog.update_backup(
        backup.vm_key, backup.backup_id, state=BackupState.FAILED, error_message=message
    )
    telemetry.emit("BackupFailed", vm=backup.vm_key, backup_id=backup.backup_id, error=message)
    return {"state": "failed", "error": message}
