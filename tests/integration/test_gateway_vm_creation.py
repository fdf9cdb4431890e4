"""The gateway's side of VM creation rules, on the real SDK against the simulator over HTTPS:
what it reads of a VM's security profile, generation, zones and caching; the VM it creates from
restored disks; the size pre-flight from the Resource SKUs list; and failed creates read at once.
"""

from __future__ import annotations

import pytest

from local.armsim import ArmServer, ArmSimulator, FaultRule
from shared.domain.models import VM
from shared.errors import CapacityError, PermanentError
from shared.ports import Accepted, ComputeGateway
from tests.integration.test_gateway import (
    APP_RG,
    DRTEST,
    SUB,
    SUBNET,
    gateway_for,
    settle,
    snapshot_of,
    wait_out,
    writes_to,
)

pytestmark = pytest.mark.armsim


@pytest.fixture
def sim(armsim: ArmServer) -> ArmSimulator:
    armsim.sim.add_vm(
        SUB, APP_RG, "tl-01", security_type="TrustedLaunch", secure_boot=True, vtpm=False
    )
    return armsim.sim


@pytest.fixture
def gateway(armsim: ArmServer, sim: ArmSimulator) -> ComputeGateway:
    return gateway_for(armsim)


def restore(
    gateway: ComputeGateway, sim: ArmSimulator, vm: VM, name: str, **settings: object
) -> Accepted:
    """A VM's disks restored from snapshots in the eastus DR-test group, and the VM started."""
    disks = {}
    for disk in vm.disks:
        accepted = gateway.begin_disk_from_snapshot(
            name=f"{name}-{disk.role}",
            resource_group=DRTEST,
            region="eastus",
            snapshot_id=snapshot_of(gateway, sim, vm, disk.role),
            sku=disk.sku,
            zone=None,
            tags={},
        )
        settle(sim, accepted)
        disks[disk.role] = accepted.resource_id
    nic = gateway.begin_nic(
        name=f"{name}-nic", resource_group=DRTEST, region="eastus", subnet=SUBNET, tags={}
    )
    wait_out(sim, sim.durations.nic_seconds)
    return gateway.begin_vm_from_disks(
        name=name,
        resource_group=DRTEST,
        region="eastus",
        vm_size=vm.vm_size,
        os_type=vm.os_type,
        os_disk_id=disks["os"],
        data_disks=[(d.lun, disks[d.role]) for d in vm.disks if d.lun is not None],
        nic_id=nic.resource_id,
        tags={},
        **settings,  # type: ignore[arg-type]
    )


class TestReadingVms:
    """Security profile, generation, zones and caching, as the backup records them."""

    def test_get_vm_reads_trusted_launch_its_uefi_settings_and_its_generation(
        self, gateway: ComputeGateway
    ) -> None:
        vm = gateway.get_vm(APP_RG, "tl-01")
        assert (vm.security_type, vm.secure_boot, vm.vtpm) == ("TrustedLaunch", True, False)
        assert vm.hyper_v_generation == "V2"
        web = gateway.get_vm(APP_RG, "web-01")
        assert (web.security_type, web.secure_boot, web.vtpm) == ("Standard", False, False)
        assert (web.hyper_v_generation, web.zones, web.zone) == ("V2", ("1",), "1")
        assert [d.caching for d in web.disks] == ["ReadWrite", "None"]  # Azure's defaults

    def test_list_vms_knows_the_generation_only_where_the_security_type_implies_it(
        self, gateway: ComputeGateway
    ) -> None:
        vms = {vm.name: vm for vm in gateway.list_vms()}
        assert vms["tl-01"].hyper_v_generation == "V2"
        assert vms["web-01"].hyper_v_generation is None  # no instance view in a list


