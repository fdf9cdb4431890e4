"""Allow-lists for operator input, shared by the HTTP API and the `backupdr` command line.

Both entrypoints start the same workflows from the same checked values: a check that fails raises
`InputError` with a code and a one-line message, which the HTTP API answers as 400 (404 for a VM
that does not exist) and the command line as exit code 2. Nothing is changed before these pass.
"""

from __future__ import annotations

import dataclasses
import re
from datetime import datetime
from typing import Any

from shared.domain import names
from shared.domain.models import VM, Backup, BackupState
from shared.domain.policy import BackupPolicy, PolicyError, Regions, policy_for
from shared.domain.retention import MANUAL_KEEP
from shared.ports import BackupCatalog

# `\Z`, not `$`: `$` also matches before a trailing newline, so "web-01\n" would pass.
VM_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\Z")
RESOURCE_GROUP = re.compile(r"^[\w.()-]{1,90}\Z")
REGION = re.compile(r"^[a-z][a-z0-9]{2,31}\Z")
MAX_KEEP_DAYS = 3650  # a manual backup kept longer belongs in an archive, not a snapshot
BACKUP_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,79}\Z")
SUBNET = re.compile(r"^[\w.-]{1,80}/[\w.-]{1,80}\Z")  # VNET/SUBNET in the target group
SUBNET_ID = re.compile(
    r"^/subscriptions/[0-9a-fA-F-]{36}/resourceGroups/[\w.()-]{1,90}/providers/"
    r"Microsoft\.Network/virtualNetworks/[\w.-]{1,80}/subnets/[\w.-]{1,80}\Z",
    re.IGNORECASE,
)

Payload = dict[str, Any]


