"""The real azure-mgmt clients against the simulator: paging, long-running operations, throttling,
faults and the bill."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError
from azure.core.rest import HttpRequest
from azure.mgmt.compute import ComputeManagementClient
from azure.mgmt.compute.models import Disk, RunCommandInput, Snapshot, VirtualMachine
from azure.mgmt.network import NetworkManagementClient
from azure.mgmt.network.models import NetworkInterface
from azure.mgmt.resource.resources import ResourceManagementClient
from azure.mgmt.resource.resources.models import TagsPatchResource

from local.armsim import ArmServer, ArmSimulator, FaultRule
from local.armsim.protocol import VM_TYPE
from shared.clock import VirtualClock
from tests.integration.owner import OwnerToken, sdk_options

pytestmark = pytest.mark.armsim

SUB = "00000000-0000-0000-0000-000000000001"
RG_APP = "rg-app-eastus"
RG_BACKUP = "rg-backups-eastus"


def compute(server: ArmServer) -> ComputeManagementClient:
    return ComputeManagementClient(OwnerToken(), SUB, **sdk_options(server))


def _disk_id(name: str) -> str:
    return f"/subscriptions/{SUB}/resourceGroups/{RG_APP}/providers/Microsoft.Compute/disks/{name}"


def doc(model: Any) -> dict[str, Any]:
    """An SDK model as the JSON Azure sent (REST names), so assertions need no None checks."""
    data: dict[str, Any] = model.as_dict()
    return data


def _snapshot(source: str, option: str = "Copy", region: str = "eastus") -> Snapshot:
    return Snapshot(
        {
            "location": region,
            "tags": {"managed-by": "backupdr"},
            "properties": {
                "incremental": True,
                "creationData": {"createOption": option, "sourceResourceId": source},
            },
        }
    )


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
        names = [doc(vm)["name"] for vm in compute(server).virtual_machines.list_all()]
    assert sorted(names) == [f"vm-{i:04d}" for i in range(1050)]
    pages = [r for r in sim.requests if r.path.endswith("/virtualMachines")]
    assert len(pages) == 11


def test_listed_vm_carries_its_disks_tags_and_zone(armsim: ArmServer) -> None:
    vm = doc(compute(armsim).virtual_machines.get(RG_APP, "web-01"))
    storage = vm["properties"]["storageProfile"]
    os_disk = storage["osDisk"]
    assert os_disk["managedDisk"]["id"] == _disk_id("web-01-osdisk")
    assert (os_disk["diskSizeGB"], os_disk["osType"]) == (30, "Linux")
    assert [(d["lun"], d["diskSizeGB"]) for d in storage["dataDisks"]] == [(0, 128)]
    assert vm["zones"] == ["1"]
    assert "backup-policy" in vm["tags"]


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
        doc(client.snapshots.get(RG_BACKUP, "web-01-os-1"))["properties"]["provisioningState"]
        == "Updating"
    )
    armsim.sim.clock.advance(armsim.sim.durations.snapshot_seconds)
    done = doc(client.snapshots.get(RG_BACKUP, "web-01-os-1"))
    assert done["properties"]["provisioningState"] == "Succeeded"
    assert done["properties"]["snapshotAccessState"] == "Available"
    assert done["tags"] == {"managed-by": "backupdr"}


def test_sdk_poller_finishes_a_disk_create_once_the_clock_passes_its_end(
    armsim: ArmServer,
) -> None:
    sim = armsim.sim
    client = compute(armsim)
    snap = client.snapshots.begin_create_or_update(
        RG_BACKUP, "s1", _snapshot(_disk_id("db-01-osdisk")), polling=False
    )
    sim.clock.advance(3600)
    disk = Disk(
        {
            "location": "eastus",
            "sku": {"name": "Premium_LRS"},
            "properties": {
                "creationData": {
                    "createOption": "Copy",
                    "sourceResourceId": doc(snap.result())["id"],
                }
            },
        }
    )
    poller = client.disks.begin_create_or_update(RG_BACKUP, "restored", disk)
    sim.clock.advance(sim.durations.disk_seconds)
    result = doc(poller.result(timeout=60))["properties"]
    assert result["provisioningState"] == "Succeeded"
    assert (result["diskSizeGB"], result["diskState"]) == (64, "Unattached")


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
    source = doc(client.snapshots.get(RG_BACKUP, "src"))["id"]
    client.snapshots.begin_create_or_update(
        "rg-backups-westus2", "replica", _snapshot(source, "CopyStart", "westus2"), polling=False
    )
    total = sim.durations.snapshot_seconds + sim.durations.copy_seconds(30.0)
    sim.clock.advance(total / 2)
    halfway = doc(client.snapshots.get("rg-backups-westus2", "replica"))["properties"]
    assert 0 < halfway["completionPercent"] < 100
    assert halfway["snapshotAccessState"] == "Pending"
    sim.clock.advance(total / 2)
    done = doc(client.snapshots.get("rg-backups-westus2", "replica"))["properties"]
    assert (done["completionPercent"], done["snapshotAccessState"]) == (100.0, "Available")


def test_injected_copy_failure_shows_copy_completion_error(armsim: ArmServer) -> None:
    sim = armsim.sim
    client = compute(armsim)
    client.snapshots.begin_create_or_update(
        RG_BACKUP, "src", _snapshot(_disk_id("web-01-osdisk")), polling=False
    )
    sim.clock.advance(60)
    sim.add_fault(FaultRule(operation="snapshots.copy", kind="copy-fails", count=1))
    source = doc(client.snapshots.get(RG_BACKUP, "src"))["id"]
    client.snapshots.begin_create_or_update(
        "rg-backups-westus2", "replica", _snapshot(source, "CopyStart", "westus2"), polling=False
    )
    sim.clock.advance(24 * 3600)
    replica = doc(client.snapshots.get("rg-backups-westus2", "replica"))["properties"]
    assert replica["copyCompletionError"]["errorCode"] == "CopySourceNotFound"
    assert replica["completionPercent"] < 100


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


def test_a_deleted_snapshots_blocks_are_billed_to_the_next_of_its_disk(
    armsim: ArmServer,
) -> None:
    """Deleting the oldest snapshot saves nothing while a later one needs its blocks; deleting
    the newest saves its own changed blocks, which no snapshot needs."""
    sim = armsim.sim
    client = compute(armsim)
    source = _disk_id("web-01-data0")  # 128 GiB, 4 GiB written per day
    for name in ("d1", "d2", "d3"):
        client.snapshots.begin_create_or_update(RG_BACKUP, name, _snapshot(source), polling=False)
        sim.clock.advance(86400)
    month = 730 * 3600
    client.snapshots.begin_delete(RG_BACKUP, "d1").result(timeout=30)
    before = sim.bill()["eastus"]
    sim.clock.advance(month)
    assert sim.bill()["eastus"] - before == pytest.approx(128 + 4, rel=1e-6), "d2 holds d1's"
    client.snapshots.begin_delete(RG_BACKUP, "d3").result(timeout=30)
    before = sim.bill()["eastus"]
    sim.clock.advance(month)
    assert sim.bill()["eastus"] - before == pytest.approx(128, rel=1e-6), "d3's 4 GiB are gone"


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
    headers = getattr(raised.value.response, "headers", {})
    assert headers["Retry-After"] == "1"
    assert headers["x-ms-ratelimit-remaining-subscription-reads"] == "0"
    armsim.sim.clock.advance(1)
    assert doc(client.virtual_machines.get(RG_APP, "web-01"))["name"] == "web-01"


@pytest.mark.parametrize(
    ("kind", "status", "code"),
    [
        ("5xx", 500, "InternalServerError"),
        ("429", 429, "TooManyRequests"),
    ],
    ids=["5xx", "429"],
)
def test_immediate_fault_answers_azures_error_body(
    armsim: ArmServer, kind: str, status: int, code: str
) -> None:
    armsim.sim.add_fault(FaultRule(operation="vms.get", resource="*web-01*", kind=kind, count=1))
    client = compute(armsim)
    with pytest.raises(HttpResponseError) as raised:
        client.virtual_machines.get(RG_APP, "web-01")
    assert raised.value.status_code == status
    assert code in str(raised.value)
    assert doc(client.virtual_machines.get(RG_APP, "web-01"))["name"] == "web-01"


DR_RG = "rg-backupdr-drtest-westus2"


def _restore_vm(armsim: ArmServer, name: str) -> None:
    """A NIC on the isolated subnet, an OS disk, and a VM PUT with the disk attached."""
    sim = armsim.sim
    client = compute(armsim)
    network = NetworkManagementClient(OwnerToken(), SUB, **sdk_options(armsim))
    tags = {"backupdr-test": name}
    subnet = network.subnets.get(DR_RG, "vnet-backupdr-drtest", "snet-restore")
    ip = {"name": "ip1", "properties": {"subnet": {"id": doc(subnet)["id"]}}}
    network.network_interfaces.begin_create_or_update(
        DR_RG,
        f"{name}-nic",
        NetworkInterface(
            {"location": "westus2", "tags": tags, "properties": {"ipConfigurations": [ip]}}
        ),
        polling=False,
    )
    disk_body = Disk(
        {
            "location": "westus2",
            "tags": tags,
            "properties": {"creationData": {"createOption": "Empty"}, "diskSizeGB": 30},
        }
    )
    disk = client.disks.begin_create_or_update(DR_RG, f"{name}-os", disk_body, polling=False)
    sim.clock.advance(max(sim.durations.disk_seconds, _longest(sim, sim.durations.nic_seconds)))
    nic = network.network_interfaces.get(DR_RG, f"{name}-nic")
    os_disk = {
        "createOption": "Attach",
        "osType": "Linux",
        "managedDisk": {"id": doc(disk.result())["id"]},
    }
    vm_body = VirtualMachine(
        {
            "location": "westus2",
            "tags": tags,
            "properties": {
                "hardwareProfile": {"vmSize": "Standard_D2s_v5"},
                "storageProfile": {"osDisk": os_disk},
                "networkProfile": {"networkInterfaces": [{"id": doc(nic)["id"]}]},
            },
        }
    )
    client.virtual_machines.begin_create_or_update(DR_RG, name, vm_body, polling=False)


def _longest(sim: ArmSimulator, seconds: float) -> float:
    """The longest a varied operation of this duration can take."""
    return seconds * (1 + sim.durations.jitter)


def _statuses(armsim: ArmServer, name: str) -> list[str]:
    view = compute(armsim).virtual_machines.instance_view(DR_RG, name)
    return [status["code"] for status in doc(view)["statuses"]]


SHELL_CHECK = RunCommandInput({"commandId": "RunShellScript", "script": ["echo ok"]})


def _run_command(armsim: ArmServer, name: str) -> tuple[str, str]:
    """Run Command started without a poller: the 202's Azure-AsyncOperation and Location."""
    started = compute(armsim).virtual_machines.begin_run_command(
        DR_RG, name, SHELL_CHECK, polling=False
    )
    accepted = started.polling_method()._initial_response.http_response  # type: ignore[attr-defined]
    assert accepted.status_code == 202
    assert accepted.headers["Retry-After"] == "30", "the expected 30 s, whatever it takes"
    return accepted.headers["Azure-AsyncOperation"], accepted.headers["Location"]


