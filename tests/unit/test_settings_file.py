"""The settings file `backupdr serve` writes, and how the CLI picks its target from it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from cli.context import SETTINGS_HELP, Options, local_stack_target
from cli.errors import BadInput, Failed
from local import settings_file
from local.settings_file import LocalSettings, SettingsFileError

ROOT = Path(__file__).resolve().parents[2]


def _settings(pid: int) -> LocalSettings:
    return LocalSettings(
        pid=pid,
        api="http://127.0.0.1:7071/api",
        function_key="fk",
        master_key="mk",
        simulator="https://127.0.0.1:4443",
        ca_bundle="ca.pem",
        subscription="sub-from-file",
        clock="virtual",
        env={"BACKUPDR_TABLES_CONNECTION": "from-file", "BACKUPDR_TABLE_PREFIX": "p"},
    )


def _dead_pid() -> int:
    finished = subprocess.Popen([sys.executable, "-c", "pass"])
    finished.wait()
    return finished.pid


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / ".backupdr" / "local.json"


class TestTheFile:
    """serve writes it for its owner only, and removes only its own."""

    def test_round_trips_and_is_private(self, path: Path) -> None:
        written = _settings(12345)
        settings_file.write(path, written)
        assert settings_file.read(path) == written
        assert path.stat().st_mode & 0o777 == 0o600

    def test_no_file_reads_as_none(self, path: Path) -> None:
        assert settings_file.read(path) is None

    @pytest.mark.parametrize("text", ["{not json", "[]", '{"pid": 1}'], ids=str)
    def test_a_file_serve_did_not_write_is_a_clear_error(self, path: Path, text: str) -> None:
        path.parent.mkdir(parents=True)
        path.write_text(text)
        with pytest.raises(SettingsFileError, match=str(path)):
            settings_file.read(path)

    def test_remove_leaves_a_newer_serves_file(self, path: Path) -> None:
        settings_file.write(path, _settings(2))
        settings_file.remove(path, pid=1)
        assert path.exists()
        settings_file.remove(path, pid=2)
        assert not path.exists()

    def test_running_is_whether_the_serve_process_lives(self) -> None:
        assert _settings(os.getpid()).running()
        assert not _settings(_dead_pid()).running()

    def test_the_path_can_be_moved_by_a_variable(self, path: Path) -> None:
        assert settings_file.settings_path({}) == Path(".backupdr/local.json")
        assert settings_file.settings_path({"BACKUPDR_LOCAL_SETTINGS": str(path)}) == path


class TestTheCliTarget:
    """With no target given the CLI uses the file; given one, or the environment, they win."""

    def test_no_target_uses_the_running_stack_and_the_environment_wins(self, path: Path) -> None:
        settings_file.write(path, _settings(os.getpid()))
        env = {"BACKUPDR_LOCAL_SETTINGS": str(path), "BACKUPDR_TABLE_PREFIX": "mine"}
        opts, found = local_stack_target(Options(), env)
        assert (opts.subscription, opts.simulator, opts.ca_bundle) == (
            "sub-from-file",
            "https://127.0.0.1:4443",
            "ca.pem",
        )
        assert found["BACKUPDR_TABLES_CONNECTION"] == "from-file"
        assert found["BACKUPDR_TABLE_PREFIX"] == "mine"

    def test_a_given_target_ignores_the_file(self, path: Path) -> None:
        settings_file.write(path, _settings(os.getpid()))
        given = Options(subscription="real-azure")
        opts, found = local_stack_target(given, {"BACKUPDR_LOCAL_SETTINGS": str(path)})
        assert opts is given
        assert "BACKUPDR_TABLES_CONNECTION" not in found

    def test_a_stopped_stack_is_named_with_what_to_do(self, path: Path) -> None:
        settings_file.write(path, _settings(_dead_pid()))
        with pytest.raises(Failed, match=r"not running.*backupdr serve"):
            local_stack_target(Options(), {"BACKUPDR_LOCAL_SETTINGS": str(path)})

    def test_no_target_and_no_file_says_how_to_get_one(self, path: Path) -> None:
        with pytest.raises(BadInput, match=r"--subscription.*--simulator.*backupdr serve"):
            local_stack_target(Options(), {"BACKUPDR_LOCAL_SETTINGS": str(path)})


def test_the_help_names_every_setting_the_cli_reads() -> None:
    """Every variable shared/settings.py reads, and the CLI's own, appear in the help."""
    read = set(re.findall(r'"((?:BACKUPDR|AZURE|WEBSITE)_[A-Z_]+)"', _source("shared/settings.py")))
    read |= {"BACKUPDR_SIMULATOR", "BACKUPDR_CA_BUNDLE", settings_file.PATH_VARIABLE}
    read -= {"AZURE_ARM_ENDPOINT"}  # the constant's name, not a variable
    assert sorted(name for name in read if name not in SETTINGS_HELP) == []


def _source(relative: str) -> str:
    return (ROOT / relative).read_text(encoding="utf-8")
