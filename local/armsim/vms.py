"""Microsoft.Compute virtual machines: list, get, PUT 201/200 (Azure-AsyncOperation), PATCH,
DELETE, instance view and Run Command."""

from __future__ import annotations

import copy
import json
from datetime import datetime
from typing import Any

from local.armsim import blobdata, skus
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
)
from local.armsim.state import Resource, World

# The Run Command ids served, and the OS each one runs on.
RUN_COMMANDS = {
    "RunShellScript": "Linux",
    "ifconfig": "Linux",
    "RunPowerShellScript": "Windows",
    "ipconfig": "Windows",
}


# VM security types (securityProfile.securityType). Since Compute API 2025-11-01 a VM without
# one reports "Standard" (azure-mgmt-compute's SecurityTypes: "returns a Standard value starting
# API version 2025-11-01"); the simulator serves only later versions.
SECURITY_TYPES = ("Standard", "TrustedLaunch", "ConfidentialVM")
# A Confidential VM's OS disk encryption (the VM PUT's osDisk.managedDisk.securityProfile) and
# the disk security type (DiskSecurityTypes) it goes with.
CONFIDENTIAL_DISKS = {
    "VMGuestStateOnly": "ConfidentialVM_VMGuestStateOnlyEncryptedWithPlatformKey",
    "DiskWithVMGuestState": "ConfidentialVM_DiskEncryptedWithPlatformKey",
}
_EXPANDS = frozenset({"instanceview", "userdata", "resiliencyview"})  # InstanceViewTypes
# Azure's messages for the capacity refusals and failures of a VM create.
ALLOCATION_FAILED = (
    "Allocation failed. We do not have sufficient capacity for the requested VM size in this "
    "{where}. Read more about improving likelihood of allocation success at "
    "http://aka.ms/allocation-guidance"
)  # AllocationFailed ("region"), ZonalAllocationFailed ("zone"): openshift/release#5181


def _ref(args: dict[str, str]) -> ResourceId:
    return ResourceId(args["sub"], args["rg"], VM_TYPE, args["name"])


def list_vms(world: World, request: Request, args: dict[str, str]) -> Reply:
    return world.list_reply(VM_TYPE, request, args)


def get_vm(world: World, request: Request, args: dict[str, str]) -> Reply:
    """GET a VM; `$expand=instanceView` adds its instance view under properties.instanceView
    (the InstanceViewTypes the API accepts: instanceView, userData, resiliencyView)."""
    vm = world.get(_ref(args))
    body = world.render(vm)
    expand = request.query.get("$expand")
    if expand is not None:
        if expand.lower() not in _EXPANDS:
            raise bad_request(
                f"The value '{expand}' of parameter '$expand' is not valid. Allowed values are "
                "'instanceView', 'userData', 'resiliencyView'."
            )
        if expand.lower() == "instanceview":
            body["properties"]["instanceView"] = _instance_view(world, vm)
    return Reply(200, body)


def render_vm(world: World, resource: Resource) -> dict[str, Any]:
    body = copy.deepcopy(resource.body)
    body.update(id=resource.id, name=resource.name, type=resource.type)
    properties = body.setdefault("properties", {})
    properties["provisioningState"] = resource.provisioning_state(world.now())
    properties["vmId"] = resource.uid
    properties["timeCreated"] = resource.created_at.isoformat()
    properties.setdefault("securityProfile", {}).setdefault("securityType", "Standard")
    return body


def security_type(properties: dict[str, Any]) -> str:
    """A VM's security type from its PUT body ("Standard" when it names none)."""
    value = (properties.get("securityProfile") or {}).get("securityType") or "Standard"
    if value not in SECURITY_TYPES:
        raise bad_request(
            f"The value '{value}' of parameter 'securityProfile.securityType' is not valid. "
            f"Allowed values are {', '.join(repr(t) for t in SECURITY_TYPES)}."
        )
    return str(value)


def disk_security_type(disk: Resource) -> str:
    """The VM security type a managed disk boots under (its DiskSecurityTypes value)."""
    value = str((disk.properties.get("securityProfile") or {}).get("securityType") or "Standard")
    return "ConfidentialVM" if value.startswith("ConfidentialVM") else value


