"""Disks Azure cannot snapshot, as the simulator seeds them and refuses them, through the real
azure-mgmt-compute client over HTTPS.

An ephemeral OS disk lives on the host's local storage: the VM lists it with `diffDiskSettings`
and a managed disk id, but no disk answers at that id, so a snapshot of it is refused as a copy
of a missing source. An unmanaged disk is a VHD page blob (`vhd.uri`): there is no disk
resource at all, and a blob URI is no resource id.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError
from azure.mgmt.compute.models import Snapshot

from local.armsim import ArmServer, ArmSimulator
from shared.clock import VirtualClock
from tests.integration.test_armsim_sdk import RG_APP, RG_BACKUP, SUB, compute, doc

pytestmark = pytest.mark.armsim

EPHEMERAL = "stateless-01"
VHD = "legacy-01"


@pytest.fixture
def server() -> Iterator[ArmServer]:
    sim = ArmSimulator(clock=VirtualClock(datetime(2026, 1, 5, tzinfo=UTC)))
    sim.add_subscription(SUB)
    sim.add_group(SUB, RG_APP, "eastus")
    sim.add_group(SUB, RG_BACKUP, "eastus")
    sim.add_vm(
        SUB,
        RG_APP,
        EPHEMERAL,
        size="Standard_D4ds_v5",
        os_disk={"ephemeral": True, "placement": "ResourceDisk"},
        data_disks=[{"lun": 0, "size_gb": 64, "sku": "Premium_LRS"}],
    )
    sim.add_vm(
        SUB,
        RG_APP,
        VHD,
        size="Standard_D2s_v3",
        os_type="Windows",
        os_disk={"unmanaged": True, "size_gb": 127},
        data_disks=[{"lun": 0, "unmanaged": True, "size_gb": 256, "caching": "ReadOnly"}],
    )
    with sim.serve() as running:
        yield running


def _storage(server: ArmServer, name: str) -> dict[str, Any]:
    vm = doc(compute(server).virtual_machines.get(RG_APP, name))
    profile: dict[str, Any] = vm["properties"]["storageProfile"]
    return profile


def _snapshot(server: ArmServer, creation: dict[str, Any]) -> None:
    body = Snapshot(
        {"location": "eastus", "properties": {"incremental": True, "creationData": creation}}
    )
    compute(server).snapshots.begin_create_or_update(RG_BACKUP, "snap", body, polling=False)


def _refused(call: Callable[[], object]) -> tuple[int, str, str]:
    with pytest.raises(HttpResponseError) as raised:
        call()
    assert raised.value.error is not None
    error = raised.value.error
    return raised.value.status_code or 0, error.code or "", error.message or ""


class TestEphemeralOsDisk:
    def test_the_vm_shows_local_diff_disk_settings_read_only_caching_and_a_disk_id(
        self, server: ArmServer
    ) -> None:
        os_disk = _storage(server, EPHEMERAL)["osDisk"]
        assert os_disk["diffDiskSettings"] == {"option": "Local", "placement": "ResourceDisk"}
        assert os_disk["caching"] == "ReadOnly"
        assert os_disk["managedDisk"] == {
            "id": f"/subscriptions/{SUB}/resourceGroups/{RG_APP}/providers/Microsoft.Compute/"
            f"disks/{EPHEMERAL}-osdisk",
            "storageAccountType": "Standard_LRS",
        }

    def test_no_disk_answers_at_its_id(self, server: ArmServer) -> None:
        status, code, _ = _refused(lambda: compute(server).disks.get(RG_APP, f"{EPHEMERAL}-osdisk"))
        assert (status, code) == (404, "ResourceNotFound")
        assert [d["name"] for d in server.sim.disks()] == [f"{EPHEMERAL}-data0"]

    def test_a_snapshot_of_it_is_refused_as_azure_refuses_a_missing_source(
        self, server: ArmServer
    ) -> None:
        os_disk = _storage(server, EPHEMERAL)["osDisk"]
        creation = {"createOption": "Copy", "sourceResourceId": os_disk["managedDisk"]["id"]}
        refused = _refused(lambda: _snapshot(server, creation))
        assert refused == (404, "NotFound", f"Resource {EPHEMERAL}-osdisk is not found.")
        assert server.sim.snapshots() == []

    def test_its_managed_data_disk_can_still_be_snapshotted(self, server: ArmServer) -> None:
        data = _storage(server, EPHEMERAL)["dataDisks"][0]
        assert (data["caching"], data["managedDisk"]["storageAccountType"]) == (
            "None",
            "Premium_LRS",
        )
        _snapshot(server, {"createOption": "Copy", "sourceResourceId": data["managedDisk"]["id"]})
        assert len(server.sim.snapshots()) == 1


class TestUnmanagedDisks:
    def test_the_vm_shows_vhd_uris_and_no_managed_disk(self, server: ArmServer) -> None:
        storage = _storage(server, VHD)
        os_disk, data = storage["osDisk"], storage["dataDisks"][0]
        for entry in (os_disk, data):
            assert "managedDisk" not in entry
            assert entry["vhd"]["uri"].startswith("https://rgappeastusvhds.blob.core.windows.net/")
        assert os_disk["vhd"]["uri"].endswith(f"/vhds/{VHD}-osdisk.vhd")
        assert (os_disk["caching"], os_disk["osType"], os_disk["diskSizeGB"]) == (
            "ReadWrite",
            "Windows",
            127,
        )
        assert (data["lun"], data["caching"], data["diskSizeGB"]) == (0, "ReadOnly", 256)
        assert not [d for d in server.sim.disks() if VHD in d["name"]]

    def test_a_snapshot_naming_its_blob_as_source_is_refused(self, server: ArmServer) -> None:
        uri = _storage(server, VHD)["osDisk"]["vhd"]["uri"]
        status, code, _ = _refused(
            lambda: _snapshot(server, {"createOption": "Copy", "sourceResourceId": uri})
        )
        assert (status, code) == (400, "LinkedInvalidPropertyId")
        # A copy needs a managed source; importing the blob (a full copy, with the storage
        # account's id) is not modelled, so it is refused too (stricter than Azure).
        for creation in (
            {"createOption": "Copy", "sourceUri": uri},
            {"createOption": "Import", "sourceUri": uri},
        ):
            status, code, _ = _refused(lambda c=creation: _snapshot(server, c))  # type: ignore[misc]
            assert (status, code) == (400, "InvalidParameter")
        assert server.sim.snapshots() == []


@pytest.mark.parametrize(
    ("os_disk", "data_disks", "message"),
    [
        ({"unmanaged": True}, [{"lun": 0}], "all managed or all unmanaged"),
        ({}, [{"lun": 0, "unmanaged": True}], "all managed or all unmanaged"),
        ({"ephemeral": True}, [{"lun": 0, "unmanaged": True}], "all managed or all unmanaged"),
        ({"ephemeral": True, "unmanaged": True}, [], "all managed or all unmanaged"),
        ({}, [{"lun": 0, "ephemeral": True}], "only the OS disk can be ephemeral"),
        ({"ephemeral": True, "caching": "ReadWrite"}, [], "caches ReadOnly"),
        ({"placement": "CacheDisk"}, [], "'placement' is for an ephemeral OS disk"),
        ({"ephemeral": True, "placement": "Tape"}, [], "unknown placement"),
        ({"caching": "WriteBack"}, [], "caching must be None, ReadOnly or ReadWrite"),
        ({"ephemeral_os": True}, [], "unknown keys ephemeral_os"),
    ],
)
def test_disk_specs_azure_would_refuse_are_refused(
    os_disk: dict[str, Any], data_disks: list[dict[str, Any]], message: str
) -> None:
    sim = ArmSimulator(clock=VirtualClock(datetime(2026, 1, 5, tzinfo=UTC)))
    sim.add_subscription(SUB)
    sim.add_group(SUB, RG_APP, "eastus")
    with pytest.raises(ValueError, match=message):
        sim.add_vm(SUB, RG_APP, "vm-01", os_disk=os_disk, data_disks=data_disks)
