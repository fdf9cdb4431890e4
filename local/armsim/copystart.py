"""CopyStart, the incremental snapshot copy, and the rules Azure puts on it.

Source: Microsoft, "Copy an incremental snapshot to a new region", Restrictions
(https://learn.microsoft.com/en-us/azure/virtual-machines/disks-copy-incremental-snapshot-across-regions):
100 incremental snapshots copy in parallel per subscription per region; one incremental snapshot
of a particular disk copies at a time; snapshots are copied in the order they were created; the
source must not be deleted while its copy runs (the copy then ends with copyCompletionError
CopySourceNotFound, azure-mgmt-compute's CopyCompletionErrorReason).

Order: the page also says Azure copies "only changes since the last snapshot in the target
region", so a copy may skip snapshots of the disk that were never copied there; what the rule
forbids here is going back, copying a snapshot older than one of the same disk already (or still)
copied into that region. Stricter than a skip ban is not possible without making a backup whose
copy was given up block its disk's later copies for ever.

Same region and incremental only: the Azure SDK for Java documents `Snapshot.DefinitionStages.
WithCopyStart` (learn.microsoft.com) as usable "when source and target regions are different as
well as when they are the same", and "only supported for creating an incremental snapshot from an
incremental snapshot"; the REST example Snapshot_Create_FromAnExistingSnapshotInDifferentRegion
sends no `incremental`, so an absent one means incremental and only an explicit false is refused.

Codes: no public source gives the codes of these refusals. The simulator answers
`OperationNotAllowed`, the code ARM gave refused CopyStarts in azure-cli issues 20182 and 20201,
with 400 for a request that can never succeed (a full snapshot) and 409 for one refused by other
copies' state. Both are final (the app records them as permanent failures): the stricter choice
next to a retryable 429 or 5xx.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from enum import StrEnum
from typing import Any

from local.armsim.errors import ArmError
from local.armsim.protocol import SNAPSHOT_TYPE, ResourceId
from local.armsim.state import Resource, World

MAX_PARALLEL_COPIES = 100  # per subscription and target region
REFUSED = "OperationNotAllowed"
SOURCE_DELETED = {
    "errorCode": "CopySourceNotFound",  # azure-mgmt-compute CopyCompletionErrorReason
    "errorMessage": "The source snapshot was deleted before the copy completed.",
}


class CopyState(StrEnum):
    """A CopyStart copy's state, from its progress, its injected fault and its source."""

    COPYING = "copying"
    FAILED = "failed"
    DONE = "done"


def refuse(world: World, source: Resource, target: ResourceId, region: str, body: Any) -> None:
    """Raise Azure's refusal when a CopyStart of `source` into `region` breaks a copy rule."""
    _require_incremental(source, body)
    if unfinished(world, source):
        raise ArmError(409, "Conflict", f"The source '{source.id}' is still being copied.")
    copies = list(_copies(world))
    for rule in (_disk_busy, _out_of_order, _region_full):
        message = rule(world, copies, source, target, region)
        if message is not None:
            raise ArmError(409, REFUSED, message)


def _disk_busy(
    world: World, copies: list[Resource], source: Resource, target: ResourceId, region: str
) -> str | None:
    family = source.disk_lineage
    busy = next((c for c in copies if c.disk_lineage == family and _copying(world, c)), None)
    if busy is None:
        return None
    return (
        f"Snapshot '{busy.name}' of the same disk is still being copied; an incremental "
        "snapshot of a disk can be copied only when no other one of that disk is copying."
    )


def _out_of_order(
    world: World, copies: list[Resource], source: Resource, target: ResourceId, region: str
) -> str | None:
    newer = next((c for c in copies if _copied_later(world, c, source, region)), None)
    if newer is None:
        return None
    return (
        f"Snapshot '{newer.name}' in '{region}' is a copy of a snapshot of the same disk "
        f"taken after '{source.name}'; incremental snapshots are copied in creation order."
    )


