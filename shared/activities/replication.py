"""Replication steps: CopyStart each disk's snapshot into the DR region and track the copy jobs.

Azure copies one snapshot per disk at a time, in creation order: a backup's copies start only
when no older backup of the same VM is still copying.
"""

from __future__ import annotations

import dataclasses
from functools import partial

from shared.activities.common import APP, MANAGED_BY, Payload, audited, load_backup
from shared.adapters import telemetry
from shared.domain import names
from shared.domain.models import Backup, BackupState, ReplicationJob, ReplicationStatus, SnapshotRef
from shared.errors import PermanentError, sanitise
from shared.services import Services

COPYING = (ReplicationStatus.PENDING, ReplicationStatus.IN_PROGRESS)


def list_pending_replications(payload: Payload, svc: Services) -> Payload:
    """The oldest backup per VM whose replica is missing or failed (the next one in order)."""
    oldest: dict[str, Backup] = {}
    for backup in svc.catalog.backups_needing_replication():
        current = oldest.get(backup.vm_key)
        if current is None or backup.taken_at < current.taken_at:
            oldest[backup.vm_key] = backup
    return {
        "pending": [
            {"vm_key": b.vm_key, "backup_id": b.backup_id, "target_region": b.replica_region}
            for b in sorted(oldest.values(), key=lambda b: b.taken_at)
        ]
    }


def start_replication(payload: Payload, svc: Services) -> Payload:
    """Start CopyStart for every disk of the backup, unless an older backup is still copying."""
    backup = load_backup(svc, payload)
    target = payload["target_region"]
    if backup.state is not BackupState.COMPLETED:
        return {"state": "skipped", "reason": f"backup is {backup.state}"}
    if backup.replication_status is ReplicationStatus.COMPLETED:
        return {"state": "completed"}
    if any(
        other.taken_at < backup.taken_at
        and other.replication_status is ReplicationStatus.IN_PROGRESS
        for other in svc.catalog.list_backups(backup.vm_key)
    ):
        return {"state": "waiting"}
    group = svc.settings.backup_group(target)
    now = svc.clock.now()
    refs = []
    poll_after = 0.0
    for ref in backup.snapshots:
        source_name = ref.snapshot_id.rsplit("/", 1)[-1]
        name = names.replica_name(source_name, target)
        job = ReplicationJob(
            id=f"{backup.backup_id}-{ref.disk_role}",
            vm_key=backup.vm_key,
            backup_id=backup.backup_id,
            disk_role=ref.disk_role,
            source_snapshot=ref.snapshot_id,
            target_snapshot=f"{group}/{name}",
            source_region=backup.region,
            target_region=target,
            status=ReplicationStatus.PENDING,
            started_at=now,
        )
        svc.catalog.save_replication_job(job)
        try:
            accepted = audited(
                svc,
                "create",
                f"{group}/snapshots/{name}",
                partial(
                    svc.gateway.begin_copy,
                    source_id=ref.snapshot_id,
                    name=name,
                    resource_group=group,
                    region=target,
                    tags={MANAGED_BY: APP, "backup-id": backup.backup_id, "backup-replica": "true"},
                ),
                vm_key=backup.vm_key,
                operation="replicate",
            )
        except PermanentError as error:
            svc.catalog.save_replication_job(
                dataclasses.replace(
                    job,
                    status=ReplicationStatus.FAILED,
                    completed_at=svc.clock.now(),
                    error_message=str(error),
                )
            )
            return _failed(svc, backup, target, str(error))
        svc.catalog.save_replication_job(
            dataclasses.replace(
                job, status=ReplicationStatus.IN_PROGRESS, target_snapshot=accepted.resource_id
            )
        )
        poll_after = max(poll_after, accepted.poll_after_seconds)
        refs.append(
            dataclasses.replace(
                ref, replica_id=accepted.resource_id, replica_status=ReplicationStatus.IN_PROGRESS
            )
        )
    svc.catalog.update_backup(
        backup.vm_key,
        backup.backup_id,
        snapshots=tuple(refs),
        replica_region=target,
        replication_status=ReplicationStatus.IN_PROGRESS,
    )
    return {"state": "in_progress", "poll_after": poll_after}


