"""Long Azure operations run on durable timers: a DR test's guest check and cleanup take the
virtual time the simulator gives them (no activity waits on them), deletes go in dependency
order, and the sweeper cleans up what a crashed test left the same way."""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from local.armsim.protocol import DISK_TYPE, NIC_TYPE, VM_TYPE, make_id
from local.armsim.rbac import Assignment
from local.azurite import Azurite
from local.stack import FLEETS, Stack, local_stack
from shared.activities.common import SOURCE_TAG
from shared.activities.retention import backups_in_use
from shared.adapters.credentials import SIMULATOR_TOKEN
from shared.domain.models import AuditEntry

START = datetime(2026, 11, 10, tzinfo=UTC)
WEB = "rg-app-eastus~web-01"  # tiny fleet: daily 02:00, replicates to westus2
DRTEST_EASTUS = "rg-backupdr-drtest-eastus"
CUSTOM = "rg-dr-mine"  # a group given with --test-resource-group
_prefixes = (f"timing{n}" for n in itertools.count())


@pytest.fixture
def stack(azurite: Azurite) -> Iterator[Stack]:
    with local_stack(
        FLEETS / "tiny.json", start=START, azurite=azurite, table_prefix=next(_prefixes)
    ) as running:
        yield running


def _deletes(stack: Stack, group: str) -> list[tuple[str, int]]:
    """(type segment, status) of every DELETE sent into a resource group, in order."""
    return [
        (r.path.split("/")[-2], r.status)
        for r in stack.simulator.requests
        if r.method == "DELETE" and f"/resourcegroups/{group}/".lower() in r.path.lower()
    ]


def _in_order(deletes: list[tuple[str, int]]) -> bool:
    """VMs, then NICs, then disks, each accepted (nothing refused for being still in use)."""
    order = ["virtualMachines", "networkInterfaces", "disks"]
    kinds = [order.index(kind) for kind, _ in deletes]
    return kinds == sorted(kinds) and all(status == 202 for _, status in deletes)


def test_a_dr_test_measures_its_guest_check_and_its_cleanup_in_virtual_time(
    stack: Stack,
) -> None:
    stack.host.run_timers(until=START + timedelta(hours=2))  # a backup with a replica
    instance = stack.host.start("dr_test_v2", input={"vm_key": WEB, "test_region": "westus2"})
    stack.host.run_until_idle()
    [test] = stack.services.catalog.dr_history(WEB, now=stack.clock.now(), days=1)
    assert stack.host.status(instance).output["id"] == test.id
    assert test.success, test.error_message
    assert test.cleanup_succeeded
    phases = test.phase_seconds
    assert all(seconds > 0 for seconds in phases.values()), phases
    shortest = 1 - stack.simulator.durations.jitter
    durations = stack.simulator.durations
    assert phases["guest_check"] >= durations.run_command_seconds * shortest
    deletes = durations.vm_delete_seconds + durations.nic_delete_seconds
    assert phases["cleanup"] >= (deletes + durations.disk_delete_seconds) * shortest
    assert test.rto_seconds is not None
    assert test.rto_seconds >= sum(phases[p] for p in ("restore", "create_vm", "boot"))
    deleted = _deletes(stack, "rg-backupdr-drtest-westus2")
    assert [kind for kind, _ in deleted] == ["virtualMachines", "networkInterfaces"] + ["disks"] * 2
    assert _in_order(deleted)
    left = stack.simulator.vms() + stack.simulator.nics() + stack.simulator.disks()
    assert [r["id"] for r in left if "drtest" in r["id"]] == []


