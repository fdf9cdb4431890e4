"""The HTTP API (auth level FUNCTION): manual backups, DR tests and restores, fleet status, a VM's
backups.

Every input is checked against an allow-list before anything changes; errors answer
`{"error": {"code", "message"}}` with 400 (bad input), 404 (unknown VM), 409 (already running)
or 429 (manual requests over the hourly limit, with Retry-After).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timedelta
from functools import partial
from typing import Any, ParamSpec, TypeVar
from urllib.parse import quote, urlsplit

import azure.durable_functions as df
import azure.functions as func

from shared.activities.drtest import TEST_TTL, dr_test_problems
from shared.activities.restore import check_restore
from shared.domain import names
from shared.domain.models import VM, AuditEntry, BackupState
from shared.domain.retention import MANUAL_KEEP
from shared.functions.wiring import RUNNING, utc_now
from shared.health import fleet_status, iso
from shared.inputs import (
    InputError,
    checked_backup_id,
    checked_region,
    dr_test_request,
    known_vm,
    manual_backup,
    one_vm,
    policy_region,
    restore_request,
)
from shared.orchestrations.restore import CREATE_TIMEOUT, DISK_TIMEOUT
from shared.report import render_report
from shared.services import Services, services

bp = df.Blueprint()

RATE_WINDOW = timedelta(hours=1)
STATUS_POLL_SECONDS = 10  # Retry-After on a 202: how soon a status read is worth making
UNADDRESSABLE = re.compile(r"[/\\?#\x00-\x1f\x7f]")  # not in one segment of a status URL
# A restore's disks and VM each have their own timeout (orchestrations/restore.py): one started
# longer ago than both is over.
RESTORE_WINDOW = DISK_TIMEOUT + CREATE_TIMEOUT + timedelta(hours=1)
RESTORE_FIELDS = {
    "backupId",
    "region",
    "resourceGroup",
    "subnet",
    "newVm",
    "disksOnly",
    "keepPartial",
}
T = TypeVar("T")
P = ParamSpec("P")


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, retry_after: int | None = None):
        super().__init__(message)
        self.status, self.code, self.retry_after = status, code, retry_after

    def response(self) -> func.HttpResponse:
        headers = {"Retry-After": str(self.retry_after)} if self.retry_after else None
        return _json({"error": {"code": self.code, "message": str(self)}}, self.status, headers)

    @classmethod
    def refusing(cls, error: InputError) -> ApiError:
        return cls(404 if error.not_found else 400, error.code, str(error))


@bp.route(route="backups/{vm}", methods=["POST"])
@bp.durable_client_input(client_name="client")
async def start_backup(
    req: func.HttpRequest, client: df.DurableOrchestrationClient
) -> func.HttpResponse:
    """Start a manual backup of one VM (the same workflow as the schedule's): body
    {resourceGroup?, keepDays?} (kept 30 days unless it says)."""
    try:
        svc = services()
        body = _body(req, allowed={"resourceGroup", "keepDays"})
        vm = _one_vm(svc, req, body)
        now = utc_now().replace(microsecond=0)
        keep = body.get("keepDays", MANUAL_KEEP.days)
        instance_id, payload = _checked(manual_backup, vm, now, svc.settings.regions, keep)
        await _refuse_if_running(client, _backups_under_way(svc, vm.key, now))
        _admit(svc, req, vm.key, "manual-backup", now)
        await client.start_new("vm_backup_v3", instance_id=instance_id, client_input=payload)
    except ApiError as error:
        return error.response()
    return accepted(req, instance_id)


@bp.route(route="dr-tests/{vm}", methods=["POST"])
@bp.durable_client_input(client_name="client")
async def start_dr_test(
    req: func.HttpRequest, client: df.DurableOrchestrationClient
) -> func.HttpResponse:
    """Start a DR test: body {testRegion?, backupId?, rtoTargetSeconds?, resourceGroup?}."""
    try:
        svc = services()
        body = _body(req, allowed={"testRegion", "backupId", "rtoTargetSeconds", "resourceGroup"})
        vm = _one_vm(svc, req, body, gone_too=True)
        region = _checked(
            checked_region,
            body.get("testRegion") or _checked(policy_region, vm, svc.settings.regions),
        )
        backup_id = body.get("backupId")
        if backup_id is not None:
            backup_id = _checked(checked_backup_id, backup_id)
        target = body.get("rtoTargetSeconds")
        if target is not None and (
            not isinstance(target, int | float) or isinstance(target, bool) or target <= 0
        ):
            raise ApiError(400, "InvalidRtoTarget", "rtoTargetSeconds must be a positive number")
        problems = dr_test_problems(svc, vm, region, svc.settings.drtest_group(region), backup_id)
        if problems:
            raise ApiError(400, "DrTestRejected", "; ".join(problems))
        now = utc_now().replace(microsecond=0)
        # No DR test outlives its resources' expiry (TEST_TTL). A test the timer started is not
        # among these: its id is the moment its `dr_tests` run began, recorded nowhere else.
        requested = _requested(svc, vm.key, "manual-drtest", "dr", now - TEST_TTL)
        await _refuse_if_running(client, requested)
        _admit(svc, req, vm.key, "manual-drtest", now)
        test_id, payload = dr_test_request(
            vm, now, test_region=region, backup_id=backup_id, rto_target_seconds=target
        )
        await client.start_new("dr_test_v2", instance_id=test_id, client_input=payload)
    except ApiError as error:
        return error.response()
    return accepted(req, test_id)


@bp.route(route="restores/{vm}", methods=["POST"])
@bp.durable_client_input(client_name="client")
async def start_restore(
    req: func.HttpRequest, client: df.DurableOrchestrationClient
) -> func.HttpResponse:
    """Restore a backup of a VM, live or deleted: body {backupId, region?, resourceGroup?,
    subnet?, newVm? | disksOnly?, keepPartial?} (`resourceGroup`: where to restore; the VM is
    the backup's). The pre-flight runs here first: what it finds is a 400, with nothing started.
    It runs again in the workflow, which ends "rejected" if something changed in between."""
    try:
        svc = services()
        body = _body(req, allowed=RESTORE_FIELDS)
        name = req.route_params.get("vm", "")
        backup_id = _checked(checked_backup_id, body.get("backupId"))
        backup = svc.catalog.find_backup(backup_id)
        # The backup names the VM's group: a deleted VM's name may since be taken elsewhere.
        group = backup.source_resource_group if backup and _same(backup.vm_name, name) else None
        vm = _checked(known_vm, svc.gateway.list_vms(), svc.catalog, name, group)
        now = utc_now().replace(microsecond=0)
        restore_id, payload = _checked(
            partial(
                restore_request,
                backup_id=backup_id,
                new_vm=body.get("newVm"),
                disks_only=body.get("disksOnly", False),
                region=body.get("region"),
                resource_group=body.get("resourceGroup"),
                subnet=body.get("subnet"),
                keep_partial=body.get("keepPartial", False),
            ),
            vm,
            backup,
            now,
        )
        running = _requested(svc, vm.key, "manual-restore", "restore", now - RESTORE_WINDOW)
        await _refuse_if_running(client, running)
        problems = check_restore(payload, svc)["problems"]
        if problems:
            raise ApiError(400, "RestorePreflightFailed", "; ".join(problems))
        _admit(svc, req, vm.key, "manual-restore", now)
        await client.start_new("restore_backup_v2", instance_id=restore_id, client_input=payload)
    except ApiError as error:
        return error.response()
    return accepted(req, restore_id)


def accepted(req: func.HttpRequest, instance_id: str) -> func.HttpResponse:
    """202 with the app's own status route (`Location`, `statusUri`), behind the caller's
    function key. Not the Durable extension's URLs: they carry the system key, which can start
    any orchestration with any input, terminate and purge."""
    parts = urlsplit(req.url)
    status = f"{parts.scheme}://{parts.netloc}/api/operations/{quote(instance_id, safe='')}"
    return _json(
        {"id": instance_id, "statusUri": status},
        202,
        {"Location": status, "Retry-After": str(STATUS_POLL_SECONDS)},
    )


@bp.route(route="operations/{id}", methods=["GET"])
@bp.durable_client_input(client_name="client")
async def operation_status(
    req: func.HttpRequest, client: df.DurableOrchestrationClient
) -> func.HttpResponse:
    """Where a started backup, DR test, restore or failover stands (never its input)."""
    instance_id = req.route_params.get("id", "")
    if not _addressable(instance_id):
        return ApiError(404, "OperationNotFound", f"no operation {instance_id!r}").response()
    found = await client.get_status(instance_id)
    if found.runtime_status is None:
        return ApiError(404, "OperationNotFound", f"no operation {instance_id!r}").response()
    return _json(
        {
            "id": instance_id,
            "name": found.name,
            "status": found.runtime_status.value,
            "createdTime": iso(found.created_time),
            "lastUpdatedTime": iso(found.last_updated_time),
            "customStatus": found.custom_status,
            "output": found.output,
        }
    )


def _addressable(instance_id: str) -> bool:
    """An id the client can put in its status URL's path as one segment: never one the app
    issued otherwise. The SDK inserts it unescaped, so `/`, `\\`, `?` and `#` would address
    something else, and the HTTP client resolves `.` and `..` away: the extension then answers
    its list of every instance, which the SDK fails to read as one status."""
    return instance_id not in ("", ".", "..") and not UNADDRESSABLE.search(instance_id)


def _same(a: str, b: str) -> bool:
    return a.lower() == b.lower()


@bp.route(route="status", methods=["GET"])
def status(req: func.HttpRequest) -> func.HttpResponse:
    """Fleet health as JSON: RPO, replica lag, verification, DR success and RTO per VM."""
    svc = services()
    return _json(
        fleet_status(
            svc.gateway,
            svc.catalog,
            utc_now(),
            svc.settings.regions,
            lag_target_seconds=svc.settings.replication_lag_target_seconds,
        )
    )


@bp.route(route="dashboard", methods=["GET"])
def dashboard(req: func.HttpRequest) -> func.HttpResponse:
    """The fleet report: one self-contained HTML page (its own CSP forbids fetching anything)."""
    svc = services()
    page = render_report(
        svc.gateway,
        svc.catalog,
        utc_now(),
        svc.settings.regions,
        lag_target_seconds=svc.settings.replication_lag_target_seconds,
    )
    return func.HttpResponse(page, status_code=200, mimetype="text/html", charset="utf-8")


@bp.route(route="vms/{vm}/backups", methods=["GET"])
def vm_backups(req: func.HttpRequest) -> func.HttpResponse:
    """A VM's backups, newest first; also those of a VM Azure no longer has (`source_gone`)."""
    try:
        svc = services()
        vm = _one_vm(svc, req, {}, gone_too=True)
    except ApiError as error:
        return error.response()
    return _json(
        {
            "vm": vm.name,
            "resource_group": vm.resource_group,
            "source_gone": vm.gone,
            "backups": [b.to_dict() for b in svc.catalog.list_backups(vm.key)],
        }
    )


def _body(req: func.HttpRequest, allowed: set[str]) -> dict[str, Any]:
    raw = req.get_body()
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw, parse_constant=_not_json)
    except (ValueError, UnicodeDecodeError, RecursionError):
        # RecursionError: nesting deeper than the parser's stack (a hostile body, not JSON use).
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


def _not_json(constant: str) -> Any:
    """NaN and Infinity: Python's extension, not JSON (RFC 8259), and no valid number here."""
    raise ValueError(f"{constant} is not JSON")


def _one_vm(
    svc: Services, req: func.HttpRequest, body: Mapping[str, Any], *, gone_too: bool = False
) -> VM:
    """The VM the route names; with `gone_too`, also one Azure no longer has, as its last
    backup recorded it (its backups are listed and DR-tested; it gets no new backups)."""
    group = body.get("resourceGroup") or req.params.get("resourceGroup")
    if group is not None and not isinstance(group, str):
        raise ApiError(400, "InvalidResourceGroup", f"{group!r} is not a valid resource group name")
    name = req.route_params.get("vm", "")
    if gone_too:
        return _checked(known_vm, svc.gateway.list_vms(), svc.catalog, name, group)
    return _checked(one_vm, svc.gateway.list_vms(), name, group)


def _checked(check: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """Run a shared input check, answering its refusal as an API error."""
    try:
        return check(*args, **kwargs)
    except InputError as error:
        raise ApiError.refusing(error) from None


async def _refuse_if_running(
    client: df.DurableOrchestrationClient, instance_ids: Iterable[str]
) -> None:
    """409 if any of these workflow instances is still pending or running.

    Each is asked for by id: a status query answers one page (100 instances) and the SDK reads
    no further, so in a busy task hub it would miss the very instance that is running.
    """
    for instance_id in dict.fromkeys(instance_ids):
        status = await client.get_status(instance_id)
        if status.runtime_status in RUNNING:
            raise ApiError(409, "AlreadyRunning", f"{instance_id} is already running for this VM")


def _backups_under_way(svc: Services, vm_key: str, now: datetime) -> list[str]:
    """The workflows that may be taking a backup of the VM: that of each backup the catalog shows
    being created (scheduled or manual; the workflow may have died since, so it is asked), and
    that of each manual request this hour, which may not have reached the catalog yet."""
    creating = []
    for b in svc.catalog.list_backups(vm_key):
        if b.state is not BackupState.CREATING:
            continue
        if b.manual:
            creating.append(names.orchestration_id("manual-backup", vm_key, b.slot))
        else:  # each attempt of a slot ran under its own claim generation
            creating += [
                names.backup_instance_id(vm_key, b.slot, n) for n in range(1, b.attempts + 1)
            ]
    return creating + _requested(svc, vm_key, "manual-backup", "manual-backup", now - RATE_WINDOW)


def _requested(svc: Services, vm_key: str, operation: str, kind: str, since: datetime) -> list[str]:
    """The instance ids of the VM's manual requests since `since`: each request is audited with
    the moment that names its instance (see `_admit`)."""
    return [
        names.orchestration_id(kind, vm_key, entry.at)
        for entry in svc.catalog.audit_entries(since=since, vm_key=vm_key)
        if entry.action == "request" and entry.operation == operation
    ]


def _admit(
    svc: Services, req: func.HttpRequest, vm_key: str, operation: str, now: datetime
) -> None:
    """Count this request against the VM's hourly limit (every manual route together), or
    refuse it with Retry-After; then audit it with its caller (its moment names its instance)."""
    limit = svc.settings.manual_limit_per_hour
    next_at = svc.catalog.admit(vm_key, now, window=RATE_WINDOW, limit=limit)
    if next_at is not None:
        retry = int((next_at - now).total_seconds()) + 1
        raise ApiError(
            429, "TooManyRequests", f"more than {limit} manual requests of this VM this hour", retry
        )
    svc.catalog.audit(
        AuditEntry(
            at=now,
            action="request",
            resource_id=vm_key,
            result="ok",
            vm_key=vm_key,
            operation=operation,
            identity=_caller(req, svc.settings.app_service_auth),
        )
    )


def _caller(req: func.HttpRequest, app_service_auth: bool) -> str:
    """Who sent a request, for the audit log. With App Service authentication on, the client
    principal the platform puts in X-MS-CLIENT-PRINCIPAL-NAME / -ID / -IDP ("External requests
    aren't allowed to set these headers": learn.microsoft.com/azure/app-service/
    configure-authentication-user-identities); with it off, those headers are anyone's to
    write, so only the function key is named."""
    if not app_service_auth:
        return "a function key holder (App Service authentication is off)"
    name, object_id, provider = (
        _printable(req.headers.get(f"X-MS-CLIENT-PRINCIPAL-{part}", ""))
        for part in ("NAME", "ID", "IDP")
    )
    if not (name or object_id):  # the auth settings let unauthenticated requests through
        return "an unauthenticated function key holder"
    return f"{provider or 'aad'} {name or object_id} (object id {object_id or 'unknown'})"


def _printable(text: str) -> str:
    """A header value as the audit log may keep it: printable, and not a page long."""
    return "".join(c for c in text if c.isprintable())[:200].strip()


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> func.HttpResponse:
    return func.HttpResponse(
        json.dumps(data, default=str),
        status_code=status,
        mimetype="application/json",
        headers=headers,
    )
