"""A NIC's private IP allocation and accelerated networking, and a VM's licence type and boot
diagnostics, in the simulator through the real azure-mgmt clients: shown as Azure shows them,
and refused where Azure refuses them (Microsoft.Network's PrivateIPAddress* codes; Compute's
VMSizeIsNotPermittedToEnableAcceleratedNetworking on a size the SKUs list gives none).
"""

from __future__ import annotations

from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.mgmt.compute import ComputeManagementClient
from azure.mgmt.compute.models import VirtualMachine
from azure.mgmt.network import NetworkManagementClient
from azure.mgmt.network.models import NetworkInterface, NetworkSecurityGroup, VirtualNetwork

from local.armsim import ArmServer, ArmSimulator
from tests.integration.owner import OwnerToken, sdk_options
from tests.integration.test_armsim_vm_creation import (
    DR,
    SUB,
    _disk_from,
    _refusal,
    _snapshot,
    _vm_body,
    client,
    doc,
    served,
    sim,
)

pytestmark = pytest.mark.armsim
__all__ = ["client", "served", "sim"]  # fixtures

SUBNET = (
    f"/subscriptions/{SUB}/resourceGroups/{DR}/providers/Microsoft.Network/virtualNetworks/"
    "vnet-backupdr-drtest/subnets/snet-restore"
)  # 10.90.1.0/24


@pytest.fixture
def network(served: ArmServer) -> NetworkManagementClient:
    return NetworkManagementClient(OwnerToken(), SUB, **sdk_options(served))


def _put_nic(
    network: NetworkManagementClient,
    name: str,
    address: str | None = None,
    *,
    allocation: str | None = None,
    accelerated: bool = False,
) -> dict[str, Any]:
    ip: dict[str, Any] = {"subnet": {"id": SUBNET}}
    if allocation or address:
        ip["privateIPAllocationMethod"] = allocation or "Static"
    if address:
        ip["privateIPAddress"] = address
    body = NetworkInterface(
        {
            "location": "eastus",
            "properties": {
                "enableAcceleratedNetworking": accelerated,
                "ipConfigurations": [{"name": "ipconfig1", "properties": ip}],
            },
        }
    )
    network.network_interfaces.begin_create_or_update(DR, name, body, polling=False)
    return doc(network.network_interfaces.get(DR, name))


def _ip(nic: dict[str, Any]) -> tuple[str, str]:
    props = nic["properties"]["ipConfigurations"][0]["properties"]
    return props["privateIPAllocationMethod"], props["privateIPAddress"]


def _nic_names(sim: ArmSimulator) -> set[str]:
    return {str(n["name"]) for n in sim.nics()}


class TestPrivateIp:
    def test_a_static_address_is_kept_and_a_repeat_put_keeps_it(
        self, network: NetworkManagementClient
    ) -> None:
        assert _ip(_put_nic(network, "static-nic", "10.90.1.50")) == ("Static", "10.90.1.50")
        assert _ip(_put_nic(network, "static-nic", "10.90.1.50")) == ("Static", "10.90.1.50")

    def test_a_dynamic_nic_put_again_keeps_its_address(
        self, network: NetworkManagementClient
    ) -> None:
        first = _ip(_put_nic(network, "dyn-nic"))
        assert first[0] == "Dynamic"
        assert _ip(_put_nic(network, "dyn-nic")) == first

    @pytest.mark.parametrize(
        ("address", "allocation", "code", "words"),
        [
            ("10.90.2.7", None, "PrivateIPAddressNotInSubnet", "does not belong to the range"),
            ("10.90.1.2", None, "PrivateIPAddressInReservedRange", "falls within reserved"),
            ("10.90.1.255", None, "PrivateIPAddressInReservedRange", "falls within reserved"),
            (None, "Static", "PrivateIPAddressMissing", "Private IP address is required"),
        ],
        ids=["outside-the-subnet", "reserved-first-four", "reserved-broadcast", "missing"],
    )
    def test_a_static_address_azure_cannot_give_is_refused_and_nothing_made(
        self,
        network: NetworkManagementClient,
        sim: ArmSimulator,
        address: str | None,
        allocation: str | None,
        code: str,
        words: str,
    ) -> None:
        before = _nic_names(sim)
        with pytest.raises(HttpResponseError) as raised:
            _put_nic(network, "bad-nic", address, allocation=allocation)
        status, found, message = _refusal(raised)
        assert (status, found) == (400, code)
        assert words in message
        assert _nic_names(sim) == before

    def test_an_address_another_nic_holds_is_refused_naming_the_holder(
        self, network: NetworkManagementClient, sim: ArmSimulator
    ) -> None:
        _put_nic(network, "holder-nic", "10.90.1.60")
        before = _nic_names(sim)
        with pytest.raises(HttpResponseError) as raised:
            _put_nic(network, "second-nic", "10.90.1.60")
        status, code, message = _refusal(raised)
        assert (status, code) == (400, "PrivateIPAddressIsAllocated")
        assert "10.90.1.60 which is already allocated to resource" in message
        assert message.endswith("/networkInterfaces/holder-nic.")
        assert _nic_names(sim) == before


