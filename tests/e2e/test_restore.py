"""`backup restore` against the ARM simulator: from the replicas into the DR region, pre-flight
refusals that create nothing, and a failure midway that deletes (or keeps and lists) what it made.

The CLI runs the app's restore workflow in-process as the operator, whose roles the simulator
enforces as README tells operators to hold them.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from functools import partial
from typing import Any

import pytest

from cli import workflows
from cli.context import Options, open_run
from cli.workflows import Start, outcome, run_workflows
from local.armsim import ArmSimulator
from local.armsim.faults import FaultRule
from local.azurite import Azurite
from shared.adapters.catalog import catalog_from_settings
from shared.clock import VirtualClock
from shared.runner.host import LocalDurableHost
from shared.settings import Settings
from tests.e2e.test_cli import START, World, _one_error_line

SUB = "00000000-0000-0000-0000-000000000001"
DR_GROUP = "rg-recovery-westus2"
DR_SUBNET = "vnet-recovery/snet-recovery"
POLICY = "schedule=0 2 * * *;daily=7;weekly=4;monthly=12;replicate=westus2"


def _vnet(name: str, prefix: str, subnet: str, **infra: bool) -> dict[str, Any]:
    """A VNet with one subnet; `isolated=` makes it infra's DR-test network module."""
    return {
        "name": name,
        "address_prefix": f"{prefix}.0.0/16",
        "subnets": [{"name": subnet, "address_prefix": f"{prefix}.1.0/24", **infra}],
    }


FLEET: dict[str, Any] = {
    "subscriptions": [
        {
            "id": SUB,
            "resource_groups": [
                {
                    "name": "rg-app-eastus",
                    "region": "eastus",
                    "vnets": [_vnet("vnet-app", "10.1", "snet-app")],
                },
                {"name": "rg-backups-eastus", "region": "eastus"},
                {
                    "name": "rg-backupdr-drtest-eastus",
                    "region": "eastus",
                    "vnets": [
                        _vnet("vnet-backupdr-drtest", "10.90", "snet-restore", isolated=True)
                    ],
                },
                {"name": "rg-backups-westus2", "region": "westus2"},
                {"name": "rg-backupdr-recovery-westus2", "region": "westus2"},  # a DR region
                {
                    "name": "rg-backupdr-drtest-westus2",
                    "region": "westus2",
                    "vnets": [
                        _vnet("vnet-backupdr-drtest", "10.90", "snet-restore", isolated=True)
                    ],
                },
                {
                    "name": DR_GROUP,
                    "region": "westus2",
                    "vnets": [_vnet("vnet-recovery", "10.20", "snet-recovery")],
                },
            ],
            "vms": [
                {
                    "name": "app-01",
                    "resource_group": "rg-app-eastus",
                    "size": "Standard_D4s_v5",
                    "os_type": "Linux",
                    "zone": "2",
                    "security_type": "TrustedLaunch",
                    "subnet": "vnet-app/snet-app",
                    "private_ip": "10.1.1.10",
                    "accelerated_networking": True,
                    "license_type": "RHEL_BYOS",
                    "boot_diagnostics": True,
                    "tags": {"backup-policy": POLICY, "env": "prod", "owner": "payments"},
                    "os_disk": {"size_gb": 64, "sku": "Premium_LRS", "caching": "ReadOnly"},
                    "data_disks": [
                        {"lun": 0, "size_gb": 128, "sku": "StandardSSD_LRS", "caching": "None"},
                        {"lun": 3, "size_gb": 256, "sku": "Premium_LRS", "caching": "ReadWrite"},
                    ],
                }
            ],
        }
    ]
}


@pytest.fixture
def world(azurite: Azurite) -> Iterator[World]:
    sim = ArmSimulator(clock=VirtualClock(START), fleet=copy.deepcopy(FLEET))
    with sim.serve() as server:
        yield World(sim, server.url, server.ca_path, azurite)


def _resources(world: World) -> list[str]:
    """Every disk, NIC and VM the simulator holds (snapshots aside), to compare before/after."""
    return sorted(r["id"] for r in [*world.sim.disks(), *world.sim.nics(), *world.sim.vms()])


def _backup(world: World) -> str:
    backup = world.json("backup", "trigger", "app-01")
    assert backup["backup"]["replication_status"] == "completed"
    return str(backup["backup_id"])


