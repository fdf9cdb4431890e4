"""The `backupdr` command line, run in-process against the ARM simulator and Azurite.

The CLI reaches the simulator over HTTPS as it would reach Azure, and moves the simulator's
virtual clock through its admin endpoints while the workflows wait on durable timers. One
module-wide fleet is worked on once (backups, copies, verifications, DR tests) and then read;
tests that change policy tags get a fresh simulator.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from cli.main import app
from local.armsim import ArmSimulator, FaultRule
from local.azurite import Azurite
from local.stack import FLEETS
from shared.clock import VirtualClock

START = datetime(2026, 11, 10, 9, 0, tzinfo=UTC)
MALFORMED = "daily=x"
_prefixes = (f"cli{n}" for n in itertools.count())

Cli = Callable[..., Result]


def _fleet() -> dict[str, Any]:
    """The tiny fleet plus a VM whose policy tag is malformed."""
    fleet: dict[str, Any] = json.loads((FLEETS / "tiny.json").read_text())
    vms = fleet["subscriptions"][0]["vms"]
    bad = {**vms[2], "name": "bad-01", "tags": {"backup-policy": MALFORMED}}
    vms.append(bad)
    app_group = fleet["subscriptions"][0]["resource_groups"][0]
    app_group["vnets"] = [
        {
            "name": "vnet-app",
            "address_prefix": "10.1.0.0/16",
            "subnets": [{"name": "snet-app", "address_prefix": "10.1.1.0/24"}],
        }
    ]
    return fleet


class World:
    """A running simulator, a table prefix, and a CLI pointed at both."""

    def __init__(self, sim: ArmSimulator, url: str, ca_path: Path, azurite: Azurite) -> None:
        self.sim = sim
        self.env = {
            "BACKUPDR_SIMULATOR": url,
            "BACKUPDR_CA_BUNDLE": str(ca_path),
            "AZURE_SUBSCRIPTION_ID": sim.subscription,
            "BACKUPDR_TABLES_CONNECTION": azurite.connection_string,
            "BACKUPDR_TABLE_PREFIX": next(_prefixes),
            "BACKUPDR_LRO_POLL_SECONDS": "0.05",
            "COLUMNS": "250",
        }

    def __call__(self, *args: str) -> Result:
        return CliRunner().invoke(app, list(args), env=self.env)

    def json(self, *args: str, code: int = 0) -> Any:
        result = self("-o", "json", *args)
        assert result.exit_code == code, result.stderr
        return json.loads(result.stdout)


def _world(azurite: Azurite) -> Iterator[World]:
    sim = ArmSimulator(clock=VirtualClock(START), fleet=_fleet())
    with sim.serve() as server:
        yield World(sim, server.url, server.ca_path, azurite)


@pytest.fixture
def fresh(azurite: Azurite) -> Iterator[World]:
    """A fleet nobody has touched yet, for tests that change it."""
    yield from _world(azurite)


class Seeded:
    """The module-wide fleet after a morning of operator work, with what each command said."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.web_backup = world.json("backup", "trigger", "web-01")
        self.db_monthly = world("backup", "trigger", "db-01", "--tier", "monthly")
        self.db_second = world("backup", "trigger", "db-01", "--tier", "monthly")
        self.verify_one = world("-o", "json", "backup", "verify", self.web_backup["backup_id"])
        self.verify_all = world("backup", "verify-all", "db-01", "-o", "json")
        self.dr_test = world.json("dr", "test", "web-01")
        self.dr_all = world.json("dr", "test-all")
        self.dr_elsewhere = world(
            "dr", "test", "web-01", "--test-resource-group", "rg-missing", "-o", "json"
        )
        world.sim.add_fault(FaultRule(operation="vms.create", kind="allocation-failed"))
        self.dr_failed = world("dr", "test", "web-01", "-o", "json")
        world.sim.clear_faults()


@pytest.fixture(scope="module")
def seeded(azurite: Azurite) -> Iterator[Seeded]:
    for world in _world(azurite):
        yield Seeded(world)


