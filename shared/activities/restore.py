"""Restore steps: new disks from a backup's snapshots (and a new VM on them).

A restore never touches the VM's own disks: it creates new ones, by default in the VM's resource
group and region from the source snapshots, or in another region from the backup's replicas there,
into the group the operator names; named after the restore, tagged with the backup they came from
and the restore id, without an expiry (they are the operator's now, not test resources the sweeper
removes) unless the caller adds tags (`extra_tags`: a DR test's test id and expiry). `check_restore`
runs first and finds everything that would make the restore fail before anything is created; a
restore that fails midway deletes what carries its restore id (the clean-up workflow) unless the
operator asked to keep it.
"""

from __future__ import annotations

from functools import partial

from shared.activities.common import (
    APP,
    MANAGED_BY,
    SOURCE_TAG,
    Payload,
    audited,
    load_backup,
    parse_time,
    require_vm_size,
    vm_settings,
)
from shared.domain import names
from shared.domain.models import (
    POLICY_TAG,
    AuditEntry,
    Backup,
    BackupState,
    NicConfig,
    ReplicationStatus,
)
from shared.domain.policy import LEGACY_TAG
from shared.errors import (
    AddressUnavailableError,
    CapacityError,
    NotFoundError,
    PermanentError,
    sanitise,
)
from shared.ports import Accepted
from shared.services import Services

RESTORE_TAG = "backupdr-restore"
# Recorded VM tags a restored VM does not get: its backup policy (old and new tag), so a restored
# copy is not backed up as a second VM until an operator tags it.
POLICY_TAGS = frozenset({POLICY_TAG.lower(), LEGACY_TAG.lower()})
MAX_TAGS = 50  # Azure's limit per resource
_ADDRESS_REASONS = {
    "PrivateIPAddressIsAllocated": "another NIC holds it",
    "PrivateIPAddressNotInSubnet": "it is outside the subnet's range now",
    "PrivateIPAddressInReservedRange": "it is in the subnet's reserved range now",
}


def check_restore(payload: Payload, svc: Services) -> Payload:
    """Pre-flight: what would make this restore fail, found before anything is created.

    Answers {"problems": [...]}, each saying what to change: the backup (or its replica in the
    target region) complete for every disk, the target group there, and for a new VM its subnet
    (in the target region, and isolated when `isolated_subnet`: a DR test's), its size available
    there, and its name free in the group. Reads only, so it may run any number of times.
    """
    backup = load_backup(svc, payload)
    region = payload.get("region") or backup.region
    group = payload["resource_group"]
    problems = _source_problems(svc, backup, region)
    try:
        exists = svc.gateway.group_exists(group)
    except NotFoundError:
        exists = False
    except PermanentError as error:  # e.g. 403: this identity may not even read the group
        problems.append(
            f"cannot use resource group {group} ({error}): name a group this identity may "
            "write (the app's: a recovery or DR-test group; an operator's: see README)"
        )
        exists = True
    if not exists:
        problems.append(f"resource group {group} does not exist: create it or name another")
    if payload.get("new_vm"):
        problems += _vm_problems(svc, payload, backup, region)
    return {"problems": problems, "region": region}


