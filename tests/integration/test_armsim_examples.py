"""Every official Azure REST example for a call the simulator serves, replayed over HTTPS.

The request (path parameters + body) must be accepted, and the answer must carry one of the
example's status codes and, for that code, every response field of the example with the same JSON
type. A 202 is followed to its end (Location) and compared with the example's 200 as well.
The api-version sent is the one the pinned SDK sends for that provider (the simulator accepts only
those); the examples' own versions are checked to be refused with InvalidApiVersionParameter.
"""

from __future__ import annotations

import json
import os
import re
import urllib.parse
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import requests

from local.armsim import ArmServer, ArmSimulator
from local.armsim.authz import OWNER_TOKEN
from local.armsim.protocol import ResourceId
from local.armsim.routes import COMPUTE, DISKS, NETWORK, RESOURCES
from shared.clock import VirtualClock

EXAMPLES = Path(__file__).resolve().parents[3] / "shared" / "azure-rest-examples" / "examples"
# The examples are the team's reference folder beside the clone (../shared): CI lays it out and
# requires the replay; a user's clone has none, and skips it saying why.
if not EXAMPLES.is_dir() and os.environ.get("BACKUPDR_REQUIRE_EXAMPLES") != "1":
    pytest.skip(
        f"no official Azure REST examples at {EXAMPLES} (../shared beside the clone) to replay",
        allow_module_level=True,
    )
SUB = "11111111-2222-3333-4444-555555555555"
PLACEHOLDERS = ("{subscription-id}", "{subscriptionId}")

_RG = "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}"
_C = _RG + "/providers/Microsoft.Compute"
_N = _RG + "/providers/Microsoft.Network"
_V = (next(iter(COMPUTE)), next(iter(DISKS)), next(iter(NETWORK)), next(iter(RESOURCES)))
VM_API, DISK_API, NET_API, RES_API = _V

