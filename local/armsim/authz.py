"""ARM's authentication and authorization, as the simulator enforces them on every request.

Principals are told apart by bearer token. The app's identity holds exactly the roles infra/
assigns it (`infra_roles`); the operator holds what README tells operators to hold; the owner is
for tests of the simulator's own ARM surface. A request needs its operation's action at its
scope, and a PUT that names another resource also needs the linked action on that resource.
Refusals answer with ARM's codes and messages and are kept in `refusals`.

Message shapes, as ARM words them (e.g. Azure/ARO-RP#66; Azure/mpf's parser tests;
kubernetes-sigs/azuredisk-csi-driver#2610): AuthorizationFailed "The client '<client>' with
object id '<oid>' does not have authorization to perform action '<action>' over scope '<scope>'
or the scope is invalid. If access was recently granted, please refresh your credentials.";
LinkedAuthorizationFailed "The client '<client>' with object id '<oid>' has permission to
perform action '<action>' on scope '<scope>'; however, it does not have permission to perform
action(s) '<a1>,<a2>' on the linked scope(s) '<s1>,<s2>' (respectively) or the linked scope(s)
are invalid." 401s: AuthenticationFailed "Authentication failed. The 'Authorization' header is
missing." and InvalidAuthenticationToken "The access token is invalid."
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from local.armsim import builtin_roles
from local.armsim.errors import ArmError
from local.armsim.infra_roles import MAIN, app_assignments
from local.armsim.rbac import Assignment, Principal
from local.bicep import variable
from shared.adapters.credentials import OPERATOR_TOKEN, SIMULATOR_TOKEN, local_token, token_claims

# Not a secret: the simulator's test owner, in Entra's token shape like the app's and operator's.
OWNER_TOKEN = local_token(oid="e0a1b2c3-d4e5-4f60-8a7b-000000000001", upn="owner@backupdr.example")
APP_OBJECT_ID = str(token_claims(SIMULATOR_TOKEN)["oid"])

_VERBS = {"GET": "read", "HEAD": "read", "PUT": "write", "PATCH": "write", "DELETE": "delete"}
# ARM names an action by the provider's own spelling, whatever case the URL used
# (the SDKs send `resourcegroups`).
_CANONICAL = {
    name.lower(): name
    for name in (
        "Microsoft.Compute",
        "Microsoft.Network",
        "Microsoft.Resources",
        "subscriptions",
        "resourceGroups",
        "resources",
        "tags",
        "locations",
        "operations",
        "DiskOperations",
        "operationResults",
        "virtualMachines",
        "instanceView",
        "runCommand",
        "disks",
        "snapshots",
        "beginGetAccess",
        "endGetAccess",
        "networkInterfaces",
        "virtualNetworks",
        "subnets",
        "networkSecurityGroups",
        "skus",
    )
}
_PROVIDER_ID = re.compile(r"/providers/(?P<ns>[^/]+)/(?P<type>[^/]+)/[^/]+$", re.IGNORECASE)

DISK_WRITE = "Microsoft.Compute/disks/write"
SNAPSHOT_WRITE = "Microsoft.Compute/snapshots/write"
NIC_WRITE = "Microsoft.Network/networkInterfaces/write"
VM_WRITE = "Microsoft.Compute/virtualMachines/write"
SUBNET_JOIN = "Microsoft.Network/virtualNetworks/subnets/join/action"
NIC_JOIN = "Microsoft.Network/networkInterfaces/join/action"
VNET_WRITE = "Microsoft.Network/virtualNetworks/write"
NSG_JOIN = "Microsoft.Network/networkSecurityGroups/join/action"


@dataclass(frozen=True)
class Refusal:
    """A request ARM refused: who, with which code, for which action at which scope."""

    client: str
    code: str
    action: str
    scope: str


def default_principals() -> dict[str, Principal]:
    """The principals a fresh simulator knows, by bearer token."""
    return {
        SIMULATOR_TOKEN: _principal(SIMULATOR_TOKEN, app_assignments()),
        OPERATOR_TOKEN: _principal(
            OPERATOR_TOKEN,
            (
                # backup configure/disable (the Tags API) and every read command.
                Assignment(builtin_roles.READER),
                Assignment(builtin_roles.TAG_CONTRIBUTOR),
                # backup restore: new disks, NIC and VM beside the VM, in its own group...
                Assignment(builtin_roles.VIRTUAL_MACHINE_CONTRIBUTOR),
                # ...from the backup's snapshots (the linked snapshots/beginGetAccess/action).
                Assignment(
                    builtin_roles.DISK_SNAPSHOT_CONTRIBUTOR,
                    str(variable(MAIN, "backupGroupTemplate")),
                ),
            ),
        ),
        OWNER_TOKEN: _principal(OWNER_TOKEN, (Assignment(builtin_roles.OWNER),)),
    }


def _principal(token: str, assignments: Sequence[Assignment]) -> Principal:
    """The principal a token stands for, named as ARM's errors name it: a user by sign-in name,
    an app by application id; and its object id."""
    claims = token_claims(token)
    return Principal(str(claims.get("upn") or claims["appid"]), str(claims["oid"]), assignments)


@dataclass
class Authorization:
    """The principals the simulator knows (by token) and the refusals it has answered."""

    principals: dict[str, Principal] = field(default_factory=default_principals)
    refusals: list[Refusal] = field(default_factory=list)

    def authenticate(self, authorization_header: str) -> Principal:
        """The caller a bearer token stands for; 401 as ARM answers without a known token."""
        scheme, _, token = authorization_header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise ArmError(
                401,
                "AuthenticationFailed",
                "Authentication failed. The 'Authorization' header is missing.",
            )
        principal = self.principals.get(token.strip())
        if principal is None or not _jwt_shaped(token.strip()):
            raise ArmError(401, "InvalidAuthenticationToken", "The access token is invalid.")
        return principal

    def authorize(
        self,
        principal: Principal,
        method: str,
        path: str,
        body: Any,
        group_exists: Callable[[str, str], bool],
    ) -> None:
        """403 unless `principal` may perform the request, and every linked action it implies."""
        action, scope = requested(method, path)
        if not principal.allowed(action, scope, group_exists):
            self._refuse(principal, "AuthorizationFailed", action, scope)
            raise ArmError(
                403,
                "AuthorizationFailed",
                f"The client '{principal.client}' with object id '{principal.object_id}' does "
                f"not have authorization to perform action '{action}' over scope '{scope}' or "
                "the scope is invalid. If access was recently granted, please refresh your "
                "credentials.",
            )
        missing = [
            (linked_action, linked_scope)
            for linked_action, linked_scope in linked(action, body)
            if not principal.allowed(linked_action, linked_scope, group_exists)
        ]
        if missing:
            for linked_action, linked_scope in missing:
                self._refuse(principal, "LinkedAuthorizationFailed", linked_action, linked_scope)
            raise ArmError(
                403,
                "LinkedAuthorizationFailed",
                f"The client '{principal.client}' with object id '{principal.object_id}' has "
                f"permission to perform action '{action}' on scope '{scope}'; however, it does "
                f"not have permission to perform action(s) '{','.join(a for a, _ in missing)}' "
                f"on the linked scope(s) '{','.join(s for _, s in missing)}' (respectively) or "
                "the linked scope(s) are invalid.",
            )

    def _refuse(self, principal: Principal, code: str, action: str, scope: str) -> None:
        self.refusals.append(Refusal(principal.client, code, action, scope))


@functools.cache  # a handful of tokens, read on every request
def _jwt_shaped(token: str) -> bool:
    """Whether a token is an Entra access token's shape (ARM takes no other): the app reads its
    claims for the audit log, so the simulator must not let it work with anything else."""
    try:
        token_claims(token)
    except ValueError:
        return False
    return True


def requested(method: str, path: str) -> tuple[str, str]:
    """The action an ARM request performs and the scope it is checked at.

    The action is the resource type path under the last provider namespace (types sit at every
    other segment, names between them) plus the verb: `/read`, `/write`, `/delete`, and for a
    POST its last segment + `/action`, checked on the resource it is posted to. Paths without a
    provider are Microsoft.Resources' own (`subscriptions/resourceGroups[/resources]`).
    """
    parts = [p for p in path.split("/") if p]
    lowered = [p.lower() for p in parts]
    scope_parts = parts[:-1] if method == "POST" else parts
    if "providers" in lowered:
        at = len(lowered) - 1 - lowered[::-1].index("providers")
        namespace, rest = parts[at + 1], parts[at + 2 :]
    else:
        namespace, rest = "Microsoft.Resources", parts
    if method == "POST":
        types = [*rest[:-1:2], rest[-1]]
        verb = "action"
    else:
        types = rest[::2]
        verb = _VERBS[method]
    names = [_CANONICAL.get(name.lower(), name) for name in (namespace, *types)]
    return "/".join([*names, verb]), "/" + "/".join(scope_parts)


def linked(action: str, body: Any) -> list[tuple[str, str]]:
    """The (action, resource id) pairs a write's body links to, as ARM checks them.

    A disk or snapshot copied from another (creationData.sourceResourceId) needs
    `<source type>/beginGetAccess/action` on the source (MicrosoftDocs/azure-docs#11362; Azure
    Backup's Disk Backup Reader holds disks/beginGetAccess/action for it). A NIC needs
    subnets/join/action on each subnet it joins; a VNet networkSecurityGroups/join/action on
    each NSG its subnets name (Network Contributor's, and Virtual Machine Contributor's, join
    actions); a VM networkInterfaces/join/action on each NIC
    and, stricter than some Azure checks, disks/write on each managed disk it attaches
    (attaching updates the disk: MicrosoftDocs/azure-docs#6250).
    """
    properties = (body.get("properties") if isinstance(body, dict) else None) or {}
    kind = action.lower()
    if kind in {DISK_WRITE.lower(), SNAPSHOT_WRITE.lower()}:
        source = _absolute((properties.get("creationData") or {}).get("sourceResourceId"))
        found = _PROVIDER_ID.search(source)
        return [(f"{found['ns']}/{found['type']}/beginGetAccess/action", source)] if found else []
    if kind == NIC_WRITE.lower():
        return [(SUBNET_JOIN, s) for s in _ids(properties.get("ipConfigurations"), "subnet")]
    if kind == VNET_WRITE.lower():
        subnets = properties.get("subnets")
        return [(NSG_JOIN, n) for n in _ids(subnets, "networkSecurityGroup")]
    if kind == VM_WRITE.lower():
        storage = properties.get("storageProfile") or {}
        disks = [storage.get("osDisk"), *(storage.get("dataDisks") or [])]
        network = properties.get("networkProfile") or {}
        return [(NIC_JOIN, n) for n in _ids(network.get("networkInterfaces"))] + [
            (DISK_WRITE, d) for d in _ids(disks, "managedDisk")
        ]
    return []


def _ids(items: Any, key: str | None = None) -> Iterator[str]:
    """The `id`s of a list of references (`item.id`, or `item[.properties].<key>.id`)."""
    for item in items if isinstance(items, list) else []:
        if not isinstance(item, dict):
            continue
        if key is not None:
            item = (item.get("properties") or item).get(key)
        if isinstance(item, dict) and item.get("id"):
            yield _absolute(item["id"])


def _absolute(resource_id: Any) -> str:
    """An id as a scope; Azure's own examples sometimes leave out the leading slash."""
    return "/" + str(resource_id).lstrip("/") if resource_id else ""
