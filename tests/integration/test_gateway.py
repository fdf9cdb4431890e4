"""The Compute gateway on the real azure-mgmt clients against the ARM simulator over HTTPS.

No transport is mocked: requests go through the SDKs' pipelines (auth, retry, paging, LRO
polling) to the simulator, whose virtual clock the tests move the way durable timers would.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from azure.mgmt.compute import ComputeManagementClient
from azure.mgmt.compute.models import GrantAccessData
from azure.mgmt.network import NetworkManagementClient

from local.armsim import ArmServer, ArmSimulator, FaultRule
from shared.adapters.arm import ArmComputeGateway, gateway_from_settings
from shared.adapters.credentials import OPERATOR_TOKEN, StaticTokenCredential, arm_clients
from shared.clock import VirtualClock
from shared.domain.models import VM
from shared.errors import (
    BackupDrError,
    BusyError,
    CapacityError,
    NotFoundError,
    PermanentError,
    ThrottledError,
    TransientError,
)
from shared.ports import Accepted, CommandRun, ComputeGateway, GuestCheck
from shared.settings import Settings
from tests.integration.owner import OwnerToken, allow_https_out, sdk_options

pytestmark = pytest.mark.armsim

SUB = "00000000-0000-0000-0000-000000000001"
APP_RG = "rg-app-eastus"
BACKUPS = "rg-backups-eastus"
REPLICAS = "rg-backups-westus2"
DRTEST = "rg-backupdr-drtest-eastus"
SUBNET = "vnet-backupdr-drtest/snet-restore"
TEST_TAG = "backupdr-test"


def compute_id(group: str, kind: str, name: str) -> str:
    return f"/subscriptions/{SUB}/resourceGroups/{group}/providers/Microsoft.Compute/{kind}/{name}"


def _subnet_id(group: str, subnet: str) -> str:
    vnet, name = subnet.split("/")
    return (
        f"/subscriptions/{SUB}/resourceGroups/{group}/providers/Microsoft.Network/"
        f"virtualNetworks/{vnet}/subnets/{name}"
    )


def settings_for(server: ArmServer) -> Settings:
    return Settings(
        subscription_id=SUB,
        arm_endpoint=server.url,
        ca_bundle=str(server.ca_path),
        credential="static",
        lro_poll_seconds=0.01,
    )


def gateway_for(server: ArmServer) -> ComputeGateway:
    """The production factory, pointed at the simulator with its CA and fixed token.

    Typed as the port, so mypy checks that the adapter keeps the contract.
    """
    return gateway_from_settings(settings_for(server))


@pytest.fixture
def sim(armsim: ArmServer) -> ArmSimulator:
    return armsim.sim


@pytest.fixture
def gateway(armsim: ArmServer) -> ComputeGateway:
    return gateway_for(armsim)


@pytest.fixture
def operator(armsim: ArmServer) -> ComputeGateway:
    """The gateway as the operator's identity: only operators write the policy tag."""
    credential = StaticTokenCredential(OPERATOR_TOKEN)
    return ArmComputeGateway(arm_clients(settings_for(armsim), credential), SUB)


@pytest.fixture
def web(gateway: ComputeGateway) -> VM:
    return gateway.get_vm(APP_RG, "web-01")


def settle(sim: ArmSimulator, accepted: Accepted) -> None:
    """Wait out a create the way a workflow's durable timer would."""
    sim.advance(accepted.poll_after_seconds)


def snapshot_of(gateway: ComputeGateway, sim: ArmSimulator, vm: VM, role: str = "os") -> str:
    """A completed snapshot of one of an eastus VM's disks, in the eastus backup group."""
    disk = next(d for d in vm.disks if d.role == role)
    accepted = gateway.begin_snapshot(
        name=f"snap-{vm.name}-{role}",
        resource_group=BACKUPS,
        region=vm.location,
        disk=disk,
        tags={"managed-by": "backupdr", "backup-disk": role},
    )
    settle(sim, accepted)
    return accepted.resource_id


def _os_disk_copy(
    gateway: ComputeGateway, sim: ArmSimulator, vm: VM, zone: str | None, name: str = "verify-os"
) -> Accepted:
    """A Premium disk restored from a snapshot of the VM's OS disk, created."""
    accepted = gateway.begin_disk_from_snapshot(
        name=name,
        resource_group=DRTEST,
        region="eastus",
        snapshot_id=snapshot_of(gateway, sim, vm),
        sku="Premium_LRS",
        zone=zone,
        tags={},
    )
    settle(sim, accepted)
    return accepted


def _leave_exported(armsim: ArmServer, group: str, name: str, snapshot: bool = False) -> None:
    """A read grant nobody revokes, as a worker killed inside `read_access` leaves one."""
    client = ComputeManagementClient(OwnerToken(), SUB, **sdk_options(armsim))
    operations = client.snapshots if snapshot else client.disks
    grant = GrantAccessData(access="Read", duration_in_seconds=600)
    operations.begin_grant_access(group, name, grant).result()


def writes_to(sim: ArmSimulator, path_part: str) -> list[tuple[str, int]]:
    return [
        (r.method, r.status)
        for r in sim.requests
        if r.method != "GET" and path_part.lower() in r.path.lower()
    ]


