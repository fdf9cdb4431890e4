"""Retention steps: plan a VM's retention from its tag and its snapshots' tags, and carry it out.

Deletion is soft first (DESIGN.md "Tier and retention"): an expired backup is marked (catalog state
and a `backup-deleted-at` tag on its snapshots), stays restorable for the soft-delete window
(`backup undelete`), then is purged. A purge is recorded (`purging`) before its first delete, so
one that stops midway is finished by the next run and is never listed as restorable meanwhile.
What an operator holds (`backup-hold=true` on any of a backup's snapshots or replicas, read from
Azure before the backup is deleted) and what the app did not make (no `managed-by=backupdr`) is
never deleted.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Collection, Iterable
from datetime import datetime, timedelta
from functools import partial

from shared.activities.common import (
    APP,
    MANAGED_BY,
    SOURCE_TAG,
    Payload,
    audited,
    kept_test_groups,
    parse_time,
)
from shared.adapters import telemetry
from shared.domain.models import (
    Backup,
    BackupState,
    InUseListing,
    PolicyChange,
    RetentionState,
)
from shared.domain.policy import BackupPolicy, PolicyError, format_policy, parse_policy, policy_for
from shared.domain.retention import (
    RetentionPlan,
    Superseded,
    effective_policy,
    expected_deletions,
    plan_retention,
    shortens,
    source_gone,
)
from shared.errors import NotFoundError, PermanentError, sanitise
from shared.ports import TaggedResource
from shared.services import Services
from shared.settings import Settings

HOLD_TAG = "backup-hold"
DELETED_TAG = "backup-deleted-at"
# How old a policy a backup recorded may be for retention to use it instead of reading the VM.
LISTED_FRESH = timedelta(hours=1)
# How old a listing of a DR-test group's restores may be for retention to use it: the hourly
# sweeper's, with room for a late one.
IN_USE_FRESH = timedelta(minutes=90)


@dataclasses.dataclass(frozen=True)
class Planned:
    """A VM's retention plan as of `now`, with what it was made from and what applying it
    would remember (`state`); `reduced` is a policy change that shortens retention."""

    vm_key: str
    now: datetime
    backups: tuple[Backup, ...]  # the catalog's rows; those the plan deletes as Azure tags them
    plan: RetentionPlan  # what a run does now (nothing, if the circuit breaker halts it)
    forced: RetentionPlan  # what an operator's `--apply` does: the plan past the breaker
    state: RetentionState
    reduced: PolicyChange | None = None

    @property
    def digest(self) -> str:
        """Names the forced plan's deletions: `--apply` refuses a plan that changed since."""
        doomed = ",".join(sorted(self.forced.to_delete))
        return hashlib.sha256(f"{self.vm_key}|{doomed}".encode()).hexdigest()[:12]

    def purgeable(self, window: timedelta) -> list[Backup]:
        """Soft-deleted backups past the window (unless held), and purges that stopped midway."""
        return [
            b
            for b in self.backups
            if b.state is BackupState.PURGING
            or (
                b.state is BackupState.SOFT_DELETED
                and not b.hold
                and (b.deleted_at is None or b.deleted_at + window <= self.now)
            )
        ]


def apply_retention(payload: Payload, svc: Services) -> Payload:
    """Plan retention for one VM and carry it out: soft-delete what expired, purge what has been
    soft-deleted for the window, and remember the policy and the run.

    The policy is the VM's tag as Azure has it, read before anything is deleted (a run that
    deletes nothing takes it as the backup `backup_id` recorded it from this hour's fleet run
    list), and the time is the app's clock, never anything handed in by the input (a forged
    start cannot shorten retention). With `paced` (a backup's follow-up) it may answer
    "waiting" first (`_reserve`).
    """
    planned = plan_vm(svc, payload["vm_key"], listed_by=payload.get("backup_id"))
    if payload.get("paced"):
        waiting = _reserve(svc, planned, payload)
        if waiting is not None:
            return waiting
    return carry_out(svc, planned)


def _reserve(svc: Services, planned: Planned, payload: Payload) -> Payload | None:
    """A paced run (a backup's follow-up) sends its tags and deletes in the write bucket's
    refill reserved for them: "waiting" with the reservation (`writes_from`, `writes`), which
    the next call hands back; None once the plan's writes are paid for."""
    writes = sum(len(_all_snapshots(b)) for b in _acted_on(planned, svc.settings))
    now = svc.clock.now()
    if not writes:
        return None
    held = svc.catalog.writes_held_until()
    if (
        writes <= payload.get("writes", 0)
        and parse_time(payload["writes_from"]) <= now
        and (held is None or held <= now)  # else a fleet run began since: behind it
    ):
        return None
    start = svc.catalog.reserve_writes(writes, now)
    if start <= now:
        return None
    return {"state": "waiting", "writes_from": start.isoformat(), "writes": writes}


