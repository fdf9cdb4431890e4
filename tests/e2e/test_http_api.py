"""The HTTP functions over real HTTP, behind the Functions host's front door (local/serve.py),
with the real durable client."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import pytest
import requests

from local.armsim import FaultRule
from local.azurite import Azurite
from local.serve import ApiClient, FunctionsServer
from local.stack import FLEETS, Stack, local_stack
from shared.domain.models import BackupState

START = datetime(2026, 11, 10, 9, 0, tzinfo=UTC)
WEB = "rg-app-eastus~web-01"
_prefixes = (f"http{n}" for n in itertools.count())


@pytest.fixture
def stack(azurite: Azurite) -> Iterator[Stack]:
    with local_stack(
        FLEETS / "tiny.json",
        start=START,
        azurite=azurite,
        table_prefix=next(_prefixes),
        settings={"BACKUPDR_MANUAL_LIMIT_PER_HOUR": "2"},
    ) as running:
        yield running


@pytest.fixture
def api(stack: Stack) -> Iterator[ApiClient]:
    """The app served on a free port; the test runs the durable host itself (no timer loop)."""
    with FunctionsServer(stack, drive=False).running() as server:
        yield server.client()


def _two_manual_backups(stack: Stack, api: ApiClient) -> None:
    """Use up the VM's hourly limit (two, in this stack's settings), a minute apart."""
    for _ in range(2):
        assert api.call("POST", "backups/web-01").status_code == 202
        stack.host.run_until_idle()
        stack.clock.advance(60)


def _status(api: ApiClient, instance_id: str) -> requests.Response:
    return api.call("GET", f"operations/{quote(instance_id, safe='')}")


def _fields(response: requests.Response) -> dict[str, Any]:
    found: dict[str, Any] = response.json()
    return found


def _error(response: requests.Response) -> tuple[int, str]:
    return response.status_code, response.json()["error"]["code"]


class TestManualBackup:
    """POST /api/backups/{vm} runs the scheduled backup workflow on demand."""

    def test_starts_a_backup_and_answers_202_with_the_apps_own_status_route(
        self, stack: Stack, api: ApiClient
    ) -> None:
        """Not the Durable extension's URLs: they carry the system key (`code=`), which starts
        any orchestration with any input, terminates and purges."""
        response = api.call("POST", "backups/web-01")
        assert response.status_code == 202
        body = response.json()
        assert set(body) == {"id", "statusUri"}
        assert response.headers["Location"] == body["statusUri"]
        assert body["statusUri"].endswith(f"/api/operations/{quote(body['id'], safe='')}")
        assert "code=" not in response.content.decode() + str(dict(response.headers))
        running = _status(api, body["id"])
        assert (running.status_code, _fields(running)["status"]) == (200, "Pending")
        stack.host.run_until_idle()
        done = _fields(_status(api, body["id"]))
        assert (done["name"], done["status"]) == ("vm_backup_v3", "Completed")
        assert done["output"]["state"] == "completed"
        assert "input" not in done
        backups = stack.services.catalog.list_backups(WEB)
        assert [(b.manual, b.state) for b in backups] == [(True, BackupState.COMPLETED)]

    def test_an_unknown_operation_is_404(self, api: ApiClient) -> None:
        assert _error(_status(api, "no-such-instance")) == (404, "OperationNotFound")

    def test_a_second_request_while_one_runs_is_refused_with_409(self, api: ApiClient) -> None:
        assert api.call("POST", "backups/web-01").status_code == 202
        assert _error(api.call("POST", "backups/web-01")) == (
            409,
            "AlreadyRunning",
        )

    def test_more_requests_than_the_hourly_limit_get_429_with_retry_after(
        self, stack: Stack, api: ApiClient
    ) -> None:
        _two_manual_backups(stack, api)
        refused = api.call("POST", "backups/web-01")
        assert _error(refused) == (429, "TooManyRequests")
        assert 0 < int(refused.headers["Retry-After"]) <= 3600
        assert len(stack.services.catalog.list_backups(WEB)) == 2

    def test_the_hourly_limit_counts_every_manual_route_of_a_vm_together(
        self, stack: Stack, api: ApiClient
    ) -> None:
        """Two backups use the VM's two manual requests: a DR test is the third."""
        _two_manual_backups(stack, api)
        refused = api.call("POST", "dr-tests/web-01")
        assert _error(refused) == (429, "TooManyRequests")

    @pytest.mark.parametrize(
        ("path", "body", "expected"),
        [
            ("backups/bad%20name!", b"", (400, "InvalidVmName")),
            ("backups/no-such-vm", b"", (404, "VmNotFound")),
            ("backups/web-01", b"{not json", (400, "InvalidJson")),
            ("backups/web-01", b"[1, 2]", (400, "InvalidBody")),
            ("backups/web-01", b'{"tier": "monthly"}', (400, "UnknownField")),
            ("backups/web-01", b'{"resourceGroup": "bad/group"}', (400, "InvalidResourceGroup")),
            ("backups/web-01", b"[" * 100_000 + b"]" * 100_000, (400, "InvalidJson")),
            ("backups/web-01", b'{"keepDays": NaN}', (400, "InvalidJson")),
            ("backups/web-01", b'{"keepDays": Infinity}', (400, "InvalidJson")),
        ],
        ids=[
            "bad-name",
            "unknown-vm",
            "not-json",
            "not-an-object",
            "unknown-field",
            "bad-group",
            "nested-too-deep",
            "nan",
            "infinity",
        ],
    )
    def test_bad_input_gets_a_clear_error_and_changes_nothing(
        self, stack: Stack, api: ApiClient, path: str, body: bytes, expected: tuple[int, str]
    ) -> None:
        assert _error(api.call("POST", path, body)) == expected
        assert stack.host.instances() == []
        assert stack.simulator.snapshots() == []

    def test_a_vm_with_a_malformed_policy_tag_is_refused(
        self, stack: Stack, api: ApiClient
    ) -> None:
        vm = next(v for v in stack.services.gateway.list_vms() if v.key == WEB)
        stack.operator.set_policy_tag(vm.id, "daily=x")  # the operator tags; the app cannot
        response = api.call("POST", "backups/web-01")
        assert _error(response) == (400, "InvalidPolicyTag")
        assert "daily='x'" in response.json()["error"]["message"]
        assert stack.host.instances() == []