def _one_error_line(result: Result) -> str:
    """The one error a refused command said on stderr, as its `error: ...` line reads (with
    `-o json` the error is one JSON document there: its message, and the exit code)."""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    if lines[0].startswith("{"):
        document = json.loads(lines[0])
        assert document["exit_code"] == result.exit_code
        return f"error: {document['error']}"
    assert lines[0].startswith("error: ")
    return lines[0]


class TestWork:
    """Commands that do work run the app's workflows and exit 0 only when they succeeded."""

    def test_trigger_backs_up_every_disk_and_copies_to_the_policy_region(
        self, seeded: Seeded
    ) -> None:
        backup = seeded.web_backup["backup"]
        assert seeded.web_backup["state"] == "completed"
        assert [s["disk_role"] for s in backup["snapshots"]] == ["os", "lun0"]
        assert (backup["replica_region"], backup["replication_status"]) == (
            "westus2",
            "completed",
        )

    def test_trigger_with_a_tier_the_calendar_does_not_give_exits_1_and_says_why(
        self, seeded: Seeded
    ) -> None:
        assert seeded.db_monthly.exit_code == 0, seeded.db_monthly.stderr
        assert seeded.db_second.exit_code == 1
        assert "is daily, not monthly" in seeded.db_second.stderr

    def test_verify_and_verify_all_record_a_passed_verification_per_backup(
        self, seeded: Seeded
    ) -> None:
        assert seeded.verify_one.exit_code == 0, seeded.verify_one.stderr
        assert [r["success"] for r in json.loads(seeded.verify_one.stdout)["results"]] == [True]
        assert seeded.verify_all.exit_code == 0, seeded.verify_all.stderr
        assert [r["success"] for r in json.loads(seeded.verify_all.stdout)["results"]] == [
            True,
            True,
        ]

    def test_dr_test_restores_in_the_replicate_region_and_measures_rto(
        self, seeded: Seeded
    ) -> None:
        (result,) = seeded.dr_test["results"]
        assert (result["success"], result["test_region"]) == (True, "westus2")
        assert result["rto_seconds"] > 0

    def test_dr_test_all_tests_every_vm_whose_policy_replicates(self, seeded: Seeded) -> None:
        assert [r["vm_name"] for r in seeded.dr_all["results"]] == ["web-01"]

    def test_a_dr_test_that_fails_exits_1_and_is_recorded_as_failed(self, seeded: Seeded) -> None:
        assert seeded.dr_failed.exit_code == 1
        (result,) = json.loads(seeded.dr_failed.stdout)["results"]
        assert result["success"] is False
        assert "AllocationFailed" in result["error_message"]

    def test_a_dr_test_into_a_group_that_does_not_exist_is_refused_before_it_starts(
        self, seeded: Seeded
    ) -> None:
        assert seeded.dr_elsewhere.exit_code == 2
        refused = json.loads(seeded.dr_elsewhere.stderr)  # -o json: the refusal is JSON too
        assert "DR-test group rg-missing does not exist" in refused["error"]
        assert seeded.dr_elsewhere.stdout == ""

    def test_replicate_and_replicate_all_copy_backups_and_track_their_jobs(
        self, fresh: World
    ) -> None:
        first = fresh.json("backup", "trigger", "db-01")
        fresh.json("backup", "trigger", "db-01")
        copied = fresh.json("backup", "replicate", first["backup_id"], "--target-region", "westus2")
        assert [r["state"] for r in copied["results"]] == ["completed"]
        rest = fresh.json(
            "backup", "replicate-all", "db-01", "--target-region", "westus2", "--max-parallel", "1"
        )
        assert [r["state"] for r in rest["results"]] == ["completed"]
        status = fresh.json("backup", "replication-status", "db-01")
        assert {b["replication_status"] for b in status["backups"]} == {"completed"}
        jobs = fresh.json("backup", "replication-jobs", "--status", "completed")["jobs"]
        assert len(jobs) == 2


