"""Backup steps: find due VMs, snapshot every disk, record the backup, apply retention.

Each step is idempotent: names and keys are deterministic from (VM, slot), so a retried step
PUTs the same snapshots and rewrites the same rows.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable
from datetime import datetime, timedelta
from functools import partial

from shared.activities import claims
from shared.activities.changes import Changes, measure_changes, report_anomaly
from shared.activities.common import (
    APP,
    MANAGED_BY,
    Payload,
    audited,
    load_backup,
    parse_time,
)
from shared.activities.retention import restored_from
from shared.adapters import telemetry
from shared.domain import names, pacing
from shared.domain.models import (
    VM,
    Backup,
    BackupState,
    NicConfig,
    NicListing,
    SnapshotRef,
    Tier,
)
from shared.domain.policy import BackupPolicy, PolicyError, format_policy, policy_for
from shared.domain.retention import MANUAL_KEEP
from shared.domain.schedule import is_due, rpo_target_seconds, slot_at
from shared.domain.tiers import periods_start, tier_for
from shared.errors import BackupDrError, sanitise
from shared.ports import Snapshot
from shared.services import Services

SNAPSHOT_DONE = "Succeeded"
MAX_ATTEMPTS = 3
SNAPSHOT_FAILED = "Failed"


def list_due_vms(payload: Payload, svc: Services) -> Payload:
    """One page of the subscription's VMs (`page`; None: the first) -> those whose schedule is
    due at `now` and whose slot this run (`owner`) claimed; a slot another run holds is under
    way, not due. Each due VM says how many ARM writes (a snapshot PUT per disk) and reads its
    backup sends, `writes_from` when the page's snapshots have the write bucket (later than now
    when another run's page took it first), and `next_page` where the list goes on. While
    another run's page holds the bucket, only `held_until`: nothing listed, nothing claimed.

    Also reports each protected VM's RPO, every misconfigured policy tag, and every VM whose
    policy asks for backups of disks Azure cannot snapshot (never backed up, with the reasons).
    """
    now = parse_time(payload["now"])
    owner = payload["owner"]
    hold = svc.catalog.write_hold()
    if hold is not None and hold.owner != owner and hold.until > svc.clock.now():
        # Another run's page has the write bucket (an earlier tick's run outlasting its tick):
        # this run lists and claims after it, so that run keeps its pages and its pace.
        return {"held_until": hold.until.isoformat()}
    under_way = 0
    due: list[Payload] = []
    misconfigured: list[Payload] = []
    not_protectable: list[Payload] = []
    regions: set[str] = set()
    protected: list[tuple[VM, BackupPolicy]] = []
    ready: list[tuple[VM, BackupPolicy, datetime]] = []
    vms, next_page = svc.gateway.list_vms_page(payload.get("page"))
    for vm in vms:
        try:
            policy = policy_for(vm, svc.settings.regions)
        except PolicyError as error:
            misconfigured.append({"vm": vm.name, "vm_key": vm.key, "error": str(error)})
            telemetry.emit("RpoObserved", vm=vm.key, misconfigured=True)
            continue
        if policy is None:
            continue
        reason = _not_protectable(vm)
        if reason:
            not_protectable.append({"vm": vm.name, "vm_key": vm.key, "reason": reason})
            telemetry.emit("RpoObserved", vm=vm.key, misconfigured=True, not_protectable=reason)
            continue
        protected.append((vm, policy))
    latest = svc.catalog.latest_backups(vm.key for vm, _ in protected)  # this page's VMs only
    # The age now, not at the tick: a run that waited behind an earlier one lists VMs that run
    # backed up after this run's tick. Never below zero (another worker's clock took it).
    seen = svc.clock.now()
    for vm, policy in protected:
        last = latest.get(vm.key)
        rpo = None if last is None else max((seen - last.taken_at).total_seconds(), 0.0)
        target = rpo_target_seconds(policy.schedule, now)
        telemetry.emit(
            "RpoObserved", vm=vm.key, rpo_seconds=rpo, target_seconds=target, misconfigured=False
        )
        if rpo is not None:
            telemetry.record_rpo(vm.key, rpo, target)
        if not is_due(policy.schedule, None if last is None else last.slot, now):
            continue
        slot = slot_at(policy.schedule, now)
        if not _gave_up(svc, vm.key, slot):
            ready.append((vm, policy, slot))
    nics = _listed_nics(svc, f"{owner}@{payload['now']}", [vm for vm, _, _ in ready])
    for vm, policy, slot in ready:
        mine = _nics_of(vm, nics)
        work = names.backup_claim(names.backup_id(vm.key, slot))
        claim = svc.catalog.claim(
            vm.key,
            work,
            owner,
            now=svc.clock.now(),
            stale_after=claims.STALE_AFTER,
            vm=vm,
            nics=mine,
        )
        if claim.owner != owner:
            under_way += 1
            continue
        regions |= {vm.location, *([policy.replicate] if policy.replicate else [])}
        due.append(
            {
                "vm_key": vm.key,
                "resource_group": vm.resource_group,
                "name": vm.name,
                "slot": slot.isoformat(),
                "owner": owner,
                "generation": claim.generation,
                "writes": len(vm.disks),
                # ARM reads its backup sends (the fleet run paces by them): a poll per snapshot,
                # and its NICs unless the run's list had them.
                "reads": len(vm.disks) + (len(vm.nic_ids) if mine is None else 0),
            }
        )
    writes_from = None
    if due:  # the page's snapshots have the write bucket: copies start after them
        held = pacing.writes_held(sum(item["writes"] for item in due))
        writes_from = svc.catalog.hold_writes(owner, svc.clock.now(), held).isoformat()
    for region in sorted(regions):  # listed once here, not by each VM's retention
        with contextlib.suppress(BackupDrError):  # else each retention tries (and says why)
            restored_from(svc, svc.settings.drtest_group(region))
    return {
        "due": due,
        "writes_from": writes_from,
        "next_page": next_page,
        "under_way": under_way,
        "misconfigured": misconfigured,
        "not_protectable": not_protectable,
        "batch_size": svc.settings.fleet_batch_size,
    }


def _listed_nics(svc: Services, run: str, vms: list[VM]) -> dict[str, NicConfig]:
    """The NICs of `vms` from the run's list of the subscription's NICs (by lower-case id).

    The run lists them once, on its first page that needs more NICs than the last list took
    pages, and keeps them in the catalog for its later pages; with fewer, reading each costs
    less, and the backups do (none found here)."""
    wanted = {nic_id.lower() for vm in vms for nic_id in vm.nic_ids}
    if not wanted:
        return {}
    last = svc.catalog.nic_listing()
    if last is not None and last.run == run:
        return svc.catalog.listed_nics(run, wanted)
    if last is not None and len(wanted) < last.pages:
        return {}
    listed: list[NicConfig] = []
    page: str | None = None
    pages = 0
    try:
        while pages == 0 or page:
            found, page = svc.gateway.list_nics_page(page)
            listed.extend(found)
            pages += 1
    except BackupDrError:  # the list failed: each backup reads its own, as without one
        return {}
    svc.catalog.save_nic_listing(NicListing(run, pages, svc.clock.now()), listed)
    return {nic.id.lower(): nic for nic in listed if nic.id.lower() in wanted}


def _nics_of(vm: VM, listed: dict[str, NicConfig]) -> tuple[NicConfig, ...] | None:
    """The VM's NICs as a backup records them (the first primary), or None unless all listed."""
    if not all(nic_id.lower() in listed for nic_id in vm.nic_ids):
        return None
    return _nics(vm, lambda nic_id: listed[nic_id.lower()])


