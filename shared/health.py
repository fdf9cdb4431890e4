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

`needs_operator` turns that document into one line per VM and reason, in words: what `status`
and the report list first, and what makes the fleet unhealthy.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import Any

from shared.activities.drtest import CADENCE_DAYS
from shared.domain.models import (
    POLICY_TAG,
    VM,
    Backup,
    BackupState,
    DrTest,
    ReplicationStatus,
    VerificationState,
)
from shared.domain.policy import Cadence, PolicyError, Regions, policy_for
from shared.domain.schedule import RPO_GRACE, rpo_target_seconds
from shared.errors import NotFoundError, sanitise
from shared.inputs import gone_vms
from shared.ports import BackupCatalog, ComputeGateway, Snapshot, VerificationSummary
from shared.settings import REPLICATION_LAG_TARGET_SECONDS

WINDOW_DAYS = 30
# Past its cadence's period, a VM's newest good verification may be this much older before it
# needs an operator: the verifier's runs (every 6 hours) and a retry fit well inside a day.
VERIFY_GRACE_DAYS = 1


def fleet_status(
    gateway: ComputeGateway,
    catalog: BackupCatalog,
    now: datetime,
    served: Regions,
    *,
    lag_target_seconds: float = REPLICATION_LAG_TARGET_SECONDS,
) -> dict[str, Any]:
    """The fleet's health at `now`; a backup not replicated within `lag_target_seconds` of being
    taken needs an operator (the app setting BACKUPDR_REPLICATION_LAG_TARGET_SECONDS)."""
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
            misconfigured.append({**_names(vm), "error": str(error)})
            continue
        if policy is None:
            unprotected.append(vm.name)
            continue
        if vm.not_protectable:
            reason = vm.not_protectable_reason
            not_protectable.append({**_names(vm), "reason": reason})
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
                **_names(vm),
                "policy": policy.describe(),
                "verify": str(policy.verify),
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
                "verification": _verification(completed, verification),
                "dr_success_rate": dr.rate if dr else None,
                "last_rto_seconds": dr.last_rto_seconds if dr else None,
                "last_dr_test": _last_dr_test(
                    catalog.dr_history(vm.key, now=now, days=WINDOW_DAYS)
                ),
            }
        )
    gone = gone_vms(catalog, vms)
    source_gone = [_gone(catalog, vm) for vm in gone]
    restorable.extend(b for vm in gone for b in _completed(catalog, vm.key))
    groups = {vm.key: vm.resource_group for vm in (*vms, *gone)}
    missing = _missing_snapshots(gateway, restorable, groups)
    known = _known_snapshots(catalog, {vm.key for vm in vms})
    unknown = sorted(
        s.id
        for s in gateway.list_snapshots()
        if s.tags.get("managed-by") == "backupdr" and s.id.lower() not in known
    )
    fleet = dr_rates.get("*")
    health: dict[str, Any] = {
        "at": now.isoformat(),
        "replication_lag_target_seconds": lag_target_seconds,
        "vms": protected,
        "misconfigured": misconfigured,
        "not_protectable": not_protectable,
        "unprotected": unprotected,
        "source_gone": source_gone,
        "unknown_snapshots": unknown,
        "missing_snapshots": missing,
        "fleet_dr_success_rate": fleet.rate if fleet else None,
    }
    health["needs_operator"] = needs_operator(health)
    health["healthy"] = not health["needs_operator"] and not unknown
    return health


def _names(vm: VM) -> dict[str, str]:
    return {"vm": vm.name, "vm_key": vm.key, "resource_group": vm.resource_group}


def _verification(
    completed: list[Backup], summary: VerificationSummary | None
) -> dict[str, Any] | None:
    """The newest verified backup's result (with the run's error when it failed), when the
    newest good verification was, and the oldest backup (how long verification has had)."""
    if not completed:
        return None
    verified = sorted(
        (b for b in completed if b.verified_at), key=lambda b: b.verified_at or b.taken_at
    )
    passed = [b for b in verified if b.verification is VerificationState.PASSED]
    errors = {f.backup_name: f.error_message for f in summary.failures} if summary else {}
    last = verified[-1] if verified else None
    return {
        "first_backup": completed[-1].taken_at.isoformat(),
        "last_passed": iso(passed[-1].verified_at) if passed else None,
        "last": last
        and {
            "backup_id": last.backup_id,
            "result": str(last.verification),
            "at": iso(last.verified_at),
            "error": errors.get(last.backup_id),
        },
    }


