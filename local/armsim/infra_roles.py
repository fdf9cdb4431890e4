"""The app identity's role assignments, read from infra/ the way Azure would deploy them.

Custom roles come from their `roleDefinitions` (Actions/NotActions); where each is assigned comes
from the `roleAssignments`: at subscription scope in a subscription-scope template, or per
resource group through the modules main.bicep deploys to each backup and DR-test group, whose
names are main.bicep's templates (`rg-backups-{region}`, ...: the same the app's settings use).
Anything infra assigns that this cannot place fails loudly rather than being left out.
"""

from __future__ import annotations

import functools
from typing import Any

from local.armsim.rbac import Assignment, Role
from local.bicep import accessor, resources, target_scope, template, unwrap, variable

ROLE_DEFINITION = "Microsoft.Authorization/roleDefinitions"
ROLE_ASSIGNMENT = "Microsoft.Authorization/roleAssignments"
MAIN = "main.bicep"
# The only namespaces the simulator serves: a grant on anything else (the storage account, App
# Insights: data-plane roles) concerns no request it answers.
SIMULATED = ("Microsoft.Compute/", "Microsoft.Network/", "Microsoft.Resources/")


class InfraError(ValueError):
    """infra/ grants something the simulator cannot place; the message says what."""


@functools.cache
def custom_roles() -> dict[str, Role]:
    """Every custom role in infra/, by its symbolic name (e.g. "fleetReader")."""
    roles = {}
    for _, name, config in resources(ROLE_DEFINITION):
        permissions = config["properties"]["permissions"]
        roles[name] = Role(
            name,
            tuple(a for p in permissions for a in p.get("actions", [])),
            tuple(a for p in permissions for a in p.get("notActions", [])),
        )
    return roles


@functools.cache
def app_assignments() -> tuple[Assignment, ...]:
    """Where infra assigns which custom role to the app's managed identity."""
    found: list[Assignment] = []
    for file, name, config in resources(ROLE_ASSIGNMENT):
        where = f"{file}: {name}"
        if "scope" in config:
            _require_outside_simulation(file, config["scope"], where)
        elif target_scope(file) == "subscription":
            found.append(Assignment(_role(accessor(config["properties"]["roleDefinitionId"]))))
        elif target_scope(file) == "resourceGroup":
            found += _group_assignments(file, where)
        else:
            raise InfraError(f"{where}: assigned at {target_scope(file)} scope")
    return tuple(found)


def _role(reference: list[str]) -> Role:
    """The custom role `name.id` refers to."""
    if len(reference) != 2 or reference[1] != "id" or reference[0] not in custom_roles():
        raise InfraError(f"{'.'.join(reference)} is not the id of a custom role in infra/")
    return custom_roles()[reference[0]]


def _require_outside_simulation(file: str, scope: Any, where: str) -> None:
    """A grant on one resource is fine only when the simulator serves no such resource."""
    resource = template(file).get("resources", {}).get(accessor(scope)[0], {})
    if str(resource.get("type", "")).startswith(SIMULATED) or not resource:
        raise InfraError(f"{where}: a resource-scope grant the simulator does not model")


def _group_assignments(file: str, where: str) -> list[Assignment]:
    """One assignment per main.bicep module that deploys `file` to a group loop."""
    main = template(MAIN)
    calls = [unwrap(m["config"]) for m in main["modules"].values() if m["detail"]["path"] == file]
    if not calls:
        raise InfraError(f"{where}: main.bicep never deploys {file}")
    return [
        Assignment(_role(_role_output(call["params"])), _group_template(call)) for call in calls
    ]


def _role_output(params: dict[str, Any]) -> list[str]:
    """`roles.outputs.X` in main.bicep, followed to the role definition roles.bicep outputs."""
    module, outputs, output = accessor(params["roleDefinitionId"])
    if outputs != "outputs":
        raise InfraError(f"roleDefinitionId {module}.{outputs}.{output} is not a module output")
    path = template(MAIN)["modules"][module]["detail"]["path"]
    return accessor(template(path)["outputs"][output]["value"])


def _group_template(call: dict[str, Any]) -> str:
    """The name template of the resource-group loop a module call is scoped to."""
    group = accessor(call["scope"])[0]
    resource = template(MAIN)["resources"][group]
    name = unwrap(resource["config"])["name"]["function"]
    if (
        resource["type"] != "Microsoft.Resources/resourceGroups"
        or name["type"] != "replace"
        or name["parameters"]["old_string"] != "{region}"
    ):
        raise InfraError(f"main.bicep: {group} is not a resource group named from a template")
    return str(variable(MAIN, name["parameters"]["original_string"]))