def _gave_up(svc: Services, vm_key: str, slot: datetime) -> bool:
    """A slot whose backup failed MAX_ATTEMPTS times waits for the next slot (and the alert).

    Failed counts on after retention retired the row (its partial snapshots deleted): else a
    slot given up would start over every run."""
    backup = svc.catalog.get_backup(vm_key, names.backup_id(vm_key, slot))
    return (
        backup is not None
        and backup.state not in (BackupState.CREATING, BackupState.COMPLETED)
        and backup.attempts >= MAX_ATTEMPTS
    )


def _not_protectable(vm: VM) -> str:
    """Why the VM cannot be backed up ("" when it can): a backup of no disks restores nothing."""
    if vm.not_protectable:
        return vm.not_protectable_reason
    return "" if vm.disks else "no managed disks to back up"


def begin_backup(payload: Payload, svc: Services) -> Payload:
    """Start an incremental snapshot of every disk of the VM, tagged in the same PUT.

    The row (state creating) names every disk's snapshot before the first PUT, so a backup that
    fails midway leaves no snapshot the catalog does not know of (retention deletes it). The VM
    and its policy come from Azure, never from the input (which carries keys only). The tier
    is fixed once: a retry finds the row it wrote, keeps its tier and time, PUTs the same names.
    """
    slot = parse_time(payload["slot"])
    manual = bool(payload.get("manual", False))
    vm, listed_nics = _vm(svc, payload, slot)
    policy = policy_for(vm, svc.settings.regions)
    backup_id = names.backup_id(vm.key, slot, manual)
    reason = _not_protectable(vm)
    if reason:  # its disks changed since it was listed: nothing is taken or recorded
        return {
            "vm_key": vm.key,
            "backup_id": backup_id,
            "state": "not_protectable",
            "error": reason,
            "poll_after": 0,
        }
    existing = svc.catalog.get_backup(vm.key, backup_id)
    if existing is not None and existing.state is BackupState.COMPLETED:
        return {"vm_key": vm.key, "backup_id": backup_id, "state": "completed", "poll_after": 0}
    taken_at = existing.taken_at if existing else svc.clock.now()
    tier = existing.tier if existing else _tier(svc, vm.key, taken_at)
    # Before any snapshot: a backup that cannot record its network takes none.
    nics = listed_nics if listed_nics is not None else _nics(vm, svc.gateway.get_nic)
    group = svc.settings.backup_group(vm.location)
    planned = [
        (disk, names.snapshot_name(vm.name, vm.key, disk.role, slot, manual)) for disk in vm.disks
    ]
    refs = tuple(
        SnapshotRef(
            disk_role=disk.role,
            source_disk_id=disk.id,
            snapshot_id=_snapshot_id(svc, group, name),
            size_gb=disk.size_gb,
            lun=disk.lun,
            sku=disk.sku,
            caching=disk.caching,
        )
        for disk, name in planned
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
            snapshots=refs,
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
            attempts=_attempt(existing),
            resource_group=vm.resource_group,
            tags=dict(vm.tags),
            policy=format_policy(policy) if policy else None,
            keep_until=taken_at + timedelta(days=payload.get("keep_days", MANUAL_KEEP.days))
            if manual
            else None,
            license_type=vm.license_type,
            boot_diagnostics=vm.boot_diagnostics,
            boot_diagnostics_uri=vm.boot_diagnostics_uri,
            nics=nics,
        )
    )
    tags = {
        MANAGED_BY: APP,
        "backup-id": backup_id,
        "backup-vm": names.short_hash(vm.id.lower()),
        "backup-tier": str(tier),
        "backup-taken-at": taken_at.isoformat(),
    }
    accepted = [
        audited(
            svc,
            "create",
            f"{group}/snapshots/{name}",
            partial(
                svc.gateway.begin_snapshot,
                name=name,
                resource_group=group,
                region=vm.location,
                disk=disk,
                tags={**tags, "backup-disk": disk.role},
            ),
            vm_key=vm.key,
            operation="snapshot",
        )
        for disk, name in planned
    ]
    answered = tuple(
        dataclasses.replace(ref, snapshot_id=done.resource_id)
        for ref, done in zip(refs, accepted, strict=True)
    )
    if answered != refs:  # the catalog keeps the ids as Azure answered them
        svc.catalog.update_backup(vm.key, backup_id, snapshots=answered)
    poll_after = max(done.poll_after_seconds for done in accepted)
    told = [done.writes_remaining for done in accepted if done.writes_remaining is not None]
    return {
        "vm_key": vm.key,
        "backup_id": backup_id,
        "state": "creating",
        "poll_after": poll_after,
        # ARM's count of write tokens left after these PUTs, and when (the fleet run's pacing).
        "writes": {"remaining": min(told), "seen_at": svc.clock.now().isoformat()}
        if told
        else None,
    }