def _source_problems(svc: Services, backup: Backup, region: str) -> list[str]:
    """The backup's snapshots (its own region) or replicas (`region`): all there and complete."""
    if backup.state is not BackupState.COMPLETED:
        return [f"backup {backup.backup_id} is {backup.state}, not restorable"]
    if region.lower() == backup.region.lower():
        sources = {ref.disk_role: ref.snapshot_id for ref in backup.snapshots}
    elif backup.replica_region and region.lower() == backup.replica_region.lower():
        pending = [
            f"{ref.disk_role}: {ref.replica_status}"
            for ref in backup.snapshots
            if not ref.replica_id or ref.replica_status is not ReplicationStatus.COMPLETED
        ]
        if pending:
            return [
                f"the replica of backup {backup.backup_id} in {region} is not complete "
                f"({', '.join(pending)}): restore from {backup.region} or from a backup whose "
                "replica is complete"
            ]
        sources = {ref.disk_role: ref.replica_id or "" for ref in backup.snapshots}
    else:
        copied = f", replicated to {backup.replica_region}" if backup.replica_region else ""
        return [
            f"backup {backup.backup_id} has no copy in {region} (it is in {backup.region}{copied})"
        ]
    problems = []
    for role, snapshot_id in sources.items():
        try:
            snapshot = svc.gateway.get_snapshot(snapshot_id)
        except NotFoundError:
            problems.append(f"the {role} snapshot of backup {backup.backup_id} in {region} is gone")
            continue
        percent = snapshot.completion_percent
        if snapshot.provisioning_state != "Succeeded" or (percent is not None and percent < 100):
            state = snapshot.copy_error or f"{snapshot.provisioning_state}, {percent or 0:g} %"
            problems.append(
                f"the {role} snapshot of backup {backup.backup_id} in {region} is not complete "
                f"({state})"
            )
    return problems


def _vm_problems(svc: Services, payload: Payload, backup: Backup, region: str) -> list[str]:
    group, name = payload["resource_group"], payload["new_vm"]
    problems = []
    subnet = restore_subnet(svc, payload, backup, region)
    if subnet is None:
        problems.append(
            f"a new VM needs a subnet: the backup recorded none in {region}; name a VNET/SUBNET"
        )
    else:
        try:
            found = svc.gateway.subnet_region(subnet)
        except PermanentError as error:
            problems.append(str(error))
        else:
            shown = _subnet_text(subnet)
            if found is None:
                problems.append(f"subnet {shown} does not exist: name an existing VNET/SUBNET")
            elif found.lower() != region.lower():
                problems.append(
                    f"subnet {shown} is in {found}, not {region}: a NIC must be in its VNet's "
                    "region"
                )
            elif payload.get("isolated_subnet"):
                problems += _isolation_problems(svc, subnet, shown)
    try:
        require_vm_size(svc, backup, region, _zone(backup, region))
    except (CapacityError, PermanentError) as error:
        problems.append(f"{error}: restore in another region or resize after restoring disks")
    try:
        svc.gateway.get_vm(group, name)
    except NotFoundError:
        pass
    else:
        problems.append(f"a VM named {name} already exists in {group}: choose another name")
    return problems


def _isolation_problems(svc: Services, subnet: str, shown: str) -> list[str]:
    """A DR test's subnet must be isolated (`shared.domain.isolation`): the VM it boots is a
    copy of a production VM, which must not reach production endpoints while it runs."""
    try:
        reason = svc.gateway.subnet_isolation(subnet)
    except PermanentError as error:  # e.g. 403: fail closed
        reason = f"its network security cannot be read ({error})"
    if reason is None:
        return []
    return [
        f"subnet {shown} is not isolated: {reason}; a DR test's copy of a production VM must not "
        "reach production: give it infra's DR-test network (infra/app/drtest-network.bicep)"
    ]


def restore_subnet(svc: Services, payload: Payload, backup: Backup, region: str) -> str | None:
    """The new VM's subnet as a full resource id: the one named ("vnet/subnet" in the target
    group, or a full id), else the one the backup recorded when restoring in its own region."""
    subnet = payload.get("subnet")
    if subnet:
        return str(subnet) if subnet.startswith("/") else _subnet_id(svc, payload, subnet)
    if region.lower() == backup.region.lower():
        return backup.subnet_id
    return None


def _subnet_id(svc: Services, payload: Payload, subnet: str) -> str:
    vnet, _, name = subnet.partition("/")
    return (
        f"/subscriptions/{svc.settings.subscription_id}/resourceGroups/"
        f"{payload['resource_group']}/providers/Microsoft.Network/virtualNetworks/{vnet}"
        f"/subnets/{name}"
    )