# file -> (method, path template, api-version, body parameter, extra query parameters)
CALLS: dict[str, tuple[str, str, str, str | None, tuple[str, ...]]] = {
    "Disk_BeginGetAccess": (
        "POST",
        _C + "/disks/{diskName}/beginGetAccess",
        DISK_API,
        "grantAccessData",
        (),
    ),
    "Disk_Create_ByCopyingASnapshot": ("PUT", _C + "/disks/{diskName}", DISK_API, "disk", ()),
    "Disk_Delete": ("DELETE", _C + "/disks/{diskName}", DISK_API, None, ()),
    "Disk_EndGetAccess": ("POST", _C + "/disks/{diskName}/endGetAccess", DISK_API, None, ()),
    "Disk_Get": ("GET", _C + "/disks/{diskName}", DISK_API, None, ()),
    "Snapshot_BeginGetAccess": (
        "POST",
        _C + "/snapshots/{snapshotName}/beginGetAccess",
        DISK_API,
        "grantAccessData",
        (),
    ),
    "Snapshot_Create_EnhancedProvisionedBandwidthCopySpeed": (
        "PUT",
        _C + "/snapshots/{snapshotName}",
        DISK_API,
        "snapshot",
        (),
    ),
    "Snapshot_Create_FromAnExistingSnapshot": (
        "PUT",
        _C + "/snapshots/{snapshotName}",
        DISK_API,
        "snapshot",
        (),
    ),
    "Snapshot_Create_FromAnExistingSnapshotInDifferentRegion": (
        "PUT",
        _C + "/snapshots/{snapshotName}",
        DISK_API,
        "snapshot",
        (),
    ),
    "Snapshot_Create_InstantAccessSnapshot": (
        "PUT",
        _C + "/snapshots/{snapshotName}",
        DISK_API,
        "snapshot",
        (),
    ),
    "Snapshot_Delete": ("DELETE", _C + "/snapshots/{snapshotName}", DISK_API, None, ()),
    "Snapshot_EndGetAccess": (
        "POST",
        _C + "/snapshots/{snapshotName}/endGetAccess",
        DISK_API,
        None,
        (),
    ),
    "Snapshot_Get": ("GET", _C + "/snapshots/{snapshotName}", DISK_API, None, ()),
    "Snapshot_GetIncrementalSnapshot": (
        "GET",
        _C + "/snapshots/{snapshotName}",
        DISK_API,
        None,
        (),
    ),
    "Snapshot_ListByResourceGroup": ("GET", _C + "/snapshots", DISK_API, None, ()),
    "Snapshot_ListBySubscription": (
        "GET",
        "/subscriptions/{subscriptionId}/providers/Microsoft.Compute/snapshots",
        DISK_API,
        None,
        (),
    ),
    "Snapshot_Update": ("PATCH", _C + "/snapshots/{snapshotName}", DISK_API, "snapshot", ()),
    "VirtualMachineRunCommand": (
        "POST",
        _C + "/virtualMachines/{vmName}/runCommand",
        VM_API,
        "parameters",
        (),
    ),
    "VirtualMachine_Create_WithDataDisksFromSourceResource": (
        "PUT",
        _C + "/virtualMachines/{vmName}",
        VM_API,
        "parameters",
        (),
    ),
    "VirtualMachine_Create_WithDiskEncryptionSetResource": (
        "PUT",
        _C + "/virtualMachines/{vmName}",
        VM_API,
        "parameters",
        (),
    ),
    "VirtualMachine_Delete_Force": (
        "DELETE",
        _C + "/virtualMachines/{vmName}",
        VM_API,
        None,
        ("forceDeletion",),
    ),
    "VirtualMachine_Get": ("GET", _C + "/virtualMachines/{vmName}", VM_API, None, ("$expand",)),
    "VirtualMachine_Get_InstanceView": (
        "GET",
        _C + "/virtualMachines/{vmName}/instanceView",
        VM_API,
        None,
        (),
    ),
    "VirtualMachine_ListAll_MinimumSet_Gen": (
        "GET",
        "/subscriptions/{subscriptionId}/providers/Microsoft.Compute/virtualMachines",
        VM_API,
        None,
        (),
    ),
    "VirtualMachine_Update_DetachDataDiskUsingToBeDetachedProperty": (
        "PATCH",
        _C + "/virtualMachines/{vmName}",
        VM_API,
        "parameters",
        (),
    ),
    "NetworkInterfaceCreate": (
        "PUT",
        _N + "/networkInterfaces/{networkInterfaceName}",
        NET_API,
        "parameters",
        (),
    ),
    "NetworkInterfaceDelete": (
        "DELETE",
        _N + "/networkInterfaces/{networkInterfaceName}",
        NET_API,
        None,
        (),
    ),
    "VirtualNetworkCreateSubnet": (
        "PUT",
        _N + "/virtualNetworks/{virtualNetworkName}",
        NET_API,
        "parameters",
        (),
    ),
    "VirtualNetworkDelete": (
        "DELETE",
        _N + "/virtualNetworks/{virtualNetworkName}",
        NET_API,
        None,
        (),
    ),
    "CreateResourceGroup": (
        "PUT",
        "/subscriptions/{subscriptionId}/resourcegroups/{resourceGroupName}",
        RES_API,
        "parameters",
        (),
    ),
    "ResourceGroups_Get": (
        "GET",
        "/subscriptions/{subscriptionId}/resourcegroups/{resourceGroupName}",
        RES_API,
        None,
        (),
    ),
    "PatchTagsResource": (
        "PATCH",
        "/{scope}/providers/Microsoft.Resources/tags/default",
        RES_API,
        "parameters",
        (),
    ),
    "PatchTagsSubscription": (
        "PATCH",
        "/{scope}/providers/Microsoft.Resources/tags/default",
        RES_API,
        "parameters",
        (),
    ),
}

