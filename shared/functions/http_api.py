"""The HTTP API (auth level FUNCTION): manual backups and DR tests, fleet status, a VM's backups.

Every input is checked against an allow-list before anything changes; errors answer
`{"error": {"code", "message"}}` with 400 (bad input), 404 (unknown VM), 409 (already running)
or 429 (manual requests over the hourly limit, with Retry-After).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

import azure.durable_functions as df
import azure.functions as func

from shared.domain import names
from shared.domain.models import VM, AuditEntry
from shared.domain.policy import PolicyError, format_policy, policy_for
from shared.functions.wiring import RUNNING, utc_now
from shared.health import find_vm, fleet_status
from shared.services import Services, services

bp = df.Blueprint()

VM_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
RESOURCE_GROUP = re.compile(r"^[\w.()-]{1,90}$")
REGION = re.compile(r"^[a-z][a-z0-9]{2,31}$")
BACKUP_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,79}$")
RATE_WINDOW = timedelta(hours=1)


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, retry_after: int | None = None):
        super().__init__(message)
        self.status, self.code, self.retry_after = status, code, retry_after

    def response(self) -> func.HttpResponse:
        headers = {"Retry-After": str(self.retry_after)} if self.retry_after else None
        return _json({"error": {"code": self.code, "message": str(self)}}, self.status, headers)


@bp.route(route="backups/{vm}", methods=["POST"])
@bp.durable_client_input(client_name="client")
async def start_backup(
    req: func.HttpRequest, client: df.DurableOrchestrationClient
) -> func.HttpResponse:
    """Start a manual backup of one VM (the same workflow as the schedule's)."""
    try:
        svc = services()
        body = _body(req, allowed={"resourceGroup"})
        vm = _one_vm(svc, req, body)
        try:
            policy = policy_for(vm)
        except PolicyError as error:
            raise ApiError(400, "InvalidPolicyTag", f"{vm.name}: {error}") from None
        await _refuse_if_running(client, vm.key, ("backup", "manual-backup"))
        now = utc_now().replace(microsecond=0)
        _admit(svc, vm.key, "manual-backup", now)
        instance_id = names.orchestration_id("manual-backup", vm.key, now)
        await client.start_new(
            "vm_backup",
            instance_id=instance_id,
            client_input={
                "vm": vm.to_dict(),
                "policy": format_policy(policy) if policy else None,
                "slot": now.isoformat(),
                "manual": True,
            },
        )
    except ApiError as error:
        return error.response()
    response: func.HttpResponse = client.create_check_status_response(req, instance_id)
    return response


@bp.route(route="dr-tests/{vm}", methods=["POST"])
@bp.durable_client_input(client_name="client")
async def start_dr_test(
    req: func.HttpRequest, client: df.DurableOrchestrationClient
) -> func.HttpResponse:
    """Start a DR test: body {testRegion?, backupId?, rtoTargetSeconds?, resourceGroup?}."""
    try:
        svc = services()
        body = _body(req, allowed={"testRegion", "backupId", "rtoTargetSeconds", "resourceGroup"})
        vm = _one_vm(svc, req, body)
        region = body.get("testRegion") or _policy_region(vm)
        if not isinstance(region, str) or not REGION.match(region):
            raise ApiError(
                400, "InvalidRegion", f"testRegion {region!r} is not an Azure region name"
            )
        backup_id = body.get("backupId")
        if backup_id is not None and (
            not isinstance(backup_id, str) or not BACKUP_ID.match(backup_id)
        ):
            raise ApiError(400, "InvalidBackupId", f"backupId {backup_id!r} is not a backup id")
        target = body.get("rtoTargetSeconds")
        if target is not None and (
            not isinstance(target, int | float) or isinstance(target, bool) or target <= 0
        ):
            raise ApiError(400, "InvalidRtoTarget", "rtoTargetSeconds must be a positive number")
        await _refuse_if_running(client, vm.key, ("dr",))
        now = utc_now().replace(microsecond=0)
        _admit(svc, vm.key, "manual-drtest", now)
        test_id = names.dr_test_id(vm.key, now)
        await client.start_new(
            "dr_test",
            instance_id=test_id,
            client_input={
                "vm_key": vm.key,
                "test_region": region,
                "test_id": test_id,
                "backup_id": backup_id,
                "rto_target_seconds": target,
            },
        )
    except ApiError as error:
        return error.response()
    response: func.HttpResponse = client.create_check_status_response(req, test_id)
    return response


@bp.route(route="status", methods=["GET"])
def status(req: func.HttpRequest) -> func.HttpResponse:
    """Fleet health as JSON: RPO, replica lag, verification, DR success and RTO per VM."""
    svc = services()
    return _json(fleet_status(svc.gateway, svc.catalog, utc_now()))


@bp.route(route="vms/{vm}/backups", methods=["GET"])
def vm_backups(req: func.HttpRequest) -> func.HttpResponse:
    """A VM's backups, newest first."""
    try:
        svc = services()
        vm = _one_vm(svc, req, {})
    except ApiError as error:
        return error.response()
    return _json(
        {"vm": vm.name, "backups": [b.to_dict() for b in svc.catalog.list_backups(vm.key)]}
    )


def _body(req: func.HttpRequest, allowed: set[str]) -> dict[str, Any]:
    raw = req.get_body()
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise ApiError(400, "InvalidJson", "the request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise ApiError(400, "InvalidBody", "the request body must be a JSON object")
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise ApiError(
            400,
            "UnknownField",
            f"unknown field {unknown[0]!r} (allowed: {', '.join(sorted(allowed)) or 'none'})",
        )
    return body


def _one_vm(svc: Services, req: func.HttpRequest, body: Mapping[str, Any]) -> VM:
    name = req.route_params.get("vm", "")
    if not VM_NAME.match(name):
        raise ApiError(400, "InvalidVmName", f"{name!r} is not a valid VM name")
    group = body.get("resourceGroup") or req.params.get("resourceGroup")
    if group is not None and (not isinstance(group, str) or not RESOURCE_GROUP.match(group)):
        raise ApiError(400, "InvalidResourceGroup", f"{group!r} is not a valid resource group name")
    matches = find_vm(svc.gateway.list_vms(), name, group)
    if not matches:
        raise ApiError(
            404, "VmNotFound", f"no VM named {name!r}" + (f" in {group}" if group else "")
        )
    if len(matches) > 1:
        groups = ", ".join(sorted(vm.resource_group for vm in matches))
        raise ApiError(
            400, "AmbiguousVm", f"several VMs are named {name!r} ({groups}): give resourceGroup"
        )
    return matches[0]


def _policy_region(vm: VM) -> str | None:
    try:
        policy = policy_for(vm)
    except PolicyError as error:
        raise ApiError(400, "InvalidPolicyTag", f"{vm.name}: {error}") from None
    if policy is None or not policy.replicate:
        raise ApiError(400, "NoTestRegion", f"{vm.name} has no replicate region: give testRegion")
    return policy.replicate


async def _refuse_if_running(
    client: df.DurableOrchestrationClient, vm_key: str, kinds: tuple[str, ...]
) -> None:
    prefixes = tuple(names.orchestration_prefix(kind, vm_key) for kind in kinds)
    for instance in await client.get_status_by(runtime_status=list(RUNNING)):
        if instance.instance_id and instance.instance_id.startswith(prefixes):
            raise ApiError(
                409, "AlreadyRunning", f"{instance.instance_id} is already running for this VM"
            )


def _admit(svc: Services, vm_key: str, operation: str, now: datetime) -> None:
    """Count this request against the VM's hourly limit, or refuse it with Retry-After."""
    recent = [
        e.at
        for e in svc.catalog.audit_entries(since=now - RATE_WINDOW, vm_key=vm_key)
        if e.action == "request" and e.operation == operation
    ]
    limit = svc.settings.manual_limit_per_hour
    if len(recent) >= limit:
        retry = int((min(recent) + RATE_WINDOW - now).total_seconds()) + 1
        raise ApiError(
            429, "TooManyRequests", f"more than {limit} manual requests this hour", retry
        )
    svc.catalog.audit(
        AuditEntry(
            at=now,
            action="request",
            resource_id=vm_key,
            result="ok",
            vm_key=vm_key,
            operation=operation,
        )
    )


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> func.HttpResponse:
    return func.HttpResponse(
        json.dumps(data, default=str),
        status_code=status,
        mimetype="application/json",
        headers=headers,
    )
