"""The ARM calls the simulator serves: method, path pattern, operation name, api-versions."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from local.armsim import diskrp, lro, network, resources, skus, vms
from local.armsim.protocol import (
    DISK_TYPE,
    NIC_TYPE,
    NSG_TYPE,
    SNAPSHOT_TYPE,
    VNET_TYPE,
    Reply,
    Request,
)
from local.armsim.state import World

# Exactly what the pinned SDKs send (azure-mgmt-compute 39.0.0, -network 33.1.0, -resource 26.0.0).
COMPUTE = frozenset({"2026-04-01"})
DISKS = frozenset({"2026-03-02"})
NETWORK = frozenset({"2026-03-01"})
SKUS = frozenset({"2021-07-01"})  # ResourceSkus_List: the SDK pins its own, older version
RESOURCES = frozenset({"2025-04-01"})
ANY_KNOWN = COMPUTE | DISKS | NETWORK | RESOURCES

Handler = Callable[[World, Request, dict[str, str]], Reply]


@dataclass(frozen=True)
class Route:
    method: str
    pattern: re.Pattern[str]
    operation: str
    api_versions: frozenset[str]
    handler: Handler


_S = r"/subscriptions/(?P<sub>[^/]+)"
_RG = _S + r"/resourceGroups/(?P<rg>[^/]+)"
_C = _RG + r"/providers/Microsoft\.Compute"
_N = _RG + r"/providers/Microsoft\.Network"
_NAME = r"/(?P<name>[^/]+)"

_TABLE: list[tuple[str, str, str, frozenset[str], Handler]] = [
    (
        "GET",
        r"(?P<scope>/subscriptions/.+?)/providers/Microsoft\.Resources/tags/default",
        "tags.get",
        RESOURCES,
        resources.get_tags,
    ),
    (
        "PATCH",
        r"(?P<scope>/subscriptions/.+?)/providers/Microsoft\.Resources/tags/default",
        "tags.update",
        RESOURCES,
        resources.update_tags,
    ),
    (
        "PUT",
        r"(?P<scope>/subscriptions/.+?)/providers/Microsoft\.Resources/tags/default",
        "tags.update",
        RESOURCES,
        resources.update_tags,
    ),
    (
        "GET",
        _S + r"/providers/(?P<ns>Microsoft\.(?:Compute|Network|Resources))"
        r"/locations/(?P<location>[^/]+)/operations/(?P<operation>[^/]+)",
        "operations.get",
        ANY_KNOWN,
        lro.poll,
    ),
    # Compute: the VM sizes this subscription can have where (Resource SKUs)
    ("GET", _S + r"/providers/Microsoft\.Compute/skus", "skus.list", SKUS, skus.list_skus),
    # Compute: virtual machines
    (
        "GET",
        _S + r"/providers/Microsoft\.Compute/virtualMachines",
        "vms.list",
        COMPUTE,
        vms.list_vms,
    ),
    ("GET", _C + r"/virtualMachines", "vms.list", COMPUTE, vms.list_vms),
    ("GET", _C + r"/virtualMachines" + _NAME, "vms.get", COMPUTE, vms.get_vm),
    ("PUT", _C + r"/virtualMachines" + _NAME, "vms.create", COMPUTE, vms.put_vm),
    ("PATCH", _C + r"/virtualMachines" + _NAME, "vms.update", COMPUTE, vms.patch_vm),
    ("DELETE", _C + r"/virtualMachines" + _NAME, "vms.delete", COMPUTE, vms.delete_vm),
    (
        "GET",
        _C + r"/virtualMachines" + _NAME + r"/instanceView",
        "vms.instance_view",
        COMPUTE,
        vms.instance_view,
    ),
    (
        "POST",
        _C + r"/virtualMachines" + _NAME + r"/runCommand",
        "runcommand",
        COMPUTE,
        vms.run_command,
    ),
    # Compute: snapshots and disks (DiskRP)
    (
        "GET",
        _S + r"/providers/Microsoft\.Compute/snapshots",
        "snapshots.list",
        DISKS,
        diskrp.list_snapshots,
    ),
    ("GET", _C + r"/snapshots", "snapshots.list", DISKS, diskrp.list_snapshots),
    ("GET", _C + r"/snapshots" + _NAME, "snapshots.get", DISKS, diskrp.get(SNAPSHOT_TYPE)),
    ("PUT", _C + r"/snapshots" + _NAME, "snapshots.create", DISKS, diskrp.put_snapshot),
    ("PATCH", _C + r"/snapshots" + _NAME, "snapshots.update", DISKS, diskrp.patch_snapshot),
    ("DELETE", _C + r"/snapshots" + _NAME, "snapshots.delete", DISKS, diskrp.delete_snapshot),
    (
        "POST",
        _C + r"/snapshots" + _NAME + r"/beginGetAccess",
        "snapshots.access",
        DISKS,
        diskrp.access(SNAPSHOT_TYPE, grant=True),
    ),
    (
        "POST",
        _C + r"/snapshots" + _NAME + r"/endGetAccess",
        "snapshots.access",
        DISKS,
        diskrp.access(SNAPSHOT_TYPE, grant=False),
    ),
    ("GET", _C + r"/disks" + _NAME, "disks.get", DISKS, diskrp.get(DISK_TYPE)),
    ("PUT", _C + r"/disks" + _NAME, "disks.create", DISKS, diskrp.put_disk),
    ("DELETE", _C + r"/disks" + _NAME, "disks.delete", DISKS, diskrp.delete_disk),
    (
        "POST",
        _C + r"/disks" + _NAME + r"/beginGetAccess",
        "disks.access",
        DISKS,
        diskrp.access(DISK_TYPE, grant=True),
    ),
    (
        "POST",
        _C + r"/disks" + _NAME + r"/endGetAccess",
        "disks.access",
        DISKS,
        diskrp.access(DISK_TYPE, grant=False),
    ),
    # Network
    (
        "GET",
        _S + r"/providers/Microsoft\.Network/networkInterfaces",
        "nics.list",
        NETWORK,
        network.list_nics,
    ),
    ("GET", _N + r"/networkInterfaces", "nics.list", NETWORK, network.list_nics),
    ("GET", _N + r"/networkInterfaces" + _NAME, "nics.get", NETWORK, network.get_network(NIC_TYPE)),
    ("PUT", _N + r"/networkInterfaces" + _NAME, "nics.create", NETWORK, network.put_nic),
    ("DELETE", _N + r"/networkInterfaces" + _NAME, "nics.delete", NETWORK, network.delete_nic),
    ("GET", _N + r"/virtualNetworks" + _NAME, "vnets.get", NETWORK, network.get_network(VNET_TYPE)),
    ("PUT", _N + r"/virtualNetworks" + _NAME, "vnets.create", NETWORK, network.put_vnet),
    ("DELETE", _N + r"/virtualNetworks" + _NAME, "vnets.delete", NETWORK, network.delete_vnet),
    (
        "GET",
        _N + r"/virtualNetworks" + _NAME + r"/subnets/(?P<subnet>[^/]+)",
        "subnets.get",
        NETWORK,
        network.get_subnet,
    ),
    (
        "GET",
        _N + r"/networkSecurityGroups" + _NAME,
        "nsgs.get",
        NETWORK,
        network.get_network(NSG_TYPE),
    ),
    ("PUT", _N + r"/networkSecurityGroups" + _NAME, "nsgs.create", NETWORK, network.put_nsg),
    ("DELETE", _N + r"/networkSecurityGroups" + _NAME, "nsgs.delete", NETWORK, network.delete_nsg),
    # Resources
    ("GET", _RG + r"/resources", "resources.list", RESOURCES, resources.list_group_resources),
    ("GET", _S + r"/resourceGroups", "groups.list", RESOURCES, resources.list_groups),
    ("GET", _RG, "groups.get", RESOURCES, resources.get_group),
    ("HEAD", _RG, "groups.get", RESOURCES, resources.get_group),
    ("PUT", _RG, "groups.create", RESOURCES, resources.put_group),
]

ROUTES = [
    Route(method, re.compile(f"^{pattern}/?$", re.IGNORECASE), operation, versions, handler)
    for method, pattern, operation, versions, handler in _TABLE
]


def match(method: str, path: str) -> tuple[Route, dict[str, str]] | None:
    for route in ROUTES:
        if route.method == method:
            found = route.pattern.match(path)
            if found is not None:
                return route, {k: v for k, v in found.groupdict().items() if v is not None}
    return None