def _subnet_text(subnet_id: str) -> str:
    """A subnet id as an operator names it: `vnet/subnet in group`."""
    parts = subnet_id.split("/")
    if len(parts) == 11:
        return f"{parts[8]}/{parts[10]} in {parts[4]}"
    return subnet_id


def _zone(backup: Backup, region: str) -> str | None:
    """The zone of restored disks and VM: the VM's own in its own region, else none (a zone
    number names a datacenter of one region only)."""
    if backup.zones and region.lower() == backup.region.lower():
        return backup.zones[0]
    return None


def _tags(payload: Payload) -> dict[str, str]:
    """The restore's own tags, after the caller's `extra_tags` (a DR test's: its test id and
    expiry, so its clean-up and the sweeper find what the restore made). Inputs from before
    `extra_tags` have none: the restore's tags alone, as then."""
    own = {MANAGED_BY: APP, SOURCE_TAG: payload["backup_id"], RESTORE_TAG: payload["restore_id"]}
    extra = {str(k): str(v) for k, v in (payload.get("extra_tags") or {}).items()}
    return {**extra, **own}


def begin_restore_disks(payload: Payload, svc: Services) -> Payload:
    """Start one new managed disk per snapshot of the backup (per replica, when `region` is
    its replica region) in the target group, and the new VM's NIC on its subnet alongside when
    a VM is wanted. Names come from the restore id, so a repeat PUTs the same resources."""
    backup = load_backup(svc, payload)
    if backup.state is not BackupState.COMPLETED:
        raise PermanentError(f"backup {backup.backup_id} is {backup.state}, not restorable")
    region = payload.get("region") or backup.region
    from_replicas = region.lower() != backup.region.lower()
    # Its zone in its own region, as zonal disks attach only to a VM in their zone and the VM
    # had that zone (a regional VM recorded none); elsewhere regional.
    zone = _zone(backup, region)
    if payload.get("new_vm"):
        require_vm_size(svc, backup, region, zone)  # before anything is created
    group = payload["resource_group"]
    nic, applied = None, None
    if payload.get("new_vm"):
        subnet = restore_subnet(svc, payload, backup, region) if payload.get("region") else None
        nic, applied = _begin_nic(
            svc, {**payload, "subnet": subnet or payload["subnet"]}, region, backup
        )
        extras = _vm_extras(backup, region)
        applied = {**applied, **extras, "notes": applied["notes"] + extras["notes"]}
    disks, poll_after = [], nic.poll_after_seconds if nic else 0.0
    for ref in backup.snapshots:
        source = ref.replica_id if from_replicas else ref.snapshot_id
        if not source:
            raise PermanentError(f"backup {backup.backup_id} has no {ref.disk_role} replica")
        name = names.dr_resource_name("disk", backup.vm_name, payload["restore_id"], ref.disk_role)
        accepted = audited(
            svc,
            "create",
            f"{group}/disks/{name}",
            partial(
                svc.gateway.begin_disk_from_snapshot,
                name=name,
                resource_group=group,
                region=region,
                snapshot_id=source,
                sku=ref.sku,
                zone=zone,
                tags=_tags(payload),
            ),
            vm_key=backup.vm_key,
            operation="restore",
        )
        poll_after = max(poll_after, accepted.poll_after_seconds)
        disks.append({"lun": ref.lun, "role": ref.disk_role, "disk_id": accepted.resource_id})
    return {
        "disks": disks,
        "nic_id": nic.resource_id if nic else None,
        "poll_after": poll_after,
        "vm_size": backup.vm_size,
        "os_type": backup.os_type,
        "region": region,
        "zone": zone,
        **vm_settings(backup),
        # What the new VM gets of the rest of the recorded settings (None: disks only).
        "applied": applied,
    }


