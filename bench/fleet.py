"""Fleet benchmark: a fleet's daily runs against ARM's throttling and copy limits.

    python -m bench.fleet --vms 10,100,1000 [--replicate] [--batch N] [--runs N] [--daily N]

For each size, a fresh `local_stack` (Azurite, the ARM simulator over HTTPS, the local durable
host on one virtual clock) holds N VMs with two managed disks each (OS + one data disk), all in
one backup region, all with a daily policy due at 02:00 (with `--replicate`, copied to a second
region). The app's own timers run from shortly before 02:00 through `--runs` daily fleet runs
(02:00 on 5 January, 6 January, ...); each is driven until the run its 02:00 tick started has
completed, every VM's backup of that slot is in the catalog, (with `--replicate`) every replica
is complete and no orchestration instance is live (each backup's follow-up work is done), or a
virtual-time cap passes. Only the last run is measured: the first shows a fleet's first backups
(full copies), a later one its steady state (incremental copies, retention, `--daily` of 1
expiring the day before's backup).

Everything is measured from outside the app, so the bench keeps working while the app changes:
the simulator's request log and resources, the host's instance statuses, the catalog, and the
CPU and memory of this process and of Azurite. Each figure is printed next to its bound as a
ratio; nothing is asserted.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import random
import resource
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from azure.durable_functions.models.history.HistoryEventType import HistoryEventType

from local.armsim.routes import match
from local.armsim.state import RequestRecord, World
from local.armsim.throttle import LIMITS
from local.stack import FLEETS, Stack, local_stack
from shared.domain.models import ReplicationJob, ReplicationStatus
from shared.runner.errors import InstanceNotFoundError
from shared.runner.instances import ACTIVE, InstanceStatus

SOURCE_REGION = "eastus"
REPLICA_REGION = "westus2"
APP_GROUP = "rg-app-eastus"
DISKS_PER_VM = 2  # OS + one data disk
DISK_GIB = 32  # both disks: equal copy times, so the copy bound is exact
CHANGE_GIB_PER_DAY = 1.0  # each disk's writes: what a later day's incremental copy moves
SLOT = datetime(2026, 1, 5, 2, 0, tzinfo=UTC)  # a Monday; the policy's daily 02:00, first run
DAY = timedelta(days=1)  # between runs: run k's slot is SLOT + (k - 1) days
LEAD = timedelta(minutes=10)  # each run's look starts this long before its slot
STEP = timedelta(seconds=60)  # virtual time run between looks at the host
CHECK_EVERY = timedelta(minutes=5)  # virtual time between looks at the catalog
MAX_PARALLEL_COPIES = 100  # per subscription and target region (Azure's, as copystart.py has it)
FLEET_ORCHESTRATOR = "fleet_backup_v4"
# A run's work after its own: each VM's backup, its follow-up, and the copy the follow-up starts.
RUN_WORK = ("vm_backup_v3", "after_backup", "replicate_backup")
DONE_STATES = ("Completed", "Failed", "Terminated")
READS = ("GET", "HEAD")
REASON_CHARS = 160  # of a failed activity's reason: its name and the error's start
BLOB = "blob data plane"  # not ARM: no ARM bucket, not a read of the fleet run
# The simulator names both SAS grant routes `<kind>.access` (routes.py); told apart here by the
# last segment of the path, as the SDK sends it.
ACCESS_ACTIONS = {action.lower(): action for action in ("beginGetAccess", "endGetAccess")}
# Timers with nothing to do in a fleet's first days (verify=off, no DR tests, nothing soft-deleted
# long enough to purge), moved out of the way (to 1 January) so that their ARM reads are not
# counted as a fleet run's.
QUIET = "0 0 0 1 1 *"
QUIET_TIMERS = (
    "BACKUPDR_VERIFY_SCHEDULE",
    "BACKUPDR_DRTEST_SCHEDULE",
    "BACKUPDR_PURGE_SCHEDULE",
)
# The sweeper runs hourly (local.settings.json.example), here at :55: its 01:55 run lists the
# DR-test groups, as an hourly run would have within the hour before any fleet run, and its reads
# fall outside the fleet run's. (An earlier start would take every VM's first backup early.)
SWEEPER = {"BACKUPDR_SWEEPER_SCHEDULE": "0 55 * * * *"}
WRITE_BURST, WRITE_REFILL = LIMITS["write"]
GOAL_FLEET, GOAL_LAST, GOAL_REPLICAS = 1.1, 1.1, 1.2
GOAL_WRITES, GOAL_READS, GOAL_POLLS, GOAL_CPU = 1.0, 2.0, 1.1, 12.0


# --- the fleet ---------------------------------------------------------------------------------


def make_fleet(vms: int, replicate: bool, daily: int, rng: random.Random) -> dict[str, Any]:
    """N identical two-disk VMs in tiny.json's subscription and groups, keeping `daily` daily
    backups; the app group gets a VNet with room for them (the portal's default /24 holds 250
    addresses)."""
    base = json.loads((FLEETS / "tiny.json").read_text())["subscriptions"][0]
    groups = [g for g in base["resource_groups"] if g["name"] != APP_GROUP]
    app_vnet = {"name": "vnet-app", "address_prefix": "10.10.0.0/16"}
    subnet = {"name": "snet-app", "address_prefix": "10.10.0.0/18"}
    groups.insert(
        0, {"name": APP_GROUP, "region": SOURCE_REGION, "vnets": [app_vnet | {"subnets": [subnet]}]}
    )
    policy = f"schedule={SLOT.minute} {SLOT.hour} * * *;daily={daily};weekly=0;monthly=0;verify=off"
    if replicate:
        policy += f";replicate={REPLICA_REGION}"
    disk = {"size_gb": DISK_GIB, "sku": "Premium_LRS", "change_gib_per_day": CHANGE_GIB_PER_DAY}
    machines = [
        {
            "name": f"vm-{index:05d}",
            "resource_group": APP_GROUP,
            "zone": rng.choice(("1", "2", "3")),
            "tags": {"backup-policy": policy},
            "os_disk": disk,
            "data_disks": [{**disk, "lun": 0}],
        }
        for index in range(vms)
    ]
    return {"subscriptions": [{"id": base["id"], "resource_groups": groups, "vms": machines}]}


# --- CPU and memory: this process and Azurite ---------------------------------------------------


def azurite_pid(port: int) -> int | None:
    """Azurite's node process: our child listening on `port` (local/azurite.py keeps no pid)."""
    me = os.getpid()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if _stat_fields(stat)[1] == str(me) and str(port).encode() in argv:
            return int(entry.name)
    return None


