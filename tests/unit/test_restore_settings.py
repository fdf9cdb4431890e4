"""What a restored VM gets of its recorded settings: tags without the backup policy, its licence,
boot diagnostics (its storage account only in its own region), and the recorded static address
only on the recorded subnet."""

from __future__ import annotations

import dataclasses

from shared.activities.restore import _static_address, _vm_extras, _vm_tags, restored_vm_tags
from shared.domain.models import Backup, NicConfig
from tests.unit.builders import a_backup

SUBNET = (
    "/subscriptions/s/resourceGroups/rg-app/providers/Microsoft.Network/virtualNetworks/v/subnets/a"
)
ACCOUNT = "https://diagacct.blob.core.windows.net/"


def _backup(**fields: object) -> Backup:
    return dataclasses.replace(a_backup("2026-11-29T02:00").build(), **fields)  # type: ignore[arg-type]


def test_the_policy_tags_old_and_new_are_not_restored_the_rest_are() -> None:
    backup = _backup(
        tags={"backup-policy": "daily=7", "azlin:backup-schedule": "{}", "env": "prod"}
    )
    assert restored_vm_tags(backup) == {"env": "prod"}
    extras = _vm_extras(backup, "eastus")
    assert extras["notes"] == [
        "not tagged azlin:backup-schedule, backup-policy: tag it to have the restored VM backed up"
    ]


def test_the_restores_own_tags_win_and_the_total_stays_within_azures_50() -> None:
    recorded = {f"t{n:02}": "x" for n in range(60)} | {"managed-by": "someone"}
    payload = {"backup_id": "b", "restore_id": "r"}
    tags = _vm_tags(payload, recorded)
    assert len(tags) == 50
    assert (tags["managed-by"], tags["backupdr-backup"], tags["backupdr-restore"]) == (
        "backupdr",
        "b",
        "r",
    )


def test_boot_diagnostics_keep_the_account_in_their_region_and_go_managed_elsewhere() -> None:
    backup = _backup(boot_diagnostics=True, boot_diagnostics_uri=ACCOUNT, license_type="RHEL_BYOS")
    home = _vm_extras(backup, "eastus")
    assert (home["boot_diagnostics"], home["boot_diagnostics_uri"]) == (True, ACCOUNT)
    assert home["license_type"] == "RHEL_BYOS"
    away = _vm_extras(backup, "westus2")
    assert (away["boot_diagnostics"], away["boot_diagnostics_uri"]) == (True, None)
    assert away["notes"] == [
        "boot diagnostics in managed storage: the recorded storage account is in eastus"
    ]
    managed = _vm_extras(_backup(boot_diagnostics=True), "eastus")
    assert (managed["boot_diagnostics"], managed["boot_diagnostics_uri"]) == (True, None)
    off = _vm_extras(_backup(boot_diagnostics_uri=ACCOUNT), "eastus")
    assert off["boot_diagnostics"] is False


def test_the_static_address_is_asked_for_only_on_the_recorded_subnet() -> None:
    nic = NicConfig(
        id="n", subnet_id=SUBNET, private_ip_allocation="Static", private_ip_address="10.0.0.9"
    )
    notes: list[str] = []
    assert _static_address(nic, SUBNET.upper(), notes) == "10.0.0.9"
    assert notes == []
    assert _static_address(nic, SUBNET[:-1] + "b", notes) is None
    assert notes == [
        "private IP Dynamic: the recorded static address 10.0.0.9 is on subnet v/a in rg-app, "
        "not the one restored into"
    ]
    dynamic = dataclasses.replace(nic, private_ip_allocation="Dynamic")
    assert _static_address(dynamic, SUBNET, []) is None
    missing: list[str] = []
    assert _static_address(None, SUBNET, missing) is None
    assert missing == ["no NIC recorded with this backup: private IP Dynamic"]
