"""Microsoft.Compute disks and snapshots (DiskRP): PUT 200/202 (never 201), LRO via Location."""

from __future__ import annotations

import copy
import re
from typing import Any

from local.armsim import blobdata, copystart
from local.armsim.errors import ArmError, bad_request
from local.armsim.faults import normalise_region
from local.armsim.lro import delete_reply, injected_failure, location_reply
from local.armsim.protocol import DISK_TYPE, SNAPSHOT_TYPE, Reply, Request, ResourceId
from local.armsim.state import Resource, World

GIB = 1024**3
_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,80}\Z")
DEFAULT_SKU = "Standard_LRS"


def _ref(args: dict[str, str], type_: str) -> ResourceId:
    if not _NAME.match(args["name"]):
        raise bad_request(
            f"The name '{args['name']}' is invalid: use 1-80 letters, digits, '_', '.' or '-'.",
            "InvalidResourceName",
        )
    return ResourceId(args["sub"], args["rg"], type_, args["name"])


def size_gb(resource: Resource) -> int:
    return int(resource.properties.get("diskSizeGB") or 0)


def _fault(world: World, request: Request, paths: list[str], region: str, kind: str) -> bool:
    found = world.faults.take(request.operation, paths, region, frozenset({kind}))
    return found is not None


def _creation(body: dict[str, Any]) -> tuple[str, str]:
    creation = (body.get("properties") or {}).get("creationData") or {}
    option = creation.get("createOption")
    if not option:
        raise bad_request("Required parameter 'creationData.createOption' is missing (null).")
    return str(option), str(creation.get("sourceResourceId") or "")


def _source(world: World, source_id: str, allowed: tuple[str, ...]) -> Resource:
    if not source_id:
        raise bad_request("Required parameter 'creationData.sourceResourceId' is missing (null).")
    ref = ResourceId.parse(source_id)
    if ref.type.lower() not in {t.lower() for t in allowed}:
        raise bad_request(f"'{source_id}' is not a {' or '.join(allowed)} resource id.")
    found = world.find(str(ref))
    if found is None:
        # DiskRP's answer to a copy of a source that is not there, e.g. an ephemeral OS disk,
        # whose id the VM lists but no disk answers (az snapshot create --source: "(NotFound)
        # Resource <name> is not found.", Azure/azure-cli-extensions#4542 and #5362).
        raise ArmError(404, "NotFound", f"Resource {ref.name} is not found.")
    source = found
    if source.provisioning_state(world.now()) != "Succeeded":
        raise ArmError(409, "Conflict", f"The source '{source.id}' is not ready to be copied.")
    return source


# What a disk or snapshot made from another (Copy, CopyStart) takes from it, as DiskRP copies
# it: the OS type and, on OS disks, the Hyper-V generation and the security type. The official
# Disk_Get example shows both on a TrustedLaunch OS disk; a disk made from a snapshot of a
# Trusted Launch VM's disk is Trusted Launch (Azure/azure-sdk-for-python#30479), and Trusted
# Launch can be neither added nor dropped on the way (MicrosoftDocs/azure-docs#112364).
_INHERITED = ("osType", "hyperVGeneration", "securityProfile")


def _inherit(properties: dict[str, Any], source: Resource, option: str) -> None:
    """Copy the source's inherited properties; refuse a request that would change them.

    Azure refuses a security type set on a copy ("Security Type 'TrustedLaunch' is not supported
    for CreateOption 'Copy'", Azure/azure-powershell#24253); the simulator refuses any security
    type or generation that differs from the source's, the stricter reading.
    """
    given = (properties.get("securityProfile") or {}).get("securityType")
    inherited = (source.properties.get("securityProfile") or {}).get("securityType")
    if given and (given != "Standard" or (inherited or "Standard") != given):
        raise ArmError(
            400,
            "BadRequest",
            f"Security Type '{given}' is not supported for CreateOption '{option}'.",
        )
    generation = properties.get("hyperVGeneration")
    source_generation = source.properties.get("hyperVGeneration")
    if generation and source_generation and generation != source_generation:
        raise bad_request(
            f"The hyperVGeneration '{generation}' differs from '{source_generation}' of the "
            f"source '{source.id}'; a copy keeps its source's generation."
        )
    for key in _INHERITED:
        if key in source.properties:
            properties[key] = copy.deepcopy(source.properties[key])


def _update_existing(
    world: World, request: Request, existing: Resource, body: dict[str, Any]
) -> Reply:
    """A PUT of an existing name updates tags in place; it never makes a second resource."""
    option, source_id = _creation(body)
    old_option, old_source = _creation(existing.body)
    if option != old_option or (
        source_id and ResourceId.parse(source_id) != ResourceId.parse(old_source or source_id)
    ):
        raise ArmError(
            409,
            "PropertyChangeNotAllowed",
            "Changing property 'creationData' is not allowed.",
        )
    if "tags" in body:
        existing.body["tags"] = dict(body["tags"] or {})
    return Reply(200, world.render(existing))


