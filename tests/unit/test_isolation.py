"""The isolation decision: a DR test's subnet lets a copy of a production VM reach nothing but
the platform, or the reason it does not, naming the rule or setting at fault.

The rules start from infra's own: infra/app/drtest-network.bicep evaluated as main.bicep deploys
it (local/armsim/infra_network.py), with the default rules Azure puts in every NSG.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from local.armsim.infra_network import infra_subnet
from local.armsim.network import DEFAULT_SECURITY_RULES
from shared.domain.isolation import SecurityRule, SubnetEgress, isolation_problem

NSG = "nsg-vnet-backupdr-drtest"
OPEN_HTTPS = {
    "name": "allow-internet-https",
    "properties": {
        "priority": 200,
        "direction": "Outbound",
        "access": "Allow",
        "protocol": "Tcp",
        "sourceAddressPrefix": "*",
        "sourcePortRange": "*",
        "destinationAddressPrefix": "Internet",
        "destinationPortRange": "443",
    },
}


def _rule(document: Mapping[str, Any]) -> SecurityRule:
    """A rule as an NSG document has it (the single field and the list of each, together)."""
    props = document["properties"]

    def values(one: str, many: str) -> tuple[str, ...]:
        return tuple(filter(None, [props.get(one), *props.get(many, [])]))

    return SecurityRule(
        name=document["name"],
        priority=props["priority"],
        direction=props["direction"],
        access=props["access"],
        protocol=props["protocol"],
        sources=values("sourceAddressPrefix", "sourceAddressPrefixes"),
        source_ports=values("sourcePortRange", "sourcePortRanges"),
        destinations=values("destinationAddressPrefix", "destinationAddressPrefixes"),
        destination_ports=values("destinationPortRange", "destinationPortRanges"),
    )


def _defaults() -> list[SecurityRule]:
    return [
        SecurityRule(name, priority, direction, access, "*", (source,), ("*",), (to,), ("*",))
        for name, _, priority, direction, access, source, to in DEFAULT_SECURITY_RULES
    ]


def _infra(isolated: bool = True) -> tuple[list[dict[str, Any]], bool | None]:
    """The NSG rules and defaultOutboundAccess infra deploys (a DR-test or recovery network)."""
    deployed = infra_subnet("sub", "rg", "vnet-backupdr-drtest", "snet-restore", "10/24", isolated)
    return deployed.security_rules, deployed.properties.get("defaultOutboundAccess")


def _egress(
    rules: list[dict[str, Any]], outbound_access: bool | None = False, nsg: str | None = NSG
) -> SubnetEgress:
    return SubnetEgress(outbound_access, nsg, [*map(_rule, rules), *_defaults()])


def _with(rules: list[dict[str, Any]], name: str, **changes: Any) -> list[dict[str, Any]]:
    """`rules` with one rule's properties changed."""
    return [
        {**r, "properties": {**r["properties"], **changes}} if r["name"] == name else r
        for r in rules
    ]


class TestIsolated:
    """What infra deploys for a DR test is isolated, and stays so with harmless additions."""

    def test_infras_dr_test_network_is_isolated(self) -> None:
        rules, outbound_access = _infra()
        assert outbound_access is False
        assert isolation_problem(_egress(rules, outbound_access)) is None

    def test_more_allowed_to_wireserver_before_the_deny_is_still_isolated(self) -> None:
        rules, _ = _infra()
        any_port = {"protocol": "*", "destinationPortRange": "*", "destinationPortRanges": []}
        wider = _with(rules, "allow-vm-agent-outbound", **any_port)
        assert isolation_problem(_egress(wider)) is None

    def test_an_allow_to_the_internet_after_the_deny_lets_nothing_out(self) -> None:
        rules, _ = _infra()
        denied_first = _with([*rules, OPEN_HTTPS], "deny-all-outbound", priority=150)
        assert isolation_problem(_egress(denied_first)) is None

    def test_wireserver_as_a_slash_32_is_wireserver(self) -> None:
        rules, _ = _infra()
        cidr = _with(rules, "allow-vm-agent-outbound", destinationAddressPrefix="168.63.129.16/32")
        assert isolation_problem(_egress(cidr)) is None


class TestNotIsolated:
    """Each way a subnet lets a VM out is refused, with the rule or setting named."""

    @pytest.mark.parametrize(
        ("outbound_access", "shown"),
        [(True, "defaultOutboundAccess true"), (None, "defaultOutboundAccess not set")],
        ids=["default-outbound-access-on", "default-outbound-access-not-set"],
    )
    def test_default_outbound_access_not_off(
        self, outbound_access: bool | None, shown: str
    ) -> None:
        rules, _ = _infra()
        problem = isolation_problem(_egress(rules, outbound_access))
        assert problem == f"it has default outbound access ({shown}, not false)"

    def test_no_nsg(self) -> None:
        problem = isolation_problem(SubnetEgress(False, None))
        assert problem == "it has no network security group to deny outbound traffic"

    def test_an_allow_to_the_internet_before_the_deny(self) -> None:
        rules, _ = _infra()
        assert isolation_problem(_egress([*rules, OPEN_HTTPS])) == (
            f"rule allow-internet-https (priority 200) of NSG {NSG} allows outbound traffic to "
            "Internet before any rule denies all of it"
        )

    @pytest.mark.parametrize(
        ("change", "value"),
        [
            ("destinationAddressPrefix", "Internet"),
            ("protocol", "Tcp"),
            ("destinationPortRange", "443"),
            ("sourceAddressPrefix", "VirtualNetwork"),
        ],
        ids=["deny-to-internet-only", "deny-tcp-only", "deny-port-443-only", "deny-from-vnet-only"],
    )
    def test_a_deny_of_less_than_everything_leaves_the_default_allows(
        self, change: str, value: str
    ) -> None:
        rules, _ = _infra()
        narrow = _with(rules, "deny-all-outbound", **{change: value})
        assert isolation_problem(_egress(narrow)) == (
            f"rule AllowVnetOutBound (priority 65000) of NSG {NSG} allows outbound traffic to "
            "VirtualNetwork before any rule denies all of it"
        )

    def test_infras_recovery_network_is_not_isolated(self) -> None:
        rules, outbound_access = _infra(isolated=False)
        assert outbound_access is True
        assert "default outbound access" in str(isolation_problem(_egress(rules, True)))
        assert "AllowVnetOutBound" in str(isolation_problem(_egress(rules, False)))

    def test_an_allow_naming_no_destination_lets_out(self) -> None:
        blank = SecurityRule("blank", 100, "Outbound", "Allow", "*", ("*",), ("*",), (), ("*",))
        problem = isolation_problem(SubnetEgress(False, NSG, [blank, *_defaults()]))
        assert problem == (
            f"rule blank (priority 100) of NSG {NSG} allows outbound traffic to no destination "
            "named before any rule denies all of it"
        )