def _stat_fields(stat: str) -> list[str]:
    """/proc/<pid>/stat after the command name (which may hold spaces): field 3 onwards."""
    return stat.rsplit(")", 1)[1].split()


def process_cpu(pid: int | None) -> float:
    """User + system CPU seconds of another process (0 when it is unknown or gone)."""
    if pid is None:
        return 0.0
    try:
        fields = _stat_fields(Path(f"/proc/{pid}/stat").read_text())
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def process_peak_mib(pid: int | None) -> float:
    """Peak resident memory (VmHWM) of another process, in MiB."""
    if pid is None:
        return 0.0
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return 0.0
    found = next((line.split()[1] for line in lines if line.startswith("VmHWM:")), "0")
    return int(found) / 1024


def own_peak_mib() -> float:
    """This process's peak resident memory so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class CpuMeter:
    """CPU of the app's work: this process (the app, simulator and host all run in its threads)
    plus Azurite, less what the bench itself spends looking at the catalog and the simulator
    (the app is idle then: the host runs nothing between `run_timers` calls)."""

    def __init__(self, pid: int | None) -> None:
        self.pid = pid
        self.own = self.azurite = 0.0
        self._started = (time.process_time(), process_cpu(pid))

    @contextmanager
    def probe(self) -> Iterator[None]:
        before = (time.process_time(), process_cpu(self.pid))
        try:
            yield
        finally:
            self.own -= time.process_time() - before[0]
            self.azurite -= process_cpu(self.pid) - before[1]

    def stop(self) -> None:
        self.own += time.process_time() - self._started[0]
        self.azurite += process_cpu(self.pid) - self._started[1]


# --- driving the app ------------------------------------------------------------------------------


@dataclass
class Progress:
    """What the run loop saw of one slot's run: the fleet run, the backups and replicas, the
    instances still live, and when it stopped."""

    slot: datetime
    fleet: InstanceStatus | None = None
    backups_completed: int = 0
    replicas_completed: int = 0
    replicas_failed: int = 0
    last_replica_at: datetime | None = None
    live: int = 0  # instances live at the last look, once the rest was done
    capped: str = ""
    stopped_at: datetime = field(init=False)

    def __post_init__(self) -> None:
        self.stopped_at = self.slot


def run_id(slot: datetime) -> str:
    """The instance id the slot's tick starts the fleet run under (wiring.py)."""
    return f"{FLEET_ORCHESTRATOR}-{slot:%Y%m%dt%H%M}"


