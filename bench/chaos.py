"""Chaos run: the app's own timers, day after day, under injected faults, checked for loss.

    python -m bench.chaos --days 365 --seed 1 [--vms N] [--fleet PATH] [--soft-delete-days 14]

The whole app runs on `local_stack` (a fresh Azurite, the ARM simulator over HTTPS, the local
durable host on a virtual clock). A `random.Random(seed)` decides, day by day, what goes wrong:
429 storms and 5xx on snapshot and VM reads and writes, failed cross-region copies, region
outages of a few hours, catalog (Table Storage) outages of a few minutes, workers that crash
right after Azure accepted their request, policy tag edits (cuts, lengthenings, the odd invalid
tag) and backup holds put on and released by an operator.

What "nothing is lost" means here, each counted and printed at the end:

1. no backup is soft-deleted, purged or deleted while an independent reading of the retention
   rules (written below from DESIGN.md, not imported from the app) keeps it, and none while an
   operator's hold tag is on it;
2. after a quiet settling period, no snapshot in a backup group is unknown to the catalog;
3. every backup listed as completed has all its snapshots (and completed replicas) in Azure;
4. no workflow instance is left running.

The app may keep more than the rules (its circuit breaker, a slow purge); only less is a loss.
Exit status 1 when any of 1-4 found something.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import random
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, cast

from local.armsim import FaultRule
from local.stack import FLEETS, Stack, local_stack
from shared.adapters.telemetry import captured_events
from shared.domain.models import Backup, BackupState, ReplicationStatus, VerificationState
from shared.domain.policy import BackupPolicy, PolicyError, format_policy, policy_from_tags
from shared.errors import TransientError
from shared.ports import BackupCatalog, ComputeGateway
from shared.services import Services, install

# Written here rather than imported, so the check does not share the app's mistakes.
HOLD_TAG = "backup-hold"
POLICY_TAG = "backup-policy"
BACKUP_GROUP_MARK = "/resourcegroups/rg-backups-"
GONE = frozenset({BackupState.SOFT_DELETED, BackupState.PURGING, BackupState.DELETED})
LIVE_BEFORE = frozenset({BackupState.COMPLETED, BackupState.CREATING, BackupState.FAILED})
REGIONS = ("eastus", "westus2")
SETTLE_DAYS = 3
DAY = timedelta(days=1)
FOREVER = datetime.max.replace(tzinfo=UTC)
VM_NAME_MAX = 64  # Azure's limit for a VM's name

# Per day, the chance of each kind of trouble (a day may see several).
CHANCES = {
    "429": 0.15,
    "5xx": 0.20,
    "copy-fails": 0.10,
    "region-outage": 0.04,
    "catalog-outage": 0.08,
    "crash-after-accept": 0.12,
    "policy-edit": 0.12,
    "hold": 0.10,
    "release": 0.05,
}
FIVE_XX_OPERATIONS = (
    # reads
    "snapshots.get",
    "snapshots.list",
    "vms.list",
    "vms.get",
    "disks.get",
    "resources.list",
    "nics.list",
    "operations.get",  # an LRO poll answered 500: the PUT was accepted, its answer is lost
    # writes
    "snapshots.create",
    "snapshots.copy",
    "snapshots.update",
    "snapshots.delete",
    "disks.create",
    "disks.delete",
)
CRASHABLE = ("begin_snapshot", "begin_copy", "delete_snapshot", "tag_snapshot", "begin_delete")
DAILY_CHOICES = (0, 1, 2, 3, 5, 7, 14)
WEEKLY_CHOICES = (0, 1, 2, 4, 8)
MONTHLY_CHOICES = (0, 1, 3, 6, 12)


# --- the fleet -------------------------------------------------------------------------------


def protectable(vm: Mapping[str, Any]) -> bool:
    """A fleet entry the app will back up: a valid policy tag, and only managed, persistent disks
    (an ephemeral OS disk or a VHD cannot be snapshotted, so such a VM is only reported)."""
    try:
        if policy_from_tags(vm.get("tags") or {}) is None:
            return False
    except PolicyError:
        return False
    disks = [vm.get("os_disk") or {}, *(vm.get("data_disks") or [])]
    return not any(d.get("ephemeral") or d.get("unmanaged") for d in disks)


def load_fleet(path: Path, vms: int | None) -> dict[str, Any]:
    """The fleet file with `vms` protectable VMs (None: as it is): cut to its first ones, so a
    trial run stays small while keeping every resource group the app needs, or grown past them
    with copies (`<name>-c2`, same group, disks, policy and OS; a Dynamic address)."""
    fleet: dict[str, Any] = json.loads(path.read_text())
    if vms is None:
        return fleet
    left = vms
    for subscription in fleet["subscriptions"]:
        kept = []
        for vm in subscription.get("vms", []):
            if left > 0 and protectable(vm):
                kept.append(vm)
                left -= 1
        subscription["vms"] = kept
    originals = list(fleet["subscriptions"][0]["vms"])
    for copy in range(2, 2 + (left // len(originals) + 1 if originals else 0)):
        for vm in originals[:left]:
            suffix = f"-c{copy}"
            clone = {**vm, "name": vm["name"][: VM_NAME_MAX - len(suffix)] + suffix}
            clone.pop("private_ip", None)  # a Static address is the original's
            fleet["subscriptions"][0]["vms"].append(clone)
            left -= 1
    return fleet


# --- faults the simulator cannot inject: the catalog and the worker --------------------------


class CatalogOutages:
    """The catalog as activities see it: inside an outage window (virtual time) every call
    raises TransientError, as Table Storage answering 503 would after the adapter's mapping."""

    def __init__(self, inner: BackupCatalog, now: Callable[[], datetime]) -> None:
        self._inner = inner
        self._now = now
        self._lock = threading.Lock()
        self.windows: list[tuple[datetime, datetime]] = []
        self.refused = 0

    def down(self) -> bool:
        moment = self._now()
        return any(start <= moment < end for start, end in self.windows)

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._inner, name)
        if not callable(attribute):
            return attribute

        def guarded(*args: Any, **kwargs: Any) -> Any:
            if self.down():
                with self._lock:
                    self.refused += 1
                raise TransientError(f"chaos: Table Storage outage ({name})")
            return attribute(*args, **kwargs)

        return guarded


