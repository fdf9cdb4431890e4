"""`backupdr serve` as a newcomer runs it: a process serving the Function App over real HTTP.

The front door answers as the Functions host does (Azure/azure-functions-host):
- a method the function does not list matches no route, so it is 404 like an unknown path
  (src/WebJobs.Script.WebHost/WebScriptHostHttpRoutesManager.cs: methods are an
  HttpMethodRouteConstraint on the function's route);
- no key, or a key that is not one of the app's, is 401 before the function runs
  (src/WebJobs.Script.WebHost/Middleware/FunctionInvocationMiddleware.cs, GetResultAsync:
  `UnauthorizedResult` when AuthenticateAndAuthorizeAsync fails);
- the key is the x-functions-key header or the `code` query parameter
  (src/WebJobs.Script.WebHost/Security/Authentication/Keys/AuthenticationLevelHandler.cs).
Then the backupdr CLI, run in the same directory with no setting typed, works against it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from local import settings_file
from local.serve import ApiClient
from local.settings_file import LocalSettings

BACKUPDR = str(Path(sys.executable).parent / "backupdr")
START = "2026-11-10T09:00:00+00:00"
STARTUP_SECONDS = 180.0  # how long to wait for Azurite, the simulator and the app to come up


@dataclass
class Served:
    process: subprocess.Popen[str]
    workdir: Path
    settings: LocalSettings

    @property
    def api(self) -> ApiClient:
        return ApiClient(self.settings.api, self.settings.function_key)

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return _backupdr(self.workdir, *args)


def _untargeted_env() -> dict[str, str]:
    """This process's environment without any setting the CLI reads."""
    prefixes = ("BACKUPDR_", "AZURE_")
    return {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}


def _backupdr(workdir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`backupdr ARGS` in `workdir`, with no target in the environment."""
    return subprocess.run(  # noqa: S603 - our own executable and arguments
        [BACKUPDR, *args],
        cwd=workdir,
        env={**_untargeted_env(), "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def _serve(workdir: Path, *args: str) -> tuple[subprocess.Popen[str], LocalSettings]:
    """`backupdr serve ARGS` in `workdir`, once it has written its settings file."""
    process = subprocess.Popen(  # noqa: S603 - our own executable and arguments
        [BACKUPDR, "serve", "--port", "0", *args],
        cwd=workdir,
        env=_untargeted_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        return process, _wait_for(workdir / settings_file.DEFAULT_PATH, process)
    except BaseException:
        process.kill()
        process.wait()
        raise


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    workdir = tmp_path_factory.mktemp("newcomer")
    process, settings = _serve(workdir, "--start", START)
    try:
        yield Served(process, workdir, settings)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)


def _wait_for(path: Path, process: subprocess.Popen[str]) -> LocalSettings:
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"backupdr serve exited with {process.returncode}")
        found = settings_file.read(path)
        if found is not None:
            return found
        time.sleep(0.2)
    raise RuntimeError(f"backupdr serve wrote no {path} in {STARTUP_SECONDS:.0f} s")


def _until_done(api: ApiClient, status_url: str) -> dict[str, Any]:
    """The operation's status once it is over: serve's timer loop runs the work meanwhile."""
    while True:
        found: dict[str, Any] = api.call("GET", status_url).json()
        if found["status"] not in ("Pending", "Running"):
            return found
        time.sleep(0.2)


class TestTheFrontDoor:
    """POST with the printed key starts a backup; the host's refusals are kept."""

    def test_post_with_the_key_starts_a_backup_that_the_status_route_follows(
        self, served: Served
    ) -> None:
        response = served.api.call("POST", "backups/web-01")
        assert response.status_code == 202
        body = response.json()
        assert response.headers["Location"] == body["statusUri"]
        assert body["statusUri"].startswith(f"{served.settings.api}/operations/")
        done = _until_done(served.api, response.headers["Location"])
        assert (done["name"], done["status"]) == ("vm_backup_v3", "Completed")
        assert done["output"]["state"] == "completed"

    def test_the_key_may_be_the_code_query_parameter(self, served: Served) -> None:
        key = served.settings.function_key
        response = requests.get(f"{served.settings.api}/status", params={"code": key}, timeout=60)
        assert response.status_code == 200
        assert "vms" in response.json()

    @pytest.mark.parametrize(
        ("method", "path", "headers", "expected"),
        [
            ("GET", "backups/web-01", "key", 404),
            ("PUT", "status", "key", 404),
            ("GET", "no-such-route", "key", 404),
            ("POST", "backups/web-01", None, 401),
            ("POST", "backups/web-01", "wrong", 401),
            ("GET", "status", None, 401),
        ],
        ids=[
            "get-on-post-route",
            "put-on-get-route",
            "unknown-route",
            "no-key",
            "wrong-key",
            "read-without-key",
        ],
    )
    def test_refusals_are_the_hosts_and_start_nothing(
        self, served: Served, method: str, path: str, headers: str | None, expected: int
    ) -> None:
        key = {"key": served.settings.function_key, "wrong": "not-the-key", None: None}[headers]
        sent = {"x-functions-key": key} if key else {}
        before = _backup_count(served)
        response = requests.request(
            method, f"{served.settings.api}/{path}", headers=sent, timeout=60
        )
        assert (response.status_code, response.content) == (expected, b"")
        assert _backup_count(served) == before


def _backup_count(served: Served) -> int:
    found = served.api.call("GET", "vms/web-01/backups").json()
    return len(found["backups"])


class TestTheCli:
    """The next command just works: the CLI reads what serve wrote."""

    def test_trigger_and_list_need_no_setting_typed(self, served: Served) -> None:
        triggered = served.cli("-o", "json", "backup", "trigger", "db-01")
        assert triggered.returncode == 0, triggered.stderr
        listed = served.cli("-o", "json", "backup", "list", "db-01")
        assert listed.returncode == 0, listed.stderr
        backups = json.loads(listed.stdout)["backups"]
        assert [b["manual"] for b in backups].count(True) == 1  # the trigger's (timers fire too)
        # One stack, one catalog: the served app lists what the CLI does.
        by_app = served.api.call("GET", "vms/db-01/backups").json()["backups"]
        assert [b["backup_id"] for b in by_app] == [b["backup_id"] for b in backups]


def test_stopping_serve_removes_the_settings_file_and_the_cli_says_what_to_do(
    tmp_path: Path,
) -> None:
    """A serve of its own: stopping it must not disturb the module's."""
    process, _ = _serve(tmp_path)
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=60)
    assert process.returncode == 0
    assert "x-functions-key" in output  # the banner's curl examples
    assert not (tmp_path / settings_file.DEFAULT_PATH).exists()
    after = _backupdr(tmp_path, "backup", "list", "web-01")
    assert after.returncode == 2
    assert "backupdr serve" in after.stderr