def fleet_instance(stack: Stack, slot: datetime) -> InstanceStatus | None:
    """The run the slot's tick started (`run_id`), or else the first FLEET_ORCHESTRATOR
    instance created at the slot."""
    try:
        return stack.host.status(run_id(slot))
    except InstanceNotFoundError:
        pass
    return next(
        (
            s
            for s in stack.host.instances()
            if s.name == FLEET_ORCHESTRATOR and s.created_at == slot
        ),
        None,
    )


def live_instances(stack: Stack) -> int:
    return sum(1 for s in stack.host.instances() if s.runtime_status in ACTIVE)


def last_update(stack: Stack, since: datetime) -> InstanceStatus | None:
    """Of the instances created at or after `since` for the run's work (its backups, their
    follow-ups and copies, the run itself: not a later tick's run or a catch-up that found
    nothing to do), the one updated last; once none is live, when that work was all done."""
    found = [
        s
        for s in stack.host.instances()
        if s.created_at >= since and (s.name in RUN_WORK or s.instance_id == run_id(since + LEAD))
    ]
    return max(found, key=lambda s: s.last_updated_at, default=None)


def backups_completed(stack: Stack, slot: datetime) -> int:
    """VMs whose newest completed backup is the slot's (the catalog's RPO view)."""
    return sum(1 for b in stack.services.catalog.latest_backups().values() if b.slot == slot)


def slot_backups(stack: Stack, slot: datetime) -> set[str]:
    """Ids of the VMs' newest completed backups that are the slot's."""
    latest = stack.services.catalog.latest_backups().values()
    return {b.backup_id for b in latest if b.slot == slot}


def look_at_replicas(stack: Stack, progress: Progress, expected: int) -> bool:
    """Record the catalog's replica jobs of the slot's backups; True once every disk's copy has
    ended (completed, or failed with nothing running that could retry it soon)."""
    backups = slot_backups(stack, progress.slot)
    jobs = [j for j in stack.services.catalog.list_replication_jobs() if j.backup_id in backups]
    latest: dict[tuple[str, str], ReplicationJob] = {}
    for job in sorted(jobs, key=lambda j: j.started_at):
        latest[(job.backup_id, job.disk_role)] = job
    done = [j for j in latest.values() if j.status is ReplicationStatus.COMPLETED]
    failed = [j for j in latest.values() if j.status is ReplicationStatus.FAILED]
    progress.replicas_completed, progress.replicas_failed = len(done), len(failed)
    progress.last_replica_at = max((j.completed_at for j in done if j.completed_at), default=None)
    if len(done) >= expected:
        return True
    return len(done) + len(failed) >= expected and live_instances(stack) == 0


def drive(
    stack: Stack, vms: int, replicate: bool, slot: datetime, cap: datetime, meter: CpuMeter
) -> Progress:
    """Run the app's timers a step at a time until the slot's fleet run, its backups and (with
    replication) every replica are done and no instance is live, or `cap` passes."""
    progress = Progress(slot)
    next_check = slot
    backups_done = replicas_done = ended = False
    while True:
        moment = stack.clock.now() + STEP
        stack.host.run_timers(until=moment)
        with meter.probe():
            progress.fleet = fleet_instance(stack, slot)
            fleet_done = progress.fleet is not None and progress.fleet.runtime_status in DONE_STATES
            if fleet_done and moment >= next_check:
                next_check = moment + CHECK_EVERY
                if not backups_done:
                    progress.backups_completed = backups_completed(stack, slot)
                    backups_done = progress.backups_completed >= vms or live_instances(stack) == 0
                if backups_done and replicate and not replicas_done:
                    replicas_done = look_at_replicas(stack, progress, vms * DISKS_PER_VM)
            ended = fleet_done and backups_done and (replicas_done or not replicate)
            if ended:  # every step from here: the follow-ups' end is timed to the step
                progress.live = live_instances(stack)
        if ended and progress.live == 0:
            break
        if moment >= cap:
            progress.capped = _capped_reason(progress, fleet_done, backups_done, ended)
            break
    progress.stopped_at = stack.clock.now()
    return progress


def _capped_reason(progress: Progress, fleet_done: bool, backups_done: bool, ended: bool) -> str:
    if progress.fleet is None:
        return "no fleet run was started at the slot"
    if not fleet_done:
        return f"the fleet run is still {progress.fleet.runtime_status}"
    if not backups_done:
        return "backups are still being taken"
    if not ended:
        return "replicas are still copying"
    return f"{progress.live} instances are still live"


# --- reading the simulator's request log ---------------------------------------------------------


