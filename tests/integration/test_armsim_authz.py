"""The simulator refuses what Azure refuses, as Azure does, over HTTPS with the real SDK clients.

The app's identity holds the roles infra/ gives it; the operator's and test principals hold
built-in or hand-made roles. Each refusal is checked by status, ARM error code and message.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import requests
from azure.core.exceptions import HttpResponseError
from azure.mgmt.compute.models import Disk, Snapshot, VirtualMachine
from azure.mgmt.network.models import NetworkInterface, VirtualNetwork
from azure.mgmt.resource.resources.models import TagsPatchResource

from local.armsim import ArmServer, ArmSimulator
from local.armsim.authz import APP_OBJECT_ID, Refusal
from local.armsim.infra_roles import app_assignments
from local.armsim.rbac import Assignment, Principal, Role
from shared.adapters.credentials import (
    OPERATOR_TOKEN,
    SIMULATOR_TOKEN,
    ArmClients,
    StaticTokenCredential,
    arm_clients,
    local_token,
)
from shared.settings import Settings

pytestmark = pytest.mark.armsim

SUB = "00000000-0000-0000-0000-000000000001"
APP_RG = "rg-app-eastus"
BACKUPS = "rg-backups-eastus"
REPLICAS = "rg-backups-westus2"
DRTEST = "rg-backupdr-drtest-eastus"
TEST_TOKEN = local_token(oid="test-oid", appid="tester")


def rid(group: str, kind: str, name: str) -> str:
    """A resource id in SUB; `kind` is "Microsoft.Compute/snapshots" and the like."""
    return f"/subscriptions/{SUB}/resourceGroups/{group}/providers/{kind}/{name}"


WEB_DISK = rid(APP_RG, "Microsoft.Compute/disks", "web-01-osdisk")
WEB_NIC = rid(APP_RG, "Microsoft.Network/networkInterfaces", "web-01-nic")


def clients(server: ArmServer, token: str) -> ArmClients:
    settings = Settings(
        subscription_id=SUB,
        arm_endpoint=server.url,
        ca_bundle=str(server.ca_path),
        credential="static",
        lro_poll_seconds=0.01,
    )
    return arm_clients(settings, StaticTokenCredential(token))


def refused(call: Callable[[], Any]) -> tuple[int, str, str]:
    """(status, ARM error code, message) of a call Azure refuses."""
    with pytest.raises(HttpResponseError) as raised:
        call()
    error = raised.value
    assert error.error is not None
    return error.status_code or 0, error.error.code or "", error.error.message or ""


def authorization_failed(action: str, scope: str) -> str:
    return (
        f"The client '{APP_OBJECT_ID}' with object id '{APP_OBJECT_ID}' does not have "
        f"authorization to perform action '{action}' over scope '{scope}' or the scope is "
        "invalid. If access was recently granted, please refresh your credentials."
    )


def snapshot_of(source: str, option: str = "Copy", region: str = "eastus") -> Snapshot:
    creation = {"createOption": option, "sourceResourceId": source}
    return Snapshot(
        {"location": region, "properties": {"incremental": True, "creationData": creation}}
    )


def with_principal(sim: ArmSimulator, *assignments: Assignment) -> None:
    """Let TEST_TOKEN stand for a principal holding exactly `assignments`."""
    sim.authorization.principals[TEST_TOKEN] = Principal("tester", "test-oid", assignments)


@pytest.fixture
def app(armsim: ArmServer) -> ArmClients:
    return clients(armsim, SIMULATOR_TOKEN)


@pytest.fixture
def seeded_snapshot(armsim: ArmServer) -> str:
    """A snapshot someone else took, in a workload group (seeded in-process: no authorization)."""
    sid = rid(APP_RG, "Microsoft.Compute/snapshots", "s1")
    body = {"location": "eastus", "properties": {"creationData": {"createOption": "Copy"}}}
    armsim.sim.seed(sid, body)
    return sid


class TestAuthentication:
    def test_an_unknown_token_is_401_invalid_authentication_token(self, armsim: ArmServer) -> None:
        compute = clients(armsim, "someone-else").compute
        status, code, message = refused(lambda: compute.virtual_machines.get(APP_RG, "web-01"))
        assert (status, code, message) == (
            401,
            "InvalidAuthenticationToken",
            "The access token is invalid.",
        )

    def test_a_known_token_that_is_not_a_jwt_is_401_too(self, armsim: ArmServer) -> None:
        """ARM takes Entra's JWTs only, and the app reads the caller from their claims."""
        armsim.sim.authorization.principals["opaque"] = Principal("tester", "test-oid", ())
        compute = clients(armsim, "opaque").compute
        status, code, _ = refused(lambda: compute.virtual_machines.get(APP_RG, "web-01"))
        assert (status, code) == (401, "InvalidAuthenticationToken")

    def test_no_bearer_token_is_401_authentication_failed(self, armsim: ArmServer) -> None:
        url = f"{armsim.url}/subscriptions/{SUB}/providers/Microsoft.Compute/virtualMachines"
        reply = requests.get(
            url, params={"api-version": "2026-04-01"}, verify=str(armsim.ca_path), timeout=10
        )
        assert reply.status_code == 401
        assert reply.json()["error"]["code"] == "AuthenticationFailed"

    def test_the_admin_endpoints_need_no_principal(self, armsim: ArmServer) -> None:
        reply = requests.get(f"{armsim.url}/_admin/clock", verify=str(armsim.ca_path), timeout=10)
        assert reply.status_code == 200


