"""Fluent builders for backups and histories, and the invariants every retention plan obeys.

`a_backup("2026-11-29T02:00").verified().build()`; `history(every("2026-01-01", 365))`.
Ids are the taken-at minute (plus a suffix when given), which keeps golden files readable.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, Self

from shared.domain.models import (
    Backup,
    BackupState,
    ReplicationStatus,
    Tier,
    VerificationState,
)
from shared.domain.policy import BackupPolicy
from shared.domain.retention import RetentionPlan
from shared.domain.tiers import day_key, month_key, tier_for, week_key

VM_KEY = "rg-app~web-01"


def at(text: str) -> datetime:
    """A UTC datetime from ISO text without a zone (`2026-11-29T02:00`)."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


class BackupBuilder:
    """One backup of VM_KEY; every method returns the builder so calls chain."""

    def __init__(self, taken_at: datetime, suffix: str = "") -> None:
        self._fields: dict[str, Any] = {
            "backup_id": taken_at.strftime("%Y-%m-%dT%H:%M") + suffix,
            "vm_key": VM_KEY,
            "vm_id": "/subscriptions/s/resourceGroups/rg-app/providers/Microsoft.Compute/"
            "virtualMachines/web-01",
            "vm_name": "web-01",
            "region": "eastus",
            "slot": taken_at,
            "taken_at": taken_at,
            "tier": Tier.DAILY,
        }

    def _set(self, **fields: Any) -> Self:
        self._fields.update(fields)
        return self

    def failed(self) -> Self:
        return self._set(state=BackupState.FAILED)

    def creating(self) -> Self:
        return self._set(state=BackupState.CREATING)

    def deleted(self) -> Self:
        return self._set(state=BackupState.DELETED)

    def verified(self) -> Self:
        return self._set(verification=VerificationState.PASSED)

    def verification_failed(self) -> Self:
        return self._set(verification=VerificationState.FAILED)

    def replicated(self, status: ReplicationStatus = ReplicationStatus.COMPLETED) -> Self:
        return self._set(replication_status=status, replica_region="westus2")

    def unmanaged(self) -> Self:
        return self._set(managed=False)

    def held(self) -> Self:
        return self._set(hold=True)

    def manual(self, keep_until: datetime | None = None) -> Self:
        return self._set(manual=True, keep_until=keep_until)

    def of_vm(self, vm_key: str) -> Self:
        return self._set(vm_key=vm_key)

    def build(self) -> Backup:
        return Backup(**self._fields)


def a_backup(taken_at: str | datetime, suffix: str = "") -> BackupBuilder:
    return BackupBuilder(at(taken_at) if isinstance(taken_at, str) else taken_at, suffix)


def every(start: str, count: int, step: timedelta = timedelta(days=1)) -> Iterator[datetime]:
    """`count` times from `start`, `step` apart."""
    first = at(start)
    return (first + i * step for i in range(count))


def history(times: Iterable[datetime]) -> list[Backup]:
    """Completed backups taken at `times`, each with the tier the app would have given it."""
    backups: list[Backup] = []
    for moment in sorted(times):
        tier = tier_for(moment, (b.taken_at for b in backups))
        backups.append(dataclasses.replace(a_backup(moment).build(), tier=tier))
    return backups


# --- What every retention plan must satisfy (shared by the golden and the property tests). ---

SAFETY_REASONS = (
    "kept: taken after now",
    "kept: still being created",
    "kept: newest completed",
    "kept: newest verified",
    "kept: newest replicated",
    "kept: copy in progress",
    "kept: in use by verification or DR test",
    "kept: not created by backupdr",
    "kept: backup-hold",
    "kept: failed at the newest slot",
)
PLANNED = (BackupState.CREATING, BackupState.COMPLETED, BackupState.FAILED)


def first_of_periods(backups: Iterable[Backup], policy: BackupPolicy, now: datetime) -> set[str]:
    """Ids retention must keep by period counting, computed independently (filter, group, sort,
    slice): scheduled completed backups the app made stand for periods; in each, the earliest
    that passed verification, else the earliest."""
    scheduled = [
        b
        for b in backups
        if b.state is BackupState.COMPLETED and b.managed and not b.manual and b.taken_at <= now
    ]
    keep: set[str] = set()
    for count, key in (
        (policy.daily, day_key),
        (policy.weekly, week_key),
        (policy.monthly, month_key),
    ):
        periods: dict[str, list[Backup]] = {}
        for b in scheduled:
            periods.setdefault(key(b.taken_at), []).append(b)
        recent = sorted(periods, key=lambda p: max(b.taken_at for b in periods[p]), reverse=True)
        for period in recent[:count]:
            members = sorted(periods[period], key=lambda b: (b.taken_at, b.backup_id))
            passed = [b for b in members if b.verification is VerificationState.PASSED]
            keep.add((passed or members)[0].backup_id)
    return keep


def safety_keeps(backups: Iterable[Backup], now: datetime, in_use: Iterable[str] = ()) -> set[str]:
    """Ids a safety rule (or a manual backup's own date) protects, computed independently."""
    live = [b for b in backups if b.state in PLANNED]
    done = sorted(
        (
            b
            for b in live
            if b.state is BackupState.COMPLETED and b.managed and not b.manual and b.taken_at <= now
        ),
        key=lambda b: (b.taken_at, b.backup_id),
    )
    verified = [b for b in done if b.verification is VerificationState.PASSED]
    replicated = [b for b in done if b.replication_status is ReplicationStatus.COMPLETED]
    newest = [group[-1] for group in (done, verified, replicated) if group]
    protected = {b.backup_id for b in newest} | set(in_use)
    last_slot = max(live, key=lambda b: (b.slot, b.backup_id), default=None)
    if last_slot is not None and last_slot.state is BackupState.FAILED:
        protected.add(last_slot.backup_id)
    copying = (ReplicationStatus.PENDING, ReplicationStatus.IN_PROGRESS)
    protected |= {
        b.backup_id
        for b in live
        if b.taken_at > now
        or (
            b.state is BackupState.CREATING
            and (now - b.taken_at < timedelta(days=1) or b is last_slot)
        )
        or b.replication_status in copying
        or not b.managed
        or b.hold
        or (
            b.manual
            and b.state is BackupState.COMPLETED
            and now < (b.keep_until or b.taken_at + timedelta(days=30))
        )
    }
    return protected & {b.backup_id for b in live}


def assert_plan_invariants(
    backups: list[Backup],
    policy: BackupPolicy | None,
    now: datetime,
    plan: RetentionPlan,
    in_use: Iterable[str] = (),
) -> None:
    """Restic's invariants first: one decision per live backup, reasons that match the decision,
    and a kept set that is exactly the period firsts plus the safety keeps (unless halted)."""
    live = {b.backup_id for b in backups if b.state in PLANNED}
    ids = [d.backup_id for d in plan.decisions]
    assert sorted(ids) == sorted(live), "one decision per creating, completed or failed backup"
    for d in plan.decisions:
        assert d.reasons, f"{d.backup_id} has no reason"
        prefix = "kept:" if d.keep else "expired:"
        assert all(r.startswith(prefix) for r in d.reasons), d
    protected = safety_keeps(backups, now, in_use)
    assert not protected & set(plan.to_delete), "a safety rule was overridden"
    if policy is None:
        assert plan.to_delete == (), "no valid policy must delete nothing"
        assert plan.halted
    elif plan.halted is None:
        expected = first_of_periods(backups, policy, now) | protected
        assert set(plan.to_keep) == expected
    else:
        assert plan.to_delete == ()
        assert "circuit breaker" in plan.halted