def _acted_on(planned: Planned, settings: Settings) -> list[Backup]:
    """What carrying the plan out tags or deletes in Azure: expired backups, then purges."""
    by_id = {b.backup_id: b for b in planned.backups}
    expired = [by_id[backup_id] for backup_id in planned.plan.to_delete]
    return [*expired, *planned.purgeable(timedelta(days=settings.soft_delete_days))]


def carry_out(svc: Services, planned: Planned) -> Payload:
    """Apply a plan (the timer's or one an operator reviewed) and record the run."""
    expired = set(planned.plan.to_delete)
    deleted = purged = 0
    for backup in _acted_on(planned, svc.settings):
        if (
            backup.backup_id in expired
            and backup.state is BackupState.COMPLETED
            and _soft_delete(svc, backup, planned.now)
        ):
            deleted += 1
        else:  # a purge, a failed backup's partial snapshots, or one whose snapshots are gone
            _purge(svc, backup)
            purged += 1
    if planned.reduced is not None:  # before the state that records it: never lost, at most twice
        telemetry.emit(
            "RetentionReduced",
            vm=planned.vm_key,
            previous=planned.reduced.policy,
            policy=planned.state.policy,
            effective_at=(
                planned.reduced.until + timedelta(days=svc.settings.soft_delete_days)
            ).isoformat(),
        )
    svc.catalog.save_retention_state(planned.state)
    kept = len(planned.plan.decisions) - deleted
    telemetry.emit(
        "RetentionApplied",
        vm=planned.vm_key,
        kept=kept,
        deleted=deleted,
        purged=purged,
        halted=planned.plan.halted,
    )
    return {"kept": kept, "deleted": deleted, "purged": purged, "halted": planned.plan.halted}


def plan_vm(
    svc: Services,
    vm_key: str,
    *,
    force: bool = False,
    full: bool = False,
    listed_by: str | None = None,
) -> Planned:
    """The VM's plan now: its rows, its policy (a shortening waits out the soft-delete window)
    and the deletions the circuit breaker expects since the last run.

    Before a backup is planned for deletion its snapshots' tags are read from Azure (a hold or
    a missing `managed-by` set there keeps it) and the plan is made again with what they say,
    until every backup it would delete has been read. Reading only those keeps a run's reads
    to the VM's few expiring backups, not every snapshot of the fleet. `full` reads every
    backup first (an operator's `plan-retention`, which shows every hold).

    The policy a fleet run listed (recorded by the backup `listed_by`, this hour) saves reading
    the VM when nothing is to be deleted; a plan that deletes is made again with the tag as
    Azure has it now, so an operator's edit since the listing (a lengthening) counts.
    """
    now = svc.clock.now()
    rows = svc.catalog.list_backups(vm_key)  # deleted ones are past; the rest are planned here
    window = timedelta(days=svc.settings.soft_delete_days)
    stored = svc.catalog.get_retention_state(vm_key) or RetentionState(vm_key=vm_key)
    listed = _listed_policy(svc, rows, listed_by)
    current = None if listed is not None else _current_policy(svc, rows)
    previous = _parsed(stored.applied_policy)
    in_use = backups_in_use(svc, rows)
    read = {b.backup_id for b in rows} if full else set()
    backups = _as_in_azure(svc, rows, read)
    while True:
        policy, policy_error = (listed, None) if current is None else current
        state, reduced, effective = _with_policy(stored, policy, now, window)
        planner = partial(
            plan_retention,
            backups,
            effective,
            now,
            in_use=in_use,
            policy_error=policy_error,
            expected=0
            if effective is None
            else expected_deletions(backups, effective, previous, state.applied_at, now),
        )
        forced = planner(force=True)
        plan = forced if force else planner()
        planned = Planned(vm_key, now, tuple(backups), plan, forced, state, reduced)
        if current is None and forced.to_delete:
            current = _current_policy(svc, rows)  # deleting: by the tag as it is now
            continue
        doomed = {*forced.to_delete, *(b.backup_id for b in planned.purgeable(window))} - read
        if not doomed:
            break
        backups = _as_in_azure(svc, backups, doomed)
        read |= doomed
    if plan.halted is None and effective is not None:
        state = dataclasses.replace(
            state, applied_at=now, applied_policy=format_policy(effective), halted=None
        )
    else:
        state = dataclasses.replace(state, halted=plan.halted)
    return dataclasses.replace(planned, state=state)


def _with_policy(
    state: RetentionState, policy: BackupPolicy | None, now: datetime, window: timedelta
) -> tuple[RetentionState, PolicyChange | None, BackupPolicy | None]:
    """The state with `policy` remembered, the change that shortens retention (if it does) and
    the policy in effect (a shortening waits out the window); all as they were with no policy."""
    if policy is None:
        return state, None, None
    state, reduced = _remember(state, policy, now, window)
    return state, reduced, effective_policy(policy, _superseded(state), now, window)


