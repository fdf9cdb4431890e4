"""Each action infra/ grants the app is needed: without any one of them, a workflow fails.

One short scenario exercises every workflow on a one-VM fleet through the real timers: backups
every 20 minutes, retention deleting snapshots and replicas, cross-region copies, verification,
a DR test, the sweeper removing a crashed test's leftover disk, the fleet status, and two
failovers into the recovery group (one that comes up, one whose VM fails to allocate and is
cleaned up). With the
roles read from infra/ it runs clean; with any single action taken from its role, the simulator
refuses some request with ARM's 403 and some workflow (or the status) fails.
"""

from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from local.armsim.authz import Refusal
from local.armsim.faults import FaultRule
from local.armsim.infra_roles import app_assignments
from local.armsim.rbac import Principal
from local.azurite import Azurite
from local.stack import Stack, local_stack
from shared.activities.failover import failover_id
from shared.adapters.credentials import SIMULATOR_TOKEN
from shared.domain.models import Backup, BackupState, SnapshotRef, Tier
from shared.health import fleet_status

SUB = "00000000-0000-0000-0000-000000000001"
START = datetime(2026, 11, 10, 0, 40, tzinfo=UTC)
END = START + timedelta(hours=1, minutes=12)  # 4 backups, 1 pruned, 2 verified, 1 DR test
VNETS = [
    {
        "name": "vnet-backupdr-drtest",
        "address_prefix": "10.90.0.0/16",
        "subnets": [{"name": "snet-restore", "address_prefix": "10.90.1.0/24", "isolated": True}],
    }
]
RECOVERY_VNETS = [
    {
        "name": "vnet-backupdr-recovery",
        "address_prefix": "10.91.0.0/16",
        "subnets": [{"name": "snet-recovery", "address_prefix": "10.91.1.0/24", "isolated": False}],
    }
]
POLICY = (
    "schedule=*/20 * * * *;daily=1;weekly=0;monthly=0;replicate=westus2;verify=daily;drtest=daily"
)
FLEET = {
    "subscriptions": [
        {
            "id": SUB,
            "resource_groups": [
                {"name": "rg-app-eastus", "region": "eastus"},
                {"name": "rg-backups-eastus", "region": "eastus"},
                {"name": "rg-backupdr-drtest-eastus", "region": "eastus", "vnets": VNETS},
                {"name": "rg-backups-westus2", "region": "westus2"},
                {"name": "rg-backupdr-drtest-westus2", "region": "westus2", "vnets": VNETS},
                {
                    "name": "rg-backupdr-recovery-westus2",
                    "region": "westus2",
                    "vnets": RECOVERY_VNETS,
                },
            ],
            "vms": [
                {
                    "name": "web-01",
                    "resource_group": "rg-app-eastus",
                    "tags": {"backup-policy": POLICY},
                    "os_disk": {"size_gb": 8},
                }
            ],
        }
    ]
}
# Verification and DR tests hourly, copies every 10 minutes: every workflow within the window.
SETTINGS = {
    "BACKUPDR_VERIFY_SCHEDULE": "0 20 * * * *",
    "BACKUPDR_DRTEST_SCHEDULE": "0 30 * * * *",
    "BACKUPDR_REPLICATE_SCHEDULE": "0 */10 * * * *",
}
WEB = "rg-app-eastus~web-01"
LEFTOVER = (
    f"/subscriptions/{SUB}/resourceGroups/rg-backupdr-drtest-eastus/providers/"
    "Microsoft.Compute/disks/crashed-test-disk"
)
OLD = START - timedelta(days=40)
SOFT_DELETED = (
    f"/subscriptions/{SUB}/resourceGroups/rg-backups-eastus/providers/"
    "Microsoft.Compute/snapshots/web-01-soft-deleted"
)
WEB_DISK = (
    f"/subscriptions/{SUB}/resourceGroups/rg-app-eastus/providers/"
    "Microsoft.Compute/disks/web-01-osdisk"
)
REFUSED = {"AuthorizationFailed", "LinkedAuthorizationFailed"}
# Granted for Azure, where the simulator is laxer: it answers every long-running operation at
# locations/{region}/operations, while DiskRP polls at locations/{region}/DiskOperations (the
# Azure Disk CSI driver's role needs it: openshift/cluster-storage-operator#582), which the
# app's snapshot deletes wait on.
BEYOND_THE_SIMULATOR = {("fleetReader", "Microsoft.Compute/locations/DiskOperations/read")}
GRANTS = [(a.role.name, action) for a in app_assignments() for action in a.role.actions]
_prefixes = (f"leastpriv{n}" for n in itertools.count())


@dataclass(frozen=True)
class Outcome:
    refusals: list[Refusal]
    failures: list[str]  # what failed, one line each
    paths: list[str]  # every ARM path the app requested


def without(principal: Principal, role: str, action: str) -> Principal:
    """`principal` with `action` taken out of its assigned role `role`."""
    return dataclasses.replace(
        principal,
        assignments=[
            dataclasses.replace(
                a,
                role=dataclasses.replace(
                    a.role, actions=tuple(x for x in a.role.actions if x != action)
                ),
            )
            if a.role.name == role
            else a
            for a in principal.assignments
        ],
    )