class TestManualDrTest:
    """POST /api/dr-tests/{vm} restores the VM in its DR region and records the result."""

    def test_runs_a_dr_test_against_the_replicated_backup(
        self, stack: Stack, api: ApiClient
    ) -> None:
        assert api.call("POST", "backups/web-01").status_code == 202
        stack.host.run_until_idle()
        response = api.call("POST", "dr-tests/web-01", b"{}")
        assert response.status_code == 202
        stack.host.run_until_idle()
        history = stack.services.catalog.dr_history(WEB, now=stack.clock.now(), days=1)
        assert [t.success for t in history] == [True]
        assert history[0].test_region == "westus2"

    @pytest.mark.parametrize(
        ("path", "body", "expected"),
        [
            ("dr-tests/web-01", b'{"testRegion": "West US"}', (400, "InvalidRegion")),
            ("dr-tests/web-01", b'{"backupId": "../x"}', (400, "InvalidBackupId")),
            ("dr-tests/web-01", b'{"rtoTargetSeconds": -5}', (400, "InvalidRtoTarget")),
            ("dr-tests/web-01", b'{"rtoTargetSeconds": NaN}', (400, "InvalidJson")),
            ("dr-tests/web-01", b'{"rtoTargetSeconds": -Infinity}', (400, "InvalidJson")),
            ("dr-tests/db-01", b"", (400, "NoTestRegion")),
            ("dr-tests/ghost", b"", (404, "VmNotFound")),
        ],
        ids=[
            "bad-region",
            "bad-backup-id",
            "bad-rto",
            "nan",
            "infinity",
            "no-region",
            "unknown-vm",
        ],
    )
    def test_bad_input_gets_a_clear_error_and_changes_nothing(
        self, stack: Stack, api: ApiClient, path: str, body: bytes, expected: tuple[int, str]
    ) -> None:
        assert _error(api.call("POST", path, body)) == expected
        assert stack.host.instances() == []

    @pytest.mark.parametrize(
        ("body", "problem"),
        [
            (b'{"testRegion": "eastus"}', "is web-01's own region"),
            (b'{"testRegion": "centralus"}', "centralus is not a region this deployment tests"),
            (b'{"testRegion": "marsnorth"}', "marsnorth is not a region this deployment tests"),
            (b'{"backupId": "20200101t000000z-0000000000"}', "no backup 20200101t000000z"),
            (b"{}", "no backup of web-01 has a complete replica in westus2 yet"),
        ],
        ids=["own-region", "unserved-region", "no-such-region", "unknown-backup", "no-replica"],
    )
    def test_a_test_that_would_fail_before_it_starts_is_refused_and_recorded_nowhere(
        self, stack: Stack, api: ApiClient, body: bytes, problem: str
    ) -> None:
        """Started, these were recorded as failed DR tests: they skewed the success rate, took
        the hourly limit and stood in for the week's scheduled test."""
        status, code = _error(api.call("POST", "dr-tests/web-01", body))
        assert (status, code) == (400, "DrTestRejected")
        message = api.call("POST", "dr-tests/web-01", body).json()["error"]["message"]
        assert problem in message
        assert stack.host.instances() == []
        assert stack.services.catalog.dr_history(WEB, now=stack.clock.now(), days=1) == []
        assert stack.services.catalog.audit_entries(since=START) == []  # no request admitted

    def test_a_backup_not_yet_copied_is_refused(self, stack: Stack, api: ApiClient) -> None:
        stack.simulator.add_fault(FaultRule(operation="snapshots.copy", kind="copy-fails"))
        assert api.call("POST", "backups/web-01").status_code == 202
        stack.host.run_until_idle()
        (backup,) = stack.services.catalog.list_backups(WEB)
        body = json.dumps({"backupId": backup.backup_id}).encode()
        response = api.call("POST", "dr-tests/web-01", body)
        assert _error(response) == (400, "DrTestRejected")
        assert "has no complete replica in westus2" in response.content.decode()


