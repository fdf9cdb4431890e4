"""The Bicep grants backupdr's identity no more than the design allows.

Every .bicep file under infra/ is parsed (pycep-parser; the Bicep compiler is not available
here). Custom roles may hold only the listed actions; every role assignment in the templates
must be one listed here, on the scope listed here. A new grant fails this test until it is
added below, which is where a reviewer sees it.
"""

from __future__ import annotations

from typing import Any

import pytest

from local.bicep import accessor, files, resources, template, unwrap, variable
from shared.settings import Settings

# Custom role (symbolic name in infra/app/roles.bicep) -> the only actions it may hold: the least
# that the app's workflows pass with under the simulator's authorization (and removing any one
# fails one: tests/e2e/test_least_privilege.py).
CUSTOM_ROLE_ACTIONS: dict[str, frozenset[str]] = {
    # Subscription scope: reads only (list the fleet, the NICs a backup records, its
    # snapshots, the VM sizes offered where a DR test restores, poll operations).
    "fleetReader": frozenset(
        {
            "Microsoft.Compute/virtualMachines/read",
            "Microsoft.Network/networkInterfaces/read",
            "Microsoft.Compute/snapshots/read",
            "Microsoft.Compute/skus/read",
            "Microsoft.Compute/locations/operations/read",
            "Microsoft.Compute/locations/DiskOperations/read",
        }
    ),
    # Subscription scope: the linked right Azure checks on a disk the app snapshots.
    "snapshotSource": frozenset({"Microsoft.Compute/disks/beginGetAccess/action"}),
    # Backup groups only: snapshots and their replicas, and the source of copies and restores.
    "snapshotWriter": frozenset(
        {
            "Microsoft.Compute/snapshots/write",
            "Microsoft.Compute/snapshots/delete",
            "Microsoft.Compute/snapshots/beginGetAccess/action",
            # a backup's change since the previous one: a page-range diff through read SASes
            "Microsoft.Compute/snapshots/endGetAccess/action",
        }
    ),
    # DR-test groups only: the reads of the restore's pre-flight (a DR test runs the restore a
    # failover runs, and also checks that its subnet is isolated: the subnet's NSG), restored
    # disks, the NIC and the VM, the guest check, cleanup.
    "drTestOperator": frozenset(
        {
            "Microsoft.Resources/subscriptions/resourceGroups/read",
            "Microsoft.Network/virtualNetworks/read",
            "Microsoft.Network/networkSecurityGroups/read",
            "Microsoft.Compute/disks/read",
            "Microsoft.Compute/disks/write",
            "Microsoft.Compute/disks/delete",
            # verification revokes a test disk's read SAS (granted under snapshotSource)
            "Microsoft.Compute/disks/endGetAccess/action",
            "Microsoft.Compute/virtualMachines/write",
            "Microsoft.Compute/virtualMachines/delete",
            "Microsoft.Compute/virtualMachines/instanceView/read",
            "Microsoft.Compute/virtualMachines/runCommand/action",
            "Microsoft.Network/networkInterfaces/read",
            "Microsoft.Network/networkInterfaces/write",
            "Microsoft.Network/networkInterfaces/delete",
            "Microsoft.Network/networkInterfaces/join/action",
            "Microsoft.Network/virtualNetworks/subnets/join/action",
            "Microsoft.Resources/subscriptions/resourceGroups/resources/read",
        }
    ),
    # Recovery groups only: what a DR test does there, plus the reads of the restore's
    # pre-flight (the group exists; the subnet exists, in the target region).
    "recoveryOperator": frozenset(
        {
            "Microsoft.Resources/subscriptions/resourceGroups/read",
            "Microsoft.Network/virtualNetworks/read",
            "Microsoft.Compute/disks/read",
            "Microsoft.Compute/disks/write",
            "Microsoft.Compute/disks/delete",
            "Microsoft.Compute/virtualMachines/write",
            "Microsoft.Compute/virtualMachines/delete",
            "Microsoft.Compute/virtualMachines/instanceView/read",
            "Microsoft.Compute/virtualMachines/runCommand/action",
            "Microsoft.Network/networkInterfaces/write",
            "Microsoft.Network/networkInterfaces/delete",
            "Microsoft.Network/networkInterfaces/join/action",
            "Microsoft.Network/virtualNetworks/subnets/join/action",
            "Microsoft.Resources/subscriptions/resourceGroups/resources/read",
        }
    ),
}
# Built-in data roles and the one resource (symbolic name in rbac-data.bicep) each may be on.
BUILT_IN_ROLE_SCOPES: dict[str, str] = {
    "b7e6dc6d-f1e8-4753-8033-0f276bb0955b": "account",  # Storage Blob Data Owner
    "974c5e8b-45b9-4653-ba55-5f855dd0fb88": "account",  # Storage Queue Data Contributor
    "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3": "account",  # Storage Table Data Contributor
    "3913510d-42f4-4e42-8a64-420c390055eb": "applicationInsights",  # Monitoring Metrics Publisher
}

# Every role assignment in infra/: (file, symbolic name) -> what it grants.
EXPECTED_ASSIGNMENTS: dict[tuple[str, str], str] = {
    ("app/roles.bicep", "fleetReaderAssignment"): "fleetReader at subscription scope",
    ("app/roles.bicep", "snapshotSourceAssignment"): "snapshotSource at subscription scope",
    ("app/rbac-group.bicep", "assignment"): "a writer role on the group it is deployed to",
    ("app/rbac-data.bicep", "blobData"): "built-in data role",
    ("app/rbac-data.bicep", "queueData"): "built-in data role",
    ("app/rbac-data.bicep", "tableData"): "built-in data role",
    ("app/rbac-data.bicep", "telemetryPublisher"): "built-in data role",
}