def _size(properties: dict[str, Any]) -> skus.VmSize:
    """The VM size a PUT asks for, or ARM's 400 for a size that does not exist."""
    name = str((properties.get("hardwareProfile") or {}).get("vmSize") or "")
    if not name:
        raise bad_request("Required parameter 'hardwareProfile.vmSize' is missing (null).")
    size = skus.vm_size(name)
    if size is None:  # the wording of ARM's answer (hashicorp/terraform-provider-azurerm users)
        raise bad_request(
            f"The value {name} provided for the VM size is not valid. The valid sizes in the "
            f"current region are: {','.join(s.name for s in skus.SIZES.values())}."
        )
    return size


def _check_security(
    properties: dict[str, Any], os_disk: dict[str, Any], disk: Resource, size: skus.VmSize
) -> str:
    """Refuse an OS disk the VM's security settings or size cannot boot; its generation.

    Azure's answers (all 400 BadRequest): "Security type of VM is not compatible with the
    security type of attached OS Disk." (Azure/azure-sdk-for-python#30479: a Trusted Launch
    disk attached without securityProfile.securityType); "Use of UEFI settings is not supported
    when security type is 'Standard'." (Azure/azure-cli#30728); "The VM size '<size>' is not
    supported for creation of VMs and Virtual Machine Scale Set with 'TrustedLaunch' security
    type." (Azure/azure-cli#28005, the same shape used here for ConfidentialVM); "The selected VM
    size '<size>' cannot boot Hypervisor Generation '<n>'. ..." (microsoft/ga4gh-tes#43,
    Azure/azure-cli users). A Confidential VM's OS disk must name its encryption type, which
    must match the disk's (the simulator's stricter reading; no public answer quoted).
    """
    wanted = security_type(properties)
    has = disk_security_type(disk)
    managed = os_disk.get("managedDisk") or {}
    encryption = (managed.get("securityProfile") or {}).get("securityEncryptionType")
    if wanted != has:
        raise ArmError(
            400,
            "BadRequest",
            "Security type of VM is not compatible with the security type of attached OS Disk.",
        )
    profile = properties.get("securityProfile") or {}
    if wanted == "Standard" and profile.get("uefiSettings"):
        raise ArmError(
            400,
            "BadRequest",
            "Use of UEFI settings is not supported when security type is 'Standard'.",
        )
    if wanted == "ConfidentialVM":
        if not encryption:
            raise bad_request(
                "Required parameter 'osDisk.managedDisk.securityProfile.securityEncryptionType' "
                "is missing (null)."
            )
        disk_type = (disk.properties.get("securityProfile") or {}).get("securityType")
        if CONFIDENTIAL_DISKS.get(str(encryption)) != disk_type:
            raise ArmError(
                400,
                "BadRequest",
                "Security type of VM is not compatible with the security type of attached OS Disk.",
            )
    _check_size_security(size, wanted)
    generation = str(disk.properties.get("hyperVGeneration") or "V1")
    _check_generation(size, generation)
    return generation


def _check_size_security(size: skus.VmSize, wanted: str) -> None:
    if (wanted == "TrustedLaunch" and not size.trusted_launch) or (
        wanted == "ConfidentialVM" and not size.confidential
    ):
        raise ArmError(
            400,
            "BadRequest",
            f"The VM size '{size.name}' is not supported for creation of VMs and Virtual Machine "
            f"Scale Set with '{wanted}' security type. For more information, see "
            "https://aka.ms/TrustedLaunch-FAQ",
        )


def _check_generation(size: skus.VmSize, generation: str) -> None:
    if generation not in size.generations:
        number = generation.lstrip("V")
        raise ArmError(
            400,
            "BadRequest",
            f"The selected VM size '{size.name}' cannot boot Hypervisor Generation '{number}'. "
            "If this was a Create operation please check that the Hypervisor Generation of the "
            "Image matches the Hypervisor Generation of the selected VM Size. If this was an "
            f"Update operation please select a Hypervisor Generation '{number}' VM Size. For "
            "more information, see https://aka.ms/azuregen2vm",
        )