class TestRestore:
    """`backup restore` creates new disks (and a VM) beside the original, after confirmation."""

    def test_restores_new_disks_and_a_new_vm_without_touching_the_original(
        self, fresh: World
    ) -> None:
        backup_id = fresh.json("backup", "trigger", "web-01")["backup_id"]
        original = next(vm for vm in fresh.sim.vms() if vm["name"] == "web-01")
        restored = fresh.json(
            "backup",
            "restore",
            "web-01",
            "--backup",
            backup_id,
            "--new-vm",
            "web-01-restored",
            "--subnet",
            "vnet-app/snet-app",
            "--yes",
        )
        assert restored["state"] == "completed"
        assert len(restored["disks"]) == 2
        assert all("/resourceGroups/rg-app-eastus/" in d for d in restored["disks"])
        vms = {vm["name"]: vm for vm in fresh.sim.vms()}
        assert vms["web-01"] == original
        assert restored["vm_id"].endswith("/web-01-restored")

    def test_declining_the_confirmation_creates_nothing_and_exits_1(self, fresh: World) -> None:
        backup_id = fresh.json("backup", "trigger", "db-01")["backup_id"]
        disks = len(fresh.sim.disks())
        result = CliRunner().invoke(
            app,
            ["backup", "restore", "db-01", "--backup", backup_id, "--disks-only"],
            input="n\n",
            env=fresh.env,
        )
        assert result.exit_code == 1
        assert len(fresh.sim.disks()) == disks

    @pytest.mark.parametrize(
        ("args", "message"),
        [
            (["--new-vm", "web-01", "--subnet", "vnet-app/snet-app"], "already exists"),
            (["--new-vm", "web-02", "--subnet", "vnet-app/snet-x"], "does not exist"),
            ([], "give one of --new-vm NAME"),
            (["--new-vm", "web-02", "--disks-only"], "exclude each other"),
        ],
        ids=["existing-vm-name", "missing-subnet", "neither", "both"],
    )
    def test_bad_restore_input_exits_2(self, fresh: World, args: list[str], message: str) -> None:
        backup_id = fresh.json("backup", "trigger", "web-01")["backup_id"]
        result = fresh("backup", "restore", "web-01", "--backup", backup_id, "--yes", *args)
        assert result.exit_code == 2
        assert message in _one_error_line(result)


class TestPolicy:
    """configure/disable write the backup-policy tag; show reads it back in words."""

    def test_configure_merges_options_into_the_tag_and_show_describes_it(
        self, fresh: World
    ) -> None:
        configured = fresh.json(
            "backup", "configure", "scratch-01", "--daily", "3", "--replicate-to", "westus2"
        )
        assert configured["tag"] == (
            "schedule=0 2 * * *;daily=3;weekly=4;monthly=12;replicate=westus2;verify=daily;"
            "drtest=off"
        )
        shown = fresh("backup", "show", "scratch-01")
        assert shown.exit_code == 0
        assert "keeps 3 daily, 4 weekly, 12 monthly; replicates to westus2" in shown.stdout

    def test_configure_fixes_a_malformed_tag(self, fresh: World) -> None:
        fresh.json("backup", "configure", "bad-01", "--daily", "5")
        assert fresh.json("backup", "show", "bad-01")["tag"].startswith(
            "schedule=0 2 * * *;daily=5"
        )

    def test_disable_removes_the_policy(self, fresh: World) -> None:
        assert fresh.json("backup", "disable", "web-01")["disabled"] is True
        assert fresh.json("backup", "show", "web-01")["policy"] is None

    @pytest.mark.parametrize(
        ("args", "message"),
        [
            (["--schedule", "61 * * * *"], "schedule='61 * * * *'"),
            (["--replicate-to", "eastus"], "is the VM's own region"),
            (["--replicate-to", "West US"], "must be an Azure region name"),
            # The regions infra made groups in (read from the subscription's resource groups
            # when the CLI has no app settings): a replica anywhere else has nowhere to go.
            (["--replicate-to", "centralus"], "not a DR region of this deployment (DR regions:"),
            (["--replicate-to", "marsnorth"], "'marsnorth': not a DR region"),
            (["--daily", "0", "--weekly", "0", "--monthly", "0"], "would keep nothing"),
            (["--verify", "hourly"], "hourly"),
            (["--daily", "many"], "Invalid value for '--daily'"),
        ],
        ids=[
            "bad-cron",
            "own-region",
            "bad-region",
            "unserved-region",
            "no-such-region",
            "keeps-nothing",
            "bad-cadence",
            "not-a-count",
        ],
    )
    def test_a_bad_policy_exits_2_with_one_line_and_leaves_the_tag(
        self, fresh: World, args: list[str], message: str
    ) -> None:
        before = fresh.json("backup", "show", "web-01")["tag"]
        result = fresh("backup", "configure", "web-01", *args)
        assert result.exit_code == 2
        assert message in _one_error_line(result)
        assert fresh.json("backup", "show", "web-01")["tag"] == before


