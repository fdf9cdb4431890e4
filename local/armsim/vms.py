"""Microsoft.Compute virtual machines: list, get, PUT 201/200 (Azure-AsyncOperation), PATCH,
DELETE, instance view and Run Command."""

from __future__ import annotations

import copy
import json
from datetime import datetime
from typing import Any

from local.armsim.diskrp import DEFAULT_SKU, size_gb
from local.armsim.errors import ArmError, bad_request
from local.armsim.faults import normalise_region
from local.armsim.lro import async_headers, delete_reply, injected_failure, location_reply
from local.armsim.protocol import (
    DISK_TYPE,
    NIC_TYPE,
    VM_TYPE,
    Reply,
    Request,
    ResourceId,
    page,
)
from local.armsim.state import Resource, World

RUN_COMMANDS = {"RunShellScript", "RunPowerShellScript", "ifconfig", "ipconfig"}


def _ref(args: dict[str, str]) -> ResourceId:
    return ResourceId(args["sub"], args["rg"], VM_TYPE, args["name"])


def list_vms(world: World, request: Request, args: dict[str, str]) -> Reply:
    world.require_subscription(args["sub"])
    if "rg" in args:
        world.group(args["sub"], args["rg"])
    found = world.of_type(VM_TYPE, args["sub"], args.get("rg"))
    return page(request, [world.render(r) for r in found], world.page_size)


def get_vm(world: World, request: Request, args: dict[str, str]) -> Reply:
    return Reply(200, world.render(world.get(_ref(args))))


def render_vm(world: World, resource: Resource) -> dict[str, Any]:
    body = copy.deepcopy(resource.body)
    body.update(id=resource.id, name=resource.name, type=resource.type)
    properties = body.setdefault("properties", {})
    properties["provisioningState"] = resource.provisioning_state(world.now())
    properties["vmId"] = resource.uid
    properties["timeCreated"] = resource.created_at.isoformat()
    return body


def _attachable_disk(world: World, disk_id: str, vm_id: str, region: str) -> Resource:
    ref = ResourceId.parse(disk_id)
    if ref.type.lower() != DISK_TYPE.lower():
        raise bad_request(f"'{disk_id}' is not a managed disk id.")
    disk = world.find(str(ref))
    if disk is None:
        raise bad_request(f"The managed disk '{disk_id}' was not found.", "NotFound")
    if disk.location != region:
        raise bad_request(f"Disk '{disk.name}' is in '{disk.location}', the VM in '{region}'.")
    owner = disk.body.get("managedBy")
    if owner and str(owner).lower() != vm_id.lower():
        raise ArmError(409, "Conflict", f"Disk '{disk.name}' is already attached to '{owner}'.")
    if disk.provisioning_state(world.now()) != "Succeeded":
        raise ArmError(409, "Conflict", f"Disk '{disk.name}' is not ready.")
    return disk


def _implicit_disk(
    world: World, vm: ResourceId, name: str, region: str, size: int, sku: str, os_type: str | None
) -> Resource:
    """The managed disk Azure makes for a FromImage / Empty / Copy disk inside a VM PUT."""
    ref = ResourceId(vm.subscription, vm.resource_group, DISK_TYPE, name)
    properties: dict[str, Any] = {
        "creationData": {"createOption": "Empty"},
        "diskSizeGB": size,
    }
    if os_type:
        properties["osType"] = os_type
    body = {"location": region, "sku": {"name": sku}, "properties": properties}
    return world.new_resource(ref, body, 0.0)