class TestReads:
    """GET /api/status and GET /api/vms/{vm}/backups read the catalog and the fleet."""

    def test_status_reports_every_protected_vm_and_the_unprotected_ones(
        self, stack: Stack, api: ApiClient
    ) -> None:
        stack.host.run_timers(until=START + timedelta(days=1))
        status = api.call("GET", "status").json()
        assert {v["vm"] for v in status["vms"]} == {"web-01", "db-01"}
        assert status["unprotected"] == ["scratch-01"]
        assert all(v["rpo_ok"] for v in status["vms"])

    def test_a_vms_backups_come_newest_first(self, stack: Stack, api: ApiClient) -> None:
        stack.host.run_timers(until=START + timedelta(days=2))
        body = api.call("GET", "vms/web-01/backups").json()
        taken = [b["taken_at"] for b in body["backups"]]
        assert len(taken) >= 2
        assert taken == sorted(taken, reverse=True)

    def test_an_unknown_vm_has_no_backups_to_list(self, api: ApiClient) -> None:
        assert _error(api.call("GET", "vms/ghost/backups")) == (
            404,
            "VmNotFound",
        )


APP_GROUP = "rg-app-eastus"
DR_GROUP = "rg-backupdr-recovery-westus2"  # where the app may restore VMs for good (infra)
DR_SUBNET = "vnet-backupdr-recovery/snet-recovery"


def _backed_up(stack: Stack, api: ApiClient) -> str:
    """A completed backup of web-01, replicated to westus2."""
    assert api.call("POST", "backups/web-01").status_code == 202
    stack.host.run_until_idle()
    (backup,) = stack.services.catalog.list_backups(WEB)
    assert backup.replication_status == "completed"
    return backup.backup_id


def _delete_vm(stack: Stack, name: str) -> None:
    """What deleting a VM with its disks and NIC leaves: none of them (its group stays)."""
    world = stack.simulator.world
    with world.lock:
        for resource in list(world.resources.values()):
            if f"/resourcegroups/{APP_GROUP}/" in resource.id.lower() and (
                resource.name == name or resource.name.startswith(f"{name}-")
            ):
                world.remove(resource.id)


