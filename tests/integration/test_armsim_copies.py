"""CopyStart's rules, each sent through the real azure-mgmt-compute client over HTTPS.

The rules are Azure's ("Copy an incremental snapshot to a new region", Restrictions,
https://learn.microsoft.com/en-us/azure/virtual-machines/disks-copy-incremental-snapshot-across-regions);
what Azure refuses is refused with the simulator's answer for it (see local/armsim/copystart.py
for the codes), and what Azure allows goes through.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError
from azure.mgmt.compute import ComputeManagementClient
from azure.mgmt.compute.models import Disk, Snapshot

from local.armsim import ArmServer, ArmSimulator
from shared.clock import VirtualClock
from tests.integration.test_armsim_sdk import RG_APP, RG_BACKUP, SUB, compute, doc

pytestmark = pytest.mark.armsim

WEST = "rg-backups-westus2"


def _disk(name: str) -> str:
    return f"/subscriptions/{SUB}/resourceGroups/{RG_APP}/providers/Microsoft.Compute/disks/{name}"


def _id(group: str, name: str) -> str:
    return (
        f"/subscriptions/{SUB}/resourceGroups/{group}/providers/Microsoft.Compute/snapshots/{name}"
    )


def _take(server: ArmServer, name: str, disk: str, incremental: bool = True) -> str:
    """A snapshot of an app disk, done on the virtual clock; returns its id."""
    body = {"createOption": "Copy", "sourceResourceId": _disk(disk)}
    snapshot = Snapshot(
        {"location": "eastus", "properties": {"incremental": incremental, "creationData": body}}
    )
    compute(server).snapshots.begin_create_or_update(RG_BACKUP, name, snapshot, polling=False)
    server.sim.clock.advance(server.sim.durations.snapshot_seconds)
    return _id(RG_BACKUP, name)


def _copy(
    client: ComputeManagementClient,
    source: str,
    name: str,
    *,
    group: str = WEST,
    region: str = "westus2",
    incremental: bool | None = True,
) -> None:
    properties: dict[str, Any] = {
        "creationData": {"createOption": "CopyStart", "sourceResourceId": source}
    }
    if incremental is not None:
        properties["incremental"] = incremental
    body = Snapshot({"location": region, "properties": properties})
    client.snapshots.begin_create_or_update(group, name, body, polling=False)


def _refused(call: Callable[[], object]) -> tuple[int, str]:
    with pytest.raises(HttpResponseError) as raised:
        call()
    assert raised.value.error is not None
    return raised.value.status_code or 0, raised.value.error.code or ""


def _replica(server: ArmServer, name: str, group: str = WEST) -> dict[str, Any]:
    properties: dict[str, Any] = doc(compute(server).snapshots.get(group, name))["properties"]
    return properties


def _copy_seconds(server: ArmServer, gib: float) -> float:
    return server.sim.durations.snapshot_seconds + server.sim.durations.copy_seconds(gib)


class TestIncrementalOnly:
    """CopyStart copies an incremental snapshot into an incremental snapshot, nothing else."""

    def test_a_full_snapshot_is_refused_as_a_source(self, armsim: ArmServer) -> None:
        full = _take(armsim, "full", "web-01-osdisk", incremental=False)
        client = compute(armsim)
        assert _refused(lambda: _copy(client, full, "replica")) == (400, "OperationNotAllowed")
        assert [s["name"] for s in armsim.sim.snapshots()] == ["full"]

    def test_a_full_target_is_refused(self, armsim: ArmServer) -> None:
        source = _take(armsim, "src", "web-01-osdisk")
        client = compute(armsim)
        refused = _refused(lambda: _copy(client, source, "replica", incremental=False))
        assert refused == (400, "OperationNotAllowed")

    def test_a_copy_that_does_not_say_is_incremental(self, armsim: ArmServer) -> None:
        """Azure's own example sends no `incremental` with CopyStart."""
        source = _take(armsim, "src", "web-01-osdisk")
        _copy(compute(armsim), source, "replica", incremental=None)
        assert _replica(armsim, "replica")["incremental"] is True


class TestOneCopyPerDiskAtATime:
    """Azure: "You can only copy one incremental snapshot of a particular disk at a time"."""

    def test_a_second_snapshot_of_the_disk_waits_for_the_first_copy(
        self, armsim: ArmServer
    ) -> None:
        first = _take(armsim, "os-1", "web-01-osdisk")
        armsim.sim.clock.advance(3600)
        second = _take(armsim, "os-2", "web-01-osdisk")
        client = compute(armsim)
        _copy(client, first, "os-1-west")
        refused = _refused(lambda: _copy(client, second, "os-2-west"))
        assert refused == (409, "OperationNotAllowed")
        armsim.sim.clock.advance(_copy_seconds(armsim, 30.0))
        assert _replica(armsim, "os-1-west")["completionPercent"] == 100.0
        _copy(client, second, "os-2-west")
        assert _replica(armsim, "os-2-west")["completionPercent"] < 100

    def test_another_disks_snapshot_copies_meanwhile(self, armsim: ArmServer) -> None:
        os_disk = _take(armsim, "os-1", "web-01-osdisk")
        data_disk = _take(armsim, "data-1", "web-01-data0")
        client = compute(armsim)
        _copy(client, os_disk, "os-1-west")
        _copy(client, data_disk, "data-1-west")
        names = {s["name"] for s in armsim.sim.snapshots()}
        assert {"os-1-west", "data-1-west"} <= names