class CrashAfterAccept:
    """The gateway as activities see it: an armed method does its work in Azure, then the
    worker dies before it can record the answer (the request was accepted; the reply is lost).

    Chosen over an `operations.get` 5xx alone because azure-core retries a 5xx poll within the
    call; a crash after the PUT is what the durable retry and the catalog claims must absorb."""

    def __init__(self, inner: ComputeGateway) -> None:
        self._inner = inner
        self._lock = threading.Lock()
        self.armed: Counter[str] = Counter()
        self.crashed: Counter[str] = Counter()

    def arm(self, method: str, times: int) -> None:
        with self._lock:
            self.armed[method] += times

    def disarm(self) -> None:
        with self._lock:
            self.armed.clear()

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._inner, name)
        if name not in CRASHABLE:
            return attribute

        def crashing(*args: Any, **kwargs: Any) -> Any:
            result = attribute(*args, **kwargs)
            with self._lock:
                if self.armed[name] <= 0:
                    return result
                self.armed[name] -= 1
                self.crashed[name] += 1
            raise ConnectionResetError(f"chaos: worker died after Azure accepted {name}")

        return crashing


class FaultBoard:
    """The simulator's fault rules we added, so one can end (a region outage) while the others
    stay; `clear_faults` + re-adding is the simulator's public way to remove one rule."""

    def __init__(self, stack: Stack) -> None:
        self._stack = stack
        self.active: list[FaultRule] = []

    def add(self, rule: FaultRule) -> None:
        self.active.append(rule)
        self._stack.simulator.add_fault(rule)

    def remove(self, rule: FaultRule) -> None:
        self.active = [r for r in self.active if r is not rule and r.count != 0]
        self._stack.simulator.clear_faults()
        for kept in self.active:
            self._stack.simulator.add_fault(kept)

    def clear(self) -> None:
        self.active = []
        self._stack.simulator.clear_faults()


