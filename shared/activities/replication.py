"""Replication steps: CopyStart each disk's snapshot into the DR region and track the copy jobs.

Azure copies one snapshot per disk at a time, in creation order, and at most 100 at once per
subscription and region: a backup's copies start only when every older backup of the same VM is
copied (or deleted, or given up for good) and the target region has room.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import cache, partial

from shared.activities import claims
from shared.activities.common import APP, MANAGED_BY, Payload, audited, load_backup, parse_time
from shared.adapters import telemetry
from shared.domain import names
from shared.domain.copytime import CopyRate, CopySample, fitted, past_end, whole_duration
from shared.domain.models import (
    Backup,
    BackupState,
    ReplicationJob,
    ReplicationStatus,
    SnapshotRef,
)
from shared.errors import NotFoundError, PermanentError, TransientError, sanitise
from shared.ports import Snapshot
from shared.services import Services

COPYING = (ReplicationStatus.PENDING, ReplicationStatus.IN_PROGRESS)
MAX_PARALLEL_COPIES = 100  # per subscription and target region (Azure's limit)
RETRY_BACKOFF = timedelta(minutes=30)
WAIT_STEP = timedelta(minutes=1)
# The longest a waiting copy goes between asks: a full region frees its slots a wave at a time,
# and a wave's slots go to the copies that ask, so the last waves' few copies asking a tenth of
# hours apart left freed slots idle for tens of minutes (1,000 VMs' replicas took 1.2x their
# bound so).
MAX_WAIT_STEP = timedelta(minutes=3)
CLAIM_TTL = timedelta(minutes=10)  # a pending job's claim on a copy slot
MAX_RETRY_BACKOFF = timedelta(hours=12)
# Failed attempts after which a backup's replication no longer holds back the VM's newer ones:
# with the backoff above, about 18 hours of retries, so a daily backup never waits on a dead one.
MAX_REPLICATION_ATTEMPTS = 6
ATTEMPT_STAMP = "%Y%m%dt%H%M%S"  # an attempt's time in its copy jobs' ids
GIB = 1024**3
# A copy probing a pair of regions with no line yet (`shared.domain.copytime`) is first read
# this long after its start, and until its progress is PRECISE_PERCENT or more, which dates its
# end well within the line's margin (a percent rounded to 0.1 read at 1 % would misdate it by up
# to 5 %); it aims at twice that. The copies started beside it first look this much later, then
# at doubling intervals while the probe is out; a probe that never reported lets them (and
# another probe) go after PROBE_TTL.
PROBE_READ_SECONDS = 60.0
PROBE_DELAY_SECONDS = 30.0
PRECISE_PERCENT = 5.0
PROBE_TTL = timedelta(hours=1)
PROBES = "copies"  # the claims partition probes are claimed in
PROBING, WAITING = "probing", "waiting"
READ_SLACK_SECONDS = 1.0


def list_pending_replications(payload: Payload, svc: Services) -> Payload:
    """The oldest backup per VM whose replica is missing, failed, or stranded (the next one in
    order).

    A backup whose copies failed waits out a backoff that doubles with each failed attempt, so
    a long region outage costs a few attempts (and alerts), not one every catch-up run.
    A backup another instance is replicating (it holds the claim) is under way, not pending;
    the ones listed are claimed for this run (`owner`). A backup still marked copying whose
    claim this run could take lost its orchestration (e.g. the catalog was down while it
    polled): it is listed with `resume`, its attempt, so its copies' real state in Azure is
    read and recorded, never started a second time.
    """
    now = parse_time(payload["now"])
    owner = payload["owner"]
    pending = []
    for b in sorted(_next_per_vm(svc), key=lambda b: b.taken_at):
        if _follow_up_starts(b, now):
            continue
        stranded = b.replication_status in COPYING
        if not stranded and not _retry_due(svc, b, now):
            continue
        work = {"vm_key": b.vm_key, "work": names.replication_claim(b.backup_id), "owner": owner}
        if not claims.claim_work(work, svc)["claimed"]:
            continue
        item = {**_ref(b), "target_region": b.replica_region, "owner": owner}
        if stranded:
            item["resume"] = _last_attempt(svc, b, now).isoformat()
        pending.append(item)
    return {"pending": pending}


def _follow_up_starts(backup: Backup, now: datetime) -> bool:
    """Its follow-up (`after_backup`) starts the copy, in the write bucket's refill it reserved
    for it: a catch-up copy before then would take tokens the refill is promised to others."""
    return (
        backup.replication_status is ReplicationStatus.NONE
        and backup.measure_from is not None
        and backup.measure_from > now
    )


def _next_per_vm(svc: Services) -> list[Backup]:
    """Per VM with copying work, its oldest backup not yet replicated (given-up ones aside).

    VMs come from the backups waiting to be copied and from the jobs still copying: a
    stranded backup is found through its own jobs, or through the newer backups it holds back.
    """
    vm_keys = {b.vm_key for b in svc.catalog.backups_needing_replication()}
    for status in COPYING:
        vm_keys |= {job.vm_key for job in svc.catalog.list_replication_jobs(status=status)}
    found = []
    for vm_key in sorted(vm_keys):
        backup = next((b for b in _unreplicated(svc, vm_key) if not _dead(svc, b)), None)
        if backup is not None:
            found.append(backup)
    return found


def _unreplicated(svc: Services, vm_key: str) -> list[Backup]:
    """The VM's completed backups with a target region and no complete replica, oldest first."""
    backups = [
        b
        for b in svc.catalog.list_backups(vm_key)
        if b.state is BackupState.COMPLETED
        and b.replica_region
        and b.replication_status is not ReplicationStatus.COMPLETED
    ]
    return sorted(backups, key=lambda b: (b.taken_at, b.backup_id))