def _prepare_storage(
    world: World, ref: ResourceId, vm_id: str, region: str, properties: dict[str, Any]
) -> list[Resource]:
    """Check and complete storageProfile; return the disks the VM will own."""
    storage = properties.get("storageProfile") or {}
    os_disk = storage.get("osDisk")
    if not isinstance(os_disk, dict):
        raise bad_request("Required parameter 'storageProfile.osDisk' is missing (null).")
    disks: list[Resource] = []
    option = os_disk.get("createOption")
    managed = os_disk.setdefault("managedDisk", {})
    if option == "Attach":
        if properties.get("osProfile"):
            raise bad_request("Parameter 'osProfile' is not allowed.")
        if os_disk.get("osType") not in {"Linux", "Windows"}:
            raise bad_request("Required parameter 'osDisk.osType' is missing (null).")
        disk = _attachable_disk(world, str(managed.get("id", "")), vm_id, region)
    elif option == "FromImage":
        profile = properties.get("osProfile")
        if not isinstance(profile, dict):
            raise bad_request("Required parameter 'osProfile' is missing (null).")
        image = json.dumps(storage.get("imageReference") or {}).lower()
        windows = "windowsConfiguration" in profile or "windows" in image
        os_disk.setdefault("osType", "Windows" if windows else "Linux")
        profile.setdefault("secrets", [])
        if windows:
            config = profile.setdefault("windowsConfiguration", {})
            config.setdefault("provisionVMAgent", True)
            config.setdefault("enableAutomaticUpdates", True)
        else:
            profile.setdefault("linuxConfiguration", {}).setdefault(
                "disablePasswordAuthentication", False
            )
        name = os_disk.setdefault(
            "name", f"{ref.name}_OsDisk_1_{world.new_uuid().replace('-', '')}"
        )
        size = int(os_disk.get("diskSizeGB") or (127 if windows else 30))
        sku = str(managed.get("storageAccountType") or DEFAULT_SKU)
        disk = _implicit_disk(world, ref, name, region, size, sku, os_disk["osType"])
    else:
        raise bad_request(f"osDisk.createOption '{option}' is not supported here.")
    _describe(os_disk, disk)
    disks.append(disk)
    for data_disk in storage.get("dataDisks") or []:
        if "lun" not in data_disk:
            raise bad_request("Required parameter 'dataDisks.lun' is missing (null).")
        managed = data_disk.setdefault("managedDisk", {})
        if data_disk.get("createOption") == "Attach":
            disk = _attachable_disk(world, str(managed.get("id", "")), vm_id, region)
        else:
            name = data_disk.setdefault(
                "name", f"{ref.name}_disk{data_disk['lun']}_{world.new_uuid().replace('-', '')}"
            )
            size = int(data_disk.get("diskSizeGB") or 32)
            sku = str(managed.get("storageAccountType") or DEFAULT_SKU)
            disk = _implicit_disk(world, ref, name, region, size, sku, None)
        _describe(data_disk, disk)
        data_disk.setdefault("caching", "None")
        data_disk.setdefault("toBeDetached", False)
        disks.append(disk)
    return disks


def _describe(entry: dict[str, Any], disk: Resource) -> None:
    """Fill a storageProfile disk entry from its managed disk, as Azure's GET shows it."""
    entry["name"] = disk.name
    entry["diskSizeGB"] = size_gb(disk)
    managed = entry.setdefault("managedDisk", {})
    managed["id"] = disk.id
    managed.setdefault("storageAccountType", (disk.body.get("sku") or {}).get("name", DEFAULT_SKU))


def _nics(world: World, properties: dict[str, Any], vm_id: str) -> list[Resource]:
    entries = (properties.get("networkProfile") or {}).get("networkInterfaces") or []
    if not entries:
        raise bad_request("A VM needs at least one network interface in networkProfile.")
    nics = []
    for entry in entries:
        nic = world.find(str(entry.get("id", "")))
        if nic is None or nic.type.lower() != NIC_TYPE.lower():
            raise bad_request(f"The network interface '{entry.get('id')}' was not found.")
        owner = (nic.properties.get("virtualMachine") or {}).get("id")
        if owner and str(owner).lower() != vm_id.lower():
            raise bad_request(f"NIC '{nic.name}' is used by VM '{owner}'.", "NicInUse")
        nics.append(nic)
    return nics


def put_vm(world: World, request: Request, args: dict[str, str]) -> Reply:
    ref = _ref(args)
    body = copy.deepcopy(request.json_object())
    existing = world.find(str(ref))
    if existing is not None:
        return _update(world, request, existing, body)
    group = world.group(ref.subscription, ref.resource_group)
    if not body.get("location"):
        raise bad_request("Required parameter 'location' is missing (null).")
    region = normalise_region(str(body["location"]))
    vm_id = str(ResourceId(group.subscription, group.name, VM_TYPE, ref.name))
    properties = body.setdefault("properties", {})
    if not (properties.get("hardwareProfile") or {}).get("vmSize"):
        raise bad_request("Required parameter 'hardwareProfile.vmSize' is missing (null).")
    nics = _nics(world, properties, vm_id)
    disks = _prepare_storage(world, ref, vm_id, region, properties)
    for disk in disks:
        disk.body["managedBy"] = vm_id
    for nic in nics:
        nic.properties["virtualMachine"] = {"id": vm_id}
    paths = (
        [request.path]
        + [d.id for d in disks]
        + [str(d.properties.get("creationData", {}).get("sourceResourceId", "")) for d in disks]
    )
    kinds = {"fail-operation", "never-boots", "guest-silent"}
    fired = {
        kind
        for kind in kinds
        if world.faults.take(request.operation, paths, region, frozenset({kind})) is not None
    }
    seconds = world.durations.vm_create_seconds
    vm = world.new_resource(
        ref,
        body,
        seconds,
        error=injected_failure() if "fail-operation" in fired else None,
        never_boots="never-boots" in fired,
        guest_silent="guest-silent" in fired,
    )
    vm.boots_at = world.later(seconds + world.durations.vm_boot_seconds)
    operation = world.start_operation(
        ref.subscription, "Microsoft.Compute", region, request.api_version, seconds, error=vm.error
    )
    return Reply(201, world.render(vm), async_headers(request, world, operation))