NOT_SERVED = {
    "PublicIpAddressCreateDefaults": "public IPs: restored VMs live in an isolated VNet with no "
    "public address (DESIGN), so the gateway never creates or deletes one",
    "PublicIpAddressCreateCustomizedValues": "public IPs: backupdr never creates one",
    "PublicIpAddressDelete": "public IPs: never created by backupdr (isolated VNet)",
    "ForceDeleteVMsInResourceGroup": "resource group delete: the DR-test and backup groups are "
    "pre-provisioned by infra and the app never deletes a group",
}


def _load(path: Path) -> dict[str, Any]:
    text = path.read_text(encoding="utf-8")
    for placeholder in PLACEHOLDERS:
        text = text.replace(placeholder, SUB)
    text = re.sub(r"(?i)(subscriptions/|\"subscriptionId\": \")[0-9a-f-]{36}", rf"\g<1>{SUB}", text)
    data: dict[str, Any] = json.loads(text)
    return data


def _example_files() -> list[Path]:
    return sorted(EXAMPLES.glob("*/*.json")) if EXAMPLES.is_dir() else []


def _ids(value: Any) -> Iterator[str]:
    """Every full resource id mentioned anywhere in an example."""
    if isinstance(value, dict):
        for item in value.values():
            yield from _ids(item)
    elif isinstance(value, list):
        for item in value:
            yield from _ids(item)
    elif isinstance(value, str) and "/resourceGroups/" in value.replace(
        "resourcegroups", "resourceGroups"
    ):
        yield value


def _doc(location: str = "westus", **properties: Any) -> dict[str, Any]:
    return {"location": location, "properties": properties}