@dataclass(frozen=True)
class Call:
    """One logged ARM request, named by the simulator's route (copies told apart by region)."""

    index: int
    at: datetime
    method: str
    path: str  # lower case, no trailing slash
    status: int
    kind: str  # ARM's request class: read, write (PUT, PATCH, POST) or delete
    operation: str


def calls(stack: Stack, since: datetime | None = None) -> list[Call]:
    """The requests logged (at or after `since`), each with its index in the whole log."""
    world = stack.simulator.world
    return [
        _call(world, index, r)
        for index, r in enumerate(stack.simulator.requests)
        if since is None or r.at >= since
    ]


def _call(world: World, index: int, record: RequestRecord) -> Call:
    found = match(record.method, record.path)
    operation = found[0].operation if found else "unrouted"
    if operation.endswith(".access"):  # beginGetAccess or endGetAccess
        action = record.path.rstrip("/").rsplit("/", 1)[-1]
        operation = f"{operation.split('.')[0]}.{ACCESS_ACTIONS.get(action.lower(), action)}"
    if not record.path.lower().startswith("/subscriptions/"):
        operation = BLOB  # a disk or snapshot read through its SAS (blobdata.py)
    if found and operation == "snapshots.create" and record.method == "PUT":
        args = found[1]
        group = world.groups.get((args["sub"].lower(), args["rg"].lower()))
        if group is not None and group.location != SOURCE_REGION:
            operation = "snapshots.copy"  # a CopyStart into the replica region
    path = record.path.lower().rstrip("/")
    return Call(index, record.at, record.method, path, record.status, record.kind, operation)


def accepted(call: Call) -> bool:
    return 200 <= call.status < 300


def lro_starts(log: Sequence[Call], operation: str) -> dict[str, datetime]:
    """Resource path -> its first accepted create: one long-running operation each."""
    starts: dict[str, datetime] = {}
    for call in log:
        if call.operation == operation and accepted(call):
            starts.setdefault(call.path, call.at)
    return starts


def poll_calls(
    log: Sequence[Call], starts: dict[str, datetime], done_at: Callable[[str], datetime | None]
) -> set[int]:
    """GETs of each created resource from its create until the first one at or after the time
    the simulator finishes it (that one saw it done): the polls; later GETs are plain reads."""
    gets: dict[str, list[Call]] = {}
    for call in log:
        if call.method == "GET" and call.path in starts:
            gets.setdefault(call.path, []).append(call)
    polls: set[int] = set()
    for path, started in starts.items():
        finished = done_at(path)
        for call in gets.get(path, []):
            if call.at < started:
                continue
            polls.add(call.index)
            if finished is not None and call.at >= finished:
                break
    return polls


def snapshot_done(world: World) -> Callable[[str], datetime | None]:
    def done(path: str) -> datetime | None:
        found = world.find(path)
        return found.ready_at if found else None

    return done


def copy_done(world: World) -> Callable[[str], datetime | None]:
    def done(path: str) -> datetime | None:
        found = world.find(path)
        return found.copy_done_at if found else None

    return done


# --- the figures --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Traffic:
    """What the request log says of the measured run (from its slot - LEAD): snapshot and copy
    PUTs, 429s, what the fleet run read and wrote (polls aside), the polls per kind of
    long-running operation, what was written after the fleet run, and the write bucket's use."""

    snapshot_puts: int
    copy_puts: int
    last_put: datetime | None  # the last accepted snapshot PUT
    throttled: Counter[str]
    reads: Counter[str]
    writes: Counter[str]
    polls: dict[str, tuple[int, int]]  # kind -> (polls, operations)
    after_writes: Counter[str]  # after the fleet run's end
    after_throttled: int
    bucket_writes: int  # ARM writes the write bucket granted (429s aside, deletes have their own)


def traffic(stack: Stack, since: datetime, start: datetime, end: datetime) -> Traffic:
    """Count the request log from `since`; reads and writes of the fleet run within [start, end],
    and the writes after `end`."""
    log = [c for c in calls(stack, since) if c.operation != BLOB]
    polls, poll_counts = poll_figures(stack, log)
    during = [c for c in log if start <= c.at <= end]
    after = [c for c in log if c.at > end]
    puts = [c for c in log if c.operation == "snapshots.create" and c.method == "PUT"]
    return Traffic(
        snapshot_puts=len(puts),
        copy_puts=sum(1 for c in log if c.operation == "snapshots.copy"),
        last_put=max((c.at for c in puts if accepted(c)), default=None),
        throttled=Counter(c.operation for c in log if c.status == 429),
        reads=Counter(c.operation for c in during if c.method in READS and c.index not in polls),
        writes=Counter(c.operation for c in during if c.method not in READS),
        polls=poll_counts,
        after_writes=Counter(c.operation for c in after if c.method not in READS),
        after_throttled=sum(1 for c in after if c.status == 429),
        bucket_writes=sum(1 for c in log if c.kind == "write" and c.status != 429),
    )