class TestTheAppsRolesFromInfra:
    def test_infra_places_each_custom_role_on_the_groups_the_app_uses(self) -> None:
        defaults = Settings("s")
        placed = {(a.role.name, a.group) for a in app_assignments()}
        assert placed == {
            ("fleetReader", None),
            ("snapshotSource", None),
            ("snapshotWriter", defaults.backup_resource_group),
            ("drTestOperator", defaults.drtest_resource_group),
            ("recoveryOperator", defaults.recovery_resource_group),
        }

    def test_a_subscription_assignment_covers_every_group(self, app: ArmClients) -> None:
        assert app.compute.virtual_machines.get(APP_RG, "web-01").name == "web-01"

    def test_a_group_assignment_covers_the_resources_in_the_group(
        self, app: ArmClients, armsim: ArmServer
    ) -> None:
        app.compute.snapshots.begin_create_or_update(
            BACKUPS, "snap-1", snapshot_of(WEB_DISK), polling=False
        )
        assert [s["name"] for s in armsim.sim.snapshots()] == ["snap-1"]

    def test_refused_at_subscription_scope(self, app: ArmClients) -> None:
        scope = f"/subscriptions/{SUB}/providers/Microsoft.Resources/tags/default"
        assert refused(lambda: app.resources.tags.get_at_scope(f"/subscriptions/{SUB}")) == (
            403,
            "AuthorizationFailed",
            authorization_failed("Microsoft.Resources/tags/read", scope),
        )

    def test_refused_at_resource_group_scope(self, app: ArmClients) -> None:
        scope = f"/subscriptions/{SUB}/resourcegroups/{APP_RG}/resources"  # as the SDK sends it
        assert refused(lambda: list(app.resources.resources.list_by_resource_group(APP_RG))) == (
            403,
            "AuthorizationFailed",
            authorization_failed(
                "Microsoft.Resources/subscriptions/resourceGroups/resources/read", scope
            ),
        )

    def test_refused_at_resource_scope(self, app: ArmClients) -> None:
        body = Disk(
            {
                "location": "eastus",
                "properties": {"creationData": {"createOption": "Empty"}, "diskSizeGB": 8},
            }
        )
        scope = rid(APP_RG, "Microsoft.Compute/disks", "d1")
        assert refused(
            lambda: app.compute.disks.begin_create_or_update(APP_RG, "d1", body, polling=False)
        ) == (
            403,
            "AuthorizationFailed",
            authorization_failed("Microsoft.Compute/disks/write", scope),
        )

    def test_a_post_action_is_checked_on_the_resource_it_is_posted_to(
        self, app: ArmClients
    ) -> None:
        status, code, message = refused(
            lambda: app.compute.virtual_machines.begin_run_command(
                APP_RG, "web-01", {"commandId": "RunShellScript", "script": ["id"]}
            )
        )
        vm = rid(APP_RG, "Microsoft.Compute/virtualMachines", "web-01")
        assert (status, code) == (403, "AuthorizationFailed")
        assert message == authorization_failed(
            "Microsoft.Compute/virtualMachines/runCommand/action", vm
        )

    def test_the_app_reads_a_dr_test_nsg_but_no_other(self, app: ArmClients) -> None:
        """The DR-test pre-flight's isolation check reads the subnet's NSG; nothing else does."""
        nsg = "nsg-vnet-backupdr-drtest"
        assert app.network.network_security_groups.get(DRTEST, nsg).name == nsg
        recovery, open_nsg = "rg-backupdr-recovery-westus2", "nsg-vnet-backupdr-recovery"
        assert refused(lambda: app.network.network_security_groups.get(recovery, open_nsg)) == (
            403,
            "AuthorizationFailed",
            authorization_failed(
                "Microsoft.Network/networkSecurityGroups/read",
                rid(recovery, "Microsoft.Network/networkSecurityGroups", open_nsg),
            ),
        )

    def test_a_group_that_was_never_created_holds_no_assignment(self, app: ArmClients) -> None:
        group = "rg-backups-centralus"  # fits the template, but infra made no such group
        status, code, message = refused(
            lambda: app.compute.snapshots.begin_create_or_update(
                group, "snap-1", snapshot_of(WEB_DISK, region="centralus"), polling=False
            )
        )
        assert (status, code) == (403, "AuthorizationFailed")
        assert f"over scope '/subscriptions/{SUB}/resourceGroups/{group}/" in message

    def test_every_refusal_is_kept(self, app: ArmClients, armsim: ArmServer) -> None:
        refused(lambda: app.resources.tags.get_at_scope(f"/subscriptions/{SUB}"))
        assert armsim.sim.authorization.refusals == [
            Refusal(
                APP_OBJECT_ID,
                "AuthorizationFailed",
                "Microsoft.Resources/tags/read",
                f"/subscriptions/{SUB}/providers/Microsoft.Resources/tags/default",
            )
        ]