def _dead(svc: Services, backup: Backup) -> bool:
    """Given up for good: no more attempts, and it hides no newer backup."""
    return backup.replication_status is ReplicationStatus.FAILED and _given_up(
        svc, backup.vm_key, {backup.backup_id}
    )


def _last_attempt(svc: Services, backup: Backup, now: datetime) -> datetime:
    """The attempt a stranded backup's newest copy jobs belong to (their id's stamp)."""
    jobs = svc.catalog.list_replication_jobs(vm_key=backup.vm_key, backup_id=backup.backup_id)
    if not jobs:
        return now
    stamp = jobs[0].id.rsplit("-", 1)[-1]  # newest started first
    return datetime.strptime(stamp, ATTEMPT_STAMP).replace(tzinfo=UTC)


def _ref(backup: Backup) -> Payload:
    return {"vm_key": backup.vm_key, "backup_id": backup.backup_id}


def _ask_again(waited: timedelta) -> float:
    """Seconds until a waiting copy asks again: every WAIT_STEP while a slot may free up any
    moment (a full region's copies end one by one), then a tenth of the wait so far, up to
    MAX_WAIT_STEP, so a long wait costs a read every few minutes and starts at most that late."""
    return min(max(WAIT_STEP, waited / 10), MAX_WAIT_STEP).total_seconds()


def _retry_due(svc: Services, backup: Backup, now: datetime) -> bool:
    if backup.replication_status is not ReplicationStatus.FAILED:
        return True
    failed = svc.catalog.list_replication_jobs(
        status=ReplicationStatus.FAILED, vm_key=backup.vm_key, backup_id=backup.backup_id
    )
    if not failed:
        return True
    attempts = len({job.id.rsplit("-", 1)[-1] for job in failed})  # one stamp per attempt
    last = max(job.completed_at or job.started_at for job in failed)
    backoff: timedelta = min(RETRY_BACKOFF * 2 ** (attempts - 1), MAX_RETRY_BACKOFF)
    return now >= last + backoff


