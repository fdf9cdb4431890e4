"""The fleet run reads the VM list a page per execution (continue_as_new) and starts snapshots no
faster than ARM's write bucket refills, so it meets no 429.

The app's timers, the local durable host, the ARM simulator over HTTPS (with its token buckets)
and Azurite's catalog. The buckets are shrunk in both the simulator and the app (the published
sizes are module constants) so a handful of VMs outruns them.
"""

from __future__ import annotations

import copy
import itertools
import json
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from local.armsim import Durations, copystart, throttle
from local.armsim.protocol import NIC_TYPE
from local.armsim.routes import match
from local.armsim.state import RequestRecord
from local.azurite import Azurite
from local.stack import FLEETS, Stack, local_stack
from shared.activities import replication
from shared.domain import pacing
from shared.domain.models import ReplicationJob, ReplicationStatus

START = datetime(2026, 11, 10, 1, 59, tzinfo=UTC)
SLOT = datetime(2026, 11, 10, 2, tzinfo=UTC)
TICK = "fleet_backup_v4-20261110t0200"
VMS = 5
POLICY = "schedule=0 2 * * *;daily=7;weekly=4;monthly=12"
_prefixes = (f"pacing{n}" for n in itertools.count())


def _fleet() -> dict[str, Any]:
    """tiny.json's groups, and VMS copies of its web-01 (an OS and a data disk), due at 02:00."""
    fleet: dict[str, Any] = json.loads((FLEETS / "tiny.json").read_text())
    subscription = fleet["subscriptions"][0]
    web = next(vm for vm in subscription["vms"] if vm["name"] == "web-01")
    subscription["vms"] = []
    for n in range(VMS):
        vm = copy.deepcopy(web)
        vm["name"] = f"app-{n:02d}"
        vm["tags"] = {"backup-policy": POLICY}
        subscription["vms"].append(vm)
    return fleet


def _shrink_write_bucket(
    monkeypatch: pytest.MonkeyPatch, *, burst: int, refill: float = 1.0
) -> None:
    """The write bucket, `burst` tokens refilled `refill` a second, in the simulator and the
    app alike."""
    monkeypatch.setitem(throttle.LIMITS, "write", (float(burst), refill))
    monkeypatch.setattr(pacing, "WRITE_BURST", float(burst))
    monkeypatch.setattr(pacing, "WRITE_REFILL_PER_SECOND", refill)


def _snapshot_puts(stack: Stack) -> list[RequestRecord]:
    """Every snapshot PUT the simulator was sent, refused ones included."""
    return [
        r
        for r in stack.simulator.requests
        if r.method == "PUT" and "/snapshots/" in r.path and r.kind == "write"
    ]


@pytest.fixture
def paged(azurite: Azurite) -> Iterator[Stack]:
    """Pages of two VMs, so five VMs take three executions of the fleet run."""
    with local_stack(
        _fleet(), start=START, azurite=azurite, table_prefix=next(_prefixes), page_size=2
    ) as stack:
        stack.host.run_timers(until=SLOT + timedelta(hours=1))
        yield stack


def _vm_list_reads(stack: Stack, until: datetime) -> list[datetime]:
    """The subscription's VM list pages read from the slot until `until`."""
    return [
        r.at
        for r in stack.simulator.requests
        if r.method == "GET"
        and r.path.lower().endswith("/providers/microsoft.compute/virtualmachines")
        and SLOT <= r.at <= until
    ]


def test_each_page_of_the_vm_list_is_one_execution_and_the_last_one_reports_the_fleet(
    paged: Stack,
) -> None:
    status = paged.host.status(TICK)

    assert status.runtime_status == "Completed"
    assert status.output["total"] == VMS
    assert status.output["completed"] == VMS
    assert status.input["page"]  # the third execution, started by continue_as_new
    assert status.input["totals"]["completed"] == 4
    names = [e.get("Name") for e in paged.host.history(TICK)]
    assert names.count("list_due_vms") == 1  # its own page only, not the fleet's
    assert len(_vm_list_reads(paged, status.last_updated_at)) == 3  # one read per page