class TestRoleEvaluation:
    """Actions, NotActions and wildcards, as ARM evaluates them."""

    def test_not_actions_subtract_from_their_role(self, armsim: ArmServer) -> None:
        with_principal(
            armsim.sim,
            Assignment(Role("r", ("Microsoft.Compute/*",), ("Microsoft.Compute/disks/write",))),
        )
        compute = clients(armsim, TEST_TOKEN).compute
        assert compute.disks.get(APP_RG, "web-01-osdisk").name == "web-01-osdisk"
        body = Disk(
            {
                "location": "eastus",
                "properties": {"creationData": {"createOption": "Empty"}, "diskSizeGB": 8},
            }
        )
        status, code, message = refused(
            lambda: compute.disks.begin_create_or_update(APP_RG, "d1", body, polling=False)
        )
        assert (status, code) == (403, "AuthorizationFailed")
        assert "perform action 'Microsoft.Compute/disks/write'" in message

    def test_not_actions_do_not_deny_what_another_role_grants(self, armsim: ArmServer) -> None:
        with_principal(
            armsim.sim,
            Assignment(Role("r", ("Microsoft.Compute/*",), ("Microsoft.Compute/disks/read",))),
            Assignment(Role("disk reader", ("Microsoft.Compute/disks/read",))),
        )
        compute = clients(armsim, TEST_TOKEN).compute
        assert compute.disks.get(APP_RG, "web-01-osdisk").name == "web-01-osdisk"

    def test_a_wildcard_anywhere_matches_case_insensitively(self, armsim: ArmServer) -> None:
        with_principal(armsim.sim, Assignment(Role("r", ("microsoft.compute/*/READ",))))
        compute = clients(armsim, TEST_TOKEN).compute
        assert compute.virtual_machines.get(APP_RG, "web-01").name == "web-01"
        assert compute.virtual_machines.instance_view(APP_RG, "web-01").statuses
        status, code, _ = refused(
            lambda: compute.virtual_machines.begin_run_command(
                APP_RG, "web-01", {"commandId": "RunShellScript", "script": ["id"]}
            )
        )
        assert (status, code) == (403, "AuthorizationFailed")


