"""What `backupdr` says, against the local stack: whole ids in pipes, one JSON document per
command, a failed backup that says why, and VMs named as people name them.

The stack (Azurite, the ARM simulator over HTTPS) serves the CLI as it serves the app; the CLI
runs in-process (typer's CliRunner: stdout is not a terminal there either) or, where the pipe
itself matters, as its own process with stdout a pipe.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from cli.main import app
from local.armsim import FaultRule
from local.azurite import Azurite
from local.stack import FLEETS, ROOT, Stack, local_stack

START = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
LONG_GROUP = "rg-analytics-warehouse-production-eastus"
LONG_VM = "analytics-warehouse-primary-eastus-01"
_prefixes = (f"msg{n}" for n in itertools.count())


def _fleet() -> dict[str, Any]:
    """The tiny fleet plus a VM whose name and group are long (wide columns)."""
    fleet: dict[str, Any] = json.loads((FLEETS / "tiny.json").read_text())
    subscription = fleet["subscriptions"][0]
    subscription["resource_groups"].append({"name": LONG_GROUP, "region": "eastus"})
    db = subscription["vms"][1]
    subscription["vms"].append({**db, "name": LONG_VM, "resource_group": LONG_GROUP})
    return fleet


class World:
    """The stack, and the CLI pointed at it."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.env = stack.cli_env()

    def __call__(self, *args: str) -> Result:
        return CliRunner().invoke(app, list(args), env=self.env)

    def json(self, *args: str, code: int = 0) -> Any:
        result = self("-o", "json", *args)
        assert result.exit_code == code, result.stdout + result.stderr
        return json.loads(result.stdout)

    def piped(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        """`backupdr ARGS | ...`: its own process, stdout and stderr pipes."""
        return subprocess.run(  # noqa: S603 - this interpreter and our own arguments
            [sys.executable, "-c", "from cli.main import main; main()", *args],
            capture_output=True,
            text=True,
            cwd=ROOT,
            env={**os.environ, **self.env, **env},
            check=False,
        )


class Seeded:
    """Backups taken through the CLI: two good ones, and one of db-01 whose snapshot fails."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.web = world.json("backup", "trigger", "web-01")
        self.long = world.json("backup", "trigger", LONG_VM)
        world.stack.simulator.add_fault(
            FaultRule(operation="snapshots.create", resource="*db-01*", kind="fail-operation")
        )
        self.failed_table = world("backup", "trigger", "db-01")
        self.failed = world("-o", "json", "backup", "trigger", "db-01")
        world.stack.simulator.clear_faults()
        self.failed_id = json.loads(self.failed.stdout)["backup_id"]
        world.json("backup", "verify", self.web["backup_id"])


@pytest.fixture(scope="module")
def seeded(azurite: Azurite) -> Iterator[Seeded]:
    with local_stack(_fleet(), start=START, azurite=azurite, table_prefix=next(_prefixes)) as stack:
        yield Seeded(World(stack))


def _error_document(result: Result) -> dict[str, Any]:
    """A refusal with `-o json`: nothing on stdout, one JSON document on stderr."""
    assert result.stdout == ""
    document: dict[str, Any] = json.loads(result.stderr)
    assert document["exit_code"] == result.exit_code
    return document


class TestPipes:
    """Where stdout is not a terminal, a table is as wide as its content: nothing is cut."""

    def test_a_wide_table_keeps_every_backup_id_and_name_whole(self, seeded: Seeded) -> None:
        # FORCE_COLOR makes rich take a pipe for a terminal of COLUMNS (80) columns.
        piped = seeded.world.piped(
            "backup", "replication-jobs", "--status", "completed", COLUMNS="80", FORCE_COLOR="1"
        )
        assert piped.returncode == 0, piped.stderr
        assert seeded.web["backup_id"] in piped.stdout
        assert "…" not in piped.stdout
        listed = seeded.world.piped("backup", "list", LONG_VM, COLUMNS="80")
        assert seeded.long["backup_id"] in listed.stdout
        assert f"{LONG_VM} ({LONG_GROUP})" in listed.stdout

    def test_json_through_a_pipe_is_the_whole_of_stdout_and_stderr_stays_empty(
        self, seeded: Seeded
    ) -> None:
        # A command that runs a workflow: its progress bar is for terminals only.
        piped = seeded.world.piped("-o", "json", "backup", "verify", seeded.web["backup_id"])
        assert piped.returncode == 0, piped.stderr
        assert [r["backup_id"] for r in json.loads(piped.stdout)["results"]] == [
            seeded.web["backup_id"]
        ]
        assert piped.stderr == ""

    @pytest.mark.parametrize("group", ["backup", "dr"])
    def test_a_group_without_a_command_prints_its_help_and_no_error_line(
        self, seeded: Seeded, group: str
    ) -> None:
        piped = seeded.world.piped(group)
        assert piped.returncode == 2
        assert "Commands" in piped.stdout
        assert piped.stderr == ""


# Every command the CLI has but `report` (its HTML page) and `demo` (its own stack), in an order
# that gives each something to work on, with the exit code it ends with here.
COMMANDS: list[tuple[list[str], int]] = [
    (["backup", "configure", "scratch-01", "--daily", "3"], 0),
    (["backup", "show", "web-01"], 0),
    (["backup", "list", "web-01"], 0),
    (["backup", "trigger", "scratch-01"], 0),
    (["backup", "disable", "scratch-01"], 0),
    (["backup", "replication-status", "web-01"], 0),
    (["backup", "replication-jobs"], 0),
    (["backup", "replicate-all", "db-01", "--target-region", "westus2"], 0),
    (["backup", "verify-all", "web-01"], 0),
    (["backup", "verification-report"], 0),
    (["backup", "plan-retention", "web-01"], 0),
    (["backup", "hold", "web-01", "--backup", "{web}"], 0),
    (["backup", "release", "web-01", "--backup", "{web}"], 0),
    (["backup", "undelete", "web-01", "--backup", "{web}"], 1),  # it is live
    (["backup", "verify", "{failed}"], 1),  # a failed backup has nothing to verify
    (["backup", "replicate", "{failed}", "--target-region", "westus2"], 1),
    (["backup", "restore", "web-01", "--backup", "{web}", "--disks-only", "--yes"], 0),
    (["backup", "show", "ghost"], 2),
    (["dr", "test", "web-01"], 0),
    (["dr", "test-all"], 0),
    (["dr", "test-history", "web-01"], 0),
    (["dr", "success-rate"], 0),
    (["dr", "failover", "web-01"], 0),  # a VM named web-01 in the recovery group: -g from now
    (["status"], 1),  # scratch-01 has no policy again
    (["demo"], 2),
]


class TestJson:
    """`-o json` is one JSON document: the result on stdout, or a refusal on stderr."""

    def test_every_command_prints_exactly_one_json_document(self, seeded: Seeded) -> None:
        ids = {"web": seeded.web["backup_id"], "failed": seeded.failed_id}
        for args, code in COMMANDS:
            result = seeded.world("-o", "json", *(a.format(**ids) for a in args))
            assert result.exit_code == code, (args, result.stdout, result.stderr)
            if result.stdout:
                assert isinstance(json.loads(result.stdout), dict), args
                assert result.stderr == "", (args, result.stderr)
            else:
                assert _error_document(result)["error"], args

    def test_a_refusal_is_one_json_document_naming_why(self, seeded: Seeded) -> None:
        refused = _error_document(seeded.world("-o", "json", "backup", "show", "ghost"))
        assert refused == {"error": "no VM named 'ghost'", "exit_code": 2}
        bad_option = _error_document(seeded.world("backup", "list", "web-01", "-o", "json", "-x"))
        assert "-x" in bad_option["error"]
        assert bad_option["exit_code"] == 2


class TestFailedTrigger:
    """A backup that fails says why, and its JSON names the backup it took."""

    def test_the_table_view_says_why_and_exits_1(self, seeded: Seeded) -> None:
        result = seeded.failed_table
        assert result.exit_code == 1
        assert "state: failed" in result.stdout
        assert "error: snapshot provisioning failed: db-01-os-" in result.stdout

    def test_the_json_names_the_backup_its_vm_and_group(self, seeded: Seeded) -> None:
        assert seeded.failed.exit_code == 1
        document = json.loads(seeded.failed.stdout)
        assert (document["vm"], document["resource_group"], document["state"]) == (
            "db-01",
            "rg-app-eastus",
            "failed",
        )
        assert document["backup"]["backup_id"] == document["backup_id"]
        assert document["backup"]["state"] == "failed"
        assert "snapshot provisioning failed" in document["error"]
        assert "vm_key" not in document

    def test_a_tier_the_calendar_does_not_give_is_an_error_document_in_json(
        self, seeded: Seeded
    ) -> None:
        result = seeded.world("-o", "json", "backup", "trigger", LONG_VM, "--tier", "weekly")
        assert result.exit_code == 1
        assert json.loads(result.stdout)["state"] == "completed"  # the backup it took
        assert "is daily, not weekly" in json.loads(result.stderr)["error"]


class TestNames:
    """People see a VM's name and resource group, never the catalog's `rg~vm` key."""

    @pytest.mark.parametrize(
        "args",
        [
            ["backup", "verification-report"],
            ["backup", "replication-jobs"],
            ["backup", "replication-status", "web-01", "-g", "rg-app-eastus"],
            ["backup", "list", LONG_VM],
            ["backup", "plan-retention", "db-01"],
            ["dr", "success-rate"],
            ["dr", "test-history", "web-01", "-g", "rg-app-eastus"],
        ],
        ids=lambda args: "-".join(args[:2]),
    )
    def test_tables_name_vms_and_groups_and_show_no_catalog_key(
        self, seeded: Seeded, args: list[str]
    ) -> None:
        result = seeded.world(*args)
        assert result.exit_code == 0, result.stderr
        assert "~" not in result.stdout
        assert "rg-app-eastus" in result.stdout or LONG_GROUP in result.stdout

    def test_report_rows_in_json_carry_name_and_group(self, seeded: Seeded) -> None:
        rows = seeded.world.json(
            "backup", "verification-report", "--vm", "web-01", "-g", "rg-app-eastus"
        )["vms"]
        assert [(r["vm"], r["resource_group"]) for r in rows] == [("web-01", "rg-app-eastus")]
        assert all("vm_key" not in r for r in rows)
        fleet = seeded.world.json("dr", "success-rate")["rates"][-1]
        assert (fleet["vm"], fleet["resource_group"]) == ("all VMs", None)


class TestMessages:
    """An error carries one prefix, said once."""

    def test_a_failed_step_names_its_error_class_once(self, seeded: Seeded) -> None:
        (result,) = seeded.world.json("backup", "verify", seeded.failed_id, code=1)["results"]
        assert result["error_message"] == (
            f"NotFoundError: backup {seeded.failed_id} is failed, nothing to verify"
        )

    def test_an_app_error_is_one_error_line_without_its_class_name(self, seeded: Seeded) -> None:
        web = seeded.web["backup_id"]
        result = seeded.world(
            "backup", "undelete", "web-01", "-g", "rg-app-eastus", "--backup", web
        )
        assert result.exit_code == 1
        assert result.stderr == (
            f"error: backup {seeded.web['backup_id']} is completed (live): only a soft-deleted "
            "backup can be undeleted\n"
        )

    def test_a_failover_of_a_vm_that_is_not_copied_says_so_without_a_double_negative(
        self, seeded: Seeded
    ) -> None:
        result = seeded.world("dr", "failover", "db-01")
        assert result.exit_code == 2
        assert result.stderr == (
            "error: db-01's backups stay in eastus: a failover starts from a replica in a DR "
            "region (the policy's replicate=REGION)\n"
        )


def test_the_demo_refuses_json_before_it_starts(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["-o", "json", "demo", "--report", str(tmp_path / "r")])
    assert _error_document(result)["exit_code"] == 2
    assert not (tmp_path / "r").exists()