def _update(world: World, request: Request, vm: Resource, body: dict[str, Any]) -> Reply:
    """PUT/PATCH on an existing VM: tags and properties merged; disks marked toBeDetached let go."""
    if "tags" in body:
        vm.body["tags"] = dict(body["tags"] or {})
    _merge(vm.properties, body.get("properties") or {})
    for entry in (vm.properties.get("storageProfile") or {}).get("dataDisks") or []:
        entry.setdefault("caching", "None")
        managed = entry.setdefault("managedDisk", {})
        managed.setdefault("storageAccountType", DEFAULT_SKU)
        disk = world.find(str(managed.get("id", "")))
        if entry.get("toBeDetached") and disk is not None:
            disk.body.pop("managedBy", None)
    operation = world.start_operation(
        vm.ref.subscription, "Microsoft.Compute", vm.location, request.api_version, 0.0
    )
    return Reply(200, world.render(vm), async_headers(request, world, operation))


def _merge(target: dict[str, Any], changes: dict[str, Any]) -> None:
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge(target[key], value)
        elif isinstance(value, list) and key == "dataDisks" and isinstance(target.get(key), list):
            by_lun = {d.get("lun"): d for d in target[key]}
            for entry in value:
                if entry.get("lun") in by_lun:
                    _merge(by_lun[entry["lun"]], entry)
                else:
                    target[key].append(entry)
        else:
            target[key] = value


def patch_vm(world: World, request: Request, args: dict[str, str]) -> Reply:
    return _update(world, request, world.get(_ref(args)), request.json_object())


def delete_vm(world: World, request: Request, args: dict[str, str]) -> Reply:
    ref = _ref(args)
    world.group(ref.subscription, ref.resource_group)
    vm = world.find(str(ref))

    def release() -> None:
        assert vm is not None
        storage = vm.properties.get("storageProfile") or {}
        for entry in [storage.get("osDisk") or {}, *(storage.get("dataDisks") or [])]:
            disk = world.find(str((entry.get("managedDisk") or {}).get("id", "")))
            if disk is None:
                continue
            disk.body.pop("managedBy", None)
            if entry.get("deleteOption") == "Delete":
                world.remove(disk.id)
        for entry in (vm.properties.get("networkProfile") or {}).get("networkInterfaces") or []:
            nic = world.find(str(entry.get("id", "")))
            if nic is not None:
                nic.properties.pop("virtualMachine", None)

    return delete_reply(request, world, vm, "Microsoft.Compute", release)


def power_state(world: World, vm: Resource) -> str:
    """starting until the guest has booted; a never-booting guest stays starting."""
    now = world.now()
    if vm.error is not None:
        return "stopped"
    if vm.never_boots or now < vm.ready_at or (vm.boots_at is not None and now < vm.boots_at):
        return "starting"
    return "running"


def _status(code: str, display: str, when: datetime | None = None) -> dict[str, Any]:
    status: dict[str, Any] = {"code": code, "level": "Info", "displayStatus": display}
    if when is not None:
        status["time"] = when.isoformat()
    return status


def _patch_status(vm: Resource) -> dict[str, Any]:
    """Patch assessment as a freshly created VM reports it: nothing assessed or installed."""
    when = vm.created_at.isoformat()
    summary: dict[str, Any] = {"status": "Unknown", "startTime": when, "lastModifiedTime": when}
    counts = ("notSelected", "excluded", "pending", "installed", "failed")
    return {
        "availablePatchSummary": summary
        | {
            "assessmentActivityId": vm.uid,
            "rebootPending": False,
            "criticalAndSecurityPatchCount": 0,
            "otherPatchCount": 0,
        },
        "lastPatchInstallationSummary": summary
        | {"installationActivityId": vm.uid, "maintenanceWindowExceeded": False}
        | {f"{name}PatchCount": 0 for name in counts},
        "configurationStatuses": [],
    }