def _last_dr_test(tests: list[DrTest]) -> dict[str, Any] | None:
    """The newest finished DR test (newest first in); one still running has no outcome yet."""
    test = next((t for t in tests if t.success is not None), None)
    if test is None:
        return None
    return {
        "started_at": test.started_at.isoformat(),
        "success": test.success,
        "error": test.error_message,
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
    jobs = catalog.list_replication_jobs(vm_key=vm_key, backup_id=backup.backup_id)
    since = max((j.completed_at or j.started_at for j in jobs), default=backup.taken_at)
    error = next((j.error_message for j in jobs if j.error_message), None)
    return {
        "backup_id": backup.backup_id,
        "taken_at": backup.taken_at.isoformat(),
        "replication_status": str(backup.replication_status),
        "since": since.isoformat(),
        "error": sanitise(error, limit=500) if error else None,
        # The slowest disk's copy, as far as it got (0 before any copy started).
        "completion_percent": min((j.completion_percent for j in jobs), default=0.0),
    }


def _missing_snapshots(
    gateway: ComputeGateway, backups: list[Backup], groups: dict[str, str]
) -> list[dict[str, Any]]:
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
            "resource_group": groups.get(backup.vm_key, backup.resource_group),
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


# -- what needs an operator, in words ---------------------------------------------------------


def needs_operator(health: dict[str, Any]) -> list[dict[str, str]]:
    """One entry per VM and reason, each reason a sentence an operator acts on: a bad policy tag,
    disks Azure cannot snapshot, RPO over its target, replication behind its target, a failed or
    overdue verification, a failed DR test, backups whose snapshots are gone.

    Pure: it reads only `health` (`fleet_status`'s document), so `status`, the API and the report
    list the same things for the same reasons.
    """
    now = datetime.fromisoformat(health["at"])
    lag_target = health["replication_lag_target_seconds"]
    found: list[dict[str, str]] = []
    for item in health["misconfigured"]:
        found.append(_entry(item, "misconfigured", f"backup-policy tag invalid: {item['error']}"))
    for item in health["not_protectable"]:
        found.append(_entry(item, "not_protectable", f"not protectable: {item['reason']}"))
    for vm in health["vms"]:
        reasons = [
            ("rpo", _rpo_reason(vm)),
            ("replication", _replication_reason(vm, now, lag_target)),
            ("verification", _verification_reason(vm, now)),
            ("dr_test", _dr_test_reason(vm)),
        ]
        found += [_entry(vm, kind, reason) for kind, reason in reasons if reason]
    by_vm: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for item in health["missing_snapshots"]:
        by_vm[item["vm_key"]].append(item)
    for items in by_vm.values():
        found.append(_entry(items[0], "missing_snapshots", _missing_reason(items)))
    return sorted(found, key=lambda e: (e["vm"].lower(), e["resource_group"].lower()))


def _entry(vm: dict[str, Any], kind: str, reason: str) -> dict[str, str]:
    return {
        "vm": vm["vm"],
        "resource_group": vm["resource_group"],
        "vm_key": vm["vm_key"],
        "kind": kind,
        "reason": reason,
    }


def _rpo_reason(vm: dict[str, Any]) -> str | None:
    if vm["rpo_ok"]:
        return None
    target = vm["rpo_target_seconds"]
    every = span(target - RPO_GRACE.total_seconds())
    if vm["rpo_seconds"] is None:
        return f"no completed backup yet (target {span(target)}, a {every} schedule)"
    return f"RPO {span(vm['rpo_seconds'])} over a {every} schedule (target {span(target)})"


def _replication_reason(vm: dict[str, Any], now: datetime, target: float) -> str | None:
    behind = vm["replication_behind"]
    if not behind:
        return None
    waited = (now - datetime.fromisoformat(behind["taken_at"])).total_seconds()
    if waited <= target:
        return None
    state = behind["replication_status"]
    if state == str(ReplicationStatus.FAILED):
        copy = f"copy failed: {behind['error'] or 'no error recorded'}"
    elif state == str(ReplicationStatus.IN_PROGRESS):
        copy = f"copy stuck at {behind['completion_percent']:.0f} %"
    else:
        copy = "copy not started"
    return (
        f"replication {span(waited)} behind (target {span(target)}): "
        f"backup {behind['backup_id']} {copy}"
    )


def _verification_reason(vm: dict[str, Any], now: datetime) -> str | None:
    """The newest verification failed, or none passed within the `verify` cadence's period (a
    day, a week, 30 days) and a day's grace while there were backups to verify."""
    verification = vm["verification"]
    if vm["verify"] == str(Cadence.OFF) or verification is None:
        return None
    last = verification["last"]
    if last and last["result"] == str(VerificationState.FAILED):
        when = datetime.fromisoformat(last["at"])
        why = last["error"] or "no error recorded"
        return f"verification of backup {last['backup_id']} failed on {when:%Y-%m-%d}: {why}"
    allowed = (CADENCE_DAYS[Cadence(vm["verify"])] + VERIFY_GRACE_DAYS) * 86400
    since = verification["last_passed"] or verification["first_backup"]
    waited = (now - datetime.fromisoformat(since)).total_seconds()
    if waited <= allowed:
        return None
    return f"no verified backup in {span(waited)} (policy: verify {vm['verify']})"


def _dr_test_reason(vm: dict[str, Any]) -> str | None:
    test = vm["last_dr_test"]
    if not test or test["success"]:
        return None
    when = datetime.fromisoformat(test["started_at"])
    return f"DR test failed on {when:%Y-%m-%d}: {test['error'] or 'no error recorded'}"


def _missing_reason(items: list[dict[str, Any]]) -> str:
    count = len(items)
    listed = ", ".join(item["backup_id"] for item in items)
    backups = "backup has" if count == 1 else "backups have"
    return f"{count} listed {backups} missing snapshots: {listed}"


def span(seconds: float) -> str:
    """A duration as people say it: `40 min`, `7 h`, `3 days`."""
    if seconds < 2 * 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.0f} h"
    return f"{seconds / 86400:.0f} days"
