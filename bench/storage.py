"""Storage benchmark: GiB a VM's incremental snapshots hold over months of GFS retention.

    python -m bench.storage [--churn 0.1,1,4] [--days 90] [--disk-gib 32] [--start 2026-01-05]
        [--soft-delete-days 14] [--detail]

For each churn rate, a fresh `local_stack` (Azurite, the ARM simulator over HTTPS, the local
durable host on one virtual clock) holds one VM with one managed OS disk of `--disk-gib` GiB that
writes `churn` GiB a day, tagged `schedule=0 2 * * *;daily=7;weekly=4;monthly=3;verify=off` (no
replication). The stack starts at 01:50 on `--start` and the app's own timers run day by day
for `--days` days, the fleet timer hourly; those with nothing to do here (verify, DR test,
sweeper, replication) are moved to 1 January, as bench/fleet.py does. At 01:00 each day (the
previous day's backup and retention long done) the bench looks from outside the app, at the
simulator's bill and snapshots and at the catalog:

- stored: the GiB the simulator bills for now, the sum of its open bill entries (each live
  snapshot's own changed blocks plus any it took over from a deleted older one); at the end, also
  the GiB-months of its `bill()`, against the references' daily looks summed (each standing for
  the day before it).
- the reference, "first full + retained changed blocks": per disk, the snapshots of the backups
  the design retains, in the order the simulator took them; the disk's size for the oldest, plus
  min(size, churn x days since the previous retained one) for each later one. The design retains
  what retention keeps (catalog state completed) and, for the soft-delete window, what it expired
  (soft-deleted: still in Azure and restorable, `backup undelete`; ../shared/DESIGN.md,
  "Soft delete"), until the VM's first retention run after the window purges it. The goal is
  against this: what is stored beyond it is a snapshot no backup needs (an orphan, a purge
  missed or stopped midway). Also against the kept ones alone, which prices the
  soft-delete window: an expired backup older than every kept one holds the blocks written
  since (up to a full disk), for as long as the window.
- full copies: kept snapshots x the disk size.

The reference assumes the simulator's change model: a disk writes `churn` GiB a day of blocks
that no later write overlaps, so d days change min(size, churn x d) GiB. The simulator bills the
same way (a snapshot: min(size, churn x days since the disk's previous snapshot); a deleted one's
GiB go to the disk's next snapshot, up to its size), so the ratio measures which snapshots the
app keeps, not the model. Nothing is asserted; each figure is printed beside its reference.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from operator import attrgetter
from typing import Any

from bench.fleet import QUIET
from local.armsim.state import HOURS_PER_MONTH, World
from local.stack import FLEETS, Stack, local_stack
from shared.domain.models import Backup, BackupState, SnapshotRef, vm_key

APP_GROUP = "rg-app-eastus"
VM_NAME = "vm-storage"
VM_KEY = vm_key(APP_GROUP, VM_NAME)
POLICY = "schedule=0 2 * * *;daily=7;weekly=4;monthly=3;verify=off"
START = "2026-01-05"  # a Monday; 90 days from it cross three month ends
SLOT = timedelta(hours=2)  # the policy's 02:00
LEAD = timedelta(minutes=10)  # the stack starts this long before the first slot
LOOK = timedelta(hours=1)  # each look is this long before a slot: that day's backup not yet taken
DAY = timedelta(days=1)
# The fleet timer ticks hourly, not every 15 minutes: a 02:00 policy is due on the hour all the
# same, and a quarter of the ticks keeps 90 days of three rates within minutes of wall time.
FLEET_SCHEDULE = "0 0 * * * *"
DAYS_PER_MONTH = HOURS_PER_MONTH / 24  # the simulator bills GiB-months of 730 hours
# Timers with nothing to do for one unverified, unreplicated, untested VM.
QUIET_TIMERS = (
    "BACKUPDR_VERIFY_SCHEDULE",
    "BACKUPDR_DRTEST_SCHEDULE",
    "BACKUPDR_SWEEPER_SCHEDULE",
    "BACKUPDR_REPLICATE_SCHEDULE",
)
KEPT = frozenset({BackupState.COMPLETED})
ORPHAN = "in no catalog row"
GOAL = 1.1


def make_fleet(churn: float, disk_gib: int) -> dict[str, Any]:
    """tiny.json's subscription and groups, with one VM of one OS disk at the churn rate."""
    base = json.loads((FLEETS / "tiny.json").read_text())["subscriptions"][0]
    disk = {"size_gb": disk_gib, "sku": "Premium_LRS", "change_gib_per_day": churn}
    vm = {
        "name": VM_NAME,
        "resource_group": APP_GROUP,
        "tags": {"backup-policy": POLICY},
        "os_disk": disk,
    }
    groups = base["resource_groups"]
    return {"subscriptions": [{"id": base["id"], "resource_groups": groups, "vms": [vm]}]}


