"""`dr failover` against the ARM simulator with the source region down.

A small eastus fleet is backed up and replicated to westus2; then eastus goes down (an injected
region outage: every request for it answers 503). `dr failover --region eastus` brings every
protected VM of eastus up in westus2's recovery group from the replicas, recovery group after
recovery group, and records each VM's failover with its RTO by phase, and prints the region's
RTO. A VM deleted since (its row in the catalog only) fails over on its own, under `<name>-dr`
as its name is taken by then. Bad input is refused (exit 2) before anything is created.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import azure.functions as func
import pytest

from local.armsim import ArmSimulator
from local.armsim.faults import FaultRule
from local.armsim.vms import power_state
from local.azurite import Azurite
from local.stack import FLEETS, Stack, local_stack
from shared.activities.failover import region_failover_id
from shared.adapters.catalog import catalog_from_settings
from shared.clock import VirtualClock
from shared.domain.models import Failover
from shared.settings import Settings
from tests.e2e.test_cli import START, World, _one_error_line

SUB = "00000000-0000-0000-0000-000000000001"
RECOVERY = "rg-backupdr-recovery-westus2"
WEB = "rg-app-eastus~web-01"  # tiny fleet: daily 02:00, replicates to westus2
POLICY = "schedule=0 2 * * *;daily=7;weekly=4;monthly=12;replicate=westus2"


def _vnet(name: str, prefix: str, subnet: str) -> dict[str, Any]:
    return {
        "name": name,
        "address_prefix": f"{prefix}.0.0/16",
        "subnets": [{"name": subnet, "address_prefix": f"{prefix}.1.0/24"}],
    }


def _vm(name: str, group: str | None, region: str = "eastus") -> dict[str, Any]:
    tags = {"backup-policy": POLICY}
    if group is not None:
        tags["backup-recovery-group"] = group
    return {
        "name": name,
        "resource_group": f"rg-app-{region}",
        "subnet": "vnet-app/snet-app",
        "tags": tags,
        "os_disk": {"size_gb": 8},
        "data_disks": [{"lun": 0, "size_gb": 16, "sku": "StandardSSD_LRS"}],
    }


FLEET: dict[str, Any] = {
    "subscriptions": [
        {
            "id": SUB,
            "resource_groups": [
                {
                    "name": "rg-app-eastus",
                    "region": "eastus",
                    "vnets": [_vnet("vnet-app", "10.1", "snet-app")],
                },
                {
                    "name": "rg-app-centralus",
                    "region": "centralus",
                    "vnets": [_vnet("vnet-app", "10.2", "snet-app")],
                },
                # The groups infra makes: a backup and a DR-test group per backup region,
                # and a recovery group too in the DR region.
                {"name": "rg-backups-eastus", "region": "eastus"},
                {"name": "rg-backupdr-drtest-eastus", "region": "eastus"},
                {"name": "rg-backups-centralus", "region": "centralus"},
                {"name": "rg-backupdr-drtest-centralus", "region": "centralus"},
                {"name": "rg-backups-westus2", "region": "westus2"},
                {"name": "rg-backupdr-drtest-westus2", "region": "westus2"},
                {
                    "name": RECOVERY,
                    "region": "westus2",
                    "vnets": [_vnet("vnet-backupdr-recovery", "10.91", "snet-recovery")],
                },
            ],
            "vms": [
                _vm("db-01", "1"),
                _vm("cache-01", "1"),
                _vm("app-01", "2"),
                _vm("web-01", None),  # untagged: last
                _vm("new-01", "1", "centralus"),  # protected, never backed up: no replica
            ],
        }
    ]
}
EASTUS = ("db-01", "cache-01", "app-01", "web-01")


class Failed:
    """The fleet backed up, eastus down, its region failover and a deleted VM's failover."""

    def __init__(self, world: World) -> None:
        self.world = world
        for name in EASTUS:
            backup = world.json("backup", "trigger", name)
            assert backup["backup"]["replication_status"] == "completed"
        self.refusals = {
            args: world(*args)
            for args in [
                ("dr", "failover"),
                ("dr", "failover", "web-01", "--region", "eastus"),
                ("dr", "failover", "web-01", "--group", "1"),
                ("dr", "failover", "--region", "eastus", "--backup", "x"),
                ("dr", "failover", "nope-01"),
                ("dr", "failover", "new-01"),
                ("dr", "failover", "--region", "northeurope"),
                ("dr", "failover", "--region", "eastus", "--group", "7"),
            ]
        }
        self.before = _created(world)
        world.sim.add_fault(FaultRule(kind="region-outage", region="eastus"))
        self.region = world("dr", "failover", "--region", "eastus")
        self.rows = _rows(world)
        _delete_vm(world, "rg-app-eastus", "db-01")
        self.single = world("-o", "json", "dr", "failover", "db-01")