def _restore(world: World, backup_id: str, *args: str) -> Any:
    return world("-o", "json", "backup", "restore", "app-01", "--backup", backup_id, "--yes", *args)


def _to_dr(*args: str) -> tuple[str, ...]:
    return ("--region", "westus2", "--resource-group", DR_GROUP, *args)


def test_restores_from_the_replicas_into_the_dr_region_as_the_backup_recorded_it(
    world: World,
) -> None:
    backup_id = _backup(world)
    result = _restore(world, backup_id, *_to_dr("--subnet", DR_SUBNET, "--new-vm", "app-01-dr"))
    assert result.exit_code == 0, result.stderr
    restored = json.loads(result.stdout)
    assert restored["state"] == "completed"
    vm = next(v for v in world.sim.vms() if v["name"] == "app-01-dr")
    props = vm["properties"]
    assert vm["location"] == "westus2"
    assert "zones" not in vm, "zone 2 of eastus means nothing in westus2"
    attached = _assert_built_as_recorded(world, vm)
    for disk in attached.values():
        assert f"/resourceGroups/{DR_GROUP}/".lower() in disk["id"].lower()
        source = disk["properties"]["creationData"]["sourceResourceId"].lower()
        assert "/resourcegroups/rg-backups-westus2/" in source, "made from the replica"
    (nic_ref,) = props["networkProfile"]["networkInterfaces"]
    nic = next(n for n in world.sim.nics() if n["id"].lower() == nic_ref["id"].lower())
    subnet = nic["properties"]["ipConfigurations"][0]["properties"]["subnet"]["id"]
    assert subnet.lower().endswith(
        f"/{DR_GROUP}/providers/microsoft.network/virtualnetworks/"
        "vnet-recovery/subnets/snet-recovery"
    )
    # The rest of what the backup recorded: tags (but its policy), licence, boot diagnostics
    # (managed), accelerated networking; the recorded static address is another subnet's.
    assert vm["tags"]["backupdr-restore"].startswith("restore-")
    assert props["diagnosticsProfile"] == {"bootDiagnostics": {"enabled": True}}
    assert _allocation(nic) == "Dynamic"
    applied = restored["applied"]
    assert (applied["private_ip_allocation"], applied["accelerated_networking"]) == (
        "Dynamic",
        True,
    )
    assert any("recorded static address 10.1.1.10 is on subnet" in n for n in applied["notes"])
    assert any("not tagged backup-policy" in n for n in applied["notes"])
    assert world.sim.authorization.refusals == []


def _assert_built_as_recorded(world: World, vm: dict[str, Any]) -> dict[int | None, Any]:
    """The restored VM has what app-01's backup recorded: size, security profile, each disk's
    LUN, SKU and caching, accelerated networking, licence and tags (but its policy). Returns
    its disks by LUN (None: the OS disk)."""
    props = vm["properties"]
    assert props["hardwareProfile"]["vmSize"] == "Standard_D4s_v5"
    security = props["securityProfile"]
    assert security["securityType"] == "TrustedLaunch"
    assert security["uefiSettings"] == {"secureBootEnabled": True, "vTpmEnabled": True}
    storage = props["storageProfile"]
    assert storage["osDisk"]["caching"] == "ReadOnly"
    assert {d["lun"]: d["caching"] for d in storage["dataDisks"]} == {0: "None", 3: "ReadWrite"}
    disks = {d["id"].lower(): d for d in world.sim.disks()}
    attached: dict[int | None, Any] = {
        None: disks[storage["osDisk"]["managedDisk"]["id"].lower()],
        **{d["lun"]: disks[d["managedDisk"]["id"].lower()] for d in storage["dataDisks"]},
    }
    assert {lun: d["sku"]["name"] for lun, d in attached.items()} == {
        None: "Premium_LRS",
        0: "StandardSSD_LRS",
        3: "Premium_LRS",
    }
    assert _nic_of(world, vm)["properties"]["enableAcceleratedNetworking"] is True
    assert props["licenseType"] == "RHEL_BYOS"
    assert _recorded_tags(vm) == {"env": "prod", "owner": "payments"}
    return attached


def _subnet_of(world: World, vm: dict[str, Any]) -> str:
    nic = _nic_of(world, vm)
    return str(nic["properties"]["ipConfigurations"][0]["properties"]["subnet"]["id"]).lower()


