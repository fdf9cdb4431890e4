"""Load a fleet file (JSON) into a simulator; the schema is in local/armsim/__init__.py."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from local.armsim.simulator import ArmSimulator

_VM_KEYS = {
    "name",
    "resource_group",
    "size",
    "os_type",
    "zone",
    "tags",
    "os_disk",
    "data_disks",
    "region",
    "security_type",
    "hyper_v_generation",
    "secure_boot",
    "vtpm",
    "subnet",
    "accelerated_networking",
    "private_ip",
    "license_type",
    "boot_diagnostics",
}
_RESTRICTION_KEYS = {"size", "region", "zones", "reason"}
_VNET_KEYS = {"name", "address_prefix", "subnets"}
_SUBNET_KEYS = {"name", "address_prefix", "isolated"}


class FleetError(ValueError):
    """The fleet file does not follow the schema; the message says where."""


def load_fleet(sim: ArmSimulator, fleet: Mapping[str, Any] | str | Path) -> None:
    """Seed subscriptions, resource groups (with VNets) and VMs (with disks) into `sim`."""
    if isinstance(fleet, Mapping):
        data: Any = fleet
    else:
        try:
            data = json.loads(Path(fleet).read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            raise FleetError(f"fleet {fleet}: cannot read it as JSON ({error})") from None
    subscriptions = data.get("subscriptions") if isinstance(data, Mapping) else None
    if not isinstance(subscriptions, list) or not subscriptions:
        raise FleetError("fleet: needs a non-empty 'subscriptions' list")
    for s_index, subscription in enumerate(subscriptions):
        where = f"fleet: subscriptions[{s_index}]"
        sub_id = _text(subscription, "id", where)
        sim.add_subscription(sub_id)
        for g_index, group in enumerate(subscription.get("resource_groups", [])):
            at = f"{where}.resource_groups[{g_index}]"
            vnets = group.get("vnets", []) if isinstance(group, Mapping) else []
            _check_vnets(vnets, at)
            try:
                sim.add_group(
                    sub_id,
                    _text(group, "name", at),
                    _text(group, "region", at),
                    group.get("tags"),
                    vnets,
                )
            except ValueError as error:
                raise FleetError(f"{at}: {error}") from None
        for r_index, restriction in enumerate(subscription.get("sku_restrictions", [])):
            at = f"{where}.sku_restrictions[{r_index}]"
            _known(restriction, _RESTRICTION_KEYS, at)
            try:
                sim.restrict_size(
                    sub_id,
                    _text(restriction, "size", at),
                    _text(restriction, "region", at),
                    zones=list(restriction.get("zones", [])),
                    reason=str(restriction.get("reason", "NotAvailableForSubscription")),
                )
            except ValueError as error:
                raise FleetError(f"{at}: {error}") from None
        for v_index, vm in enumerate(subscription.get("vms", [])):
            at = f"{where}.vms[{v_index}]"
            _known(vm, _VM_KEYS, at)
            spec = dict(vm)
            name = _text(spec, "name", at)
            group_name = _text(spec, "resource_group", f"{at} ({name})")
            del spec["name"], spec["resource_group"]
            try:
                sim.add_vm(sub_id, group_name, name, **spec)
            except Exception as error:  # the one-line reason, with where it happened
                raise FleetError(f"{at} ({name}): {error}") from None


def _check_vnets(vnets: Any, at: str) -> None:
    """VNets and their subnets name only the keys the schema knows."""
    for v_index, vnet in enumerate(vnets):
        _known(vnet, _VNET_KEYS, f"{at}.vnets[{v_index}]")
        for s_index, subnet in enumerate(vnet.get("subnets", [])):
            _known(subnet, _SUBNET_KEYS, f"{at}.vnets[{v_index}].subnets[{s_index}]")


def _known(item: Any, keys: set[str], at: str) -> None:
    unknown = set(item) - keys if isinstance(item, Mapping) else set()
    if unknown:
        raise FleetError(f"{at}: unknown keys {', '.join(sorted(unknown))}")


def _text(item: Any, key: str, where: str) -> str:
    value = item.get(key) if isinstance(item, Mapping) else None
    if not isinstance(value, str) or not value:
        raise FleetError(f"{where}: '{key}' must be a non-empty string")
    return value