# --- looking at the simulator and the catalog -----------------------------------------------------


def _id(resource_id: str) -> str:
    """A resource id as the simulator keys its bill: one leading slash, lower case."""
    return "/" + resource_id.strip("/").lower()


@dataclass(frozen=True)
class Snap:
    """One disk snapshot of a catalog backup, timed as the simulator took it (when it measured
    the change since the disk's previous snapshot), or by `taken_at` if Azure no longer has it."""

    key: str
    disk: str
    size_gib: int
    at: datetime
    state: BackupState
    tier: str
    in_azure: bool
    retained: bool  # kept, or soft-deleted and not yet due for its purge


@dataclass(frozen=True)
class Look:
    """The catalog's snapshots and the simulator's GiB billed now, per snapshot id."""

    at: datetime
    snaps: tuple[Snap, ...]
    billed: dict[str, float]
    states: Counter[str]  # backups by catalog state

    def of(self, states: frozenset[BackupState]) -> list[Snap]:
        return [s for s in self.snaps if s.state in states]

    def retained(self) -> list[Snap]:
        return [s for s in self.snaps if s.retained]


def look(stack: Stack, window: timedelta) -> Look:
    """The catalog and the bill now; `window` is the app's soft-delete window."""
    catalog = stack.services.catalog
    backups = catalog.list_backups(VM_KEY, include_deleted=True)
    state = catalog.get_retention_state(VM_KEY)
    last_run = state.applied_at if state else None
    world = stack.simulator.world
    with world.lock:
        snaps = tuple(
            _snap(world, b, ref, _retained(b, last_run, window))
            for b in backups
            for ref in b.snapshots
        )
        billed = billed_now(world)
    return Look(stack.clock.now(), snaps, billed, Counter(b.state.value for b in backups))


def _retained(backup: Backup, last_run: datetime | None, window: timedelta) -> bool:
    """Whether the design keeps the backup's snapshots now: retention keeps it, or expired it
    and has not run since the soft-delete window passed (the design purges at the VM's first
    retention run after it, which follows each backup). A purge stopped midway is not kept."""
    if backup.state is BackupState.SOFT_DELETED and backup.deleted_at is not None:
        return last_run is None or last_run < backup.deleted_at + window
    return backup.state in KEPT


def _snap(world: World, backup: Backup, ref: SnapshotRef, retained: bool) -> Snap:
    found = world.find(ref.snapshot_id)
    return Snap(
        key=_id(ref.snapshot_id),
        disk=_id(ref.source_disk_id),
        size_gib=ref.size_gb,
        at=found.created_at if found else backup.taken_at,
        state=backup.state,
        tier=str(backup.tier),
        in_azure=found is not None,
        retained=retained,
    )


def billed_now(world: World) -> dict[str, float]:
    """Snapshot id -> GiB billed now: its open bill entries (its own and taken-over blocks)."""
    return {
        key: sum(e.gib for e in still)
        for key, entries in world.bill_entries.items()
        if (still := [e for e in entries if e.end is None])
    }


# --- the figures ----------------------------------------------------------------------------------


def reference_shares(snaps: Iterable[Snap], churn: float) -> dict[str, float]:
    """First full + retained changed blocks, per snapshot: per disk, its size for the oldest,
    then min(size, churn x days since the previous one) for each later one."""
    disks: dict[str, list[Snap]] = {}
    for snap in snaps:
        disks.setdefault(snap.disk, []).append(snap)
    shares: dict[str, float] = {}
    for chain in disks.values():
        chain.sort(key=lambda s: s.at)
        shares[chain[0].key] = float(chain[0].size_gib)
        for previous, current in itertools.pairwise(chain):
            days = (current.at - previous.at) / DAY
            shares[current.key] = min(current.size_gib, churn * days)
    return shares


def reference_gib(snaps: Iterable[Snap], churn: float) -> float:
    return sum(reference_shares(snaps, churn).values())


@dataclass(frozen=True)
class Sample:
    """One day's GiB: stored now, the reference over the retained snapshots and over the kept
    ones alone, and full copies of the kept ones."""

    at: datetime
    stored: float
    retained: float
    kept: float
    full: float