class TestListVms:
    """One subscription-wide list gives every VM with its disks, read from the storage profile."""

    def test_list_vms_reports_disks_size_sku_lun_zone_location_and_policy_tag(
        self, gateway: ComputeGateway
    ) -> None:
        vms = {vm.name: vm for vm in gateway.list_vms()}
        assert set(vms) == {"web-01", "db-01", "scratch-01"}
        web = vms["web-01"]
        assert (web.resource_group, web.location, web.zone) == (APP_RG, "eastus", "1")
        assert (web.vm_size, web.os_type) == ("Standard_D2s_v5", "Linux")
        assert web.tags["backup-policy"].startswith("schedule=0 2 * * *")
        assert [(d.name, d.lun, d.size_gb, d.sku, d.zone) for d in web.disks] == [
            ("web-01-osdisk", None, 30, "Premium_LRS", "1"),
            ("web-01-data0", 0, 128, "Premium_LRS", "1"),
        ]
        assert web.disks[0].id == compute_id(APP_RG, "disks", "web-01-osdisk")

    def test_list_vms_pages_over_a_thousand_vms_without_reading_disks(self) -> None:
        sim = ArmSimulator(clock=VirtualClock(datetime(2026, 1, 5, tzinfo=UTC)), page_size=100)
        sim.add_group(SUB, APP_RG, "eastus")
        for index in range(1050):
            sim.add_vm(SUB, APP_RG, f"vm-{index:04d}", data_disks=[{"lun": 0, "size_gb": 64}])
        with sim.serve() as server:
            vms = gateway_for(server).list_vms()
        assert len({vm.id for vm in vms}) == 1050
        assert all(len(vm.disks) == 2 for vm in vms)
        reads = [r.path for r in sim.requests]
        assert len(reads) == 11  # ceil(1050 / 100) pages of one list, nothing else
        assert all(path.endswith("/providers/Microsoft.Compute/virtualMachines") for path in reads)

    def test_get_nic_reads_what_a_backup_records_of_the_vms_network(self) -> None:
        sim = ArmSimulator(clock=VirtualClock(datetime(2026, 1, 5, tzinfo=UTC)))
        vnet = {"name": "vnet-app", "address_prefix": "10.1.0.0/16"}
        subnets = [{"name": "snet-a", "address_prefix": "10.1.1.0/24"}]
        sim.add_group(SUB, APP_RG, "eastus", vnets=[{**vnet, "subnets": subnets}])
        sim.add_vm(
            SUB,
            APP_RG,
            "app-01",
            subnet="vnet-app/snet-a",
            accelerated_networking=True,
            license_type="RHEL_BYOS",
            boot_diagnostics=True,
        )
        sim.add_vm(SUB, APP_RG, "app-02")  # the group's first subnet by default
        with sim.serve() as server:
            gateway = gateway_for(server)
            vm = gateway.get_vm(APP_RG, "app-01")
            nic = gateway.get_nic(vm.nic_ids[0])
            other = gateway.get_nic(gateway.get_vm(APP_RG, "app-02").nic_ids[0])
        assert (vm.license_type, vm.boot_diagnostics, vm.boot_diagnostics_uri) == (
            "RHEL_BYOS",
            True,
            None,
        )
        network = f"/subscriptions/{SUB}/resourceGroups/{APP_RG}/providers/Microsoft.Network"
        assert vm.nic_ids == (f"{network}/networkInterfaces/app-01-nic",)
        assert nic.id == vm.nic_ids[0]
        assert nic.subnet_id == f"{network}/virtualNetworks/vnet-app/subnets/snet-a"
        assert (nic.private_ip_allocation, nic.private_ip_address) == ("Dynamic", "10.1.1.4")
        assert (nic.accelerated_networking, nic.primary) == (True, True)
        assert (other.subnet_id, other.private_ip_address) == (nic.subnet_id, "10.1.1.5")
        assert not other.accelerated_networking

    def test_get_nic_of_a_missing_nic_raises_not_found(self, gateway: ComputeGateway) -> None:
        network = f"/subscriptions/{SUB}/resourceGroups/{APP_RG}/providers/Microsoft.Network"
        with pytest.raises(NotFoundError):
            gateway.get_nic(f"{network}/networkInterfaces/no-such-nic")

    def test_get_vm_of_a_missing_vm_raises_not_found(self, gateway: ComputeGateway) -> None:
        with pytest.raises(NotFoundError, match="ResourceNotFound"):
            gateway.get_vm(APP_RG, "no-such-vm")


