"""Which of a VM's backups to keep and which to delete, each with its reasons (GFS, restic style).

A completed backup is kept when it is the first backup of one of the `daily` most recent UTC days
that have a completed backup, or of one of the `weekly` most recent ISO weeks, or the `monthly` most
recent months. Counting periods that *have* backups, not calendar periods back from `now`, means a
VM that was off for two weeks keeps its history. The tiers are a table driven by one loop.

Safety rules then keep what must not go whatever the counts say, and two brakes stop deletion
outright: no valid policy deletes nothing, and neither does a plan that would delete more than half
of the VM's backups (the circuit breaker; an operator may `force` past it after a dry run).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Collection, Sequence
from datetime import datetime

from shared.domain.models import Backup, BackupState, ReplicationStatus, VerificationState
from shared.domain.policy import BackupPolicy
from shared.domain.schedule import require_utc
from shared.domain.tiers import PeriodKey, day_key, month_key, week_key

NO_POLICY = "kept: no valid policy (deletes nothing)"
_COPYING = (ReplicationStatus.PENDING, ReplicationStatus.IN_PROGRESS)


@dataclasses.dataclass(frozen=True)
class Decision:
    """What happens to one backup, and why (reasons start with `kept:` or `expired:`)."""

    backup_id: str
    keep: bool
    reasons: tuple[str, ...]
    keep_replica: bool


@dataclasses.dataclass(frozen=True)
class RetentionPlan:
    """Decisions for one VM's backups, newest first; `halted` says why nothing is deleted."""

    decisions: tuple[Decision, ...]
    halted: str | None = None

    @property
    def to_delete(self) -> tuple[str, ...]:
        return tuple(d.backup_id for d in self.decisions if not d.keep)

    @property
    def to_keep(self) -> tuple[str, ...]:
        return tuple(d.backup_id for d in self.decisions if d.keep)

    @property
    def replicas_to_delete(self) -> tuple[str, ...]:
        """Backups whose replica in the DR region may go (a replica follows its source)."""
        return tuple(d.backup_id for d in self.decisions if not d.keep_replica)


@dataclasses.dataclass(frozen=True)
class _Tier:
    label: str  # the tier's name in reasons
    count: Callable[[BackupPolicy], int]  # how many periods the policy keeps
    period: PeriodKey  # the period a backup falls in, as shown in reasons


# The GFS tiers as data: one loop below applies each row.
_TIERS = (
    _Tier("daily", lambda p: p.daily, day_key),
    _Tier("weekly", lambda p: p.weekly, week_key),
    _Tier("monthly", lambda p: p.monthly, month_key),
)


def _newest(backups: Sequence[Backup], wanted: Callable[[Backup], bool]) -> str | None:
    """Id of the newest backup in `backups` (sorted newest first) that is `wanted`."""
    return next((b.backup_id for b in backups if wanted(b)), None)


def _period_keeps(counted: Sequence[Backup], policy: BackupPolicy) -> dict[str, list[str]]:
    """`kept: <tier> <period>` reasons for the first backup of each of the most recent periods."""
    reasons: dict[str, list[str]] = {}
    for tier in _TIERS:
        firsts: dict[str, Backup] = {}
        for backup in counted:  # newest first, so the last one seen in a period is its first
            firsts[tier.period(backup.taken_at)] = backup
        for period in list(firsts)[: tier.count(policy)]:
            reasons.setdefault(firsts[period].backup_id, []).append(f"kept: {tier.label} {period}")
    return reasons


def _safety_reasons(
    backup: Backup, now: datetime, in_use: Collection[str], newest: dict[str, str | None]
) -> list[str]:
    """Reasons that keep a backup whatever the counts say."""
    rules = [
        (backup.taken_at > now, "kept: taken after now"),
        (backup.state is BackupState.CREATING, "kept: still being created"),
        (backup.backup_id == newest["completed"], "kept: newest completed"),
        (backup.backup_id == newest["verified"], "kept: newest verified"),
        (backup.backup_id == newest["replicated"], "kept: newest replicated"),
        (backup.replication_status in _COPYING, "kept: copy in progress"),
        (backup.backup_id in in_use, "kept: in use by verification or DR test"),
        (not backup.managed, "kept: not created by backupdr"),
        (backup.hold, "kept: backup-hold"),
    ]
    return [reason for applies, reason in rules if applies]


