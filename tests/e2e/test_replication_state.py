"""Replication state stays true to Azure: a copy whose orchestration ended early (the catalog
down while it polled, a CopyStart refused half way) is finished or redone by the catch-up run,
never stranded and never started twice, and `status` says which backup waits and why."""

from __future__ import annotations

import itertools
import json
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from cli.main import app
from local.armsim import FaultRule
from local.azurite import Azurite
from local.stack import FLEETS, Stack, local_stack
from shared.domain.models import Backup, BackupState, ReplicationStatus
from shared.errors import PermanentError, TransientError
from shared.ports import BackupCatalog, ComputeGateway
from shared.services import Services, install

START = datetime(2026, 11, 10, tzinfo=UTC)
WEB = "rg-app-eastus~web-01"  # tiny fleet: daily 02:00, two disks, replicates to westus2
OUTAGE = timedelta(seconds=90)
_prefixes = (f"repstate{n}" for n in itertools.count())


@pytest.fixture
def stack(azurite: Azurite) -> Iterator[Stack]:
    with local_stack(
        FLEETS / "tiny.json", start=START, azurite=azurite, table_prefix=next(_prefixes)
    ) as running:
        yield running


class _TableOutage:
    """The catalog while Table Storage is unreachable for `OUTAGE` of virtual time, from the
    first call of `trigger` on: every call raises what the adapter raises for a dropped
    connection (`_azure_errors`: ServiceRequestError -> TransientError)."""

    def __init__(self, inner: BackupCatalog, stack: Stack, trigger: str) -> None:
        self._inner, self._clock, self._trigger = inner, stack.clock, trigger
        self.until: datetime | None = None

    def __getattr__(self, name: str) -> Any:
        call: Callable[..., Any] = getattr(self._inner, name)

        def guarded(*args: Any, **kwargs: Any) -> Any:
            now = self._clock.now()
            if self.until is None and name == self._trigger:
                self.until = now + OUTAGE
            if self.until is not None and now < self.until:
                raise TransientError(f"{name}: ServiceRequestError: Connection refused")
            return call(*args, **kwargs)

        return guarded


class _Copies:
    """A gateway that counts CopyStarts per target name, and refuses those whose name
    contains `refuse` (once each) as Azure refuses a copy for good."""

    def __init__(self, inner: ComputeGateway, refuse: str | None = None) -> None:
        self._inner, self._refuse = inner, refuse
        self.started: Counter[str] = Counter()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def begin_copy(self, **kwargs: Any) -> Any:
        if self._refuse and self._refuse in kwargs["name"]:
            self._refuse = None
            raise PermanentError("409 OperationNotAllowed: the copy was refused")
        self.started[kwargs["name"]] += 1
        return self._inner.begin_copy(**kwargs)


def _install(stack: Stack, gateway: Any = None, catalog: Any = None) -> None:
    svc = stack.services
    install(Services(svc.settings, gateway or svc.gateway, catalog or svc.catalog, svc.clock))


def _backups(stack: Stack) -> list[Backup]:
    """web-01's backups, oldest first."""
    return stack.services.catalog.list_backups(WEB)[::-1]


def _replicas(stack: Stack) -> set[str]:
    return {s["id"].lower() for s in stack.simulator.snapshots() if s["location"] == "westus2"}


def test_a_table_outage_while_a_copy_is_polled_is_caught_up_and_frees_later_copies(
    stack: Stack,
) -> None:
    outage = _TableOutage(stack.services.catalog, stack, trigger="get_replication_job")
    copies = _Copies(stack.services.gateway)
    _install(stack, copies, outage)
    stack.host.run_timers(until=START + timedelta(hours=1))
    assert outage.until is not None, "the catalog went down while the copy was polled"
    stack.host.run_timers(until=START + timedelta(days=1, hours=6))
    first, second = _backups(stack)[:2]
    assert first.replication_status is ReplicationStatus.COMPLETED
    assert all(ref.replica_status is ReplicationStatus.COMPLETED for ref in first.snapshots)
    assert second.replication_status is ReplicationStatus.COMPLETED, "later copies proceed"
    assert set(copies.started.values()) == {1}, "no disk's copy was started twice"
    jobs = stack.services.catalog.list_replication_jobs(vm_key=WEB)
    assert not [j for j in jobs if j.status is ReplicationStatus.IN_PROGRESS]


def _run_until_failed(stack: Stack) -> Backup:
    """Run until web-01's first backup's replication fails (before the catch-up retries it)."""
    for minutes in range(5, 60, 5):
        stack.host.run_timers(until=START + timedelta(minutes=minutes))
        backups = _backups(stack)
        if backups and backups[0].replication_status is ReplicationStatus.FAILED:
            return backups[0]
    raise AssertionError("the copy never failed")


def test_a_copy_refused_half_way_leaves_no_uncatalogued_replica_and_is_finished_later(
    stack: Stack,
) -> None:
    copies = _Copies(stack.services.gateway, refuse="-lun0-")
    _install(stack, gateway=copies)
    first = _run_until_failed(stack)
    assert _replicas(stack), "the OS disk's copy was started"
    assert _replicas(stack) <= _catalogued(stack), "every replica in Azure is in the catalog"
    assert [ref.replica_id is not None for ref in first.snapshots] == [True, False]
    jobs = stack.services.catalog.list_replication_jobs(vm_key=WEB)
    assert not [j for j in jobs if j.status is not ReplicationStatus.FAILED], "the attempt ended"
    stack.host.run_timers(until=START + timedelta(hours=3))
    first = _backups(stack)[0]
    assert first.replication_status is ReplicationStatus.COMPLETED
    assert {(ref.replica_id or "").lower() for ref in first.snapshots} <= _replicas(stack)
    assert _replicas(stack) <= _catalogued(stack)
    assert set(copies.started.values()) == {1}, "the OS disk's copy was taken over, not redone"


def _catalogued(stack: Stack) -> set[str]:
    """Every replica id web-01's copy jobs and backups name."""
    jobs = stack.services.catalog.list_replication_jobs(vm_key=WEB)
    refs = [ref for backup in _backups(stack) for ref in backup.snapshots]
    return {j.target_snapshot.lower() for j in jobs} | {
        ref.replica_id.lower() for ref in refs if ref.replica_id
    }


def _cli(stack: Stack, *args: str) -> Result:
    return CliRunner().invoke(app, list(args), env={**stack.cli_env(), "COLUMNS": "250"})


def test_status_names_the_backup_replication_waits_on_and_why(stack: Stack) -> None:
    stack.simulator.add_fault(FaultRule(operation="snapshots.copy", kind="copy-fails"))
    stack.host.run_timers(until=START + timedelta(hours=3))
    oldest = _backups(stack)[0]
    assert oldest.state is BackupState.COMPLETED
    health = json.loads(_cli(stack, "-o", "json", "status").stdout)
    web = next(vm for vm in health["vms"] if vm["vm_key"] == WEB)
    behind = web["replication_behind"]
    assert behind["backup_id"] == oldest.backup_id
    assert behind["replication_status"] == "failed"
    assert datetime.fromisoformat(behind["since"]) > oldest.taken_at
    assert "CopySourceNotFound" in behind["error"], "the copy's own error"
    assert "replica_lag_seconds" in web, "existing fields stay"
    db = next(vm for vm in health["vms"] if vm["vm"] == "db-01")
    assert db["replication_behind"] is None, "a VM that does not replicate waits on nothing"
    table = _cli(stack, "status").stdout
    assert "replication behind" in table
    assert oldest.backup_id in table
    assert behind["error"][:20] in table