def _attachable_disk(
    world: World, disk_id: str, vm_id: str, region: str, zones: list[str]
) -> Resource:
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
    blobdata.refuse_while_exported(world, disk, "Attaching it to a VM")
    _check_zone(disk, zones)
    return disk


def _check_zone(disk: Resource, zones: list[str]) -> None:
    """A zonal disk attaches only to a VM in its zone, a regional one only to a regional VM.

    ARM's words (400 BadRequest): "Disk <id> cannot be attached to the VM because it is not in
    the same zone as the VM. VM zone: '1'. Disk zone: '2'." (jenkins-infra/azure#1406) and
    "Disk <id> cannot be attached to the VM because it is not in zone '1'." (jrudlin/Azure#7, a
    regional disk). A zonal disk on a regional VM is refused too: the stricter reading.
    """
    disk_zones = [str(z) for z in disk.body.get("zones") or []]
    if disk_zones == zones:
        return
    if not disk_zones:
        message = f"it is not in zone '{zones[0]}'."
    elif zones:
        message = (
            f"it is not in the same zone as the VM. VM zone: '{zones[0]}'. "
            f"Disk zone: '{disk_zones[0]}'."
        )
    else:
        message = f"it is in zone '{disk_zones[0]}' and the VM is in no zone."
    raise ArmError(
        400, "BadRequest", f"Disk {disk.id} cannot be attached to the VM because {message}"
    )


def _implicit_disk(
    world: World,
    vm: ResourceId,
    name: str,
    region: str,
    size: int,
    sku: str,
    os_type: str | None,
    zones: list[str],
    os_facts: dict[str, Any] | None = None,
) -> Resource:
    """The managed disk Azure makes for a FromImage / Empty / Copy disk inside a VM PUT."""
    ref = ResourceId(vm.subscription, vm.resource_group, DISK_TYPE, name)
    properties: dict[str, Any] = {
        "creationData": {"createOption": "Empty"},
        "diskSizeGB": size,
    }
    if os_type:
        properties["osType"] = os_type
    properties.update(os_facts or {})
    body: dict[str, Any] = {"location": region, "sku": {"name": sku}, "properties": properties}
    if zones:
        body["zones"] = list(zones)
    return world.new_resource(ref, body, 0.0)


def _image_disk_facts(properties: dict[str, Any], size: skus.VmSize) -> dict[str, Any]:
    """The generation and security type of an OS disk made from an image for this VM: the
    newest generation the size boots, with the VM's security type."""
    wanted = security_type(properties)
    _check_size_security(size, wanted)
    facts: dict[str, Any] = {"hyperVGeneration": size.generations[-1]}
    if wanted == "TrustedLaunch":
        facts["securityProfile"] = {"securityType": "TrustedLaunch"}
    elif wanted == "ConfidentialVM":
        facts["securityProfile"] = {"securityType": CONFIDENTIAL_DISKS["VMGuestStateOnly"]}
    return facts


def _prepare_storage(
    world: World,
    ref: ResourceId,
    vm_id: str,
    region: str,
    properties: dict[str, Any],
    size: skus.VmSize,
    zones: list[str],
    created: list[Resource],
) -> tuple[list[Resource], str]:
    """Check and complete storageProfile; the disks the VM will own and the generation it
    boots. Disks made inside the PUT are added to `created` (to undo a refused create)."""
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
        disk = _attachable_disk(world, str(managed.get("id", "")), vm_id, region, zones)
        generation = _check_security(properties, os_disk, disk, size)
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
        gib = int(os_disk.get("diskSizeGB") or (127 if windows else 30))
        sku = str(managed.get("storageAccountType") or DEFAULT_SKU)
        facts = _image_disk_facts(properties, size)
        disk = _implicit_disk(world, ref, name, region, gib, sku, os_disk["osType"], zones, facts)
        created.append(disk)
        generation = str(facts["hyperVGeneration"])
    else:
        raise bad_request(f"osDisk.createOption '{option}' is not supported here.")
    _describe(os_disk, disk)
    disks.append(disk)
    for data_disk in storage.get("dataDisks") or []:
        if "lun" not in data_disk:
            raise bad_request("Required parameter 'dataDisks.lun' is missing (null).")
        managed = data_disk.setdefault("managedDisk", {})
        if data_disk.get("createOption") == "Attach":
            disk = _attachable_disk(world, str(managed.get("id", "")), vm_id, region, zones)
        else:
            name = data_disk.setdefault(
                "name", f"{ref.name}_disk{data_disk['lun']}_{world.new_uuid().replace('-', '')}"
            )
            gib = int(data_disk.get("diskSizeGB") or 32)
            sku = str(managed.get("storageAccountType") or DEFAULT_SKU)
            disk = _implicit_disk(world, ref, name, region, gib, sku, None, zones)
            created.append(disk)
        _describe(data_disk, disk)
        data_disk.setdefault("caching", "None")
        data_disk.setdefault("toBeDetached", False)
        disks.append(disk)
    return disks, generation


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


