"""What changed between backups: each disk's written bytes since its previous snapshot.

Azure answers from the snapshots themselves (the page-range diff between two incremental
snapshots of a disk), so the measure costs one diff per disk, not a read of the data. A backup
whose change is far above the VM's own history is an anomaly (`shared.domain.anomaly`).

A diff needs read access to both snapshots, and ARM counts each `beginGetAccess` and
`endGetAccess` as a write: four per disk, four times the snapshot's own PUT. So a fleet run's
backups measure after its snapshots, in the write bucket's refill reserved for them
(`measure_backup`), never in the run's waves.
"""

from __future__ import annotations

import dataclasses
from datetime import timedelta

from shared.activities.common import Payload, load_backup
from shared.activities.verification import READ_ACCESS_SECONDS
from shared.adapters import telemetry
from shared.domain.anomaly import HISTORY_DAYS, churn_anomaly
from shared.domain.models import Backup, BackupState, SnapshotRef
from shared.errors import NotFoundError, TransientError
from shared.services import Services

HAS_SNAPSHOTS = (BackupState.COMPLETED, BackupState.SOFT_DELETED)
DIFF_WRITES = 4  # beginGetAccess and endGetAccess on the snapshot and on its predecessor


@dataclasses.dataclass(frozen=True)
class Changes:
    snapshots: tuple[SnapshotRef, ...]  # with `changed_bytes` where it was measured
    anomaly: str | None
    errors: tuple[str, ...]  # why a disk's change is unknown, in words (never a SAS)


def measure_backup(payload: Payload, svc: Services) -> Payload:
    """Measure a completed backup's change once the write bucket's refill reserved for its
    diffs and its copy's PUTs comes (after the fleet run's hold and every earlier
    reservation); "waiting" with `poll_after` until then. A hold extended past the reserved
    time (a later page of the run) reserves again behind it. A repeat after success answers
    at once; a failed backup has nothing to measure or copy.

    Input: {vm_key, backup_id}. Answers {state: done, replica_region} or {state: waiting}."""
    backup = load_backup(svc, payload)
    if backup.state is not BackupState.COMPLETED:
        return {"state": "done", "replica_region": None}
    earlier = _earlier(svc, backup)
    measured = any(ref.changed_bytes is not None for ref in backup.snapshots)
    previous = {} if measured else _previous(earlier)
    diffs = sum(1 for ref in backup.snapshots if ref.source_disk_id in previous)
    copies = len(backup.snapshots) if backup.replica_region else 0
    done = {"state": "done", "replica_region": backup.replica_region}
    if not diffs + copies:
        return done
    now = svc.clock.now()
    held = svc.catalog.writes_held_until()
    due = backup.measure_from
    if due is None or (held is not None and due < held and now < held):
        due = svc.catalog.reserve_writes(DIFF_WRITES * diffs + copies, now)
        svc.catalog.update_backup(backup.vm_key, backup.backup_id, measure_from=due)
    if due > now:
        return {"state": "waiting", "poll_after": (due - now).total_seconds()}
    if not diffs:
        return done
    changes = _measure(svc, backup, backup.snapshots, earlier)
    changed = {ref.snapshot_id: ref.changed_bytes for ref in changes.snapshots}
    recorded = svc.catalog.update_backup(
        backup.vm_key,
        backup.backup_id,
        # Into the row as it is now: a catch-up copy may have started since it was read.
        lambda row: {
            "snapshots": tuple(
                dataclasses.replace(ref, changed_bytes=changed.get(ref.snapshot_id))
                for ref in row.snapshots
            )
        },
        anomaly=changes.anomaly,
    )
    telemetry.emit(
        "BackupChangesMeasured",
        vm=backup.vm_key,
        backup_id=backup.backup_id,
        changed_bytes=recorded.changed_bytes,
        changed_errors="; ".join(changes.errors) or None,
    )
    report_anomaly(backup, changes)
    return done


def report_anomaly(backup: Backup, changes: Changes) -> None:
    """The ChurnAnomaly event of a backup whose change is far above the VM's history."""
    if changes.anomaly:
        telemetry.emit(
            "ChurnAnomaly",
            vm=backup.vm_key,
            backup_id=backup.backup_id,
            measure="changed bytes",
            reason=changes.anomaly,
        )


def measure_changes(svc: Services, backup: Backup, refs: tuple[SnapshotRef, ...]) -> Changes:
    """Each disk's change since its newest earlier snapshot, and whether the total is an
    anomaly against the VM's backups of the last HISTORY_DAYS days."""
    return _measure(svc, backup, refs, _earlier(svc, backup))


def _earlier(svc: Services, backup: Backup) -> list[Backup]:
    return [
        b
        for b in svc.catalog.list_backups(backup.vm_key)  # purged ones have no snapshots
        if b.state in HAS_SNAPSHOTS and b.taken_at < backup.taken_at
    ]


def _previous(earlier: list[Backup]) -> dict[str, str]:
    """Each disk's newest earlier snapshot."""
    return {
        ref.source_disk_id: ref.snapshot_id
        for b in sorted(earlier, key=lambda b: b.taken_at)
        for ref in b.snapshots
    }


def _measure(
    svc: Services, backup: Backup, refs: tuple[SnapshotRef, ...], earlier: list[Backup]
) -> Changes:
    previous = _previous(earlier)
    measured, errors = [], []
    for ref in refs:
        changed = None
        if ref.source_disk_id in previous:
            try:
                changed = _diff(svc, ref.snapshot_id, previous[ref.source_disk_id])
            except (TransientError, NotFoundError) as error:  # a refused right fails the step
                errors.append(f"{ref.disk_role}: {error.reason}")
        measured.append(dataclasses.replace(ref, changed_bytes=changed))
    total = sum(r.changed_bytes or 0 for r in measured)
    since = backup.taken_at - timedelta(days=HISTORY_DAYS)
    history = [
        b.changed_bytes
        for b in earlier
        if b.taken_at >= since and b.changed_bytes is not None and not b.anomaly
    ]
    anomaly = (
        churn_anomaly(total, history, svc.settings.churn_anomaly_factor)
        if any(r.changed_bytes is not None for r in measured)
        else None
    )
    return Changes(tuple(measured), anomaly, tuple(errors))


def _diff(svc: Services, snapshot_id: str, previous_id: str) -> int:
    with (
        svc.gateway.read_access(snapshot_id, READ_ACCESS_SECONDS) as current,
        svc.gateway.read_access(previous_id, READ_ACCESS_SECONDS) as previous,
    ):
        return current.changed_since(previous)