def _remember(
    state: RetentionState, policy: BackupPolicy, now: datetime, window: timedelta
) -> tuple[RetentionState, PolicyChange | None]:
    """Record a changed policy: the old one goes to `superseded` (kept for the window), and a
    change that keeps fewer periods is a `RetentionReduced`."""
    text = format_policy(policy)
    recent = tuple(c for c in state.superseded if c.until > now - window)
    if state.policy is None or state.policy == text:
        return dataclasses.replace(state, policy=text, superseded=recent), None
    change = PolicyChange(policy=state.policy, until=now)
    old = _parsed(state.policy)
    reduced = change if old is not None and shortens(policy, old) else None
    return dataclasses.replace(state, policy=text, superseded=(*recent, change)), reduced


def _superseded(state: RetentionState) -> list[Superseded]:
    parsed = ((_parsed(c.policy), c.until) for c in state.superseded)
    return [Superseded(policy, until) for policy, until in parsed if policy is not None]


def _parsed(text: str | None) -> BackupPolicy | None:
    """A recorded policy (as `format_policy` wrote it); None when absent or no longer valid."""
    if text is None:
        return None
    try:
        return parse_policy(text)
    except PolicyError:
        return None


def _listed_policy(
    svc: Services, backups: list[Backup], listed_by: str | None
) -> BackupPolicy | None:
    """The policy the backup `listed_by` recorded from Azure (its fleet run's list of the VM),
    if it was taken this hour; else None."""
    listed = next((b for b in backups if b.backup_id == listed_by), None)
    if listed is None or listed.taken_at < svc.clock.now() - LISTED_FRESH:
        return None
    return _parsed(listed.policy)


def _current_policy(svc: Services, backups: list[Backup]) -> tuple[BackupPolicy | None, str | None]:
    """The VM's policy from its tag (None, with why, when the VM or a valid tag is missing)."""
    if not backups:
        return None, "no backups"
    newest = max(backups, key=lambda b: b.taken_at)
    try:
        vm = svc.gateway.get_vm(newest.source_resource_group, newest.vm_name)
        return policy_for(vm, svc.settings.regions), None
    except NotFoundError:  # gone: its backups stay, newest included, until an operator acts
        return None, source_gone(newest.vm_name, newest.policy)
    except PolicyError as error:
        return None, str(error)


def _as_in_azure(svc: Services, rows: list[Backup], ids: Collection[str]) -> list[Backup]:
    """The rows, those named in `ids` with `hold` and `managed` as their snapshots' tags say
    now; the catalog follows, so `list` shows what retention saw."""
    backups = []
    for row in rows:
        if row.backup_id in ids:
            sources = [_tags(svc, ref.snapshot_id) for ref in row.snapshots]
            replicas = [_tags(svc, ref.replica_id) for ref in row.snapshots if ref.replica_id]
            present = [t for t in (*sources, *replicas) if t is not None]
            hold = any(t.get(HOLD_TAG, "").lower() == "true" for t in present)
            made = [t.get(MANAGED_BY) == APP for t in sources if t is not None]
            managed = all(made) if made else row.managed
            if (hold, managed) != (row.hold, row.managed):
                row = svc.catalog.update_backup(
                    row.vm_key, row.backup_id, hold=hold, managed=managed
                )
        backups.append(row)
    return backups


def _tags(svc: Services, snapshot_id: str) -> dict[str, str] | None:
    """A snapshot's tags in Azure; None when it is gone."""
    try:
        return svc.gateway.get_snapshot(snapshot_id).tags
    except NotFoundError:
        return None


def fail_retention(payload: Payload, svc: Services) -> Payload:
    """Retention could not run for a VM: an event (and its alert), never silence."""
    message = sanitise(payload["error"], limit=500)
    telemetry.emit("RetentionFailed", vm=payload["vm_key"], error=message)
    return {"failed": message}


def backups_in_use(svc: Services, backups: Iterable[Backup]) -> set[str]:
    """Backups a running verification or DR test restored from (their disks carry the tag), in
    the DR-test groups of the backups' regions and any group a DR test was given (as kept for
    IN_USE_FRESH, for the reason `restored_from`'s listings are). A group that does not exist
    has nothing in use."""
    listed = list(backups)
    regions = {b.region for b in listed} | {b.replica_region for b in listed if b.replica_region}
    groups = {svc.settings.drtest_group(region) for region in regions}
    groups |= kept_test_groups(svc, groups, IN_USE_FRESH)
    in_use: set[str] = set()
    for group in sorted(groups):
        in_use.update(restored_from(svc, group))
    return in_use