def _crashed_test(
    stack: Stack, test_id: str, expires: datetime | str, group: str = DRTEST_EASTUS
) -> list[str]:
    """What a test that died midway leaves: a VM holding its NIC and OS disk, all tagged
    (`expires` a string: the expiry tag as someone garbled it)."""
    sim = stack.simulator
    ids = [
        make_id(sim.subscription, group, kind, f"{test_id}-{kind.rsplit('/', 1)[-1]}")
        for kind in (VM_TYPE, NIC_TYPE, DISK_TYPE)
    ]
    vm_id, nic_id, disk_id = ids
    expiry = expires if isinstance(expires, str) else expires.isoformat()
    tags = {"backupdr-test": test_id, "backupdr-expires": expiry}
    empty = {"createOption": "Empty"}
    sim.seed(
        disk_id,
        {
            "location": "eastus",
            "tags": tags,
            "managedBy": vm_id,
            "properties": {"diskSizeGB": 30, "creationData": empty},
        },
    )
    sim.seed(
        nic_id,
        {
            "location": "eastus",
            "tags": tags,
            "properties": {"ipConfigurations": [], "virtualMachine": {"id": vm_id}},
        },
    )
    storage = {"osDisk": {"osType": "Linux", "managedDisk": {"id": disk_id}}, "dataDisks": []}
    sim.seed(
        vm_id,
        {
            "location": "eastus",
            "tags": tags,
            "properties": {
                "storageProfile": storage,
                "networkProfile": {"networkInterfaces": [{"id": nic_id}]},
            },
        },
    )
    return ids


def test_the_sweeper_deletes_an_expired_tests_leftovers_kind_by_kind_and_spares_the_rest(
    stack: Stack,
) -> None:
    expired = _crashed_test(stack, "dr-crashed", START - timedelta(hours=1))
    current = _crashed_test(stack, "dr-current", START + timedelta(hours=3))
    instance = stack.host.start("sweeper")
    stack.host.run_until_idle()
    assert stack.host.status(instance).output == {
        "swept": {"eastus": ["dr-crashed"]},
        "not_clean": [],
    }
    remaining = {r.id for r in stack.services.gateway.list_tagged(DRTEST_EASTUS, "backupdr-test")}
    assert remaining == set(current)
    assert not remaining & set(expired)
    assert _in_order(_deletes(stack, DRTEST_EASTUS))
    assert stack.clock.now() - START >= timedelta(
        seconds=stack.simulator.durations.vm_delete_seconds * (1 - stack.simulator.durations.jitter)
    ), "the sweeper waited out the VM delete on durable timers"


@pytest.mark.parametrize(
    "garbled", ["next tuesday", "2026-11-10T00:00:00"], ids=["text", "no-zone"]
)
def test_an_expiry_tag_nobody_can_read_is_swept_and_stops_no_other_sweep(
    stack: Stack, garbled: str
) -> None:
    """It used to fail the sweeper's listing, in every region, on every run."""
    unreadable = _crashed_test(stack, "dr-garbled", garbled)
    expired = _crashed_test(stack, "dr-crashed", START - timedelta(hours=1))
    instance = stack.host.start("sweeper")
    stack.host.run_until_idle()
    assert stack.host.status(instance).output == {
        "swept": {"eastus": ["dr-crashed", "dr-garbled"]},
        "not_clean": [],
    }
    remaining = {r.id for r in stack.services.gateway.list_tagged(DRTEST_EASTUS, "backupdr-test")}
    assert not remaining & {*unreadable, *expired}


def _given_group(stack: Stack) -> None:
    """An operator's group for DR tests, where they gave the app the DR-test role (as a DR
    test in that group needs)."""
    stack.simulator.world.add_group(stack.simulator.subscription, CUSTOM, "eastus")
    principals = stack.simulator.authorization.principals
    app = principals[SIMULATOR_TOKEN]
    drtest = next(a for a in app.assignments if a.group == "rg-backupdr-drtest-{region}")
    principals[SIMULATOR_TOKEN] = dataclasses.replace(
        app, assignments=(*app.assignments, Assignment(drtest.role, group=CUSTOM))
    )


def _audit_creates(stack: Stack, resource_ids: list[str]) -> None:
    """The audit log's record of a DR test's creates, as `audited` writes it."""
    for resource_id in resource_ids:
        stack.services.catalog.audit(
            AuditEntry(
                at=stack.clock.now() - timedelta(hours=5),
                action="create",
                resource_id=resource_id,
                result="ok",
                vm_key=WEB,
                operation="dr_test",
            )
        )


