"""Restore steps: new disks from a backup's snapshots (and a new VM on them) beside the original.

A restore never touches the VM's own disks: it creates new ones in the VM's resource group and
region, named after the restore, tagged with the backup they came from and without an expiry
(they are the operator's now, not test resources the sweeper removes).
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
    require_vm_size,
    vm_settings,
)
from shared.domain import names
from shared.domain.models import BackupState
from shared.errors import PermanentError
from shared.ports import Accepted
from shared.services import Services

RESTORE_TAG = "backupdr-restore"


def _tags(payload: Payload) -> dict[str, str]:
    return {MANAGED_BY: APP, SOURCE_TAG: payload["backup_id"], RESTORE_TAG: payload["restore_id"]}


def begin_restore_disks(payload: Payload, svc: Services) -> Payload:
    """Start one new managed disk per snapshot of the backup, in the VM's own group and region,
    and the new VM's NIC on `subnet` alongside when a VM is wanted."""
    backup = load_backup(svc, payload)
    if backup.state is not BackupState.COMPLETED:
        raise PermanentError(f"backup {backup.backup_id} is {backup.state}, not restorable")
    # Beside the original, in its region: its zone too, as zonal disks attach only to a VM in
    # their zone and the VM had that zone (a regional VM recorded none).
    zone = backup.zones[0] if backup.zones else None
    if payload.get("new_vm"):
        require_vm_size(svc, backup, backup.region, zone)  # before anything is created
    group = payload["resource_group"]
    nic = _begin_nic(svc, payload, backup.region) if payload.get("new_vm") else None
    disks, poll_after = [], nic.poll_after_seconds if nic else 0.0
    for ref in backup.snapshots:
        name = names.dr_resource_name("disk", backup.vm_name, payload["restore_id"], ref.disk_role)
        accepted = audited(
            svc,
            "create",
            f"{group}/disks/{name}",
            partial(
                svc.gateway.begin_disk_from_snapshot,
                name=name,
                resource_group=group,
                region=backup.region,
                snapshot_id=ref.snapshot_id,
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
        "region": backup.region,
        "zone": zone,
        **vm_settings(backup),
    }


def _begin_nic(svc: Services, payload: Payload, region: str) -> Accepted:
    group = payload["resource_group"]
    name = names.dr_resource_name("nic", payload["new_vm"], payload["restore_id"])
    return audited(
        svc,
        "create",
        f"{group}/networkInterfaces/{name}",
        partial(
            svc.gateway.begin_nic,
            name=name,
            resource_group=group,
            region=region,
            subnet=payload["subnet"],
            tags=_tags(payload),
        ),
        vm_key=payload["vm_key"],
        operation="restore",
    )


def begin_restore_vm(payload: Payload, svc: Services) -> Payload:
    """Start a new VM named by the operator on the restored disks and the NIC made with them."""
    restore, group, name = payload["restore"], payload["resource_group"], payload["new_vm"]
    disks = restore["disks"]
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
            tags=_tags(payload),
            # Restores started before these were recorded get Azure's defaults.
            security_type=restore.get("security_type", "Standard"),
            secure_boot=bool(restore.get("secure_boot", False)),
            vtpm=bool(restore.get("vtpm", False)),
            zone=restore.get("zone"),
            caching=restore.get("caching") or {},
        ),
        vm_key=payload["vm_key"],
        operation="restore",
    )
    return {"vm_id": accepted.resource_id, "poll_after": accepted.poll_after_seconds}
