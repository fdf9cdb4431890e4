"""The simulator's owner for tests of its ARM surface with the real SDK clients (not the app's
roles, which tests/integration/test_armsim_authz.py and the e2e tests exercise)."""

from __future__ import annotations

import time
from typing import Any

from azure.core.credentials import AccessToken

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
