"""A policy that names a region the deployment does not serve is misconfigured, everywhere.

Infra makes a backup group and a DR-test group in every backup region and a recovery group too
in every DR region, and hands the app both lists (BACKUPDR_BACKUP_REGIONS, BACKUPDR_DR_REGIONS).
A tag written in the portal with `replicate=centralus` used to be backed up and then copied
to a group that does not exist; now it is reported with the reason and nothing is started.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from typer.testing import CliRunner

from cli.main import app
from local.azurite import Azurite
from local.stack import FLEETS, Stack, local_stack
from shared.health import fleet_status

START = datetime(2026, 11, 10, 1, tzinfo=UTC)
SUB = "00000000-0000-0000-0000-000000000001"
WEB = "rg-app-eastus~web-01"
WEB_ID = (
    f"/subscriptions/{SUB}/resourceGroups/rg-app-eastus/providers/"
    "Microsoft.Compute/virtualMachines/web-01"
)


@pytest.fixture
def stack(azurite: Azurite) -> Iterator[Stack]:
    with local_stack(
        FLEETS / "tiny.json", start=START, azurite=azurite, table_prefix="served"
    ) as s:
        yield s


def test_the_app_is_told_the_regions_infra_made_groups_in(stack: Stack) -> None:
    regions = stack.services.settings.regions
    assert regions.backup == frozenset({"eastus", "westus2"})
    assert regions.dr == frozenset({"westus2"})


@pytest.mark.parametrize("region", ["centralus", "marsnorth"])
def test_a_tag_naming_an_unserved_region_is_reported_and_never_backed_up(
    stack: Stack, region: str
) -> None:
    stack.operator.set_policy_tag(WEB_ID, f"schedule=0 2 * * *;daily=7;replicate={region}")
    stack.host.run_timers(until=START + timedelta(days=2))
    stack.host.run_until_idle()
    assert stack.services.catalog.list_backups(WEB, include_deleted=True) == []
    health = fleet_status(
        stack.services.gateway,
        stack.services.catalog,
        stack.clock.now(),
        stack.services.settings.regions,
    )
    errors = {m["vm"]: m["error"] for m in health["misconfigured"]}
    assert errors["web-01"] == (
        f"replicate='{region}': not a DR region of this deployment (DR regions: westus2)"
    )
    assert not [r for r in stack.simulator.requests if region in r.path.lower()]


def test_a_manual_backup_of_such_a_vm_is_refused_before_anything_starts(stack: Stack) -> None:
    stack.operator.set_policy_tag(WEB_ID, "daily=7;replicate=centralus")
    seen = len(stack.simulator.requests)
    result = CliRunner().invoke(
        app, ["-o", "json", "backup", "trigger", "web-01"], env=stack.cli_env()
    )
    assert result.exit_code == 2
    assert "not a DR region of this deployment" in result.stderr
    writes = [r for r in stack.simulator.requests[seen:] if r.method in ("PUT", "PATCH", "POST")]
    assert writes == []
    assert stack.services.catalog.list_backups(WEB, include_deleted=True) == []