def poll_figures(stack: Stack, log: Sequence[Call]) -> tuple[set[int], dict[str, tuple[int, int]]]:
    """The polls in `log` (of the snapshots and copies created in it, and every operations.get)
    and, per kind, (polls, operations): for operations.get, the other writes answered 202 with
    an operation to poll (SAS grants and revokes, deletes)."""
    world = stack.simulator.world
    snapshots = lro_starts(log, "snapshots.create")
    copies = lro_starts(log, "snapshots.copy")
    with world.lock:
        snapshot_polls = poll_calls(log, snapshots, snapshot_done(world))
        copy_polls = poll_calls(log, copies, copy_done(world))
    operation_polls = {c.index for c in log if c.operation == "operations.get"}
    creates = ("snapshots.create", "snapshots.copy")
    others = sum(
        1 for c in log if c.status == 202 and c.kind != "read" and c.operation not in creates
    )
    counts = {
        "snapshots": (len(snapshot_polls), len(snapshots)),
        "copies": (len(copy_polls), len(copies)),
        "operations.get": (len(operation_polls), others),
    }
    return snapshot_polls | copy_polls | operation_polls, counts


@dataclass
class Figures:
    vms: int
    replicate: bool
    batch: int
    runs: int  # the measured run is the last of these
    daily: int
    progress: Progress
    traffic: Traffic
    fleet_seconds: float | None
    overlapping: int  # fleet runs started while the slot's ran
    azure_replica_seconds: float | None
    replica_bound: tuple[float, str]  # seconds, and how they were computed
    work_done: InstanceStatus | None  # the last instance updated, once none is live
    failed_attempts: Counter[str]  # activity attempts that failed, by reason
    pages: int
    cpu_own: float
    cpu_azurite: float
    peak_mib: float
    azurite_peak_mib: float
    wall_setup: float = 0.0
    wall_before: float = 0.0  # the earlier runs and the days between
    wall_run: float = 0.0

    @property
    def slot(self) -> datetime:
        return self.progress.slot

    @property
    def disks(self) -> int:
        return self.vms * DISKS_PER_VM

    @property
    def cpu(self) -> float:
        return self.cpu_own + self.cpu_azurite

    @property
    def wall(self) -> float:
        return self.wall_setup + self.wall_before + self.wall_run

    @property
    def write_bound(self) -> float:
        """Seconds ARM's write bucket needs to grant one PUT per disk: the burst, then refill."""
        return bucket_seconds(self.disks)

    @property
    def all_writes_bound(self) -> float:
        """Seconds the write bucket needs to grant every ARM write of the measured run."""
        return bucket_seconds(self.traffic.bucket_writes)


def bucket_seconds(writes: int) -> float:
    """ARM's write bucket for `writes` requests from full: the burst, then the refill."""
    return max(0.0, (writes - WRITE_BURST) / WRITE_REFILL)


def replica_bound(stack: Stack, copies: int, first: bool) -> tuple[float, str]:
    """The copies in waves of MAX_PARALLEL_COPIES, each as long as the simulator makes a copy
    (copystart: its PUT's `snapshot_seconds` + `copy_seconds` of the source's changed GiB: the
    whole disk for a `first` snapshot, else a day's change), after the first snapshot exists."""
    durations = stack.simulator.durations
    gib = DISK_GIB if first else min(DISK_GIB, CHANGE_GIB_PER_DAY)
    copy = durations.snapshot_seconds + durations.copy_seconds(gib)
    waves = math.ceil(copies / MAX_PARALLEL_COPIES)
    bound = durations.snapshot_seconds + waves * copy
    text = (
        f"{durations.snapshot_seconds:.0f} s first snapshot + {waves} waves of "
        f"{MAX_PARALLEL_COPIES} x {copy:.0f} s copy of {gib:g} GiB"
    )
    return bound, text


def seconds_after_slot(moment: datetime | None, slot: datetime) -> float | None:
    return None if moment is None else (moment - slot).total_seconds()


def overlapping(stack: Stack, start: datetime, end: datetime) -> int:
    """Fleet runs later ticks started while the slot's run went on: their reads count too."""
    return sum(
        1
        for s in stack.host.instances()
        if s.name == FLEET_ORCHESTRATOR and start < s.created_at <= end
    )


