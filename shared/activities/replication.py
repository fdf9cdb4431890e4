"""Replication steps: CopyStart each disk's snapshot into the DR region and track the copy jobs.

Azure copies one snapshot per disk at a time, in creation order, and at most 100 at once per
subscription and region: a backup's copies start only when every older backup of the same VM is
copied (or deleted, or given up for good) and the target region has room.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta
from functools import partial

from shared.activities import claims
from shared.activities.common import APP, MANAGED_BY, Payload, audited, load_backup, parse_time
from shared.adapters import telemetry
from shared.domain import names
from shared.domain.models import (
    Backup,
    BackupState,
    ReplicationJob,
    ReplicationStatus,
    SnapshotRef,
)
from shared.errors import PermanentError, sanitise
from shared.ports import Snapshot
from shared.services import Services

COPYING = (ReplicationStatus.PENDING, ReplicationStatus.IN_PROGRESS)
MAX_PARALLEL_COPIES = 100  # per subscription and target region (Azure's limit)
RETRY_BACKOFF = timedelta(minutes=30)
MAX_RETRY_BACKOFF = timedelta(hours=12)
# Failed attempts after which a backup's replication no longer holds back the VM's newer ones:
# with the backoff above, about 18 hours of retries, so a daily backup never waits on a dead one.
MAX_REPLICATION_ATTEMPTS = 6


def list_pending_replications(payload: Payload, svc: Services) -> Payload:
    """The oldest backup per VM whose replica is missing or failed (the next one in order).

    A backup whose copies failed waits out a backoff that doubles with each failed attempt, so
    a long region outage costs a few attempts (and alerts), not one every catch-up run.
    A backup another instance is replicating (it holds the claim) is under way, not pending;
    the ones listed are claimed for this run (`owner`).
    """
    now = parse_time(payload["now"])
    owner = payload["owner"]
    oldest: dict[str, Backup] = {}
    for backup in svc.catalog.backups_needing_replication():
        if backup.replication_status is ReplicationStatus.FAILED and _given_up(
            svc, backup.vm_key, {backup.backup_id}
        ):
            continue  # given up for good: no more attempts, and it hides no newer one
        current = oldest.get(backup.vm_key)
        if current is None or backup.taken_at < current.taken_at:
            oldest[backup.vm_key] = backup
    pending = []
    for b in sorted(oldest.values(), key=lambda b: b.taken_at):
        if not _retry_due(svc, b, now):
            continue
        work = {"vm_key": b.vm_key, "work": names.replication_claim(b.backup_id), "owner": owner}
        if claims.claim_work(work, svc)["claimed"]:
            pending.append(
                {**_ref(b), "target_region": b.replica_region, "owner": owner},
            )
    return {"pending": pending}


def _ref(backup: Backup) -> Payload:
    return {"vm_key": backup.vm_key, "backup_id": backup.backup_id}


def _retry_due(svc: Services, backup: Backup, now: datetime) -> bool:
    if backup.replication_status is not ReplicationStatus.FAILED:
        return True
    failed = [
        job
        for job in svc.catalog.list_replication_jobs(
            status=ReplicationStatus.FAILED, vm_key=backup.vm_key
        )
        if job.backup_id == backup.backup_id
    ]
    if not failed:
        return True
    attempts = len({job.id.rsplit("-", 1)[-1] for job in failed})  # one stamp per attempt
    last = max(job.completed_at or job.started_at for job in failed)
    backoff: timedelta = min(RETRY_BACKOFF * 2 ** (attempts - 1), MAX_RETRY_BACKOFF)
    return now >= last + backoff


def start_replication(payload: Payload, svc: Services) -> Payload:
    """Start CopyStart for every disk of the backup, or answer "waiting" when Azure's copy
    order or the region's copy limit says not yet."""
    backup = load_backup(svc, payload)
    target = payload["target_region"]
    if backup.state is not BackupState.COMPLETED:
        return {"state": "skipped", "reason": f"backup is {backup.state}"}
    if backup.replication_status is ReplicationStatus.COMPLETED:
        return {"state": "completed"}
    if _held_back(svc, backup) or _region_full(svc, target, len(backup.snapshots)):
        return {"state": "waiting"}
    group = svc.settings.backup_group(target)
    now = svc.clock.now()
    attempt = parse_time(payload["attempt"])
    jobs = [_job(backup, ref, target, group, now, attempt) for ref in backup.snapshots]
    svc.catalog.save_replication_jobs(jobs)
    started: list[ReplicationJob] = []
    refs: list[SnapshotRef] = []
    poll_after = 0.0
    for ref, job in zip(backup.snapshots, jobs, strict=True):
        name = job.target_snapshot.rsplit("/", 1)[-1]
        try:
            accepted = audited(
                svc,
                "create",
                job.target_snapshot,
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
            failed = _ended(job, ReplicationStatus.FAILED, svc.clock.now(), str(error))
            svc.catalog.save_replication_jobs([*started, failed])
            return _failed(svc, backup, target, str(error))
        started.append(
            dataclasses.replace(
                job, status=ReplicationStatus.IN_PROGRESS, target_snapshot=accepted.resource_id
            )
        )
        refs.append(
            dataclasses.replace(
                ref, replica_id=accepted.resource_id, replica_status=ReplicationStatus.IN_PROGRESS
            )
        )
        poll_after = max(poll_after, accepted.poll_after_seconds)
    svc.catalog.save_replication_jobs(started)
    svc.catalog.update_backup(
        backup.vm_key,
        backup.backup_id,
        snapshots=tuple(refs),
        replica_region=target,
        replication_status=ReplicationStatus.IN_PROGRESS,
    )
    return {"state": "in_progress", "poll_after": poll_after}


def _held_back(svc: Services, backup: Backup) -> bool:
    """Whether an older backup of the VM must be copied first.

    Azure copies a disk's snapshots one at a time and in creation order, and never an older one
    after a newer ("Copy an incremental snapshot to a new region", Restrictions,
    https://learn.microsoft.com/en-us/azure/virtual-machines/disks-copy-incremental-snapshot-across-regions):
    a newer copy started while an older backup waits to be retried would make that one
    uncopyable. So a backup waits for every older one still to copy (not started, copying, or
    failed and to be retried). Only older ones that cannot hold it for ever stop counting: those
    deleted by retention (not listed) and those given up for good.
    """
    older = [
        other
        for other in svc.catalog.list_backups(backup.vm_key)
        if (other.taken_at, other.backup_id) < (backup.taken_at, backup.backup_id)
        and other.state is BackupState.COMPLETED
        and other.replica_region
        and other.replication_status is not ReplicationStatus.COMPLETED
    ]
    if any(other.replication_status is not ReplicationStatus.FAILED for other in older):
        return True
    return bool(older) and not _given_up(svc, backup.vm_key, {o.backup_id for o in older})


def _given_up(svc: Services, vm_key: str, backup_ids: set[str]) -> bool:
    """Whether each of these failed replications failed MAX_REPLICATION_ATTEMPTS times.

    Attempts are counted as the catch-up's backoff counts them: one job id stamp per attempt.
    """
    stamps: dict[str, set[str]] = {backup_id: set() for backup_id in backup_ids}
    for job in svc.catalog.list_replication_jobs(status=ReplicationStatus.FAILED, vm_key=vm_key):
        if job.backup_id in stamps:
            stamps[job.backup_id].add(job.id.rsplit("-", 1)[-1])
    return all(len(attempts) >= MAX_REPLICATION_ATTEMPTS for attempts in stamps.values())


def _region_full(svc: Services, region: str, wanted: int) -> bool:
    return svc.catalog.copies_in_progress(region) + wanted > MAX_PARALLEL_COPIES


def _job(
    backup: Backup,
    ref: SnapshotRef,
    target: str,
    group: str,
    now: datetime,
    attempt: datetime,
) -> ReplicationJob:
    name = names.replica_name(ref.snapshot_id.rsplit("/", 1)[-1], target)
    return ReplicationJob(
        id=job_id(backup.backup_id, ref.disk_role, attempt),
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


def job_id(backup_id: str, disk_role: str, attempt: datetime) -> str:
    """One copy job per disk and replication attempt: a retried step rewrites its own row,
    and a later attempt leaves the failed one in the history."""
    return f"{backup_id}-{disk_role}-{attempt:%Y%m%dt%H%M%S}"


def check_replication(payload: Payload, svc: Services) -> Payload:
    """Read each replica's copy progress; record the jobs and the backup when all are done.

    While copies run, `poll_after` estimates when the slowest one finishes from its progress so
    far, so a long copy is read a few times, not every few seconds.
    """
    backup = load_backup(svc, payload)
    if backup.replication_status is not ReplicationStatus.IN_PROGRESS:
        return {"state": str(backup.replication_status)}
    now = svc.clock.now()
    attempt = parse_time(payload["attempt"])
    refs: list[SnapshotRef] = []
    changed: list[ReplicationJob] = []
    errors: list[str] = []
    eta = 0.0
    for ref in backup.snapshots:
        if ref.replica_id is None:
            raise PermanentError(f"backup {backup.backup_id} is copying without a replica id")
        replica = svc.gateway.get_snapshot(ref.replica_id)
        status = _copy_status(replica)
        job = svc.catalog.get_replication_job(
            backup.vm_key, job_id(backup.backup_id, ref.disk_role, attempt)
        )
        if replica.copy_error:
            errors.append(f"{ref.disk_role}: {replica.copy_error}")
        if job is not None and job.status is not status:
            changed.append(_ended(job, status, now, replica.copy_error, replica.completion_percent))
        if job is not None and status is ReplicationStatus.IN_PROGRESS:
            eta = max(eta, _remaining(job.started_at, now, replica.completion_percent))
        refs.append(dataclasses.replace(ref, replica_status=status))
    if changed:
        svc.catalog.save_replication_jobs(changed)
    if any(ref.replica_status is ReplicationStatus.FAILED for ref in refs):
        _end_attempt(svc, backup, attempt, "; ".join(errors))
        _delete_failed_replicas(svc, backup, refs)
        return _failed(svc, backup, backup.replica_region or "", "; ".join(errors))
    if any(ref.replica_status is not ReplicationStatus.COMPLETED for ref in refs):
        return {"state": "in_progress", "poll_after": eta}
    svc.catalog.update_backup(
        backup.vm_key,
        backup.backup_id,
        snapshots=tuple(refs),
        replication_status=ReplicationStatus.COMPLETED,
    )
    started = min((job.started_at for job in changed), default=backup.taken_at)
    telemetry.emit(
        "ReplicationCompleted",
        vm=backup.vm_key,
        backup_id=backup.backup_id,
        target_region=backup.replica_region,
        duration_seconds=(now - started).total_seconds(),
        lag_seconds=(now - backup.taken_at).total_seconds(),
    )
    return {"state": "completed"}


def _copy_status(replica: Snapshot) -> ReplicationStatus:
    """A CopyStart replica is usable only at 100 %; Succeeded alone means the copy was accepted."""
    if replica.copy_error or replica.provisioning_state == "Failed":
        return ReplicationStatus.FAILED
    if (replica.completion_percent or 0) >= 100 and replica.provisioning_state == "Succeeded":
        return ReplicationStatus.COMPLETED
    return ReplicationStatus.IN_PROGRESS


def _remaining(started: datetime, now: datetime, percent: float | None) -> float:
    """Seconds left for a copy at `percent` after running since `started`, at its pace so far."""
    elapsed = (now - started).total_seconds()
    if not percent or percent <= 0 or elapsed <= 0:
        return 0.0
    return elapsed * (100 - percent) / percent


def _ended(
    job: ReplicationJob,
    status: ReplicationStatus,
    now: datetime,
    error: str | None,
    percent: float | None = None,
) -> ReplicationJob:
    return dataclasses.replace(
        job,
        status=status,
        completed_at=None if status in COPYING else now,
        error_message=sanitise(error, limit=500) if error else None,
        completion_percent=job.completion_percent if percent is None else percent,
    )


def fail_replication(payload: Payload, svc: Services) -> Payload:
    """Record a replication the orchestrator gave up on (timeout, or errors after retries)."""
    backup = load_backup(svc, payload)
    if backup.replication_status is ReplicationStatus.COMPLETED:
        return {"state": "completed"}
    _end_attempt(svc, backup, parse_time(payload["attempt"]), payload["error"])
    return _failed(svc, backup, payload["target_region"], payload["error"])


def _end_attempt(svc: Services, backup: Backup, attempt: datetime, error: str) -> None:
    """Record the attempt's jobs still copying as failed with it.

    The next attempt tracks those copies under its own jobs; left running here, they would count
    against the region's 100 parallel copies for ever.
    """
    now = svc.clock.now()
    jobs = [
        svc.catalog.get_replication_job(
            backup.vm_key, job_id(backup.backup_id, ref.disk_role, attempt)
        )
        for ref in backup.snapshots
    ]
    svc.catalog.save_replication_jobs(
        _ended(job, ReplicationStatus.FAILED, now, error)
        for job in jobs
        if job is not None and job.status in COPYING
    )


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
