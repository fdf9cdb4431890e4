"""The real azure-mgmt clients against the simulator: paging, long-running operations, throttling,
faults and the bill."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import pytest
from azure.core.credentials import AccessToken
from azure.core.exceptions import HttpResponseError
from azure.mgmt.compute import ComputeManagementClient
from azure.mgmt.network import NetworkManagementClient
from azure.mgmt.resource.resources import ResourceManagementClient

from local.armsim import ArmServer, ArmSimulator, Durations, FaultRule
from shared.clock import VirtualClock

pytestmark = pytest.mark.armsim

SUB = "00000000-0000-0000-0000-000000000001"
RG_APP = "rg-app-eastus"
RG_BACKUP = "rg-backups-eastus"


class FixedToken:
    """The simulator accepts any bearer token."""

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken("simulated", int(time.time()) + 3600)


def _options(server: ArmServer) -> dict[str, Any]:
    return {
        "base_url": server.url,
        "connection_verify": str(server.ca_path),
        "credential_scopes": ["https://management.azure.com/.default"],
        "polling_interval": 0,
        "retry_total": 0,
    }


def compute(server: ArmServer) -> ComputeManagementClient:
    return ComputeManagementClient(FixedToken(), SUB, **_options(server))


def _disk_id(name: str) -> str:
    return f"/subscriptions/{SUB}/resourceGroups/{RG_APP}/providers/Microsoft.Compute/disks/{name}"


def _snapshot(source: str, option: str = "Copy", region: str = "eastus") -> dict[str, Any]:
    return {
        "location": region,
        "tags": {"managed-by": "backupdr"},
        "properties": {
            "incremental": True,
            "creationData": {"createOption": option, "sourceResourceId": source},
        },
    }


def test_list_all_pages_over_a_thousand_vms_with_the_real_client() -> None:
    fleet = {
        "subscriptions": [
            {
                "id": SUB,
                "resource_groups": [{"name": "rg-big", "region": "eastus"}],
                "vms": [{"name": f"vm-{i:04d}", "resource_group": "rg-big"} for i in range(1050)],
            }
        ]
    }
    sim = ArmSimulator(clock=VirtualClock(datetime(2026, 1, 5, tzinfo=UTC)), fleet=fleet)
    with sim.serve() as server:
        names = [vm.name for vm in compute(server).virtual_machines.list_all()]
    assert sorted(names) == [f"vm-{i:04d}" for i in range(1050)]
    pages = [r for r in sim.requests if r.path.endswith("/virtualMachines")]
    assert len(pages) == 11


def test_listed_vm_carries_its_disks_tags_and_zone(armsim: ArmServer) -> None:
    vm = compute(armsim).virtual_machines.get(RG_APP, "web-01")
    storage = vm.properties.storage_profile
    assert storage.os_disk.managed_disk.id == _disk_id("web-01-osdisk")
    assert (storage.os_disk.disk_size_gb, storage.os_disk.os_type) == (30, "Linux")
    assert [(d.lun, d.disk_size_gb) for d in storage.data_disks] == [(0, 128)]
    assert vm.zones == ["1"] and "backup-policy" in vm.tags


def test_snapshot_put_answers_202_with_location_and_completes_when_the_clock_moves(
    armsim: ArmServer,
) -> None:
    client = compute(armsim)
    poller = client.snapshots.begin_create_or_update(
        RG_BACKUP, "web-01-os-1", _snapshot(_disk_id("web-01-osdisk")), polling=False
    )
    first = poller.polling_method()._initial_response.http_response  # type: ignore[attr-defined]
    assert first.status_code == 202
    assert int(first.headers["Retry-After"]) == armsim.sim.durations.snapshot_seconds
    assert (
        client.snapshots.get(RG_BACKUP, "web-01-os-1").properties.provisioning_state == "Updating"
    )
    armsim.sim.clock.advance(armsim.sim.durations.snapshot_seconds)
    done = client.snapshots.get(RG_BACKUP, "web-01-os-1")
    assert done.properties.provisioning_state == "Succeeded"
    assert done.properties.snapshot_access_state == "Available"
    assert done.tags == {"managed-by": "backupdr"}


def test_sdk_poller_finishes_a_disk_create_once_the_clock_passes_its_end(
    armsim: ArmServer,
) -> None:
    sim = armsim.sim
    client = compute(armsim)
    snap = client.snapshots.begin_create_or_update(
        RG_BACKUP, "s1", _snapshot(_disk_id("db-01-osdisk")), polling=False
    )
    sim.clock.advance(3600)
    disk = {
        "location": "eastus",
        "sku": {"name": "Premium_LRS"},
        "properties": {
            "creationData": {"createOption": "Copy", "sourceResourceId": snap.result().id}
        },
    }
    sim.clock.advance(0)
    poller = client.disks.begin_create_or_update(RG_BACKUP, "restored", disk)
    sim.clock.advance(sim.durations.disk_seconds)
    result = poller.result(timeout=60)
    assert result.properties.provisioning_state == "Succeeded"
    assert (result.properties.disk_size_gb, result.properties.disk_state) == (64, "Unattached")


def test_same_snapshot_name_put_twice_is_one_snapshot(armsim: ArmServer) -> None:
    client = compute(armsim)
    for _ in range(2):
        client.snapshots.begin_create_or_update(
            RG_BACKUP, "same", _snapshot(_disk_id("web-01-osdisk")), polling=False
        )
    assert [s["name"] for s in armsim.sim.snapshots()] == ["same"]


def test_copystart_rises_to_100_percent_over_time_proportional_to_change(armsim: ArmServer) -> None:
    sim = armsim.sim
    client = compute(armsim)
    client.snapshots.begin_create_or_update(
        RG_BACKUP, "src", _snapshot(_disk_id("web-01-osdisk")), polling=False
    )
    sim.clock.advance(60)
    source = client.snapshots.get(RG_BACKUP, "src").id
    client.snapshots.begin_create_or_update(
        "rg-backups-westus2", "replica", _snapshot(source, "CopyStart", "westus2"), polling=False
    )
    total = sim.durations.snapshot_seconds + sim.durations.copy_seconds(30.0)
    sim.clock.advance(total / 2)
    halfway = client.snapshots.get("rg-backups-westus2", "replica").properties
    assert 0 < halfway.completion_percent < 100 and halfway.snapshot_access_state == "Pending"
    sim.clock.advance(total / 2)
    done = client.snapshots.get("rg-backups-westus2", "replica").properties
    assert (done.completion_percent, done.snapshot_access_state) == (100.0, "Available")


def test_injected_copy_failure_shows_copy_completion_error(armsim: ArmServer) -> None:
    sim = armsim.sim
    client = compute(armsim)
    client.snapshots.begin_create_or_update(
        RG_BACKUP, "src", _snapshot(_disk_id("web-01-osdisk")), polling=False
    )
    sim.clock.advance(60)
    sim.add_fault(FaultRule(operation="snapshots.copy", kind="copy-fails", count=1))
    source = client.snapshots.get(RG_BACKUP, "src").id
    client.snapshots.begin_create_or_update(
        "rg-backups-westus2", "replica", _snapshot(source, "CopyStart", "westus2"), polling=False
    )
    sim.clock.advance(24 * 3600)
    replica = client.snapshots.get("rg-backups-westus2", "replica").properties
    assert replica.copy_completion_error.error_code == "CopySourceNotFound"
    assert replica.completion_percent < 100


def test_incremental_snapshots_bill_only_the_blocks_changed_since_the_last(
    armsim: ArmServer,
) -> None:
    sim = armsim.sim
    client = compute(armsim)
    source = _disk_id("web-01-data0")  # 128 GiB, 4 GiB written per day
    client.snapshots.begin_create_or_update(RG_BACKUP, "d1", _snapshot(source), polling=False)
    sim.clock.advance(86400)
    client.snapshots.begin_create_or_update(RG_BACKUP, "d2", _snapshot(source), polling=False)
    sim.clock.advance(730 * 3600)
    month = 730 * 3600 / 86400
    expected = 128 * (month + 1) / month + 4.0
    assert sim.bill()["eastus"] == pytest.approx(expected, rel=1e-6)


def test_delete_completes_at_zero_virtual_time_and_a_second_delete_is_204(
    armsim: ArmServer,
) -> None:
    client = compute(armsim)
    client.snapshots.begin_create_or_update(
        RG_BACKUP, "gone", _snapshot(_disk_id("web-01-osdisk")), polling=False
    )
    client.snapshots.begin_delete(RG_BACKUP, "gone").result(timeout=30)
    assert armsim.sim.snapshots() == []
    again = client.snapshots.begin_delete(RG_BACKUP, "gone", polling=False)
    assert again.polling_method()._initial_response.http_response.status_code == 204  # type: ignore[attr-defined]


def test_read_bucket_runs_dry_with_429_retry_after_and_refills_on_the_virtual_clock(
    armsim: ArmServer,
) -> None:
    client = compute(armsim)
    for _ in range(250):
        client.virtual_machines.get(RG_APP, "web-01")
    with pytest.raises(HttpResponseError) as raised:
        client.virtual_machines.get(RG_APP, "web-01")
    assert raised.value.status_code == 429
    assert raised.value.response.headers["Retry-After"] == "1"
    assert raised.value.response.headers["x-ms-ratelimit-remaining-subscription-reads"] == "0"
    armsim.sim.clock.advance(1)
    assert client.virtual_machines.get(RG_APP, "web-01").name == "web-01"


@pytest.mark.parametrize(
    ("kind", "status", "code"),
    [
        ("5xx", 500, "InternalServerError"),
        ("429", 429, "TooManyRequests"),
        ("sku-not-available", 409, "SkuNotAvailable"),
        ("allocation-failed", 409, "AllocationFailed"),
    ],
    ids=["5xx", "429", "sku", "allocation"],
)
def test_immediate_fault_answers_azures_error_body(
    armsim: ArmServer, kind: str, status: int, code: str
) -> None:
    armsim.sim.add_fault(FaultRule(operation="vms.get", resource="*web-01*", kind=kind, count=1))
    client = compute(armsim)
    with pytest.raises(HttpResponseError) as raised:
        client.virtual_machines.get(RG_APP, "web-01")
    assert (raised.value.status_code, raised.value.error.code) == (status, code)
    assert client.virtual_machines.get(RG_APP, "web-01").name == "web-01"


def test_dr_restore_vm_boots_answers_run_command_and_cleans_up(armsim: ArmServer) -> None:
    sim = armsim.sim
    client = compute(armsim)
    options = _options(armsim)
    network = NetworkManagementClient(FixedToken(), SUB, **options)
    rg = "rg-backupdr-drtest-westus2"
    subnet = network.subnets.get(rg, "vnet-backupdr-drtest", "snet-restore")
    nic = network.network_interfaces.begin_create_or_update(
        rg,
        "dr-nic",
        {
            "location": "westus2",
            "tags": {"backupdr-test": "t1"},
            "properties": {
                "ipConfigurations": [{"name": "ip1", "properties": {"subnet": {"id": subnet.id}}}]
            },
        },
    ).result(timeout=30)
    disk = client.disks.begin_create_or_update(
        rg,
        "dr-os",
        {
            "location": "westus2",
            "tags": {"backupdr-test": "t1"},
            "properties": {"creationData": {"createOption": "Empty"}, "diskSizeGB": 30},
        },
        polling=False,
    )
    sim.clock.advance(sim.durations.disk_seconds)
    vm_body = {
        "location": "westus2",
        "tags": {"backupdr-test": "t1"},
        "properties": {
            "hardwareProfile": {"vmSize": "Standard_D2s_v5"},
            "storageProfile": {
                "osDisk": {
                    "createOption": "Attach",
                    "osType": "Linux",
                    "managedDisk": {"id": disk.result().id},
                }
            },
            "networkProfile": {"networkInterfaces": [{"id": nic.id}]},
        },
    }
    client.virtual_machines.begin_create_or_update(rg, "dr-vm", vm_body, polling=False)
    view = client.virtual_machines.instance_view(rg, "dr-vm")
    assert [s.code for s in view.statuses] == ["ProvisioningState/creating", "PowerState/starting"]
    sim.clock.advance(sim.durations.vm_create_seconds + sim.durations.vm_boot_seconds)
    view = client.virtual_machines.instance_view(rg, "dr-vm")
    assert [s.code for s in view.statuses] == ["ProvisioningState/succeeded", "PowerState/running"]
    output = client.virtual_machines.begin_run_command(
        rg, "dr-vm", {"commandId": "RunShellScript", "script": ["echo ok"]}
    ).result(timeout=30)
    assert [(v.code, v.message) for v in output.value][0] == (
        "ComponentStatus/StdOut/succeeded",
        "ok",
    )
    resources = ResourceManagementClient(FixedToken(), SUB, **options)
    tagged = list(
        resources.resources.list_by_resource_group(rg, filter="tagName eq 'backupdr-test'")
    )
    assert sorted(r.name for r in tagged) == ["dr-nic", "dr-os", "dr-vm"]
    for resource_id in (r.id for r in sorted(tagged, key=lambda r: r.type, reverse=True)):
        version = "2026-04-01" if "Compute" in resource_id else "2026-03-01"
        if "/disks/" in resource_id:
            version = "2026-03-02"
        resources.resources.begin_delete_by_id(resource_id, api_version=version).result(timeout=30)
    assert (
        list(resources.resources.list_by_resource_group(rg, filter="tagName eq 'backupdr-test'"))
        == []
    )


def test_policy_tag_merges_through_the_tags_api(armsim: ArmServer) -> None:
    resources = ResourceManagementClient(FixedToken(), SUB, **_options(armsim))
    vm_id = f"/subscriptions/{SUB}/resourceGroups/{RG_APP}/providers/Microsoft.Compute/virtualMachines/db-01"
    resources.tags.begin_update_at_scope(
        vm_id, {"operation": "Merge", "properties": {"tags": {"backup-policy": "daily=3"}}}
    ).result(timeout=30)
    assert compute(armsim).virtual_machines.get(RG_APP, "db-01").tags == {
        "backup-policy": "daily=3"
    }


def test_vm_create_never_boots_when_its_disk_is_marked(armsim: ArmServer) -> None:
    sim = armsim.sim
    sim.add_fault(FaultRule(operation="vms.create", resource="*cursed*", kind="never-boots"))
    sim.add_fault(FaultRule(operation="vms.create", resource="*cursed*", kind="never-boots"))
    assert Durations().vm_boot_seconds > 0