class TestLinkedAuthorization:
    """A PUT that names another resource also needs the linked action on that resource."""

    def test_a_snapshot_needs_begin_get_access_on_its_source_disk(self, armsim: ArmServer) -> None:
        writer = next(a for a in app_assignments() if a.role.name == "snapshotWriter")
        with_principal(armsim.sim, writer)  # the backup groups' role alone
        compute = clients(armsim, TEST_TOKEN).compute
        scope = rid(BACKUPS, "Microsoft.Compute/snapshots", "snap-1")
        assert refused(
            lambda: compute.snapshots.begin_create_or_update(
                BACKUPS, "snap-1", snapshot_of(WEB_DISK), polling=False
            )
        ) == (
            403,
            "LinkedAuthorizationFailed",
            "The client 'tester' with object id 'test-oid' has permission to perform action "
            f"'Microsoft.Compute/snapshots/write' on scope '{scope}'; however, it does not have "
            "permission to perform action(s) 'Microsoft.Compute/disks/beginGetAccess/action' on "
            f"the linked scope(s) '{WEB_DISK}' (respectively) or the linked scope(s) are invalid.",
        )

    def test_a_copy_needs_begin_get_access_on_its_source_snapshot(
        self, app: ArmClients, seeded_snapshot: str
    ) -> None:
        status, code, message = refused(
            lambda: app.compute.snapshots.begin_create_or_update(
                REPLICAS,
                "copy-1",
                snapshot_of(seeded_snapshot, "CopyStart", "westus2"),
                polling=False,
            )
        )
        assert (status, code) == (403, "LinkedAuthorizationFailed")
        assert (
            "perform action(s) 'Microsoft.Compute/snapshots/beginGetAccess/action' on the linked "
            f"scope(s) '{seeded_snapshot}' (respectively)"
        ) in message

    def test_a_disk_needs_begin_get_access_on_its_source_snapshot(
        self, app: ArmClients, seeded_snapshot: str
    ) -> None:
        creation = {"createOption": "Copy", "sourceResourceId": seeded_snapshot}
        body = Disk({"location": "eastus", "properties": {"creationData": creation}})
        status, code, message = refused(
            lambda: app.compute.disks.begin_create_or_update(DRTEST, "d1", body, polling=False)
        )
        assert (status, code) == (403, "LinkedAuthorizationFailed")
        assert "'Microsoft.Compute/snapshots/beginGetAccess/action' on the linked" in message

    def test_a_nic_needs_join_on_its_subnet(self, app: ArmClients, armsim: ArmServer) -> None:
        vnet = {
            "name": "vnet-app",
            "address_prefix": "10.1.0.0/16",
            "subnets": [{"name": "snet-app", "address_prefix": "10.1.1.0/24"}],
        }
        armsim.sim.add_group(SUB, "rg-app-network", "eastus", vnets=[vnet])
        subnet = (
            f"/subscriptions/{SUB}/resourceGroups/rg-app-network/providers/Microsoft.Network/"
            "virtualNetworks/vnet-app/subnets/snet-app"
        )
        ip = {"name": "ip1", "properties": {"subnet": {"id": subnet}}}
        body = NetworkInterface({"location": "eastus", "properties": {"ipConfigurations": [ip]}})
        status, code, message = refused(
            lambda: app.network.network_interfaces.begin_create_or_update(DRTEST, "nic-1", body)
        )
        assert (status, code) == (403, "LinkedAuthorizationFailed")
        assert (
            "perform action(s) 'Microsoft.Network/virtualNetworks/subnets/join/action' on the "
            f"linked scope(s) '{subnet}' (respectively)"
        ) in message

    def test_a_vnet_needs_join_on_each_nsg_its_subnets_name(self, armsim: ArmServer) -> None:
        with_principal(
            armsim.sim, Assignment(Role("vnet writer", ("Microsoft.Network/virtualNetworks/*",)))
        )
        nsg = rid(DRTEST, "Microsoft.Network/networkSecurityGroups", "nsg-vnet-backupdr-drtest")
        subnet = {
            "name": "snet-new",
            "properties": {"addressPrefix": "10.9.1.0/24", "networkSecurityGroup": {"id": nsg}},
        }
        body = VirtualNetwork(
            {
                "location": "eastus",
                "properties": {
                    "addressSpace": {"addressPrefixes": ["10.9.0.0/16"]},
                    "subnets": [subnet],
                },
            }
        )
        network = clients(armsim, TEST_TOKEN).network
        status, code, message = refused(
            lambda: network.virtual_networks.begin_create_or_update(DRTEST, "vnet-new", body)
        )
        assert (status, code) == (403, "LinkedAuthorizationFailed")
        assert (
            f"'Microsoft.Network/networkSecurityGroups/join/action' on the linked scope(s) '{nsg}'"
        ) in message

    def test_a_vm_needs_join_on_its_nic_and_write_on_every_disk_it_attaches(
        self, app: ArmClients
    ) -> None:
        body = VirtualMachine(
            {
                "location": "eastus",
                "properties": {
                    "hardwareProfile": {"vmSize": "Standard_D2s_v5"},
                    "storageProfile": {
                        "osDisk": {
                            "createOption": "Attach",
                            "osType": "Linux",
                            "managedDisk": {"id": WEB_DISK},
                        }
                    },
                    "networkProfile": {"networkInterfaces": [{"id": WEB_NIC}]},
                },
            }
        )
        vm = rid(DRTEST, "Microsoft.Compute/virtualMachines", "vm-1")
        assert refused(
            lambda: app.compute.virtual_machines.begin_create_or_update(
                DRTEST, "vm-1", body, polling=False
            )
        ) == (
            403,
            "LinkedAuthorizationFailed",
            f"The client '{APP_OBJECT_ID}' with object id '{APP_OBJECT_ID}' has permission to "
            f"perform action 'Microsoft.Compute/virtualMachines/write' on scope '{vm}'; however, "
            "it does not have permission to perform action(s) "
            "'Microsoft.Network/networkInterfaces/join/action,Microsoft.Compute/disks/write' on "
            f"the linked scope(s) '{WEB_NIC},{WEB_DISK}' (respectively) or the linked scope(s) "
            "are invalid.",
        )