class TestSnapshots:
    """Incremental snapshots: tagged in the one PUT, started without waiting, read back later."""

    def test_begin_snapshot_sends_one_put_with_tags_and_returns_before_it_completes(
        self, gateway: ComputeGateway, sim: ArmSimulator, web: VM
    ) -> None:
        accepted = gateway.begin_snapshot(
            name="snap-web-01-os",
            resource_group=BACKUPS,
            region="eastus",
            disk=web.disks[0],
            tags={"managed-by": "backupdr", "backup-tier": "daily"},
        )
        assert accepted.resource_id == compute_id(BACKUPS, "snapshots", "snap-web-01-os")
        assert accepted.poll_after_seconds == sim.durations.snapshot_seconds
        assert writes_to(sim, "/snapshots/") == [("PUT", 202)]
        snapshot = gateway.get_snapshot(accepted.resource_id)
        assert snapshot.provisioning_state == "Updating"
        assert snapshot.tags == {"managed-by": "backupdr", "backup-tier": "daily"}
        assert snapshot.incremental

    def test_snapshot_reads_succeeded_with_size_and_source_once_its_time_has_passed(
        self, gateway: ComputeGateway, sim: ArmSimulator, web: VM
    ) -> None:
        snapshot_id = snapshot_of(gateway, sim, web, "lun0")
        snapshot = gateway.get_snapshot(snapshot_id)
        assert (snapshot.provisioning_state, snapshot.size_gb) == ("Succeeded", 128)
        assert snapshot.source_id == web.disks[1].id
        assert (snapshot.resource_group, snapshot.location) == (BACKUPS, "eastus")
        assert snapshot.access_state == "Available"
        assert snapshot.created_at is not None

    def test_begin_snapshot_again_with_the_same_name_makes_no_second_snapshot(
        self, gateway: ComputeGateway, sim: ArmSimulator, web: VM
    ) -> None:
        first = snapshot_of(gateway, sim, web)
        again = gateway.begin_snapshot(
            name="snap-web-01-os",
            resource_group=BACKUPS,
            region="eastus",
            disk=web.disks[0],
            tags={},
        )
        assert again.resource_id == first
        assert again.poll_after_seconds == 0.0  # Azure answered 200 Succeeded: nothing to wait
        assert len(sim.snapshots()) == 1

    def test_list_snapshots_by_group_and_across_the_subscription(
        self, gateway: ComputeGateway, sim: ArmSimulator, web: VM
    ) -> None:
        source = snapshot_of(gateway, sim, web)
        gateway.begin_copy(
            source_id=source, name="replica", resource_group=REPLICAS, region="westus2", tags={}
        )
        assert [s.name for s in gateway.list_snapshots(BACKUPS)] == ["snap-web-01-os"]
        assert sorted(s.name for s in gateway.list_snapshots()) == ["replica", "snap-web-01-os"]

    def test_delete_snapshot_says_true_then_false_once_it_is_gone(
        self, gateway: ComputeGateway, sim: ArmSimulator, web: VM
    ) -> None:
        snapshot_id = snapshot_of(gateway, sim, web)
        assert gateway.delete_snapshot(snapshot_id) is True
        assert gateway.delete_snapshot(snapshot_id) is False
        with pytest.raises(NotFoundError):
            gateway.get_snapshot(snapshot_id)

    def test_a_malformed_snapshot_id_is_refused_before_any_request(
        self, gateway: ComputeGateway, sim: ArmSimulator
    ) -> None:
        with pytest.raises(PermanentError, match=r"is not a Microsoft\.Compute/snapshots"):
            gateway.get_snapshot(compute_id(BACKUPS, "disks", "not-a-snapshot"))
        assert sim.requests == []


class TestCrossRegionCopy:
    """CopyStart into the DR region, progress read from completionPercent."""

    def test_copy_progress_rises_to_100_percent(
        self, gateway: ComputeGateway, sim: ArmSimulator, web: VM
    ) -> None:
        source = snapshot_of(gateway, sim, web)
        accepted = gateway.begin_copy(
            source_id=source,
            name="snap-web-01-os-westus2",
            resource_group=REPLICAS,
            region="westus2",
            tags={"managed-by": "backupdr"},
        )
        body = next(s for s in sim.snapshots() if s["name"] == "snap-web-01-os-westus2")
        creation = body["properties"]["creationData"]
        assert (creation["createOption"], creation["sourceResourceId"]) == ("CopyStart", source)
        assert body["properties"]["incremental"] is True
        seen: list[float] = []
        for _ in range(100):
            sim.advance(max(accepted.poll_after_seconds, 30.0))
            replica = gateway.get_snapshot(accepted.resource_id)
            assert replica.completion_percent is not None
            seen.append(replica.completion_percent)
            if replica.completion_percent == 100.0:
                break
        assert seen[-1] == 100.0
        assert any(0 < p < 100 for p in seen)
        assert seen == sorted(seen)
        assert (replica.location, replica.source_id, replica.copy_error) == (
            "westus2",
            source,
            None,
        )

    def test_a_failed_copy_shows_its_copy_error(
        self, gateway: ComputeGateway, sim: ArmSimulator, web: VM
    ) -> None:
        source = snapshot_of(gateway, sim, web)
        sim.add_fault(FaultRule(operation="snapshots.copy", kind="copy-fails", count=1))
        accepted = gateway.begin_copy(
            source_id=source, name="replica", resource_group=REPLICAS, region="westus2", tags={}
        )
        sim.advance(3600)
        replica = gateway.get_snapshot(accepted.resource_id)
        assert replica.copy_error is not None
        assert replica.copy_error.startswith("CopySourceNotFound: ")
        assert replica.completion_percent is not None
        assert replica.completion_percent < 100


