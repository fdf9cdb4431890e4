"""VMs whose disks Azure cannot snapshot (an ephemeral OS disk, unmanaged VHDs) are reported as not
protectable, with the reason, and never backed up: a backup of fewer disks than the VM has would
not restore it. Through the gateway on the real SDK clients, the fleet timer in the local host,
Azurite's catalog, the fleet status and `backupdr status`'s view of it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from rich.console import Console

from cli.status import _views
from local.azurite import Azurite
from local.stack import FLEETS, Stack, local_stack
from shared.activities.backup import begin_backup
from shared.health import fleet_status
from shared.inputs import InputError, manual_backup

START = datetime(2026, 11, 10, tzinfo=UTC)
GROUP = "rg-app-eastus"
POLICY = {"backup-policy": "schedule=0 2 * * *;daily=7;weekly=4;monthly=12;replicate=westus2"}
EPHEMERAL_REASON = "ephemeral OS disk: Azure cannot snapshot it"
VHD_REASON = (
    "unmanaged (VHD) OS disk: Azure snapshots managed disks only; "
    "unmanaged (VHD) disk lun 0: Azure snapshots managed disks only; "
    "unmanaged (VHD) disk lun 1: Azure snapshots managed disks only"
)


def _fleet() -> dict[str, Any]:
    """The tiny fleet plus an ephemeral-OS VM (with a managed data disk) and a VM on VHDs, both
    tagged for daily backups, and an ephemeral-OS VM with no policy."""
    fleet: dict[str, Any] = json.loads((FLEETS / "tiny.json").read_text())
    vm = {"resource_group": GROUP, "size": "Standard_D4ds_v5", "os_type": "Linux"}
    fleet["subscriptions"][0]["vms"] += [
        {
            **vm,
            "name": "stateless-01",
            "tags": POLICY,
            "os_disk": {"ephemeral": True, "placement": "ResourceDisk"},
            "data_disks": [{"lun": 0, "size_gb": 64, "sku": "Premium_LRS"}],
        },
        {
            **vm,
            "name": "legacy-01",
            "tags": POLICY,
            "os_disk": {"unmanaged": True},
            "data_disks": [{"lun": 0, "unmanaged": True}, {"lun": 1, "unmanaged": True}],
        },
        {**vm, "name": "stateless-02", "os_disk": {"ephemeral": True}},
    ]
    return fleet


@pytest.fixture(scope="module")
def day(azurite: Azurite) -> Iterator[Stack]:
    with local_stack(_fleet(), start=START, azurite=azurite, table_prefix="unprotectable") as stack:
        stack.host.run_timers(until=START + timedelta(days=1))
        stack.host.run_until_idle()
        yield stack


def test_the_gateway_lists_only_managed_disks_and_says_why_the_others_are_left_out(
    day: Stack,
) -> None:
    gateway = day.services.gateway
    stateless = gateway.get_vm(GROUP, "stateless-01")
    assert [d.role for d in stateless.disks] == ["lun0"]
    assert stateless.not_protectable == (EPHEMERAL_REASON,)
    legacy = gateway.get_vm(GROUP, "legacy-01")
    assert legacy.disks == ()
    assert legacy.not_protectable_reason == VHD_REASON
    assert gateway.get_vm(GROUP, "web-01").not_protectable == ()


def test_every_fleet_run_reports_them_not_protectable_and_backs_up_the_rest(day: Stack) -> None:
    runs = [s for s in day.host.instances() if s.name == "fleet_backup_v4"]
    assert len(runs) == 96  # every 15 minutes
    for run in runs:
        assert run.output["not_protectable"] == [
            {"vm": "legacy-01", "vm_key": f"{GROUP}~legacy-01", "reason": VHD_REASON},
            {"vm": "stateless-01", "vm_key": f"{GROUP}~stateless-01", "reason": EPHEMERAL_REASON},
        ]
        assert "failed" not in run.output
    for name in ("web-01", "db-01"):
        assert day.services.catalog.list_backups(f"{GROUP}~{name}"), name


def test_nothing_is_taken_or_recorded_for_them(day: Stack) -> None:
    catalog = day.services.catalog
    for name in ("stateless-01", "legacy-01", "stateless-02"):
        key = f"{GROUP}~{name}"
        assert catalog.list_backups(key, include_deleted=True) == [], name
        assert catalog.audit_entries(since=START, vm_key=key) == [], name
    sources = {
        s["properties"]["creationData"]["sourceResourceId"] for s in day.simulator.snapshots()
    }
    assert not [s for s in sources if "stateless" in s or "legacy" in s]
    assert not [r for r in day.simulator.requests if r.method == "PUT" and "legacy" in r.path]


def test_a_backup_started_anyway_takes_nothing_and_records_nothing(day: Stack) -> None:
    """The VM was listed with managed disks, then changed: the backup step reads it again."""
    before = len(day.simulator.requests)
    slot = START + timedelta(days=1, hours=2)
    begun = begin_backup(
        {"resource_group": GROUP, "name": "stateless-01", "slot": slot.isoformat()},
        day.services,
    )
    assert (begun["state"], begun["error"]) == ("not_protectable", EPHEMERAL_REASON)
    assert [r.method for r in day.simulator.requests[before:]] == ["GET"]
    assert day.services.catalog.get_backup(f"{GROUP}~stateless-01", begun["backup_id"]) is None


def test_a_manual_backup_is_refused_before_anything_starts(day: Stack) -> None:
    legacy = day.services.gateway.get_vm(GROUP, "legacy-01")
    with pytest.raises(InputError, match="legacy-01 cannot be backed up: unmanaged") as refused:
        manual_backup(legacy, day.clock.now(), day.services.settings.regions)
    assert refused.value.code == "NotProtectable"


def test_fleet_status_lists_them_with_the_reason_and_is_not_healthy(day: Stack) -> None:
    health = fleet_status(
        day.services.gateway, day.services.catalog, day.clock.now(), day.services.settings.regions
    )
    # Each names its resource group too: the needs-operator list shows VMs by name and group.
    assert health["not_protectable"] == [
        {
            "vm": "legacy-01",
            "vm_key": f"{GROUP}~legacy-01",
            "resource_group": GROUP,
            "reason": VHD_REASON,
        },
        {
            "vm": "stateless-01",
            "vm_key": f"{GROUP}~stateless-01",
            "resource_group": GROUP,
            "reason": EPHEMERAL_REASON,
        },
    ]
    assert [(e["vm"], e["kind"]) for e in health["needs_operator"]] == [
        ("legacy-01", "not_protectable"),
        ("stateless-01", "not_protectable"),
    ]
    assert {v["vm"] for v in health["vms"]} == {"web-01", "db-01"}
    assert "stateless-02" in health["unprotected"]  # no policy: nothing asked, nothing wrong
    assert health["healthy"] is False
    console = Console(width=200, record=True)
    for part in _views(health):
        console.print(part)
    text = console.export_text()
    assert "not protectable" in text
    assert "stateless-01" in text
    assert EPHEMERAL_REASON in text