def sample(seen: Look, churn: float) -> Sample:
    kept = seen.of(KEPT)
    return Sample(
        at=seen.at,
        stored=sum(seen.billed.values()),
        retained=reference_gib(seen.retained(), churn),
        kept=reference_gib(kept, churn),
        full=float(sum(s.size_gib for s in kept)),
    )


def holders(seen: Look) -> dict[str, tuple[int, float]]:
    """Who holds the GiB billed now: the catalog state of each snapshot's backup (or none) ->
    (snapshots, GiB)."""
    state = {s.key: s.state.value for s in seen.snaps}
    found: dict[str, tuple[int, float]] = {}
    for key, gib in seen.billed.items():
        label = state.get(key, ORPHAN)
        count, total = found.get(label, (0, 0.0))
        found[label] = (count + 1, total + gib)
    return found


@dataclass
class Result:
    churn: float
    samples: list[Sample]
    end: Look
    gib_months: float  # the simulator's bill() over the run, all regions
    wall_setup: float = 0.0
    wall_run: float = 0.0

    @property
    def last(self) -> Sample:
        return self.samples[-1]

    def months(self, figure: Callable[[Sample], float]) -> float:
        """GiB-months of a daily figure: each look stands for the day before it."""
        return sum(figure(s) for s in self.samples) / DAYS_PER_MONTH


# --- printing -------------------------------------------------------------------------------------


def ratio(value: float, reference: float) -> str:
    return f"{value / reference:.2f}x" if reference > 0 else "n/a"


def versus(value: float, reference: float, unit: str, goal: float | None = None) -> str:
    """`value / reference unit = r x (goal <= g x)`."""
    aim = f" (goal <= {goal}x)" if goal else ""
    return f"{value:.1f} / {reference:.1f} {unit} = {ratio(value, reference)}{aim}"


def report(r: Result, args: argparse.Namespace) -> None:
    lines = [*header(r, args), *gib_lines(r, args.disk_gib), *month_lines(r)]
    if args.detail:
        lines += detail_lines(r)
    lines.append(f"  wall {r.wall_setup + r.wall_run:.0f} s (setup {r.wall_setup:.0f})")
    print("\n".join(lines), flush=True)


def header(r: Result, args: argparse.Namespace) -> list[str]:
    states = ", ".join(f"{n} {state}" for state, n in r.end.states.most_common())
    return [
        f"== churn {r.churn:g} GiB/day: 1 disk of {args.disk_gib} GiB, {args.days} days "
        f"{args.start:%Y-%m-%d} -> {r.end.at:%Y-%m-%d %H:%M}, soft delete "
        f"{args.soft_delete_days} days",
        f"  backups {sum(r.end.states.values())}: {states}",
    ]


def gib_lines(r: Result, disk_gib: int) -> list[str]:
    """GiB stored now against the references, and which snapshots hold it."""
    s = r.last
    who = ", ".join(
        f"{label} {gib:.1f} ({n})" for label, (n, gib) in sorted(holders(r.end).items())
    )
    missing = sum(1 for snap in r.end.of(KEPT) if not snap.in_azure)
    kept = len(r.end.of(KEPT))
    return [
        f"  stored now {s.stored:.1f} GiB in {len(r.end.billed)} snapshots: {who}; "
        f"kept but not in Azure {missing}",
        f"  stored / reference (first full + retained changed blocks: kept, and soft-deleted "
        f"not yet due for purge) {versus(s.stored, s.retained, 'GiB', GOAL)}",
        f"  stored / reference over the kept alone (the rest is the soft-delete window's) "
        f"{versus(s.stored, s.kept, 'GiB')}",
        f"  stored / full copies ({kept} kept x {disk_gib}) {versus(s.stored, s.full, 'GiB')}",
    ]


def month_lines(r: Result) -> list[str]:
    """Over the whole run: GiB-months, and the look at which the ratio was worst."""
    full = r.months(lambda s: s.full)
    lines = [
        f"  GiB-months billed (bill()) / reference "
        f"{versus(r.gib_months, r.months(lambda s: s.retained), 'GiB-months', GOAL)}; "
        f"/ kept alone {ratio(r.gib_months, r.months(lambda s: s.kept))}; "
        f"/ full copies {full:.1f} = {ratio(r.gib_months, full)}"
    ]
    for name, figure in (("reference", attrgetter("retained")), ("kept alone", attrgetter("kept"))):
        daily = [(s.stored / figure(s), s.at) for s in r.samples if figure(s) > 0]
        if daily:
            worst, when = max(daily)
            mean = sum(x for x, _ in daily) / len(daily)
            lines.append(
                f"  daily stored / {name}: mean {mean:.2f}x, worst {worst:.2f}x at {when:%Y-%m-%d}"
            )
    return lines


