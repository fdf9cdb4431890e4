"""Retention steps: plan a VM's retention from its tag and its snapshots' tags, and carry it out.

Deletion is soft first (DESIGN.md "Tier and retention"): an expired backup is marked and tagged,
stays restorable for the soft-delete window, then is purged; a purge that stops midway is
finished by the next run, and a backup being purged is never listed as restorable.
"""

from __future__ import annotations

import dataclasses
from functools import partial

from shared.activities.common import SOURCE_TAG, Payload, audited, parse_time
from shared.adapters import telemetry
from shared.domain.models import Backup, BackupState, ReplicationStatus
from shared.domain.policy import BackupPolicy, PolicyError, policy_for
from shared.domain.retention import plan_retention, source_gone
from shared.errors import NotFoundError, sanitise
from shared.services import Services


def apply_retention(payload: Payload, svc: Services) -> Payload:
    """Plan retention for one VM and delete what the plan expires (snapshots, then replicas).

    The policy is the VM's tag as Azure has it now, never one handed in by the input.
    """
    vm_key = payload["vm_key"]
    now = parse_time(payload["now"])
    backups = svc.catalog.list_backups(vm_key)  # the plan never looks at deleted ones
    policy, policy_error = _current_policy(svc, backups)
    plan = plan_retention(
        backups, policy, now, in_use=backups_in_use(svc, backups), policy_error=policy_error
    )
    by_id = {backup.backup_id: backup for backup in backups}
    deleted = 0
    for decision in plan.decisions:
        backup = by_id[decision.backup_id]
        if not decision.keep_replica:
            _delete_replicas(svc, backup)
        if not decision.keep:
            _delete_backup(svc, backup)
            deleted += 1
    telemetry.emit(
        "RetentionApplied",
        vm=vm_key,
        kept=len(plan.decisions) - deleted,
        deleted=deleted,
        halted=plan.halted,
    )
    return {"kept": len(plan.decisions) - deleted, "deleted": deleted, "halted": plan.halted}


def _current_policy(svc: Services, backups: list[Backup]) -> tuple[BackupPolicy | None, str | None]:
    """The VM's policy from its tag (None, with why, when the VM or a valid tag is missing)."""
    if not backups:
        return None, "no backups"
    newest = max(backups, key=lambda b: b.taken_at)
    try:
        vm = svc.gateway.get_vm(_resource_group_of(newest.vm_id), newest.vm_name)
        return policy_for(vm), None
    except NotFoundError:  # gone: its backups stay, newest included, until an operator acts
        return None, source_gone(newest.vm_name, newest.policy)
    except PolicyError as error:
        return None, str(error)


def _resource_group_of(resource_id: str) -> str:
    parts = resource_id.split("/")
    lowered = [part.lower() for part in parts]
    return parts[lowered.index("resourcegroups") + 1] if "resourcegroups" in lowered else ""


def fail_retention(payload: Payload, svc: Services) -> Payload:
    """Retention could not run for a VM: an event (and its alert), never silence."""
    message = sanitise(payload["error"], limit=500)
    telemetry.emit("RetentionFailed", vm=payload["vm_key"], error=message)
    return {"failed": message}


def backups_in_use(svc: Services, backups: list[Backup]) -> set[str]:
    """Backups a running verification or DR test restored from (their disks carry the tag)."""
    regions = {b.region for b in backups} | {b.replica_region for b in backups if b.replica_region}
    in_use: set[str] = set()
    for region in sorted(regions):
        for resource in svc.gateway.list_tagged(svc.settings.drtest_group(region), SOURCE_TAG):
            in_use.add(resource.tags[SOURCE_TAG])
    return in_use


def _delete_backup(svc: Services, backup: Backup) -> None:
    for ref in backup.snapshots:
        audited(
            svc,
            "delete",
            ref.snapshot_id,
            partial(svc.gateway.delete_snapshot, ref.snapshot_id),
            vm_key=backup.vm_key,
            operation="retention",
        )
    svc.catalog.update_backup(backup.vm_key, backup.backup_id, state=BackupState.DELETED)


def _delete_replicas(svc: Services, backup: Backup) -> None:
    refs = [ref for ref in backup.snapshots if ref.replica_id]
    if not refs:
        return
    for ref in refs:
        assert ref.replica_id is not None
        audited(
            svc,
            "delete",
            ref.replica_id,
            partial(svc.gateway.delete_snapshot, ref.replica_id),
            vm_key=backup.vm_key,
            operation="retention",
        )
    svc.catalog.update_backup(
        backup.vm_key,
        backup.backup_id,
        snapshots=tuple(
            dataclasses.replace(ref, replica_id=None, replica_status=ReplicationStatus.NONE)
            for ref in backup.snapshots
        ),
        replication_status=ReplicationStatus.NONE,
    )