def _recorded_tags(vm: dict[str, Any]) -> dict[str, str]:
    """A restored VM's tags but those the restore adds."""
    ours = {"managed-by", "backupdr-backup", "backupdr-restore"}
    return {k: v for k, v in vm["tags"].items() if k not in ours}


def _allocation(nic: dict[str, Any]) -> str:
    ip = nic["properties"]["ipConfigurations"][0]["properties"]
    return f"{ip['privateIPAllocationMethod']}" + (
        f" {ip['privateIPAddress']}" if ip["privateIPAllocationMethod"] == "Static" else ""
    )


def _nic_of(world: World, vm: dict[str, Any]) -> dict[str, Any]:
    (ref,) = vm["properties"]["networkProfile"]["networkInterfaces"]
    return next(n for n in world.sim.nics() if n["id"].lower() == ref["id"].lower())


def test_in_its_own_region_a_new_vm_keeps_its_zone_and_recorded_subnet(world: World) -> None:
    backup_id = _backup(world)
    result = _restore(world, backup_id, "--new-vm", "app-01-back")
    assert result.exit_code == 0, result.stderr
    vm = next(v for v in world.sim.vms() if v["name"] == "app-01-back")
    assert (vm["location"], vm["zones"]) == ("eastus", ["2"])
    (nic_ref,) = vm["properties"]["networkProfile"]["networkInterfaces"]
    nic = next(n for n in world.sim.nics() if n["id"].lower() == nic_ref["id"].lower())
    subnet = nic["properties"]["ipConfigurations"][0]["properties"]["subnet"]["id"]
    assert subnet.endswith("/virtualNetworks/vnet-app/subnets/snet-app")
    # The VM it was restored from still holds 10.1.1.10: Dynamic, and the result says why.
    assert _allocation(nic) == "Dynamic"
    (note,) = [n for n in json.loads(result.stdout)["applied"]["notes"] if "private IP" in n]
    assert note == (
        "private IP Dynamic: the recorded static address 10.1.1.10 is not free "
        "(another NIC holds it)"
    )
    for disk in json.loads(result.stdout)["disks"]:
        source = next(d for d in world.sim.disks() if d["id"].lower() == disk.lower())
        assert "/rg-backups-eastus/" in source["properties"]["creationData"]["sourceResourceId"]


def test_disks_only_in_its_own_region_from_the_snapshots(world: World) -> None:
    backup_id = _backup(world)
    restored = json.loads(_restore(world, backup_id, "--disks-only").stdout)
    assert (restored["state"], restored["vm_id"], restored["nic_id"]) == ("completed", None, None)
    assert len(restored["disks"]) == 3
    assert all("/resourceGroups/rg-app-eastus/" in d for d in restored["disks"])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (_to_dr("--subnet", "vnet-recovery/snet-gone", "--new-vm", "x-01"), "does not exist"),
        (_to_dr("--subnet", "vnet-app/snet-app", "--new-vm", "x-01"), "does not exist"),
        (
            ("--region", "westus2", "--subnet", "vnet-app/snet-app", "--new-vm", "x-01"),
            "is in eastus, not westus2",
        ),
        (_to_dr("--subnet", DR_SUBNET, "--new-vm", "x-01"), "is not available in westus2"),
        (("--new-vm", "app-01"), "a VM named app-01 already exists in rg-app-eastus"),
        (("--resource-group", "rg-nowhere", "--disks-only"), "rg-nowhere does not exist"),
        (("--region", "centralus", "--disks-only"), "has no copy in centralus"),
    ],
    ids=[
        "missing-subnet",
        "subnet-not-in-target-group",
        "subnet-in-another-region",
        "size-unavailable",
        "name-taken",
        "missing-group",
        "no-copy-there",
    ],
)
def test_a_failed_pre_flight_exits_2_and_creates_nothing(
    world: World, args: tuple[str, ...], message: str
) -> None:
    backup_id = _backup(world)
    if message.startswith("is not available"):
        world.sim.restrict_size(SUB, "Standard_D4s_v5", "westus2")
    before = _resources(world)
    result = _restore(world, backup_id, *args)
    assert result.exit_code == 2
    assert message in _one_error_line(result)
    assert _resources(world) == before