def instance_view(world: World, request: Request, args: dict[str, str]) -> Reply:
    vm = world.get(_ref(args))
    now = world.now()
    state = vm.provisioning_state(now).lower()
    power = power_state(world, vm)
    storage = vm.properties.get("storageProfile") or {}
    disk_names = [str(d.get("name")) for d in [storage.get("osDisk") or {}]] + [
        str(d.get("name")) for d in storage.get("dataDisks") or []
    ]
    windows = (storage.get("osDisk") or {}).get("osType") == "Windows"
    diagnostics = f"https://md-{vm.uid[:12]}.blob.storage.azure.net/bootdiagnostics"
    agent_ready = power == "running" and not vm.guest_silent
    body = {
        "platformUpdateDomain": 0,
        "platformFaultDomain": 0,
        "computerName": vm.name,
        "osName": "Windows Server 2022 Datacenter" if windows else "ubuntu",
        "osVersion": "10.0.20348" if windows else "22.04",
        "vmAgent": {
            "vmAgentVersion": "2.7.41491.1102" if agent_ready else "Unknown",
            "statuses": [
                _status("ProvisioningState/succeeded", "Ready", now)
                | {"message": "GuestAgent is running and accepting new configurations."}
                if agent_ready
                else _status("ProvisioningState/Unavailable", "Not Ready", now)
                | {"message": "VM status blob is found but not yet populated."}
            ],
            "extensionHandlers": [],
        },
        "disks": [
            {"name": name, "statuses": [_status(f"ProvisioningState/{state}", state, vm.ready_at)]}
            for name in disk_names
        ],
        "bootDiagnostics": {
            "consoleScreenshotBlobUri": f"{diagnostics}/{vm.name}.{vm.uid}.screenshot.bmp",
            "serialConsoleLogBlobUri": f"{diagnostics}/{vm.name}.{vm.uid}.serialconsole.log",
        },
        "extensions": [],
        "hyperVGeneration": "V2",
        "patchStatus": _patch_status(vm),
        "isVMInStandbyPool": False,
        "statuses": [
            _status(f"ProvisioningState/{state}", f"Provisioning {state}", vm.ready_at),
            _status(f"PowerState/{power}", f"VM {power}"),
        ],
    }
    return Reply(200, body)


def run_command(world: World, request: Request, args: dict[str, str]) -> Reply:
    vm = world.get(_ref(args))
    command = request.json_object()
    if command.get("commandId") not in RUN_COMMANDS:
        raise bad_request(
            f"commandId '{command.get('commandId')}' is not one of "
            f"{', '.join(sorted(RUN_COMMANDS))}."
        )
    power = power_state(world, vm)
    if vm.provisioning_state(world.now()) != "Succeeded" or power != "running":
        raise ArmError(409, "Conflict", f"Run Command needs a running VM; '{vm.name}' is {power}.")
    error = None
    if vm.guest_silent or world.faults.take(
        request.operation, [request.path], vm.location, frozenset({"guest-silent"})
    ):
        error = ArmError(
            400,
            "VMAgentStatusCommunicationError",
            f"VM '{vm.name}' has not reported status for VM agent or extensions.",
        )
    elif world.faults.take(
        request.operation, [request.path], vm.location, frozenset({"fail-operation"})
    ):
        error = injected_failure()
    script = [str(line) for line in command.get("script") or []]
    stdout = "\n".join(line[5:].strip("'\"") for line in script if line.startswith("echo "))
    result = {
        "value": [
            {
                "code": "ComponentStatus/StdOut/succeeded",
                "level": "Info",
                "displayStatus": "Provisioning succeeded",
                "message": stdout,
            },
            {
                "code": "ComponentStatus/StdErr/succeeded",
                "level": "Info",
                "displayStatus": "Provisioning succeeded",
                "message": "",
            },
        ]
    }
    operation = world.start_operation(
        args["sub"],
        "Microsoft.Compute",
        vm.location,
        request.api_version,
        world.durations.run_command_seconds,
        result=lambda: result,
        error=error,
    )
    return location_reply(request, world, operation)
