"""DR-test benchmark: a DR test's RTO against the critical path of the simulated operations.

    python -m bench.drtest [--tests 5] [--seed 1]

One fresh `local_stack` holds one VM (tiny.json's subscription and groups; an OS and a data
disk) whose policy replicates to westus2 and asks for DR tests. The app's own timers take its
02:00 backup and copy it to westus2; then `--tests` DR tests run one after another, each a
`dr_test_v2` started as the tests start it, after a seeded gap of virtual time (no timer ticks
meanwhile, so the request log between a test's start and end is that test's alone). The gaps
move the moments, and so the simulator's draws of the varied durations (NIC, Run Command).

Measured from outside the app, nothing asserted:

- RTO and the app's phases: the catalog's `dr_tests` row (`rto_seconds`, `phase_seconds`).
- The critical path, from the simulator only: what a client with no overhead, told the moment
  each operation ended, would get from the test's start. The NIC and the disks are created in
  parallel (the longest `ready_at - created_at` of the test's resources), then the VM is created
  (its `ready_at - created_at`), boots (`boots_at - ready_at`) and answers Run Command (the
  operation's `done_at - started`). These are the actual durations of this test's operations,
  varied ones included; the resources are kept by looking at the simulator's world every few
  virtual seconds (the test's clean-up deletes them).
- Per phase: the app's time beside its link's simulated duration, the difference split into
  *late start* (the link's end minus its duration, minus the app's phase start: how long after
  the phase began the operation began, in effect) and *seen late* (the first read at or after
  the operation's end, minus that end: what the app's poll waits cost). Reads: the GETs of the
  created resources (disks and NIC; the VM's instance view for create and boot) or of the Run
  Command's operation, from the phase's start up to that first read, counted before and at or
  after the end of what was read, and each read moment as an offset from the link's end.
- ARM requests per test: the simulator's log from the test's start to its end (its clean-up
  included), and those within the RTO (up to the read that saw the guest's answer), by
  operation.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from bench.fleet import BLOB, QUIET, QUIET_TIMERS, Call, accepted, calls, live_instances
from local.armsim.protocol import DISK_TYPE, NIC_TYPE, VM_TYPE
from local.armsim.state import Operation, Resource, World
from local.stack import FLEETS, Stack, local_stack
from shared.domain.models import DrTest, ReplicationStatus
from shared.runner.instances import ACTIVE

APP_GROUP = "rg-app-eastus"
VM_NAME = "dr-01"
VM_KEY = f"{APP_GROUP}~{VM_NAME}"
TEST_REGION = "westus2"
POLICY = f"schedule=0 2 * * *;daily=7;replicate={TEST_REGION};drtest=weekly"
START = datetime(2026, 1, 5, 1, 50, tzinfo=UTC)  # ten minutes before the policy's 02:00
SETUP_STEP = timedelta(minutes=5)  # virtual time between looks at the catalog, before the tests
SETUP_CAP = timedelta(hours=6)  # virtual time the backup and its replica may take
# Virtual time between looks at the simulator during a test: far shorter than a test resource
# lives (from its PUT to the clean-up's delete), so none is missed.
STEP = timedelta(seconds=10)
TEST_CAP = timedelta(hours=3)  # virtual time a test may take before it is given up
GAP_SECONDS = (60, 3600)  # seeded virtual pause before each test
GOAL = 1.05
PHASES = ("restore", "create_vm", "boot", "guest_check")
TYPES = (DISK_TYPE, NIC_TYPE, VM_TYPE)  # what a DR test creates in the test group


# --- the fleet and the setup ----------------------------------------------------------------


def make_fleet() -> dict[str, Any]:
    """tiny.json's subscription and groups (its DR-test groups and isolated subnets) with one
    VM of two disks whose policy replicates to the test region and asks for DR tests."""
    base = json.loads((FLEETS / "tiny.json").read_text())["subscriptions"][0]
    disk = {"sku": "Premium_LRS", "change_gib_per_day": 1.0}
    vm = {
        "name": VM_NAME,
        "resource_group": APP_GROUP,
        "size": "Standard_D2s_v5",
        "os_type": "Linux",
        "zone": "1",
        "tags": {"backup-policy": POLICY},
        "os_disk": {**disk, "size_gb": 30},
        "data_disks": [{**disk, "size_gb": 32, "lun": 0}],
    }
    return {
        "subscriptions": [
            {"id": base["id"], "resource_groups": base["resource_groups"], "vms": [vm]}
        ]
    }


def replicated(stack: Stack) -> str | None:
    """Run the app's timers until the VM's newest backup has a complete replica and nothing
    runs; its backup id, or None when SETUP_CAP passed first."""
    cap = START + SETUP_CAP
    while stack.clock.now() < cap:
        stack.host.run_timers(until=stack.clock.now() + SETUP_STEP)
        backups = stack.services.catalog.list_backups(VM_KEY)
        done = bool(backups) and backups[0].replication_status == ReplicationStatus.COMPLETED
        if done and live_instances(stack) == 0:
            return backups[0].backup_id
    return None


# --- one DR test ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    """One DR test as it went: the catalog's row, its requests and the resources it made."""

    test: DrTest | None
    first: int  # index of its first request in the simulator's log
    created: list[Resource]
    note: str = ""