def start_replication(payload: Payload, svc: Services) -> Payload:
    """Start CopyStart for every disk of the backup, or answer "waiting" when a fleet run's
    snapshots hold the write bucket, or Azure's copy order or the region's copy limit says not
    yet, with when to ask again (`poll_after`)."""
    backup = load_backup(svc, payload)
    target = payload["target_region"]
    if backup.state is not BackupState.COMPLETED:
        return {"state": "skipped", "reason": f"backup is {backup.state}"}
    if backup.replication_status is ReplicationStatus.COMPLETED:
        return {"state": "completed"}
    now = svc.clock.now()
    held = svc.catalog.writes_held_until()
    if held is not None and held > now:  # a fleet run's snapshots first (pacing.writes_held)
        return {"state": "waiting", "poll_after": (held - now).total_seconds()}
    attempt = parse_time(payload["attempt"])
    waiting = {"state": "waiting", "poll_after": _ask_again(now - attempt)}
    others = svc.catalog.list_backups(backup.vm_key)
    if _held_back(svc, backup, others):
        return waiting
    group = svc.settings.backup_group(target)
    copied = _copied_disks(backup, others, target)
    jobs = [_job(backup, ref, target, group, now, attempt, copied) for ref in backup.snapshots]
    if not _claim_slots(svc, jobs, target, now):
        return waiting
    started: list[ReplicationJob] = []
    refs: list[SnapshotRef] = []
    rates = _copy_rates(svc, backup.region, target)
    poll_after = 0.0
    for ref, job in zip(backup.snapshots, jobs, strict=True):
        try:
            replica_id, wait = _copy(svc, backup, ref, job, group)
        except PermanentError as error:
            attempted = [*started, *jobs[len(started) :]]
            return _start_failed(svc, backup, attempted, refs, target, str(error))
        started.append(
            dataclasses.replace(
                job, status=ReplicationStatus.IN_PROGRESS, target_snapshot=replica_id
            )
        )
        refs.append(
            dataclasses.replace(
                ref, replica_id=replica_id, replica_status=ReplicationStatus.IN_PROGRESS
            )
        )
        poll_after = max(poll_after, wait, _first_read(rates, job) if wait else 0.0)
    unlearned = {job.first_copy for job in started if _unlearned(rates, job)}
    if unlearned:
        probed = _probe(svc, backup, target, unlearned)
        started = [_with_probe(job, rates, probed) for job in started]
        poll_after = PROBE_READ_SECONDS + (0.0 if probed else PROBE_DELAY_SECONDS)
    svc.catalog.save_replication_jobs(started)
    svc.catalog.update_backup(
        backup.vm_key,
        backup.backup_id,
        snapshots=tuple(refs),
        replica_region=target,
        replication_status=ReplicationStatus.IN_PROGRESS,
    )
    return {"state": "in_progress", "poll_after": poll_after}


def _copied_disks(backup: Backup, others: list[Backup], target: str) -> set[str]:
    """The VM's disks an earlier backup has a replica of in `target`: their next copy moves
    what changed since; any other disk's copy moves the whole disk."""
    return {
        ref.source_disk_id.lower()
        for other in others
        if other.taken_at < backup.taken_at
        and other.replica_region == target
        and other.replication_status is ReplicationStatus.COMPLETED
        for ref in other.snapshots
    }


def _copy_rates(svc: Services, source: str, target: str) -> dict[bool, CopyRate | None]:
    """The lines of first copies (True) and of later ones (False) between the regions; a
    catalog outage costs the hint only."""
    try:
        samples = svc.catalog.copy_samples(source, target)
    except TransientError:
        samples = []
    return {first: fitted([s for s in samples if s.first is first]) for first in (True, False)}


def _first_read(rates: dict[bool, CopyRate | None], job: ReplicationJob) -> float:
    """Seconds after its start at which a copy is expected done (0: unknown, read at Azure's
    Retry-After)."""
    rate = rates[job.first_copy]
    if rate is None or job.moves_gib is None:
        return 0.0
    return rate.first_read(job.moves_gib)


def _unlearned(rates: dict[bool, CopyRate | None], job: ReplicationJob) -> bool:
    """A copy whose size is known and whose kind has no line yet between its regions."""
    return job.moves_gib is not None and rates[job.first_copy] is None


