"""Resolving a VM an operator names: live in Azure, else as its last backup recorded it."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import cast

import pytest

from shared.domain.models import VM, Backup, BackupState, Disk, vm_key
from shared.domain.policy import Regions
from shared.inputs import (
    InputError,
    checked_backup_id,
    checked_new_vm,
    checked_region,
    gone_vms,
    known_vm,
    manual_backup,
    one_vm,
)
from shared.ports import BackupCatalog
from tests.unit.builders import a_backup, at

NOW = at("2026-11-29T03:00")
VMS_IN = "/subscriptions/s/resourceGroups"


def live(name: str, group: str) -> VM:
    vm_id = f"{VMS_IN}/{group}/providers/Microsoft.Compute/virtualMachines/{name}"
    return VM(vm_id, name, group, "eastus", (Disk(f"/d/{name}", f"{name}-os", 30, "Premium_LRS"),))


def recorded(name: str, group: str, taken: str, state: BackupState) -> Backup:
    vm_id = f"{VMS_IN}/{group}/providers/Microsoft.Compute/virtualMachines/{name}"
    backup = a_backup(taken, suffix=f"-{name}-{group}").build()
    return dataclasses.replace(
        backup,
        vm_key=vm_key(group, name),
        vm_id=vm_id,
        vm_name=name,
        state=state,
        policy="daily=3",
    )


class FakeCatalog:
    """The two reads resolution makes."""

    def __init__(self, backups: list[Backup]) -> None:
        self.backups = backups

    def latest_backups(self) -> dict[str, Backup]:
        latest: dict[str, Backup] = {}
        for b in sorted(self.backups, key=lambda b: b.taken_at):
            if b.state is BackupState.COMPLETED:
                latest[b.vm_key] = b
        return latest

    def list_backups(self, key: str) -> list[Backup]:
        mine = [b for b in self.backups if b.vm_key == key and b.state is not BackupState.DELETED]
        return sorted(mine, key=lambda b: b.taken_at, reverse=True)


CATALOG = cast(
    BackupCatalog,
    FakeCatalog(
        [
            recorded("web-01", "rg-app", "2026-11-28T02:00", BackupState.COMPLETED),
            recorded("old-01", "rg-lost", "2026-11-27T02:00", BackupState.COMPLETED),
            recorded("old-01", "rg-lost", "2026-11-28T02:00", BackupState.COMPLETED),
            recorded("old-01", "rg-lost", "2026-11-28T05:00", BackupState.FAILED),
            recorded("twin-01", "rg-a", "2026-11-28T02:00", BackupState.COMPLETED),
            recorded("twin-01", "rg-b", "2026-11-28T02:00", BackupState.COMPLETED),
        ]
    ),
)
VMS = [live("web-01", "rg-app")]


def test_a_live_vm_is_the_one_azure_has() -> None:
    vm = known_vm(VMS, CATALOG, "WEB-01")
    assert vm == VMS[0]
    assert not vm.gone


def test_a_vm_that_is_gone_is_its_newest_completed_backup_record() -> None:
    vm = known_vm(VMS, CATALOG, "old-01")
    assert vm.gone
    assert (vm.key, vm.resource_group) == ("rg-lost~old-01", "rg-lost")
    assert vm.tags["backup-policy"] == "daily=3"
    assert [v.key for v in gone_vms(CATALOG, VMS)] == [
        "rg-a~twin-01",
        "rg-b~twin-01",
        "rg-lost~old-01",
    ]


def test_a_name_nobody_knows_is_not_found() -> None:
    with pytest.raises(InputError, match="no VM named 'ghost-01'") as raised:
        known_vm(VMS, CATALOG, "ghost-01")
    assert raised.value.not_found


def test_a_vm_name_in_another_group_is_not_found_in_the_group_given() -> None:
    with pytest.raises(InputError, match="no VM named 'old-01' in rg-app"):
        known_vm(VMS, CATALOG, "old-01", "rg-app")


def test_deleted_vms_of_one_name_in_two_groups_need_the_group() -> None:
    with pytest.raises(InputError, match="give the resource group") as raised:
        known_vm(VMS, CATALOG, "twin-01")
    assert raised.value.code == "AmbiguousVm"
    assert known_vm(VMS, CATALOG, "twin-01", "rg-b").key == "rg-b~twin-01"


def test_a_vm_that_is_gone_gets_no_manual_backup() -> None:
    with pytest.raises(InputError, match="no longer exists") as raised:
        manual_backup(known_vm(VMS, CATALOG, "old-01"), NOW, Regions())
    assert raised.value.code == "VmGone"


@pytest.mark.parametrize(
    "check",
    [
        lambda: checked_region("westus2\n"),
        lambda: checked_backup_id("20261129t020000z-abc\n"),
        lambda: checked_new_vm([], "web-02\n", "rg-app"),
        lambda: one_vm([live("web-01", "rg-app")], "web-01\n"),
        lambda: one_vm([live("web-01", "rg-app")], "web-01", "rg-app\n"),
    ],
    ids=["region", "backup-id", "new-vm", "vm", "resource-group"],
)
def test_a_value_with_a_trailing_newline_is_refused(check: Callable[[], object]) -> None:
    with pytest.raises(InputError):
        check()