def _begin_nic(
    svc: Services, payload: Payload, region: str, backup: Backup
) -> tuple[Accepted, Payload]:
    """The new VM's NIC as the recorded primary NIC was: its accelerated networking, and its
    private IP Static on the recorded address only when restoring into the recorded subnet and
    Azure finds the address free; Dynamic otherwise, with a note saying why. A repeat tries the
    same address again: the NIC's own address counts as free to it."""
    group = payload["resource_group"]
    name = names.dr_resource_name("nic", payload["new_vm"], payload["restore_id"])
    recorded = next((nic for nic in backup.nics if nic.primary), None)
    accelerated = bool(recorded and recorded.accelerated_networking)
    applied: Payload = {
        "accelerated_networking": accelerated,
        "private_ip_allocation": "Dynamic",
        "private_ip_address": None,
        "notes": [],
    }
    subnet = str(payload["subnet"])
    subnet_id = subnet if subnet.startswith("/") else _subnet_id(svc, payload, subnet)
    static = _static_address(recorded, subnet_id, applied["notes"])

    def create(address: str | None) -> Accepted:
        return audited(
            svc,
            "create",
            f"{group}/networkInterfaces/{name}",
            partial(
                svc.gateway.begin_nic,
                name=name,
                resource_group=group,
                region=region,
                subnet=subnet,
                tags=_tags(payload),
                accelerated_networking=accelerated,
                private_ip_address=address,
            ),
            vm_key=payload["vm_key"],
            operation="restore",
        )

    if static is None:
        return create(None), applied
    try:
        accepted = create(static)
    except AddressUnavailableError as error:
        text = str(error)
        reason = next((why for code, why in _ADDRESS_REASONS.items() if code in text), text)
        applied["notes"].append(
            f"private IP Dynamic: the recorded static address {static} is not free ({reason})"
        )
        return create(None), applied
    applied |= {"private_ip_allocation": "Static", "private_ip_address": static}
    return accepted, applied


def _static_address(recorded: NicConfig | None, subnet_id: str, notes: list[str]) -> str | None:
    """The recorded static address when the restore goes into the recorded subnet, else None
    (with a note when there was one to keep)."""
    if recorded is None:
        notes.append("no NIC recorded with this backup: private IP Dynamic")
        return None
    if recorded.private_ip_allocation.lower() != "static" or not recorded.private_ip_address:
        return None
    if (recorded.subnet_id or "").lower() != subnet_id.lower():
        notes.append(
            f"private IP Dynamic: the recorded static address {recorded.private_ip_address} is "
            f"on subnet {_subnet_text(recorded.subnet_id or '?')}, not the one restored into"
        )
        return None
    return recorded.private_ip_address


def restored_vm_tags(backup: Backup) -> dict[str, str]:
    """The recorded VM tags a restored VM gets: all but its backup policy (`POLICY_TAGS`)."""
    return {k: v for k, v in backup.tags.items() if k.lower() not in POLICY_TAGS}


def _vm_extras(backup: Backup, region: str) -> Payload:
    """The recorded tags, licence and boot diagnostics the new VM is created with.

    Boot diagnostics stay off when they were off, and go to managed storage when they were
    managed, or whenever the VM is restored outside its own region: its storage account is in
    that region, which may be the one that is down. In its own region it keeps its account.
    """
    notes = []
    uri = None
    if backup.boot_diagnostics and backup.boot_diagnostics_uri:
        if region.lower() == backup.region.lower():
            uri = backup.boot_diagnostics_uri
        else:
            notes.append(
                f"boot diagnostics in managed storage: the recorded storage account is in "
                f"{backup.region}"
            )
    dropped = sorted(k for k in backup.tags if k.lower() in POLICY_TAGS)
    if dropped:
        notes.append(f"not tagged {', '.join(dropped)}: tag it to have the restored VM backed up")
    return {
        "vm_tags": restored_vm_tags(backup),
        "license_type": backup.license_type,
        "boot_diagnostics": backup.boot_diagnostics,
        "boot_diagnostics_uri": uri,
        "notes": notes,
    }


