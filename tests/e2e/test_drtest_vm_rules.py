"""DR tests meet Azure's VM creation rules: a Trusted Launch VM is restored as one, a size the
test region cannot give fails the test before anything is created, and a failed allocation ends
it at the first read with Azure's code, long before the create timeout. A test subnet that would
let the copy of a production VM out (an NSG rule someone added, a plain subnet in a group given
to the test) fails it before anything is created, too.

One small fleet: a Trusted Launch VM in eastus, backed up at 02:00 and replicated to westus2.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from azure.mgmt.network import NetworkManagementClient

from local.armsim import ArmSimulator, FaultRule
from local.armsim.rbac import Assignment
from local.azurite import Azurite
from local.stack import Stack, local_stack
from shared.adapters.credentials import SIMULATOR_TOKEN
from shared.domain.models import DrTest
from shared.orchestrations.drtest import CREATE_TIMEOUT
from shared.ports import ComputeGateway, VmRuntime
from shared.services import Services, install
from tests.integration.owner import OwnerToken, allow_https_out

SUB = "00000000-0000-0000-0000-000000000001"
START = datetime(2026, 11, 10, tzinfo=UTC)
VM_KEY = "rg-app-eastus~tl-01"
DR_GROUP = "rg-backupdr-drtest-westus2"
VNETS = [
    {
        "name": "vnet-backupdr-drtest",
        "address_prefix": "10.90.0.0/16",
        "subnets": [{"name": "snet-restore", "address_prefix": "10.90.1.0/24", "isolated": True}],
    }
]
PLAIN_SUBNET = {"name": "snet-restore", "address_prefix": "10.90.1.0/24"}
FLEET = {
    "subscriptions": [
        {
            "id": SUB,
            "resource_groups": [
                {"name": "rg-app-eastus", "region": "eastus"},
                # The groups infra makes in a backup region (eastus) and a DR region (westus2).
                {"name": "rg-backups-eastus", "region": "eastus"},
                {"name": "rg-backupdr-drtest-eastus", "region": "eastus"},
                {"name": "rg-backups-westus2", "region": "westus2"},
                {"name": DR_GROUP, "region": "westus2", "vnets": VNETS},
                {"name": "rg-backupdr-recovery-westus2", "region": "westus2"},
            ],
            "vms": [
                {
                    "name": "tl-01",
                    "resource_group": "rg-app-eastus",
                    "size": "Standard_D2s_v5",
                    "zone": "2",
                    "security_type": "TrustedLaunch",
                    "secure_boot": True,
                    "vtpm": True,
                    "tags": {
                        "backup-policy": "schedule=0 2 * * *;daily=7;replicate=westus2",
                        "owner": "app-team",
                    },
                    "os_disk": {"size_gb": 8},
                    "data_disks": [{"lun": 0, "size_gb": 8, "caching": "ReadOnly"}],
                }
            ],
        }
    ]
}
_prefixes = (f"drrules{n}" for n in itertools.count())


@pytest.fixture
def stack(azurite: Azurite) -> Iterator[Stack]:
    with local_stack(FLEET, start=START, azurite=azurite, table_prefix=next(_prefixes)) as running:
        running.host.run_timers(until=START + timedelta(hours=2, minutes=30))  # backup + replica
        yield running


class _Watching:
    """The app's gateway, noting the test VM as Azure holds it whenever the app reads its state
    (the DR test deletes it before the test can look)."""

    def __init__(self, inner: ComputeGateway, sim: ArmSimulator) -> None:
        self._inner, self._sim = inner, sim
        self.vms: dict[str, dict[str, Any]] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def vm_runtime(self, vm_id: str) -> VmRuntime:
        found = [v for v in self._sim.vms() if v["id"].lower() == vm_id.lower()]
        self.vms.update({v["name"]: v for v in found})
        return self._inner.vm_runtime(vm_id)


def _dr_test(stack: Stack) -> DrTest:
    backup = stack.services.catalog.list_backups(VM_KEY)[0]
    assert backup.replication_status == "completed", "the fixture leaves a replicated backup"
    stack.host.start("dr_test_v2", input={"vm_key": VM_KEY, "test_region": "westus2"})
    stack.host.run_until_idle()
    [test] = stack.services.catalog.dr_history(VM_KEY, now=stack.clock.now(), days=1)
    return test


def _left_in_the_test_group(stack: Stack) -> list[str]:
    sim = stack.simulator
    return [r["id"] for r in sim.vms() + sim.disks() + sim.nics() if DR_GROUP in r["id"]]


def test_a_trusted_launch_vm_is_restored_as_one_and_passes_its_dr_test(stack: Stack) -> None:
    backup = stack.services.catalog.list_backups(VM_KEY)[0]
    assert (backup.security_type, backup.secure_boot, backup.vtpm) == ("TrustedLaunch", True, True)
    assert (backup.hyper_v_generation, backup.zones) == ("V2", ("2",))
    assert [ref.caching for ref in backup.snapshots] == ["ReadWrite", "ReadOnly"]
    svc = stack.services
    watching = _Watching(svc.gateway, stack.simulator)
    install(Services(svc.settings, watching, svc.catalog, svc.clock))
    test = _dr_test(stack)
    assert test.success, test.error_message
    [restored] = watching.vms.values()
    properties = restored["properties"]
    assert properties["securityProfile"] == {
        "securityType": "TrustedLaunch",
        "uefiSettings": {"secureBootEnabled": True, "vTpmEnabled": True},
    }
    storage = properties["storageProfile"]
    assert [storage["osDisk"]["caching"], storage["dataDisks"][0]["caching"]] == [
        "ReadWrite",
        "ReadOnly",
    ]
    assert "zones" not in restored, "another region: the source's zone 2 means nothing there"
    assert _left_in_the_test_group(stack) == []


def test_a_size_the_test_region_cannot_give_fails_the_dr_test_before_it_creates_anything(
    stack: Stack,
) -> None:
    stack.simulator.restrict_size(SUB, "Standard_D2s_v5", "westus2")
    started = len(stack.simulator.requests)
    test = _dr_test(stack)
    assert (test.success, test.restore_succeeded) == (False, False)
    assert test.error_message is not None
    assert (
        "size Standard_D2s_v5 is not available in westus2: NotAvailableForSubscription"
        in test.error_message
    )
    writes = [
        r
        for r in stack.simulator.requests[started:]
        if r.method not in ("GET", "HEAD") and DR_GROUP in r.path  # HEAD: the group exists
    ]
    assert writes == [], "nothing is created in the test group"
    assert _left_in_the_test_group(stack) == []
    assert test.phase_seconds["restore"] < 5 * 60, "fails fast: the pre-flight and its retries"


def _writes_into(stack: Stack, group: str, since: int) -> list[str]:
    """The writes (not reads) sent into a group since the `since`-th request."""
    return [
        f"{r.method} {r.path}"
        for r in stack.simulator.requests[since:]
        if r.method not in ("GET", "HEAD") and f"/resourcegroups/{group}/" in r.path.lower()
    ]


def _open_to_the_internet(stack: Stack) -> None:
    """What someone might do to the DR-test NSG: allow HTTPS out to the internet, ahead of
    infra's deny, as the subscription's owner over Microsoft.Network's API."""
    env = stack.settings_env
    network = NetworkManagementClient(
        OwnerToken(),
        SUB,
        base_url=env["BACKUPDR_ARM_ENDPOINT"],
        connection_verify=env["BACKUPDR_CA_BUNDLE"],
        credential_scopes=["https://management.azure.com/.default"],
        polling_interval=0,
    )
    allow_https_out(network, DR_GROUP, "nsg-vnet-backupdr-drtest")