def _get(armsim: ArmServer, url: str) -> Any:
    """A GET of an operation URL through the Compute client's pipeline, as its poller sends."""
    return compute(armsim).send_request(HttpRequest("GET", url))


def test_run_command_answers_after_its_virtual_time_in_the_linux_shape(
    armsim: ArmServer,
) -> None:
    sim = armsim.sim
    _restore_vm(armsim, "dr-vm")
    assert _statuses(armsim, "dr-vm") == ["ProvisioningState/creating", "PowerState/starting"]
    sim.clock.advance(sim.durations.vm_create_seconds + sim.durations.vm_boot_seconds)
    assert _statuses(armsim, "dr-vm") == ["ProvisioningState/succeeded", "PowerState/running"]
    status_url, result_url = _run_command(armsim, "dr-vm")
    assert _get(armsim, status_url).json()["status"] == "InProgress"
    assert _get(armsim, result_url).status_code == 202
    sim.clock.advance(_longest(sim, sim.durations.run_command_seconds))
    assert _get(armsim, status_url).json()["status"] == "Succeeded"
    [status] = _get(armsim, result_url).json()["value"]
    assert (status["code"], status["message"]) == (
        "ProvisioningState/succeeded",
        "Enable succeeded: \n[stdout]\nok\n\n[stderr]\n",
    )


