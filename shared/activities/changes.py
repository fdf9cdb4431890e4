"""What changed between backups: each disk's written bytes since its previous snapshot.

Azure answers from the snapshots themselves (the page-range diff between two incremental
snapshots of a disk), so the measure costs one diff per disk, not a read of the data. A backup
whose change is far above the VM's own history is an anomaly (`shared.domain.anomaly`).
"""

from __future__ import annotations

import dataclasses
from datetime import timedelta

from shared.activities.verification import READ_ACCESS_SECONDS
from shared.domain.anomaly import HISTORY_DAYS, churn_anomaly
from shared.domain.models import Backup, BackupState, SnapshotRef
from shared.errors import NotFoundError, TransientError
from shared.services import Services

HAS_SNAPSHOTS = (BackupState.COMPLETED, BackupState.SOFT_DELETED)


@dataclasses.dataclass(frozen=True)
class Changes:
    snapshots: tuple[SnapshotRef, ...]  # with `changed_bytes` where it was measured
    anomaly: str | None
    errors: tuple[str, ...]  # why a disk's change is unknown, in words (never a SAS)


def measure_changes(svc: Services, backup: Backup, refs: tuple[SnapshotRef, ...]) -> Changes:
    """Each disk's change since its newest earlier snapshot, and whether the total is an
    anomaly against the VM's backups of the last HISTORY_DAYS days."""
    earlier = [
        b
        for b in svc.catalog.list_backups(backup.vm_key)  # purged ones have no snapshots
        if b.state in HAS_SNAPSHOTS and b.taken_at < backup.taken_at
    ]
    previous = {
        ref.source_disk_id: ref.snapshot_id
        for b in sorted(earlier, key=lambda b: b.taken_at)
        for ref in b.snapshots
    }
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