class TestOperatorAndApp:
    """Two principals: the operator writes the policy tag; the app may not."""

    def _merge(self, server: ArmServer, token: str) -> Callable[[], Any]:
        vm = rid(APP_RG, "Microsoft.Compute/virtualMachines", "web-01")
        patch = TagsPatchResource({"operation": "Merge", "properties": {"tags": {"k": "v"}}})
        tags = clients(server, token).resources.tags
        return lambda: tags.begin_update_at_scope(vm, patch).result()

    def test_the_operator_writes_a_tag(self, armsim: ArmServer) -> None:
        self._merge(armsim, OPERATOR_TOKEN)()
        (vm,) = [v for v in armsim.sim.vms() if v["name"] == "web-01"]
        assert vm["tags"]["k"] == "v"

    def test_the_app_is_refused_the_tag_write(self, armsim: ArmServer) -> None:
        status, code, message = refused(self._merge(armsim, SIMULATOR_TOKEN))
        assert (status, code) == (403, "AuthorizationFailed")
        assert "perform action 'Microsoft.Resources/tags/write'" in message

    def test_the_operator_snapshots_only_where_it_holds_disk_snapshot_contributor(
        self, armsim: ArmServer
    ) -> None:
        compute = clients(armsim, OPERATOR_TOKEN).compute
        status, code, message = refused(
            lambda: compute.snapshots.begin_create_or_update(
                APP_RG, "snap-1", snapshot_of(WEB_DISK), polling=False
            )
        )
        assert (status, code) == (403, "AuthorizationFailed")
        assert "'Microsoft.Compute/snapshots/write' over scope" in message