def last_copy_done(stack: Stack, since: datetime) -> datetime | None:
    """When Azure finished its last copy done at or after `since` (the app records it at its
    next poll)."""
    world = stack.simulator.world
    with world.lock:
        done = (r.copy_done_at for r in world.resources.values() if r.copy_done_at is not None)
        return max((at for at in done if at >= since), default=None)


def failed_attempts(stack: Stack, since: datetime) -> Counter[str]:
    """Activity attempts that failed, by the extension's reason (the activity and the error),
    in the histories of the instances created since `since`: a retried one costs its
    orchestration RETRY's interval, so a wave late for no visible reason shows here. The fleet
    run's earlier pages are not seen: continue-as-new drops their histories."""
    failed: Counter[str] = Counter()
    for status in stack.host.instances():
        if status.created_at >= since:
            for event in stack.host.history(status.instance_id):
                if event["EventType"] == HistoryEventType.TASK_FAILED:
                    failed[str(event["Reason"])[:REASON_CHARS]] += 1
    return failed


def measure(
    stack: Stack, args: argparse.Namespace, vms: int, progress: Progress, meter: CpuMeter
) -> Figures:
    """Every figure of the measured run, from the request log, the simulator, the host and the
    catalog."""
    fleet, slot = progress.fleet, progress.slot
    done = fleet is not None and fleet.runtime_status in DONE_STATES
    start = fleet.created_at if fleet else slot
    end = fleet.last_updated_at if fleet and done else progress.stopped_at
    return Figures(
        vms=vms,
        replicate=args.replicate,
        batch=stack.services.settings.fleet_batch_size,
        runs=args.runs,
        daily=args.daily,
        progress=progress,
        traffic=traffic(stack, slot - LEAD, start, end),
        fleet_seconds=(end - start).total_seconds() if done else None,
        overlapping=overlapping(stack, start, end),
        azure_replica_seconds=seconds_after_slot(last_copy_done(stack, slot - LEAD), slot),
        replica_bound=replica_bound(stack, vms * DISKS_PER_VM, first=args.runs == 1),
        work_done=None if progress.capped else last_update(stack, slot - LEAD),
        failed_attempts=failed_attempts(stack, slot - LEAD),
        pages=math.ceil(vms / stack.simulator.world.page_size),
        cpu_own=meter.own,
        cpu_azurite=meter.azurite,
        peak_mib=own_peak_mib(),
        azurite_peak_mib=process_peak_mib(meter.pid),
    )


# --- printing -------------------------------------------------------------------------------------


def ratio(value: float | None, bound: float, goal: float | None = None, note: str = "") -> str:
    """`value s / bound s = r x (goal <= g x; note)`: the measured ratio beside the bound."""
    notes = [f"goal <= {goal}x"] if goal is not None else []
    notes += [note] if note else []
    extra = f" ({'; '.join(notes)})" if notes else ""
    if value is None:
        return f"not measured / bound {bound:.0f} s{extra}"
    if bound <= 0:
        return f"{value:.0f} s / bound 0 s = n/a{extra}"
    return f"{value:.0f} s / bound {bound:.0f} s = {value / bound:.2f}x{extra}"


def per(count: int, over: int) -> str:
    return f"{count / over:.2f}" if over else "n/a"


def report(f: Figures) -> None:
    """The size's figures, each beside its bound or goal."""
    lines = [header(f), *time_lines(f), *traffic_lines(f), after_line(f), *cost_lines(f)]
    print("\n".join(lines), flush=True)


def header(f: Figures) -> str:
    p = f.progress
    status = p.fleet.runtime_status if p.fleet else "never started"
    text = (
        f"== {f.vms} VMs, {f.disks} disks, replicate {'yes' if f.replicate else 'no'}, "
        f"batch {f.batch}, daily {f.daily}, run {f.runs} at {f.slot:%Y-%m-%d %H:%M}: "
        f"fleet run {status}, backups completed {p.backups_completed}/{f.vms}"
    )
    if p.fleet is not None and p.fleet.runtime_status == "Failed":
        text += f"; why: {str(p.fleet.output)[:500]}"
    if p.capped:
        text += f"; CAPPED at slot + {_after_slot(p.stopped_at, p.slot)} s: {p.capped}"
    return text


def _after_slot(moment: datetime, slot: datetime) -> str:
    return f"{(moment - slot).total_seconds():.0f}"