def _probe(svc: Services, backup: Backup, target: str, kinds: set[bool]) -> set[bool]:
    """The kinds of copy with no line yet that this backup probes: one backup per kind and
    pair of regions claims it; the others wait for its line (`_unread`). A catalog outage
    makes every backup a probe: reads spent, no copy kept waiting."""
    probed = set()
    for first in kinds:
        work = names.copy_probe_claim(backup.region, target, first)
        try:
            held = svc.catalog.claim(
                PROBES, work, backup.backup_id, now=svc.clock.now(), stale_after=PROBE_TTL
            )
        except TransientError:
            return kinds
        if held.owner == backup.backup_id:
            probed.add(first)
    return probed


def _with_probe(
    job: ReplicationJob, rates: dict[bool, CopyRate | None], probed: set[bool]
) -> ReplicationJob:
    if not _unlearned(rates, job):
        return job
    return dataclasses.replace(job, probe=PROBING if job.first_copy in probed else WAITING)


def _probe_out(svc: Services, backup: Backup, now: datetime, first: bool) -> bool:
    """Whether another backup still probes the line of `first` copies from the backup's region
    into its replica region."""
    work = names.copy_probe_claim(backup.region, backup.replica_region or "", first)
    try:
        held = svc.catalog.get_claim(PROBES, work)
    except TransientError:
        return False
    return (
        held is not None
        and held.owner != backup.backup_id
        and not held.released
        and now - held.claimed_at < PROBE_TTL
    )


def _end_probe(svc: Services, backup: Backup, jobs: list[ReplicationJob]) -> None:
    """Let the copies waiting on this backup's probe go: its lines have their samples (or it
    failed, and one of them will probe)."""
    for first in {job.first_copy for job in jobs}:
        work = names.copy_probe_claim(backup.region, jobs[0].target_region, first)
        with contextlib.suppress(TransientError):  # they go anyway after PROBE_TTL
            svc.catalog.release(PROBES, work, backup.backup_id)


def _note_progress(
    svc: Services, backup: Backup, job: ReplicationJob, elapsed: float, percent: float | None
) -> float:
    """A copy read midway states its whole duration: a sample for the next copies' first read.
    Seconds until it is worth reading again: its end, or for a probe whose progress is too
    small to date it, when it should have made twice PRECISE_PERCENT."""
    seconds = whole_duration(elapsed, percent)
    if seconds is None:
        return 0.0
    if job.probe == PROBING and (percent or 0) < PRECISE_PERCENT:
        return seconds * 2 * PRECISE_PERCENT / 100 - elapsed
    if job.moves_gib is not None:
        sample = CopySample(job.moves_gib, seconds, job.first_copy)
        with contextlib.suppress(TransientError):  # a hint lost, not a copy
            svc.catalog.note_copy(backup.region, job.target_region, sample)
    return past_end(seconds) - elapsed


def _copy(
    svc: Services, backup: Backup, ref: SnapshotRef, job: ReplicationJob, group: str
) -> tuple[str, float]:
    """CopyStart one disk's snapshot: its replica's id and when to read it first.

    A replica an earlier attempt started and Azure still copies (or has copied) is taken over,
    never started again: Azure copies one snapshot of a disk at a time. A failed one is deleted
    first, so the copy starts afresh.
    """
    name = job.target_snapshot.rsplit("/", 1)[-1]
    if ref.replica_id and ref.replica_id.rsplit("/", 1)[-1].lower() == name.lower():
        replica = _read(svc, ref.replica_id)
        if replica is not None and _copy_status(replica) is not ReplicationStatus.FAILED:
            return ref.replica_id, 0.0
        if replica is not None:
            _delete_replica(svc, backup, ref.replica_id)
    accepted = audited(
        svc,
        "create",
        job.target_snapshot,
        partial(
            svc.gateway.begin_copy,
            source_id=ref.snapshot_id,
            name=name,
            resource_group=group,
            region=job.target_region,
            tags={MANAGED_BY: APP, "backup-id": backup.backup_id, "backup-replica": "true"},
        ),
        vm_key=backup.vm_key,
        operation="replicate",
    )
    return accepted.resource_id, accepted.poll_after_seconds


