"""The CLI pointed at a simulator that is not there, or named wrongly: one `error:` line and its
exit code, never a traceback (found by hand: each of these printed a requests traceback)."""

from __future__ import annotations

import socket

import pytest
from typer.testing import CliRunner

from cli.main import app

ENV = {"AZURE_SUBSCRIPTION_ID": "x", "BACKUPDR_TABLES_CONNECTION": "UseDevelopmentStorage=true"}


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])  # closed again when the block ends


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--simulator", "notaurl"], 2, "give the simulator's https://HOST:PORT URL"),
        (["--simulator", "http://127.0.0.1:8443"], 2, "https://HOST:PORT"),
        (["--simulator", "https://127.0.0.1:8443", "--ca", "/nonexistent"], 2, "no such file"),
        (["--simulator", f"https://127.0.0.1:{_closed_port()}"], 1, "cannot reach the simulator"),
    ],
    ids=["not-a-url", "plain-http", "missing-ca", "wrong-port"],
)
def test_a_bad_simulator_target_is_one_error_line(args: list[str], code: int, message: str) -> None:
    result = CliRunner().invoke(app, [*args, "status"], env=ENV)
    assert result.exit_code == code
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert message in lines[0]