# --- what the operator did: policies and holds over time --------------------------------------


@dataclass
class PolicyHistory:
    """Every value a VM's policy tag had, from when (None: invalid or absent, delete nothing)."""

    entries: list[tuple[datetime, BackupPolicy | None]] = field(default_factory=list)

    def record(self, at: datetime, policy: BackupPolicy | None) -> None:
        if self.entries and self.entries[-1][1] == policy:
            return
        self.entries.append((at, policy))

    def current(self) -> BackupPolicy | None:
        return self.entries[-1][1] if self.entries else None

    def in_force(self, since: datetime, until: datetime) -> list[BackupPolicy | None]:
        """Every policy that was the tag at some moment of [since, until] (ends inclusive)."""
        found = []
        for index, (at, policy) in enumerate(self.entries):
            end = self.entries[index + 1][0] if index + 1 < len(self.entries) else FOREVER
            if at <= until and end >= since:
                found.append(policy)
        return found


@dataclass
class Holds:
    """Hold tags per snapshot id, as intervals [placed, released) read back from Azure."""

    intervals: dict[str, list[list[datetime | None]]] = field(
        default_factory=lambda: defaultdict(list)
    )

    def place(self, snapshot_id: str, at: datetime) -> None:
        spans = self.intervals[snapshot_id.lower()]
        if not spans or spans[-1][1] is not None:
            spans.append([at, None])

    def release(self, snapshot_id: str, at: datetime) -> None:
        spans = self.intervals[snapshot_id.lower()]
        if spans and spans[-1][1] is None:
            spans[-1][1] = at

    def held_ids(self) -> list[str]:
        return [sid for sid, spans in self.intervals.items() if spans and spans[-1][1] is None]

    def held_at(self, snapshot_ids: Iterable[str], moment: datetime) -> bool:
        for sid in snapshot_ids:
            for placed, released in self.intervals.get(sid.lower(), []):
                assert placed is not None
                if placed <= moment and (released is None or moment < released):
                    return True
        return False

    def held_now(self, snapshot_ids: Iterable[str]) -> bool:
        held = set(self.held_ids())
        return any(sid.lower() in held for sid in snapshot_ids)


def snapshot_ids(backup: Backup) -> list[str]:
    """Every Azure snapshot a backup stands on: its disks' snapshots and their replicas."""
    ids = [ref.snapshot_id for ref in backup.snapshots]
    return ids + [ref.replica_id for ref in backup.snapshots if ref.replica_id]


# --- the retention rules, written independently from DESIGN.md "Tier and retention" ----------


@dataclass(frozen=True)
class Counts:
    daily: int
    weekly: int
    monthly: int


def effective_counts(
    history: PolicyHistory, now: datetime, window: timedelta, day_start: datetime
) -> Counts | None:
    """Per tier, the most any policy in force within the soft-delete window asks for (a cut
    waits out the window). None: the tag was invalid at some moment of the day, so the app was
    to delete nothing for this VM, or no valid policy is known at all."""
    if None in history.in_force(day_start, now):
        return None
    valid = [p for p in history.in_force(now - window, now) if p is not None]
    if not valid:
        return None
    return Counts(
        daily=max(p.daily for p in valid),
        weekly=max(p.weekly for p in valid),
        monthly=max(p.monthly for p in valid),
    )


def _day(b: Backup) -> date:
    return b.taken_at.astimezone(UTC).date()


def _week(b: Backup) -> tuple[int, int]:
    iso = b.taken_at.astimezone(UTC).isocalendar()
    return (iso[0], iso[1])


def _month(b: Backup) -> tuple[int, int]:
    moment = b.taken_at.astimezone(UTC)
    return (moment.year, moment.month)


def _newest(backups: Iterable[Backup]) -> Backup | None:
    return max(backups, key=lambda b: (b.taken_at, b.backup_id), default=None)