@pytest.fixture(scope="module")
def failed(azurite: Azurite) -> Iterator[Failed]:
    sim = ArmSimulator(clock=VirtualClock(START), fleet=json.loads(json.dumps(FLEET)))
    with sim.serve() as server:
        yield Failed(World(sim, server.url, server.ca_path, azurite))


def _created(world: World) -> list[str]:
    resources = [*world.sim.disks(), *world.sim.nics(), *world.sim.vms()]
    return sorted(
        r["id"] for r in resources if "/resourcegroups/rg-backupdr-recovery" in r["id"].lower()
    )


def _rows(world: World) -> list[Failover]:
    settings = Settings.from_env(
        {
            "AZURE_SUBSCRIPTION_ID": SUB,
            "BACKUPDR_TABLES_CONNECTION": world.env["BACKUPDR_TABLES_CONNECTION"],
            "BACKUPDR_TABLE_PREFIX": world.env["BACKUPDR_TABLE_PREFIX"],
        }
    )
    catalog = catalog_from_settings(settings)
    now = world.sim.clock.now() + timedelta(seconds=1)
    return catalog.failovers(now=now, days=2)


def _delete_vm(world: World, group: str, name: str) -> None:
    """The VM is gone (deleted while its region was down, say): only the catalog knows it."""
    vm = f"/subscriptions/{SUB}/resourceGroups/{group}/providers/Microsoft.Compute"
    found = world.sim.world.find(f"{vm}/virtualMachines/{name}")
    assert found is not None
    with world.sim.world.lock:
        world.sim.world.remove(found.id)


def _running(world: World, name: str) -> bool:
    found = [v for v in world.sim.vms() if v["name"] == name and RECOVERY in v["id"]]
    if not found:
        return False
    resource = world.sim.world.find(found[0]["id"])
    return resource is not None and power_state(world.sim.world, resource) == "running"


@pytest.mark.parametrize(
    ("index", "says"),
    [
        (0, "give a VM or --region"),
        (1, "give a VM or --region"),
        (2, "--group is for a region failover"),
        (3, "--backup is for one VM's failover"),
        (4, "no VM named 'nope-01'"),
        (5, "no complete replica in westus2"),
        (6, "no protected VM to fail over there"),
        (7, "--group 7"),
    ],
)
def test_bad_input_is_refused_before_anything_is_created(
    failed: Failed, index: int, says: str
) -> None:
    result = list(failed.refusals.values())[index]
    assert result.exit_code == 2, result.stdout
    assert says in _one_error_line(result)
    assert failed.before == []


def test_a_region_failover_brings_every_protected_vm_up_in_the_recovery_group(
    failed: Failed,
) -> None:
    assert failed.region.exit_code == 0, failed.region.stdout + failed.region.stderr
    for name in EASTUS:
        assert _running(failed.world, name), name
    vms = {v["name"]: v for v in failed.world.sim.vms() if RECOVERY in v["id"]}
    assert all(v["location"] == "westus2" for v in vms.values())
    nics = [n for n in failed.world.sim.nics() if RECOVERY in n["id"]]
    subnets = {
        c["properties"]["subnet"]["id"].rsplit("/", 3)[-3]
        for n in nics
        for c in n["properties"]["ipConfigurations"]
    }
    assert subnets == {"vnet-backupdr-recovery"}
    assert "new-01" not in vms, "another region's VM is not failed over"


def test_recovery_groups_come_up_in_order(failed: Failed) -> None:
    by_name = {r.vm_name: r for r in failed.rows}
    assert set(by_name) == set(EASTUS)
    first = [by_name["db-01"], by_name["cache-01"]]
    ends = max(r.completed_at for r in first if r.completed_at)
    assert ends <= by_name["app-01"].started_at
    assert by_name["app-01"].completed_at
    assert by_name["app-01"].completed_at <= by_name["web-01"].started_at
    assert [by_name[n].recovery_group for n in EASTUS] == [1, 1, 2, None]