def test_an_incomplete_replica_is_refused_before_anything_is_created(world: World) -> None:
    world.sim.add_fault(FaultRule(operation="snapshots.copy", resource="*lun3*", kind="copy-fails"))
    world("backup", "trigger", "app-01")
    (backup,) = world.json("backup", "list", "app-01")["backups"]
    assert backup["replication_status"] != "completed"
    before = _resources(world)
    result = _restore(world, backup["backup_id"], *_to_dr("--disks-only"))
    assert result.exit_code == 2
    line = _one_error_line(result)
    assert "in westus2 is not complete (" in line
    assert "lun3: " in line
    assert _resources(world) == before


def _fail_the_vm_create(world: World) -> None:
    world.sim.add_fault(
        FaultRule(operation="vms.create", resource="*app-0?-dr*", kind="fail-operation")
    )


def test_a_failure_at_the_vm_create_deletes_what_it_created_and_is_audited(world: World) -> None:
    backup_id = _backup(world)
    _fail_the_vm_create(world)
    before = _resources(world)
    result = _restore(world, backup_id, *_to_dr("--subnet", DR_SUBNET, "--new-vm", "app-01-dr"))
    assert result.exit_code == 1
    failed = json.loads(result.stdout)
    assert failed["state"] == "failed"
    assert "VM failed" in failed["error"]
    assert failed["cleaned_up"] is True
    assert _resources(world) == before
    settings = Settings.from_env({**world.env, "BACKUPDR_CREDENTIAL": "static"})
    catalog = catalog_from_settings(settings)
    entries = catalog.audit_entries(since=START, vm_key="rg-app-eastus~app-01")
    (record,) = [e for e in entries if e.action == "restore"]
    assert record.result == "failed"
    assert "VM failed" in str(record.detail)
    deletes = {e.resource_id for e in entries if e.action == "delete" and e.result == "ok"}
    assert len(deletes) == 5, "the VM, its NIC and three disks"


def test_keep_partial_keeps_and_lists_what_a_failed_restore_created(world: World) -> None:
    backup_id = _backup(world)
    _fail_the_vm_create(world)
    before = _resources(world)
    result = _restore(
        world,
        backup_id,
        *_to_dr("--subnet", DR_SUBNET, "--new-vm", "app-01-dr", "--keep-partial"),
    )
    assert result.exit_code == 1
    failed = json.loads(result.stdout)
    assert failed["state"] == "failed"
    kept = failed["kept"]
    assert sorted(kept) == sorted(set(_resources(world)) - set(before))
    assert sum("/disks/" in k for k in kept) == 3
    assert sum("/networkInterfaces/" in k for k in kept) == 1


