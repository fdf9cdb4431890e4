"""Which of a VM's backups to keep and which to expire, each with its reasons (GFS, restic style).

A scheduled backup this app made is kept when it stands for one of the `daily` most recent UTC days
that have such a backup, or one of the `weekly` most recent ISO weeks, or the `monthly` most recent
months. A period's stand-in is its first backup that passed verification, else its first backup.
Counting periods that *have* backups, not calendar periods back from `now`, means a VM that was off
for two weeks keeps its history. Manual backups keep their own date instead, and snapshots the app
did not make are kept and never counted.

Safety rules then keep what must not go whatever the counts say, and two brakes stop deletion
outright: no valid policy deletes nothing, and neither does an unexpected mass deletion (the
circuit breaker): a plan that expires more than half of the counted backups and more than the
run's `expected` deletions, which the caller derives from what changed since its last run
(`expected_deletions`). An operator may `force` past it after reviewing the plan.

A policy that shortens retention takes effect only after a window (`effective_policy`), so a tag
edit cannot destroy history overnight.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Collection, Sequence
from datetime import datetime, timedelta

from shared.domain.models import Backup, BackupState, ReplicationStatus, VerificationState
from shared.domain.policy import BackupPolicy
from shared.domain.schedule import require_utc
from shared.domain.tiers import PeriodKey, day_key, month_key, week_key

NO_POLICY = "kept: no valid policy (deletes nothing)"
MANUAL_KEEP = timedelta(days=30)  # a manual backup's keep when its row names none (older rows)
# A backup still "creating" this long after it was taken, with a newer slot begun, was abandoned
# (its workflow died): its partial snapshots go like a failed backup's.
ABANDONED_AFTER = timedelta(days=1)
# Each new counted backup can push at most one period out of each tier: the deletions it explains.
_TIER_COUNT = 3
_COPYING = (ReplicationStatus.PENDING, ReplicationStatus.IN_PROGRESS)


@dataclasses.dataclass(frozen=True)
class Decision:
    """What happens to one backup, and why (reasons start with `kept:` or `expired:`)."""

    backup_id: str
    keep: bool
    reasons: tuple[str, ...]


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


def counted(backups: Sequence[Backup], now: datetime) -> list[Backup]:
    """The backups that stand for periods and for "newest": completed scheduled backups this app
    made, taken up to `now`, newest first."""
    return sorted(
        (
            b
            for b in backups
            if b.state is BackupState.COMPLETED and b.managed and not b.manual and b.taken_at <= now
        ),
        key=lambda b: (b.taken_at, b.backup_id),
        reverse=True,
    )


def _newest(backups: Sequence[Backup], wanted: Callable[[Backup], bool]) -> str | None:
    """Id of the newest backup in `backups` (sorted newest first) that is `wanted`."""
    return next((b.backup_id for b in backups if wanted(b)), None)


def _period_keeps(scheduled: Sequence[Backup], policy: BackupPolicy) -> dict[str, list[str]]:
    """`kept: <tier> <period>` reasons for the stand-in of each of the most recent periods: its
    first backup that passed verification, else its first backup."""
    reasons: dict[str, list[str]] = {}
    for tier in _TIERS:
        periods: dict[str, list[Backup]] = {}
        for backup in scheduled:  # newest first, so periods come newest first too
            periods.setdefault(tier.period(backup.taken_at), []).append(backup)
        for period in list(periods)[: tier.count(policy)]:
            oldest_first = periods[period][::-1]
            verified = [b for b in oldest_first if b.verification is VerificationState.PASSED]
            stand_in = (verified or oldest_first)[0]
            reasons.setdefault(stand_in.backup_id, []).append(f"kept: {tier.label} {period}")
    return reasons


def _safety_reasons(
    backup: Backup,
    now: datetime,
    in_use: Collection[str],
    newest: dict[str, str | None],
    anomaly: Backup | None,
) -> list[str]:
    """Reasons that keep a backup whatever the counts say."""
    rules = [
        # The anomalous backup holds itself too: it is the evidence, and the hold's pivot.
        (
            anomaly is not None and backup.taken_at <= anomaly.taken_at,
            f"kept: change anomaly at {anomaly.backup_id} (release it to let retention decide)"
            if anomaly
            else "",
        ),
        (backup.taken_at > now, "kept: taken after now"),
        (
            backup.state is BackupState.CREATING
            and (now - backup.taken_at < ABANDONED_AFTER or backup.backup_id == newest["slot"]),
            "kept: still being created",
        ),
        (backup.backup_id == newest["completed"], "kept: newest completed"),
        (backup.backup_id == newest["verified"], "kept: newest verified"),
        (backup.backup_id == newest["replicated"], "kept: newest replicated"),
        (backup.replication_status in _COPYING, "kept: copy in progress"),
        (backup.backup_id in in_use, "kept: in use by verification or DR test"),
        (not backup.managed, "kept: not created by backupdr"),
        (backup.hold, "kept: backup-hold"),
        # Its slot may still be retried under the same id: it goes once a newer slot exists.
        (backup.backup_id == newest["failed slot"], "kept: failed at the newest slot"),
    ]
    return [reason for applies, reason in rules if applies]


def _manual_reasons(backup: Backup, now: datetime) -> list[str]:
    """A completed manual backup is kept until its own date, whatever the tiers say."""
    if not backup.manual or backup.state is not BackupState.COMPLETED:
        return []
    until = manual_keep_until(backup)
    return [f"kept: manual until {until:%Y-%m-%d %H:%M}"] if now < until else []


def manual_keep_until(backup: Backup) -> datetime:
    """When a manual backup's own retention ends (30 days on rows older than `keep_until`)."""
    return backup.keep_until or backup.taken_at + MANUAL_KEEP


