"""The one place that builds Azure credentials and the azure-mgmt clients, from settings.

Nothing here runs at import time: the composition root calls `arm_clients(settings)` when the
app first needs Azure, so a missing setting fails that call with a clear error, not the import.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from azure.core.credentials import AccessToken, TokenCredential
from azure.core.pipeline.transport import HttpTransport
from azure.identity import DefaultAzureCredential, ManagedIdentityCredential
from azure.mgmt.compute import ComputeManagementClient
from azure.mgmt.network import NetworkManagementClient
from azure.mgmt.resource.resources import ResourceManagementClient

from shared.settings import Settings, SettingsError

# The SDK retry policy honours Retry-After on 429 and 5xx; bounding it makes a call that keeps
# failing end within seconds, and leaves longer waits to durable retries in the workflows.
RETRY_TOTAL = 3
RETRY_BACKOFF_FACTOR = 0.5
RETRY_BACKOFF_MAX_SECONDS = 4
# Seconds a socket may wait to connect or for a response before the call counts as transient.
CONNECTION_TIMEOUT_SECONDS = 10
READ_TIMEOUT_SECONDS = 60


def local_token(**claims: str) -> str:
    """An access token in Entra's shape (base64url JSON header, claims and signature, joined
    by dots), unsigned: the local simulator knows its few tokens by value, and the audit log
    reads who a token stands for from its claims, as it does from Entra's."""
    parts = ({"typ": "JWT", "alg": "none"}, claims)
    encoded = [base64.urlsafe_b64encode(json.dumps(part).encode()).rstrip(b"=") for part in parts]
    return b".".join([*encoded, b""]).decode()


def token_claims(token: str) -> dict[str, Any]:
    """The claims of a JWT access token, unverified: ARM checked its signature when it took it,
    and the app reads them only to say who it acted as."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError) as error:
        raise ValueError("the access token is not a JWT: whose it is cannot be read") from error
    if not isinstance(claims, dict):
        raise ValueError("the access token's claims are not a JSON object")
    return claims


def principal_of(token: str) -> str:
    """Who a token stands for, as the audit log names it: a user by sign-in name, an app (a
    service principal or managed identity) by application id; by object id either way. The
    claims are Entra's (learn.microsoft.com/entra/identity-platform/access-token-claims-reference):
    `upn`/`unique_name` for users, `appid` (v1 tokens, as ARM's are) or `azp` (v2) for apps."""
    claims = token_claims(token)
    oid = claims.get("oid", "unknown")
    user = claims.get("upn") or claims.get("unique_name") or claims.get("preferred_username")
    if user:
        return f"user {user} (object id {oid})"
    return f"app {claims.get('appid') or claims.get('azp') or 'unknown'} (object id {oid})"


# Not secrets: the local ARM simulator's fixed tokens. SIMULATOR_TOKEN is the app's identity, held
# to infra/'s roles; OPERATOR_TOKEN is the operator's own (the CLI's tag writes and restores).
SIMULATOR_TOKEN = local_token(
    oid="7d3f0b5e-0a11-4c7e-9b1d-000000000a99",
    appid="7d3f0b5e-0a11-4c7e-9b1d-000000000a99",
    idtyp="app",
)
OPERATOR_TOKEN = local_token(
    oid="2c9e4a61-5b7d-4f38-8e02-000000000099", upn="operator@backupdr.example", idtyp="user"
)


class StaticTokenCredential:
    """A fixed bearer token that never expires: only for the local ARM simulator."""

    def __init__(self, token: str = SIMULATOR_TOKEN) -> None:
        self._token = token

    def get_token(
        self,
        *scopes: str,
        claims: str | None = None,
        tenant_id: str | None = None,
        enable_cae: bool = False,
        **kwargs: Any,
    ) -> AccessToken:
        return AccessToken(self._token, 2**31 - 1)


@dataclass(frozen=True)
class ArmClients:
    """The three azure-mgmt clients the Compute gateway drives, sharing one credential (kept
    with its scope, so the gateway can say whose it is)."""

    compute: ComputeManagementClient
    network: NetworkManagementClient
    resources: ResourceManagementClient
    credential: TokenCredential
    scope: str
    ca_bundle: str | None = None  # also trusted by the blob data plane's SAS reads


def credential_from_settings(settings: Settings) -> TokenCredential:
    """DefaultAzureCredential, the managed identity, or the simulator's fixed token, by setting."""
    client_id = settings.managed_identity_client_id
    if settings.credential == "default":
        return DefaultAzureCredential(managed_identity_client_id=client_id)
    if settings.credential == "managed-identity":
        return ManagedIdentityCredential(client_id=client_id)
    if settings.credential == "static":
        return StaticTokenCredential()
    raise SettingsError(f"credential kind {settings.credential!r} is not known")


def arm_clients(
    settings: Settings,
    credential: TokenCredential | None = None,
    transport: Callable[..., HttpTransport[Any, Any]] | None = None,
) -> ArmClients:
    """Build the Compute, Network and Resources clients for the endpoint the settings name.

    The token scope follows the endpoint (so sovereign clouds work), the simulator's CA bundle is
    trusted when set, and long-running operations poll at the app's interval instead of the
    SDK's 30 s default (Retry-After still wins when Azure sends it).
    """
    endpoint = settings.arm_endpoint.rstrip("/")
    options: dict[str, Any] = {
        "base_url": endpoint,
        "credential_scopes": [f"{endpoint}/.default"],
        "polling_interval": settings.lro_poll_seconds,
        "retry_total": RETRY_TOTAL,
        "retry_backoff_factor": RETRY_BACKOFF_FACTOR,
        "retry_backoff_max": RETRY_BACKOFF_MAX_SECONDS,
        "connection_timeout": CONNECTION_TIMEOUT_SECONDS,
        "read_timeout": READ_TIMEOUT_SECONDS,
    }
    if settings.ca_bundle:
        options["connection_verify"] = settings.ca_bundle
    token = credential or credential_from_settings(settings)
    subscription = settings.subscription_id

    def client_options() -> dict[str, Any]:
        # a transport of its own for each client, configured as the SDK would its default one
        return options if transport is None else {**options, "transport": transport(**options)}

    return ArmClients(
        compute=ComputeManagementClient(token, subscription, **client_options()),
        network=NetworkManagementClient(token, subscription, **client_options()),
        resources=ResourceManagementClient(token, subscription, **client_options()),
        credential=token,
        scope=options["credential_scopes"][0],
        ca_bundle=settings.ca_bundle,
    )