class TestReads:
    """Reads go straight to the catalog and the fleet."""

    def test_list_shows_backups_newest_first_and_filters_by_tier_and_age(
        self, seeded: Seeded
    ) -> None:
        listed = seeded.world.json("backup", "list", "db-01")["backups"]
        assert [b["tier"] for b in listed] == ["daily", "monthly"]
        monthly = seeded.world.json("backup", "list", "db-01", "--tier", "monthly")["backups"]
        assert [b["tier"] for b in monthly] == ["monthly"]
        assert (
            seeded.world.json("backup", "list", "db-01", "--since", "2030-01-01")["backups"] == []
        )
        assert len(seeded.world.json("backup", "list", "db-01", "--since", "7d")["backups"]) == 2

    def test_list_as_a_table_names_each_backup(self, seeded: Seeded) -> None:
        result = seeded.world("backup", "list", "web-01")
        assert result.exit_code == 0
        assert seeded.web_backup["backup_id"] in result.stdout

    def test_show_describes_the_policy_in_words(self, seeded: Seeded) -> None:
        shown = seeded.world.json("backup", "show", "web-01")
        assert shown["policy"].startswith("backs up at 02:00 UTC daily; keeps 7 daily")
        assert shown["last_backup"]["backup_id"] == seeded.web_backup["backup_id"]

    def test_replication_status_shows_each_disks_copy(self, seeded: Seeded) -> None:
        status = seeded.world.json("backup", "replication-status", "web-01")
        assert [b["disks"] for b in status["backups"]] == [{"os": "completed", "lun0": "completed"}]
        assert {j["status"] for j in status["jobs"]} == {"completed"}

    def test_replication_jobs_filter_by_status(self, seeded: Seeded) -> None:
        done = seeded.world.json("backup", "replication-jobs", "--status", "completed")["jobs"]
        assert {j["disk_role"] for j in done} == {"os", "lun0"}
        assert seeded.world.json("backup", "replication-jobs", "--status", "failed")["jobs"] == []

    def test_verification_report_counts_passes_per_vm(self, seeded: Seeded) -> None:
        report = seeded.world.json("backup", "verification-report", "--vm", "db-01")
        assert [(r["total"], r["passed"]) for r in report["vms"]] == [(2, 2)]

    def test_plan_retention_is_a_dry_run_with_reasons(self, seeded: Seeded) -> None:
        planned = seeded.world.json("backup", "plan-retention", "db-01")
        assert [d["keep"] for d in planned["decisions"]] == [True, True]
        # Both were triggered by hand: each is kept for its own 30 days, in no GFS period.
        assert all(d["reasons"][0].startswith("kept: manual until") for d in planned["decisions"])
        assert planned["plan"]  # the id `--apply` takes
        assert len(seeded.world.json("backup", "list", "db-01")["backups"]) == 2

    def test_dr_history_and_success_rate_count_every_test(self, seeded: Seeded) -> None:
        history = seeded.world.json("dr", "test-history", "web-01", "--days", "30")["tests"]
        assert sorted(t["success"] for t in history) == [False, True, True]
        rates = seeded.world.json("dr", "success-rate", "--vm", "web-01")
        assert next((r["total"], r["succeeded"]) for r in rates["rates"]) == (3, 2)
        assert set(rates["rto_percentiles"]) == {"p50", "p90", "p99"}

    def test_status_exits_1_and_names_the_misconfigured_and_unprotected_vms(
        self, seeded: Seeded
    ) -> None:
        status = seeded.world.json("status", code=1)
        assert [m["vm"] for m in status["misconfigured"]] == ["bad-01"]
        assert "daily='x'" in status["misconfigured"][0]["error"]
        assert status["unprotected"] == ["scratch-01"]
        assert {v["vm"] for v in status["vms"]} == {"web-01", "db-01"}
        table = seeded.world("status")
        assert table.exit_code == 1
        assert "misconfigured" in table.stdout
        assert "NOT healthy" in table.stdout

    def test_report_writes_an_html_page(self, seeded: Seeded, tmp_path: Path) -> None:
        page = tmp_path / "fleet.html"
        result = seeded.world("report", "--html", str(page))
        assert result.exit_code == 0, result.stderr
        assert "web-01" in page.read_text()