def _check(backups: Sequence[Backup]) -> None:
    vms = sorted({b.vm_key for b in backups})
    if len(vms) > 1:
        raise ValueError(f"plan_retention takes one VM's backups; got {len(vms)} VMs: {vms[:3]}")
    ids = [b.backup_id for b in backups]
    if len(set(ids)) != len(ids):
        duplicate = next(i for i in ids if ids.count(i) > 1)
        raise ValueError(f"backup_id={duplicate!r}: appears more than once")


_PLANNED = (BackupState.CREATING, BackupState.COMPLETED, BackupState.FAILED)


def plan_retention(
    backups: Sequence[Backup],
    policy: BackupPolicy | None,
    now: datetime,
    *,
    in_use: Collection[str] = (),
    policy_error: str | None = None,
    expected: int = 0,
    force: bool = False,
) -> RetentionPlan:
    """Decide every creating, completed or failed backup of one VM; a pure function.

    `policy=None` means the VM's policy is missing or invalid (`policy_error` says why): every
    backup is kept. `in_use` holds ids a running verification or DR test reads. `expected` is how
    many counted backups this run may expire without tripping the circuit breaker; `force` lets
    an operator past it after reviewing the plan, never past a safety rule or a missing policy.
    Soft-deleted, purging and deleted backups are retention's past, not planned here.
    """
    now = require_utc(now, "now")
    _check(backups)
    for b in backups:
        require_utc(b.taken_at, f"{b.backup_id}.taken_at")
    live = sorted(
        (b for b in backups if b.state in _PLANNED),
        key=lambda b: (b.taken_at, b.backup_id),
        reverse=True,
    )
    scheduled = counted(live, now)
    newest_slot = max(live, key=lambda b: (b.slot, b.backup_id), default=None)
    newest = {
        "completed": _newest(scheduled, lambda b: True),
        "verified": _newest(scheduled, lambda b: b.verification is VerificationState.PASSED),
        "replicated": _newest(
            scheduled, lambda b: b.replication_status is ReplicationStatus.COMPLETED
        ),
        "slot": newest_slot.backup_id if newest_slot else None,
        "failed slot": newest_slot.backup_id
        if newest_slot and newest_slot.state is BackupState.FAILED
        else None,
    }
    anomaly = min(
        (b for b in live if b.anomaly and not b.anomaly_released),
        key=lambda b: b.taken_at,
        default=None,
    )
    periods = _period_keeps(scheduled, policy) if policy else {}
    kept = {
        b.backup_id: periods.get(b.backup_id, [])
        + _manual_reasons(b, now)
        + _safety_reasons(b, now, in_use, newest, anomaly)
        + ([] if policy else [NO_POLICY])
        for b in live
    }
    halted = None if policy else f"no valid policy: {policy_error or 'no backup-policy tag'}"
    doomed = [i for i, reasons in kept.items() if not reasons]
    # The breaker weighs counted backups only: expiring failed (partial) or manual ones is no alarm.
    doomed_counted = [b.backup_id for b in scheduled if b.backup_id in doomed]
    if _trips(len(doomed_counted), len(scheduled), expected) and not force:
        brake = (
            f"circuit breaker (would delete {len(doomed_counted)} of {len(scheduled)}, "
            f"{expected} expected)"
        )
        halted = f"{brake}: more than half of the VM's backups, so nothing is deleted"
        kept.update({i: [f"kept: {brake}"] for i in doomed})

    beyond = " / ".join(f"{t.count(policy)} {t.label}" for t in _TIERS) if policy else ""
    return RetentionPlan(
        decisions=tuple(
            Decision(
                backup_id=b.backup_id,
                keep=bool(kept[b.backup_id]),
                reasons=tuple(kept[b.backup_id] or [_expiry(b, beyond)]),
            )
            for b in live
        ),
        halted=halted,
    )


