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

# The Run Command ids served, and the OS each one runs on.
RUN_COMMANDS = {
    "RunShellScript": "Linux",
    "ifconfig": "Linux",
    "RunPowerShellScript": "Windows",
    "ipconfig": "Windows",
}


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
        state = nic.provisioning_state(world.now())
        if state != "Succeeded":
            raise _not_provisioned(nic, vm_id, state)
        nics.append(nic)
    return nics


def _not_provisioned(nic: Resource, vm_id: str, state: str) -> ArmError:
    """What ARM answers a write that uses a resource still being written (terraform#7986 shows
    it from Microsoft.Network: 429 RetryableError, detail ReferencedResourceNotProvisioned)."""
    return ArmError(
        429,
        "RetryableError",
        f"ReferencedResourceNotProvisioned: Cannot proceed with operation because resource "
        f"{nic.id} used by resource {vm_id} is not in Succeeded state. Resource is in {state} "
        "state.",
    )


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

    seconds = world.durations.vm_delete_seconds
    return delete_reply(request, world, vm, "Microsoft.Compute", seconds, release)


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
    """POST runCommand: 202 with Location and Azure-AsyncOperation (as Azure answers it,
    azure-powershell#8848); the result is readable at the Location after a varied time."""
    vm = world.get(_ref(args))
    command = request.json_object()
    command_id = str(command.get("commandId"))
    if command_id not in RUN_COMMANDS:
        raise bad_request(
            f"commandId '{command_id}' is not one of {', '.join(sorted(RUN_COMMANDS))}."
        )
    _check_runnable(world, vm, RUN_COMMANDS[command_id])
    script = [str(line) for line in command.get("script") or []]
    echoed = [line[5:].strip("'\"") for line in script if line.startswith("echo ")]
    result = _command_result(RUN_COMMANDS[command_id], echoed)
    expected = world.durations.run_command_seconds
    operation = world.start_operation(
        args["sub"],
        "Microsoft.Compute",
        vm.location,
        request.api_version,
        world.varied(expected, f"runcommand:{vm.id.lower()}"),
        result=lambda: result,
        error=_command_error(world, request, vm),
        expected_seconds=expected,
    )
    vm.command_until = operation.done_at
    reply = location_reply(request, world, operation)
    reply.headers["Azure-AsyncOperation"] = operation.url(request.base_url, monitor=False)
    return reply


def _check_runnable(world: World, vm: Resource, command_os: str) -> None:
    """Azure's 409s: the VM is not running, the command is for the other OS
    (MicrosoftDocs/azure-docs#116419), or a command still runs in the guest (azure-cli#19137)."""
    now = world.now()
    power = power_state(world, vm)
    if vm.provisioning_state(now) != "Succeeded" or power != "running":
        raise ArmError(409, "Conflict", f"Run command needs a running VM; '{vm.name}' is {power}.")
    vm_os = ((vm.properties.get("storageProfile") or {}).get("osDisk") or {}).get("osType")
    if vm_os != command_os:
        raise ArmError(
            409,
            "Conflict",
            f"Run command OS type '{command_os}' does not match the target OS {vm_os}.",
        )
    if vm.command_until is not None and now < vm.command_until:
        raise ArmError(
            409,
            "Conflict",
            "Run command extension execution is in progress. Please wait for completion before "
            "invoking a run command.",
        )


def _command_error(world: World, request: Request, vm: Resource) -> ArmError | None:
    """How an accepted command ends when the guest never runs it (silent agent, injected)."""
    if vm.guest_silent or world.faults.take(
        request.operation, [request.path], vm.location, frozenset({"guest-silent"})
    ):
        return ArmError(
            400,
            "VMAgentStatusCommunicationError",
            f"VM '{vm.name}' has not reported status for VM agent or extensions.",
        )
    if world.faults.take(
        request.operation, [request.path], vm.location, frozenset({"fail-operation"})
    ):
        return injected_failure()
    return None


def _command_result(command_os: str, echoed: list[str]) -> dict[str, Any]:
    """Run Command's answer in the shape Azure gives for each OS.

    Linux (RunShellScript): ONE status, `ProvisioningState/succeeded`, whose message holds both
    streams, "Enable succeeded: \n[stdout]\n...\n[stderr]\n..." (real answers quoted in
    azure-cli issues #32286 and #25948; the docs have no official Linux example). Windows
    (RunPowerShellScript): one status per stream, `ComponentStatus/StdOut/succeeded` and
    `ComponentStatus/StdErr/succeeded` (the official example VirtualMachineRunCommand.json,
    ComputeRP 2025-04-01, in ../shared/azure-rest-examples).
    """
    done = {"level": "Info", "displayStatus": "Provisioning succeeded"}
    if command_os == "Linux":
        stdout = "".join(f"{line}\n" for line in echoed)
        message = f"Enable succeeded: \n[stdout]\n{stdout}\n[stderr]\n"
        return {"value": [{"code": "ProvisioningState/succeeded", **done, "message": message}]}
    return {
        "value": [
            {"code": "ComponentStatus/StdOut/succeeded", **done, "message": "\n".join(echoed)},
            {"code": "ComponentStatus/StdErr/succeeded", **done, "message": ""},
        ]
    }