class InputError(ValueError):
    """Input the app refuses before changing anything; `code` names the rule that failed."""

    def __init__(self, code: str, message: str, *, not_found: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.not_found = not_found


def find_vm(vms: list[VM], name: str, resource_group: str | None = None) -> list[VM]:
    """VMs named `name` (Azure names are case-insensitive), optionally in one resource group."""
    return [
        vm
        for vm in vms
        if vm.name.lower() == name.lower()
        and (resource_group is None or vm.resource_group.lower() == resource_group.lower())
    ]


def one_vm(vms: list[VM], name: str, resource_group: str | None = None) -> VM:
    """The one VM `name` (in `resource_group` when given) among `vms`."""
    if not VM_NAME.match(name):
        raise InputError("InvalidVmName", f"{name!r} is not a valid VM name")
    if resource_group is not None and not RESOURCE_GROUP.match(resource_group):
        raise InputError(
            "InvalidResourceGroup", f"{resource_group!r} is not a valid resource group name"
        )
    matches = find_vm(vms, name, resource_group)
    if not matches:
        where = f" in {resource_group}" if resource_group else ""
        raise InputError("VmNotFound", f"no VM named {name!r}{where}", not_found=True)
    if len(matches) > 1:
        groups = ", ".join(sorted(vm.resource_group for vm in matches))
        raise InputError(
            "AmbiguousVm", f"several VMs are named {name!r} ({groups}): give the resource group"
        )
    return matches[0]


def known_vm(
    vms: list[VM], catalog: BackupCatalog, name: str, resource_group: str | None = None
) -> VM:
    """The VM `name` as Azure has it or, when Azure has no such VM, as its last backup recorded
    it (`VM.gone`): a VM that was deleted, even with its resource group, keeps its backups, and
    they can still be listed, restored and DR-tested. A name neither Azure nor the catalog
    knows stays "no VM named ..."."""
    try:
        return one_vm(vms, name, resource_group)
    except InputError as error:
        if error.code != "VmNotFound":
            raise
        missing = error
    matches = find_vm(gone_vms(catalog, vms), name, resource_group)
    if not matches:
        raise missing
    if len(matches) > 1:
        groups = ", ".join(sorted(vm.resource_group for vm in matches))
        raise InputError(
            "AmbiguousVm",
            f"several deleted VMs named {name!r} have backups ({groups}): give the resource group",
        )
    return matches[0]


def gone_vms(catalog: BackupCatalog, vms: list[VM]) -> list[VM]:
    """VMs with completed backups that are not among `vms` (the live list): each as its newest
    completed backup recorded it, sorted by key."""
    live = {vm.key for vm in vms}
    gone = []
    for key, latest in catalog.latest_backups().items():
        if key in live:
            continue
        full = next(
            (b for b in catalog.list_backups(key) if b.state is BackupState.COMPLETED), latest
        )
        gone.append(VM.from_backup(full))
    return sorted(gone, key=lambda vm: vm.key)


def checked_new_vm(vms: list[VM], name: str, resource_group: str) -> str:
    """A name for a new VM in `resource_group` that no VM there has yet."""
    if not VM_NAME.match(name):
        raise InputError("InvalidVmName", f"{name!r} is not a valid VM name")
    if find_vm(vms, name, resource_group):
        raise InputError("VmExists", f"a VM named {name!r} already exists in {resource_group}")
    return name


def checked_region(value: object, what: str = "testRegion") -> str:
    if not isinstance(value, str) or not REGION.match(value):
        raise InputError("InvalidRegion", f"{what} {value!r} is not an Azure region name")
    return value


def checked_backup_id(value: object, what: str = "backupId") -> str:
    if not isinstance(value, str) or not BACKUP_ID.match(value):
        raise InputError("InvalidBackupId", f"{what} {value!r} is not a backup id")
    return value


def valid_policy(vm: VM, served: Regions) -> BackupPolicy | None:
    """The VM's policy; a malformed tag is refused with what is wrong (fail safe)."""
    try:
        return policy_for(vm, served)
    except PolicyError as error:
        raise InputError("InvalidPolicyTag", f"{vm.name}: {error}") from None


def policy_region(vm: VM, served: Regions) -> str:
    """Where the VM's policy replicates to: the default DR-test region."""
    policy = valid_policy(vm, served)
    if policy is None or not policy.replicate:
        raise InputError("NoTestRegion", f"{vm.name} has no replicate region: give a test region")
    return policy.replicate


def manual_backup(
    vm: VM, now: datetime, served: Regions, keep_days: object = MANUAL_KEEP.days
) -> tuple[str, Payload]:
    """The instance id and input of a manual `vm_backup_v3` (the scheduled workflow, on demand),
    kept for `keep_days` whatever the VM's GFS policy says."""
    if vm.gone:
        raise InputError(
            "VmGone",
            f"{vm.name} no longer exists in Azure: its backups are kept, it gets no new ones",
            not_found=True,
        )
    valid_policy(vm, served)  # a malformed tag is refused before anything starts
    days = checked_keep_days(keep_days)
    if vm.not_protectable:  # never a backup of fewer disks than the VM has
        raise InputError(
            "NotProtectable", f"{vm.name} cannot be backed up: {vm.not_protectable_reason}"
        )
    slot = now.replace(microsecond=0)
    payload = {
        "vm_key": vm.key,
        "resource_group": vm.resource_group,
        "name": vm.name,
        "slot": slot.isoformat(),
        "manual": True,
        "keep_days": days,
    }
    return names.orchestration_id("manual-backup", vm.key, slot), payload


def checked_keep_days(value: object) -> int:
    """How long a manual backup is kept: whole days, 1 to MAX_KEEP_DAYS."""
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= MAX_KEEP_DAYS:
        raise InputError(
            "InvalidKeepDays", f"keepDays={value!r}: give whole days from 1 to {MAX_KEEP_DAYS}"
        )
    return value


def dr_test_request(
    vm: VM,
    now: datetime,
    *,
    test_region: str,
    backup_id: str | None = None,
    rto_target_seconds: float | None = None,
) -> tuple[str, Payload]:
    """The instance id (= test id) and input of a `dr_test_v2` of `vm` started at `now`."""
    test_id = names.dr_test_id(vm.key, now.replace(microsecond=0))
    return test_id, {
        "vm_key": vm.key,
        "vm_name": vm.name,
        "test_region": test_region,
        "test_id": test_id,
        "backup_id": backup_id,
        "rto_target_seconds": rto_target_seconds,
    }


@dataclasses.dataclass(frozen=True)
class RestoreFields:
    """How an entrypoint names a restore's inputs, so a refusal names what the operator typed."""

    backup: str = "backupId"
    new_vm: str = "newVm"
    disks_only: str = "disksOnly"
    region: str = "region"
    resource_group: str = "resourceGroup"
    subnet: str = "subnet"
    vm_group: str = "the VM's resource group"


def restore_request(
    vm: VM,
    backup: Backup | None,
    now: datetime,
    *,
    backup_id: object,
    new_vm: object = None,
    disks_only: object = False,
    region: object = None,
    resource_group: object = None,
    subnet: object = None,
    keep_partial: object = False,
    fields: RestoreFields = RestoreFields(),
) -> tuple[str, Payload]:
    """The instance id (= restore id) and input of a `restore_backup_v2` of `vm` from `backup`
    (the catalog's row for `backup_id`, None if it has none), started at `now`.

    Checks the shapes only; what Azure must have for it to work (the replica complete, the group
    and subnet there, the size available, the name free) is `check_restore`'s pre-flight.
    """
    checked_restore_shape(new_vm, disks_only, resource_group, subnet, keep_partial, fields)
    f = fields
    checked_backup_id(backup_id, f.backup)
    if backup is None:
        raise InputError("BackupNotFound", f"no backup with id {backup_id!r}")
    if backup.vm_key != vm.key and backup.vm_name.lower() == vm.name.lower():
        # A live VM of that name elsewhere (say, one restored earlier) hides the one backed up.
        raise InputError(
            "BackupOfAnotherVm",
            f"{f.backup} {backup_id!r} is of {backup.vm_name} in {backup.source_resource_group}, "
            f"not in {vm.resource_group}: add {f.vm_group} {backup.source_resource_group}",
        )
    if backup.vm_key != vm.key or backup.state is not BackupState.COMPLETED:
        raise InputError(
            "BackupNotRestorable", f"{f.backup} {backup_id!r}: not a completed backup of {vm.name}"
        )
    where = checked_region(region, f.region) if region is not None else backup.region
    restore_id = names.orchestration_id("restore", vm.key, now.replace(microsecond=0))
    return restore_id, {
        "vm_key": vm.key,
        "backup_id": backup.backup_id,
        "restore_id": restore_id,
        "resource_group": resource_group or vm.resource_group,
        "region": where,
        "new_vm": new_vm,
        "subnet": subnet,
        "keep_partial": keep_partial,
    }


def checked_restore_shape(
    new_vm: object,
    disks_only: object,
    resource_group: object,
    subnet: object,
    keep_partial: object = False,
    fields: RestoreFields = RestoreFields(),
) -> None:
    """A restore's inputs that need nothing looked up: one of a new VM's name or disks only,
    and the names' and subnet's shapes."""
    f = fields
    if not isinstance(disks_only, bool) or not isinstance(keep_partial, bool):
        what = f.disks_only if not isinstance(disks_only, bool) else "keepPartial"
        raise InputError("InvalidFlag", f"{what} must be true or false")
    if (new_vm is None) == (not disks_only):
        raise InputError(
            "NewVmOrDisksOnly",
            f"give one of {f.new_vm} NAME (a VM on the restored disks) or {f.disks_only}"
            if new_vm is None
            else f"{f.new_vm} and {f.disks_only} exclude each other: give one",
        )
    if new_vm is not None and not (isinstance(new_vm, str) and VM_NAME.match(new_vm)):
        raise InputError("InvalidVmName", f"{f.new_vm} {new_vm!r} is not a valid VM name")
    if resource_group is not None and not (
        isinstance(resource_group, str) and RESOURCE_GROUP.match(resource_group)
    ):
        raise InputError(
            "InvalidResourceGroup",
            f"{f.resource_group} {resource_group!r} is not a valid resource group name",
        )
    if subnet is not None and not (
        isinstance(subnet, str) and (SUBNET.match(subnet) or SUBNET_ID.match(subnet))
    ):
        raise InputError(
            "InvalidSubnet", f"{f.subnet} {subnet!r}: give VNET/SUBNET or a subnet's resource id"
        )
    if subnet is not None and new_vm is None:
        raise InputError(
            "SubnetWithoutVm", f"{f.subnet} is for the new VM's NIC: give it with {f.new_vm}"
        )
