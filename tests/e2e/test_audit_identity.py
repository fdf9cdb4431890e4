"""The audit log names who asked and who acted: the HTTP caller as App Service authentication
vouches for them (or only "a function key holder" when it is off, whatever headers came), the
operator for the CLI, and for every Azure call the principal whose token ARM took, read from the
token's claims (never the credential's kind). Each entry also goes to Application Insights."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import azure.functions as func
from typer.testing import CliRunner

from cli.main import app
from local.azurite import Azurite
from local.stack import FLEETS, Stack, local_stack
from shared.adapters.credentials import OPERATOR_TOKEN, SIMULATOR_TOKEN, principal_of
from shared.adapters.telemetry import captured_events
from shared.domain.models import AuditEntry

START = datetime(2026, 11, 10, 9, 0, tzinfo=UTC)
WEB = "rg-app-eastus~web-01"
APP = "app 7d3f0b5e-0a11-4c7e-9b1d-000000000a99 (object id 7d3f0b5e-0a11-4c7e-9b1d-000000000a99)"
OPERATOR = "user operator@backupdr.example (object id 2c9e4a61-5b7d-4f38-8e02-000000000099)"
ALICE = {
    "X-MS-CLIENT-PRINCIPAL-NAME": "alice@contoso.example",
    "X-MS-CLIENT-PRINCIPAL-ID": "5f1c0d2e-0000-4000-8000-00000000a11c",
    "X-MS-CLIENT-PRINCIPAL-IDP": "aad",
}
AS_ALICE = "aad alice@contoso.example (object id 5f1c0d2e-0000-4000-8000-00000000a11c)"
_prefixes = (f"audit{n}" for n in itertools.count())


@contextmanager
def _stack(azurite: Azurite, *, app_service_auth: bool) -> Iterator[Stack]:
    auth = {"WEBSITE_AUTH_ENABLED": "True"} if app_service_auth else {}
    with local_stack(
        FLEETS / "tiny.json",
        start=START,
        azurite=azurite,
        table_prefix=next(_prefixes),
        settings=auth,
    ) as stack:
        yield stack


def _backup_over_http(stack: Stack, headers: dict[str, str]) -> None:
    request = func.HttpRequest(
        method="POST", url="http://localhost/api/backups/web-01", body=b"", headers=headers
    )
    assert stack.host.call_http("start_backup", request).status_code == 202
    stack.host.run_until_idle()


def _entries(stack: Stack) -> list[AuditEntry]:
    return stack.services.catalog.audit_entries(since=START - timedelta(days=1), vm_key=WEB)


def test_the_simulators_tokens_name_the_principals_its_errors_name() -> None:
    assert (principal_of(SIMULATOR_TOKEN), principal_of(OPERATOR_TOKEN)) == (APP, OPERATOR)


def test_an_http_request_is_audited_as_its_authenticated_caller_and_the_work_as_the_app(
    azurite: Azurite,
) -> None:
    with _stack(azurite, app_service_auth=True) as stack, captured_events() as events:
        _backup_over_http(stack, ALICE)
        entries = _entries(stack)
    requests = [e for e in entries if e.action == "request"]
    assert [e.identity for e in requests] == [AS_ALICE]
    creates = [e for e in entries if e.action == "create"]
    assert creates
    assert {e.identity for e in creates} == {APP}
    recorded = [e for e in events if e["event"] == "AuditRecorded"]
    assert sorted((e["action"], e["resource_id"], e["identity"]) for e in recorded) == sorted(
        (e.action, e.resource_id, e.identity) for e in entries
    )


def test_with_app_service_authentication_off_principal_headers_are_not_believed(
    azurite: Azurite,
) -> None:
    """Without Easy Auth in front, X-MS-CLIENT-PRINCIPAL-* are whatever the caller wrote."""
    with _stack(azurite, app_service_auth=False) as stack:
        _backup_over_http(stack, ALICE)
        entries = _entries(stack)
    (request,) = [e for e in entries if e.action == "request"]
    assert request.identity == "a function key holder (App Service authentication is off)"
    assert not any("alice" in (e.identity or "") for e in entries)


def test_a_request_with_authentication_on_but_no_principal_is_named_unauthenticated(
    azurite: Azurite,
) -> None:
    with _stack(azurite, app_service_auth=True) as stack:
        _backup_over_http(stack, {})
        (request,) = [e for e in _entries(stack) if e.action == "request"]
    assert request.identity == "an unauthenticated function key holder"


def test_cli_actions_are_audited_as_the_operator_from_the_token(azurite: Azurite) -> None:
    with _stack(azurite, app_service_auth=False) as stack:
        for args in (["backup", "trigger", "web-01"], ["backup", "disable", "web-01"]):
            result = CliRunner().invoke(app, ["-o", "json", *args], env=stack.cli_env())
            assert result.exit_code == 0, result.output
        entries = _entries(stack)
    (request,) = [e for e in entries if e.action == "request"]
    assert (request.operation, request.identity) == ("vm_backup", OPERATOR)
    (tag,) = [e for e in entries if e.action == "tag"]
    assert (tag.operation, tag.identity) == ("disable", OPERATOR)
    # On the simulator the CLI runs the workflow as the app, and the log says so.
    assert {e.identity for e in entries if e.action == "create"} == {APP}


def test_a_dr_test_audits_its_run_command_and_each_test_resource_it_deletes(
    azurite: Azurite,
) -> None:
    with _stack(azurite, app_service_auth=True) as stack:
        _backup_over_http(stack, ALICE)
        since = stack.clock.now() - timedelta(seconds=1)  # a request's moment is whole seconds
        request = func.HttpRequest(
            method="POST", url="http://localhost/api/dr-tests/web-01", body=b"{}", headers=ALICE
        )
        assert stack.host.call_http("start_dr_test", request).status_code == 202
        stack.host.run_until_idle()
        entries = stack.services.catalog.audit_entries(since=since, vm_key=WEB)
    (asked,) = [e for e in entries if e.action == "request" and e.operation == "manual-drtest"]
    assert asked.identity == AS_ALICE
    (guest,) = [e for e in entries if e.resource_id.endswith("/runCommand")]
    assert (guest.action, guest.result, guest.identity) == ("request", "ok", APP)
    created = {e.resource_id for e in entries if e.action == "create" and e.result == "ok"}
    deleted = {e.resource_id for e in entries if e.action == "delete" and e.result == "ok"}
    kinds = {rid.split("/providers/")[1].rsplit("/", 1)[0] for rid in deleted}
    assert {_name(rid) for rid in deleted} == {_name(rid) for rid in created}, (
        "every test resource made is deleted, each with its own entry"
    )
    assert kinds == {
        "Microsoft.Compute/virtualMachines",
        "Microsoft.Network/networkInterfaces",
        "Microsoft.Compute/disks",
    }
    assert {e.identity for e in entries if e.action == "delete"} == {APP}


def _name(resource_id: str) -> str:
    return resource_id.rsplit("/", 1)[1]


def test_the_timers_work_is_audited_as_the_app_and_asked_for_by_no_one(azurite: Azurite) -> None:
    with _stack(azurite, app_service_auth=True) as stack:
        stack.host.run_timers(until=START + timedelta(days=1))
        entries = _entries(stack)
    assert [e for e in entries if e.action == "create"], "the 02:00 slot was backed up"
    assert {e.identity for e in entries} == {APP}
    assert not [e for e in entries if e.action == "request" and e.resource_id == WEB]