class TestDisks:
    """Disks restored from snapshots, for verification and DR."""

    def test_disk_from_snapshot_is_unattached_with_the_snapshot_size(
        self, gateway: ComputeGateway, sim: ArmSimulator, web: VM
    ) -> None:
        snapshot_id = snapshot_of(gateway, sim, web, "lun0")
        accepted = gateway.begin_disk_from_snapshot(
            name="verify-data0",
            resource_group=DRTEST,
            region="eastus",
            snapshot_id=snapshot_id,
            sku="Standard_LRS",
            zone=None,
            tags={TEST_TAG: "v1"},
        )
        assert accepted.poll_after_seconds == sim.durations.disk_seconds
        assert gateway.get_disk(accepted.resource_id).provisioning_state == "Updating"
        settle(sim, accepted)
        disk = gateway.get_disk(accepted.resource_id)
        assert (disk.provisioning_state, disk.disk_state) == ("Succeeded", "Unattached")
        assert (disk.size_gb, disk.sku, disk.source_id) == (128, "Standard_LRS", snapshot_id)
        assert disk.tags == {TEST_TAG: "v1"}

    def test_begin_delete_of_a_disk_returns_at_once_and_a_repeat_once_it_is_gone_is_none(
        self, gateway: ComputeGateway, sim: ArmSimulator, web: VM
    ) -> None:
        accepted = _os_disk_copy(gateway, sim, web, zone="1")
        assert gateway.get_disk(accepted.resource_id).zone == "1"
        deleting = gateway.begin_delete(accepted.resource_id)
        assert deleting is not None
        assert deleting.poll_after_seconds == sim.durations.disk_delete_seconds
        assert gateway.get_disk(accepted.resource_id).provisioning_state == "Deleting"
        wait_out(sim, sim.durations.disk_delete_seconds)
        with pytest.raises(NotFoundError):
            gateway.get_disk(accepted.resource_id)
        assert gateway.begin_delete(accepted.resource_id) is None
        assert writes_to(sim, "/disks/verify-os") == [
            ("PUT", 202),
            ("DELETE", 202),
            ("DELETE", 204),
        ]

    def test_a_disk_a_killed_worker_left_exported_is_revoked_then_deleted(
        self, gateway: ComputeGateway, sim: ArmSimulator, web: VM, armsim: ArmServer
    ) -> None:
        accepted = _os_disk_copy(gateway, sim, web, zone=None)
        _leave_exported(armsim, DRTEST, "verify-os")  # a worker died before endGetAccess
        sim.advance(3600)  # the SAS expired; the disk stays ActiveSAS until endGetAccess
        assert gateway.begin_delete(accepted.resource_id) is not None
        assert [(m, s) for m, s in writes_to(sim, "/disks/verify-os") if m != "PUT"] == [
            ("POST", 202),  # beginGetAccess
            ("DELETE", 409),
            ("POST", 202),  # endGetAccess
            ("DELETE", 202),
        ]

    def test_a_snapshot_left_exported_is_revoked_then_deleted(
        self, gateway: ComputeGateway, sim: ArmSimulator, web: VM, armsim: ArmServer
    ) -> None:
        snapshot_id = snapshot_of(gateway, sim, web)
        _leave_exported(armsim, BACKUPS, "snap-web-01-os", snapshot=True)
        assert gateway.delete_snapshot(snapshot_id) is True
        assert [m for m, s in writes_to(sim, "/snapshots/snap-web-01-os")] == [
            "PUT",
            "POST",
            "DELETE",
            "POST",
            "DELETE",
        ]
        with pytest.raises(NotFoundError):
            gateway.get_snapshot(snapshot_id)

    def test_begin_delete_refuses_what_it_does_not_delete_before_any_request(
        self, gateway: ComputeGateway, sim: ArmSimulator
    ) -> None:
        with pytest.raises(PermanentError, match="is not a VM, NIC or disk"):
            gateway.begin_delete(compute_id(BACKUPS, "snapshots", "snap"))
        assert sim.requests == []


def wait_out(sim: ArmSimulator, seconds: float) -> None:
    """Wait out a varied operation however long it turns out (its longest possible time)."""
    sim.advance(seconds * (1 + sim.durations.jitter))


def restore(gateway: ComputeGateway, sim: ArmSimulator, web: VM) -> Accepted:
    """web-01 restored in the DR-test group: disks from snapshots, a NIC, the VM started."""
    tags = {TEST_TAG: "dr-1", "managed-by": "backupdr"}
    disks = {}
    for disk in web.disks:
        accepted = gateway.begin_disk_from_snapshot(
            name=f"dr-1-{disk.role}",
            resource_group=DRTEST,
            region="eastus",
            snapshot_id=snapshot_of(gateway, sim, web, disk.role),
            sku=disk.sku,
            zone=None,
            tags=tags,
        )
        settle(sim, accepted)
        disks[disk.role] = accepted.resource_id
    nic = gateway.begin_nic(
        name="dr-1-nic", resource_group=DRTEST, region="eastus", subnet=SUBNET, tags=tags
    )
    wait_out(sim, sim.durations.nic_seconds)
    return gateway.begin_vm_from_disks(
        name="dr-1-vm",
        resource_group=DRTEST,
        region="eastus",
        vm_size=web.vm_size,
        os_type=web.os_type,
        os_disk_id=disks["os"],
        data_disks=[(0, disks["lun0"])],
        nic_id=nic.resource_id,
        tags=tags,
    )