class TestCreationOrder:
    """Azure: "Snapshots must be copied in the order they were created"; a skip is allowed."""

    def test_an_older_snapshot_is_refused_once_a_newer_one_is_copied(
        self, armsim: ArmServer
    ) -> None:
        older = _take(armsim, "os-1", "web-01-osdisk")
        armsim.sim.clock.advance(3600)
        newer = _take(armsim, "os-2", "web-01-osdisk")
        client = compute(armsim)
        _copy(client, newer, "os-2-west")  # a skip: os-1 was never copied
        armsim.sim.clock.advance(_copy_seconds(armsim, 30.0))
        assert _replica(armsim, "os-2-west")["completionPercent"] == 100.0
        assert _refused(lambda: _copy(client, older, "os-1-west")) == (409, "OperationNotAllowed")

    def test_a_failed_newer_copy_does_not_count(self, armsim: ArmServer) -> None:
        older = _take(armsim, "os-1", "web-01-osdisk")
        armsim.sim.clock.advance(3600)
        newer = _take(armsim, "os-2", "web-01-osdisk")
        client = compute(armsim)
        _copy(client, newer, "os-2-west")
        client.snapshots.begin_delete(RG_BACKUP, "os-2", polling=False)
        armsim.sim.clock.advance(60)
        assert "copyCompletionError" in _replica(armsim, "os-2-west")
        _copy(client, older, "os-1-west")
        assert _replica(armsim, "os-1-west")["completionPercent"] < 100


def test_the_101st_parallel_copy_into_a_region_is_refused() -> None:
    """Azure: "You can copy 100 incremental snapshots in parallel at the same time per
    subscription per region". One disk per VM, so only that limit can refuse."""
    fleet = {
        "subscriptions": [
            {
                "id": SUB,
                "resource_groups": [
                    {"name": RG_APP, "region": "eastus"},
                    {"name": RG_BACKUP, "region": "eastus"},
                    {"name": WEST, "region": "westus2"},
                ],
                "vms": [{"name": f"vm-{i:03d}", "resource_group": RG_APP} for i in range(101)],
            }
        ]
    }
    clock = VirtualClock(datetime(2026, 1, 5, tzinfo=UTC))
    sim = ArmSimulator(clock=clock, fleet=fleet, throttle=False)
    with sim.serve() as server:
        sources = [_take(server, f"vm-{i:03d}-os", f"vm-{i:03d}-osdisk") for i in range(101)]
        client = compute(server)
        for i, source in enumerate(sources[:100]):
            _copy(client, source, f"vm-{i:03d}-west")
        refused = _refused(lambda: _copy(client, sources[100], "vm-100-west"))
        assert refused == (409, "OperationNotAllowed")
        _copy(client, sources[100], "vm-100-east", group=RG_BACKUP, region="eastus")
        server.sim.clock.advance(_copy_seconds(server, 30.0))
        _copy(client, sources[100], "vm-100-west")


class TestSourceDeletedWhileCopying:
    """Azure: "Don't delete your source snapshot while the target snapshot is being copied"."""

    def test_the_copy_stops_where_it_was_and_fails_with_copy_source_not_found(
        self, armsim: ArmServer
    ) -> None:
        source = _take(armsim, "src", "web-01-osdisk")
        client = compute(armsim)
        _copy(client, source, "replica")
        armsim.sim.clock.advance(_copy_seconds(armsim, 30.0) / 4)
        client.snapshots.begin_delete(RG_BACKUP, "src", polling=False)
        at_delete = _replica(armsim, "replica")["completionPercent"]
        armsim.sim.clock.advance(_copy_seconds(armsim, 30.0))
        replica = _replica(armsim, "replica")
        assert replica["copyCompletionError"]["errorCode"] == "CopySourceNotFound"
        assert replica["completionPercent"] == at_delete < 100
        assert replica["snapshotAccessState"] == "Pending"
        disk = Disk(
            {
                "location": "westus2",
                "properties": {
                    "creationData": {
                        "createOption": "Copy",
                        "sourceResourceId": _id(WEST, "replica"),
                    }
                },
            }
        )
        refused = _refused(
            lambda: client.disks.begin_create_or_update(WEST, "restored", disk, polling=False)
        )
        assert refused == (409, "Conflict")

    def test_a_source_deleted_after_the_copy_finished_leaves_it_usable(
        self, armsim: ArmServer
    ) -> None:
        source = _take(armsim, "src", "web-01-osdisk")
        client = compute(armsim)
        _copy(client, source, "replica")
        armsim.sim.clock.advance(_copy_seconds(armsim, 30.0))
        client.snapshots.begin_delete(RG_BACKUP, "src", polling=False)
        armsim.sim.clock.advance(60)
        replica = _replica(armsim, "replica")
        assert "copyCompletionError" not in replica
        assert (replica["completionPercent"], replica["snapshotAccessState"]) == (
            100.0,
            "Available",
        )


def test_a_copy_within_the_region_is_allowed(armsim: ArmServer) -> None:
    """CopyStart works "when source and target regions are different as well as when they are
    the same" (Azure SDK for Java, Snapshot.DefinitionStages.WithCopyStart)."""
    source = _take(armsim, "src", "web-01-osdisk")
    _copy(compute(armsim), source, "same", group=RG_BACKUP, region="eastus")
    armsim.sim.clock.advance(_copy_seconds(armsim, 30.0))
    same = _replica(armsim, "same", group=RG_BACKUP)
    assert (same["completionPercent"], same["snapshotAccessState"]) == (100.0, "Available")
