"""The VM sizes the simulator offers, and the Resource SKUs list (Microsoft.Compute/skus).

Each size carries the capabilities VM creation is checked against: the Hyper-V generations it
boots, whether it runs Trusted Launch or Confidential VMs, and its vCPUs and family (quota).
Every region offers every size in zones 1-3 unless the subscription holds a restriction for it
there, as ARM reports it in the SKUs list and enforces it on a VM PUT (409 SkuNotAvailable).

Shapes follow the official example ListAvailableResourceSkusForARegion.json (Azure/azure-rest-
api-specs, Compute Skus 2021-07-01: resourceType, name, tier, size, family, locations,
locationInfo[{location, zones}], capabilities[{name, value}] with values as strings). A
restriction reads as ARM lists it: {"type": "Location" | "Zone", "values": [region],
"restrictionInfo": {"locations": [region], "zones": [...]}, "reasonCode":
"NotAvailableForSubscription" | "QuotaId"} (ResourceSkuRestrictions in the SDK; a real answer
quoted in the restriction shapes of public SKU-selection code). A Location restriction makes the
size unusable in the region; a Zone restriction alone leaves it usable as a regional VM.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from local.armsim.errors import bad_request
from local.armsim.faults import normalise_region
from local.armsim.protocol import Reply, Request, page

if TYPE_CHECKING:
    from local.armsim.state import World

ZONES = ("1", "2", "3")
REASONS = frozenset({"NotAvailableForSubscription", "QuotaId"})
# Disk SKUs listed beside the VM sizes (resourceType "disks"), as the real list mixes types.
DISK_SKUS = ("Premium_LRS", "StandardSSD_LRS", "Standard_LRS", "Premium_ZRS", "StandardSSD_ZRS")
_FILTER = re.compile(r"^\s*location\s+eq\s+'(?P<location>[^']+)'\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class VmSize:
    """One VM size and the capabilities VM creation is checked against."""

    name: str
    family: str
    vcpus: int
    memory_gb: float
    generations: tuple[str, ...]  # HyperVGenerations it boots: ("V1",), ("V2",), ("V1", "V2")
    trusted_launch: bool = True  # False: the TrustedLaunchDisabled capability is "True"
    confidential: bool = False  # ConfidentialComputingType "SNP"
    ephemeral_os_disk: bool = False  # EphemeralOSDiskSupported (has a cache or resource disk)
    max_data_disks: int = 4

    @property
    def accelerated_networking(self) -> bool:
        """AcceleratedNetworkingEnabled: Azure offers it on sizes of two vCPUs or more."""
        return self.vcpus >= 2

    def capabilities(self) -> list[dict[str, str]]:
        values: dict[str, str] = {
            "MaxResourceVolumeMB": str(16384 * self.vcpus if self.ephemeral_os_disk else 0),
            "OSVhdSizeMB": "1047552",
            "vCPUs": str(self.vcpus),
            "MemoryPreservingMaintenanceSupported": "True",
            "HyperVGenerations": ",".join(self.generations),
            "MemoryGB": f"{self.memory_gb:g}",
            "MaxDataDiskCount": str(self.max_data_disks),
            "CpuArchitectureType": "x64",
            "LowPriorityCapable": "True",
            "PremiumIO": "True",
            "VMDeploymentTypes": "IaaS",
            "vCPUsAvailable": str(self.vcpus),
            "vCPUsPerCore": "1" if self.vcpus == 1 else "2",
            "EphemeralOSDiskSupported": str(self.ephemeral_os_disk),
            "EncryptionAtHostSupported": "True",
            "AcceleratedNetworkingEnabled": str(self.accelerated_networking),
            "RdmaEnabled": "False",
            "MaxNetworkInterfaces": str(max(2, self.vcpus)),
        }
        if not self.trusted_launch:
            values["TrustedLaunchDisabled"] = "True"
        if self.confidential:
            values["ConfidentialComputingType"] = "SNP"
        return [{"name": name, "value": value} for name, value in values.items()]


def _sizes(
    family: str,
    rows: tuple[tuple[str, int, float], ...],
    generations: tuple[str, ...] = ("V1", "V2"),
    **facts: Any,
) -> list[VmSize]:
    return [VmSize(name, family, cpus, memory, generations, **facts) for name, cpus, memory in rows]


_CATALOG = [
    *_sizes(
        "standardBSFamily",
        (
            ("Standard_B1s", 1, 1),
            ("Standard_B1ms", 1, 2),
            ("Standard_B2s", 2, 4),
            ("Standard_B2ms", 2, 8),
            ("Standard_B4ms", 4, 16),
        ),
        ephemeral_os_disk=True,
    ),
    # Av2 boots generation 1 only and has no Trusted Launch (MicrosoftDocs generation-2 sizes).
    *_sizes(
        "standardAv2Family",
        (("Standard_A1_v2", 1, 2), ("Standard_A2_v2", 2, 4), ("Standard_A4_v2", 4, 8)),
        ("V1",),
        trusted_launch=False,
        ephemeral_os_disk=True,
    ),
    *_sizes(
        "standardDv2Family",
        (("Standard_D1_v2", 1, 3.5), ("Standard_D2_v2", 2, 7)),
        ephemeral_os_disk=True,
    ),
    *_sizes(
        "standardDSv2Family",
        (
            ("Standard_DS1_v2", 1, 3.5),
            ("Standard_DS2_v2", 2, 7),
            ("Standard_DS3_v2", 4, 14),
            ("Standard_DS4_v2", 8, 28),
        ),
        ephemeral_os_disk=True,
    ),
    *_sizes(
        "standardDSv3Family",
        (("Standard_D2s_v3", 2, 8), ("Standard_D4s_v3", 4, 16), ("Standard_D8s_v3", 8, 32)),
        ephemeral_os_disk=True,
    ),
    *_sizes(
        "standardDSv5Family",
        (
            ("Standard_D2s_v5", 2, 8),
            ("Standard_D4s_v5", 4, 16),
            ("Standard_D8s_v5", 8, 32),
            ("Standard_D16s_v5", 16, 64),
        ),
    ),
    *_sizes(
        "standardDDSv5Family",
        (("Standard_D2ds_v5", 2, 8), ("Standard_D4ds_v5", 4, 16), ("Standard_D8ds_v5", 8, 32)),
        ephemeral_os_disk=True,
    ),
    *_sizes("standardDASv5Family", (("Standard_D2as_v5", 2, 8), ("Standard_D4as_v5", 4, 16))),
    *_sizes(
        "standardESv5Family",
        (
            ("Standard_E2s_v5", 2, 16),
            ("Standard_E4s_v5", 4, 32),
            ("Standard_E8s_v5", 8, 64),
            ("Standard_E16s_v5", 16, 128),
        ),
    ),
    *_sizes(
        "standardEDSv5Family",
        (("Standard_E2ds_v5", 2, 16), ("Standard_E4ds_v5", 4, 32)),
        ephemeral_os_disk=True,
    ),
    *_sizes(
        "standardFSv2Family",
        (("Standard_F2s_v2", 2, 4), ("Standard_F4s_v2", 4, 8), ("Standard_F8s_v2", 8, 16)),
        ephemeral_os_disk=True,
    ),
    *_sizes(
        "standardLSv3Family", (("Standard_L8s_v3", 8, 64),), ("V1", "V2"), ephemeral_os_disk=True
    ),
    # Confidential VMs (AMD SEV-SNP): generation 2 only.
    *_sizes(
        "standardDCASv5Family",
        (("Standard_DC2as_v5", 2, 8), ("Standard_DC4as_v5", 4, 16)),
        ("V2",),
        confidential=True,
    ),
]
SIZES: dict[str, VmSize] = {size.name.lower(): size for size in _CATALOG}


def vm_size(name: str) -> VmSize | None:
    """The size of that name (ARM compares size names case-insensitively), or None."""
    return SIZES.get(name.lower())


@dataclass(frozen=True)
class SkuRestriction:
    """A size the subscription may not have in a region: everywhere there (`zones` empty), or
    in the listed zones only."""

    reason: str = "NotAvailableForSubscription"
    zones: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.reason not in REASONS:
            raise ValueError(f"restriction reason must be one of {', '.join(sorted(REASONS))}")
        unknown = set(self.zones) - set(ZONES)
        if unknown:
            raise ValueError(f"restricted zones must be among {', '.join(ZONES)}")

    def blocks(self, zones: list[str]) -> bool:
        """Whether a VM in `zones` (none: a regional VM) is refused by this restriction."""
        if not self.zones:
            return True
        return bool(zones) and any(zone in self.zones for zone in zones)

    def document(self, region: str) -> dict[str, Any]:
        info: dict[str, Any] = {"locations": [region]}
        if self.zones:
            info["zones"] = list(self.zones)
        return {
            "type": "Zone" if self.zones else "Location",
            "values": [region],
            "restrictionInfo": info,
            "reasonCode": self.reason,
        }


def vm_sku(size: VmSize, region: str, restriction: SkuRestriction | None) -> dict[str, Any]:
    """One size in one region as the Resource SKUs list shows it."""
    return {
        "resourceType": "virtualMachines",
        "name": size.name,
        "tier": "Standard",
        "size": size.name.split("_", 1)[1],
        "family": size.family,
        "locations": [region],
        "locationInfo": [{"location": region, "zones": list(ZONES), "zoneDetails": []}],
        "capabilities": size.capabilities(),
        "restrictions": [restriction.document(region)] if restriction else [],
    }


def _disk_sku(name: str, region: str) -> dict[str, Any]:
    zonal = name.endswith("_LRS")
    return {
        "resourceType": "disks",
        "name": name,
        "tier": name.split("_", 1)[0].replace("SSD", ""),
        "size": "",
        "locations": [region],
        "locationInfo": [
            {"location": region, "zones": list(ZONES) if zonal else [], "zoneDetails": []}
        ],
        "capabilities": [],
        "restrictions": [],
    }


def list_skus(world: World, request: Request, args: dict[str, str]) -> Reply:
    """GET /subscriptions/{sub}/providers/Microsoft.Compute/skus[?$filter=location eq 'x'].

    Only a location filter is supported, as the API documents (ResourceSkus_List: "Only
    location filter is supported currently"); anything else is refused. Without a filter the
    list covers every region the subscription's resource groups are in.
    """
    world.require_subscription(args["sub"])
    text = request.query.get("$filter")
    if text is None:
        regions = sorted({g.location for g in world.groups.values()})
    else:
        found = _FILTER.match(text)
        if found is None:
            raise bad_request(
                f"The filter '{text}' is not supported. Only location filter is supported "
                "currently, as \"location eq '<region>'\"."
            )
        regions = [normalise_region(found["location"])]
    items = [
        vm_sku(size, region, world.sku_restriction(args["sub"], size.name, region))
        for region in regions
        for size in _CATALOG
    ] + [_disk_sku(name, region) for region in regions for name in DISK_SKUS]
    return page(request, items, max(world.page_size, len(items)))