def _region_full(
    world: World, copies: list[Resource], source: Resource, target: ResourceId, region: str
) -> str | None:
    subscription = target.subscription.lower()
    running = sum(
        1
        for c in copies
        if c.location == region
        and c.ref.subscription.lower() == subscription
        and _copying(world, c)
    )
    if running < MAX_PARALLEL_COPIES:
        return None
    return (
        f"{running} copies into '{region}' are in progress in subscription "
        f"'{target.subscription}'; at most {MAX_PARALLEL_COPIES} copy in parallel."
    )


def _require_incremental(source: Resource, body: Any) -> None:
    asked = ((body or {}).get("properties") or {}).get("incremental")
    if not source.properties.get("incremental") or asked is False:
        raise ArmError(
            400,
            REFUSED,
            f"CopyStart copies an incremental snapshot into an incremental snapshot; "
            f"'{source.name}' is a full snapshot or the request asks for one.",
        )


def facts(source: Resource) -> dict[str, Any]:
    """What a new copy remembers of its source: the disk lineage and when the source was taken."""
    return {"copy_family": source.disk_lineage, "copy_source_at": source.created_at}


def state(world: World, snapshot: Resource) -> CopyState | None:
    """Where a CopyStart copy stands now; None for a snapshot that is not a copy."""
    if snapshot.copy_done_at is None:
        return None
    stopped = _failed_at(world, snapshot)
    if stopped is not None and stopped <= world.now():
        return CopyState.FAILED
    return CopyState.COPYING if world.now() < snapshot.copy_done_at else CopyState.DONE


def unfinished(world: World, snapshot: Resource) -> bool:
    """A copy still copying or failed: nothing may be made from it yet (or ever)."""
    return state(world, snapshot) in (CopyState.COPYING, CopyState.FAILED)


def progress(world: World, snapshot: Resource) -> dict[str, Any]:
    """completionPercent, and copyCompletionError once the copy has failed."""
    assert snapshot.copy_done_at is not None
    stopped = _failed_at(world, snapshot)
    until = min(world.now(), stopped) if stopped is not None else world.now()
    total = (snapshot.copy_done_at - snapshot.created_at).total_seconds()
    done = min(1.0, (until - snapshot.created_at).total_seconds() / total) if total else 1.0
    shown: dict[str, Any] = {"completionPercent": round(done * 100.0, 1)}
    if stopped is not None and stopped <= world.now():
        shown["copyCompletionError"] = dict(SOURCE_DELETED)
    return shown


def _failed_at(world: World, snapshot: Resource) -> datetime | None:
    """When the copy stopped for good: half way for an injected fault, or when its source went
    (Azure: "Don't delete your source snapshot while the target snapshot is being copied")."""
    assert snapshot.copy_done_at is not None
    moments: list[datetime] = []
    if snapshot.copy_failed:
        moments.append(snapshot.created_at + (snapshot.copy_done_at - snapshot.created_at) / 2)
    source = (snapshot.properties.get("creationData") or {}).get("sourceResourceId")
    removed = world.removed_at(str(source)) if source else None
    if removed is not None and snapshot.created_at <= removed < snapshot.copy_done_at:
        moments.append(removed)
    return min(moments, default=None)


def _copies(world: World) -> Iterator[Resource]:
    for resource in world.resources.values():
        if resource.type.lower() == SNAPSHOT_TYPE.lower() and resource.copy_done_at is not None:
            yield resource


def _copying(world: World, copy: Resource) -> bool:
    return state(world, copy) is CopyState.COPYING


def _copied_later(world: World, copy: Resource, source: Resource, region: str) -> bool:
    """`copy` is in `region`, of the same disk as `source`, and of a snapshot taken after it."""
    return (
        copy.location == region
        and copy.disk_lineage == source.disk_lineage
        and copy.copy_source_at is not None
        and copy.copy_source_at > source.created_at
        and state(world, copy) is not CopyState.FAILED
    )