def test_deletes_take_virtual_time_and_a_vm_holds_its_nic_and_disk_until_it_is_gone(
    armsim: ArmServer,
) -> None:
    sim = armsim.sim
    _restore_vm(armsim, "dr-vm")
    sim.clock.advance(sim.durations.vm_create_seconds)
    resources = ResourceManagementClient(OwnerToken(), SUB, **sdk_options(armsim))
    tag_filter = "tagName eq 'backupdr-test' and tagValue eq 'dr-vm'"

    def tagged() -> dict[str, str]:
        found = resources.resources.list_by_resource_group(DR_RG, filter=tag_filter)
        return {doc(r)["type"].split("/")[1]: doc(r)["id"] for r in found}

    def delete(kind: str) -> int:
        versions = {"virtualMachines": "2026-04-01", "networkInterfaces": "2026-03-01"}
        poller = resources.resources.begin_delete_by_id(
            ids[kind], api_version=versions.get(kind, "2026-03-02"), polling=False
        )
        status: int = poller.polling_method()._initial_response.http_response.status_code  # type: ignore[attr-defined]
        return status

    ids = tagged()
    assert sorted(ids) == ["disks", "networkInterfaces", "virtualMachines"]
    assert delete("virtualMachines") == 202
    with pytest.raises(HttpResponseError, match="NicInUse"):
        delete("networkInterfaces")
    with pytest.raises(HttpResponseError, match="is attached to VM"):
        delete("disks")
    sim.clock.advance(sim.durations.vm_delete_seconds * (1 - sim.durations.jitter) - 1)
    assert "virtualMachines" in tagged(), "a VM delete takes minutes"
    sim.clock.advance(_longest(sim, sim.durations.vm_delete_seconds))
    assert sorted(tagged()) == ["disks", "networkInterfaces"]
    assert (delete("networkInterfaces"), delete("disks")) == (202, 202)
    sim.clock.advance(_longest(sim, sim.durations.disk_delete_seconds))
    assert tagged() == {}
    assert delete("virtualMachines") == 204