def running(sim: ArmSimulator, restored: Accepted) -> str:
    """The restored VM's id once it has been created and has booted."""
    sim.advance(sim.durations.vm_create_seconds + sim.durations.vm_boot_seconds)
    return restored.resource_id


def guest_answer(
    gateway: ComputeGateway, sim: ArmSimulator, vm_id: str, os_type: str = "Linux"
) -> GuestCheck:
    """Start the guest check and read it after its time, the way a workflow's timer would."""
    started = gateway.begin_guest_check(vm_id, os_type)
    assert isinstance(started, CommandRun)
    wait_out(sim, sim.durations.run_command_seconds)
    answer = gateway.read_guest_check(started)
    assert isinstance(answer, GuestCheck)
    return answer


@pytest.fixture
def restored(gateway: ComputeGateway, sim: ArmSimulator, web: VM) -> Accepted:
    return restore(gateway, sim, web)


class TestNic:
    """The NIC is started, not waited for; a PUT of the same name is the same NIC."""

    def test_begin_nic_returns_before_it_is_provisioned_on_the_isolated_subnet(
        self, gateway: ComputeGateway, sim: ArmSimulator
    ) -> None:
        accepted = gateway.begin_nic(
            name="dr-nic", resource_group=DRTEST, region="eastus", subnet=SUBNET, tags={}
        )
        assert accepted.resource_id.endswith(
            f"/resourceGroups/{DRTEST}/providers/Microsoft.Network/networkInterfaces/dr-nic"
        )
        assert accepted.poll_after_seconds == 10  # the hint: expected 8 s, rounded up to 5 s
        assert gateway.nic_state(accepted.resource_id) == "Updating"
        wait_out(sim, sim.durations.nic_seconds)
        assert gateway.nic_state(accepted.resource_id) == "Succeeded"
        nic = next(n for n in sim.nics() if n["name"] == "dr-nic")
        subnet = nic["properties"]["ipConfigurations"][0]["properties"]["subnet"]["id"]
        assert subnet.endswith("/virtualNetworks/vnet-backupdr-drtest/subnets/snet-restore")

    def test_begin_nic_again_after_success_is_the_same_nic_with_nothing_to_wait_for(
        self, gateway: ComputeGateway, sim: ArmSimulator
    ) -> None:
        first = gateway.begin_nic(
            name="dr-nic", resource_group=DRTEST, region="eastus", subnet=SUBNET, tags={}
        )
        wait_out(sim, sim.durations.nic_seconds)
        again = gateway.begin_nic(
            name="dr-nic", resource_group=DRTEST, region="eastus", subnet=SUBNET, tags={}
        )
        assert (again.resource_id, again.poll_after_seconds) == (first.resource_id, 0.0)
        assert [n["name"] for n in sim.nics() if DRTEST in n["id"]] == ["dr-nic"]
        assert writes_to(sim, "/networkInterfaces/dr-nic") == [("PUT", 201), ("PUT", 200)]

    def test_begin_nic_refuses_a_subnet_not_named_vnet_slash_subnet(
        self, gateway: ComputeGateway
    ) -> None:
        with pytest.raises(PermanentError, match="vnet/subnet"):
            gateway.begin_nic(name="n", resource_group=DRTEST, region="eastus", subnet="x", tags={})

    def test_begin_nic_takes_a_subnets_full_id_in_another_group(
        self, operator: ComputeGateway, sim: ArmSimulator
    ) -> None:
        """As the operator, who restores into groups the app cannot write."""
        vnet, subnet = SUBNET.split("/")
        full = (
            f"/subscriptions/{SUB}/resourceGroups/{DRTEST}/providers/Microsoft.Network/"
            f"virtualNetworks/{vnet}/subnets/{subnet}"
        )
        operator.begin_nic(name="n", resource_group=APP_RG, region="eastus", subnet=full, tags={})
        nic = next(n for n in sim.nics() if n["name"] == "n")
        assert nic["properties"]["ipConfigurations"][0]["properties"]["subnet"]["id"] == full

    def test_subnet_region_is_its_vnets_or_none_when_either_is_missing(
        self, operator: ComputeGateway
    ) -> None:
        base = f"/subscriptions/{SUB}/resourceGroups/{DRTEST}/providers/Microsoft.Network"
        assert (
            operator.subnet_region(f"{base}/virtualNetworks/{SUBNET.replace('/', '/subnets/')}")
            == "eastus"
        )
        assert (
            operator.subnet_region(f"{base}/virtualNetworks/vnet-backupdr-drtest/subnets/x") is None
        )
        assert operator.subnet_region(f"{base}/virtualNetworks/nowhere/subnets/x") is None
        with pytest.raises(PermanentError, match="not a subnet"):
            operator.subnet_region(f"{base}/virtualNetworks/nowhere")

    def test_subnet_isolation_passes_infras_dr_test_network(self, gateway: ComputeGateway) -> None:
        """As the app, whose DR-test role reads the VNet and its NSG in a DR-test group."""
        assert gateway.subnet_isolation(_subnet_id(DRTEST, SUBNET)) is None

    def test_subnet_isolation_names_a_rule_someone_added_to_let_the_vm_out(
        self, armsim: ArmServer, gateway: ComputeGateway
    ) -> None:
        network = NetworkManagementClient(OwnerToken(), SUB, **sdk_options(armsim))
        allow_https_out(network, DRTEST, "nsg-vnet-backupdr-drtest")
        assert gateway.subnet_isolation(_subnet_id(DRTEST, SUBNET)) == (
            "rule allow-internet-https (priority 200) of NSG nsg-vnet-backupdr-drtest allows "
            "outbound traffic to Internet before any rule denies all of it"
        )

    def test_subnet_isolation_finds_a_recovery_network_open(self, operator: ComputeGateway) -> None:
        recovery = _subnet_id(
            "rg-backupdr-recovery-westus2", "vnet-backupdr-recovery/snet-recovery"
        )
        assert operator.subnet_isolation(recovery) == (
            "it has default outbound access (defaultOutboundAccess true, not false)"
        )

    def test_subnet_isolation_of_a_subnet_that_is_not_there(self, gateway: ComputeGateway) -> None:
        with pytest.raises(NotFoundError):
            gateway.subnet_isolation(_subnet_id(DRTEST, "vnet-backupdr-drtest/nowhere"))
        with pytest.raises(PermanentError, match="not a subnet"):
            gateway.subnet_isolation(_subnet_id(DRTEST, SUBNET).split("/subnets/")[0])

    def test_group_exists(self, operator: ComputeGateway) -> None:
        assert (operator.group_exists(DRTEST), operator.group_exists("rg-x")) == (True, False)

    def test_a_vm_on_a_nic_still_being_provisioned_is_refused_until_it_is_ready(
        self, gateway: ComputeGateway, sim: ArmSimulator, web: VM
    ) -> None:
        disk = _os_disk_copy(gateway, sim, web, zone=None, name="dr-os")
        nic = gateway.begin_nic(
            name="dr-nic", resource_group=DRTEST, region="eastus", subnet=SUBNET, tags={}
        )

        def create_vm() -> Accepted:
            return gateway.begin_vm_from_disks(
                name="dr-vm",
                resource_group=DRTEST,
                region="eastus",
                vm_size=web.vm_size,
                os_type=web.os_type,
                os_disk_id=disk.resource_id,
                data_disks=[],
                nic_id=nic.resource_id,
                tags={},
            )

        with pytest.raises(ThrottledError, match="ReferencedResourceNotProvisioned"):
            create_vm()
        wait_out(sim, sim.durations.nic_seconds)
        assert create_vm().resource_id.endswith("/virtualMachines/dr-vm")