def run_scenario(azurite: Azurite, drop: tuple[str, str] | None = None) -> Outcome:
    with local_stack(
        FLEET, start=START, azurite=azurite, table_prefix=next(_prefixes), settings=SETTINGS
    ) as stack:
        sim = stack.simulator
        sim.seed(  # a DR test that crashed yesterday left a disk; the sweeper must delete it
            LEFTOVER,
            {
                "location": "eastus",
                "tags": {
                    "managed-by": "backupdr",
                    "backupdr-test": "dr-crashed",
                    "backupdr-expires": (START - timedelta(days=1)).isoformat(),
                },
                "properties": {"creationData": {"createOption": "Empty"}, "diskSizeGB": 8},
            },
        )
        _seed_soft_deleted(stack)
        principals = sim.authorization.principals
        if drop is not None:
            principals[SIMULATOR_TOKEN] = without(principals[SIMULATOR_TOKEN], *drop)
        stack.host.run_timers(until=END)
        stack.host.run_until_idle()
        doomed = _fail_over(stack)
        failures = [
            f"{i.name} {i.instance_id}: {i.runtime_status} {_summary(i.output)}"
            for i in stack.host.instances()
            if (i.runtime_status != "Completed" or _failed(i.output))
            and not (i.instance_id.startswith(doomed) and _cleaned_up(i.output))
        ]
        try:
            fleet_status(
                stack.services.gateway,
                stack.services.catalog,
                stack.clock.now(),
                stack.services.settings.regions,
            )
        except Exception as error:  # what GET /api/status answers as a 500
            failures.append(f"fleet status: {error}")
        if sim.world.find(LEFTOVER) is not None:
            failures.append("sweeper: the crashed test's disk is still there")
        if sim.world.find(SOFT_DELETED) is not None:
            failures.append("retention: the soft-deleted backup past its window was not purged")
        return Outcome(list(sim.authorization.refusals), failures, [r.path for r in sim.requests])


def _seed_soft_deleted(stack: Stack) -> None:
    """A backup retention soft-deleted past the window: the first retention run purges it."""
    stack.simulator.seed(
        SOFT_DELETED,
        {
            "location": "eastus",
            "tags": {"managed-by": "backupdr", "backup-deleted-at": OLD.isoformat()},
            "properties": {
                "creationData": {"createOption": "Copy", "sourceResourceId": WEB_DISK},
                "incremental": True,
                "diskSizeGB": 8,
            },
        },
    )
    stack.services.catalog.save_backup(
        Backup(
            backup_id="20261001t020000z-soft-deleted",
            vm_key=WEB,
            vm_id=f"/subscriptions/{SUB}/resourceGroups/rg-app-eastus/providers/"
            "Microsoft.Compute/virtualMachines/web-01",
            vm_name="web-01",
            region="eastus",
            slot=OLD,
            taken_at=OLD,
            tier=Tier.DAILY,
            state=BackupState.SOFT_DELETED,
            deleted_at=OLD,
            snapshots=(SnapshotRef("os", WEB_DISK, SOFT_DELETED, 8),),
        )
    )


def _fail_over(stack: Stack) -> str:
    """Fail web-01 over (it comes up), then again with its VM failing to allocate (the restore
    deletes what it made); the doomed one's instance id prefix."""
    now = stack.clock.now()
    vm = {"vm_key": WEB, "vm_name": "web-01", "target_region": "westus2"}
    first = failover_id(WEB, now)
    stack.host.start("failover_vm", {**vm, "failover_id": first}, first)
    stack.host.run_until_idle()
    stack.simulator.add_fault(FaultRule(operation="vms.create", kind="allocation-failed"))
    doomed = failover_id(WEB, stack.clock.now() + timedelta(seconds=1))
    stack.host.start("failover_vm", {**vm, "failover_id": doomed}, doomed)
    stack.host.run_until_idle()
    stack.simulator.clear_faults()
    return doomed


def _cleaned_up(output: Any) -> bool:
    """The failed failover, or its restore, ended as it should: failed, and cleaned up."""
    if not isinstance(output, dict) or output.get("state") != "failed":
        return False
    return "AllocationFailed" in str(output.get("error")) and "clean-up" not in str(
        output.get("error")
    )


def _failed(output: Any) -> bool:
    """A workflow's own verdict: a step that did not complete, a check that did not pass."""
    if not isinstance(output, dict):
        return False
    if "state" in output and output["state"] != "completed":
        return True
    if (output.get("retention") or {}).get("failed"):  # a backup whose retention could not run
        return True
    return output.get("success") is False or bool(output.get("not_clean"))


def _summary(output: Any) -> str:
    if isinstance(output, dict):
        output = output.get("error") or output.get("error_message") or output.get("state")
    return str(output)[:300]


@pytest.fixture(scope="module")
def baseline(azurite: Azurite) -> Outcome:
    return run_scenario(azurite)


def test_with_infras_roles_every_workflow_passes(baseline: Outcome) -> None:
    assert baseline.refusals == []
    assert baseline.failures == []


def test_what_is_granted_beyond_the_simulator_is_indeed_never_asked_for(
    baseline: Outcome,
) -> None:
    """Once the simulator polls DiskRP as Azure does, the action joins the checks below."""
    assert set(GRANTS) >= BEYOND_THE_SIMULATOR
    assert not any("/diskoperations/" in p.lower() for p in baseline.paths)


@pytest.mark.parametrize(
    "grant",
    [g for g in GRANTS if g not in BEYOND_THE_SIMULATOR],
    ids=[
        f"{role}-{action}" for role, action in GRANTS if (role, action) not in BEYOND_THE_SIMULATOR
    ],
)
def test_without_any_one_granted_action_a_workflow_fails(
    azurite: Azurite, grant: tuple[str, str]
) -> None:
    outcome = run_scenario(azurite, grant)
    action = grant[1]
    codes = {r.code for r in outcome.refusals if r.action == action}
    assert codes, outcome.refusals
    assert codes <= REFUSED
    assert outcome.failures