def detail_lines(r: Result) -> list[str]:
    """Each snapshot billed now, oldest first: taken, its backup's state and tier, the GiB the
    simulator bills it and the GiB the reference gives it."""
    by_key = {s.key: s for s in r.end.snaps}
    shares = reference_shares(r.end.retained(), r.churn)
    lines = []
    for key, gib in sorted(r.end.billed.items(), key=lambda item: _taken(by_key, item[0])):
        snap = by_key.get(key)
        what = f"{snap.at:%Y-%m-%d %H:%M} {snap.state.value} {snap.tier}" if snap else ORPHAN
        lines.append(f"    {what}: billed {gib:.2f} GiB, reference {shares.get(key, 0.0):.2f}")
    return lines


def _taken(by_key: dict[str, Snap], key: str) -> datetime:
    snap = by_key.get(key)
    return snap.at if snap else datetime.max.replace(tzinfo=UTC)


def summary(results: Sequence[Result]) -> None:
    print(
        "summary (stored GiB now / reference, / the kept alone and / full copies; "
        "GiB-months / reference and / the kept alone)"
    )
    for r in results:
        end = r.last
        print(
            f"  churn {r.churn:>5g} GiB/day: stored {end.stored:.1f} GiB = "
            f"{ratio(end.stored, end.retained)} reference {end.retained:.1f} "
            f"(goal <= {GOAL}x), {ratio(end.stored, end.kept)} kept alone {end.kept:.1f}, "
            f"{ratio(end.stored, end.full)} full copies {end.full:.0f}; GiB-months "
            f"{ratio(r.gib_months, r.months(lambda s: s.retained))} "
            f"(kept alone {ratio(r.gib_months, r.months(lambda s: s.kept))}); "
            f"wall {r.wall_setup + r.wall_run:.0f} s"
        )


# --- main -----------------------------------------------------------------------------------------


def settings_for(args: argparse.Namespace) -> dict[str, str]:
    return dict.fromkeys(QUIET_TIMERS, QUIET) | {
        "BACKUPDR_FLEET_BACKUP_SCHEDULE": FLEET_SCHEDULE,
        "BACKUPDR_SOFT_DELETE_DAYS": str(args.soft_delete_days),
    }


def run_rate(args: argparse.Namespace, index: int, churn: float) -> Result:
    """One churn rate on a fresh stack: the app's timers a day at a time, a look after each."""
    wall = time.monotonic()
    with local_stack(
        make_fleet(churn, args.disk_gib),
        start=args.start + SLOT - LEAD,
        table_prefix=f"storage{index}",
        settings=settings_for(args),
    ) as stack:
        setup = time.monotonic() - wall
        samples = []
        for day in range(1, args.days + 1):
            stack.host.run_timers(until=args.start + day * DAY + SLOT - LOOK)
            seen = look(stack, timedelta(days=args.soft_delete_days))
            samples.append(sample(seen, churn))
        with stack.simulator.world.lock:
            gib_months = sum(stack.simulator.world.bill().values())
    result = Result(churn, samples, seen, gib_months)
    result.wall_setup, result.wall_run = setup, time.monotonic() - wall - setup
    return result


def rates(text: str) -> list[float]:
    try:
        found = [float(part) for part in text.split(",") if part.strip()]
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from error
    if not found or any(rate < 0 for rate in found):
        raise argparse.ArgumentTypeError("give churn rates in GiB/day as a comma list: 0.1,1,4")
    return found


def day(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(hour=0, minute=0, second=0, tzinfo=UTC)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.storage", description=(__doc__ or "").split("\n")[0]
    )
    parser.add_argument("--churn", type=rates, default=[0.1, 1.0, 4.0], help="GiB/day, a list")
    parser.add_argument("--days", type=int, default=90, help="virtual days of timers")
    parser.add_argument("--disk-gib", type=int, default=32, help="the disk's size")
    parser.add_argument("--start", type=day, default=day(START), help="first day (UTC)")
    parser.add_argument("--soft-delete-days", type=int, default=14, help="the app's setting")
    parser.add_argument("--detail", action="store_true", help="list the billed snapshots")
    args = parser.parse_args(argv)
    if args.days < 1 or args.disk_gib < 1 or args.soft_delete_days < 1:
        parser.error("--days, --disk-gib and --soft-delete-days must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    results = []
    for index, churn in enumerate(args.churn):
        results.append(run_rate(args, index, churn))
        report(results[-1], args)
    summary(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