def _changed_gib(world: World, disk: Resource, incremental: bool) -> float:
    """GiB a snapshot of `disk` holds: the blocks written since its previous snapshot."""
    now = world.now()
    full = float(size_gb(disk))
    previous = disk.last_snapshot_at
    disk.last_snapshot_at = now
    if not incremental or previous is None:
        return full
    days = (now - previous).total_seconds() / 86400.0
    return min(full, disk.change_gib_per_day * days)


def put_snapshot(world: World, request: Request, args: dict[str, str]) -> Reply:
    ref = _ref(args, SNAPSHOT_TYPE)
    body = copy.deepcopy(request.json_object())
    if not body.get("location"):
        raise bad_request("Required parameter 'location' is missing (null).")
    existing = world.find(str(ref))
    if existing is not None:
        return _update_existing(world, request, existing, body)
    region = normalise_region(str(body["location"]))
    option, source_id = _creation(body)
    properties = body.setdefault("properties", {})
    facts: dict[str, Any] = {}
    if option == "Copy":
        source = _source(world, source_id, (DISK_TYPE, SNAPSHOT_TYPE))
        if source.location != region:
            raise bad_request(
                f"Copy needs the source in the snapshot's region '{region}'; "
                f"'{source.name}' is in '{source.location}'. Use CopyStart across regions."
            )
        _inherit(properties, source, option)
        if source.type == DISK_TYPE:
            facts["changed_gib"] = _changed_gib(world, source, bool(properties.get("incremental")))
        else:
            facts["changed_gib"] = source.changed_gib
        facts["content"] = blobdata.snapshot_content(world, source)
        seconds = world.durations.snapshot_seconds
    elif option == "CopyStart":
        # Within a region too: CopyStart copies across zones as well as regions (copystart.py).
        source = _source(world, source_id, (SNAPSHOT_TYPE,))
        copystart.refuse(world, source, ref, region, body)
        _inherit(properties, source, option)
        properties["incremental"] = True
        facts.update(copystart.facts(source))
        facts["changed_gib"] = source.changed_gib
        facts["content"] = blobdata.snapshot_content(world, source)
        seconds = world.durations.snapshot_seconds
        facts["copy_done_at"] = world.later(
            seconds + world.durations.copy_seconds(source.changed_gib)
        )
        facts["copy_failed"] = _fault(
            world, request, [request.path, source.id], region, "copy-fails"
        )
    else:
        raise bad_request(f"createOption '{option}' is not supported for snapshots here.")
    properties.setdefault("diskSizeGB", size_gb(source))
    properties["creationData"]["sourceUniqueId"] = source.uid
    failed = _fault(world, request, [request.path], region, "fail-operation")
    snapshot = world.new_resource(
        ref, body, seconds, error=injected_failure() if failed else None, **facts
    )
    snapshot.body.setdefault("sku", {"name": DEFAULT_SKU, "tier": "Standard"})
    world.bill_snapshot(snapshot)
    operation = world.start_operation(
        ref.subscription,
        "Microsoft.Compute",
        region,
        request.api_version,
        seconds,
        result=lambda: world.render(snapshot),
        error=snapshot.error,
    )
    return location_reply(request, world, operation, world.render(snapshot))


def render_snapshot(world: World, resource: Resource) -> dict[str, Any]:
    body = _render_common(world, resource)
    properties = body["properties"]
    ready = properties["provisioningState"] == "Succeeded"
    if properties.get("incremental"):
        properties["incrementalSnapshotFamilyId"] = properties["creationData"].get(
            "sourceUniqueId", resource.uid
        )
    access = "Available" if ready else "Pending"
    if resource.copy_done_at is not None:
        properties.update(copystart.progress(world, resource))
        if copystart.state(world, resource) is not copystart.CopyState.DONE:
            access = "Pending"
    properties["snapshotAccessState"] = access
    return body


def _render_common(world: World, resource: Resource) -> dict[str, Any]:
    body = copy.deepcopy(resource.body)
    body.update(id=resource.id, name=resource.name, type=resource.type)
    properties = body.setdefault("properties", {})
    properties["provisioningState"] = resource.provisioning_state(world.now())
    properties["timeCreated"] = resource.created_at.isoformat()
    properties["uniqueId"] = resource.uid
    size = int(properties.get("diskSizeGB") or 0)
    properties["diskSizeGB"] = size
    properties["diskSizeBytes"] = size * GIB
    return body