def keep_set(
    backups: Sequence[Backup], counts: Counts | None, held: Callable[[Backup], bool]
) -> dict[str, str]:
    """backup id -> why the rules keep it. `counts` None keeps every completed backup."""
    keep: dict[str, str] = {}
    completed = [b for b in backups if b.state is BackupState.COMPLETED]
    if counts is None:
        return {b.backup_id: "policy invalid or unknown: delete nothing" for b in completed}
    counted = [b for b in completed if b.managed and not b.manual]
    tiers: list[tuple[str, int, Callable[[Backup], Any]]] = [
        ("daily", counts.daily, _day),
        ("weekly", counts.weekly, _week),
        ("monthly", counts.monthly, _month),
    ]
    for tier, count, period_of in tiers:
        periods: dict[Any, list[Backup]] = defaultdict(list)
        for b in counted:
            periods[period_of(b)].append(b)
        for period in sorted(periods, reverse=True)[:count]:
            members = sorted(periods[period], key=lambda b: (b.taken_at, b.backup_id))
            verified = [b for b in members if b.verification is VerificationState.PASSED]
            keep.setdefault((verified or members)[0].backup_id, f"{tier} {period}")
    newest_rules: list[tuple[str, Iterable[Backup]]] = [
        ("newest completed", [b for b in completed if b.managed]),
        ("newest verified", [b for b in completed if b.verification is VerificationState.PASSED]),
        (
            "newest replica complete",
            [b for b in completed if b.replication_status is ReplicationStatus.COMPLETED],
        ),
    ]
    for reason, pool in newest_rules:
        newest = _newest(pool)
        if newest is not None:
            keep.setdefault(newest.backup_id, reason)
    copying = (ReplicationStatus.PENDING, ReplicationStatus.IN_PROGRESS)
    for b in completed:
        if b.replication_status in copying:
            keep.setdefault(b.backup_id, f"replication {b.replication_status}")
        if held(b):
            keep.setdefault(b.backup_id, "held")
        if not b.managed:
            keep.setdefault(b.backup_id, "not made by the app")
    last = _newest(b for b in backups if not b.manual)
    if last is not None and last.state is BackupState.FAILED:
        keep.setdefault(last.backup_id, "newest backup failed: its slot may retry")
    return keep


# --- the run -----------------------------------------------------------------------------------


@dataclass
class Violation:
    check: str
    day: int
    when: date
    vm_key: str
    backup_id: str
    detail: str

    def line(self) -> str:
        return f"  {self.check}: day {self.day} ({self.when}) {self.vm_key} {self.backup_id}: " + (
            self.detail
        )


@dataclass
class Tally:
    faults: Counter[str] = field(default_factory=Counter)
    transitions: Counter[str] = field(default_factory=Counter)
    violations: list[Violation] = field(default_factory=list)
    operator_errors: int = 0
    seen_backups: set[str] = field(default_factory=set)


Event = tuple[datetime, str, Callable[[], None]]
Snapshot = dict[tuple[str, str], Backup]