def _check_accelerated_networking(size: skus.VmSize, nics: list[Resource], vm_id: str) -> None:
    """A NIC with accelerated networking needs a size that offers it (the SKUs list's
    AcceleratedNetworkingEnabled); ARM refuses the VM otherwise, naming the VM where its
    message says "Network Interface" (Azure/acs-engine#3600, Azure/Moodle#124)."""
    if size.accelerated_networking:
        return
    if any(nic.properties.get("enableAcceleratedNetworking") for nic in nics):
        allowed = ", ".join(s.name for s in skus.SIZES.values() if s.accelerated_networking)
        raise bad_request(
            f"Virtual Machine size {size.name} is not in the allowed list of VM sizes for "
            f"accelerated networking to be enabled on Network Interface {vm_id}. Allowed sizes: "
            f"{allowed}.",
            "VMSizeIsNotPermittedToEnableAcceleratedNetworking",
        )


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
    size = _size(properties)
    zones = [str(z) for z in body.get("zones") or []]
    nics = _nics(world, properties, vm_id)
    _check_accelerated_networking(size, nics, vm_id)
    created: list[Resource] = []
    try:
        disks, generation = _prepare_storage(
            world, ref, vm_id, region, properties, size, zones, created
        )
        paths = (
            [request.path]
            + [d.id for d in disks]
            + [str(d.properties.get("creationData", {}).get("sourceResourceId", "")) for d in disks]
        )
        _check_capacity(world, request, ref, size, region, zones, paths)
    except ArmError:
        for disk in created:  # a refused PUT leaves nothing behind
            world.remove(disk.id)
        raise
    for disk in disks:
        disk.body["managedBy"] = vm_id
    for nic in nics:
        nic.properties["virtualMachine"] = {"id": vm_id}
    kinds = {"fail-operation", "never-boots", "guest-silent", "allocation-failed"}
    if zones:
        kinds.add("zonal-allocation-failed")
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
        error=_create_error(fired),
        never_boots="never-boots" in fired,
        guest_silent="guest-silent" in fired,
        hyper_v_generation=generation,
    )
    vm.boots_at = world.later(seconds + world.durations.vm_boot_seconds)
    operation = world.start_operation(
        ref.subscription, "Microsoft.Compute", region, request.api_version, seconds, error=vm.error
    )
    return Reply(201, world.render(vm), async_headers(request, world, operation))


def _create_error(fired: set[str]) -> ArmError | None:
    """How an accepted VM create ends when a fault fired: capacity first, as Azure allocates
    before it provisions."""
    if "zonal-allocation-failed" in fired:
        return ArmError(409, "ZonalAllocationFailed", ALLOCATION_FAILED.format(where="zone"))
    if "allocation-failed" in fired:
        return ArmError(409, "AllocationFailed", ALLOCATION_FAILED.format(where="region"))
    return injected_failure() if "fail-operation" in fired else None