def _prepare(sim: ArmSimulator, name: str, example: dict[str, Any]) -> None:
    """Create what the example's request assumes already exists."""
    params = example["parameters"]
    sim.add_subscription(SUB)
    for text in _ids(example):
        try:
            ref = ResourceId.parse(text.split("/subnets/")[0].split("/ipConfigurations/")[0])
        except Exception:  # noqa: S112 - not a resource id after all (a blob URL, say)
            continue
        sim.add_group(ref.subscription, ref.resource_group, "westus")
    if "resourceGroupName" in params and name != "CreateResourceGroup":
        sim.add_group(SUB, params["resourceGroupName"], "westus")
    body = next((v for v in params.values() if isinstance(v, dict)), {})
    location = str(body.get("location", "westus"))
    source = ((body.get("properties") or {}).get("creationData") or {}).get("sourceResourceId")
    rg = f"/subscriptions/{SUB}/resourceGroups/{params.get('resourceGroupName')}"
    copy_snapshot = {"createOption": "Copy", "sourceResourceId": f"{rg}/providers/x/y/z"}
    if source:
        copying = "CopyStart" in json.dumps(body)
        far = "eastus" if copying else location
        kind = "disks" if "/disks/" in source else "snapshots"
        # CopyStart copies only an incremental snapshot (local/armsim/copystart.py).
        extra = {"incremental": True} if copying else {}
        document = _doc(far, diskSizeGB=128, creationData=copy_snapshot, **extra)
        sim.seed(source, document | {"kind": kind})
    response = example["responses"].get("200", {}).get("body") or {}
    if name in {
        "Disk_Get",
        "Snapshot_Get",
        "Snapshot_GetIncrementalSnapshot",
        "VirtualMachine_Get",
        "VirtualMachine_Update_DetachDataDiskUsingToBeDetachedProperty",
    }:
        sim.seed(response.get("id") or f"{rg}/providers/{_type(name)}/{_name(params)}", response)
    if name in {
        "Snapshot_ListByResourceGroup",
        "Snapshot_ListBySubscription",
        "VirtualMachine_ListAll_MinimumSet_Gen",
    }:
        for item in response["value"]:
            sim.seed(item["id"], item)
    if name in {
        "Disk_Delete",
        "Disk_BeginGetAccess",
        "Disk_EndGetAccess",
        "Snapshot_Delete",
        "Snapshot_BeginGetAccess",
        "Snapshot_EndGetAccess",
        "Snapshot_Update",
    }:
        sim.seed(
            f"{rg}/providers/{_type(name)}/{_name(params)}",
            _doc(diskSizeGB=128, creationData=copy_snapshot),
        )
    if name in {
        "VirtualMachine_Delete_Force",
        "VirtualMachine_Get_InstanceView",
        "VirtualMachineRunCommand",
    }:
        sim.add_group(SUB, params["resourceGroupName"], "westus")
        windows = name == "VirtualMachineRunCommand"  # it runs RunPowerShellScript
        os_type = "Windows" if windows else "Linux"
        sim.add_vm(SUB, params["resourceGroupName"], params["vmName"], os_type=os_type)
    if name.startswith("VirtualMachine_Create"):
        for nic in body["properties"]["networkProfile"]["networkInterfaces"]:
            sim.seed(nic["id"], _doc(location, ipConfigurations=[]))
        for disk in body["properties"]["storageProfile"].get("dataDisks", []):
            if disk.get("createOption") == "Attach":
                sim.seed(
                    disk["managedDisk"]["id"],
                    _doc(location, diskSizeGB=1023, creationData={"createOption": "Empty"}),
                )
    if name == "NetworkInterfaceCreate":
        for config in body["properties"]["ipConfigurations"]:
            if "subnet" not in config["properties"]:
                continue
            vnet_id = config["properties"]["subnet"]["id"].split("/subnets/")[0]
            vnet = ResourceId.parse(vnet_id)
            sim.add_group(SUB, vnet.resource_group, "westus")
            sim.world.resources.pop(vnet_id.lower(), None)
            subnet = config["properties"]["subnet"]["id"].rsplit("/", 1)[1]
            sim.add_group(
                SUB,
                vnet.resource_group,
                "westus",
                vnets=[
                    {
                        "name": vnet.name,
                        "address_prefix": "10.0.0.0/16",
                        "subnets": [{"name": subnet, "address_prefix": "10.0.0.0/24"}],
                    }
                ],
            )
    if name == "NetworkInterfaceDelete":
        sim.seed(
            f"{rg}/providers/Microsoft.Network/networkInterfaces/test-nic",
            _doc(ipConfigurations=[]),
        )
    if name == "VirtualNetworkDelete":
        sim.seed(f"{rg}/providers/Microsoft.Network/virtualNetworks/test-vnet", _doc(subnets=[]))
    if name == "ResourceGroups_Get":
        sim.add_group(SUB, params["resourceGroupName"], "westus")
    if name == "PatchTagsResource":
        sim.seed("/" + params["scope"], {"location": "westus", "tags": {}})


def _type(name: str) -> str:
    if name.startswith("Disk"):
        return "Microsoft.Compute/disks"
    if name.startswith("Snapshot"):
        return "Microsoft.Compute/snapshots"
    return "Microsoft.Compute/virtualMachines"


def _name(params: dict[str, Any]) -> str:
    return str(params.get("diskName") or params.get("snapshotName") or params.get("vmName"))


def _shape_errors(expected: Any, actual: Any, where: str = "") -> list[str]:
    """Where `actual` lacks a field of `expected` or has it with another JSON type."""
    if expected is None:
        return []
    kinds = {
        bool: "boolean",
        int: "number",
        float: "number",
        str: "string",
        list: "array",
        dict: "object",
    }
    if kinds[type(expected)] != kinds.get(type(actual), "null"):
        return [f"{where or '/'}: expected {kinds[type(expected)]}, got {actual!r:.60}"]
    if isinstance(expected, dict):
        return [
            error
            for key, value in expected.items()
            if value is not None  # null says nothing about the field's type
            for error in (
                _shape_errors(value, actual[key], f"{where}/{key}")
                if key in actual
                else [f"{where}/{key}: missing"]
            )
        ]
    if isinstance(expected, list) and expected and actual:
        by_name = {
            item["name"]: item for item in actual if isinstance(item, dict) and "name" in item
        }
        return [
            error
            for index, item in enumerate(expected)
            for error in _shape_errors(
                item,
                by_name.get(item["name"])
                if isinstance(item, dict) and "name" in item and item["name"] in by_name
                else actual[min(index, len(actual) - 1)],
                f"{where}[{index}]",
            )
        ]
    return []