class TestBadInput:
    """Bad input exits 2 with one clear line on stderr, and changes nothing."""

    @pytest.mark.parametrize(
        ("args", "message"),
        [
            (["backup", "trigger", "ghost"], "no VM named 'ghost'"),
            (["backup", "trigger", "bad/name"], "is not a valid VM name"),
            (["backup", "trigger", "bad-01"], "daily='x'"),
            (["backup", "show", "bad-01"], "daily='x'"),
            (["backup", "plan-retention", "bad-01"], "daily='x'"),
            (["backup", "trigger", "web-01", "--tier", "hourly"], "hourly"),
            (["backup", "list", "web-01", "--since", "yesterday"], "--since 'yesterday'"),
            (["backup", "replicate", "nope-1", "--target-region", "westus2"], "no backup with id"),
            (["backup", "verify", "../x"], "is not a backup id"),
            (["backup", "replicate-all", "web-01", "--target-region", "West US"], "region"),
            (["backup", "replication-jobs", "--status", "stuck"], "stuck"),
            (["dr", "test", "web-01", "--test-region", "West US"], "is not an Azure region"),
            (["dr", "test", "db-01"], "has no replicate region"),
            (["dr", "test", "web-01", "--backup", "20200101t000000z-x"], "no such backup"),
            (["dr", "test", "web-01", "--test-resource-group", "bad/group"], "resource group"),
            (
                ["backup", "restore", "web-01", "--backup", "nope-1", "--disks-only", "--yes"],
                "no backup",
            ),
            (["dr", "test-history", "ghost"], "no VM named 'ghost'"),
            (["dr", "success-rate", "--days", "0"], "--days"),
            (["-o", "yaml", "status"], "yaml"),
        ],
        ids=lambda value: "-".join(value) if isinstance(value, list) else None,
    )
    def test_exits_2_with_one_line_and_no_new_resources(
        self, seeded: Seeded, args: list[str], message: str
    ) -> None:
        snapshots = len(seeded.world.sim.snapshots())
        result = seeded.world(*args)
        assert result.exit_code == 2
        assert message in _one_error_line(result)
        assert result.stdout == ""
        assert len(seeded.world.sim.snapshots()) == snapshots


def test_demo_runs_the_seeded_fleet_and_prints_its_health(tmp_path: Path) -> None:
    report = tmp_path / "report.html"
    result = CliRunner().invoke(app, ["demo", "--days", "2", "--report", str(report)])
    assert result.exit_code == 0, result.stderr
    assert "no backup policy:" in result.stdout
    assert report.read_text().lower().startswith("<!doctype html>")