class Chaos:
    """One seeded chaos run over a started stack."""

    def __init__(
        self, stack: Stack, rng: random.Random, window: timedelta, intensity: float = 1.0
    ) -> None:
        self.stack = stack
        self.rng = rng
        self.window = window
        self.intensity = intensity
        self.catalog = stack.services.catalog  # the real one: what the checks read
        self.outages = CatalogOutages(stack.services.catalog, stack.clock.now)
        self.crashes = CrashAfterAccept(stack.services.gateway)
        self.board = FaultBoard(stack)
        self.tally = Tally()
        self.holds = Holds()
        self.policies: dict[str, PolicyHistory] = {}
        self.vm_ids: dict[str, str] = {}
        self.all_vm_keys: list[str] = []
        svc = stack.services
        install(
            Services(
                svc.settings,
                cast(ComputeGateway, self.crashes),
                cast(BackupCatalog, self.outages),
                svc.clock,
            )
        )

    # -- inventory -----------------------------------------------------------------------------

    def discover(self) -> None:
        """The VMs the app protects and the policy each starts with."""
        now = self.stack.clock.now()
        for vm in self.stack.services.gateway.list_vms():
            self.all_vm_keys.append(vm.key)
            try:
                policy = policy_from_tags(vm.tags)
            except PolicyError:
                continue
            if policy is None or vm.not_protectable:
                continue
            self.vm_ids[vm.key] = vm.id
            self.policies[vm.key] = PolicyHistory([(now, policy)])

    def read_backups(self) -> Snapshot:
        return {
            (key, b.backup_id): b
            for key in self.all_vm_keys
            for b in self.catalog.list_backups(key, include_deleted=True)
        }

    # -- one day ---------------------------------------------------------------------------------

    def plan_day(self, day_start: datetime) -> list[Event]:
        """What goes wrong today, and when. Tag edits come first thing, before any retention run
        of the day, so the day's end-of-day check and the app read the same tags."""
        rng, events = self.rng, []

        def at(hours_from: float = 0.0, hours_to: float = 22.0) -> datetime:
            return day_start + timedelta(seconds=int(rng.uniform(hours_from, hours_to) * 3600))

        def chance(kind: str) -> bool:
            return rng.random() < CHANCES[kind] * self.intensity

        if chance("policy-edit"):
            events.append((day_start, "policy-edit", self.edit_policy))
        if chance("429"):
            events.append((at(), "429", self.storm_429))
        if chance("5xx"):
            events.append((at(), "5xx", self.burst_5xx))
        if chance("copy-fails"):
            events.append((at(), "copy-fails", self.fail_copies))
        if chance("region-outage"):
            start = at(0.5, 18.0)
            rule = FaultRule(kind="region-outage", region=rng.choice(REGIONS))
            end = start + timedelta(minutes=rng.randint(60, 6 * 60))
            events.append((start, "region-outage", lambda: self.start_rule(rule)))
            events.append((end, "region-outage-end", lambda: self.board.remove(rule)))
        if chance("catalog-outage"):
            events.append((self.before_a_slot(day_start), "catalog-outage", self.catalog_outage))
        if chance("crash-after-accept"):
            events.append((at(), "crash-after-accept", self.arm_crashes))
        if chance("hold"):
            events.append((at(), "hold", self.place_hold))
        if chance("release"):
            events.append((at(), "release", self.release_hold))
        return sorted(events, key=lambda e: e[0])

    def before_a_slot(self, day_start: datetime) -> datetime:
        """A few minutes before a full or half hour, when the fleet's schedules fire: an outage
        at a random moment mostly falls between timer ticks and meets no catalog call at all."""
        slot = day_start + timedelta(
            hours=self.rng.randint(1, 21), minutes=self.rng.choice((0, 30))
        )
        return slot - timedelta(minutes=self.rng.randint(1, 5))

    def run_day(self, day_start: datetime, events: list[Event]) -> None:
        for moment, _, action in events:
            self.stack.host.run_timers(until=moment)
            action()
        self.stack.host.run_timers(until=day_start + DAY)

    # -- the faults ---------------------------------------------------------------------------

    def start_rule(self, rule: FaultRule) -> None:
        self.tally.faults[rule.kind] += 1
        self.board.add(rule)

    def storm_429(self) -> None:
        self.start_rule(
            FaultRule(operation="snapshots.*", kind="429", count=self.rng.randint(10, 60))
        )

    def burst_5xx(self) -> None:
        operation = self.rng.choice(FIVE_XX_OPERATIONS)
        self.start_rule(FaultRule(operation=operation, kind="5xx", count=self.rng.randint(2, 20)))

    def fail_copies(self) -> None:
        self.start_rule(
            FaultRule(operation="snapshots.copy", kind="copy-fails", count=self.rng.randint(1, 3))
        )

    def catalog_outage(self) -> None:
        start = self.stack.clock.now()
        self.outages.windows.append((start, start + timedelta(minutes=self.rng.randint(3, 20))))
        self.tally.faults["catalog-outage"] += 1

    def arm_crashes(self) -> None:
        self.crashes.arm(self.rng.choice(CRASHABLE), self.rng.randint(1, 3))
        self.tally.faults["crash-after-accept"] += 1

    # -- the operator -------------------------------------------------------------------------

    def edit_policy(self) -> None:
        """A cut, a lengthening or (rarely) an invalid tag on a random protected VM; what Azure
        ends up holding is read back, so a failed tag write is recorded as what it did."""
        key = self.rng.choice(sorted(self.policies))
        base = self.policies[key].current() or next(
            p for _, p in reversed(self.policies[key].entries) if p is not None
        )
        daily, weekly, monthly = 0, 0, 0
        while daily == weekly == monthly == 0:
            daily = self.rng.choice(DAILY_CHOICES)
            weekly = self.rng.choice(WEEKLY_CHOICES)
            monthly = self.rng.choice(MONTHLY_CHOICES)
        text = format_policy(dataclasses.replace(base, daily=daily, weekly=weekly, monthly=monthly))
        if self.rng.random() < 0.05:
            text += ";keep=forever"  # an unknown key: the app must delete nothing for the VM
        try:
            self.stack.operator.set_policy_tag(self.vm_ids[key], text)
        except Exception:  # a fault of ours may hit the operator too; read back what happened
            self.tally.operator_errors += 1
        self.policies[key].record(self.stack.clock.now(), self.policy_in_azure(key))
        self.tally.faults["policy-edit"] += 1

    def policy_in_azure(self, key: str) -> BackupPolicy | None:
        found = self.stack.simulator.world.find(self.vm_ids[key])
        tags = dict((found.body.get("tags") if found else None) or {})
        try:
            return policy_from_tags(tags)
        except PolicyError:
            return None

    def place_hold(self) -> None:
        """`backup-hold=true` on one snapshot or replica of a random completed backup."""
        candidates = [
            b
            for key in sorted(self.policies)
            for b in self.catalog.list_backups(key)
            if b.state is BackupState.COMPLETED and b.snapshots
        ]
        if not candidates:
            return
        target = self.rng.choice(snapshot_ids(self.rng.choice(candidates)))
        self.tag(target, "true")
        self.tally.faults["hold"] += 1

    def release_hold(self) -> None:
        held = sorted(self.holds.held_ids())
        if held:
            self.tag(self.rng.choice(held), None)
            self.tally.faults["release"] += 1

    def tag(self, snapshot_id: str, value: str | None) -> None:
        try:
            self.stack.operator.tag_snapshot(snapshot_id, {HOLD_TAG: value})
        except Exception:  # as above: Azure's state is the truth
            self.tally.operator_errors += 1
        found = self.stack.simulator.world.find(snapshot_id)
        tags = dict((found.body.get("tags") if found else None) or {})
        now = self.stack.clock.now()
        if str(tags.get(HOLD_TAG, "")).lower() == "true":
            self.holds.place(snapshot_id, now)
        else:
            self.holds.release(snapshot_id, now)

    # -- check 1, after every day ---------------------------------------------------------------

    def check_day(self, day: int, day_start: datetime, before: Snapshot, after: Snapshot) -> None:
        """Every backup gone today must be one the rules let go, and none may be held.

        The rules are applied to the backups as they stood before today's deletions (today's
        deleted ones put back as they were), with now = the end of the day: today's new backups
        only shorten what the rules keep, so a backup kept even then was kept all day."""
        now = day_start + DAY
        changed: dict[str, list[tuple[Backup, BackupState | None]]] = defaultdict(list)
        for ident, b in after.items():
            self.tally.seen_backups.add(b.backup_id)
            old = before.get(ident)
            old_state = old.state if old else None
            if b.state is not old_state:
                self.tally.transitions[f"{old_state or 'new'}->{b.state}"] += 1
            if b.state in GONE and (old_state is None or old_state in LIVE_BEFORE):
                changed[ident[0]].append((b, old_state))
        for key, gone in changed.items():
            restored = {b.backup_id: (old or BackupState.COMPLETED) for b, old in gone}
            view = [
                dataclasses.replace(b, state=restored[b.backup_id])
                if b.backup_id in restored
                else b
                for (vm, _), b in after.items()
                if vm == key
            ]
            history = self.policies.get(key)
            counts = effective_counts(history, now, self.window, day_start) if history else None
            keep = keep_set(view, counts, lambda b: self.holds.held_now(snapshot_ids(b)))
            for b, _old in gone:
                self.judge(day, day_start, key, b, keep.get(b.backup_id), counts)

    def judge(
        self,
        day: int,
        day_start: datetime,
        key: str,
        backup: Backup,
        reason: str | None,
        counts: Counts | None,
    ) -> None:
        when = day_start.date()
        if reason is not None:
            self.tally.violations.append(
                Violation(
                    "deleted that the rules keep",
                    day,
                    when,
                    key,
                    backup.backup_id,
                    f"{backup.state}, taken {backup.taken_at:%Y-%m-%d %H:%M}, tier {backup.tier}; "
                    f"rules keep it: {reason} (effective counts {counts})",
                )
            )
        moment = backup.deleted_at or day_start
        if self.holds.held_at(snapshot_ids(backup), moment):
            self.tally.violations.append(
                Violation(
                    "deleted while held",
                    day,
                    when,
                    key,
                    backup.backup_id,
                    f"{backup.state} at {moment:%Y-%m-%d %H:%M} with a hold tag on it",
                )
            )

    # -- the end: settle, then checks 2-4 ----------------------------------------------------------

    def settle(self) -> None:
        """Stop every fault, give the catalog back, and let the app catch up."""
        self.board.clear()
        self.outages.windows.clear()
        self.crashes.disarm()

    def orphans(self, backups: Snapshot) -> list[str]:
        known = {
            sid.lower()
            for b in backups.values()
            if b.state is not BackupState.DELETED
            for sid in snapshot_ids(b)
        }
        return [
            s["id"]
            for s in self.stack.simulator.snapshots()
            if BACKUP_GROUP_MARK in s["id"].lower() and s["id"].lower() not in known
        ]

    def unrestorable(self, backups: Snapshot) -> list[str]:
        present = {s["id"].lower() for s in self.stack.simulator.snapshots()}
        missing = []
        for (key, backup_id), b in sorted(backups.items()):
            if b.state is not BackupState.COMPLETED:
                continue
            wanted = [ref.snapshot_id for ref in b.snapshots] + [
                ref.replica_id
                for ref in b.snapshots
                if ref.replica_id and ref.replica_status is ReplicationStatus.COMPLETED
            ]
            missing += [f"{key} {backup_id}: {sid}" for sid in wanted if sid.lower() not in present]
        return missing

    def running(self) -> list[str]:
        return [
            f"{s.name} {s.instance_id} {s.runtime_status}"
            for s in self.stack.host.instances()
            if s.runtime_status in ("Running", "Pending")
        ]