def test_a_run_reads_each_vm_once_and_the_nics_and_test_groups_once_not_per_vm(
    paged: Stack,
) -> None:
    """Five VMs on three pages: the VMs come with their claims, the NICs from one list of the
    subscription's NICs (kept in the catalog for the later pages), the DR-test group from one
    list; each backup still records its NICs and generation as reads of each would."""
    end = paged.host.status(TICK).last_updated_at
    reads = Counter(
        found[0].operation
        for r in paged.simulator.requests
        if r.method == "GET" and SLOT <= r.at <= end and (found := match(r.method, r.path))
    )
    nics = len(paged.simulator.world.of_type(NIC_TYPE, paged.simulator.subscription))

    assert (reads["vms.get"], reads["nics.get"]) == (0, 0)
    assert reads["vms.list"] == 3
    assert reads["nics.list"] == -(-nics // 2)  # one list, at two a page
    assert reads["resources.list"] == 1  # eastus's DR-test group
    gateway = paged.services.gateway
    for vm in gateway.list_vms():
        [backup] = paged.services.catalog.list_backups(vm.key)
        assert backup.nics == (gateway.get_nic(vm.nic_ids[0]),)
        # Not in a listed VM: its OS disk's snapshot says it.
        generation = gateway.get_vm(vm.resource_group, vm.name).hyper_v_generation
        assert (backup.hyper_v_generation, vm.hyper_v_generation) == (generation, None)


def test_snapshots_start_no_faster_than_the_write_bucket_refills(
    azurite: Azurite, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ten snapshot PUTs against a bucket of 6 refilled 1 a second: the last waits at least
    4 s after the slot, and none is refused."""
    _shrink_write_bucket(monkeypatch, burst=6)
    with local_stack(_fleet(), start=START, azurite=azurite, table_prefix=next(_prefixes)) as stack:
        stack.host.run_timers(until=SLOT + timedelta(hours=1))
        puts = _snapshot_puts(stack)
        assert stack.host.status(TICK).output["completed"] == VMS

    assert [r.status for r in puts if r.status == 429] == []
    assert len(puts) == 2 * VMS
    assert max(r.at for r in puts) - SLOT >= timedelta(seconds=(2 * VMS - 6) / 1.0)


def test_a_tick_that_comes_while_a_run_sends_its_snapshots_lists_its_pages_after_that_run(
    azurite: Azurite, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fleet timer ticks every minute while the 02:00 run's three pages take five (a bucket
    of 4 refilled one token in 50 s): each later tick's run waits for the run holding the write
    bucket, so the 02:00 run backs up every VM itself and no snapshot PUT is refused. Before,
    the 02:01 run claimed the third page, which the 02:00 run had not listed yet, and sent its
    snapshots beside the 02:00 run's by a model of the bucket of its own."""
    _shrink_write_bucket(monkeypatch, burst=4, refill=0.02)
    with local_stack(
        _fleet(),
        start=START,
        azurite=azurite,
        table_prefix=next(_prefixes),
        page_size=2,
        settings={"BACKUPDR_FLEET_BACKUP_SCHEDULE": "0 * * * * *"},
    ) as stack:
        stack.host.run_timers(until=SLOT + timedelta(minutes=15))
        puts = _snapshot_puts(stack)
        first = stack.host.status(TICK)
        later = [
            s
            for s in stack.host.instances()
            if s.name == "fleet_backup_v4" and s.instance_id != TICK
        ]
        backups = list(stack.services.catalog.latest_backups())

    assert first.runtime_status == "Completed"
    assert first.output["completed"] == VMS
    assert max(r.at for r in puts) - SLOT >= timedelta(seconds=(2 * VMS - 4) / 0.02)
    assert len(later) >= 10
    assert {(s.runtime_status, s.output["total"]) for s in later} == {("Completed", 0)}
    assert len(backups) == VMS
    assert [r.status for r in puts if r.status == 429] == []
    assert len(puts) == 2 * VMS


def _replicated_fleet() -> dict[str, Any]:
    fleet = _fleet()
    for vm in fleet["subscriptions"][0]["vms"]:
        vm["tags"] = {"backup-policy": f"{POLICY};replicate=westus2;verify=off"}
    return fleet


def test_the_fleet_run_does_not_wait_for_the_copies_it_starts(azurite: Azurite) -> None:
    """Copies of 3 h: the fleet run ends with its snapshots, each copy runs as its own
    `replicate-<backup id>` instance, and every one completes later."""
    fleet = _replicated_fleet()
    slow_copies = Durations(copy_base_seconds=3 * 3600)
    with local_stack(
        fleet, start=START, azurite=azurite, table_prefix=next(_prefixes), durations=slow_copies
    ) as stack:
        stack.host.run_timers(until=SLOT + timedelta(minutes=20))
        run = stack.host.status(TICK)
        assert run.runtime_status == "Completed"
        assert run.output["completed"] == VMS
        backed_up = list(stack.services.catalog.latest_backups())
        copies = {
            s.instance_id: s.runtime_status
            for s in stack.host.instances()
            if s.name == "replicate_backup"
        }
        assert len(backed_up) == VMS
        assert set(copies.values()) == {"Running"}
        assert len(copies) == VMS
        stack.host.run_timers(until=SLOT + timedelta(hours=4))
        catalog = stack.services.catalog
        assert all(
            catalog.list_backups(key)[0].replication_status == "completed" for key in backed_up
        )
        assert {stack.host.status(i).runtime_status for i in copies} == {"Completed"}


def test_copies_started_at_once_never_pass_the_regions_parallel_limit(
    azurite: Azurite, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ten disks' copies start at once against a limit of 3 (shrunk in the simulator and the
    app alike): Azure refuses a copy past it for good, and none is refused."""
    monkeypatch.setattr(copystart, "MAX_PARALLEL_COPIES", 3)
    monkeypatch.setattr(replication, "MAX_PARALLEL_COPIES", 3)
    with local_stack(
        _replicated_fleet(), start=START, azurite=azurite, table_prefix=next(_prefixes)
    ) as stack:
        stack.host.run_timers(until=SLOT + timedelta(hours=6))
        jobs = stack.services.catalog.list_replication_jobs()
        copies = [r for r in stack.simulator.requests if r.method == "PUT" and "-westus2" in r.path]

    assert [j.error_message for j in jobs if j.status is ReplicationStatus.FAILED] == []
    assert len([j for j in jobs if j.status is ReplicationStatus.COMPLETED]) == 2 * VMS
    assert [r.status for r in copies if r.status >= 400] == []


def test_the_slots_a_backups_copies_free_are_taken_within_the_longest_wait_step(
    azurite: Azurite, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Five backups of two disks each, copied through 2 copy slots, an hour or so a copy: one
    backup's copies at a time (a backup starts its disks' copies together), so the last waits
    four hours and more. Each backup's copies start within MAX_WAIT_STEP of the app seeing
    the one before it done (and never before). Before, a copy that had waited hours asked
    again a tenth of its wait later, and freed slots sat idle for up to 13 minutes."""
    monkeypatch.setattr(copystart, "MAX_PARALLEL_COPIES", 2)
    monkeypatch.setattr(replication, "MAX_PARALLEL_COPIES", 2)
    with local_stack(
        _replicated_fleet(),
        start=START,
        azurite=azurite,
        table_prefix=next(_prefixes),
        durations=Durations(copy_base_seconds=20 * 60),
    ) as stack:
        stack.host.run_timers(until=SLOT + timedelta(hours=8))
        jobs = stack.services.catalog.list_replication_jobs()

    assert {j.status for j in jobs} == {ReplicationStatus.COMPLETED}
    assert len(jobs) == 2 * VMS
    by_backup: dict[str, list[ReplicationJob]] = {}
    for job in sorted(jobs, key=lambda j: j.started_at):
        by_backup.setdefault(job.backup_id, []).append(job)
    waves = list(by_backup.values())
    handed = [
        min(j.started_at for j in wave) - max(j.completed_at or j.started_at for j in before)
        for before, wave in itertools.pairwise(waves)
    ]
    assert len(handed) == VMS - 1
    assert min(handed) >= timedelta(0)
    assert max(handed) <= timedelta(minutes=3, seconds=5)  # MAX_WAIT_STEP, and the poll


def test_copies_start_after_the_fleet_runs_snapshots_and_leave_them_the_write_bucket(
    azurite: Azurite, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Five replicated VMs in pages of two against a bucket of 6 refilled 1 a second: each
    page holds the bucket for its snapshots, so no copy's PUT comes before the run's last
    snapshot PUT and no snapshot PUT is refused; every copy still completes. Before, each
    backup's copy started as soon as its own snapshots were done and took the tokens the
    later waves were paced by."""
    _shrink_write_bucket(monkeypatch, burst=6)
    with local_stack(
        _replicated_fleet(),
        start=START,
        azurite=azurite,
        table_prefix=next(_prefixes),
        page_size=2,
    ) as stack:
        stack.host.run_timers(until=SLOT + timedelta(hours=2))
        writes = [r for r in stack.simulator.requests if r.method == "PUT" and r.kind == "write"]
        snapshots = [r for r in writes if "/snapshots/" in r.path and "-westus2" not in r.path]
        copies = [r for r in writes if "-westus2" in r.path]
        jobs = stack.services.catalog.list_replication_jobs()
        assert stack.host.status(TICK).output["completed"] == VMS

    assert [r.status for r in snapshots if r.status == 429] == []
    last_snapshot = max(r.at for r in snapshots)
    assert copies
    assert [r.at for r in copies if r.at < last_snapshot] == []
    assert len([j for j in jobs if j.status is ReplicationStatus.COMPLETED]) == 2 * VMS


def test_a_second_runs_follow_ups_measure_and_retain_after_its_snapshots_within_the_refill(
    azurite: Azurite, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A fleet's second run: each backup's change measure (four access POSTs a disk, writes to
    ARM) and retention (a tag on each expiring snapshot) come after the run's last snapshot
    PUT, each in the write bucket's refill reserved for it (a bucket of 8 refilled 1 a second:
    a measure's 8 POSTs empty it, and a retention's tags sent at once after it were refused),
    so no write of the day is refused; every backup is measured and yesterday's expired.
    Before, each backup measured and retained inside the run's waves."""
    _shrink_write_bucket(monkeypatch, burst=8)
    fleet = _fleet()
    for vm in fleet["subscriptions"][0]["vms"]:
        vm["tags"] = {"backup-policy": "schedule=0 2 * * *;daily=1;weekly=0;monthly=0;verify=off"}
    day_two = SLOT + timedelta(days=1)
    with local_stack(
        fleet, start=START, azurite=azurite, table_prefix=next(_prefixes), page_size=2
    ) as stack:
        stack.host.run_timers(until=day_two + timedelta(hours=1))
        writes = [
            (r.at, r.method, r.path, r.status)
            for r in stack.simulator.requests
            if r.kind == "write" and r.at >= day_two
        ]
        catalog = stack.services.catalog
        backups = [
            b for vm in stack.services.gateway.list_vms() for b in catalog.list_backups(vm.key)
        ]

    snapshots = [w for w in writes if w[1] == "PUT" and "/snapshots/" in w[2]]
    last_snapshot = max(at for at, *_ in snapshots)
    follow_ups = [w for w in writes if w not in snapshots]
    assert len(snapshots) == 2 * VMS
    assert {method for _, method, *_ in follow_ups} == {"POST", "PATCH"}
    assert [w for w in follow_ups if w[0] <= last_snapshot] == []
    assert [w for w in writes if w[3] == 429] == []
    assert sorted((b.slot, b.state, b.changed_bytes is not None) for b in backups) == [
        *[(SLOT, "soft_deleted", False)] * VMS,
        *[(day_two, "completed", True)] * VMS,
    ]


def test_the_catch_up_leaves_a_backups_copy_to_its_follow_up_until_its_reserved_time(
    azurite: Azurite, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The catch-up copy run every minute, while the follow-ups wait for the refill they
    reserved (a bucket of 8 refilled 1 a second): no copy starts before its backup's reserved
    time, none of the day's writes is refused, and every copy completes."""
    _shrink_write_bucket(monkeypatch, burst=8)
    with local_stack(
        _replicated_fleet(),
        start=START,
        azurite=azurite,
        table_prefix=next(_prefixes),
        page_size=2,
        settings={"BACKUPDR_REPLICATE_SCHEDULE": "0 * * * * *"},
    ) as stack:
        stack.host.run_timers(until=SLOT + timedelta(hours=3))
        writes = [r for r in stack.simulator.requests if r.kind == "write" and r.at >= SLOT]
        copies = [r for r in writes if r.method == "PUT" and "-westus2" in r.path]
        catalog = stack.services.catalog
        backups = [
            b for vm in stack.services.gateway.list_vms() for b in catalog.list_backups(vm.key)
        ]
        catch_ups = [s for s in stack.host.instances() if s.name == "replicate_pending"]

    reserved = {
        ref.snapshot_id.rsplit("/", 1)[-1].lower(): b.measure_from
        for b in backups
        for ref in b.snapshots
    }
    assert len(catch_ups) > 30
    assert len(copies) == 2 * VMS
    assert None not in reserved.values()  # every follow-up reserved its copy's writes
    assert [r.status for r in writes if r.status == 429] == []
    early = [
        r.path
        for r in copies
        for name, at in reserved.items()
        if r.path.lower().endswith(f"/{name}-westus2") and at is not None and r.at < at
    ]
    assert early == []
    assert {b.replication_status for b in backups} == {"completed"}