def _vm(svc: Services, payload: Payload, slot: datetime) -> tuple[VM, tuple[NicConfig, ...] | None]:
    """The VM (and its NICs, if listed) as the fleet run that claimed this slot listed them
    (kept with the claim, so a run reads each once), else the VM as Azure has it now (a manual
    backup, a claim taken over)."""
    owner = payload.get("owner")
    if owner:
        work = names.backup_claim(names.backup_id(payload["vm_key"], slot))
        claim = svc.catalog.get_claim(payload["vm_key"], work)
        if claim is not None and claim.owner == owner and claim.vm is not None:
            return claim.vm, claim.nics
    return svc.gateway.get_vm(payload["resource_group"], payload["name"]), None


def _snapshot_id(svc: Services, group: str, name: str) -> str:
    """The id a snapshot PUT creates, known before the PUT (the gateway builds the same)."""
    return (
        f"/subscriptions/{svc.settings.subscription_id}/resourceGroups/{group}"
        f"/providers/Microsoft.Compute/snapshots/{name}"
    )


def _attempt(existing: Backup | None) -> int:
    """Which try at the slot this is: a row still creating is the same try resumed; one that
    failed (or that retention retired after it failed) is one more."""
    if existing is None:
        return 1
    return existing.attempts if existing.state is BackupState.CREATING else existing.attempts + 1


def _nics(vm: VM, read: Callable[[str], NicConfig]) -> tuple[NicConfig, ...]:
    """The VM's NICs as a restore needs them, each from `read` (the first is primary).

    A NIC that cannot be read fails the backup: one that does not say how to rebuild the VM's
    network would not restore it."""
    return tuple(
        dataclasses.replace(read(nic_id), primary=index == 0)
        for index, nic_id in enumerate(vm.nic_ids)
    )


