"""The simulator's owner for tests of its ARM surface with the real SDK clients (not the app's
roles, which tests/integration/test_armsim_authz.py and the e2e tests exercise)."""

from __future__ import annotations

import time
from typing import Any

from azure.core.credentials import AccessToken
from azure.mgmt.network import NetworkManagementClient
from azure.mgmt.network.models import SecurityRule, SecurityRulePropertiesFormat

from local.armsim import ArmServer
from local.armsim.authz import OWNER_TOKEN


class OwnerToken:
    """A credential whose token the simulator takes for the subscription's owner."""

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken(OWNER_TOKEN, int(time.time()) + 3600)


def sdk_options(server: ArmServer) -> dict[str, Any]:
    """Client options for the simulator: its URL and CA, no waits between polls, no retries."""
    return {
        "base_url": server.url,
        "connection_verify": str(server.ca_path),
        "credential_scopes": ["https://management.azure.com/.default"],
        "polling_interval": 0,
        "retry_total": 0,
    }


def allow_https_out(network: NetworkManagementClient, group: str, nsg_name: str) -> None:
    """What someone might do to a DR-test NSG: allow HTTPS out to the internet (priority 200),
    ahead of infra's deny, as the owner over Microsoft.Network's API."""
    nsg = network.network_security_groups.get(group, nsg_name)
    assert nsg.properties is not None
    nsg.properties.security_rules = [
        *(nsg.properties.security_rules or []),
        SecurityRule(
            name="allow-internet-https",
            properties=SecurityRulePropertiesFormat(
                priority=200,
                direction="Outbound",
                access="Allow",
                protocol="Tcp",
                source_address_prefix="*",
                source_port_range="*",
                destination_address_prefix="Internet",
                destination_port_range="443",
            ),
        ),
    ]
    network.network_security_groups.begin_create_or_update(group, nsg_name, nsg).result()
