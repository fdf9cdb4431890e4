"""A copy is read when it is expected done, not at the PUT's Retry-After and again midway.

CopyStart's Retry-After covers creating the replica; the copy then runs for a fixed part plus a
time per changed GiB. The app learns both from the copies it read midway (their progress dates
their end) and places the next copies' first read just past their expected end. A disk's first
copy moves the whole disk, on a line of its own; while a pair of regions has none, one copy
probes it and the copies started beside it wait for its line.
"""

from __future__ import annotations

import copy
import itertools
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from local.azurite import Azurite
from local.stack import FLEETS, Stack, local_stack
from shared.domain.copytime import MIN_MARGIN_SECONDS
from shared.domain.models import Backup, ReplicationStatus

START = datetime(2026, 11, 10, tzinfo=UTC)
WEB = "rg-app-eastus~web-01"  # tiny fleet: daily 02:00, two disks (0.5 and 4 GiB/day), westus2
DAYS = 6
_prefixes = (f"copyreads{n}" for n in itertools.count())


@pytest.fixture
def stack(azurite: Azurite) -> Iterator[Stack]:
    fleet = json.loads((FLEETS / "tiny.json").read_text())
    with local_stack(fleet, start=START, azurite=azurite, table_prefix=next(_prefixes)) as running:
        running.host.run_timers(until=START + timedelta(days=DAYS, hours=6))
        yield running


def _reads_until_done(stack: Stack, backup: Backup) -> list[int]:
    """Per disk, the GETs of its replica up to the moment the app recorded the copy done."""
    jobs = stack.services.catalog.list_replication_jobs(
        vm_key=backup.vm_key, backup_id=backup.backup_id
    )
    done = max(job.completed_at for job in jobs if job.completed_at is not None)
    requests = stack.simulator.world.requests
    return [
        sum(
            1
            for r in requests
            if r.method == "GET"
            and r.path.lower() == (ref.replica_id or "").lower()
            and r.at <= done
        )
        for ref in backup.snapshots
    ]


def test_once_copies_of_two_sizes_were_read_midway_each_copy_is_read_once(stack: Stack) -> None:
    backups = [
        b
        for b in stack.services.catalog.list_backups(WEB, include_deleted=True)[::-1]
        if b.replication_status is ReplicationStatus.COMPLETED
    ]
    assert len(backups) >= DAYS
    reads = [_reads_until_done(stack, b) for b in backups]
    # The first copy moves whole disks (no change measured, nothing to place a read on); the
    # next ones are read at their Retry-After, then midway, which dates them (the first daily
    # backup comes two hours after the first one, so its change is small: a second size);
    # from then on each copy is read once, when done.
    assert all(n >= 2 for n in reads[0] + reads[1]), reads
    assert all(n == 1 for later in reads[3:] for n in later), reads
    # ...and seen done just after Azure's end, not a poll interval late.
    for backup in backups[3:]:
        _assert_seen_done_on_time(stack, backup)


def _assert_seen_done_on_time(stack: Stack, backup: Backup) -> None:
    """The backup's copies were seen done just after Azure's end, not a poll interval late (the
    simulator's replicas state when their copies ended; a backup is read whole, so at its
    slowest disk)."""
    world = stack.simulator.world
    jobs = stack.services.catalog.list_replication_jobs(
        vm_key=backup.vm_key, backup_id=backup.backup_id
    )
    ended = [world.find(job.target_snapshot) for job in jobs]
    assert all(r is not None and r.copy_done_at is not None for r in ended), jobs
    azure_done = max(r.copy_done_at for r in ended if r is not None and r.copy_done_at)
    seen_done = max(job.completed_at for job in jobs if job.completed_at is not None)
    took = (azure_done - min(job.started_at for job in jobs)).total_seconds()
    late = (seen_done - azure_done).total_seconds()
    assert 0 <= late <= max(MIN_MARGIN_SECONDS, 0.05 * took), (backup.backup_id, late, took)


FLEET_START = datetime(2026, 11, 10, 1, 59, tzinfo=UTC)
COPIES = 6


def _copies_of_web() -> dict[str, Any]:
    """tiny.json's groups and COPIES copies of web-01 (30 and 128 GiB disks, to westus2)."""
    fleet: dict[str, Any] = json.loads((FLEETS / "tiny.json").read_text())
    subscription = fleet["subscriptions"][0]
    web = next(vm for vm in subscription["vms"] if vm["name"] == "web-01")
    subscription["vms"] = [copy.deepcopy(web) | {"name": f"web-{n:02d}"} for n in range(COPIES)]
    return fleet


def test_first_copies_started_together_wait_for_one_probe_and_are_read_once(
    azurite: Azurite,
) -> None:
    """Every disk's first copy at once, with no line between the regions yet: one backup's
    copies probe (read midway, their progress dates them); the others wait for the line their
    sizes sit on and are read once, when done."""
    with local_stack(
        _copies_of_web(), start=FLEET_START, azurite=azurite, table_prefix=next(_prefixes)
    ) as stack:
        stack.host.run_timers(until=FLEET_START + timedelta(hours=2))
        backups = [
            backup
            for n in range(COPIES)
            for backup in stack.services.catalog.list_backups(f"rg-app-eastus~web-{n:02d}")
        ]
        assert len(backups) == COPIES
        assert all(b.replication_status is ReplicationStatus.COMPLETED for b in backups)
        reads = {b.vm_key: _reads_until_done(stack, b) for b in backups}
        probes = [vm for vm, per_disk in reads.items() if max(per_disk) > 1]
        assert len(probes) == 1, reads
        assert all(per_disk == [1, 1] for vm, per_disk in reads.items() if vm not in probes), reads
        for backup in backups:
            if backup.vm_key not in probes:
                _assert_seen_done_on_time(stack, backup)