# Module calls of rbac-group.bicep in main.bicep: the group array -> the roles.bicep output.
GROUP_ROLE_GRANTS = {
    "backupGroups": "snapshotWriterRoleId",
    "drTestGroups": "drTestOperatorRoleId",
    "recoveryGroups": "recoveryOperatorRoleId",
}


def parsed() -> dict[str, dict[str, Any]]:
    return {file: template(file) for file in files()}


def test_every_bicep_file_parses() -> None:
    assert {"main.bicep", "app/roles.bicep", "app/rbac-group.bicep"} <= set(parsed())


class TestCustomRoles:
    """Each custom role holds only its listed actions and no wildcard or data action."""

    def test_only_the_listed_custom_roles_exist(self) -> None:
        defined = {name for _, name, _ in resources("Microsoft.Authorization/roleDefinitions")}
        assert defined == set(CUSTOM_ROLE_ACTIONS)

    @pytest.mark.parametrize("role", sorted(CUSTOM_ROLE_ACTIONS))
    def test_role_actions_are_within_its_allow_list(self, role: str) -> None:
        (config,) = (
            c for _, n, c in resources("Microsoft.Authorization/roleDefinitions") if n == role
        )
        (permission,) = config["properties"]["permissions"]
        actions = set(permission["actions"])
        assert actions <= CUSTOM_ROLE_ACTIONS[role], sorted(actions - CUSTOM_ROLE_ACTIONS[role])
        assert not any("*" in action for action in actions)
        assert permission.get("dataActions", []) == []
        assert permission.get("notActions", []) == []

    @pytest.mark.parametrize("role", sorted(CUSTOM_ROLE_ACTIONS))
    def test_role_is_assignable_only_in_this_subscription(self, role: str) -> None:
        (config,) = (
            c for _, n, c in resources("Microsoft.Authorization/roleDefinitions") if n == role
        )
        (scope,) = config["properties"]["assignableScopes"]
        operands = scope["operator"]["operands"]
        assert operands["operand_1"]["function"]["type"] == "subscription"
        assert operands["operand_2"] == "id"

    def test_fleet_reader_allow_list_holds_reads_only(self) -> None:
        writes = {a for a in CUSTOM_ROLE_ACTIONS["fleetReader"] if not a.endswith("/read")}
        assert writes == set()


class TestAssignments:
    """Every role assignment is listed, on its listed scope."""

    def test_every_assignment_in_the_templates_is_listed(self) -> None:
        found = {(f, n) for f, n, _ in resources("Microsoft.Authorization/roleAssignments")}
        assert found == set(EXPECTED_ASSIGNMENTS)

    @pytest.mark.parametrize("role", ["fleetReader", "snapshotSource"])
    def test_subscription_scope_assignment_grants_only_its_role(self, role: str) -> None:
        template = parsed()["app/roles.bicep"]
        assert template["globals"]["scope"]["value"] == "subscription"
        config = template["resources"][f"{role}Assignment"]["config"]
        assert "scope" not in config
        assert accessor(config["properties"]["roleDefinitionId"]) == [role, "id"]

    @pytest.mark.parametrize("name", ["blobData", "queueData", "tableData", "telemetryPublisher"])
    def test_built_in_data_role_sits_on_its_one_resource(self, name: str) -> None:
        file = "app/rbac-data.bicep"
        config = parsed()[file]["resources"][name]["config"]
        role = config["properties"]["roleDefinitionId"]["function"]
        assert role["type"] == "subscription_resource_id"
        role_id = variable(file, role["parameters"]["resource_name_1"])
        assert role_id in BUILT_IN_ROLE_SCOPES, role_id
        assert config["scope"] == BUILT_IN_ROLE_SCOPES[role_id]

    def test_group_assignment_module_grants_on_its_own_group_only(self) -> None:
        template = parsed()["app/rbac-group.bicep"]
        assert template["globals"]["scope"]["value"] == "resourceGroup"
        assert "scope" not in template["resources"]["assignment"]["config"]

    def test_writer_roles_are_assigned_only_to_their_groups(self) -> None:
        main = parsed()["main.bicep"]
        grants = {}
        for module in main["modules"].values():
            if module["detail"]["path"] != "app/rbac-group.bicep":
                continue
            config = unwrap(module["config"])
            group = accessor(config["scope"])[0]
            role = accessor(config["params"]["roleDefinitionId"])
            assert role[:2] == ["roles", "outputs"]
            grants[group] = role[2]
        assert grants == GROUP_ROLE_GRANTS

    def test_role_outputs_name_the_matching_roles(self) -> None:
        outputs = parsed()["app/roles.bicep"]["outputs"]
        assert accessor(outputs["snapshotWriterRoleId"]["value"]) == ["snapshotWriter", "id"]
        assert accessor(outputs["drTestOperatorRoleId"]["value"]) == ["drTestOperator", "id"]
        assert accessor(outputs["recoveryOperatorRoleId"]["value"]) == ["recoveryOperator", "id"]

    @pytest.mark.parametrize(
        ("groups", "template", "default"),
        [
            ("backupGroups", "backupGroupTemplate", Settings("s").backup_resource_group),
            ("drTestGroups", "drTestGroupTemplate", Settings("s").drtest_resource_group),
            ("recoveryGroups", "recoveryGroupTemplate", Settings("s").recovery_resource_group),
        ],
    )
    def test_granted_groups_are_the_ones_the_app_uses(
        self, groups: str, template: str, default: str
    ) -> None:
        main = parsed()["main.bicep"]
        name = unwrap(main["resources"][groups]["config"])["name"]["function"]
        assert name["type"] == "replace"
        assert name["parameters"]["original_string"] == template
        assert variable("main.bicep", template) == default