def time_lines(f: Figures) -> list[str]:
    """Virtual times against the write bucket's and the copy limit's bounds."""
    burst = f"{f.disks} PUTs, burst {WRITE_BURST:.0f}, refill {WRITE_REFILL:.0f}/s"
    last_put = seconds_after_slot(f.traffic.last_put, f.slot)
    lines = [
        f"  fleet run {ratio(f.fleet_seconds, f.write_bound, GOAL_FLEET, burst)}; "
        f"fleet runs started meanwhile {f.overlapping}",
        f"  last VM's snapshot (last accepted PUT - slot) "
        f"{ratio(last_put, f.write_bound, GOAL_LAST)}",
    ]
    if f.replicate:
        p = f.progress
        bound, how = f.replica_bound
        replica = seconds_after_slot(p.last_replica_at, f.slot)
        azure = "-" if f.azure_replica_seconds is None else f"{f.azure_replica_seconds:.0f}"
        lines.append(
            f"  last replica completed (catalog) - slot {ratio(replica, bound, GOAL_REPLICAS, how)}"
            f"; Azure's last copy done at slot + {azure} s; "
            f"{p.replicas_completed}/{f.disks} completed, {p.replicas_failed} failed"
        )
    return lines


def traffic_lines(f: Figures) -> list[str]:
    """ARM requests: writes per disk, reads per VM-list page, polls per operation."""
    t = f.traffic
    snapshot_polls, snapshots = t.polls["snapshots"]
    copy_polls, copies = t.polls["copies"]
    operation_polls, others = t.polls["operations.get"]
    polls = snapshot_polls + copy_polls + operation_polls
    operations = snapshots + copies + others
    reads = sum(t.reads.values())
    return [
        f"  ARM writes per disk backup {t.snapshot_puts} snapshot PUTs / {f.disks} disks = "
        f"{per(t.snapshot_puts, f.disks)} (goal {GOAL_WRITES}); copy PUTs {t.copy_puts}; "
        f"429s {sum(t.throttled.values())} {dict(sorted(t.throttled.items()))}",
        f"  reads per VM-list page {reads} / {f.pages} pages = {per(reads, f.pages)} "
        f"(goal <= {GOAL_READS}; non-poll ARM reads during the fleet run): "
        f"{dict(t.reads.most_common())}",
        f"  writes during the fleet run {dict(t.writes.most_common())}",
        f"  activity attempts failed {f.failed_attempts.total()}: "
        f"{dict(f.failed_attempts.most_common())}",
        f"  polls per operation {polls} / {operations} = "
        f"{per(polls, operations)} (goal <= {GOAL_POLLS}): snapshots "
        f"{snapshot_polls}/{snapshots}, copies {copy_polls}/{copies}, "
        f"operations.get {operation_polls}/{others} other operations",
    ]


def after_line(f: Figures) -> str:
    """What the backups' follow-ups wrote after the fleet run, and when all the run's work was
    done against the write bucket's time for every ARM write of the run."""
    t = f.traffic
    text = (
        f"  after the fleet run: writes {dict(t.after_writes.most_common())}; "
        f"429s {t.after_throttled}; "
    )
    how = (
        f"{t.bucket_writes} ARM writes granted, burst {WRITE_BURST:.0f}, "
        f"refill {WRITE_REFILL:.0f}/s"
    )
    if f.work_done is None:
        return text + f"all work not done by the cap (bound {f.all_writes_bound:.0f} s; {how})"
    done = seconds_after_slot(f.work_done.last_updated_at, f.slot)
    return (
        text + f"all work done at slot + {ratio(done, f.all_writes_bound, note=how)}, "
        f"last updated {f.work_done.name}"
    )


def cost_lines(f: Figures) -> list[str]:
    return [
        f"  CPU {f.cpu:.1f} s (python {f.cpu_own:.1f} + azurite {f.cpu_azurite:.1f}); "
        f"peak RSS {f.peak_mib:.0f} MiB (this process's whole life so far), "
        f"azurite {f.azurite_peak_mib:.0f} MiB",
        f"  wall {f.wall:.0f} s (setup {f.wall_setup:.0f}, earlier runs {f.wall_before:.0f}, "
        f"run {f.wall_run:.0f}); virtual end slot + {_after_slot(f.progress.stopped_at, f.slot)} s",
    ]


def summary(results: Sequence[Figures]) -> None:
    print("summary")
    for f in results:
        fleet = f"{f.fleet_seconds:.0f}" if f.fleet_seconds is not None else "-"
        print(
            f"  {f.vms:>6} VMs: fleet {fleet} s (bound {f.write_bound:.0f}), "
            f"CPU {f.cpu:.1f} s, peak {f.peak_mib:.0f} MiB, wall {f.wall:.0f} s"
        )
    for small, large in itertools.pairwise(results):
        if small.cpu <= 0 or large.vms <= small.vms:
            continue
        tens = math.log10(large.vms / small.vms)
        per_ten = (large.cpu / small.cpu) ** (1 / tens)
        print(
            f"  CPU per 10x VMs, {small.vms} -> {large.vms}: {per_ten:.1f}x "
            f"(goal <= {GOAL_CPU:.0f}x)"
        )


