"""ArmSimulator: the Python API tests, the demo and the CLI use to run and steer the simulator."""

from __future__ import annotations

import copy
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from local.armsim import blobdata, diskimage, diskrp, network, skus, vms
from local.armsim.authz import Authorization
from local.armsim.diskimage import GIB
from local.armsim.durations import Durations
from local.armsim.faults import FaultRule, normalise_region
from local.armsim.infra_network import infra_subnet
from local.armsim.protocol import (
    DISK_TYPE,
    NIC_TYPE,
    NSG_TYPE,
    SNAPSHOT_TYPE,
    VM_TYPE,
    VNET_TYPE,
    ResourceId,
    make_id,
)
from local.armsim.server import ArmServer, serving
from local.armsim.state import Group, RequestRecord, Resource, World
from local.armsim.tls import make_tls_files
from shared.clock import VirtualClock


class ArmSimulator:
    """A local Azure Resource Manager for Compute, Network and Resources, on a virtual clock."""

    def __init__(
        self,
        clock: VirtualClock | None = None,
        durations: Durations | None = None,
        fleet: Mapping[str, Any] | str | Path | None = None,
        page_size: int = 100,
        throttle: bool = True,
        seed: int = 0,
    ) -> None:
        if page_size < 1:
            raise ValueError("page_size must be at least 1")
        self.clock = clock or VirtualClock(datetime.now(UTC).replace(microsecond=0))
        self.world = World(self.clock, durations or Durations(), page_size, seed)
        self.world.renderers.update(
            {
                SNAPSHOT_TYPE.lower(): diskrp.render_snapshot,
                DISK_TYPE.lower(): diskrp.render_disk,
                VM_TYPE.lower(): vms.render_vm,
                NIC_TYPE.lower(): network.render_network,
                VNET_TYPE.lower(): network.render_network,
                NSG_TYPE.lower(): network.render_nsg,
            }
        )
        self.throttle_enabled = throttle
        # Every request over HTTPS is authorized; seeding in-process (below, fleet files) is not.
        self.authorization = Authorization()
        if fleet is not None:
            from local.armsim.fleet import load_fleet  # fleet builds on this class

            load_fleet(self, fleet)

    # -- serving ------------------------------------------------------------------------------
    @contextmanager
    def serve(self, host: str = "127.0.0.1", port: int = 0) -> Iterator[ArmServer]:
        """HTTPS on host:port (0 = free) with a CA and certificate made fresh for this run."""
        with tempfile.TemporaryDirectory(prefix="armsim-") as workdir:
            tls = make_tls_files(Path(workdir), host)
            with serving(self, tls, host, port) as server:
                yield server

    # -- steering -----------------------------------------------------------------------------
    @property
    def durations(self) -> Durations:
        return self.world.durations

    @property
    def subscription(self) -> str:
        """The first subscription seeded (most fleets have one)."""
        if not self.world.subscription_ids:
            raise LookupError("no subscription has been seeded")
        return next(iter(self.world.subscription_ids.values()))

    def advance(self, seconds: float) -> datetime:
        """Move the virtual clock (sim.clock.advance does the same)."""
        return self.clock.advance(seconds)

    def add_fault(self, rule: FaultRule) -> None:
        self.world.faults.add(rule)

    def clear_faults(self) -> None:
        self.world.faults.clear()

    def set_content_fault(self, target: str, kind: str, since: datetime | None = None) -> list[str]:
        """Strike a disk's content with a fault (zeroed, encrypted, corrupt-gpt; see
        local/armsim/diskimage.py) from `since` (default now): `target` is a disk's resource id,
        or a VM's name for all its managed disks. Snapshots taken later carry it. Returns the
        ids of the disks struck."""
        with self.world.lock:
            disks = self._fault_targets(target)
            moment = since or self.clock.now()
            for disk in disks:
                disk.content = blobdata.content_of(self.world, disk).with_fault(kind, moment)
            return [d.id for d in disks]

    def _fault_targets(self, target: str) -> list[Resource]:
        if target.startswith("/"):
            found = self.world.find(target)
            if found is None or found.type.lower() != DISK_TYPE.lower():
                raise LookupError(f"no disk {target}")
            return [found]
        vms_named = [
            r
            for r in self.world.resources.values()
            if r.type.lower() == VM_TYPE.lower() and r.name.lower() == target.lower()
        ]
        if len(vms_named) != 1:
            raise LookupError(f"{len(vms_named)} VMs are named {target!r}; give a disk id")
        storage = vms_named[0].properties.get("storageProfile") or {}
        entries = [storage.get("osDisk") or {}, *(storage.get("dataDisks") or [])]
        ids = [str((e.get("managedDisk") or {}).get("id") or "") for e in entries]
        disks = [d for d in (self.world.find(i) for i in ids if i) if d is not None]
        if not disks:
            raise LookupError(f"VM {target} has no managed disks")
        return disks

    @property
    def requests(self) -> list[RequestRecord]:
        with self.world.lock:
            return list(self.world.requests)

    def bill(self) -> dict[str, float]:
        """GiB-months of snapshot storage per region so far (changed-block accounting)."""
        with self.world.lock:
            return self.world.bill()

    # -- inspection ---------------------------------------------------------------------------
    def _rendered(self, type_: str) -> list[dict[str, Any]]:
        with self.world.lock:
            self.world.settle()
            return [
                self.world.render(r)
                for r in sorted(self.world.resources.values(), key=lambda r: r.id.lower())
                if r.type.lower() == type_.lower()
            ]

    def snapshots(self) -> list[dict[str, Any]]:
        return self._rendered(SNAPSHOT_TYPE)

    def disks(self) -> list[dict[str, Any]]:
        return self._rendered(DISK_TYPE)

    def vms(self) -> list[dict[str, Any]]:
        return self._rendered(VM_TYPE)

    def nics(self) -> list[dict[str, Any]]:
        return self._rendered(NIC_TYPE)

    def restrict_size(
        self,
        subscription: str,
        size: str,
        region: str,
        *,
        zones: Sequence[str] = (),
        reason: str = "NotAvailableForSubscription",
    ) -> None:
        """Make a VM size unavailable to the subscription in a region (in `zones` only, if
        given), as the Resource SKUs list then reports it and a VM PUT for it is refused."""
        if skus.vm_size(size) is None:
            raise ValueError(f"size {size!r} is not one the simulator offers (skus.py)")
        restriction = skus.SkuRestriction(reason, tuple(str(z) for z in zones))
        with self.world.lock:
            self.world.require_subscription(subscription)
            key = (subscription.lower(), size.lower(), normalise_region(region))
            self.world.sku_restrictions[key] = restriction

    # -- seeding ------------------------------------------------------------------------------
    def add_subscription(self, subscription: str) -> None:
        with self.world.lock:
            self.world.add_subscription(subscription)

    def add_group(
        self,
        subscription: str,
        name: str,
        region: str,
        tags: Mapping[str, str] | None = None,
        vnets: Sequence[Mapping[str, Any]] = (),
    ) -> None:
        """A resource group, optionally with VNets: [{name, address_prefix, subnets: [{name,
        address_prefix, isolated?}]}]. A subnet with `isolated` is infra's DR-test network
        module deployed with it (local/armsim/infra_network.py): its NSG is made too."""
        with self.world.lock:
            group = self.world.add_group(subscription, name, region, dict(tags or {}))
            for vnet in vnets:
                vnet_id = make_id(subscription, name, VNET_TYPE, vnet["name"])
                subnets = [
                    {
                        "name": s["name"],
                        "id": f"{vnet_id}/subnets/{s['name']}",
                        "type": network.SUBNET_TYPE,
                        "properties": self._seed_subnet_properties(group, vnet["name"], s),
                    }
                    for s in vnet.get("subnets", [])
                ]
                body = {
                    "location": group.location,
                    "properties": {
                        "addressSpace": {"addressPrefixes": [vnet["address_prefix"]]},
                        "subnets": subnets,
                        "virtualNetworkPeerings": [],
                    },
                }
                self.world.new_resource(ResourceId.parse(vnet_id), body, 0.0)

    def _seed_subnet_properties(
        self, group: Group, vnet: str, subnet: Mapping[str, Any]
    ) -> dict[str, Any]:
        """A seeded subnet's properties: its address prefix, or for an `isolated` one (true or
        false) those infra deploys, with its NSG, made here; the world's lock is held."""
        if "isolated" not in subnet:
            return {"addressPrefix": subnet["address_prefix"]}
        if not isinstance(subnet["isolated"], bool):
            raise ValueError(f"subnet {subnet['name']}: 'isolated' must be true or false")
        infra = infra_subnet(
            group.subscription,
            group.name,
            vnet,
            subnet["name"],
            subnet["address_prefix"],
            subnet["isolated"],
        )
        rules = {"securityRules": infra.security_rules}
        existing = self.world.find(infra.nsg_id)
        if existing is None:
            body = {"location": group.location, "properties": rules}
            self.world.new_resource(ResourceId.parse(infra.nsg_id), body, 0.0)
        elif existing.properties != rules:
            raise ValueError(f"subnet {subnet['name']}: its VNet's NSG has other rules already")
        return infra.properties

    def seed(self, resource_id: str, document: Mapping[str, Any]) -> dict[str, Any]:
        """Store an ARM document as an existing, completed resource; returns it as GET shows it.

        For tests that need a resource Azure would already have (an example's GET, say); the
        resource group must exist.
        """
        with self.world.lock:
            ref = ResourceId.parse(resource_id)
            resource = self.world.new_resource(ref, copy.deepcopy(dict(document)), 0.0)
            return self.world.render(resource)

    def add_vm(
        self,
        subscription: str,
        resource_group: str,
        name: str,
        *,
        size: str = "Standard_D2s_v5",
        os_type: str = "Linux",
        zone: str | None = None,
        tags: Mapping[str, str] | None = None,
        os_disk: Mapping[str, Any] | None = None,
        data_disks: Sequence[Mapping[str, Any]] = (),
        region: str | None = None,
        security_type: str = "Standard",
        hyper_v_generation: str = "V2",
        secure_boot: bool = True,
        vtpm: bool = True,
        subnet: str | None = None,
        accelerated_networking: bool = False,
        license_type: str | None = None,
        boot_diagnostics: bool | str = False,
        private_ip: str | None = None,
    ) -> dict[str, Any]:
        """A running VM with its managed disks and NIC, as a fleet seeds it.

        Its NIC is on `subnet` ("vnet/subnet" in the VM's group, or a subnet's full id), which
        must exist; by default the group's first subnet, and in a group with no VNet the one the
        portal makes (`{group}-vnet` 10.0.0.0/16, subnet `default` 10.0.0.0/24).
        `license_type` (Windows_Server, RHEL_BYOS, ...) and `boot_diagnostics` (True: on, in
        managed storage; a blob endpoint URI: on, in that storage account) go on the VM as Azure
        shows them; `private_ip` makes the NIC's address Static on it (default Dynamic).

        `security_type` Standard, TrustedLaunch or ConfidentialVM (with UEFI `secure_boot` and
        `vtpm`, which Standard has none of) and `hyper_v_generation` V1 or V2 (Trusted Launch and
        Confidential VMs boot V2 only) go on the VM's securityProfile and its OS disk; the size
        must be one the simulator offers (local/armsim/skus.py) and boot that generation.

        Disk specs: {size_gb, sku, change_gib_per_day, caching, content} (data disks also {lun});
        caching defaults to ReadWrite on the OS disk, None on data disks; `content` describes the
        disk's bytes (partition table, file systems, use, churn, a content fault; the schema and
        the VM's defaults are in local/armsim/diskimage.py). Disks the app cannot snapshot:
        {"ephemeral": true[, "placement": "CacheDisk"|"ResourceDisk"|"NvmeDisk"]} on the OS
        disk (diffDiskSettings Local, caching ReadOnly, a managed disk id with no disk behind
        it), {"unmanaged": true} on every disk (a VHD page blob: `vhd.uri`, no managedDisk).
        """
        if os_type not in {"Linux", "Windows"}:
            raise ValueError(f"VM {name}: os_type must be Linux or Windows, not {os_type!r}")
        offered = skus.vm_size(size)
        if accelerated_networking and offered is not None and not offered.accelerated_networking:
            raise ValueError(f"VM {name}: size {size} does not offer accelerated networking")
        security, os_security = _seed_security(
            name, size, security_type, hyper_v_generation, secure_boot, vtpm
        )
        with self.world.lock:
            group = self.world.group(subscription, resource_group)
            location = normalise_region(region or group.location)
            zones = [zone] if zone else None
            vm_id = make_id(subscription, group.name, VM_TYPE, name)

            def disk(disk_name: str, spec: Mapping[str, Any], os: bool) -> dict[str, Any]:
                """The disk's storageProfile entry (but lun and createOption); a managed disk
                resource is made for it unless it is ephemeral or unmanaged."""
                unknown = set(spec) - {
                    "size_gb",
                    "sku",
                    "change_gib_per_day",
                    "caching",
                    "lun",
                    "ephemeral",
                    "placement",
                    "unmanaged",
                    "content",
                }
                if unknown:
                    raise ValueError(f"disk {disk_name}: unknown keys {', '.join(sorted(unknown))}")
                ephemeral, unmanaged = bool(spec.get("ephemeral")), bool(spec.get("unmanaged"))
                if ephemeral and not os:
                    raise ValueError(f"disk {disk_name}: only the OS disk can be ephemeral")
                if "placement" in spec and not ephemeral:
                    raise ValueError(f"disk {disk_name}: 'placement' is for an ephemeral OS disk")
                # A VM's disks are all managed or all VHD blobs; ARM answers 409
                # OperationNotAllowed "Addition of a blob based disk to VM with managed disks is
                # not supported" (Azure/azure-powershell#3540) and "Addition of a managed disk to
                # a VM with blob based disks is not supported" (microsoft/lisa#499). An ephemeral
                # OS disk is a managed OS disk only (learn.microsoft.com/azure/virtual-machines/
                # ephemeral-os-disks, "Disk type support").
                if unmanaged != bool((os_disk or {}).get("unmanaged")) or (ephemeral and unmanaged):
                    raise ValueError(
                        f"disk {disk_name}: a VM's disks are all managed or all unmanaged (VHD)"
                    )
                caching = str(
                    spec.get("caching", "ReadOnly" if ephemeral else "ReadWrite" if os else "None")
                )
                if caching not in {"None", "ReadOnly", "ReadWrite"}:
                    raise ValueError(
                        f"disk {disk_name}: caching must be None, ReadOnly or ReadWrite"
                    )
                if ephemeral and caching != "ReadOnly":  # ephemeral-os-disks-deploy: ReadOnly only
                    raise ValueError(f"disk {disk_name}: an ephemeral OS disk caches ReadOnly")
                size = int(spec.get("size_gb", 30 if os else 128))
                described: dict[str, Any] = {"name": disk_name, "diskSizeGB": size}
                if unmanaged:
                    # The storageProfile of a VM on VHDs (ComputeRP 2025-04-01 example
                    # VirtualMachine_Create_PlatformImageVmWithUnmanagedOsAndDataDisks): vhd.uri,
                    # no managedDisk, and no Microsoft.Compute/disks resource to snapshot.
                    account = "".join(c for c in group.name.lower() if c.isalnum())[:19] + "vhds"
                    blob = f"https://{account}.blob.core.windows.net/vhds/{disk_name}.vhd"
                    return {**described, "vhd": {"uri": blob}, "caching": caching}
                sku = str(spec.get("sku", "Standard_LRS" if ephemeral else "Premium_LRS"))
                if ephemeral:
                    # Azure lists an ephemeral OS disk with diffDiskSettings and a managed disk id,
                    # but no disk resource answers at that id: GET is 404 (terraform-provider-
                    # azurerm internal/services/compute/virtual_machine.go: "Ephemeral Disks get
                    # an ARM ID but aren't available via the regular API"; MicrosoftDocs/
                    # azure-docs#71220), so a snapshot of it is refused (diskrp._source).
                    placement = str(spec.get("placement", "CacheDisk"))
                    if placement not in {"CacheDisk", "ResourceDisk", "NvmeDisk"}:
                        raise ValueError(f"disk {disk_name}: unknown placement {placement!r}")
                    disk_id = make_id(subscription, group.name, DISK_TYPE, disk_name)
                    return {
                        **described,
                        "managedDisk": {"id": disk_id, "storageAccountType": sku},
                        "diffDiskSettings": {"option": "Local", "placement": placement},
                        "caching": caching,
                    }
                properties: dict[str, Any] = {
                    "creationData": {"createOption": "FromImage" if os else "Empty"},
                    "diskSizeGB": size,
                }
                if os:
                    properties["osType"] = os_type
                    properties["hyperVGeneration"] = hyper_v_generation
                    properties.update(os_security)
                body: dict[str, Any] = {
                    "location": location,
                    "sku": {"name": sku},
                    "managedBy": vm_id,
                    "properties": properties,
                }
                if zones:
                    body["zones"] = zones
                ref = ResourceId(subscription, group.name, DISK_TYPE, disk_name)
                rate = float(spec.get("change_gib_per_day", 1.0))
                facts = diskimage.DiskFacts(size * GIB, os_type, hyper_v_generation, os, rate)
                try:
                    content = diskimage.new_content(
                        diskimage.parse_spec(spec.get("content", {})),
                        facts,
                        f"{self.world.seed}:{ref}".lower(),
                        self.world.now(),
                    )
                except ValueError as error:
                    raise ValueError(f"disk {disk_name}: {error}") from None
                resource: Resource = self.world.new_resource(
                    ref, body, 0.0, change_gib_per_day=rate, content=content
                )
                return {
                    **described,
                    "diskSizeGB": diskrp.size_gb(resource),
                    "managedDisk": {"id": resource.id, "storageAccountType": sku},
                    "caching": caching,
                }

            def entry(described: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
                return {**extra, **described}

            os_resource = disk(f"{name}-osdisk", os_disk or {}, os=True)
            data_entries = []
            for index, spec in enumerate(data_disks):
                lun = int(spec.get("lun", index))
                data = disk(f"{name}-data{lun}", spec, os=False)
                data_entries.append(entry(data, {"lun": lun, "createOption": "Attach"}))
            nic_ref = ResourceId(subscription, group.name, NIC_TYPE, f"{name}-nic")
            nic = network.seeded_nic(
                self.world,
                str(nic_ref),
                self._seed_subnet(subscription, group.name, location, subnet),
                location=location,
                vm_id=vm_id,
                accelerated_networking=accelerated_networking,
                private_ip=private_ip,
            )
            self.world.new_resource(nic_ref, nic, 0.0)
            body: dict[str, Any] = {
                "location": location,
                "tags": dict(tags or {}),
                "properties": {
                    "hardwareProfile": {"vmSize": size},
                    "storageProfile": {
                        "osDisk": entry(
                            os_resource, {"osType": os_type, "createOption": "FromImage"}
                        ),
                        "dataDisks": data_entries,
                    },
                    "osProfile": {"computerName": name, "adminUsername": "azureuser"},
                    "networkProfile": {"networkInterfaces": [{"id": str(nic_ref)}]},
                    "securityProfile": security,
                },
            }
            if zones:
                body["zones"] = zones
            if license_type:
                body["properties"]["licenseType"] = license_type
            if boot_diagnostics:
                boot: dict[str, Any] = {"enabled": True}
                if isinstance(boot_diagnostics, str):
                    boot["storageUri"] = boot_diagnostics
                body["properties"]["diagnosticsProfile"] = {"bootDiagnostics": boot}
            managed = body["properties"]["storageProfile"]["osDisk"].get("managedDisk")
            if security_type == "ConfidentialVM" and managed is not None:
                managed["securityProfile"] = {"securityEncryptionType": "VMGuestStateOnly"}
            vm = self.world.new_resource(
                ResourceId.parse(vm_id), body, 0.0, hyper_v_generation=hyper_v_generation
            )
            vm.boots_at = vm.ready_at
            return self.world.render(vm)

    def _seed_subnet(self, subscription: str, group: str, location: str, subnet: str | None) -> str:
        """The subnet id a seeded VM's NIC goes on (see add_vm); the world's lock is held."""
        if subnet is not None and subnet.startswith("/"):
            return subnet
        if subnet is not None:
            vnet, _, name = subnet.partition("/")
            return f"{make_id(subscription, group, VNET_TYPE, vnet)}/subnets/{name}"
        for existing in self.world.of_type(VNET_TYPE, subscription, group):
            for found in existing.properties.get("subnets") or []:
                return str(found["id"])
        vnet_id = make_id(subscription, group, VNET_TYPE, f"{group}-vnet")
        body = {
            "location": location,
            "properties": {
                "addressSpace": {"addressPrefixes": ["10.0.0.0/16"]},
                "subnets": [
                    {
                        "name": "default",
                        "id": f"{vnet_id}/subnets/default",
                        "type": network.SUBNET_TYPE,
                        "properties": {"addressPrefix": "10.0.0.0/24"},
                    }
                ],
                "virtualNetworkPeerings": [],
            },
        }
        self.world.new_resource(ResourceId.parse(vnet_id), body, 0.0)
        return f"{vnet_id}/subnets/default"


def _seed_security(
    name: str, size: str, security_type: str, generation: str, secure_boot: bool, vtpm: bool
) -> tuple[dict[str, Any], dict[str, Any]]:
    """A seeded VM's securityProfile and its OS disk's security properties, refusing what Azure
    would never have created (the checks of a VM PUT, local/armsim/vms.py)."""
    offered = skus.vm_size(size)
    if offered is None:
        raise ValueError(f"VM {name}: size {size!r} is not one the simulator offers (skus.py)")
    if security_type not in vms.SECURITY_TYPES:
        raise ValueError(f"VM {name}: security_type must be one of {', '.join(vms.SECURITY_TYPES)}")
    if generation not in {"V1", "V2"}:
        raise ValueError(f"VM {name}: hyper_v_generation must be V1 or V2, not {generation!r}")
    if security_type != "Standard" and generation != "V2":
        raise ValueError(f"VM {name}: {security_type} needs hyper_v_generation V2")
    if generation not in offered.generations:
        raise ValueError(f"VM {name}: size {size} cannot boot Hypervisor Generation {generation}")
    if (security_type == "TrustedLaunch" and not offered.trusted_launch) or (
        security_type == "ConfidentialVM" and not offered.confidential
    ):
        raise ValueError(f"VM {name}: size {size} does not run {security_type} VMs")
    if security_type == "Standard":
        return {"securityType": "Standard"}, {}
    profile = {
        "securityType": security_type,
        "uefiSettings": {"secureBootEnabled": secure_boot, "vTpmEnabled": vtpm},
    }
    disk_type = (
        vms.CONFIDENTIAL_DISKS["VMGuestStateOnly"]
        if security_type == "ConfidentialVM"
        else security_type
    )
    return profile, {"securityProfile": {"securityType": disk_type}}
