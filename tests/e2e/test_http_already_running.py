"""409 for work already under way holds in a busy task hub, and only while the work runs.

The extension answers a status query 100 instances a page and the Python SDK reads the first
page only, so the HTTP API asks for the instances that could be running by id instead.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import azure.durable_functions as df
import pytest
import requests

from local.azurite import Azurite
from local.serve import ApiClient, FunctionsServer
from local.stack import FLEETS, Stack, local_stack
from shared.domain import names
from shared.domain.models import BackupState
from shared.functions.wiring import RUNNING
from shared.runner import run_to_completion

START = datetime(2026, 11, 10, 1, 59, tzinfo=UTC)  # a minute before the tiny fleet's 02:00 slot
SLOT = datetime(2026, 11, 10, 2, 0, tzinfo=UTC)
WEB = "rg-app-eastus~web-01"  # tiny fleet: daily 02:00, replicates to westus2
_prefixes = (f"running{n}" for n in itertools.count())


@pytest.fixture
def stack(azurite: Azurite) -> Iterator[Stack]:
    with local_stack(
        FLEETS / "tiny.json", start=START, azurite=azurite, table_prefix=next(_prefixes)
    ) as running:
        yield running


@pytest.fixture
def api(stack: Stack) -> Iterator[ApiClient]:
    """The app over real HTTP; the test runs the durable host itself (no timer loop)."""
    with FunctionsServer(stack, drive=False).running() as server:
        yield server.client()


def _refusal(response: requests.Response) -> tuple[int, str, str]:
    error = response.json()["error"]
    return response.status_code, error["code"], error["message"]


def _crowd(stack: Stack, count: int) -> None:
    """Pending backups of other VMs whose ids sort before every id of web-01's workflows, so a
    status query's first page holds none of web-01's."""
    for n in range(count):
        instance_id = names.orchestration_id("backup", f"rg-other~vm-{n:03d}", START)
        stack.host.start("vm_backup_v3", None, instance_id)


def _first_running_page(stack: Stack) -> set[str]:
    client = df.DurableOrchestrationClient(stack.host.client_binding())
    page = run_to_completion(client.get_status_by(runtime_status=list(RUNNING)))
    return {status.instance_id for status in page}


class TestInABusyTaskHub:
    """More than a page of running instances hides nothing from the check."""

    def test_a_second_manual_backup_is_refused(self, stack: Stack, api: ApiClient) -> None:
        _crowd(stack, 150)
        first = api.call("POST", "backups/web-01")
        assert first.status_code == 202
        running = first.json()["id"]
        assert running not in _first_running_page(stack)

        assert _refusal(api.call("POST", "backups/web-01"))[:2] == (
            409,
            "AlreadyRunning",
        )

    def test_a_second_manual_dr_test_is_refused(self, stack: Stack, api: ApiClient) -> None:
        assert api.call("POST", "backups/web-01").status_code == 202
        stack.host.run_until_idle()  # a replicated backup: a DR test's pre-flight wants one
        _crowd(stack, 150)
        first = api.call("POST", "dr-tests/web-01")
        assert first.status_code == 202
        assert first.json()["id"] not in _first_running_page(stack)

        assert _refusal(api.call("POST", "dr-tests/web-01"))[:2] == (
            409,
            "AlreadyRunning",
        )


class TestScheduledBackups:
    """A scheduled backup still taking its snapshots refuses a manual one, until it is done."""

    @pytest.fixture
    def snapshotting(self, stack: Stack) -> str:
        stack.host.run_timers(until=SLOT + timedelta(seconds=2))  # snapshots take ~10 s
        [backup] = stack.services.catalog.list_backups(WEB)
        assert backup.state is BackupState.CREATING
        return names.backup_instance_id(WEB, SLOT, 1)  # the first claim of the slot

    def test_refuses_a_manual_backup_while_snapshotting_and_accepts_one_after(
        self, stack: Stack, api: ApiClient, snapshotting: str
    ) -> None:
        status, code, message = _refusal(api.call("POST", "backups/web-01"))
        assert (status, code) == (409, "AlreadyRunning")
        assert snapshotting in message

        stack.host.run_until_idle()
        assert api.call("POST", "backups/web-01").status_code == 202

    def test_a_backup_whose_workflow_was_terminated_does_not_block(
        self, stack: Stack, api: ApiClient, snapshotting: str
    ) -> None:
        client = df.DurableOrchestrationClient(stack.host.client_binding())
        run_to_completion(client.terminate(snapshotting, "stuck"))
        [backup] = stack.services.catalog.list_backups(WEB)
        assert backup.state is BackupState.CREATING  # the catalog row outlives its workflow

        assert api.call("POST", "backups/web-01").status_code == 202
