"""Microsoft.Resources: resource groups, listing a group's resources by tag, and the Tags API."""

from __future__ import annotations

import re
from typing import Any

from local.armsim.errors import ArmError, bad_request
from local.armsim.lro import location_reply
from local.armsim.protocol import Reply, Request, ResourceId, page
from local.armsim.state import Group, World

_CLAUSE = re.compile(r"^\s*(tagName|tagValue|resourceType)\s+eq\s+'((?:[^']|'')*)'\s*$", re.I)


def _group_body(group: Group) -> dict[str, Any]:
    return {
        "id": group.id,
        "name": group.name,
        "type": "Microsoft.Resources/resourceGroups",
        "location": group.location,
        "tags": dict(group.tags),
        "properties": {"provisioningState": "Succeeded"},
    }


def get_group(world: World, request: Request, args: dict[str, str]) -> Reply:
    group = world.group(args["sub"], args["rg"])
    return Reply(
        204 if request.method == "HEAD" else 200,
        None if request.method == "HEAD" else _group_body(group),
    )


def list_groups(world: World, request: Request, args: dict[str, str]) -> Reply:
    """Resource Groups - List (learn.microsoft.com/rest/api/resources/resource-groups/list):
    paged with nextLink. Authorized at the subscription scope like any request here, so a role
    assigned on some groups only cannot list them all, as in ARM."""
    world.require_subscription(args["sub"])
    found = sorted(
        (g for (sub, _), g in world.groups.items() if sub == args["sub"].lower()),
        key=lambda g: g.name.lower(),
    )
    return page(request, found, world.page_size, _group_body)


def put_group(world: World, request: Request, args: dict[str, str]) -> Reply:
    world.require_subscription(args["sub"])
    body = request.json_object()
    if not body.get("location"):
        raise bad_request("Required parameter 'location' is missing (null).")
    exists = (args["sub"].lower(), args["rg"].lower()) in world.groups
    tags = body.get("tags")
    group = world.add_group(args["sub"], args["rg"], str(body["location"]), tags)
    return Reply(200 if exists else 201, _group_body(group))


def _filter(text: str) -> dict[str, str]:
    """`tagName eq 'x' [and tagValue eq 'y']` (and resourceType), or a clear 400."""
    clauses: dict[str, str] = {}
    for part in re.split(r"\s+and\s+", text.strip(), flags=re.I) if text.strip() else []:
        match = _CLAUSE.match(part)
        if match is None:
            raise bad_request(
                f"The $filter '{text}' is not supported: use tagName eq '...' "
                "[and tagValue eq '...'] or resourceType eq '...'.",
                "InvalidFilterInQueryString",
            )
        clauses[match[1].lower()] = match[2].replace("''", "'")
    if "tagvalue" in clauses and "tagname" not in clauses:
        raise bad_request("tagValue needs tagName in $filter.", "InvalidFilterInQueryString")
    return clauses


def list_group_resources(world: World, request: Request, args: dict[str, str]) -> Reply:
    world.group(args["sub"], args["rg"])
    clauses = _filter(request.query.get("$filter", ""))
    prefix = f"/subscriptions/{args['sub']}/resourcegroups/{args['rg']}/".lower()
    items = []
    for key in sorted(world.resources):
        resource = world.resources[key]
        if not key.startswith(prefix):
            continue
        tags = {k.lower(): v for k, v in (resource.body.get("tags") or {}).items()}
        name = clauses.get("tagname", "").lower()
        if name and name not in tags:
            continue
        if "tagvalue" in clauses and tags.get(name) != clauses["tagvalue"]:
            continue
        if "resourcetype" in clauses and resource.type.lower() != clauses["resourcetype"].lower():
            continue
        item: dict[str, Any] = {
            "id": resource.id,
            "name": resource.name,
            "type": resource.type,
            "location": resource.location,
            "tags": dict(resource.body.get("tags") or {}),
        }
        for optional in ("sku", "zones", "managedBy"):
            if resource.body.get(optional):
                item[optional] = resource.body[optional]
        items.append(item)
    return page(request, items, world.page_size)


def _scope_tags(world: World, scope: str) -> dict[str, str]:
    """The live tag dict of a subscription, resource group or resource scope."""
    parts = scope.strip("/").split("/")
    if len(parts) < 2 or parts[0].lower() != "subscriptions":
        raise bad_request(f"'{scope}' is not a valid scope.", "InvalidScope")
    world.require_subscription(parts[1])
    if len(parts) == 2:
        return world.subscriptions[parts[1].lower()]
    if len(parts) == 4 and parts[2].lower() == "resourcegroups":
        return world.group(parts[1], parts[3]).tags
    resource = world.get(ResourceId.parse(scope))
    tags = resource.body.get("tags")
    if not isinstance(tags, dict):
        tags = resource.body["tags"] = {}
    return tags


def _tags_body(scope: str, tags: dict[str, str]) -> dict[str, Any]:
    return {
        "id": f"/{scope.strip('/')}/providers/Microsoft.Resources/tags/default",
        "name": "default",
        "type": "Microsoft.Resources/tags",
        "properties": {"tags": dict(tags)},
    }


def get_tags(world: World, request: Request, args: dict[str, str]) -> Reply:
    return Reply(200, _tags_body(args["scope"], _scope_tags(world, args["scope"])))


def update_tags(world: World, request: Request, args: dict[str, str]) -> Reply:
    """PATCH (Merge | Replace | Delete) or PUT (replace); applied now, answered as an LRO."""
    body = request.json_object()
    operation = "Replace" if request.method == "PUT" else body.get("operation")
    given = (body.get("properties") or {}).get("tags")
    if operation not in {"Merge", "Replace", "Delete"}:
        raise bad_request("'operation' must be Merge, Replace or Delete.")
    if not isinstance(given, dict):
        raise bad_request("Required parameter 'properties.tags' is missing (null).")
    tags = _scope_tags(world, args["scope"])
    if operation == "Replace":
        tags.clear()
    if operation == "Delete":
        for name, value in given.items():
            if name in tags and (not value or tags[name] == value):
                del tags[name]
    else:
        tags.update({str(k): str(v) for k, v in given.items()})
    if len(tags) > 50:
        raise ArmError(400, "InvalidTemplate", "A resource can have at most 50 tags.")
    scope = args["scope"]
    snapshot = _tags_body(scope, tags)
    if request.method == "PUT":
        return Reply(200, snapshot)
    done = world.start_operation(
        scope.strip("/").split("/")[1],
        "Microsoft.Resources",
        "global",
        request.api_version,
        world.durations.tags_seconds,
        result=lambda: snapshot,
    )
    return location_reply(request, world, done)