@pytest.mark.parametrize(
    ("kind", "expected"),
    [("never-boots", "PowerState/starting"), ("guest-silent", "PowerState/running")],
    ids=["never-boots", "guest-silent"],
)
def test_marked_disk_gives_a_vm_that_never_boots_or_never_answers(
    armsim: ArmServer, kind: str, expected: str
) -> None:
    sim = armsim.sim
    sim.add_fault(FaultRule(operation="vms.create", resource="*/disks/cursed-os", kind=kind))
    _restore_vm(armsim, "cursed")
    sim.clock.advance(3600)
    assert _statuses(armsim, "cursed")[1] == expected
    if kind == "guest-silent":
        status_url, result_url = _run_command(armsim, "cursed")
        sim.clock.advance(_longest(sim, sim.durations.run_command_seconds))
        status = _get(armsim, status_url).json()
        assert (status["status"], status["error"]["code"]) == (
            "Failed",
            "VMAgentStatusCommunicationError",
        )
        failed = _get(armsim, result_url)
        assert failed.status_code == 400
        assert failed.json()["error"]["code"] == "VMAgentStatusCommunicationError"


def test_policy_tag_merges_through_the_tags_api(armsim: ArmServer) -> None:
    resources = ResourceManagementClient(OwnerToken(), SUB, **sdk_options(armsim))
    vm_id = f"/subscriptions/{SUB}/resourceGroups/{RG_APP}/providers/{VM_TYPE}/db-01"
    resources.tags.begin_update_at_scope(
        vm_id,
        TagsPatchResource(
            {"operation": "Merge", "properties": {"tags": {"backup-policy": "daily=3"}}}
        ),
    ).result(timeout=30)
    assert doc(compute(armsim).virtual_machines.get(RG_APP, "db-01"))["tags"] == {
        "backup-policy": "daily=3"
    }