def test_the_sweeper_also_sweeps_a_group_an_operator_gave_a_dr_test(stack: Stack) -> None:
    """`dr test --test-resource-group rg-dr-mine`: the test's creates are audited with their
    ids, which is how the sweeper learns of the group."""
    _given_group(stack)
    left = _crashed_test(stack, "dr-mine", START - timedelta(hours=1), group=CUSTOM)
    _audit_creates(stack, left)
    instance = stack.host.start("sweeper")
    stack.host.run_until_idle()
    assert stack.host.status(instance).output == {
        "swept": {CUSTOM: ["dr-mine"]},
        "not_clean": [],
    }
    assert stack.services.gateway.list_tagged(CUSTOM, "backupdr-test") == []
    assert _in_order(_deletes(stack, CUSTOM))


def test_a_backup_a_dr_test_restored_in_a_given_group_is_in_use_once_a_listing_names_it(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Retention looks for in-use backups in the groups DR tests were given too, as the audit
    log named them when last listed: the sweeper's hourly listing, or retention's own once that
    is IN_USE_FRESH old, kept in the catalog, so the fleet's retentions read the audit log
    once, not once per VM. A test given a group since the listing can at most have its backup
    soft-deleted before the next listing sees it (as with `restored_from`)."""
    stack.host.run_timers(until=START + timedelta(hours=3))  # a backup of each VM
    catalog = stack.services.catalog
    backup = catalog.list_backups(WEB)[0]
    _given_group(stack)
    disk = make_id(stack.simulator.subscription, CUSTOM, DISK_TYPE, "dr-mine-os")
    empty = {"createOption": "Empty"}
    stack.simulator.seed(
        disk,
        {
            "location": "eastus",
            "tags": {SOURCE_TAG: backup.backup_id},
            "properties": {"diskSizeGB": 30, "creationData": empty},
        },
    )
    assert backups_in_use(stack.services, [backup]) == set()
    _audit_creates(stack, [disk])
    reads: list[dict[str, Any]] = []
    read = catalog.audit_entries

    def counted(**asked: Any) -> list[AuditEntry]:
        reads.append(asked)
        return read(**asked)

    monkeypatch.setattr(catalog, "audit_entries", counted)
    latest = list(catalog.latest_backups().values())
    assert len(latest) > 1
    assert [backups_in_use(stack.services, [b]) for b in latest] == [set()] * len(latest)
    assert reads == []
    stack.host.start("sweeper")
    stack.host.run_until_idle()
    assert backups_in_use(stack.services, [backup]) == {backup.backup_id}


def _restore_from(stack: Stack, backup_id: str, group: str = DRTEST_EASTUS) -> None:
    """A disk a test restored from `backup_id`, as the DR test tags it."""
    stack.simulator.seed(
        make_id(stack.simulator.subscription, group, DISK_TYPE, "dr-late-os"),
        {
            "location": "eastus",
            "tags": {SOURCE_TAG: backup_id},
            "properties": {"diskSizeGB": 30, "creationData": {"createOption": "Empty"}},
        },
    )


def _group_lists(stack: Stack) -> int:
    return sum(
        1
        for r in stack.simulator.requests
        if r.method == "GET"
        and r.path.lower().endswith(f"/resourcegroups/{DRTEST_EASTUS}/resources")
    )


def test_retention_takes_the_sweepers_list_of_a_dr_test_group_while_it_is_fresh(
    stack: Stack,
) -> None:
    """The hourly sweeper's list of a DR-test group says what is restored there: retention reads
    it from the catalog, not from ARM once per VM; the next sweep sees a later restore."""
    stack.host.run_timers(until=START + timedelta(hours=3))  # a backup of web-01
    backup = stack.services.catalog.list_backups(WEB)[0]
    stack.host.start("sweeper")
    stack.host.run_until_idle()
    _restore_from(stack, backup.backup_id)
    lists = _group_lists(stack)

    assert backups_in_use(stack.services, [backup]) == set()  # as the sweep found the group
    assert _group_lists(stack) == lists
    stack.host.start("sweeper")
    stack.host.run_until_idle()
    assert backups_in_use(stack.services, [backup]) == {backup.backup_id}