def _check(backups: Sequence[Backup]) -> None:
    vms = sorted({b.vm_key for b in backups})
    if len(vms) > 1:
        raise ValueError(f"plan_retention takes one VM's backups; got {len(vms)} VMs: {vms[:3]}")
    ids = [b.backup_id for b in backups]
    if len(set(ids)) != len(ids):
        duplicate = next(i for i in ids if ids.count(i) > 1)
        raise ValueError(f"backup_id={duplicate!r}: appears more than once")


def plan_retention(
    backups: Sequence[Backup],
    policy: BackupPolicy | None,
    now: datetime,
    *,
    in_use: Collection[str] = (),
    policy_error: str | None = None,
    force: bool = False,
) -> RetentionPlan:
    """Decide every non-deleted backup of one VM; a pure function of its arguments.

    `policy=None` means the VM's policy is missing or invalid (`policy_error` says why): every
    backup is kept. `in_use` holds ids a running verification or DR test reads. `force` lets an
    operator delete past the circuit breaker after reviewing the plan; it never overrides the
    safety rules or a missing policy.
    """
    now = require_utc(now, "now")
    _check(backups)
    for b in backups:
        require_utc(b.taken_at, f"{b.backup_id}.taken_at")
    live = sorted(
        (b for b in backups if b.state is not BackupState.DELETED),
        key=lambda b: (b.taken_at, b.backup_id),
        reverse=True,
    )
    # Only completed backups up to `now` count for periods and for "newest".
    counted = [b for b in live if b.state is BackupState.COMPLETED and b.taken_at <= now]
    newest = {
        "completed": _newest(counted, lambda b: True),
        "verified": _newest(counted, lambda b: b.verification is VerificationState.PASSED),
        "replicated": _newest(
            counted, lambda b: b.replication_status is ReplicationStatus.COMPLETED
        ),
    }
    periods = _period_keeps(counted, policy) if policy else {}
    kept = {
        b.backup_id: periods.get(b.backup_id, [])
        + _safety_reasons(b, now, in_use, newest)
        + ([] if policy else [NO_POLICY])
        for b in live
    }
    halted = None if policy else f"no valid policy: {policy_error or 'no backup-policy tag'}"
    doomed = [i for i, reasons in kept.items() if not reasons]
    # The breaker weighs real backups only: expiring failed (partial) ones is no alarm.
    complete = {b.backup_id for b in live if b.state is BackupState.COMPLETED}
    doomed_complete = [i for i in doomed if i in complete]
    if 2 * len(doomed_complete) > len(complete) and not force:
        brake = f"circuit breaker (would delete {len(doomed_complete)} of {len(complete)})"
        halted = f"{brake}: more than half of the VM's backups, so nothing is deleted"
        kept.update({i: [f"kept: {brake}"] for i in doomed})

    beyond = " / ".join(f"{t.count(policy)} {t.label}" for t in _TIERS) if policy else ""
    return RetentionPlan(
        decisions=tuple(
            Decision(
                backup_id=b.backup_id,
                keep=bool(kept[b.backup_id]),
                reasons=tuple(kept[b.backup_id] or [_expiry(b, beyond)]),
                keep_replica=bool(kept[b.backup_id]) or b.backup_id == newest["replicated"],
            )
            for b in live
        ),
        halted=halted,
    )


def source_gone(vm_name: str, policy: str | None) -> str:
    """Why a VM that Azure no longer has keeps all its backups (`policy_error` of its plan):
    under its last known policy nothing more is deleted until an operator says so."""
    last = f"last policy {policy}" if policy else "no policy recorded"
    return (
        f"source gone: VM {vm_name} no longer exists; its backups are kept ({last}) "
        "until an operator deletes them"
    )


def _expiry(backup: Backup, beyond: str) -> str:
    if backup.state is BackupState.COMPLETED:
        return f"expired: beyond {beyond}"
    return "expired: failed (partial snapshots)"