def check_replication(payload: Payload, svc: Services) -> Payload:
    """Read each replica's copy progress; record the jobs and the backup when all are done."""
    backup = load_backup(svc, payload)
    if backup.replication_status is not ReplicationStatus.IN_PROGRESS:
        return {"state": str(backup.replication_status)}
    jobs = {
        job.disk_role: job
        for job in svc.catalog.list_replication_jobs(vm_key=backup.vm_key)
        if job.backup_id == backup.backup_id
    }
    now = svc.clock.now()
    refs = []
    errors = []
    for ref in backup.snapshots:
        assert ref.replica_id is not None, "an in-progress backup has replica ids"
        replica = svc.gateway.get_snapshot(ref.replica_id)
        percent = replica.completion_percent or 0.0
        if replica.copy_error or replica.provisioning_state == "Failed":
            status = ReplicationStatus.FAILED
            errors.append(f"{ref.disk_role}: {replica.copy_error or 'copy failed'}")
        elif percent >= 100 and replica.provisioning_state == "Succeeded":
            status = ReplicationStatus.COMPLETED
        else:
            status = ReplicationStatus.IN_PROGRESS
        job = jobs.get(ref.disk_role)
        if job is not None and (job.status is not status or job.completion_percent != percent):
            svc.catalog.save_replication_job(
                dataclasses.replace(
                    job,
                    status=status,
                    completion_percent=percent,
                    completed_at=None if status is ReplicationStatus.IN_PROGRESS else now,
                    error_message=sanitise(replica.copy_error) if replica.copy_error else None,
                )
            )
        refs.append(dataclasses.replace(ref, replica_status=status))
    if errors:
        _delete_failed_replicas(svc, backup, refs)
        return _failed(svc, backup, backup.replica_region or "", "; ".join(errors))
    if any(ref.replica_status is not ReplicationStatus.COMPLETED for ref in refs):
        return {"state": "in_progress"}
    svc.catalog.update_backup(
        backup.vm_key,
        backup.backup_id,
        snapshots=tuple(refs),
        replication_status=ReplicationStatus.COMPLETED,
    )
    telemetry.emit(
        "ReplicationCompleted",
        vm=backup.vm_key,
        backup_id=backup.backup_id,
        target_region=backup.replica_region,
        duration_seconds=(now - min(j.started_at for j in jobs.values())).total_seconds()
        if jobs
        else 0.0,
        lag_seconds=(now - backup.taken_at).total_seconds(),
    )
    return {"state": "completed"}


def fail_replication(payload: Payload, svc: Services) -> Payload:
    """Record a replication the orchestrator gave up on (timeout, or errors after retries)."""
    backup = load_backup(svc, payload)
    if backup.replication_status is ReplicationStatus.COMPLETED:
        return {"state": "completed"}
    for job in svc.catalog.list_replication_jobs(vm_key=backup.vm_key):
        if job.backup_id == backup.backup_id and job.status in COPYING:
            svc.catalog.save_replication_job(
                dataclasses.replace(
                    job,
                    status=ReplicationStatus.FAILED,
                    completed_at=svc.clock.now(),
                    error_message=sanitise(payload["error"], limit=500),
                )
            )
    return _failed(svc, backup, payload["target_region"], payload["error"])


def _delete_failed_replicas(svc: Services, backup: Backup, refs: list[SnapshotRef]) -> None:
    """A failed copy leaves a useless target snapshot; remove it so a retry can start afresh."""
    for ref in refs:
        if ref.replica_id and ref.replica_status is ReplicationStatus.FAILED:
            audited(
                svc,
                "delete",
                ref.replica_id,
                partial(svc.gateway.delete_snapshot, ref.replica_id),
                vm_key=backup.vm_key,
                operation="replicate",
            )


def _failed(svc: Services, backup: Backup, target: str, error: str) -> Payload:
    message = sanitise(error, limit=500)
    svc.catalog.update_backup(
        backup.vm_key, backup.backup_id, replication_status=ReplicationStatus.FAILED
    )
    telemetry.emit(
        "ReplicationFailed",
        vm=backup.vm_key,
        backup_id=backup.backup_id,
        target_region=target,
        error=message,
    )
    return {"state": "failed", "error": message}
