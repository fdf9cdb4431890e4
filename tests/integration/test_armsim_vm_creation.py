"""VM creation rules in the simulator, through the real azure-mgmt clients over HTTPS.

Each test sends a request Azure refuses (or fails) and checks Azure's answer: status, code and
message shape. Security type and Hyper-V generation travel from a VM's OS disk to its snapshots,
their cross-region copies and the disks restored from them; a VM attaching such a disk must match
it; sizes come from the Resource SKUs list, with per-region restrictions, and capacity faults.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError
from azure.mgmt.compute import ComputeManagementClient
from azure.mgmt.compute.models import Disk, Snapshot, VirtualMachine
from azure.mgmt.network import NetworkManagementClient
from azure.mgmt.network.models import NetworkInterface

from local.armsim import ArmServer, ArmSimulator, FaultRule, FleetError
from shared.clock import VirtualClock
from tests.integration.owner import OwnerToken, sdk_options

pytestmark = pytest.mark.armsim

SUB = "00000000-0000-0000-0000-000000000001"
APP = "rg-app-eastus"
BACKUPS = "rg-backups-eastus"
REPLICAS = "rg-backups-westus2"
DR = "rg-backupdr-drtest-eastus"
DR_WEST = "rg-backupdr-drtest-westus2"
TINY = Path(__file__).resolve().parents[2] / "local" / "fleets" / "tiny.json"
INCOMPATIBLE = "Security type of VM is not compatible with the security type of attached OS Disk."


@pytest.fixture
def served() -> Iterator[ArmServer]:
    """The tiny fleet plus a Trusted Launch VM (tl-01) and a generation 1 VM (gen1-01)."""
    sim = ArmSimulator(clock=VirtualClock(datetime(2026, 1, 5, tzinfo=UTC)), fleet=TINY)
    sim.add_vm(SUB, APP, "tl-01", security_type="TrustedLaunch", secure_boot=True, vtpm=True)
    sim.add_vm(SUB, APP, "gen1-01", size="Standard_A2_v2", hyper_v_generation="V1")
    with sim.serve() as server:
        yield server


@pytest.fixture
def sim(served: ArmServer) -> ArmSimulator:
    return served.sim


@pytest.fixture
def client(served: ArmServer) -> ComputeManagementClient:
    return ComputeManagementClient(OwnerToken(), SUB, **sdk_options(served))


def doc(model: Any) -> dict[str, Any]:
    data: dict[str, Any] = model.as_dict()
    return data


def _disk_id(group: str, name: str) -> str:
    return f"/subscriptions/{SUB}/resourceGroups/{group}/providers/Microsoft.Compute/disks/{name}"


def _snapshot(client: ComputeManagementClient, sim: ArmSimulator, vm: str) -> str:
    """A completed incremental snapshot of a VM's OS disk, in the eastus backup group."""
    body = Snapshot(
        {
            "location": "eastus",
            "properties": {
                "incremental": True,
                "creationData": {
                    "createOption": "Copy",
                    "sourceResourceId": _disk_id(APP, f"{vm}-osdisk"),
                },
            },
        }
    )
    client.snapshots.begin_create_or_update(BACKUPS, f"snap-{vm}", body, polling=False)
    sim.advance(sim.durations.snapshot_seconds)
    return str(doc(client.snapshots.get(BACKUPS, f"snap-{vm}"))["id"])


def _disk_from(
    client: ComputeManagementClient,
    sim: ArmSimulator,
    source: str,
    name: str,
    group: str = DR,
    region: str = "eastus",
    **properties: Any,
) -> str:
    body = Disk(
        {
            "location": region,
            "properties": {
                "creationData": {"createOption": "Copy", "sourceResourceId": source},
                **properties,
            },
        }
    )
    client.disks.begin_create_or_update(group, name, body, polling=False)
    sim.advance(sim.durations.disk_seconds)
    return _disk_id(group, name)


def _nic(served: ArmServer, name: str, group: str = DR, region: str = "eastus") -> str:
    network = NetworkManagementClient(OwnerToken(), SUB, **sdk_options(served))
    subnet = network.subnets.get(group, "vnet-backupdr-drtest", "snet-restore")
    ip = {"name": "ip1", "properties": {"subnet": {"id": doc(subnet)["id"]}}}
    network.network_interfaces.begin_create_or_update(
        group,
        name,
        NetworkInterface({"location": region, "properties": {"ipConfigurations": [ip]}}),
        polling=False,
    )
    served.sim.advance(60)
    return str(doc(network.network_interfaces.get(group, name))["id"])