def restored_from(svc: Services, group: str) -> tuple[str, ...]:
    """The backups the restores in `group` came from. A listing at most IN_USE_FRESH old (the
    hourly sweeper's, or this run's) is the catalog's, so a fleet run does not list per VM.

    Reusing one is safe because the soft-delete window (a day at least) outlasts any test (its
    resources expire in hours): a test that starts after the listing restores a completed
    backup, which retention can at most soft-delete (it stays in Azure) and purges only a
    window later, the test long gone."""
    now = svc.clock.now()
    kept = svc.catalog.in_use_listing(group)
    if kept is not None and kept.listed_at >= now - IN_USE_FRESH:
        return kept.sources
    try:
        tagged = svc.gateway.list_tagged(group, SOURCE_TAG)
    except NotFoundError:  # a group that does not exist has nothing in use
        tagged = []
    return note_restores(svc, group, now, tagged)


def note_restores(
    svc: Services, group: str, listed_at: datetime, tagged: Iterable[TaggedResource]
) -> tuple[str, ...]:
    """Keep what a listing of `group` says its restores came from (their source tags)."""
    sources = tuple(sorted({r.tags[SOURCE_TAG] for r in tagged if SOURCE_TAG in r.tags}))
    svc.catalog.save_in_use_listing(InUseListing(group, listed_at, sources))
    return sources


def _all_snapshots(backup: Backup) -> list[str]:
    """Every snapshot of the backup: replicas first (they follow their source), then sources."""
    replicas = [ref.replica_id for ref in backup.snapshots if ref.replica_id]
    return [*replicas, *(ref.snapshot_id for ref in backup.snapshots)]


def _tag_all(svc: Services, backup: Backup, tags: dict[str, str | None], operation: str) -> None:
    for snapshot_id in _all_snapshots(backup):
        audited(
            svc,
            "tag",
            snapshot_id,
            partial(svc.gateway.tag_snapshot, snapshot_id, tags),
            vm_key=backup.vm_key,
            operation=operation,
        )


def _soft_delete(svc: Services, backup: Backup, now: datetime) -> bool:
    """Mark an expired backup deleted, in Azure (a tag) and then in the catalog; False when a
    snapshot is already gone (a backup missing a disk is purged, not kept as restorable)."""
    try:
        _tag_all(svc, backup, {DELETED_TAG: now.isoformat()}, "retention")
    except NotFoundError:
        return False
    svc.catalog.update_backup(
        backup.vm_key, backup.backup_id, state=BackupState.SOFT_DELETED, deleted_at=now
    )
    return True


def _purge(svc: Services, backup: Backup) -> None:
    """Delete every snapshot and replica, recorded as purging first so a stop midway is
    finished by the next run; a snapshot already gone counts as deleted."""
    if backup.state is not BackupState.PURGING:
        svc.catalog.update_backup(backup.vm_key, backup.backup_id, state=BackupState.PURGING)
    for snapshot_id in _all_snapshots(backup):
        audited(
            svc,
            "delete",
            snapshot_id,
            partial(svc.gateway.delete_snapshot, snapshot_id),
            vm_key=backup.vm_key,
            operation="retention",
        )
    svc.catalog.update_backup(backup.vm_key, backup.backup_id, state=BackupState.DELETED)


def set_hold(svc: Services, backup: Backup, held: bool) -> Backup:
    """Hold a backup (retention keeps it, soft-deleted or not) or release it: the tag goes on
    every snapshot and replica in Azure, where retention reads it, and the catalog follows."""
    if backup.state not in (BackupState.COMPLETED, BackupState.SOFT_DELETED, BackupState.FAILED):
        raise PermanentError(f"backup {backup.backup_id} is {backup.state}: nothing to hold")
    _tag_all(svc, backup, {HOLD_TAG: "true" if held else None}, "hold" if held else "release")
    # Releasing a backup with a change anomaly also lets retention decide about earlier ones.
    released = {"anomaly_released": True} if backup.anomaly and not held else {}
    return svc.catalog.update_backup(backup.vm_key, backup.backup_id, hold=held, **released)


def undelete(svc: Services, backup: Backup) -> Backup:
    """Bring a soft-deleted backup back, held, so the next run does not expire it again; an
    operator releases it to let retention decide."""
    if backup.state is not BackupState.SOFT_DELETED:
        why = "purged" if backup.state in (BackupState.PURGING, BackupState.DELETED) else "live"
        raise PermanentError(
            f"backup {backup.backup_id} is {backup.state} ({why}): only a soft-deleted backup "
            "can be undeleted"
        )
    _tag_all(svc, backup, {HOLD_TAG: "true", DELETED_TAG: None}, "undelete")
    return svc.catalog.update_backup(
        backup.vm_key, backup.backup_id, state=BackupState.COMPLETED, hold=True, deleted_at=None
    )