def run_test(stack: Stack, group: str) -> Run:
    """Start a `dr_test_v2` now and run it to its end, keeping every resource it creates."""
    world = stack.simulator.world
    start = stack.clock.now()
    first = len(world.requests)
    instance = stack.host.start("dr_test_v2", {"vm_key": VM_KEY, "test_region": TEST_REGION})
    kept: dict[str, Resource] = {}
    while stack.clock.now() < start + TEST_CAP:
        until = stack.clock.now() + STEP
        stack.host.run_until_idle(max_virtual_seconds=STEP.total_seconds())
        keep_created(world, group, start, kept)
        if stack.host.status(instance).runtime_status not in ACTIVE:
            break
        stack.clock.advance_to(until)
    status = stack.host.status(instance)
    history = stack.services.catalog.dr_history(VM_KEY, now=stack.clock.now(), days=1)
    test = next((t for t in history if t.started_at == start), None)
    note = "" if test else f"no catalog row; instance {status.runtime_status}"
    return Run(test, first, list(kept.values()), note)


def keep_created(world: World, group: str, since: datetime, kept: dict[str, Resource]) -> None:
    """Hold on to the resources created in the test group since the test started."""
    prefix = f"/resourcegroups/{group.lower()}/"
    with world.lock:
        for key, resource in world.resources.items():
            if prefix in key and resource.created_at >= since:
                kept.setdefault(key, resource)


# --- the critical path, from the simulator ------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """A resource or operation the app reads to see a link end, and when it was done."""

    label: str
    done: datetime


@dataclass(frozen=True)
class Link:
    """One link of the critical path: the simulated operation(s) a phase of the RTO waits on."""

    phase: str
    seconds: float  # its simulated duration (restore: the longest of the parallel creates)
    end: datetime  # when the simulator finished it (restore: the last to finish)
    reads: dict[str, Target]  # path the app reads to see it -> what it is
    parts: str  # the durations behind `seconds`


def chain(world: World, log: Sequence[Call], run: Run) -> list[Link] | str:
    """The four links, from the test's resources and its Run Command's operation; or what is
    missing (a test that failed before its guest answered)."""
    of = {kind: [r for r in run.created if r.type.lower() == kind.lower()] for kind in TYPES}
    if not of[VM_TYPE] or not of[DISK_TYPE] or not of[NIC_TYPE]:
        return "the test made no VM, disk or NIC"
    vm = of[VM_TYPE][0]
    view = f"{vm.id.lower()}/instanceview"
    found = guest_operation(world, log, vm.id.lower())
    if vm.boots_at is None or found is None:
        return "no Run Command was read"
    operation, path = found
    created = Target("instance view", vm.ready_at)
    booted = Target("instance view", vm.boots_at)
    answered = Target("Run Command operation", operation.done_at)
    return [
        restore_link(of[DISK_TYPE] + of[NIC_TYPE]),
        Link("create_vm", span(vm.created_at, vm.ready_at), vm.ready_at, {view: created}, ""),
        Link("boot", span(vm.ready_at, vm.boots_at), vm.boots_at, {view: booted}, ""),
        Link(
            "guest_check",
            span(operation.started, operation.done_at),
            answered.done,
            {path: answered},
            "",
        ),
    ]


def restore_link(resources: Sequence[Resource]) -> Link:
    """Disks and NIC in parallel: the longest of their creates."""
    parts = ", ".join(
        f"{label(r)} {span(r.created_at, r.ready_at):.1f}"
        for r in sorted(resources, key=lambda r: r.id)
    )
    return Link(
        "restore",
        max(span(r.created_at, r.ready_at) for r in resources),
        max(r.ready_at for r in resources),
        {r.id.lower(): Target(label(r), r.ready_at) for r in resources},
        f"max({parts})",
    )


