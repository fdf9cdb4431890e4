"""infra/ deploys each DR-test network isolated and each recovery network not, and an isolated
network lets out exactly what the VM agent and Run Command need: TCP 80, 443 and 32526 to
WireServer (168.63.129.16).

infra/app/drtest-network.bicep is evaluated with each `isolated` main.bicep gives it, through the
reader the simulator seeds its DR-test networks with (local/armsim/infra_network.py).
"""

from __future__ import annotations

from typing import Any

from local.armsim.infra_network import FILE, InfraSubnet, infra_subnet
from local.bicep import template, unwrap

EVERYTHING = {
    "protocol": "*",
    "sourceAddressPrefix": "*",
    "sourcePortRange": "*",
    "destinationAddressPrefix": "*",
    "destinationPortRange": "*",
}


def _deployed(isolated: bool) -> InfraSubnet:
    return infra_subnet("sub", "rg", "vnet", "snet", "10.250.0.0/24", isolated)


def _rules(deployed: InfraSubnet, direction: str) -> list[dict[str, Any]]:
    return [
        rule["properties"]
        for rule in deployed.security_rules
        if rule["properties"]["direction"] == direction
    ]


def test_dr_test_networks_are_deployed_isolated_and_recovery_networks_not() -> None:
    calls = {
        name: unwrap(module["config"])["params"].get("isolated")
        for name, module in template("main.bicep")["modules"].items()
        if module["detail"]["path"] == FILE
    }
    assert calls == {"drTestNetworks": True, "recoveryNetworks": False}


def test_every_caller_says_whether_its_network_is_isolated() -> None:
    assert template(FILE)["parameters"]["isolated"]["default"] is None


def test_an_isolated_network_allows_out_only_tcp_80_443_32526_to_wireserver() -> None:
    deployed = _deployed(isolated=True)
    outbound = _rules(deployed, "Outbound")
    allowed = [
        (rule["protocol"], rule["destinationAddressPrefix"], rule["destinationPortRanges"])
        for rule in outbound
        if rule["access"] == "Allow"
    ]
    assert allowed == [("Tcp", "168.63.129.16", ["80", "443", "32526"])]
    [deny] = [rule for rule in outbound if rule["access"] == "Deny"]
    assert {key: deny[key] for key in EVERYTHING} == EVERYTHING
    assert deny["priority"] == 4096
    assert all(rule["priority"] < deny["priority"] for rule in outbound if rule is not deny)


def test_an_isolated_subnet_has_no_default_outbound_access_and_the_nsg() -> None:
    deployed = _deployed(isolated=True)
    assert deployed.properties["defaultOutboundAccess"] is False
    assert deployed.properties["networkSecurityGroup"] == {"id": deployed.nsg_id}


def test_a_recovery_network_refuses_the_internet_inbound_and_keeps_its_outbound() -> None:
    recovery, isolated = _deployed(isolated=False), _deployed(isolated=True)
    assert _rules(recovery, "Outbound") == []
    assert _rules(recovery, "Inbound") == _rules(isolated, "Inbound")
    [inbound] = _rules(recovery, "Inbound")
    assert (inbound["access"], inbound["sourceAddressPrefix"]) == ("Deny", "Internet")
    assert recovery.properties["defaultOutboundAccess"] is True