def _call(server: ArmServer, method: str, url: str, body: Any = None) -> requests.Response:
    return requests.request(
        method,
        url,
        json=body,
        headers={"Authorization": f"Bearer {OWNER_TOKEN}"},  # the simulator's ARM surface
        verify=str(server.ca_path),
        timeout=10,
    )


@pytest.fixture
def replay() -> Iterator[tuple[ArmSimulator, ArmServer]]:
    sim = ArmSimulator(clock=VirtualClock(datetime(2026, 1, 5, tzinfo=UTC)), throttle=False)
    with sim.serve() as server:
        yield sim, server


def _url(server: ArmServer, example: dict[str, Any], name: str, api: bool = True) -> str:
    _, template, version, _, extra = CALLS[name]
    params = example["parameters"]
    path = template.format(**{k: v for k, v in params.items() if isinstance(v, str)})
    query = {"api-version": version if api else params["api-version"]}
    query |= {key: str(params[key]) for key in extra}
    return f"{server.url}{path}?{urllib.parse.urlencode(query)}"


@pytest.mark.armsim
@pytest.mark.parametrize(
    "path", [p for p in _example_files() if p.stem not in NOT_SERVED], ids=lambda p: p.stem
)
def test_official_example_is_answered_in_its_shape(
    replay: tuple[ArmSimulator, ArmServer], path: Path
) -> None:
    sim, server = replay
    name = path.stem
    assert name in CALLS, f"{name}: a new example needs a row in CALLS or NOT_SERVED"
    example = _load(path)
    _prepare(sim, name, example)
    method, _, _, body_param, _ = CALLS[name]
    body = example["parameters"].get(body_param) if body_param else None
    answer = _call(server, method, _url(server, example, name), body)
    responses = example["responses"]
    assert str(answer.status_code) in responses, f"{answer.status_code}: {answer.text}"
    expected = responses[str(answer.status_code)]
    if isinstance(expected.get("body"), dict):
        assert _shape_errors(expected["body"], answer.json()) == []
    if "Location" in expected.get("headers", {}) or "location" in expected.get("headers", {}):
        assert answer.headers.get("Location")
    final = responses.get("200", {}).get("body")
    if answer.status_code == 202 and answer.headers.get("Location") and isinstance(final, dict):
        sim.advance(24 * 3600)
        done = _call(server, "GET", answer.headers["Location"])
        assert done.status_code == 200, done.text
        assert _shape_errors(final, done.json()) == []


@pytest.mark.armsim
@pytest.mark.parametrize(
    "name", ["Disk_Get", "VirtualMachine_Get", "NetworkInterfaceCreate"], ids=str
)
def test_example_api_version_other_than_the_sdks_is_refused(
    replay: tuple[ArmSimulator, ArmServer], name: str
) -> None:
    sim, server = replay
    example = _load(next(EXAMPLES.glob(f"*/{name}.json")))
    sim.add_subscription(SUB)
    answer = _call(server, "GET", _url(server, example, name, api=False))
    versions_differ = example["parameters"]["api-version"] != CALLS[name][2]
    assert answer.status_code == (400 if versions_differ else 404)
    if versions_differ:
        assert answer.json()["error"]["code"] == "InvalidApiVersionParameter"


def test_every_example_file_is_either_replayed_or_explained() -> None:
    names = {p.stem for p in _example_files()}
    assert names, f"BACKUPDR_REQUIRE_EXAMPLES=1: the examples must be at {EXAMPLES} (../shared)"
    assert names == set(CALLS) | set(NOT_SERVED)