def test_a_dr_test_subnet_opened_to_the_internet_fails_the_test_before_it_creates_anything(
    stack: Stack,
) -> None:
    _open_to_the_internet(stack)
    started = len(stack.simulator.requests)
    test = _dr_test(stack)
    assert (test.success, test.restore_succeeded) == (False, False)
    assert test.error_message is not None
    assert test.error_message.startswith(
        f"restore: subnet vnet-backupdr-drtest/snet-restore in {DR_GROUP} is not isolated: rule "
        "allow-internet-https (priority 200) of NSG nsg-vnet-backupdr-drtest allows outbound "
        "traffic to Internet before any rule denies all of it"
    )
    assert _writes_into(stack, DR_GROUP, started) == [], "nothing is created in the test group"
    assert _left_in_the_test_group(stack) == []


def test_a_group_given_to_a_dr_test_whose_subnet_is_not_isolated_fails_it_the_same_way(
    stack: Stack,
) -> None:
    """`backupdr dr test --test-resource-group rg-dr-plain`, where the operator gave the app the
    DR-test role but the subnet is a plain one: default outbound access, no NSG."""
    plain = "rg-dr-plain"
    sim = stack.simulator
    sim.add_group(SUB, plain, "westus2", vnets=[{**VNETS[0], "subnets": [PLAIN_SUBNET]}])
    app = sim.authorization.principals[SIMULATOR_TOKEN]
    drtest = next(a for a in app.assignments if a.group == "rg-backupdr-drtest-{region}")
    sim.authorization.principals[SIMULATOR_TOKEN] = dataclasses.replace(
        app, assignments=(*app.assignments, Assignment(drtest.role, group=plain))
    )
    svc = stack.services
    given = dataclasses.replace(svc.settings, drtest_resource_group=plain)  # as the CLI does
    install(dataclasses.replace(svc, settings=given))
    started = len(sim.requests)
    test = _dr_test(stack)
    assert (test.success, test.restore_succeeded) == (False, False)
    assert test.error_message is not None
    assert test.error_message.startswith(
        f"restore: subnet vnet-backupdr-drtest/snet-restore in {plain} is not isolated: it has "
        "default outbound access (defaultOutboundAccess not set, not false)"
    )
    assert _writes_into(stack, plain, started) == []
    assert not [r["id"] for r in sim.vms() + sim.disks() + sim.nics() if plain in r["id"]]


