"""The network infra/app/drtest-network.bicep deploys, for a fleet subnet that says it is one.

A fleet subnet with "isolated" (true: a DR-test network, false: a recovery network) gets the NSG
and subnet properties the module deploys with that `isolated`, evaluated from the Bicep itself:
the simulator's DR-test network is infra's, whatever infra changes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from local.armsim.protocol import NSG_TYPE, VNET_TYPE, make_id
from local.bicep import evaluate, template

FILE = "app/drtest-network.bicep"


@dataclass(frozen=True)
class InfraSubnet:
    """One subnet of the module's VNet, and the NSG it is deployed with."""

    nsg_id: str
    security_rules: list[dict[str, Any]]  # the NSG's properties.securityRules
    properties: dict[str, Any]  # the subnet's properties (addressPrefix, its NSG, ...)


def infra_subnet(
    subscription: str, group: str, vnet: str, subnet: str, address_prefix: str, isolated: bool
) -> InfraSubnet:
    """The module deployed into `group` with these parameters (`address_prefix`: the subnet's)."""
    scope = {
        "vnetName": vnet,
        "subnetName": subnet,
        "addressPrefix": address_prefix,
        "isolated": isolated,
    }
    nsg_name, nsg = _resource(NSG_TYPE)
    nsg_id = make_id(subscription, group, NSG_TYPE, evaluate(FILE, nsg["name"], scope))
    _, vnet_config = _resource(VNET_TYPE)
    (subnet_config,) = vnet_config["properties"]["subnets"]
    return InfraSubnet(
        nsg_id,
        evaluate(FILE, nsg["properties"]["securityRules"], scope),
        evaluate(FILE, subnet_config["properties"], {**scope, nsg_name: {"id": nsg_id}}),
    )


def _resource(type_: str) -> tuple[str, dict[str, Any]]:
    """The module's one resource of a type: its symbolic name and config."""
    (found,) = (
        (name, resource["config"])
        for name, resource in template(FILE)["resources"].items()
        if resource["type"] == type_
    )
    return found
