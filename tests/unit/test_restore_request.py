"""The checks a restore's input gets, shared by `backup restore` and POST /api/restores/{vm}:
one code and one message naming what the entrypoint calls the field."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from shared.domain.models import VM, Backup, BackupState, Disk
from shared.inputs import InputError, RestoreFields, restore_request
from tests.unit.builders import VM_KEY, a_backup, at

NOW = at("2026-11-29T03:00:00.123456")
CLI = RestoreFields(backup="--backup", new_vm="--new-vm", disks_only="--disks-only")


def _vm() -> VM:
    group, name = VM_KEY.split("~")
    return VM(f"/x/{name}", name, group, "eastus", (Disk("/d", "os", 30, "Premium_LRS"),))


def _backup(**fields: Any) -> Backup:
    backup = a_backup("2026-11-29T02:00").build()
    vm = _vm()
    return dataclasses.replace(backup, **{"backup_id": "b-1", "vm_name": vm.name, **fields})


def _request(backup: Backup | None = None, **fields: Any) -> tuple[str, dict[str, Any]]:
    found = backup if backup is not None else _backup()
    return restore_request(_vm(), found, NOW, **{"backup_id": found.backup_id, **fields})


def test_a_good_request_names_its_instance_after_the_vm_and_the_second() -> None:
    backup = _backup(backup_id="b-1")
    restore_id, payload = _request(backup, new_vm="web-02")
    assert restore_id == payload["restore_id"]
    assert payload == {
        "vm_key": VM_KEY,
        "backup_id": "b-1",
        "restore_id": restore_id,
        "resource_group": _vm().resource_group,
        "region": "eastus",
        "new_vm": "web-02",
        "subnet": None,
        "keep_partial": False,
    }


@pytest.mark.parametrize(
    ("fields", "code", "message"),
    [
        ({}, "NewVmOrDisksOnly", "give one of --new-vm NAME"),
        ({"new_vm": "a", "disks_only": True}, "NewVmOrDisksOnly", "exclude each other"),
        ({"disks_only": "yes"}, "InvalidFlag", "--disks-only must be true or false"),
        ({"new_vm": "a b"}, "InvalidVmName", "--new-vm 'a b'"),
        ({"disks_only": True, "subnet": "v/s"}, "SubnetWithoutVm", "give it with --new-vm"),
        ({"new_vm": "a", "subnet": "v"}, "InvalidSubnet", "VNET/SUBNET"),
        ({"new_vm": "a", "region": "West US"}, "InvalidRegion", "'West US'"),
    ],
)
def test_a_bad_field_is_refused_by_the_name_the_entrypoint_gives_it(
    fields: dict[str, Any], code: str, message: str
) -> None:
    with pytest.raises(InputError) as raised:
        _request(**fields, fields=CLI)
    assert raised.value.code == code
    assert message in str(raised.value)


def test_an_unknown_failed_or_foreign_backup_is_refused() -> None:
    vm = _vm()
    with pytest.raises(InputError, match="no backup with id") as missing:
        restore_request(vm, None, NOW, backup_id="b-9", disks_only=True)
    assert missing.value.code == "BackupNotFound"
    failed = _backup(state=BackupState.FAILED)
    with pytest.raises(InputError) as refused:
        _request(failed, disks_only=True)
    assert refused.value.code == "BackupNotRestorable"
    elsewhere = _backup(vm_key="rg-other~" + vm.name.lower(), resource_group="rg-other")
    with pytest.raises(InputError, match="add the VM's resource group rg-other") as hidden:
        _request(elsewhere, disks_only=True)
    assert hidden.value.code == "BackupOfAnotherVm"