class TestVmSettings:
    def test_accelerated_networking_on_a_size_without_it_is_refused(
        self,
        client: ComputeManagementClient,
        network: NetworkManagementClient,
        sim: ArmSimulator,
    ) -> None:
        disk = _disk_from(client, sim, _snapshot(client, sim, "web-01"), "an-os")
        nic = _put_nic(network, "an-nic", accelerated=True)
        sim.advance(60)
        with pytest.raises(HttpResponseError) as raised:
            client.virtual_machines.begin_create_or_update(
                DR, "an-vm", _vm_body(disk, nic["id"], size="Standard_B1s"), polling=False
            )
        status, code, message = _refusal(raised)
        assert (status, code) == (400, "VMSizeIsNotPermittedToEnableAcceleratedNetworking")
        assert message.startswith("Virtual Machine size Standard_B1s is not in the allowed list")
        assert "Standard_D2s_v5" in message
        assert not any(v["name"] == "an-vm" for v in sim.vms())
        assert (
            "virtualMachine" not in doc(network.network_interfaces.get(DR, "an-nic"))["properties"]
        )

    def test_licence_boot_diagnostics_and_accelerated_networking_show_as_sent(
        self,
        client: ComputeManagementClient,
        network: NetworkManagementClient,
        sim: ArmSimulator,
    ) -> None:
        disk = _disk_from(client, sim, _snapshot(client, sim, "web-01"), "ok-os")
        nic = _put_nic(network, "ok-nic", "10.90.1.70", accelerated=True)
        sim.advance(60)
        body = doc(_vm_body(disk, nic["id"], size="Standard_D2s_v5"))
        body["properties"]["licenseType"] = "RHEL_BYOS"
        body["properties"]["diagnosticsProfile"] = {"bootDiagnostics": {"enabled": True}}
        client.virtual_machines.begin_create_or_update(
            DR, "ok-vm", VirtualMachine(body), polling=False
        )
        sim.advance(sim.durations.vm_create_seconds)
        vm = next(v for v in sim.vms() if v["name"] == "ok-vm")
        assert vm["properties"]["licenseType"] == "RHEL_BYOS"
        assert vm["properties"]["diagnosticsProfile"] == {"bootDiagnostics": {"enabled": True}}
        shown = next(n for n in sim.nics() if n["name"] == "ok-nic")
        assert shown["properties"]["enableAcceleratedNetworking"] is True
        assert shown["properties"]["virtualMachine"]["id"].endswith("/virtualMachines/ok-vm")


class TestSeeding:
    def test_a_fleet_vm_gets_its_static_address_and_azures_refusals_apply(
        self, sim: ArmSimulator
    ) -> None:
        sim.add_vm(SUB, "rg-app-eastus", "static-01", private_ip="10.0.0.20")
        nic = next(n for n in sim.nics() if n["name"] == "static-01-nic")
        assert _ip(nic) == ("Static", "10.0.0.20")
        with pytest.raises(ValueError, match="already allocated"):
            sim.add_vm(SUB, "rg-app-eastus", "static-02", private_ip="10.0.0.20")
        with pytest.raises(ValueError, match="does not offer accelerated networking"):
            sim.add_vm(
                SUB, "rg-app-eastus", "tiny-01", size="Standard_B1s", accelerated_networking=True
            )


NSG = "nsg-vnet-backupdr-drtest"


def _security_group(*rules: dict[str, Any]) -> NetworkSecurityGroup:
    return NetworkSecurityGroup({"location": "eastus", "properties": {"securityRules": rules}})


def _outbound(name: str, priority: int, access: str = "Deny") -> dict[str, Any]:
    props = {
        "priority": priority,
        "direction": "Outbound",
        "access": access,
        "protocol": "*",
        "sourceAddressPrefix": "*",
        "sourcePortRange": "*",
        "destinationAddressPrefix": "*",
        "destinationPortRange": "*",
    }
    return {"name": name, "properties": props}