def test_a_restore_started_under_the_old_orchestrator_still_runs(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`restore_backup` stays registered, and its steps take the inputs it sends (README's
    "Deploying while instances are in flight")."""
    backup_id = _backup(world)
    for name, value in world.env.items():
        monkeypatch.setenv(name, value)
    run = open_run(
        Options(
            simulator=world.env["BACKUPDR_SIMULATOR"], ca_bundle=world.env["BACKUPDR_CA_BUNDLE"]
        )
    )
    payload = {
        "vm_key": "rg-app-eastus~app-01",
        "backup_id": backup_id,
        "restore_id": "restore-old-1",
        "resource_group": "rg-app-eastus",
        "new_vm": "app-01-old",
        "subnet": "vnet-app/snet-app",
    }
    (status,) = run_workflows(
        run.as_operator(), [Start("restore_backup", "restore-old-1", payload)], label="old"
    )
    result = outcome(status)
    assert result["state"] == "completed", result
    assert result["vm_id"].endswith("/virtualMachines/app-01-old")


@pytest.mark.parametrize("keep_partial", [False, True], ids=["cleaned-up", "kept"])
def test_every_restore_step_converges_when_delivered_twice(
    world: World, monkeypatch: pytest.MonkeyPatch, keep_partial: bool
) -> None:
    """Each activity runs a second time after it succeeded (queue messages are at least once):
    a good restore and a failed one end as they do when delivered once."""
    monkeypatch.setattr(
        workflows, "LocalDurableHost", partial(LocalDurableHost, at_least_once=True)
    )
    backup_id = _backup(world)
    good = _restore(world, backup_id, *_to_dr("--subnet", DR_SUBNET, "--new-vm", "app-01-dr"))
    assert good.exit_code == 0, good.stderr
    _fail_the_vm_create(world)
    before = _resources(world)
    keep = ("--keep-partial",) if keep_partial else ()
    bad = _restore(world, backup_id, *_to_dr("--subnet", DR_SUBNET, "--new-vm", "app-02-dr", *keep))
    assert bad.exit_code == 1
    failed = json.loads(bad.stdout)
    if keep_partial:
        assert sorted(failed["kept"]) == sorted(set(_resources(world)) - set(before))
        assert len(failed["kept"]) == 5
    else:
        assert failed["cleaned_up"] is True
        assert _resources(world) == before


def test_a_vm_deleted_with_its_group_is_restored_from_the_catalog_alone(world: World) -> None:
    backup_id = _backup(world)
    _delete_group(world, "rg-app-eastus")
    refused = _restore(world, backup_id, "--new-vm", "app-01")
    assert refused.exit_code == 2
    assert "resource group rg-app-eastus does not exist" in _one_error_line(refused)
    in_dr = _restore(world, backup_id, *_to_dr("--subnet", DR_SUBNET, "--new-vm", "app-01"))
    assert in_dr.exit_code == 0, in_dr.stderr
    world.sim.add_group(
        SUB, "rg-app-eastus", "eastus", vnets=[_vnet("vnet-app", "10.1", "snet-app")]
    )
    at_home = ("--new-vm", "app-01", "--subnet", "vnet-app/snet-app")
    hidden = _restore(world, backup_id, *at_home)  # by the VM just restored under its name
    assert "add --vm-resource-group rg-app-eastus" in _one_error_line(hidden)
    restored = _restore(world, backup_id, *at_home, "--vm-resource-group", "rg-app-eastus")
    assert restored.exit_code == 0, restored.stderr
    vms = {(v["id"].split("/")[4], v["name"]): v for v in world.sim.vms()}
    for key in [(DR_GROUP, "app-01"), ("rg-app-eastus", "app-01")]:
        _assert_built_as_recorded(world, vms[key])
    assert _subnet_of(world, vms[DR_GROUP, "app-01"]).endswith(
        "/vnet-recovery/subnets/snet-recovery"
    )
    assert _subnet_of(world, vms["rg-app-eastus", "app-01"]).endswith("/vnet-app/subnets/snet-app")
    assert vms["rg-app-eastus", "app-01"]["zones"] == ["2"]
    # Back in its own subnet, with its address free again: Static on the recorded address.
    home = vms["rg-app-eastus", "app-01"]
    assert _allocation(_nic_of(world, home)) == "Static 10.1.1.10"
    assert _recorded_tags(home) == {"env": "prod", "owner": "payments"}
    assert json.loads(restored.stdout)["applied"]["private_ip_allocation"] == "Static"


def _delete_group(world: World, group: str) -> None:
    """What `az group delete` leaves: nothing of the group, and no group."""
    state = world.sim.world
    prefix = f"/subscriptions/{SUB}/resourcegroups/{group}/".lower()
    with state.lock:
        for resource_id in [r.id for r in state.resources.values()]:
            if resource_id.lower().startswith(prefix):
                state.remove(resource_id)
        del state.groups[(SUB.lower(), group.lower())]


def test_a_static_address_restore_converges_when_delivered_twice(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Delivered again, the NIC's PUT asks for the address it already holds (Static stays), and
    one that fell back to Dynamic asks again, is refused again and stays Dynamic."""
    monkeypatch.setattr(
        workflows, "LocalDurableHost", partial(LocalDurableHost, at_least_once=True)
    )
    backup_id = _backup(world)
    copy_beside = _restore(world, backup_id, "--new-vm", "app-01-copy")  # 10.1.1.10 is held
    assert copy_beside.exit_code == 0, copy_beside.stderr
    assert json.loads(copy_beside.stdout)["applied"]["private_ip_allocation"] == "Dynamic"
    _delete_group(world, "rg-app-eastus")
    world.sim.add_group(
        SUB, "rg-app-eastus", "eastus", vnets=[_vnet("vnet-app", "10.1", "snet-app")]
    )
    back = _restore(world, backup_id, "--new-vm", "app-01")
    assert back.exit_code == 0, back.stderr
    vm = next(v for v in world.sim.vms() if v["name"] == "app-01")
    assert _allocation(_nic_of(world, vm)) == "Static 10.1.1.10"
    assert [n["name"] for n in world.sim.nics()].count(_nic_of(world, vm)["name"]) == 1