def put_disk(world: World, request: Request, args: dict[str, str]) -> Reply:
    ref = _ref(args, DISK_TYPE)
    body = copy.deepcopy(request.json_object())
    if not body.get("location"):
        raise bad_request("Required parameter 'location' is missing (null).")
    existing = world.find(str(ref))
    if existing is not None:
        return _update_existing(world, request, existing, body)
    region = normalise_region(str(body["location"]))
    option, source_id = _creation(body)
    properties = body.setdefault("properties", {})
    rate = 0.0
    source = None
    if option == "Copy":
        source = _source(world, source_id, (SNAPSHOT_TYPE, DISK_TYPE))
        if source.location != region:
            raise bad_request(
                f"The source '{source.name}' is in '{source.location}', not '{region}'."
            )
        if copystart.unfinished(world, source):
            raise ArmError(409, "Conflict", f"The snapshot '{source.id}' copy is not complete.")
        properties["diskSizeGB"] = max(int(properties.get("diskSizeGB") or 0), size_gb(source))
        properties["creationData"]["sourceUniqueId"] = source.uid
        _inherit(properties, source, option)
        rate = _origin_rate(world, source)
    elif option == "Empty":
        if not properties.get("diskSizeGB"):
            raise bad_request("An Empty disk needs 'diskSizeGB'.")
    else:
        raise bad_request(f"createOption '{option}' is not supported for disks here.")
    failed = _fault(world, request, [request.path, source_id], region, "fail-operation")
    seconds = world.durations.disk_seconds
    disk = world.new_resource(
        ref,
        body,
        seconds,
        error=injected_failure() if failed else None,
        change_gib_per_day=rate,
    )
    disk.body.setdefault("sku", {"name": DEFAULT_SKU})
    if source is not None:
        disk.content = blobdata.restored_content(world, source, disk.uid)
    operation = world.start_operation(
        ref.subscription,
        "Microsoft.Compute",
        region,
        request.api_version,
        seconds,
        result=lambda: world.render(disk),
        error=disk.error,
    )
    return location_reply(request, world, operation, world.render(disk))


def _origin_rate(world: World, resource: Resource) -> float:
    """A restored disk changes like the disk its snapshot chain started from."""
    seen = 0
    while resource.type != DISK_TYPE and seen < 100:
        source_id = resource.properties.get("creationData", {}).get("sourceResourceId")
        origin = world.find("/" + str(source_id).lstrip("/")) if source_id else None
        if origin is None:
            return 0.0
        resource, seen = origin, seen + 1
    return resource.change_gib_per_day


def render_disk(world: World, resource: Resource) -> dict[str, Any]:
    body = _render_common(world, resource)
    properties = body["properties"]
    properties["diskState"] = "Attached" if body.get("managedBy") else "Unattached"
    return body


def get(type_: str) -> Any:
    def handler(world: World, request: Request, args: dict[str, str]) -> Reply:
        return Reply(200, world.render(world.get(_ref(args, type_))))

    return handler


def delete_snapshot(world: World, request: Request, args: dict[str, str]) -> Reply:
    ref = _ref(args, SNAPSHOT_TYPE)
    world.group(ref.subscription, ref.resource_group)
    snapshot = world.find(str(ref))
    if snapshot is not None:
        blobdata.refuse_while_exported(world, snapshot, "Delete")
    seconds = world.durations.snapshot_delete_seconds
    return delete_reply(request, world, snapshot, "Microsoft.Compute", seconds)


def delete_disk(world: World, request: Request, args: dict[str, str]) -> Reply:
    ref = _ref(args, DISK_TYPE)
    world.group(ref.subscription, ref.resource_group)
    disk = world.find(str(ref))
    if disk is not None and disk.body.get("managedBy"):
        raise ArmError(
            409,
            "OperationNotAllowed",
            f"Disk {disk.name} is attached to VM {disk.body['managedBy']}.",
        )
    if disk is not None:
        blobdata.refuse_while_exported(world, disk, "Delete")
    seconds = world.durations.disk_delete_seconds
    return delete_reply(request, world, disk, "Microsoft.Compute", seconds)


def patch_snapshot(world: World, request: Request, args: dict[str, str]) -> Reply:
    snapshot = world.get(_ref(args, SNAPSHOT_TYPE))
    body = request.json_object()
    if "tags" in body:
        snapshot.body["tags"] = dict(body["tags"] or {})
    for name, value in (body.get("properties") or {}).items():
        snapshot.properties[name] = value
    return Reply(200, world.render(snapshot))


def list_snapshots(world: World, request: Request, args: dict[str, str]) -> Reply:
    return world.list_reply(SNAPSHOT_TYPE, request, args)


def access(type_: str, grant: bool) -> Any:
    """beginGetAccess / endGetAccess: 202 + Location. A Read grant ends with a SAS URL served by
    the simulator's blob data plane (local/armsim/blobdata.py); endGetAccess revokes them."""

    def handler(world: World, request: Request, args: dict[str, str]) -> Reply:
        resource = world.get(_ref(args, type_))
        result: dict[str, str] | None = None
        if grant:
            data = request.json_object()
            if data.get("access") != "Read":
                raise bad_request(
                    "grantAccessData.access must be Read: the simulator serves reads only."
                )
            seconds = blobdata.access_seconds(data)
            result = {"accessSAS": blobdata.grant(world, resource, request.base_url, seconds)}
        else:
            blobdata.revoke(world, resource)
        operation = world.start_operation(
            args["sub"],
            "Microsoft.Compute",
            resource.location,
            request.api_version,
            world.durations.access_seconds,
            result=lambda: result,
        )
        return location_reply(request, world, operation)

    return handler