class TestCreatingVms:
    """The VM made from restored disks carries the recorded security settings."""

    def test_a_trusted_launch_vm_is_restored_with_its_security_profile_and_caching(
        self, gateway: ComputeGateway, sim: ArmSimulator
    ) -> None:
        tl = gateway.get_vm(APP_RG, "tl-01")
        accepted = restore(
            gateway,
            sim,
            tl,
            "dr-tl",
            security_type="TrustedLaunch",
            secure_boot=True,
            vtpm=False,
            caching={"os": "ReadOnly"},
        )
        created = next(v for v in sim.vms() if v["name"] == "dr-tl")["properties"]
        assert created["securityProfile"] == {
            "securityType": "TrustedLaunch",
            "uefiSettings": {"secureBootEnabled": True, "vTpmEnabled": False},
        }
        assert created["storageProfile"]["osDisk"]["caching"] == "ReadOnly"
        sim.advance(sim.durations.vm_create_seconds)
        assert gateway.vm_runtime(accepted.resource_id).provisioning_state == "succeeded"
        assert gateway.get_vm(DRTEST, "dr-tl").hyper_v_generation == "V2"

    def test_a_confidential_vm_is_restored_with_its_os_disk_encryption_type(
        self, gateway: ComputeGateway, sim: ArmSimulator
    ) -> None:
        sim.add_vm(SUB, APP_RG, "cvm-01", size="Standard_DC2as_v5", security_type="ConfidentialVM")
        cvm = gateway.get_vm(APP_RG, "cvm-01")
        assert (cvm.security_type, cvm.hyper_v_generation) == ("ConfidentialVM", "V2")
        accepted = restore(
            gateway, sim, cvm, "dr-cvm", security_type="ConfidentialVM", secure_boot=True, vtpm=True
        )
        created = next(v for v in sim.vms() if v["name"] == "dr-cvm")["properties"]
        os_disk = created["storageProfile"]["osDisk"]["managedDisk"]
        assert os_disk["securityProfile"] == {"securityEncryptionType": "VMGuestStateOnly"}
        sim.advance(sim.durations.vm_create_seconds)
        assert gateway.vm_runtime(accepted.resource_id).provisioning_state == "succeeded"

    def test_a_trusted_launch_disk_under_a_standard_vm_is_a_permanent_bad_request(
        self, gateway: ComputeGateway, sim: ArmSimulator
    ) -> None:
        tl = gateway.get_vm(APP_RG, "tl-01")
        with pytest.raises(PermanentError, match="BadRequest: Security type of VM is not compat"):
            restore(gateway, sim, tl, "dr-tl")
        assert writes_to(sim, "/virtualMachines/") == [("PUT", 400)]

    @pytest.mark.parametrize(
        ("kind", "code"),
        [("allocation-failed", "AllocationFailed"), ("fail-operation", "InternalOperationError")],
    )
    def test_a_failed_create_reads_failed_with_its_code_at_the_first_read_after_it(
        self, gateway: ComputeGateway, sim: ArmSimulator, kind: str, code: str
    ) -> None:
        sim.add_fault(FaultRule(operation="vms.create", kind=kind))
        accepted = restore(gateway, sim, gateway.get_vm(APP_RG, "web-01"), "dr-1")
        assert gateway.vm_runtime(accepted.resource_id).error is None  # still creating
        sim.advance(sim.durations.vm_create_seconds)
        runtime = gateway.vm_runtime(accepted.resource_id)
        assert runtime.provisioning_state == "failed"
        assert runtime.error is not None
        assert runtime.error.startswith(f"{code}: ")
        if kind == "allocation-failed":
            assert "We do not have sufficient capacity" in runtime.error

    def test_a_quota_refusal_is_a_capacity_error_naming_the_family(
        self, gateway: ComputeGateway, sim: ArmSimulator
    ) -> None:
        sim.add_fault(FaultRule(operation="vms.create", kind="quota-exceeded"))
        with pytest.raises(CapacityError, match=r"QuotaExceeded: .*standardDSv5Family Cores"):
            restore(gateway, sim, gateway.get_vm(APP_RG, "web-01"), "dr-1")


class TestSizeOffers:
    """The DR test's pre-flight: one read of the Resource SKUs list for the test region."""

    def test_an_unrestricted_size_is_offered_in_every_zone_with_its_capabilities(
        self, gateway: ComputeGateway, sim: ArmSimulator
    ) -> None:
        offer = gateway.vm_size_offer("westus2", "standard_d2s_v5")
        assert offer is not None
        assert (offer.name, offer.zones, offer.hyper_v_generations) == (
            "Standard_D2s_v5",
            ("1", "2", "3"),
            ("V1", "V2"),
        )
        assert offer.unavailable() is None
        assert offer.unavailable("2") is None
        assert offer.cannot_run("TrustedLaunch", "V2") is None
        assert [r.path for r in sim.requests] == [
            f"/subscriptions/{SUB}/providers/Microsoft.Compute/skus"
        ]

    def test_a_location_restriction_makes_the_size_unavailable_with_its_reason(
        self, gateway: ComputeGateway, sim: ArmSimulator
    ) -> None:
        sim.restrict_size(SUB, "Standard_D2s_v5", "westus2")
        offer = gateway.vm_size_offer("westus2", "Standard_D2s_v5")
        assert offer is not None
        assert offer.unavailable() == "NotAvailableForSubscription"
        east = gateway.vm_size_offer("eastus", "Standard_D2s_v5")
        assert east is not None
        assert east.unavailable() is None

    def test_a_zone_restriction_leaves_the_size_to_regional_vms(
        self, gateway: ComputeGateway, sim: ArmSimulator
    ) -> None:
        sim.restrict_size(SUB, "Standard_D2s_v5", "westus2", zones=["1"], reason="QuotaId")
        offer = gateway.vm_size_offer("westus2", "Standard_D2s_v5")
        assert offer is not None
        assert (offer.unavailable(), offer.unavailable("2")) == (None, None)
        assert offer.unavailable("1") == "QuotaId in zone 1"

    def test_a_size_the_region_does_not_list_has_no_offer(self, gateway: ComputeGateway) -> None:
        assert gateway.vm_size_offer("westus2", "Standard_Q9_v9") is None

    def test_a_generation_1_size_cannot_run_generation_2_or_trusted_launch(
        self, gateway: ComputeGateway
    ) -> None:
        offer = gateway.vm_size_offer("westus2", "Standard_A2_v2")
        assert offer is not None
        assert offer.cannot_run("Standard", "V2") == "it cannot boot Hypervisor Generation V2"
        assert offer.cannot_run("TrustedLaunch", None) == "it does not support Trusted Launch"
        assert offer.cannot_run("Standard", "V1") is None

    def test_a_region_that_is_not_a_name_never_reaches_the_filter(
        self, gateway: ComputeGateway, sim: ArmSimulator
    ) -> None:
        with pytest.raises(PermanentError, match="not a region name"):
            gateway.vm_size_offer("westus2' or name eq 'x", "Standard_D2s_v5")
        assert sim.requests == []
