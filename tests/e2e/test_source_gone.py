"""A protected VM is deleted with its resource group: its backups stay, listed and restorable.

The fleet's timers back the VM up (each backup recording the VM's configuration, its NIC read
once per backup); then the VM and its whole group are deleted in the simulator. `backup list`
(the CLI), `GET /api/vms/{vm}/backups` and `status` still show it, as "source gone", from the
catalog alone; the backup row holds what a rebuild needs; and retention, in the fleet ticks that
follow or run for it directly, deletes none of its backups.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import azure.functions as func
import pytest
from typer.testing import CliRunner, Result

from cli.main import app
from local.azurite import Azurite
from local.stack import Stack, local_stack
from shared.activities.retention import apply_retention
from shared.domain.models import Backup, BackupState, NicConfig
from shared.domain.policy import format_policy, parse_policy

SUB = "00000000-0000-0000-0000-000000000001"
START = datetime(2026, 11, 10, 0, 30, tzinfo=UTC)
GONE_AT = START + timedelta(hours=3, minutes=45)  # after 4 hourly backups of each VM
# Hourly backups, one day kept: each fleet tick's retention prunes a live VM's older backups.
POLICY = "schedule=0 * * * *;daily=1;weekly=0;monthly=0"
CANONICAL = format_policy(parse_policy(POLICY))
LOST_GROUP = "rg-lost-eastus"
LOST = f"{LOST_GROUP.lower()}~app-01"
KEPT = "rg-app-eastus~web-01"
_prefixes = (f"gone{n}" for n in itertools.count())


def _vnet(name: str, prefix: str, subnet: str, subnet_prefix: str) -> dict[str, Any]:
    return {
        "name": name,
        "address_prefix": prefix,
        "subnets": [{"name": subnet, "address_prefix": subnet_prefix}],
    }


FLEET: dict[str, Any] = {
    "subscriptions": [
        {
            "id": SUB,
            "resource_groups": [
                {"name": "rg-app-eastus", "region": "eastus"},
                {
                    "name": LOST_GROUP,
                    "region": "eastus",
                    "vnets": [
                        _vnet("vnet-other", "10.2.0.0/16", "snet-other", "10.2.1.0/24"),
                        _vnet("vnet-lost", "10.3.0.0/16", "snet-lost", "10.3.1.0/24"),
                    ],
                },
                {"name": "rg-backups-eastus", "region": "eastus"},
                {"name": "rg-backupdr-drtest-eastus", "region": "eastus"},
            ],
            "vms": [
                {
                    "name": "web-01",
                    "resource_group": "rg-app-eastus",
                    "tags": {"backup-policy": POLICY},
                    "os_disk": {"size_gb": 8},
                },
                {
                    "name": "app-01",
                    "resource_group": LOST_GROUP,
                    "size": "Standard_D4s_v5",
                    "zone": "2",
                    "security_type": "TrustedLaunch",
                    "subnet": "vnet-lost/snet-lost",
                    "accelerated_networking": True,
                    "license_type": "RHEL_BYOS",
                    "boot_diagnostics": True,
                    "tags": {"backup-policy": POLICY, "env": "prod"},
                    "os_disk": {"size_gb": 30, "sku": "Premium_LRS"},
                    "data_disks": [
                        {"lun": 0, "size_gb": 64, "sku": "StandardSSD_LRS", "caching": "ReadOnly"},
                        {"lun": 3, "size_gb": 32, "sku": "Premium_LRS"},
                    ],
                },
            ],
        }
    ]
}


@pytest.fixture(scope="module")
def stack(azurite: Azurite) -> Iterator[Stack]:
    """The fleet backed up for four hours, then app-01 and its resource group deleted."""
    with local_stack(FLEET, start=START, azurite=azurite, table_prefix=next(_prefixes)) as running:
        running.host.run_timers(until=GONE_AT)
        running.host.run_until_idle()
        _delete_group(running, LOST_GROUP)
        yield running


def _delete_group(stack: Stack, group: str) -> None:
    """What `az group delete` leaves: no VM, disk, NIC or VNet of the group, and no group."""
    world = stack.simulator.world
    prefix = f"/subscriptions/{SUB}/resourcegroups/{group}/".lower()
    with world.lock:
        for resource_id in [r.id for r in world.resources.values()]:
            if resource_id.lower().startswith(prefix):
                world.remove(resource_id)
        del world.groups[(SUB.lower(), group.lower())]


def _live(stack: Stack, vm_key: str) -> list[Backup]:
    """Its restorable backups (the hourly ones retention expired before are soft-deleted)."""
    return [
        b for b in stack.services.catalog.list_backups(vm_key) if b.state is BackupState.COMPLETED
    ]


def _listed(backups: list[dict[str, Any]]) -> list[str]:
    return [b["backup_id"] for b in backups if b["state"] == "completed"]


def _cli(stack: Stack, *args: str) -> Result:
    return CliRunner().invoke(app, ["-o", "json", *args], env=stack.cli_env())


def _get(stack: Stack, path: str) -> func.HttpResponse:
    request = func.HttpRequest(method="GET", url=f"http://localhost/api/{path}", body=b"")
    return stack.host.call_http("vm_backups", request)


def test_the_vm_and_its_group_are_gone_but_its_backups_are_not(stack: Stack) -> None:
    assert not [vm for vm in stack.simulator.vms() if vm["name"] == "app-01"]
    backups = _live(stack, LOST)
    assert len(backups) >= 2
    assert all(b.state is BackupState.COMPLETED for b in backups)
    snapshots = {s["id"].lower() for s in stack.simulator.snapshots()}
    assert {ref.snapshot_id.lower() for b in backups for ref in b.snapshots} <= snapshots


def test_each_backup_records_what_a_rebuild_needs(stack: Stack) -> None:
    backup = _live(stack, LOST)[0]
    lost = f"/subscriptions/{SUB}/resourceGroups/{LOST_GROUP}/providers"
    assert backup.resource_group == LOST_GROUP
    assert (backup.vm_name, backup.region, backup.zones) == ("app-01", "eastus", ("2",))
    assert (backup.vm_size, backup.os_type) == ("Standard_D4s_v5", "Linux")
    assert (backup.security_type, backup.secure_boot, backup.vtpm) == ("TrustedLaunch", True, True)
    assert backup.hyper_v_generation == "V2"
    assert backup.tags == {"backup-policy": POLICY, "env": "prod"}
    assert backup.policy == CANONICAL  # the tag as parsed: a legacy JSON tag reads the same
    assert (backup.license_type, backup.boot_diagnostics) == ("RHEL_BYOS", True)
    assert [(r.disk_role, r.lun, r.sku, r.size_gb, r.caching) for r in backup.snapshots] == [
        ("os", None, "Premium_LRS", 30, "ReadWrite"),
        ("lun0", 0, "StandardSSD_LRS", 64, "ReadOnly"),
        ("lun3", 3, "Premium_LRS", 32, "None"),
    ]
    (nic,) = backup.nics
    assert nic == NicConfig(
        id=f"{lost}/Microsoft.Network/networkInterfaces/app-01-nic",
        subnet_id=f"{lost}/Microsoft.Network/virtualNetworks/vnet-lost/subnets/snet-lost",
        private_ip_allocation="Dynamic",
        private_ip_address="10.3.1.4",
        accelerated_networking=True,
        primary=True,
    )
    assert backup.subnet_id == nic.subnet_id
    stored = stack.services.catalog.get_backup(LOST, backup.backup_id)
    assert stored == backup  # as the catalog keeps it, not only as a listing shows it


def test_backup_list_shows_the_backups_of_a_vm_that_is_gone(stack: Stack) -> None:
    result = _cli(stack, "backup", "list", "app-01")
    assert result.exit_code == 0, result.stderr
    listed = json.loads(result.stdout)
    assert listed["source_gone"] is True
    assert _listed(listed["backups"]) == [b.backup_id for b in _live(stack, LOST)]
    shown = _cli(stack, "backup", "show", "app-01", "--resource-group", LOST_GROUP)
    assert shown.exit_code == 0, shown.stderr
    document = json.loads(shown.stdout)
    assert (document["source_gone"], document["resource_group"]) == (True, LOST_GROUP)
    assert document["tag"] == CANONICAL


def test_a_name_neither_azure_nor_the_catalog_knows_is_still_bad_input(stack: Stack) -> None:
    result = _cli(stack, "backup", "list", "ghost-01")
    assert result.exit_code == 2
    assert "no VM named 'ghost-01'" in result.stderr


def test_a_vm_that_is_gone_gets_no_new_backup(stack: Stack) -> None:
    result = _cli(stack, "backup", "trigger", "app-01")
    assert result.exit_code == 2
    assert "no VM named 'app-01'" in result.stderr


def test_the_http_route_lists_them_and_answers_404_for_an_unknown_vm(stack: Stack) -> None:
    response = _get(stack, "vms/app-01/backups")
    assert response.status_code == 200
    body = json.loads(response.get_body())
    assert (body["source_gone"], body["resource_group"]) == (True, LOST_GROUP)
    assert _listed(body["backups"]) == [b.backup_id for b in _live(stack, LOST)]
    assert body["backups"][0]["nics"][0]["subnet_id"].endswith("/subnets/snet-lost")
    missing = _get(stack, "vms/ghost-01/backups")
    assert missing.status_code == 404
    assert json.loads(missing.get_body())["error"]["code"] == "VmNotFound"


def test_status_marks_the_vm_source_gone_with_its_backups(stack: Stack) -> None:
    result = _cli(stack, "status")
    health = json.loads(result.stdout)
    (gone,) = health["source_gone"]
    assert (gone["vm"], gone["resource_group"], gone["policy"]) == ("app-01", LOST_GROUP, POLICY)
    assert gone["backup_ids"] == [b.backup_id for b in _live(stack, LOST)]
    assert [v["vm"] for v in health["vms"]] == ["web-01"]
    table = _cli(stack, "-o", "table", "status")
    assert "source gone" in table.stdout


def test_retention_in_later_fleet_ticks_deletes_none_of_its_backups(stack: Stack) -> None:
    before = [b.backup_id for b in _live(stack, LOST)]
    pruned_before = len(stack.services.catalog.list_backups(KEPT, include_deleted=True))
    stack.host.run_timers(until=GONE_AT + timedelta(days=2))
    stack.host.run_until_idle()
    # The live VM went on being backed up and pruned in the same ticks...
    kept = stack.services.catalog.list_backups(KEPT, include_deleted=True)
    assert len(kept) > pruned_before
    assert any(b.state is BackupState.SOFT_DELETED for b in kept)
    # ...while every backup of the VM that is gone stays, snapshots and all.
    assert [b.backup_id for b in _live(stack, LOST)] == before
    snapshots = {s["id"].lower() for s in stack.simulator.snapshots()}
    assert {r.snapshot_id.lower() for b in _live(stack, LOST) for r in b.snapshots} <= snapshots
    # Retention run for it on purpose keeps them all, and says why.
    now = stack.clock.now().isoformat()
    result = apply_retention({"vm_key": LOST, "now": now}, stack.services)
    assert (result["deleted"], result["kept"]) == (0, len(before))
    assert result["halted"].startswith("no valid policy: source gone: VM app-01")
    assert [b.backup_id for b in _live(stack, LOST)] == before