def _trips(doomed: int, counted_total: int, expected: int) -> bool:
    """An unexpected mass deletion: more than half of what counts, and more than expected."""
    return 2 * doomed > counted_total and doomed > expected


def expected_deletions(
    backups: Sequence[Backup],
    policy: BackupPolicy,
    previous: BackupPolicy | None,
    since: datetime | None,
    now: datetime,
) -> int:
    """How many counted backups a run at `now` may expire and be no surprise: what the backups
    taken since the last run (`since`) push out of the tiers, plus what a change from the
    `previous` effective policy (recorded, its window passed) expires. No last run: none."""
    if since is None:
        return 0
    scheduled = counted(backups, now)
    aged = _TIER_COUNT * sum(1 for b in scheduled if b.taken_at > since)
    if previous is None or previous == policy:
        return aged
    under_new = len(plan_retention(backups, policy, now, force=True).to_delete)
    under_old = len(plan_retention(backups, previous, now, force=True).to_delete)
    return aged + max(0, under_new - under_old)


@dataclasses.dataclass(frozen=True)
class Superseded:
    """A policy that was the VM's until `until`: it still governs retention for a window."""

    policy: BackupPolicy
    until: datetime


def effective_policy(
    current: BackupPolicy, superseded: Sequence[Superseded], now: datetime, window: timedelta
) -> BackupPolicy:
    """The policy retention applies: per tier, the most generous of the current policy and of
    every policy superseded within `window` of `now`, so shortening takes effect after it."""
    recent = [s.policy for s in superseded if s.until > now - window]
    return dataclasses.replace(
        current,
        daily=max([current.daily, *(p.daily for p in recent)]),
        weekly=max([current.weekly, *(p.weekly for p in recent)]),
        monthly=max([current.monthly, *(p.monthly for p in recent)]),
    )


def shortens(new: BackupPolicy, old: BackupPolicy) -> bool:
    """Whether `new` keeps fewer periods than `old` in some tier (a `RetentionReduced`)."""
    return any(t.count(new) < t.count(old) for t in _TIERS)


def source_gone(vm_name: str, policy: str | None) -> str:
    """Why a VM that Azure no longer has keeps all its backups (`policy_error` of its plan):
    under its last known policy nothing more is deleted until an operator says so."""
    last = f"last policy {policy}" if policy else "no policy recorded"
    return (
        f"source gone: VM {vm_name} no longer exists; its backups are kept ({last}) "
        "until an operator deletes them"
    )


def _expiry(backup: Backup, beyond: str) -> str:
    if backup.state is BackupState.FAILED:
        return "expired: failed (partial snapshots)"
    if backup.state is BackupState.CREATING:
        return "expired: abandoned while being created (partial snapshots)"
    if backup.manual:
        return f"expired: manual, kept until {manual_keep_until(backup):%Y-%m-%d %H:%M}"
    return f"expired: beyond {beyond}"
