"""`status` checks that every restorable backup's snapshots (and complete replicas) still exist
in Azure, with one snapshot list per backup resource group, and flags the one that lost any."""

from __future__ import annotations

import itertools
import json
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from cli.main import app
from local.azurite import Azurite
from local.stack import FLEETS, Stack, local_stack
from shared.domain.models import BackupState, ReplicationStatus
from shared.health import fleet_status
from shared.ports import ComputeGateway

START = datetime(2026, 11, 10, tzinfo=UTC)
WEB = "rg-app-eastus~web-01"  # tiny fleet: daily 02:00, two disks, replicates to westus2
_prefixes = (f"statussnap{n}" for n in itertools.count())


@pytest.fixture
def stack(azurite: Azurite) -> Iterator[Stack]:
    with local_stack(
        FLEETS / "tiny.json", start=START, azurite=azurite, table_prefix=next(_prefixes)
    ) as running:
        running.host.run_timers(until=START + timedelta(days=2, hours=6))
        yield running


class _Lists:
    """A gateway that counts snapshot lists per resource group (None: the subscription)."""

    def __init__(self, inner: ComputeGateway) -> None:
        self._inner = inner
        self.lists: Counter[str | None] = Counter()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def list_snapshots(self, resource_group: str | None = None) -> Any:
        self.lists[resource_group] += 1
        return self._inner.list_snapshots(resource_group)


def _cli(stack: Stack, *args: str) -> Result:
    return CliRunner().invoke(app, list(args), env={**stack.cli_env(), "COLUMNS": "250"})


def test_status_flags_exactly_the_backup_whose_snapshot_was_deleted(stack: Stack) -> None:
    svc = stack.services
    backups = [b for b in svc.catalog.list_backups(WEB) if b.state is BackupState.COMPLETED]
    assert len(backups) >= 2
    assert (
        fleet_status(svc.gateway, svc.catalog, stack.clock.now(), svc.settings.regions)[
            "missing_snapshots"
        ]
        == []
    )
    victim = backups[1]
    gone = victim.snapshots[1].snapshot_id
    stack.operator.delete_snapshot(gone)  # behind the app's back
    health = json.loads(_cli(stack, "-o", "json", "status").stdout)
    # Named by resource group too, as the needs-operator list shows VMs.
    assert health["missing_snapshots"] == [
        {
            "vm_key": WEB,
            "vm": "web-01",
            "resource_group": "rg-app-eastus",
            "backup_id": victim.backup_id,
            "missing": [gone],
        }
    ]
    assert health["healthy"] is False, "a backup that cannot be restored needs an operator"
    assert [(e["vm"], e["kind"]) for e in health["needs_operator"]] == [
        ("web-01", "missing_snapshots")
    ]
    table = _cli(stack, "status")
    assert table.exit_code == 1
    assert victim.backup_id in table.stdout
    assert gone.rsplit("/", 1)[-1] in table.stdout


def test_a_lost_complete_replica_is_flagged_with_one_list_per_backup_group(stack: Stack) -> None:
    svc = stack.services
    backup = next(
        b
        for b in svc.catalog.list_backups(WEB)
        if b.replication_status is ReplicationStatus.COMPLETED
    )
    replica = backup.snapshots[0].replica_id
    assert replica is not None
    stack.operator.delete_snapshot(replica)
    lists = _Lists(svc.gateway)
    health = fleet_status(lists, svc.catalog, stack.clock.now(), svc.settings.regions)
    assert [(m["backup_id"], m["missing"]) for m in health["missing_snapshots"]] == [
        (backup.backup_id, [replica])
    ]
    groups = {svc.settings.backup_group(region).lower() for region in ("eastus", "westus2")}
    per_group = {g.lower(): n for g, n in lists.lists.items() if g is not None}
    assert per_group == dict.fromkeys(groups, 1), "one list per backup group, not per backup"