def _vm_body(
    disk_id: str,
    nic_id: str,
    size: str = "Standard_D2s_v5",
    security: dict[str, Any] | None = None,
    zones: list[str] | None = None,
    region: str = "eastus",
) -> VirtualMachine:
    properties: dict[str, Any] = {
        "hardwareProfile": {"vmSize": size},
        "storageProfile": {
            "osDisk": {"createOption": "Attach", "osType": "Linux", "managedDisk": {"id": disk_id}}
        },
        "networkProfile": {"networkInterfaces": [{"id": nic_id}]},
    }
    if security is not None:
        properties["securityProfile"] = security
    body: dict[str, Any] = {"location": region, "properties": properties}
    if zones:
        body["zones"] = zones
    return VirtualMachine(body)


def _create(
    client: ComputeManagementClient, sim: ArmSimulator, name: str, body: VirtualMachine
) -> None:
    """A VM PUT Azure accepts, and its create waited out on the virtual clock."""
    client.virtual_machines.begin_create_or_update(DR, name, body, polling=False)
    sim.advance(sim.durations.vm_create_seconds)
    vm = doc(client.virtual_machines.get(DR, name))
    assert vm["properties"]["provisioningState"] == "Succeeded"


TRUSTED = {
    "securityType": "TrustedLaunch",
    "uefiSettings": {"secureBootEnabled": True, "vTpmEnabled": True},
}


def _refusal(raised: pytest.ExceptionInfo[HttpResponseError]) -> tuple[int, str, str]:
    error = raised.value.response.json()["error"]  # type: ignore[union-attr]
    return raised.value.status_code or 0, str(error["code"]), str(error["message"])


