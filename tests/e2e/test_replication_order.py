"""Replication keeps Azure's copy order under retries, and cannot deadlock.

Azure copies a disk's incremental snapshots one at a time and in creation order ("Copy an
incremental snapshot to a new region", learn.microsoft.com), and the simulator refuses a copy
that breaks that. So a newer backup's copy waits while an older backup of the VM failed and waits
for its retry; an older backup deleted by retention, or given up for good, no longer holds it.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from contextlib import AbstractContextManager
from datetime import UTC, datetime, timedelta
from typing import Any

import azure.functions as func
import pytest

from local.armsim import FaultRule
from local.azurite import Azurite
from local.stack import FLEETS, Stack, local_stack
from shared.activities.replication import MAX_REPLICATION_ATTEMPTS
from shared.domain.models import Backup, BackupState, ReplicationJob, ReplicationStatus
from shared.orchestrations.replication import ORDER_TIMEOUT

START = datetime(2026, 11, 10, tzinfo=UTC)
WEB = "rg-app-eastus~web-01"  # tiny fleet: daily 02:00, replicates to westus2
_prefixes = (f"order{n}" for n in itertools.count())


def _fleet(policy: str | None = None) -> dict[str, Any]:
    """The tiny fleet, with web-01's policy tag replaced when one is given."""
    fleet: dict[str, Any] = json.loads((FLEETS / "tiny.json").read_text())
    if policy is not None:
        web = next(vm for vm in fleet["subscriptions"][0]["vms"] if vm["name"] == "web-01")
        web["tags"]["backup-policy"] = policy
    return fleet


def _stack(azurite: Azurite, policy: str | None = None) -> AbstractContextManager[Stack]:
    fleet = _fleet(policy)
    return local_stack(fleet, start=START, azurite=azurite, table_prefix=next(_prefixes))


@pytest.fixture
def stack(azurite: Azurite) -> Iterator[Stack]:
    with _stack(azurite) as running:
        yield running


def _fails_always(slot: str) -> FaultRule:
    """Every copy of the OS disk snapshot of web-01's backup at `slot` stops half way."""
    return FaultRule(operation="snapshots.copy", resource=f"*web-01-os-{slot}-*", kind="copy-fails")


def _backups(stack: Stack) -> list[Backup]:
    """web-01's backups, oldest first, deleted ones included (the first is the slot before
    START, taken at once)."""
    return stack.services.catalog.list_backups(WEB, include_deleted=True)[::-1]


def _at(stack: Stack, slot: str) -> Backup:
    return next(b for b in _backups(stack) if b.backup_id.startswith(slot))


def _jobs(stack: Stack, backup: Backup) -> list[ReplicationJob]:
    jobs = stack.services.catalog.list_replication_jobs(vm_key=WEB)
    return [job for job in jobs if job.backup_id == backup.backup_id]


def _first_copy(stack: Stack, backup: Backup) -> datetime:
    return min(job.started_at for job in _jobs(stack, backup))


def _attempts(jobs: list[ReplicationJob]) -> int:
    return len({job.id.rsplit("-", 1)[-1] for job in jobs})


def test_a_failed_older_copy_holds_back_the_newer_one_until_its_retry_completes(
    stack: Stack,
) -> None:
    stack.simulator.add_fault(
        FaultRule(
            operation="snapshots.copy",
            resource="*web-01-os-20261110t020000z-*",
            kind="copy-fails",
            count=1,
        )
    )
    stack.host.run_timers(until=START + timedelta(hours=2, minutes=30))
    older = _backups(stack)[-1]
    assert older.replication_status is ReplicationStatus.FAILED
    manual = func.HttpRequest(method="POST", url="http://localhost/api/backups/web-01", body=b"")
    assert stack.host.call_http("start_backup", manual).status_code == 202
    stack.host.run_timers(until=START + timedelta(hours=6))
    newer = _backups(stack)[-1]
    assert newer.manual
    assert newer.replication_status is ReplicationStatus.COMPLETED
    older_jobs = _jobs(stack, older)
    done = [j for j in older_jobs if j.status is ReplicationStatus.COMPLETED]
    assert {j.disk_role for j in done} == {"os", "lun0"}, "the older copy was retried to the end"
    assert _attempts(older_jobs) == 2
    assert all(j.status is ReplicationStatus.COMPLETED for j in _jobs(stack, newer)), "it waited"
    assert _first_copy(stack, newer) >= max(j.completed_at for j in done if j.completed_at)
    assert not [j for j in older_jobs if j.status is ReplicationStatus.IN_PROGRESS], (
        "the failed attempt left no job copying"
    )


def test_an_older_backup_deleted_by_retention_stops_holding_the_newer_one_back(
    azurite: Azurite,
) -> None:
    policy = "schedule=0 2,22 * * *;daily=1;weekly=0;monthly=0;replicate=westus2;verify=off"
    with _stack(azurite, policy) as stack:
        stack.simulator.add_fault(_fails_always("20261110t220000z"))
        stack.host.run_timers(until=START + timedelta(days=1, hours=10))
        older, newer = _at(stack, "20261110t220000z"), _at(stack, "20261111t020000z")
        assert older.state is BackupState.DELETED, "retention deleted it (daily=1)"
        assert _attempts(_jobs(stack, older)) < MAX_REPLICATION_ATTEMPTS, "deleted, not given up"
        assert newer.replication_status is ReplicationStatus.COMPLETED
        # The backup's retention runs as soon as its copy is started, not once it is done: the
        # older one, deleted then, holds nothing back.
        assert _first_copy(stack, newer) < newer.taken_at + ORDER_TIMEOUT, "let go at once"


def test_an_older_backup_given_up_for_good_stops_holding_the_newer_one_back(
    stack: Stack,
) -> None:
    stack.simulator.add_fault(_fails_always("20261110t020000z"))
    stack.host.run_timers(until=START + timedelta(days=1, hours=4))
    older, newer = _at(stack, "20261110t020000z"), _at(stack, "20261111t020000z")
    assert older.replication_status is ReplicationStatus.FAILED
    assert newer.replication_status is ReplicationStatus.COMPLETED
    started = _first_copy(stack, newer)
    failed_before = [j for j in _jobs(stack, older) if j.completed_at and j.completed_at < started]
    assert _attempts(failed_before) >= MAX_REPLICATION_ATTEMPTS
    assert started < newer.taken_at + timedelta(hours=1), "given up: no wait at all"