def _start_failed(
    svc: Services,
    backup: Backup,
    jobs: list[ReplicationJob],
    started: list[SnapshotRef],
    target: str,
    error: str,
) -> Payload:
    """End the attempt whose CopyStart Azure refused, keeping the copies it did start.

    Every job of the attempt ends failed, so none counts against the region's parallel copies
    for ever; the started replicas stay on the backup's disks, where the catalog knows them and
    the next attempt takes them over (or deletes them when their copy failed).
    """
    now = svc.clock.now()
    svc.catalog.save_replication_jobs(
        _ended(job, ReplicationStatus.FAILED, now, error) for job in jobs
    )
    refs = (*started, *backup.snapshots[len(started) :])
    return _failed(svc, backup, target, error, snapshots=refs, replica_region=target)


def _held_back(svc: Services, backup: Backup, others: list[Backup]) -> bool:
    """Whether an older backup of the VM (among `others`, its listed backups) must be copied
    first.

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
        for other in others
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


def _claim_slots(svc: Services, jobs: list[ReplicationJob], region: str, now: datetime) -> bool:
    """Claim the region's copy slots for `jobs` (saved pending) unless that makes more than
    Azure's 100; else let them go. Azure refuses a copy past the limit for good, so slots are
    claimed before any copy starts.

    Every start saves its jobs before it counts, so of starts racing for the last slots the
    one that counts last sees every other's claim: together they never pass the limit (some
    may all let go, and ask again later). A claim whose start died stops counting after
    CLAIM_TTL. Jobs already copying (a repeat of this step) are never let go."""
    known = [svc.catalog.get_replication_job(job.vm_key, job.id) for job in jobs]
    started = {job.id for job in known if job and job.status is not ReplicationStatus.PENDING}
    claims = [job for job in jobs if job.id not in started]
    svc.catalog.save_replication_jobs(claims)
    taken = svc.catalog.copies_in_progress(region, claimed_since=now - CLAIM_TTL)
    if taken <= MAX_PARALLEL_COPIES:
        return True
    svc.catalog.delete_replication_jobs(claims)
    return False


def _job(
    backup: Backup,
    ref: SnapshotRef,
    target: str,
    group: str,
    now: datetime,
    attempt: datetime,
    copied: set[str],
) -> ReplicationJob:
    name = names.replica_name(ref.snapshot_id.rsplit("/", 1)[-1], target)
    first = ref.source_disk_id.lower() not in copied
    changed = None if ref.changed_bytes is None else ref.changed_bytes / GIB
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
        moves_gib=float(ref.size_gb) if first else changed,
        first_copy=first,
    )


def job_id(backup_id: str, disk_role: str, attempt: datetime) -> str:
    """One copy job per disk and replication attempt: a retried step rewrites its own row,
    and a later attempt leaves the failed one in the history."""
    return f"{backup_id}-{disk_role}-{attempt.strftime(ATTEMPT_STAMP)}"


def check_replication(payload: Payload, svc: Services) -> Payload:
    """Read each replica's copy progress; record the jobs and the backup when all are done.

    While copies run, `poll_after` says when the slowest one is expected done, by its progress
    so far or its line; a copy seen done, or one its line says cannot be done yet, is not read
    again (`_unread`), so a copy is read about once.
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
    probes: list[ReplicationJob] = []
    undated = False  # a probe's copy whose progress is still too small to date it
    rates = _copy_rates(svc, backup.region, backup.replica_region or "")
    probe_out = cache(partial(_probe_out, svc, backup, now))  # one read per kind
    for ref in backup.snapshots:
        if ref.replica_id is None:
            raise PermanentError(f"backup {backup.backup_id} is copying without a replica id")
        job = svc.catalog.get_replication_job(
            backup.vm_key, job_id(backup.backup_id, ref.disk_role, attempt)
        )
        known = _unread(rates, job, now, probe_out)
        if known is not None:
            eta = max(eta, known[1])
            refs.append(dataclasses.replace(ref, replica_status=known[0]))
            continue
        replica = _read(svc, ref.replica_id)
        status = _copy_status(replica) if replica else ReplicationStatus.FAILED
        error = replica.copy_error if replica else f"replica {ref.replica_id} does not exist"
        percent = replica.completion_percent if replica else None
        if error:
            errors.append(f"{ref.disk_role}: {error}")
        if job is not None and job.status is not status:
            changed.append(_ended(job, status, now, error, percent))
        if job is not None and status is ReplicationStatus.IN_PROGRESS:
            elapsed = (now - job.started_at).total_seconds()
            eta = max(eta, _note_progress(svc, backup, job, elapsed, percent))
            if job.probe == PROBING and (percent or 0) < PRECISE_PERCENT:
                undated = True
            elif job.probe == PROBING:  # dated: read from now on where its line says
                changed.append(dataclasses.replace(job, probe=""))
        if job is not None and job.probe == PROBING:
            probes.append(job)
        refs.append(dataclasses.replace(ref, replica_status=status))
    if changed:
        svc.catalog.save_replication_jobs(changed)
    failed = any(ref.replica_status is ReplicationStatus.FAILED for ref in refs)
    if probes and (failed or not undated):
        _end_probe(svc, backup, probes)
    if failed:
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