class TestSecurityTypeAndGeneration:
    """Trusted Launch and the generation follow the OS disk; a VM must match its disk."""

    def test_a_trusted_launch_vm_shows_its_profile_and_its_os_disk_the_type_and_generation(
        self, client: ComputeManagementClient
    ) -> None:
        vm = doc(client.virtual_machines.get(APP, "tl-01"))
        assert vm["properties"]["securityProfile"] == TRUSTED
        disk = doc(client.disks.get(APP, "tl-01-osdisk"))["properties"]
        assert (disk["securityProfile"], disk["hyperVGeneration"]) == (
            {"securityType": "TrustedLaunch"},
            "V2",
        )
        standard = doc(client.virtual_machines.get(APP, "web-01"))["properties"]
        assert standard["securityProfile"] == {"securityType": "Standard"}
        view = doc(client.virtual_machines.instance_view(APP, "gen1-01"))
        assert view["hyperVGeneration"] == "V1"

    def test_snapshots_copies_and_restored_disks_inherit_the_type_and_generation(
        self, client: ComputeManagementClient, sim: ArmSimulator
    ) -> None:
        snapshot = _snapshot(client, sim, "tl-01")
        copy = Snapshot(
            {
                "location": "westus2",
                "properties": {
                    "incremental": True,
                    "creationData": {"createOption": "CopyStart", "sourceResourceId": snapshot},
                },
            }
        )
        client.snapshots.begin_create_or_update(REPLICAS, "replica", copy, polling=False)
        sim.advance(3600)
        replica = doc(client.snapshots.get(REPLICAS, "replica"))
        disk = _disk_from(client, sim, replica["id"], "restored", DR_WEST, "westus2")
        for found in (
            doc(client.snapshots.get(BACKUPS, "snap-tl-01")),
            replica,
            doc(client.disks.get(DR_WEST, "restored")),
        ):
            properties = found["properties"]
            assert properties["securityProfile"] == {"securityType": "TrustedLaunch"}
            assert (properties["hyperVGeneration"], properties["osType"]) == ("V2", "Linux")
        assert disk.endswith("/disks/restored")

    def test_a_vm_matching_its_trusted_launch_disk_is_created_with_generation_2(
        self, client: ComputeManagementClient, sim: ArmSimulator, served: ArmServer
    ) -> None:
        disk = _disk_from(client, sim, _snapshot(client, sim, "tl-01"), "tl-os")
        body = _vm_body(disk, _nic(served, "tl-nic"), security=TRUSTED)
        _create(client, sim, "tl-vm", body)
        vm = doc(client.virtual_machines.get(DR, "tl-vm", expand="instanceView"))
        assert vm["properties"]["securityProfile"] == TRUSTED
        assert vm["properties"]["instanceView"]["hyperVGeneration"] == "V2"

    @pytest.mark.parametrize(
        ("source", "security"),
        [
            ("tl-01", None),
            ("tl-01", {"securityType": "Standard"}),
            ("tl-01", {"uefiSettings": {"secureBootEnabled": True, "vTpmEnabled": True}}),
            ("web-01", TRUSTED),
        ],
        ids=["tl disk, no profile", "tl disk, Standard", "tl disk, uefi only", "std disk, tl"],
    )
    def test_a_vm_whose_security_type_differs_from_its_os_disks_is_refused(
        self,
        client: ComputeManagementClient,
        sim: ArmSimulator,
        served: ArmServer,
        source: str,
        security: dict[str, Any] | None,
    ) -> None:
        disk = _disk_from(client, sim, _snapshot(client, sim, source), "os")
        body = _vm_body(disk, _nic(served, "nic"), security=security)
        with pytest.raises(HttpResponseError) as raised:
            client.virtual_machines.begin_create_or_update(DR, "vm", body, polling=False)
        assert _refusal(raised) == (400, "BadRequest", INCOMPATIBLE)
        assert doc(client.disks.get(DR, "os")).get("managedBy") is None, "nothing attached"

    def test_uefi_settings_on_a_standard_vm_are_refused(
        self, client: ComputeManagementClient, sim: ArmSimulator, served: ArmServer
    ) -> None:
        disk = _disk_from(client, sim, _snapshot(client, sim, "web-01"), "os")
        security = {"securityType": "Standard", "uefiSettings": {"secureBootEnabled": True}}
        body = _vm_body(disk, _nic(served, "nic"), security=security)
        with pytest.raises(HttpResponseError) as raised:
            client.virtual_machines.begin_create_or_update(DR, "vm", body, polling=False)
        assert _refusal(raised) == (
            400,
            "BadRequest",
            "Use of UEFI settings is not supported when security type is 'Standard'.",
        )

    def test_a_generation_2_disk_on_a_generation_1_only_size_is_refused(
        self, client: ComputeManagementClient, sim: ArmSimulator, served: ArmServer
    ) -> None:
        disk = _disk_from(client, sim, _snapshot(client, sim, "web-01"), "os")
        body = _vm_body(disk, _nic(served, "nic"), size="Standard_A2_v2")
        with pytest.raises(HttpResponseError) as raised:
            client.virtual_machines.begin_create_or_update(DR, "vm", body, polling=False)
        status, code, message = _refusal(raised)
        assert (status, code) == (400, "BadRequest")
        assert message.startswith(
            "The selected VM size 'Standard_A2_v2' cannot boot Hypervisor Generation '2'. If "
            "this was a Create operation please check that the Hypervisor Generation of the "
            "Image matches the Hypervisor Generation of the selected VM Size."
        )
        assert message.endswith("see https://aka.ms/azuregen2vm")

    def test_trusted_launch_on_a_size_without_it_is_refused(
        self, client: ComputeManagementClient, sim: ArmSimulator, served: ArmServer
    ) -> None:
        disk = _disk_from(client, sim, _snapshot(client, sim, "tl-01"), "os")
        body = _vm_body(disk, _nic(served, "nic"), size="Standard_A2_v2", security=TRUSTED)
        with pytest.raises(HttpResponseError) as raised:
            client.virtual_machines.begin_create_or_update(DR, "vm", body, polling=False)
        assert _refusal(raised) == (
            400,
            "BadRequest",
            "The VM size 'Standard_A2_v2' is not supported for creation of VMs and Virtual "
            "Machine Scale Set with 'TrustedLaunch' security type. For more information, see "
            "https://aka.ms/TrustedLaunch-FAQ",
        )

    def test_a_generation_1_disk_boots_on_a_generation_1_size(
        self, client: ComputeManagementClient, sim: ArmSimulator, served: ArmServer
    ) -> None:
        disk = _disk_from(client, sim, _snapshot(client, sim, "gen1-01"), "os")
        body = _vm_body(disk, _nic(served, "nic"), size="Standard_A2_v2")
        _create(client, sim, "vm", body)
        assert doc(client.virtual_machines.instance_view(DR, "vm"))["hyperVGeneration"] == "V1"

    def test_a_copy_that_sets_a_security_type_is_refused(
        self, client: ComputeManagementClient, sim: ArmSimulator
    ) -> None:
        snapshot = _snapshot(client, sim, "web-01")
        with pytest.raises(HttpResponseError) as raised:
            _disk_from(
                client, sim, snapshot, "os", securityProfile={"securityType": "TrustedLaunch"}
            )
        assert _refusal(raised) == (
            400,
            "BadRequest",
            "Security Type 'TrustedLaunch' is not supported for CreateOption 'Copy'.",
        )

    def test_a_size_that_does_not_exist_is_refused(
        self, client: ComputeManagementClient, sim: ArmSimulator, served: ArmServer
    ) -> None:
        disk = _disk_from(client, sim, _snapshot(client, sim, "web-01"), "os")
        body = _vm_body(disk, _nic(served, "nic"), size="Standard_Q9_v9")
        with pytest.raises(HttpResponseError) as raised:
            client.virtual_machines.begin_create_or_update(DR, "vm", body, polling=False)
        status, code, message = _refusal(raised)
        assert (status, code) == (400, "InvalidParameter")
        assert message.startswith(
            "The value Standard_Q9_v9 provided for the VM size is not valid. The valid sizes in "
            "the current region are: "
        )

    def test_a_regional_disk_on_a_zonal_vm_is_refused(
        self, client: ComputeManagementClient, sim: ArmSimulator, served: ArmServer
    ) -> None:
        disk = _disk_from(client, sim, _snapshot(client, sim, "web-01"), "os")
        body = _vm_body(disk, _nic(served, "nic"), zones=["2"])
        with pytest.raises(HttpResponseError) as raised:
            client.virtual_machines.begin_create_or_update(DR, "vm", body, polling=False)
        assert _refusal(raised) == (
            400,
            "BadRequest",
            f"Disk {disk} cannot be attached to the VM because it is not in zone '2'.",
        )

    @pytest.mark.parametrize(
        ("vm", "generation", "security"),
        [("x", "V1", "TrustedLaunch"), ("x", "V2", "ConfidentialVM"), ("x", "V3", "Standard")],
        ids=["tl-on-v1", "cvm-size", "bad-generation"],
    )
    def test_a_fleet_vm_azure_could_not_have_is_refused_at_seed_time(
        self, sim: ArmSimulator, vm: str, generation: str, security: str
    ) -> None:
        fleet = {
            "subscriptions": [
                {
                    "id": SUB,
                    "resource_groups": [{"name": APP, "region": "eastus"}],
                    "vms": [
                        {
                            "name": vm,
                            "resource_group": APP,
                            "hyper_v_generation": generation,
                            "security_type": security,
                        }
                    ],
                }
            ]
        }
        with pytest.raises(FleetError, match=r"vms\[0\] \(x\)"):
            ArmSimulator(fleet=fleet)