class TestSecurityGroups:
    """NSGs as Microsoft.Network shows and refuses them; the DR-test one is infra's."""

    def test_the_dr_test_nsg_has_infras_rules_then_azures_defaults_and_its_subnet(
        self, network: NetworkManagementClient
    ) -> None:
        nsg = doc(network.network_security_groups.get(DR, NSG))
        rules = [
            (r["name"], r["properties"]["priority"]) for r in nsg["properties"]["securityRules"]
        ]
        assert rules == [
            ("deny-internet-inbound", 100),
            ("allow-vm-agent-outbound", 100),
            ("deny-all-outbound", 4096),
        ]
        defaults = [
            (r["name"], r["properties"]["priority"], r["properties"]["direction"])
            for r in nsg["properties"]["defaultSecurityRules"]
        ]
        assert defaults == [
            ("AllowVnetInBound", 65000, "Inbound"),
            ("AllowAzureLoadBalancerInBound", 65001, "Inbound"),
            ("DenyAllInBound", 65500, "Inbound"),
            ("AllowVnetOutBound", 65000, "Outbound"),
            ("AllowInternetOutBound", 65001, "Outbound"),
            ("DenyAllOutBound", 65500, "Outbound"),
        ]
        assert nsg["properties"]["subnets"] == [{"id": SUBNET}]
        assert (
            nsg["properties"]["securityRules"][0]["id"]
            == f"{nsg['id']}/securityRules/deny-internet-inbound"
        )

    def test_the_dr_test_subnet_names_its_nsg_and_has_no_default_outbound_access(
        self, network: NetworkManagementClient
    ) -> None:
        subnet = doc(network.subnets.get(DR, "vnet-backupdr-drtest", "snet-restore"))
        assert subnet["properties"]["networkSecurityGroup"]["id"].endswith(
            f"/resourceGroups/{DR}/providers/Microsoft.Network/networkSecurityGroups/{NSG}"
        )
        assert subnet["properties"]["defaultOutboundAccess"] is False

    def test_a_new_nsg_gets_azures_default_rules(self, network: NetworkManagementClient) -> None:
        network.network_security_groups.begin_create_or_update(
            DR, "nsg-new", _security_group(_outbound("deny-out", 300))
        ).result()
        nsg = doc(network.network_security_groups.get(DR, "nsg-new"))
        assert [r["name"] for r in nsg["properties"]["securityRules"]] == ["deny-out"]
        assert len(nsg["properties"]["defaultSecurityRules"]) == 6
        assert "subnets" not in nsg["properties"]

    @pytest.mark.parametrize(
        ("rules", "code", "words"),
        [
            (
                [_outbound("too-early", 50)],
                "SecurityRuleInvalidPriority",
                "Value provided: 50 Allowed range 100-4096",
            ),
            (
                [_outbound("first", 300), _outbound("second", 300, "Allow")],
                "SecurityRuleConflict",
                "Security rule first conflicts with rule second. Rules cannot have the same "
                "Priority and Direction.",
            ),
        ],
        ids=["priority-out-of-range", "same-priority-and-direction"],
    )
    def test_a_rule_azure_refuses_changes_nothing(
        self,
        network: NetworkManagementClient,
        rules: list[dict[str, Any]],
        code: str,
        words: str,
    ) -> None:
        before = doc(network.network_security_groups.get(DR, NSG))
        with pytest.raises(HttpResponseError) as raised:
            network.network_security_groups.begin_create_or_update(
                DR, NSG, _security_group(*rules)
            ).result()
        status, found, message = _refusal(raised)
        assert (status, found) == (400, code)
        assert words in message
        assert doc(network.network_security_groups.get(DR, NSG)) == before

    def test_an_nsg_put_must_name_its_location(self, network: NetworkManagementClient) -> None:
        """A PUT replaces the whole resource: ARM refuses one without a location."""
        with pytest.raises(HttpResponseError) as raised:
            network.network_security_groups.begin_create_or_update(
                DR, "nsg-nowhere", NetworkSecurityGroup({"properties": {"securityRules": []}})
            ).result()
        assert _refusal(raised)[:2] == (400, "LocationRequired")
        with pytest.raises(ResourceNotFoundError):
            network.network_security_groups.get(DR, "nsg-nowhere")

    def test_an_nsg_stays_in_its_region(self, network: NetworkManagementClient) -> None:
        before = doc(network.network_security_groups.get(DR, NSG))
        moved = NetworkSecurityGroup({"location": "westus2", "properties": before["properties"]})
        with pytest.raises(HttpResponseError) as raised:
            network.network_security_groups.begin_create_or_update(DR, NSG, moved).result()
        status, code, message = _refusal(raised)
        assert (status, code) == (400, "InvalidResourceLocation")
        assert f"already exists in location '{before['location']}'" in message
        assert doc(network.network_security_groups.get(DR, NSG)) == before

    def test_an_nsg_a_subnet_uses_cannot_be_deleted(self, network: NetworkManagementClient) -> None:
        with pytest.raises(HttpResponseError) as raised:
            network.network_security_groups.begin_delete(DR, NSG).result()
        status, code, message = _refusal(raised)
        assert (status, code) == (400, "InUseNetworkSecurityGroupCannotBeDeleted")
        assert f"in use by the following resources: {SUBNET}." in message
        assert network.network_security_groups.get(DR, NSG).name == NSG

    def test_a_subnet_naming_an_nsg_that_is_not_there_is_refused(
        self, network: NetworkManagementClient
    ) -> None:
        missing = SUBNET.split("/virtualNetworks/")[0] + "/networkSecurityGroups/nsg-gone"
        body = VirtualNetwork(
            {
                "location": "eastus",
                "properties": {
                    "addressSpace": {"addressPrefixes": ["10.95.0.0/16"]},
                    "subnets": [
                        {
                            "name": "s",
                            "properties": {
                                "addressPrefix": "10.95.1.0/24",
                                "networkSecurityGroup": {"id": missing},
                            },
                        }
                    ],
                },
            }
        )
        with pytest.raises(HttpResponseError) as raised:
            network.virtual_networks.begin_create_or_update(DR, "vnet-new", body).result()
        status, code, message = _refusal(raised)
        assert (status, code) == (400, "InvalidResourceReference")
        assert message.startswith(f"Resource {missing} referenced by resource ")