# --- main ---------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.chaos", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--fleet", type=Path, default=FLEETS / "realistic.json")
    parser.add_argument(
        "--vms", type=int, default=None, help="N protectable VMs: the fleet's first, or copies"
    )
    parser.add_argument("--soft-delete-days", type=int, default=14)
    parser.add_argument(
        "--start", type=date.fromisoformat, default=date(2026, 1, 5), help="first day (UTC)"
    )
    parser.add_argument(
        "--intensity", type=float, default=1.0, help="multiply every daily chance of trouble"
    )
    parser.add_argument("--quiet", action="store_true", help="no line per day")
    return parser.parse_args(argv)


def run(args: argparse.Namespace) -> int:
    wall = time.monotonic()
    start = datetime(args.start.year, args.start.month, args.start.day, tzinfo=UTC)
    settings = {"BACKUPDR_SOFT_DELETE_DAYS": str(args.soft_delete_days)}
    fleet = load_fleet(args.fleet, args.vms)
    with (
        captured_events() as events,
        local_stack(
            fleet, start=start, table_prefix=f"chaos{args.seed}", settings=settings
        ) as stack,
    ):
        window = timedelta(days=args.soft_delete_days)
        chaos = Chaos(stack, random.Random(args.seed), window, args.intensity)
        chaos.discover()
        before = chaos.read_backups()
        total = args.days + SETTLE_DAYS
        for day in range(total):
            day_start = start + day * DAY
            if day == args.days:
                chaos.settle()
            plan = chaos.plan_day(day_start) if day < args.days else []
            chaos.run_day(day_start, plan)
            after = chaos.read_backups()
            chaos.check_day(day, day_start, before, after)
            before = after
            if not args.quiet:
                progress(day, day_start, chaos, plan, wall)
        stack.host.run_until_idle()
        final = chaos.read_backups()
        chaos.check_day(total, start + total * DAY, before, final)
        orphans = chaos.orphans(final)
        missing = chaos.unrestorable(final)
        running = chaos.running()
        report(args, chaos, final, events, orphans, missing, running, time.monotonic() - wall)
    return 1 if chaos.tally.violations or orphans or missing or running else 0


