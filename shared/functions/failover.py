"""Failover: a VM, or a region's protected VMs, brought up in the DR region; and its HTTP start."""

from __future__ import annotations

from typing import Any

import azure.durable_functions as df
import azure.functions as func

from shared.activities import failover
from shared.domain.models import VM
from shared.functions.http_api import (
    ApiError,
    _admit,
    _body,
    _checked,
    _refuse_if_running,
    _requested,
    accepted,
)
from shared.functions.wiring import register_activities, register_orchestrators, utc_now
from shared.inputs import checked_backup_id, policy_region
from shared.orchestrations.failover import failover_region, failover_vm
from shared.services import Services, services

bp = df.Blueprint()
register_orchestrators(bp, failover_vm, failover_region)
register_activities(
    bp,
    failover.list_region_failover,
    failover.prepare_failover,
    failover.record_failover,
)


@bp.route(route="failovers/{vm}", methods=["POST"])
@bp.durable_client_input(client_name="client")
async def start_failover(
    req: func.HttpRequest, client: df.DurableOrchestrationClient
) -> func.HttpResponse:
    """Fail one VM over to its DR region: body {backupId?, resourceGroup?}. Its pre-flight (a
    complete replica, the recovery subnet, the size, the name) answers 409 before anything
    starts."""
    try:
        svc = services()
        body = _body(req, allowed={"backupId", "resourceGroup"})
        vm = _source_vm(svc, req, body)
        backup_id = body.get("backupId")
        if backup_id is not None:
            backup_id = _checked(checked_backup_id, backup_id)
            if svc.catalog.get_backup(vm.key, backup_id) is None:
                raise ApiError(404, "BackupNotFound", f"no backup {backup_id} of {vm.name}")
        now = utc_now().replace(microsecond=0)
        await _refuse_if_running(
            client, _requested(svc, vm.key, "manual-failover", "failover", now - failover.RUNS)
        )
        instance_id = failover.failover_id(vm.key, now)
        item = {
            "vm_key": vm.key,
            "vm_name": vm.name,
            "target_region": _checked(policy_region, vm, svc.settings.regions),
            "failover_id": instance_id,
            "backup_id": backup_id,
        }
        _, problems = failover.failover_problems(svc, item)
        if problems:
            raise ApiError(409, "FailoverRefused", "; ".join(problems))
        _admit(svc, req, vm.key, "manual-failover", now)
        await client.start_new("failover_vm", instance_id=instance_id, client_input=item)
    except ApiError as error:
        return error.response()
    return accepted(req, instance_id)


def _source_vm(svc: Services, req: func.HttpRequest, body: dict[str, Any]) -> VM:
    group = body.get("resourceGroup") or req.params.get("resourceGroup")
    if group is not None and not isinstance(group, str):
        raise ApiError(400, "InvalidResourceGroup", f"{group!r} is not a valid resource group name")
    return _checked(failover.source_vm, svc, req.route_params.get("vm", ""), group)