def label(resource: Resource) -> str:
    """`disk os`, `disk lun0`, `nic`: what a restored resource is, from its name's end."""
    role = resource.name.rsplit("-", 1)[-1]
    return role if role == "nic" else f"disk {role}"


def span(start: datetime, end: datetime) -> float:
    return (end - start).total_seconds()


def guest_operation(
    world: World, log: Sequence[Call], vm_path: str
) -> tuple[Operation, str] | None:
    """The Run Command operation the app read: the one its last accepted POST started, found
    through the operation GETs that followed it."""
    posts = [c for c in log if c.path == f"{vm_path}/runcommand" and accepted(c)]
    if not posts:
        return None
    post = posts[-1]
    with world.lock:
        for call in log:
            if call.index <= post.index or call.operation != "operations.get":
                continue
            operation = world.operations.get(call.path.rsplit("/", 1)[-1])
            if operation is not None and operation.started == post.at:
                return operation, call.path
    return None


# --- the app against it -------------------------------------------------------------------------


@dataclass(frozen=True)
class Polls:
    """The app's reads of a link's targets, up to the first read at or after the link's end."""

    counts: dict[str, tuple[int, int]]  # target label -> reads before and at or after its end
    offsets: tuple[float, ...]  # each read moment, seconds from the link's end
    seen: datetime | None  # the first read moment at or after the end
    last: int  # log index of the last read counted

    @property
    def before(self) -> int:
        return sum(before for before, _ in self.counts.values())

    @property
    def after(self) -> int:
        return sum(after for _, after in self.counts.values())


def polls(log: Sequence[Call], link: Link, after: int) -> Polls:
    """GETs of the link's targets after log index `after`, up to the first moment the app
    read one at or after the link's end (every read of that moment included)."""
    reads = [c for c in log if c.index > after and c.method == "GET" and c.path in link.reads]
    seen = next((c.at for c in reads if c.at >= link.end), None)
    window = [c for c in reads if seen is None or c.at <= seen]
    counts: dict[str, tuple[int, int]] = {}
    for call in window:
        target = link.reads[call.path]
        early, late = counts.get(target.label, (0, 0))
        done = call.at >= target.done
        counts[target.label] = (early + (not done), late + done)
    return Polls(
        counts=dict(sorted(counts.items())),
        offsets=tuple(sorted({span(link.end, c.at) for c in window})),
        seen=seen,
        last=max((c.index for c in window), default=after),
    )


@dataclass(frozen=True)
class Phase:
    """One phase: the app's recorded time against its link of the critical path."""

    link: Link
    app: float  # the catalog's phase seconds
    late_start: float  # (link end - its duration) - the app's phase start
    polls: Polls

    @property
    def seen_late(self) -> float | None:
        return None if self.polls.seen is None else span(self.link.end, self.polls.seen)


@dataclass(frozen=True)
class Figures:
    """One DR test, measured."""

    test: DrTest
    phases: list[Phase]
    posts: int  # Run Command POSTs, refused ones included
    requests: int  # ARM requests from the test's start to its end
    in_rto: Counter[str]  # those up to the read that saw the guest's answer, by operation

    @property
    def critical_path(self) -> float:
        return sum(p.link.seconds for p in self.phases)

    @property
    def rto(self) -> float:
        return self.test.rto_seconds or 0.0


def measure(stack: Stack, run: Run) -> Figures | str:
    """The test's figures; or why there are none (no row, no RTO, a link missing)."""
    test = run.test
    if test is None or test.rto_seconds is None:
        return run.note or f"no RTO: {test.error_message if test else '?'}"
    log = calls(stack)[run.first :]
    links = chain(stack.simulator.world, log, run)
    if isinstance(links, str):
        return links
    phases, begun, after = [], test.started_at, run.first - 1
    for link in links:
        app = test.phase_seconds.get(link.phase, 0.0)
        found = polls(log, link, after)
        late = span(begun, link.end) - link.seconds
        phases.append(Phase(link, app, late, found))
        begun, after = begun + timedelta(seconds=app), found.last
    arm = [c for c in log if c.operation != BLOB]  # the test's alone: nothing else runs
    return Figures(
        test,
        phases,
        posts=sum(1 for c in arm if c.operation == "runcommand"),
        requests=len(arm),
        in_rto=Counter(c.operation for c in arm if c.index <= after),
    )


# --- printing -------------------------------------------------------------------------------------


def report_test(number: int, f: Figures) -> None:
    t = f.test
    print(
        f"test {number} {t.id} at {t.started_at:%H:%M:%S}: RTO {f.rto:.1f} s / critical path "
        f"{f.critical_path:.1f} s = {f.rto / f.critical_path:.3f}x (goal <= {GOAL}x)\n"
        f"  ARM requests {f.requests} to the test's end, {sum(f.in_rto.values())} within the "
        f"RTO: {dict(f.in_rto.most_common())}; Run Command POSTs {f.posts}"
    )
    for phase in f.phases:
        print(phase_line(phase))


