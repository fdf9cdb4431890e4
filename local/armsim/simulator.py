"""ArmSimulator: the Python API tests, the demo and the CLI use to run and steer the simulator."""

from __future__ import annotations

import copy
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from local.armsim import diskrp, network, vms
from local.armsim.authz import Authorization
from local.armsim.durations import Durations
from local.armsim.faults import FaultRule, normalise_region
from local.armsim.protocol import (
    DISK_TYPE,
    NIC_TYPE,
    SNAPSHOT_TYPE,
    VM_TYPE,
    VNET_TYPE,
    ResourceId,
    make_id,
)
from local.armsim.server import ArmServer, serving
from local.armsim.state import RequestRecord, Resource, World
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
        address_prefix}]}]."""
        with self.world.lock:
            group = self.world.add_group(subscription, name, region, dict(tags or {}))
            for vnet in vnets:
                vnet_id = make_id(subscription, name, VNET_TYPE, vnet["name"])
                subnets = [
                    {
                        "name": s["name"],
                        "id": f"{vnet_id}/subnets/{s['name']}",
                        "type": network.SUBNET_TYPE,
                        "properties": {"addressPrefix": s["address_prefix"]},
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
    ) -> dict[str, Any]:
        """A running VM with its managed disks and NIC, as a fleet seeds it.

        Disk specs: {size_gb, sku, change_gib_per_day} (data disks also {lun}).
        """
        if os_type not in {"Linux", "Windows"}:
            raise ValueError(f"VM {name}: os_type must be Linux or Windows, not {os_type!r}")
        with self.world.lock:
            group = self.world.group(subscription, resource_group)
            location = normalise_region(region or group.location)
            zones = [zone] if zone else None
            vm_id = make_id(subscription, group.name, VM_TYPE, name)

            def disk(disk_name: str, spec: Mapping[str, Any], os: bool) -> Resource:
                properties: dict[str, Any] = {
                    "creationData": {"createOption": "FromImage" if os else "Empty"},
                    "diskSizeGB": int(spec.get("size_gb", 30 if os else 128)),
                }
                if os:
                    properties["osType"] = os_type
                body: dict[str, Any] = {
                    "location": location,
                    "sku": {"name": str(spec.get("sku", "Premium_LRS"))},
                    "managedBy": vm_id,
                    "properties": properties,
                }
                if zones:
                    body["zones"] = zones
                ref = ResourceId(subscription, group.name, DISK_TYPE, disk_name)
                return self.world.new_resource(
                    ref, body, 0.0, change_gib_per_day=float(spec.get("change_gib_per_day", 1.0))
                )

            def entry(resource: Resource, extra: dict[str, Any]) -> dict[str, Any]:
                return {
                    **extra,
                    "name": resource.name,
                    "diskSizeGB": diskrp.size_gb(resource),
                    "managedDisk": {
                        "id": resource.id,
                        "storageAccountType": resource.body["sku"]["name"],
                    },
                    "caching": "ReadWrite",
                }

            os_resource = disk(f"{name}-osdisk", os_disk or {}, os=True)
            data_entries = []
            for index, spec in enumerate(data_disks):
                lun = int(spec.get("lun", index))
                data = disk(f"{name}-data{lun}", spec, os=False)
                data_entries.append(entry(data, {"lun": lun, "createOption": "Attach"}))
            nic_ref = ResourceId(subscription, group.name, NIC_TYPE, f"{name}-nic")
            self.world.new_resource(
                nic_ref,
                {
                    "location": location,
                    "properties": {
                        "ipConfigurations": [
                            {"name": "ipconfig1", "properties": {"primary": True}}
                        ],
                        "virtualMachine": {"id": vm_id},
                    },
                },
                0.0,
            )
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
                },
            }
            if zones:
                body["zones"] = zones
            vm = self.world.new_resource(ResourceId.parse(vm_id), body, 0.0)
            vm.boots_at = vm.ready_at
            return self.world.render(vm)