def test_each_vm_is_recorded_with_its_rto_by_phase_and_the_region_rto_is_printed(
    failed: Failed,
) -> None:
    region_ids = {r.region_failover_id for r in failed.rows}
    assert len(region_ids) == 1
    assert None not in region_ids
    for row in failed.rows:
        assert row.state == "completed", row.error
        assert (row.source_region, row.target_region) == ("eastus", "westus2")
        assert (row.resource_group, row.new_vm_name) == (RECOVERY, row.vm_name)
        assert row.vm_id
        assert row.rto_seconds
        assert list(row.phase_seconds) == ["restore", "create_vm", "boot", "guest_check"]
        assert abs(sum(row.phase_seconds.values()) - row.rto_seconds) < 1
    out = failed.region.stdout
    assert "eastus: 4 of 4 VM(s) up, region RTO " in out
    for name in EASTUS:
        assert name in out


def test_a_deleted_vm_fails_over_from_the_catalog_under_a_free_name(failed: Failed) -> None:
    assert failed.single.exit_code == 0, failed.single.stderr
    result = json.loads(failed.single.stdout)
    assert result["state"] == "completed"
    assert result["new_vm_name"] == "db-01-dr", "db-01 is taken by the region failover"
    assert result["region_failover_id"] is None
    assert result["rto_seconds"] > 0
    assert _running(failed.world, "db-01-dr")


class TestHttp:
    """POST /api/failovers/{vm}: validated as the other routes are, then 202 and the workflow."""

    @pytest.fixture(scope="class")
    def stack(self, azurite: Azurite) -> Iterator[Stack]:
        start = START.replace(hour=0)
        with local_stack(
            FLEETS / "tiny.json", start=start, azurite=azurite, table_prefix="failoverhttp"
        ) as running:
            running.host.run_timers(until=start + timedelta(hours=2))  # a backup with a replica
            running.host.run_until_idle()
            yield running

    def _call(self, stack: Stack, vm: str, body: bytes = b"") -> func.HttpResponse:
        request = func.HttpRequest(
            method="POST",
            url=f"http://localhost/api/failovers/{vm}",
            body=body,
            route_params={"vm": vm},
        )
        return stack.host.call_http("start_failover", request)

    def _error(self, response: func.HttpResponse) -> tuple[int, str]:
        return response.status_code, json.loads(response.get_body())["error"]["code"]

    def test_bad_input_is_refused(self, stack: Stack) -> None:
        assert self._error(self._call(stack, "nope-01")) == (404, "VmNotFound")
        assert self._error(self._call(stack, "web-01", b'{"x": 1}')) == (400, "UnknownField")
        assert self._error(self._call(stack, "db-01")) == (400, "NoTestRegion")
        assert self._error(self._call(stack, "web-01", b'{"backupId": "nope"}')) == (
            404,
            "BackupNotFound",
        )
        assert [v for v in stack.simulator.vms() if "recovery" in v["id"]] == []

    def test_starts_a_failover_and_refuses_a_second_while_it_runs(self, stack: Stack) -> None:
        response = self._call(stack, "web-01")
        assert response.status_code == 202
        instance = json.loads(response.get_body())["id"]
        assert self._error(self._call(stack, "web-01")) == (409, "AlreadyRunning")
        stack.host.run_until_idle()
        status = stack.host.status(instance)
        assert status.runtime_status == "Completed"
        assert status.output["state"] == "completed", status.output
        [row] = stack.services.catalog.failovers(now=stack.clock.now(), days=1, vm_key=WEB)
        assert (row.id, row.state, row.new_vm_name) == (instance, "completed", "web-01")
        assert row.resource_group == "rg-backupdr-recovery-westus2"


def test_a_region_failover_converges_when_every_activity_runs_twice(azurite: Azurite) -> None:
    start = START.replace(hour=0)
    with local_stack(
        FLEETS / "tiny.json",
        start=start,
        azurite=azurite,
        table_prefix="failovertwice",
        at_least_once=True,
    ) as stack:
        stack.host.run_timers(until=start + timedelta(hours=2))  # web-01's backup and replica
        stack.host.run_until_idle()
        region_id = region_failover_id("eastus", stack.clock.now())
        payload = {"region": "eastus", "region_failover_id": region_id}
        stack.host.start("failover_region", payload, region_id)
        stack.host.run_until_idle()
        status = stack.host.status(region_id)
        assert status.runtime_status == "Completed"
        assert (status.output["state"], status.output["total"]) == ("completed", 1)
        assert status.output["skipped"] == [
            {"vm_name": "db-01", "reason": "its policy replicates nowhere"}
        ]
        assert [v["name"] for v in stack.simulator.vms() if RECOVERY in v["id"]] == ["web-01"]
        assert len([n for n in stack.simulator.nics() if RECOVERY in n["id"]]) == 1
        [row] = stack.services.catalog.failovers(now=stack.clock.now(), days=1)
        assert (row.state, row.region_failover_id) == ("completed", region_id)
