"""Generated input at every entry point: the HTTP routes (bodies, VM names, operation ids), the
policy tag, and the CLI's arguments. Whatever arrives, the answer is a status the API documents
or an exit code the CLI documents, never a 500 or a traceback; a refusal is one clear message
and leaves the catalog and Azure as they were."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import azure.functions as func
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from cli.main import app
from local.azurite import Azurite
from local.stack import FLEETS, Stack, local_stack
from shared.domain.policy import PolicyError, policy_from_tags

START = datetime(2026, 11, 10, 2, 30, tzinfo=UTC)
WEB = "rg-app-eastus~web-01"
WRITES = {"PUT", "PATCH", "POST", "DELETE"}
FUZZ = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

LEAF = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**20), max_value=10**20)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=24)
)
VALUE = st.recursive(
    LEAF,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
FIELDS = (
    "testRegion",
    "backupId",
    "rtoTargetSeconds",
    "resourceGroup",
    "keepDays",
    "region",
    "subnet",
    "newVm",
    "disksOnly",
    "keepPartial",
)
BODY = st.one_of(
    st.dictionaries(st.sampled_from(FIELDS), VALUE, max_size=4).map(
        lambda b: json.dumps(b).encode()
    ),
    VALUE.map(lambda v: json.dumps(v).encode()),
    st.binary(max_size=48),
)
VM_NAME = st.one_of(
    st.sampled_from(["web-01", "db-01", "nope-01"]), st.text(min_size=1, max_size=30)
)
ROUTES = {
    "start_backup": "backups",
    "start_dr_test": "dr-tests",
    "start_restore": "restores",
    "start_failover": "failovers",
}


@pytest.fixture(scope="module")
def stack(azurite: Azurite) -> Iterator[Stack]:
    with local_stack(FLEETS / "tiny.json", start=START, azurite=azurite, table_prefix="fuzz") as s:
        yield s


def _state(stack: Stack) -> tuple[int, list[Any]]:
    """ARM writes so far, and the catalog's rows for the fleet's VMs."""
    writes = sum(1 for r in stack.simulator.requests if r.method in WRITES)
    rows = [
        b.to_dict()
        for vm in ("rg-app-eastus~web-01", "rg-app-eastus~db-01")
        for b in stack.services.catalog.list_backups(vm, include_deleted=True)
    ]
    return writes, rows


def _one_message(response: func.HttpResponse) -> None:
    error = json.loads(response.get_body())["error"]
    assert error["code"].isascii()
    assert error["code"].isalpha()
    assert error["message"].strip()
    assert "\n" not in error["message"]
    assert "Traceback" not in error["message"]


@FUZZ
@given(function=st.sampled_from(sorted(ROUTES)), vm=VM_NAME, body=BODY)
def test_a_generated_request_gets_a_documented_answer_and_a_refusal_changes_nothing(
    stack: Stack, function: str, vm: str, body: bytes
) -> None:
    before = _state(stack)
    path = f"{ROUTES[function]}/{quote(vm, safe='')}"
    request = func.HttpRequest(method="POST", url=f"http://localhost/api/{path}", body=body)
    response = stack.host.call_http(function, request)
    assert response.status_code in (202, 400, 404, 409, 429), response.get_body()
    if response.status_code == 202:
        stack.host.run_until_idle()  # let it finish, so the next example is not "running"
        return
    _one_message(response)
    assert _state(stack) == before


@FUZZ
@given(instance=st.text(min_size=1, max_size=60))
# The client's URL resolves these away: the extension answered its list of every instance.
@example(instance=".")
@example(instance="..")
def test_a_generated_operation_id_is_a_status_or_a_404(stack: Stack, instance: str) -> None:
    path = f"operations/{quote(instance, safe='')}"
    request = func.HttpRequest(method="GET", url=f"http://localhost/api/{path}", body=b"")
    response = stack.host.call_http("operation_status", request)
    assert response.status_code in (200, 404)
    if response.status_code == 404:
        _one_message(response)


@settings(max_examples=300, deadline=None)
@given(value=st.text(max_size=300))
def test_a_generated_policy_tag_is_a_policy_or_one_policy_error(value: str) -> None:
    try:
        policy_from_tags({"backup-policy": value})
    except PolicyError as error:
        message = str(error)
    else:
        return
    assert message.strip()
    assert "\n" not in message


COMMANDS = [
    ["backup", "list"],
    ["backup", "show"],
    ["backup", "trigger"],
    ["backup", "configure"],
    ["backup", "plan-retention"],
    ["backup", "hold"],
    ["backup", "undelete"],
    ["backup", "restore"],
    ["dr", "test"],
    ["dr", "failover"],
    ["status"],
]
WORDS = st.one_of(
    st.sampled_from(
        [
            *("web-01", "db-01", "--daily", "--backup", "--replicate-to", "--keep-days", "-g"),
            *("-o", "--test-region", "--schedule", "json", "0", "-1", "centralus", "* * * * *"),
        ]
    ),
    st.text(max_size=16).filter(lambda w: "\x00" not in w),
)


@FUZZ
@given(command=st.sampled_from(COMMANDS), words=st.lists(WORDS, max_size=4))
def test_generated_cli_arguments_exit_0_1_or_2_and_a_refusal_changes_nothing(
    stack: Stack, command: list[str], words: list[str]
) -> None:
    before = _state(stack)
    result = CliRunner().invoke(app, [*command, *words], env=stack.cli_env())
    assert result.exit_code in (0, 1, 2), (result.exit_code, result.output)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    assert "Traceback" not in result.output
    if result.exit_code == 2:
        assert _state(stack) == before