def begin_restore_vm(payload: Payload, svc: Services) -> Payload:
    """Start a new VM named by the operator on the restored disks and the NIC made with them."""
    restore, group, name = payload["restore"], payload["resource_group"], payload["new_vm"]
    disks = restore["disks"]
    # Restores started before these were recorded: no tags but the restore's, Azure's defaults.
    applied: Payload = restore.get("applied") or {}
    accepted = audited(
        svc,
        "create",
        f"{group}/virtualMachines/{name}",
        partial(
            svc.gateway.begin_vm_from_disks,
            name=name,
            resource_group=group,
            region=restore["region"],
            vm_size=restore["vm_size"],
            os_type=restore["os_type"],
            os_disk_id=next(d["disk_id"] for d in disks if d["lun"] is None),
            data_disks=[(d["lun"], d["disk_id"]) for d in disks if d["lun"] is not None],
            nic_id=restore["nic_id"],
            tags=_vm_tags(payload, applied.get("vm_tags") or {}),
            # Restores started before these were recorded get Azure's defaults.
            security_type=restore.get("security_type", "Standard"),
            secure_boot=bool(restore.get("secure_boot", False)),
            vtpm=bool(restore.get("vtpm", False)),
            zone=restore.get("zone"),
            caching=restore.get("caching") or {},
            license_type=applied.get("license_type"),
            boot_diagnostics=bool(applied.get("boot_diagnostics", False)),
            boot_diagnostics_uri=applied.get("boot_diagnostics_uri"),
        ),
        vm_key=payload["vm_key"],
        operation="restore",
    )
    return {"vm_id": accepted.resource_id, "poll_after": accepted.poll_after_seconds}


def _vm_tags(payload: Payload, recorded: dict[str, str]) -> dict[str, str]:
    """The restore's own tags and the VM's recorded ones (no policy), within Azure's 50."""
    own = _tags(payload)
    kept = [(k, v) for k, v in recorded.items() if k not in own][: MAX_TAGS - len(own)]
    return {**dict(kept), **own}


def record_restore(payload: Payload, svc: Services) -> Payload:
    """Write how a restore ended to the audit log: completed, failed (with the reason and what
    it left) or rejected by its pre-flight. The row is keyed by the restore's own end time, so a
    repeat rewrites it."""
    result = payload["result"]
    state = result["state"]
    where = f"{payload['resource_group']} in {result.get('region') or '?'}"
    detail = f"backup {payload['backup_id']} restored into {where}"
    if result.get("error"):
        detail += f": {result['error']}"
    if result.get("kept"):
        detail += f"; kept: {', '.join(result['kept'])}"
    target = payload.get("new_vm") or "disks"
    svc.catalog.audit(
        AuditEntry(
            at=parse_time(payload["completed"]),
            action="restore",
            resource_id=f"{payload['resource_group']}/{target}#{payload['restore_id']}",
            result={"completed": "ok"}.get(state, state),
            vm_key=payload["vm_key"],
            operation="restore",
            identity=svc.gateway.principal(),
            detail=sanitise(detail)[:1000],
        )
    )
    return {"recorded": True}


def list_restored(payload: Payload, svc: Services) -> Payload:
    """What the restore created that is still there (carrying its restore id), VMs first."""
    group, restore_id = payload["resource_group"], payload["restore_id"]
    found = [
        r
        for r in svc.gateway.list_tagged(group, RESTORE_TAG)
        if r.tags.get(RESTORE_TAG) == restore_id
    ]
    order = ("microsoft.compute/virtualmachines", "microsoft.network/networkinterfaces")
    rank = {kind: index for index, kind in enumerate(order)}
    return {"ids": [r.id for r in sorted(found, key=lambda r: (rank.get(r.type.lower(), 2), r.id))]}