class TestGuestCheck:
    """Run Command is started and its answer read later, in Linux's and Windows's shapes."""

    def test_begin_guest_check_returns_at_once_and_the_answer_is_read_after_its_time(
        self, gateway: ComputeGateway, sim: ArmSimulator, restored: Accepted
    ) -> None:
        vm_id = running(sim, restored)
        started = gateway.begin_guest_check(vm_id, "Linux")
        assert isinstance(started, CommandRun)
        assert started.poll_after_seconds == sim.durations.run_command_seconds
        assert "/providers/Microsoft.Compute/locations/eastus/operations/" in started.result_url
        still = gateway.read_guest_check(started)
        assert isinstance(still, CommandRun)
        assert still.result_url == started.result_url
        wait_out(sim, sim.durations.run_command_seconds)
        answer = gateway.read_guest_check(started)
        assert answer == GuestCheck(succeeded=True, output="backupdr-guest-ok")

    def test_a_linux_answer_is_one_provisioning_status_holding_both_streams(
        self, gateway: ComputeGateway, sim: ArmSimulator, restored: Accepted
    ) -> None:
        started = gateway.begin_guest_check(running(sim, restored), "Linux")
        assert isinstance(started, CommandRun)
        wait_out(sim, sim.durations.run_command_seconds)
        [status] = raw_result(sim, started)["value"]
        assert status["code"] == "ProvisioningState/succeeded"
        assert status["message"] == "Enable succeeded: \n[stdout]\nbackupdr-guest-ok\n\n[stderr]\n"
        assert gateway.read_guest_check(started) == GuestCheck(True, "backupdr-guest-ok")

    def test_a_windows_answer_is_one_component_status_per_stream(
        self, gateway: ComputeGateway, sim: ArmSimulator
    ) -> None:
        win = sim.add_vm(SUB, DRTEST, "win-01", os_type="Windows")
        started = gateway.begin_guest_check(win["id"], "Windows")
        assert isinstance(started, CommandRun)
        wait_out(sim, sim.durations.run_command_seconds)
        codes = [s["code"] for s in raw_result(sim, started)["value"]]
        assert codes == ["ComponentStatus/StdOut/succeeded", "ComponentStatus/StdErr/succeeded"]
        assert gateway.read_guest_check(started) == GuestCheck(True, "backupdr-guest-ok")

    def test_a_repeat_after_success_runs_the_check_again_but_not_while_one_runs(
        self, gateway: ComputeGateway, sim: ArmSimulator, restored: Accepted
    ) -> None:
        vm_id = running(sim, restored)
        assert guest_answer(gateway, sim, vm_id).succeeded
        assert guest_answer(gateway, sim, vm_id).succeeded
        gateway.begin_guest_check(vm_id, "Linux")
        with pytest.raises(BusyError, match="another Run Command still runs"):
            gateway.begin_guest_check(vm_id, "Linux")

    def test_a_command_for_the_other_os_is_refused(
        self, gateway: ComputeGateway, sim: ArmSimulator, restored: Accepted
    ) -> None:
        with pytest.raises(PermanentError, match="OS type 'Windows' does not match"):
            gateway.begin_guest_check(running(sim, restored), "Windows")

    def test_a_silent_guest_fails_the_check_without_raising(
        self, gateway: ComputeGateway, sim: ArmSimulator, restored: Accepted
    ) -> None:
        vm_id = running(sim, restored)
        sim.add_fault(FaultRule(operation="runcommand", kind="guest-silent", count=1))
        check = guest_answer(gateway, sim, vm_id)
        assert not check.succeeded
        assert "VMAgentStatusCommunicationError" in check.output

    def test_a_result_url_outside_this_subscriptions_operations_is_never_requested(
        self, gateway: ComputeGateway, sim: ArmSimulator
    ) -> None:
        vm_id = compute_id(DRTEST, "virtualMachines", "dr-vm")
        elsewhere = CommandRun(vm_id, "https://example.org/subscriptions/x/anything", 0.0)
        with pytest.raises(PermanentError, match="not a Compute operation"):
            gateway.read_guest_check(elsewhere)
        assert sim.requests == []