class TestSizesAndCapacity:
    """The Resource SKUs list, its restrictions, and the capacity refusals of a VM create."""

    def test_the_skus_list_for_a_region_shows_sizes_with_capabilities_and_restrictions(
        self, client: ComputeManagementClient, sim: ArmSimulator
    ) -> None:
        sim.restrict_size(SUB, "Standard_D2s_v5", "westus2")
        sim.restrict_size(SUB, "Standard_E4s_v5", "westus2", zones=["1", "3"])
        listed = [doc(s) for s in client.resource_skus.list(filter="location eq 'westus2'")]
        vms = {s["name"]: s for s in listed if s["resourceType"] == "virtualMachines"}
        assert {s["locations"][0] for s in listed} == {"westus2"}
        d2 = vms["Standard_D2s_v5"]
        assert d2["restrictions"] == [
            {
                "type": "Location",
                "values": ["westus2"],
                "restrictionInfo": {"locations": ["westus2"]},
                "reasonCode": "NotAvailableForSubscription",
            }
        ]
        assert vms["Standard_E4s_v5"]["restrictions"][0]["restrictionInfo"]["zones"] == ["1", "3"]
        capabilities = {c["name"]: c["value"] for c in vms["Standard_A2_v2"]["capabilities"]}
        assert capabilities["HyperVGenerations"] == "V1"
        assert capabilities["TrustedLaunchDisabled"] == "True"
        assert vms["Standard_D2s_v5"]["family"] == "standardDSv5Family"
        east = client.resource_skus.list(filter="location eq 'eastus'")
        assert all(not doc(s)["restrictions"] for s in east)

    def test_a_filter_other_than_location_is_refused(self, client: ComputeManagementClient) -> None:
        with pytest.raises(HttpResponseError) as raised:
            list(client.resource_skus.list(filter="name eq 'Standard_D2s_v5'"))
        assert raised.value.status_code == 400

    def test_a_vm_of_a_size_restricted_in_its_region_is_refused_and_nothing_is_attached(
        self, client: ComputeManagementClient, sim: ArmSimulator, served: ArmServer
    ) -> None:
        sim.restrict_size(SUB, "Standard_D2s_v5", "eastus")
        disk = _disk_from(client, sim, _snapshot(client, sim, "web-01"), "os")
        body = _vm_body(disk, _nic(served, "nic"))
        with pytest.raises(HttpResponseError) as raised:
            client.virtual_machines.begin_create_or_update(DR, "vm", body, polling=False)
        assert _refusal(raised) == (
            409,
            "SkuNotAvailable",
            "The requested VM size for resource 'Following SKUs have failed for Capacity "
            "Restrictions: Standard_D2s_v5' is currently not available in location 'eastus'. "
            "Please try another size or deploy to a different location or different zone. See "
            "https://aka.ms/azureskunotavailable for details.",
        )
        assert doc(client.disks.get(DR, "os")).get("managedBy") is None
        assert [v for v in sim.vms() if v["name"] == "vm"] == []

    def test_a_zone_restriction_refuses_a_vm_in_that_zone_but_not_a_regional_one(
        self, client: ComputeManagementClient, sim: ArmSimulator, served: ArmServer
    ) -> None:
        sim.restrict_size(SUB, "Standard_D2s_v5", "eastus", zones=["1"])
        snapshot = _snapshot(client, sim, "web-01")
        zonal = Disk(
            {
                "location": "eastus",
                "zones": ["1"],
                "properties": {
                    "creationData": {"createOption": "Copy", "sourceResourceId": snapshot}
                },
            }
        )
        client.disks.begin_create_or_update(DR, "zonal", zonal, polling=False)
        regional = _disk_from(client, sim, snapshot, "regional")
        body = _vm_body(_disk_id(DR, "zonal"), _nic(served, "nic-1"), zones=["1"])
        with pytest.raises(HttpResponseError) as raised:
            client.virtual_machines.begin_create_or_update(DR, "zonal", body, polling=False)
        assert _refusal(raised)[:2] == (409, "SkuNotAvailable")
        body = _vm_body(regional, _nic(served, "nic-2"))
        _create(client, sim, "regional", body)

    @pytest.mark.parametrize("kind", ["sku-not-available", "quota-exceeded"])
    def test_an_injected_capacity_refusal_answers_409_with_azures_code(
        self, client: ComputeManagementClient, sim: ArmSimulator, served: ArmServer, kind: str
    ) -> None:
        disk = _disk_from(client, sim, _snapshot(client, sim, "web-01"), "os")
        sim.add_fault(FaultRule(operation="vms.create", kind=kind, count=1))
        body = _vm_body(disk, _nic(served, "nic"))
        with pytest.raises(HttpResponseError) as raised:
            client.virtual_machines.begin_create_or_update(DR, "vm", body, polling=False)
        status, code, message = _refusal(raised)
        if kind == "quota-exceeded":
            assert (status, code) == (409, "QuotaExceeded")
            assert message.startswith(  # web-01 and tl-01 hold 2 DSv5 cores each in eastus
                "Operation could not be completed as it results in exceeding approved "
                "standardDSv5Family Cores quota. Additional details - Deployment Model: "
                "Resource Manager, Location: eastus, Current Limit: 4, Current Usage: 4, "
                "Additional Required: 2, (Minimum) New Limit Required: 6."
            )
        else:
            assert (status, code) == (409, "SkuNotAvailable")
        _create(client, sim, "vm", body)  # count spent

    @pytest.mark.parametrize(
        ("kind", "zones", "code", "where"),
        [
            ("allocation-failed", None, "AllocationFailed", "region"),
            ("zonal-allocation-failed", ["1"], "ZonalAllocationFailed", "zone"),
        ],
        ids=["regional", "zonal"],
    )
    def test_an_allocation_failure_fails_the_operation_and_the_instance_view_says_why(
        self,
        client: ComputeManagementClient,
        sim: ArmSimulator,
        served: ArmServer,
        kind: str,
        zones: list[str] | None,
        code: str,
        where: str,
    ) -> None:
        snapshot = _snapshot(client, sim, "web-01")
        disk_body: dict[str, Any] = {
            "location": "eastus",
            "properties": {"creationData": {"createOption": "Copy", "sourceResourceId": snapshot}},
        }
        if zones:
            disk_body["zones"] = zones
        client.disks.begin_create_or_update(DR, "os", Disk(disk_body), polling=False)
        sim.advance(sim.durations.disk_seconds)
        sim.add_fault(FaultRule(operation="vms.create", kind=kind))
        body = _vm_body(_disk_id(DR, "os"), _nic(served, "nic"), zones=zones)
        poller = client.virtual_machines.begin_create_or_update(DR, "vm", body)
        sim.advance(sim.durations.vm_create_seconds)
        with pytest.raises(HttpResponseError, match=code):
            poller.result()
        message = (
            "Allocation failed. We do not have sufficient capacity for the requested VM size in "
            f"this {where}. Read more about improving likelihood of allocation success at "
            "http://aka.ms/allocation-guidance"
        )
        vm = doc(client.virtual_machines.get(DR, "vm"))
        assert vm["properties"]["provisioningState"] == "Failed"
        status = doc(client.virtual_machines.instance_view(DR, "vm"))["statuses"][0]
        assert {k: status[k] for k in ("code", "level", "displayStatus", "message")} == {
            "code": f"ProvisioningState/failed/{code}",
            "level": "Error",
            "displayStatus": "Provisioning failed",
            "message": message,
        }

    def test_a_zonal_allocation_fault_spares_a_regional_vm(
        self, client: ComputeManagementClient, sim: ArmSimulator, served: ArmServer
    ) -> None:
        disk = _disk_from(client, sim, _snapshot(client, sim, "web-01"), "os")
        sim.add_fault(FaultRule(operation="vms.create", kind="zonal-allocation-failed"))
        body = _vm_body(disk, _nic(served, "nic"))
        _create(client, sim, "vm", body)

    def test_any_failed_create_names_its_code_in_the_instance_view(
        self, client: ComputeManagementClient, sim: ArmSimulator, served: ArmServer
    ) -> None:
        disk = _disk_from(client, sim, _snapshot(client, sim, "web-01"), "os")
        sim.add_fault(FaultRule(operation="vms.create", kind="fail-operation"))
        client.virtual_machines.begin_create_or_update(
            DR, "vm", _vm_body(disk, _nic(served, "nic")), polling=False
        )
        sim.advance(sim.durations.vm_create_seconds)
        status = doc(client.virtual_machines.instance_view(DR, "vm"))["statuses"][0]
        assert (status["code"], status["level"]) == (
            "ProvisioningState/failed/InternalOperationError",
            "Error",
        )

    def test_a_capacity_fault_on_anything_but_a_vm_create_is_refused(self) -> None:
        with pytest.raises(ValueError, match="acts on VM creates"):
            FaultRule(operation="vms.get", kind="allocation-failed")

    def test_an_unknown_expand_on_a_vm_get_is_refused(
        self, client: ComputeManagementClient
    ) -> None:
        with pytest.raises(HttpResponseError) as raised:
            client.virtual_machines.get(APP, "web-01", expand="everything")
        assert _refusal(raised)[:2] == (400, "InvalidParameter")