def _unread(
    rates: dict[bool, CopyRate | None],
    job: ReplicationJob | None,
    now: datetime,
    probe_out: Callable[[bool], bool],
) -> tuple[ReplicationStatus, float] | None:
    """A copy's state when a read would tell nothing new, and when to ask again; None: read it.

    A copy already seen complete stays so. A copy waiting for a probe's line asks again at
    doubling intervals while the probe is out. A copy whose line says it cannot be done yet is
    left until then: so a backup whose disks end at different times reads each disk once (the
    timestamps it is measured by keep microseconds, hence the slack)."""
    if job is None or job.status is ReplicationStatus.COMPLETED:
        return None if job is None else (ReplicationStatus.COMPLETED, 0.0)
    if job.status is not ReplicationStatus.IN_PROGRESS or job.probe == PROBING:
        return None
    elapsed = (now - job.started_at).total_seconds()
    if job.probe == WAITING and probe_out(job.first_copy):
        return ReplicationStatus.IN_PROGRESS, elapsed
    wait = _first_read(rates, job) - elapsed
    return (ReplicationStatus.IN_PROGRESS, wait) if wait > READ_SLACK_SECONDS else None


def _read(svc: Services, replica_id: str) -> Snapshot | None:
    """A replica as Azure has it now; None when it does not exist (never created, or deleted)."""
    try:
        return svc.gateway.get_snapshot(replica_id)
    except NotFoundError:
        return None


def _copy_status(replica: Snapshot) -> ReplicationStatus:
    """A CopyStart replica is usable only at 100 %; Succeeded alone means the copy was accepted."""
    if replica.copy_error or replica.provisioning_state == "Failed":
        return ReplicationStatus.FAILED
    if (replica.completion_percent or 0) >= 100 and replica.provisioning_state == "Succeeded":
        return ReplicationStatus.COMPLETED
    return ReplicationStatus.IN_PROGRESS


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
            _delete_replica(svc, backup, ref.replica_id)


def _delete_replica(svc: Services, backup: Backup, replica_id: str) -> None:
    audited(
        svc,
        "delete",
        replica_id,
        partial(svc.gateway.delete_snapshot, replica_id),
        vm_key=backup.vm_key,
        operation="replicate",
    )


def _failed(svc: Services, backup: Backup, target: str, error: str, **changes: object) -> Payload:
    """Record the backup's replication failed (with `changes`), for the catch-up to retry."""
    message = sanitise(error, limit=500)
    svc.catalog.update_backup(
        backup.vm_key, backup.backup_id, replication_status=ReplicationStatus.FAILED, **changes
    )
    telemetry.emit(
        "ReplicationFailed",
        vm=backup.vm_key,
        backup_id=backup.backup_id,
        target_region=target,
        error=message,
    )
    return {"state": "failed", "error": message}