def raw_result(sim: ArmSimulator, run: CommandRun) -> Any:
    """The result body Azure left at the run's Location, as the simulator answers it."""
    operation = sim.world.operations[run.result_url.split("/operations/")[1].split("?")[0]]
    assert operation.result is not None
    return operation.result()


class TestDisasterRecovery:
    """A VM restored from disks in the DR-test group: boot, deletes in dependency order."""

    def test_restored_vm_attaches_its_disks_and_boots(
        self, gateway: ComputeGateway, sim: ArmSimulator, restored: Accepted
    ) -> None:
        vm = next(v for v in sim.vms() if v["name"] == "dr-1-vm")
        storage = vm["properties"]["storageProfile"]
        assert storage["osDisk"]["createOption"] == "Attach"
        assert [d["lun"] for d in storage["dataDisks"]] == [0]
        assert "osProfile" not in vm["properties"]
        assert gateway.vm_runtime(restored.resource_id).provisioning_state == "creating"
        runtime = gateway.vm_runtime(running(sim, restored))
        assert (runtime.provisioning_state, runtime.power_state) == ("succeeded", "running")

    def test_a_vm_that_never_boots_stays_starting(
        self, gateway: ComputeGateway, sim: ArmSimulator, web: VM
    ) -> None:
        sim.add_fault(FaultRule(operation="vms.create", kind="never-boots", count=1))
        restored = restore(gateway, sim, web)
        sim.advance(3600)
        runtime = gateway.vm_runtime(restored.resource_id)
        assert (runtime.provisioning_state, runtime.power_state) == ("succeeded", "starting")

    def test_deleting_a_vm_takes_minutes_and_holds_its_nic_and_disks_until_it_is_gone(
        self, gateway: ComputeGateway, sim: ArmSimulator, restored: Accepted
    ) -> None:
        vm_id = running(sim, restored)
        tagged = {r.type: r.id for r in gateway.list_tagged(DRTEST, TEST_TAG)}
        nic_id = tagged["Microsoft.Network/networkInterfaces"]
        deleting = gateway.begin_delete(vm_id)
        assert deleting == Accepted(vm_id, sim.durations.vm_delete_seconds)
        assert gateway.vm_runtime(vm_id).provisioning_state == "deleting"
        with pytest.raises(PermanentError, match="NicInUse"):
            gateway.begin_delete(nic_id)
        sim.advance(deleting.poll_after_seconds * (1 - sim.durations.jitter) - 1)
        assert vm_id in [r.id for r in gateway.list_tagged(DRTEST, TEST_TAG)]
        wait_out(sim, sim.durations.vm_delete_seconds)
        assert vm_id not in [r.id for r in gateway.list_tagged(DRTEST, TEST_TAG)]
        assert gateway.begin_delete(vm_id) is None
        assert gateway.begin_delete(nic_id) is not None
        wait_out(sim, sim.durations.nic_delete_seconds)
        assert gateway.begin_delete(nic_id) is None
        disks = [r.id for r in gateway.list_tagged(DRTEST, TEST_TAG)]
        assert len(disks) == 2
        assert all(gateway.begin_delete(disk) is not None for disk in disks)
        wait_out(sim, sim.durations.disk_delete_seconds)
        assert gateway.list_tagged(DRTEST, TEST_TAG) == []