def _tier(svc: Services, vm_key: str, taken_at: datetime) -> Tier:
    """The tier of a backup taken at `taken_at`, from the VM's backups in its periods that
    completed, expired or not (they existed), never failed attempts retention cleaned up."""
    completed = (
        BackupState.COMPLETED,
        BackupState.SOFT_DELETED,
        BackupState.PURGING,
        BackupState.DELETED,
    )
    earlier = svc.catalog.list_backups(vm_key, include_deleted=True, since=periods_start(taken_at))
    return tier_for(
        taken_at,
        (b.taken_at for b in earlier if b.state in completed and b.error_message is None),
    )


def check_backup(payload: Payload, svc: Services) -> Payload:
    """Read every snapshot of the backup; record it completed or failed once Azure is done.

    Its change is measured here unless the input says `"changes": "later"` (`vm_backup_v3`,
    whose follow-up measures it after the fleet run's snapshots: `measure_backup`)."""
    backup = load_backup(svc, payload)
    if backup.state is BackupState.COMPLETED:  # a repeat after success answers the same
        return {"state": "completed", "replica_region": backup.replica_region}
    if backup.state is not BackupState.CREATING:
        return {"state": str(backup.state), "error": backup.error_message}
    if not backup.snapshots:  # a backup of no disks restores nothing: never completed
        return _fail(svc, backup, "no snapshots: no managed disks to back up")
    snapshots = [svc.gateway.get_snapshot(ref.snapshot_id) for ref in backup.snapshots]
    failed = [s.name for s in snapshots if s.provisioning_state == SNAPSHOT_FAILED]
    if failed:
        return _fail(svc, backup, f"snapshot provisioning failed: {', '.join(failed)}")
    if any(s.provisioning_state != SNAPSHOT_DONE for s in snapshots):
        return {"state": "creating"}
    sized = tuple(
        dataclasses.replace(ref, size_gb=snap.size_gb)
        for ref, snap in zip(backup.snapshots, snapshots, strict=True)
    )
    changes = (
        Changes(sized, None, ())
        if payload.get("changes") == "later"
        else measure_changes(svc, backup, sized)
    )
    completed = svc.catalog.update_backup(
        backup.vm_key,
        backup.backup_id,
        state=BackupState.COMPLETED,
        snapshots=changes.snapshots,
        size_gb=sum(ref.size_gb for ref in changes.snapshots),
        anomaly=changes.anomaly,
        hyper_v_generation=_generation(backup, snapshots),
    )
    telemetry.emit(
        "BackupCompleted",
        vm=backup.vm_key,
        backup_id=backup.backup_id,
        tier=str(backup.tier),
        disks=len(changes.snapshots),
        size_gb=completed.size_gb,
        changed_bytes=completed.changed_bytes,
        changed_errors="; ".join(changes.errors) or None,
        duration_seconds=(svc.clock.now() - backup.taken_at).total_seconds(),
        manual=backup.manual,
    )
    report_anomaly(backup, changes)
    return {"state": "completed", "replica_region": backup.replica_region}


def _generation(backup: Backup, snapshots: list[Snapshot]) -> str | None:
    """The VM's Hyper-V generation as its OS disk's snapshot has it (a snapshot inherits the
    disk's), which a listed VM, read without its instance view, does not say."""
    for ref, snapshot in zip(backup.snapshots, snapshots, strict=True):
        if ref.lun is None and snapshot.hyper_v_generation:
            return snapshot.hyper_v_generation
    return backup.hyper_v_generation


def fail_backup(payload: Payload, svc: Services) -> Payload:
    """Record a backup that could not be completed (retention deletes its partial snapshots).

    A failure is an event (and its alert) even when no row was written: the VM read failed."""
    backup = svc.catalog.get_backup(payload["vm_key"], payload["backup_id"])
    if backup is None:
        message = sanitise(payload["error"], limit=500)
        return _report(payload["vm_key"], payload["backup_id"], message)
    if backup.state is not BackupState.CREATING:
        return {"state": str(backup.state)}
    return _fail(svc, backup, payload["error"])


def _fail(svc: Services, backup: Backup, error: str) -> Payload:
    message = sanitise(error, limit=500)
    svc.catalog.update_backup(
        backup.vm_key, backup.backup_id, state=BackupState.FAILED, error_message=message
    )
    return _report(backup.vm_key, backup.backup_id, message)


def _report(vm_key: str, backup_id: str, message: str) -> Payload:
    telemetry.emit("BackupFailed", vm=vm_key, backup_id=backup_id, error=message)
    return {"state": "failed", "error": message}
