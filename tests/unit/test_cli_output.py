"""Tables printed where stdout is not a terminal (pipes, logs, CI) are never cut."""

from __future__ import annotations

import pytest

from cli.context import Format
from cli.output import emit, table


def test_a_wide_table_in_a_pipe_keeps_every_value_whole(capsys: pytest.CaptureFixture[str]) -> None:
    columns = [(f"c{n}", f"column {n}") for n in range(8)]
    row = {key: f"20261102t020000z-91a3b143da-{key}" for key, _ in columns}
    emit(Format.TABLE, {}, lambda: [table("backups", [row], columns)])
    printed = capsys.readouterr().out
    assert all(value in printed for value in row.values())
    assert "…" not in printed