class TestPolicyTag:
    """The CLI writes the policy tag through the Tags API, merging, never replacing."""

    def test_set_policy_tag_merges_and_keeps_other_tags(
        self, gateway: ComputeGateway, operator: ComputeGateway, sim: ArmSimulator
    ) -> None:
        vm_id = compute_id(APP_RG, "virtualMachines", "db-01")
        operator.set_policy_tag(vm_id, "daily=3")
        assert gateway.get_vm(APP_RG, "db-01").tags == {"backup-policy": "daily=3"}
        assert writes_to(sim, "/tags/default") == [("PATCH", 202)]

    def test_set_policy_tag_none_removes_only_the_policy_tag(
        self, gateway: ComputeGateway, operator: ComputeGateway, sim: ArmSimulator
    ) -> None:
        vm_id = compute_id(APP_RG, "virtualMachines", "web-01")
        vm = sim.world.find(vm_id)
        assert vm is not None
        vm.body["tags"]["owner"] = "team-a"  # a tag someone else set
        operator.set_policy_tag(vm_id, None)
        assert gateway.get_vm(APP_RG, "web-01").tags == {"owner": "team-a"}
        operator.set_policy_tag(vm_id, None)  # already gone: nothing to write
        assert writes_to(sim, "/tags/default") == [("PATCH", 202)]


FAULT_CASES = [
    pytest.param(
        FaultRule(operation="vms.get", kind="5xx"), TransientError, "InternalServerError", id="5xx"
    ),
    pytest.param(
        FaultRule(operation="vms.get", kind="region-outage", region="eastus"),
        TransientError,
        "ServiceUnavailable",
        id="region outage",
    ),
    pytest.param(
        FaultRule(operation="vms.get", kind="429", retry_after=1),
        ThrottledError,
        "TooManyRequests",
        id="429 that never ends",
    ),
]


class TestFaults:
    """Each injected fault surfaces as the gateway exception the workflows act on."""

    @pytest.mark.parametrize(("rule", "expected", "code"), FAULT_CASES)
    def test_persistent_fault_on_a_read_ends_in_a_transient_error_after_bounded_retries(
        self,
        gateway: ComputeGateway,
        sim: ArmSimulator,
        rule: FaultRule,
        expected: type[BackupDrError],
        code: str,
    ) -> None:
        sim.add_fault(rule)
        with pytest.raises(expected, match=code):
            gateway.get_vm(APP_RG, "web-01")
        assert len(sim.requests) == 4  # the first try and the SDK's three retries

    def test_a_429_with_retry_after_is_retried_by_the_sdk_and_then_succeeds(
        self, gateway: ComputeGateway, sim: ArmSimulator, web: VM
    ) -> None:
        sim.add_fault(FaultRule(operation="snapshots.create", kind="429", count=1, retry_after=1))
        accepted = gateway.begin_snapshot(
            name="snap", resource_group=BACKUPS, region="eastus", disk=web.disks[0], tags={}
        )
        assert writes_to(sim, "/snapshots/") == [("PUT", 429), ("PUT", 202)]
        assert accepted.poll_after_seconds == sim.durations.snapshot_seconds

    def test_a_single_5xx_on_the_vm_list_is_retried_and_the_list_succeeds(
        self, gateway: ComputeGateway, sim: ArmSimulator
    ) -> None:
        sim.add_fault(FaultRule(operation="vms.list", kind="5xx", count=1))
        assert len(gateway.list_vms()) == 3
        assert [r.status for r in sim.requests] == [500, 200]

    @pytest.mark.parametrize(
        ("kind", "code"),
        [("quota-exceeded", "QuotaExceeded"), ("sku-not-available", "SkuNotAvailable")],
    )
    def test_no_capacity_for_the_vm_is_a_capacity_error_sent_once(
        self, gateway: ComputeGateway, sim: ArmSimulator, web: VM, kind: str, code: str
    ) -> None:
        sim.add_fault(FaultRule(operation="vms.create", kind=kind))
        with pytest.raises(CapacityError, match=code):
            restore(gateway, sim, web)
        assert writes_to(sim, "/virtualMachines/") == [("PUT", 409)]

    def test_a_failed_delete_operation_is_a_permanent_error(
        self, gateway: ComputeGateway, sim: ArmSimulator, web: VM
    ) -> None:
        snapshot_id = snapshot_of(gateway, sim, web)
        sim.add_fault(FaultRule(operation="snapshots.delete", kind="fail-operation", count=1))
        with pytest.raises(PermanentError, match="InternalOperationError"):
            gateway.delete_snapshot(snapshot_id)
        assert gateway.get_snapshot(snapshot_id).provisioning_state == "Succeeded"

    def test_a_failed_snapshot_create_shows_as_failed_when_read_back(
        self, gateway: ComputeGateway, sim: ArmSimulator, web: VM
    ) -> None:
        sim.add_fault(FaultRule(operation="snapshots.create", kind="fail-operation", count=1))
        snapshot_id = snapshot_of(gateway, sim, web)
        assert gateway.get_snapshot(snapshot_id).provisioning_state == "Failed"

    def test_a_bad_request_ends_at_once_with_a_clear_permanent_error(
        self, gateway: ComputeGateway, sim: ArmSimulator, web: VM
    ) -> None:
        with pytest.raises(PermanentError, match="InvalidResourceName"):
            gateway.begin_snapshot(
                name="bad name!",
                resource_group=BACKUPS,
                region="eastus",
                disk=web.disks[0],
                tags={},
            )
        assert writes_to(sim, "/snapshots/") == [("PUT", 400)]