def _made(stack: Stack) -> list[str]:
    sim = stack.simulator
    return sorted(r["id"] for r in [*sim.disks(), *sim.nics(), *sim.vms()])


class TestRestore:
    """POST /api/restores/{vm} runs the restore workflow, for a VM Azure still has or not."""

    def test_a_deleted_vm_is_restored_from_the_dr_regions_replicas(
        self, stack: Stack, api: ApiClient
    ) -> None:
        backup_id = _backed_up(stack, api)
        _delete_vm(stack, "web-01")
        body = {
            "backupId": backup_id,
            "region": "westus2",
            "resourceGroup": DR_GROUP,
            "subnet": DR_SUBNET,
            "newVm": "web-01",
        }
        response = api.call("POST", "restores/web-01", json.dumps(body).encode())
        assert response.status_code == 202, response.content
        urls = response.json()
        assert set(urls) == {"id", "statusUri"}
        again = api.call("POST", "restores/web-01", json.dumps(body).encode())
        assert _error(again) == (409, "AlreadyRunning")
        stack.host.run_until_idle()
        status = stack.host.status(urls["id"])
        assert status.runtime_status == "Completed"
        result = status.output
        assert result["state"] == "completed", result
        vm = next(v for v in stack.simulator.vms() if v["id"] == result["vm_id"])
        assert (vm["location"], vm["name"]) == ("westus2", "web-01")
        assert f"/resourceGroups/{DR_GROUP}/" in vm["id"]
        assert "backup-policy" not in vm["tags"], "a restored copy is not backed up unasked"
        assert vm["properties"]["hardwareProfile"]["vmSize"] == "Standard_D2s_v5"
        assert len(vm["properties"]["storageProfile"]["dataDisks"]) == 1

    def test_bad_bodies_get_400_or_404_and_nothing_is_started_or_made(
        self, stack: Stack, api: ApiClient
    ) -> None:
        backup_id = _backed_up(stack, api)
        instances, made = len(stack.host.instances()), _made(stack)
        good = {"backupId": backup_id, "newVm": "web-02"}
        cases: list[tuple[str, object, tuple[int, str]]] = [
            ("web-01", None, (400, "InvalidBackupId")),
            ("web-01", {"backupId": "../x", "disksOnly": True}, (400, "InvalidBackupId")),
            ("web-01", {"backupId": backup_id}, (400, "NewVmOrDisksOnly")),
            ("web-01", {**good, "disksOnly": True}, (400, "NewVmOrDisksOnly")),
            ("web-01", {**good, "newVm": "bad name!"}, (400, "InvalidVmName")),
            ("web-01", {**good, "newVm": 7}, (400, "InvalidVmName")),
            ("web-01", {**good, "disksOnly": "yes"}, (400, "InvalidFlag")),
            ("web-01", {**good, "subnet": "no-slash"}, (400, "InvalidSubnet")),
            ("web-01", {**good, "region": "West US 2"}, (400, "InvalidRegion")),
            ("web-01", {**good, "resourceGroup": "bad/group"}, (400, "InvalidResourceGroup")),
            ("web-01", {**good, "size": "big"}, (400, "UnknownField")),
            (
                "web-01",
                {**good, "backupId": "20260101t000000z-0000000000"},
                (400, "BackupNotFound"),
            ),
            ("db-01", good, (400, "BackupNotRestorable")),
            ("ghost", good, (404, "VmNotFound")),
            # The pre-flight, answered before anything starts.
            ("web-01", {**good, "newVm": "web-01"}, (400, "RestorePreflightFailed")),
            (
                "web-01",
                {**good, "region": "westus2", "resourceGroup": DR_GROUP, "subnet": "vnet-x/snet"},
                (400, "RestorePreflightFailed"),
            ),
        ]
        for vm, body, expected in cases:
            raw = b"" if body is None else json.dumps(body).encode()
            response = api.call("POST", f"restores/{vm}", raw)
            assert _error(response) == expected, (body, response.content)
        assert len(stack.host.instances()) == instances
        assert _made(stack) == made