# --- main ----------------------------------------------------------------------------------------


def settings_for(args: argparse.Namespace) -> dict[str, str]:
    settings = {**dict.fromkeys(QUIET_TIMERS, QUIET), **SWEEPER}
    if args.batch is not None:
        settings["BACKUPDR_FLEET_BATCH_SIZE"] = str(args.batch)
    return settings


def run_size(args: argparse.Namespace, vms: int) -> Figures:
    """One fleet size on a fresh stack: seed it, run its earlier runs, run the last and measure
    it."""
    wall = time.monotonic()
    fleet = make_fleet(vms, args.replicate, args.daily, random.Random(f"{args.seed}:{vms}"))
    slots = [SLOT + k * DAY for k in range(args.runs)]
    with local_stack(
        fleet, start=SLOT - LEAD, table_prefix=f"fleet{vms}", settings=settings_for(args)
    ) as stack:
        pid = azurite_pid(stack.azurite.port)
        setup = time.monotonic() - wall
        for slot in slots[:-1]:
            earlier_run(stack, args, vms, slot, pid)
        before = time.monotonic() - wall - setup
        meter = CpuMeter(pid)
        progress = drive(stack, vms, args.replicate, slots[-1], cap_for(args, slots[-1]), meter)
        meter.stop()
        running = time.monotonic() - wall - setup - before
        figures = measure(stack, args, vms, progress, meter)
    figures.wall_setup, figures.wall_before, figures.wall_run = setup, before, running
    return figures


def cap_for(args: argparse.Namespace, slot: datetime) -> datetime:
    return slot + timedelta(hours=args.max_hours)


def earlier_run(
    stack: Stack, args: argparse.Namespace, vms: int, slot: datetime, pid: int | None
) -> None:
    """Drive a run before the measured one to its end (cut off by the next run's start at the
    latest), print where it got, and run the timers on to the next slot - LEAD."""
    following = slot + DAY - LEAD
    cap = min(cap_for(args, slot), following)
    progress = drive(stack, vms, args.replicate, slot, cap, CpuMeter(pid))
    print(earlier_line(stack, vms, progress), flush=True)
    stack.host.run_timers(until=following)


def earlier_line(stack: Stack, vms: int, p: Progress) -> str:
    status = p.fleet.runtime_status if p.fleet else "never started"
    last = None if p.capped else last_update(stack, p.slot - LEAD)
    text = (
        f"-- {vms} VMs, run at {p.slot:%Y-%m-%d %H:%M}: fleet run {status}, backups completed "
        f"{p.backups_completed}/{vms}"
    )
    if last is not None:
        done = _after_slot(last.last_updated_at, p.slot)
        return text + f", all work done at slot + {done} s, last updated {last.name}"
    return text + f"; CAPPED at slot + {_after_slot(p.stopped_at, p.slot)} s: {p.capped}"


def sizes(text: str) -> list[int]:
    found = [int(part) for part in text.split(",") if part.strip()]
    if not found or any(n < 1 for n in found):
        raise argparse.ArgumentTypeError("give fleet sizes as a comma list, e.g. 10,100,1000")
    return found


def positive(text: str) -> int:
    found = int(text)
    if found < 1:
        raise argparse.ArgumentTypeError("give a whole number of at least 1")
    return found


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.fleet", description=(__doc__ or "").split("\n")[0]
    )
    parser.add_argument("--vms", type=sizes, default=[10, 100, 1000], help="comma list of sizes")
    parser.add_argument("--replicate", action="store_true", help=f"copy to {REPLICA_REGION}")
    parser.add_argument("--batch", type=int, default=None, help="BACKUPDR_FLEET_BATCH_SIZE")
    parser.add_argument("--seed", type=int, default=1, help="the fleet's zones")
    parser.add_argument(
        "--runs",
        type=positive,
        default=1,
        help="daily fleet runs from 2026-01-05; the last is measured",
    )
    parser.add_argument("--daily", type=positive, default=7, help="the policy's daily= count")
    parser.add_argument(
        "--max-hours",
        type=float,
        default=24.0,
        help="virtual hours after each run's slot to give up (an earlier run: at the next's start)",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    results = []
    for vms in args.vms:
        results.append(run_size(args, vms))
        report(results[-1])
    summary(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
