"""What the CLI prints: tables never cut, text printed as given, VMs named, errors said once."""

from __future__ import annotations

import pytest

from cli.context import Format
from cli.errors import readable, wants_json
from cli.output import emit, named, table
from shared.orchestrations.durable import failure_reason


class TestTables:
    """Tables printed where stdout is not a terminal (pipes, logs, CI) are never cut."""

    def test_a_wide_table_in_a_pipe_keeps_every_value_whole(
        self, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("FORCE_COLOR", "1")  # rich would take the pipe for an 80-column tty
        monkeypatch.setenv("COLUMNS", "80")
        columns = [(f"c{n}", f"column {n}") for n in range(8)]
        row = {key: f"20261102t020000z-91a3b143da-{key}" for key, _ in columns}
        emit(Format.TABLE, {}, lambda: [table("backups", [row], columns)])
        printed = capsys.readouterr().out
        assert all(value in printed for value in row.values())
        assert "…" not in printed

    def test_brackets_in_a_message_are_printed_not_read_as_markup(
        self, capsys: pytest.CaptureFixture[str]
    ) -> None:
        error = "Enable succeeded: [stdout] [bold]ok[/bold] :warning:"
        emit(Format.TABLE, {}, lambda: [table("t", [{"error": error}], [("error", "e")]), error])
        printed = capsys.readouterr().out
        assert printed.count(error) == 2

    def test_a_line_that_does_not_apply_is_left_out(
        self, capsys: pytest.CaptureFixture[str]
    ) -> None:
        emit(Format.TABLE, {}, lambda: ["state: failed", "", "done"])
        assert capsys.readouterr().out == "state: failed\ndone\n"


class TestNames:
    """A VM is its name and resource group to people, never the catalog's key."""

    def test_a_key_in_a_message_reads_as_name_and_group(self) -> None:
        assert (
            readable("no backup of rg-app-eastus~web-01.") == "no backup of web-01 (rg-app-eastus)."
        )
        assert readable("see ~/.azure and a~") == "see ~/.azure and a~"

    def test_a_row_gets_the_vms_own_spelling_or_its_key_split(self) -> None:
        names = {"rg-app~web-01": ("Web-01", "RG-App")}
        assert named({"vm_key": "rg-app~web-01", "total": 2}, names) == {
            "vm": "Web-01",
            "resource_group": "RG-App",
            "total": 2,
        }
        assert named({"vm_key": "rg-old~gone-01"}, names) == {
            "vm": "gone-01",
            "resource_group": "rg-old",
        }
        assert named({"vm_key": "*"}, names) == {"vm": "all VMs", "resource_group": None}


class TestErrors:
    """Errors carry one prefix, and `-o json` is found wherever it is given."""

    @pytest.mark.parametrize(
        ("words", "expected"),
        [
            (["-o", "json", "status"], True),
            (["backup", "list", "web-01", "--output", "json"], True),
            (["--output=json", "status"], True),
            (["-ojson", "status"], True),
            (["-o", "json", "status", "-o", "table"], False),
            (["status"], False),
            (["backup", "show", "--", "-o", "json"], False),
        ],
    )
    def test_json_output_is_read_from_the_command_line(
        self, words: list[str], expected: bool
    ) -> None:
        assert wants_json(words) is expected

    def test_a_failure_reason_loses_the_framework_wrappers_and_a_repeated_class_name(
        self,
    ) -> None:
        reason = (
            "Orchestrator function 'verify_backup' failed: Activity function 'verify_disks' "
            "failed: NotFoundError: NotFoundError: backup b-1 is failed, nothing to verify\n"
            "Traceback ..."
        )
        assert failure_reason(reason) == "NotFoundError: backup b-1 is failed, nothing to verify"
        assert failure_reason("ValueError: bad") == "ValueError: bad"