def phase_line(p: Phase) -> str:
    """The app's time against the link's, the difference split, and the reads."""
    link, reads = p.link, p.polls
    seen = "never" if p.seen_late is None else f"{p.seen_late:+.1f}"
    parts = f" = {link.parts}" if link.parts else ""
    counts = ", ".join(f"{name} {b}/{a}" for name, (b, a) in reads.counts.items())
    offsets = ", ".join(f"{o:+.1f}" for o in reads.offsets)
    return (
        f"  {link.phase:<11} app {p.app:5.1f} s / simulated {link.seconds:5.1f} s{parts} = "
        f"{p.app / link.seconds:.2f}x; over {p.app - link.seconds:+.1f} s = late start "
        f"{p.late_start:+.1f} + seen late {seen}; reads before/after its end: {counts}; "
        f"read at end {offsets} s"
    )


def summary(results: Sequence[Figures]) -> None:
    """Mean and max over the tests, then each phase's share of the RTO's overhead."""
    print(f"RTO against the critical path, by phase ({len(results)} tests; mean / max)")
    rtos = [f.rto for f in results]
    paths = [f.critical_path for f in results]
    over = (sum(rtos) - sum(paths)) / len(results)
    print(
        f"  RTO {mean_max(rtos)} s; critical path {mean_max(paths)} s; RTO / critical path "
        f"{mean_max([f.rto / f.critical_path for f in results], 'x', 3)} (goal <= {GOAL}x); "
        f"overhead {over:.1f} s per test"
    )
    for index, name in enumerate(PHASES):
        print(phase_summary(name, [f.phases[index] for f in results], over))
    requests = [float(f.requests) for f in results]
    within = [float(sum(f.in_rto.values())) for f in results]
    print(f"  ARM requests per test {mean_max(requests)} ({mean_max(within)} within the RTO)")


def phase_summary(name: str, phases: Sequence[Phase], overhead: float) -> str:
    extra = [p.app - p.link.seconds for p in phases]
    share = f"{statistics.mean(extra) / overhead:.0%}" if overhead else "n/a"
    return (
        f"  {name:<11} app {mean_max([p.app for p in phases])} s, simulated "
        f"{mean_max([p.link.seconds for p in phases])} s, over {mean_max(extra)} s "
        f"({share} of the overhead) = late start {mean_max([p.late_start for p in phases])} "
        f"+ seen late {mean_max([p.seen_late or 0.0 for p in phases])}; reads per test "
        f"{statistics.mean(p.polls.before for p in phases):.1f} before / "
        f"{statistics.mean(p.polls.after for p in phases):.1f} after the end"
    )


def mean_max(values: Sequence[float], unit: str = "", digits: int = 1) -> str:
    return f"{statistics.mean(values):.{digits}f}{unit} / {max(values):.{digits}f}{unit}"


# --- main ----------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.drtest", description=(__doc__ or "").split("\n")[0]
    )
    parser.add_argument("--tests", type=positive, default=5, help="DR tests, one after another")
    parser.add_argument("--seed", type=int, default=1, help="the virtual gaps before the tests")
    return parser.parse_args(argv)


def positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("give at least 1")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    rng = random.Random(args.seed)
    wall = time.monotonic()
    settings = dict.fromkeys(QUIET_TIMERS, QUIET)
    with local_stack(make_fleet(), start=START, table_prefix="drtest", settings=settings) as stack:
        backup = replicated(stack)
        if backup is None:
            print(f"no complete replica of {VM_KEY} in {TEST_REGION} by {START + SETUP_CAP}")
            return 1
        print(
            f"== {args.tests} DR tests of {VM_KEY} into {TEST_REGION}, seed {args.seed}: backup "
            f"{backup}, replica complete by {stack.clock.now():%H:%M:%S} "
            f"(wall {time.monotonic() - wall:.0f} s)"
        )
        group = stack.services.settings.drtest_group(TEST_REGION)
        results = []
        for number in range(1, args.tests + 1):
            stack.clock.advance(rng.randint(*GAP_SECONDS))
            found = measure(stack, run_test(stack, group))
            if isinstance(found, str):
                print(f"test {number}: not measured: {found}")
                continue
            report_test(number, found)
            results.append(found)
    if results:
        summary(results)
    print(f"wall {time.monotonic() - wall:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