def ended_in(tally: Tally, state: str) -> int:
    """How many backups moved into `state` (from any state, new ones included)."""
    return sum(n for move, n in tally.transitions.items() if move.endswith(f"->{state}"))


def progress(day: int, day_start: datetime, chaos: Chaos, plan: list[Event], wall: float) -> None:
    kinds = ",".join(label for _, label, _ in plan) or "-"
    soft, purged = ended_in(chaos.tally, "soft_deleted"), ended_in(chaos.tally, "deleted")
    print(
        f"day {day:3d} {day_start:%Y-%m-%d} backups={len(chaos.tally.seen_backups)} "
        f"soft-deleted={soft} purged={purged} catalog-refused={chaos.outages.refused} "
        f"violations={len(chaos.tally.violations)} today={kinds} "
        f"wall={time.monotonic() - wall:.0f}s",
        flush=True,
    )


def report(
    args: argparse.Namespace,
    chaos: Chaos,
    final: Snapshot,
    events: list[dict[str, Any]],
    orphans: list[str],
    missing: list[str],
    running: list[str],
    seconds: float,
) -> None:
    tally = chaos.tally
    names = Counter(str(e["event"]) for e in events)
    halted = sum(1 for e in events if e["event"] == "RetentionApplied" and e.get("halted"))
    states = Counter(str(b.state) for b in final.values())
    rules = [v for v in tally.violations if v.check == "deleted that the rules keep"]
    held = [v for v in tally.violations if v.check == "deleted while held"]
    lines = [
        f"seed: {args.seed} (intensity {args.intensity})",
        f"days: {args.days} (+{SETTLE_DAYS} quiet)",
        f"VMs protected: {len(chaos.policies)}",
        f"backups taken: {len(final)} (final states {dict(sorted(states.items()))})",
        f"faults injected: {dict(sorted(tally.faults.items()))}",
        f"catalog calls refused: {chaos.outages.refused}; worker crashes after accept: "
        f"{dict(chaos.crashes.crashed)}; operator calls failed: {tally.operator_errors}",
        f"soft-deleted: {ended_in(tally, 'soft_deleted')}, purged: {ended_in(tally, 'deleted')}",
        f"transitions: {dict(sorted(tally.transitions.items()))}",
        f"events: BackupFailed={names['BackupFailed']} "
        f"RetentionReduced={names['RetentionReduced']} "
        f"RetentionApplied={names['RetentionApplied']} (halted {halted}) "
        f"RetentionFailed={names['RetentionFailed']}",
        f"check 1 deleted that the rules keep: {len(rules)}",
        f"check 1 deleted while held: {len(held)}",
        f"check 2 orphaned snapshots: {len(orphans)}",
        f"check 3 listed but not restorable: {len(missing)}",
        f"check 4 instances left running: {len(running)}",
        f"wall seconds: {seconds:.0f}",
    ]
    print("\n".join(lines))
    for v in tally.violations[:50]:
        print(v.line())
    for item in (orphans + missing + running)[:50]:
        print(f"  {item}")


def main(argv: Sequence[str] | None = None) -> int:
    return run(parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
