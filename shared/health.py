"""Fleet health: what `GET /api/status`, `backupdr status` and the report show.

Per protected VM: the last backup's age against its schedule (RPO), replica lag, the last
verification, DR success rate and last RTO. Also what needs an operator: misconfigured policy tags
(with the reason), VMs whose policy asks for backups of disks Azure cannot snapshot (ephemeral OS,
unmanaged VHD: not protectable, with the reason), VMs with no policy, and snapshots of this app
that the catalog does not know. A VM whose replication is behind names its oldest backup not
replicated, that backup's replication state, since when, and the last copy error; a restorable
backup whose snapshot (or complete replica) Azure no longer has is listed and needs an operator.
A VM Azure no longer has but whose backups the catalog holds is
listed as "source gone" with its backups, which are kept (it does not make the fleet unhealthy:
deleting a VM is an operator's act, and its backups are still restorable).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from shared.domain.models import POLICY_TAG, VM, Backup, BackupState, ReplicationStatus
from shared.domain.policy import PolicyError, Regions, policy_for
from shared.domain.schedule import rpo_target_seconds
from shared.errors import NotFoundError, sanitise
from shared.inputs import gone_vms
from shared.ports import BackupCatalog, ComputeGateway, Snapshot

WINDOW_DAYS = 30


def fleet_status(
    gateway: ComputeGateway, catalog: BackupCatalog, now: datetime, served: Regions
) -> dict[str, Any]:
    vms = gateway.list_vms()
    verifications = {s.vm_key: s for s in catalog.verification_report(now=now, days=WINDOW_DAYS)}
    dr_rates = {r.vm_key: r for r in catalog.dr_success_rates(now=now, days=WINDOW_DAYS)}
    protected: list[dict[str, Any]] = []
    restorable: list[Backup] = []
    misconfigured: list[dict[str, str]] = []
    not_protectable: list[dict[str, str]] = []
    unprotected: list[str] = []
    for vm in sorted(vms, key=lambda v: v.key):
        try:
            policy = policy_for(vm, served)
        except PolicyError as error:
            misconfigured.append({"vm": vm.name, "vm_key": vm.key, "error": str(error)})
            continue
        if policy is None:
            unprotected.append(vm.name)
            continue
        if vm.not_protectable:
            reason = vm.not_protectable_reason
            not_protectable.append({"vm": vm.name, "vm_key": vm.key, "reason": reason})
            continue
        completed = [b for b in catalog.list_backups(vm.key) if b.state is BackupState.COMPLETED]
        replicated = [b for b in completed if b.replication_status is ReplicationStatus.COMPLETED]
        restorable.extend(completed)
        verification = verifications.get(vm.key)
        dr = dr_rates.get(vm.key)
        target = rpo_target_seconds(policy.schedule, now)
        rpo = (now - completed[0].taken_at).total_seconds() if completed else None
        protected.append(
            {
                "vm": vm.name,
                "vm_key": vm.key,
                "policy": policy.describe(),
                "backups": len(completed),
                "last_backup": completed[0].taken_at.isoformat() if completed else None,
                "rpo_seconds": rpo,
                "rpo_target_seconds": target,
                "rpo_ok": rpo is not None and rpo <= target,  # the alert's rule, the same grace
                "replica_region": policy.replicate,
                "replica_lag_seconds": _lag(policy.replicate, completed, replicated),
                "replication_behind": _behind(catalog, vm.key, completed, replicated),
                "last_verified": iso(verification.last_verified if verification else None),
                "verification_rate": verification.success_rate if verification else None,
                "dr_success_rate": dr.rate if dr else None,
                "last_rto_seconds": dr.last_rto_seconds if dr else None,
            }
        )
    gone = gone_vms(catalog, vms)
    source_gone = [_gone(catalog, vm) for vm in gone]
    restorable.extend(b for vm in gone for b in _completed(catalog, vm.key))
    missing = _missing_snapshots(gateway, restorable)
    known = _known_snapshots(catalog, {vm.key for vm in vms})
    unknown = sorted(
        s.id
        for s in gateway.list_snapshots()
        if s.tags.get("managed-by") == "backupdr" and s.id.lower() not in known
    )
    fleet = dr_rates.get("*")
    return {
        "at": now.isoformat(),
        "vms": protected,
        "misconfigured": misconfigured,
        "not_protectable": not_protectable,
        "unprotected": unprotected,
        "source_gone": source_gone,
        "unknown_snapshots": unknown,
        "missing_snapshots": missing,
        "fleet_dr_success_rate": fleet.rate if fleet else None,
        "healthy": all(v["rpo_ok"] for v in protected)
        and not misconfigured
        and not not_protectable
        and not unknown
        and not missing,
    }


def _gone(catalog: BackupCatalog, vm: VM) -> dict[str, Any]:
    """A VM Azure no longer has, with its backups (kept: retention deletes none of them)."""
    backups = _completed(catalog, vm.key)
    return {
        "vm": vm.name,
        "vm_key": vm.key,
        "resource_group": vm.resource_group,
        "region": vm.location,
        "policy": vm.tags.get(POLICY_TAG),
        "backups": len(backups),
        "backup_ids": [b.backup_id for b in backups],
        "last_backup": backups[0].taken_at.isoformat() if backups else None,
        "replica_region": backups[0].replica_region if backups else None,
    }


def _completed(catalog: BackupCatalog, vm_key: str) -> list[Backup]:
    return [b for b in catalog.list_backups(vm_key) if b.state is BackupState.COMPLETED]


def _behind(
    catalog: BackupCatalog, vm_key: str, completed: list[Backup], replicated: list[Backup]
) -> dict[str, Any] | None:
    """Why the replica lags: the oldest backup after the newest replica that is not copied,
    its replication state, since when (its last copy job's change, else when it was taken) and
    its last copy error. None when no backup waits for its copy."""
    newest = replicated[0].taken_at if replicated else None
    waiting = [
        b
        for b in completed
        if b.replica_region
        and b.replication_status is not ReplicationStatus.COMPLETED
        and (newest is None or b.taken_at > newest)
    ]
    if not waiting:
        return None
    backup = waiting[-1]  # newest first
    jobs = [
        j for j in catalog.list_replication_jobs(vm_key=vm_key) if j.backup_id == backup.backup_id
    ]
    since = max((j.completed_at or j.started_at for j in jobs), default=backup.taken_at)
    error = next((j.error_message for j in jobs if j.error_message), None)
    return {
        "backup_id": backup.backup_id,
        "taken_at": backup.taken_at.isoformat(),
        "replication_status": str(backup.replication_status),
        "since": since.isoformat(),
        "error": sanitise(error, limit=500) if error else None,
    }


def _missing_snapshots(gateway: ComputeGateway, backups: list[Backup]) -> list[dict[str, Any]]:
    """Restorable backups whose snapshots (or complete replicas) Azure no longer has.

    One snapshot list per backup resource group (read from the snapshots' ids), not one read
    per backup, so the check costs the same for a long history.
    """
    wanted = {backup.backup_id: _restorable_ids(backup) for backup in backups}
    groups = {
        _resource_group(i).lower(): _resource_group(i) for ids in wanted.values() for i in ids
    }
    existing = {s.id.lower() for group in groups.values() for s in _group_snapshots(gateway, group)}
    return [
        {
            "vm_key": backup.vm_key,
            "vm": backup.vm_name,
            "backup_id": backup.backup_id,
            "missing": missing,
        }
        for backup in backups
        if (missing := [i for i in wanted[backup.backup_id] if i.lower() not in existing])
    ]


def _restorable_ids(backup: Backup) -> list[str]:
    """Each disk's snapshot, and its replica once the copy completed."""
    return [
        snapshot_id
        for ref in backup.snapshots
        for snapshot_id in (
            ref.snapshot_id,
            ref.replica_id if ref.replica_status is ReplicationStatus.COMPLETED else None,
        )
        if snapshot_id
    ]


def _resource_group(resource_id: str) -> str:
    """`/subscriptions/<s>/resourceGroups/<group>/providers/...` -> `<group>`."""
    return resource_id.split("/")[4]


def _group_snapshots(gateway: ComputeGateway, group: str) -> list[Snapshot]:
    try:
        return gateway.list_snapshots(group)
    except NotFoundError:
        return []  # the group itself is gone: so is every snapshot in it


def _known_snapshots(catalog: BackupCatalog, vm_keys: set[str]) -> set[str]:
    """Every snapshot and replica id the catalog holds, for VMs that exist and VMs now gone."""
    keys = vm_keys | set(catalog.latest_backups())
    return {
        snapshot_id.lower()
        for key in keys
        for backup in catalog.list_backups(key, include_deleted=True)
        for ref in backup.snapshots
        for snapshot_id in (ref.snapshot_id, ref.replica_id)
        if snapshot_id
    }


def _lag(target: str | None, completed: list[Backup], replicated: list[Backup]) -> float | None:
    """How far the newest complete replica is behind the newest backup (0: current; None: no
    replica yet). Both lists are newest first."""
    if not target or not completed or not replicated:
        return None
    return (completed[0].taken_at - replicated[0].taken_at).total_seconds()


def iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None