def test_an_allocation_failure_ends_the_dr_test_at_create_vm_with_azures_code(
    stack: Stack,
) -> None:
    stack.simulator.add_fault(FaultRule(operation="vms.create", kind="allocation-failed"))
    test = _dr_test(stack)
    assert (test.success, test.restore_succeeded, test.boot_succeeded) == (False, True, False)
    assert test.error_message is not None
    assert test.error_message.startswith(
        "create VM failed: AllocationFailed: Allocation failed. We do not have sufficient "
        "capacity for the requested VM size in this region."
    )
    assert test.phase_seconds["create_vm"] < CREATE_TIMEOUT.total_seconds() / 10
    assert "boot" not in test.phase_seconds
    assert test.cleanup_succeeded
    assert _left_in_the_test_group(stack) == []


def test_the_dr_test_restores_as_a_failover_does_and_an_old_dr_test_still_completes(
    stack: Stack,
) -> None:
    svc = stack.services
    watching = _Watching(svc.gateway, stack.simulator)
    install(Services(svc.settings, watching, svc.catalog, svc.clock))
    test = _dr_test(stack)
    assert test.success, test.error_message
    assert set(test.phase_seconds) == {"restore", "create_vm", "boot", "guest_check", "cleanup"}
    [restore] = [i for i in stack.host.instances() if i.instance_id == f"{test.id}-restore"]
    assert (restore.name, restore.runtime_status) == ("restore_backup_v2", "Completed")
    assert restore.output["state"] == "completed"
    assert restore.input["resource_group"] == DR_GROUP
    assert (restore.input["region"], restore.input["keep_partial"]) == ("westus2", True)
    assert restore.input["subnet"] == svc.settings.drtest_subnet
    assert restore.output["applied"]["vm_tags"] == {"owner": "app-team"}
    [restored] = watching.vms.values()
    tags = restored["tags"]
    assert tags["backupdr-test"] == test.id, "the DR test's clean-up and the sweeper find it"
    assert "backupdr-expires" in tags
    assert (tags["backupdr-restore"], tags["backupdr-backup"]) == (test.id, test.backup_name)
    assert tags["owner"] == "app-team", "the recorded tags the restore applies"
    assert "backup-policy" not in tags, "a restored copy is not backed up"
    assert _left_in_the_test_group(stack) == []

    stack.clock.advance(5 * 60)  # another test id
    old = stack.host.start("dr_test", input={"vm_key": VM_KEY, "test_region": "westus2"})
    stack.host.run_until_idle()
    status = stack.host.status(old)
    assert status.runtime_status == "Completed"
    assert status.output["success"], status.output.get("error_message")
    assert not [i for i in stack.host.instances() if i.instance_id == f"{old}-restore"]
    assert len(stack.services.catalog.dr_history(VM_KEY, now=stack.clock.now(), days=1)) == 2
    assert _left_in_the_test_group(stack) == []