def _check_capacity(
    world: World,
    request: Request,
    ref: ResourceId,
    size: skus.VmSize,
    region: str,
    zones: list[str],
    paths: list[str],
) -> None:
    """409 SkuNotAvailable for a size the subscription may not have there (a restriction in the
    SKUs list, or the injected fault) and 409 QuotaExceeded (injected).

    Azure's words: "The requested VM size for resource 'Following SKUs have failed for Capacity
    Restrictions: Standard_B2s' is currently not available in location 'eastus'. Please try
    another size or deploy to a different location or different zone. See
    https://aka.ms/azureskunotavailable for details." (409, Azure-Samples/azuresandbox#70);
    "Operation could not be completed as it results in exceeding approved Total Regional Cores
    quota. Additional details - Deployment Model: Resource Manager, Location: centralus, Current
    Limit: 10, Current Usage: 8, Additional Required: 4, (Minimum) New Limit Required: 12."
    (409, nforgeio/neonKUBE#1671; per VM family as "standardDSv5Family Cores", under the code
    QuotaExceeded that quota refusals carry).
    """
    restriction = world.sku_restriction(ref.subscription, size.name, region)
    if (restriction is not None and restriction.blocks(zones)) or world.faults.take(
        request.operation, paths, region, frozenset({"sku-not-available"})
    ):
        raise ArmError(
            409,
            "SkuNotAvailable",
            "The requested VM size for resource 'Following SKUs have failed for Capacity "
            f"Restrictions: {size.name}' is currently not available in location '{region}'. "
            "Please try another size or deploy to a different location or different zone. See "
            "https://aka.ms/azureskunotavailable for details.",
        )
    if world.faults.take(request.operation, paths, region, frozenset({"quota-exceeded"})):
        used = _cores_in_use(world, ref.subscription, size.family, region)
        raise ArmError(
            409,
            "QuotaExceeded",
            f"Operation could not be completed as it results in exceeding approved "
            f"{size.family} Cores quota. Additional details - Deployment Model: Resource "
            f"Manager, Location: {region}, Current Limit: {used}, Current Usage: {used}, "
            f"Additional Required: {size.vcpus}, (Minimum) New Limit Required: "
            f"{used + size.vcpus}. Submit a request for Quota increase at "
            "https://aka.ms/ProdportalCRP/#blade/Microsoft_Azure_Capacity/UsageAndQuota.ReactView "
            "by specifying parameters listed in the 'Details' section for deployment to succeed. "
            "Please read more about quota limits at "
            "https://docs.microsoft.com/en-us/azure/azure-supportability/per-vm-quota-requests",
        )


def _cores_in_use(world: World, subscription: str, family: str, region: str) -> int:
    """vCPUs of a size family the subscription's VMs hold in a region (its quota usage)."""
    total = 0
    for vm in world.of_type(VM_TYPE, subscription):
        name = str((vm.properties.get("hardwareProfile") or {}).get("vmSize") or "")
        size = skus.vm_size(name)
        if vm.location == region and size is not None and size.family == family:
            total += size.vcpus
    return total


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
    return Reply(200, _instance_view(world, world.get(_ref(args))))


def _provisioning_status(vm: Resource, state: str) -> dict[str, Any]:
    """The VM's ProvisioningState status; a failed create names its error's code and message,
    as Azure's does ("ProvisioningState/failed/InternalOperationError", level Error, display
    "Provisioning failed", with the message: Microsoft Learn, "States and billing status of
    Azure Virtual Machines"; ProvisioningState/failed/AllocationFailed in yunionio/cloudpods)."""
    if state == "failed" and vm.error is not None:
        return {
            "code": f"ProvisioningState/failed/{vm.error.code}",
            "level": "Error",
            "displayStatus": "Provisioning failed",
            "message": vm.error.message,
            "time": vm.ready_at.isoformat(),
        }
    return _status(f"ProvisioningState/{state}", f"Provisioning {state}", vm.ready_at)


def _instance_view(world: World, vm: Resource) -> dict[str, Any]:
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
    return {
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
        "hyperVGeneration": vm.hyper_v_generation or "V1",
        "patchStatus": _patch_status(vm),
        "isVMInStandbyPool": False,
        "statuses": [
            _provisioning_status(vm, state),
            _status(f"PowerState/{power}", f"VM {power}"),
        ],
    }


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
