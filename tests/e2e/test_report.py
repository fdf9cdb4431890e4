"""The fleet report in headless Chromium: it loads cleanly, fetches nothing, and shows the store.

A few simulated days of the tiny fleet, with one DR test that recovers and one whose VM never
boots, give the page backups, replicas, verifications and DR tests to draw. The page is then
opened through the DevTools protocol (aiohttp's websocket client, already a dependency), which
reports console errors, uncaught exceptions and every request the page makes.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import azure.functions as func
import pytest

from local.armsim import FaultRule
from local.azurite import Azurite
from local.stack import FLEETS, Stack, local_stack
from shared.domain.models import BackupState, VerificationState
from shared.health import fleet_status
from shared.report import REPORT_DAYS, render_report

START = datetime(2026, 11, 10, tzinfo=UTC)
WEB = "rg-app-eastus~web-01"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# Headless, no sandbox (we run as root in CI), nothing fetched in the background, DevTools on.
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--remote-debugging-port=0",
)
FLEET_ROWS = """JSON.stringify([...document.querySelectorAll("#fleet tbody tr")].map(tr => [
  tr.dataset.vm,
  Object.fromEntries([...tr.querySelectorAll("[data-metric]")].map(
    td => [td.dataset.metric, [td.dataset.value, td.textContent]]))]))"""
FILTER_DB = """(() => {
  const box = document.getElementById("filter");
  box.value = "DB";
  box.dispatchEvent(new Event("input"));
  return JSON.stringify([...document.querySelectorAll("[data-vm]")]
    .filter(e => !e.hidden).map(e => e.dataset.vm));
})()"""


@dataclass
class PageRun:
    """What Chromium saw while loading a page and evaluating expressions in it."""

    errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    results: dict[str, Any] = field(default_factory=dict)


@pytest.fixture(scope="module")
def stack(azurite: Azurite) -> Iterator[Stack]:
    with local_stack(
        FLEETS / "tiny.json", start=START, azurite=azurite, table_prefix="report"
    ) as running:
        running.host.run_timers(until=START + timedelta(days=2, hours=6))
        _dr_test(running)
        running.simulator.add_fault(
            FaultRule(
                operation="vms.create", resource="*/virtualmachines/web-01*", kind="never-boots"
            )
        )
        _dr_test(running)
        running.simulator.clear_faults()
        running.host.run_timers(until=running.clock.now() + timedelta(days=1))
        yield running


def _dr_test(stack: Stack) -> None:
    request = func.HttpRequest(method="POST", url="http://localhost/api/dr-tests/web-01", body=b"")
    assert stack.host.call_http("start_dr_test", request).status_code == 202
    stack.host.run_until_idle()
    stack.clock.advance(3600)


@pytest.fixture(scope="module")
def page(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> PageRun:
    path = tmp_path_factory.mktemp("report") / "report.html"
    path.write_text(
        render_report(
            stack.services.gateway,
            stack.services.catalog,
            stack.clock.now(),
            stack.services.settings.regions,
        )
    )
    return asyncio.run(_open_in_chromium(path, {"rows": FLEET_ROWS, "filtered": FILTER_DB}))


def test_the_page_loads_in_chromium_with_no_console_errors(page: PageRun) -> None:
    assert page.results["rows"], "the page rendered no fleet rows"
    assert page.errors == []


def test_the_browser_check_catches_errors_and_outside_requests(tmp_path: Path) -> None:
    bad = tmp_path / "bad.html"
    bad.write_text(
        '<!doctype html><img src="http://192.0.2.1/x.png">'
        '<script>console.error("boom"); missing();</script>'
    )
    run = asyncio.run(_open_in_chromium(bad, {}))
    assert "boom" in run.errors
    assert any("missing is not defined" in error for error in run.errors)
    assert "http://192.0.2.1/x.png" in run.requests


def test_the_page_requests_nothing_but_itself(page: PageRun) -> None:
    assert [url for url in page.requests if not url.startswith(("file://", "data:"))] == []


def test_every_protected_vm_has_a_row_and_a_chart_card(stack: Stack, page: PageRun) -> None:
    rows = dict(json.loads(page.results["rows"]))
    assert set(rows) == {"web-01", "db-01"}
    html = render_report(
        stack.services.gateway,
        stack.services.catalog,
        stack.clock.now(),
        stack.services.settings.regions,
    )
    assert html.count('<section class="card"') == 2
    assert "scratch-01" in html, "the unprotected VM is listed for an operator"


def test_backup_and_verification_counts_match_the_catalog(stack: Stack, page: PageRun) -> None:
    rows = dict(json.loads(page.results["rows"]))
    catalog, now = stack.services.catalog, stack.clock.now()
    summaries = {s.vm_key: s for s in catalog.verification_report(now=now, days=REPORT_DAYS)}
    for name, key in (("web-01", WEB), ("db-01", "rg-app-eastus~db-01")):
        live = [b for b in catalog.list_backups(key) if b.state is BackupState.COMPLETED]
        summary = summaries[key]
        assert rows[name]["backups"] == [f"{len(live)}.0", str(len(live))], name
        assert rows[name]["verifications"][1] == str(summary.total), name
        assert rows[name]["verifications_passed"][1] == str(summary.passed), name
        assert summary.total > 0
        assert any(b.verification is VerificationState.PASSED for b in live), name


def test_rpo_and_replica_lag_match_the_fleet_status(stack: Stack, page: PageRun) -> None:
    rows = dict(json.loads(page.results["rows"]))
    status = fleet_status(
        stack.services.gateway,
        stack.services.catalog,
        stack.clock.now(),
        stack.services.settings.regions,
    )
    for vm in status["vms"]:
        shown = rows[vm["vm"]]
        assert float(shown["rpo_seconds"][0]) == vm["rpo_seconds"], vm["vm"]
        assert shown["rpo_seconds"][1] == f"{vm['rpo_seconds'] / 3600:.1f} h"
        lag = vm["replica_lag_seconds"]
        assert shown["replica_lag_seconds"][0] == ("" if lag is None else repr(float(lag)))
    assert rows["web-01"]["replica_lag_seconds"][1].startswith("westus2, ")
    assert rows["db-01"]["replica_lag_seconds"][1] == "none"


def test_dr_success_rate_and_last_rto_match_the_catalog(stack: Stack, page: PageRun) -> None:
    rows = dict(json.loads(page.results["rows"]))
    rate = stack.services.catalog.dr_success_rates(
        now=stack.clock.now(), days=REPORT_DAYS, vm_key=WEB
    )[0]
    assert (rate.total, rate.succeeded) == (2, 1), "one DR test recovered, one never booted"
    assert rows["web-01"]["dr_tests"][1] == "2"
    assert rows["web-01"]["dr_success_rate"] == ["0.5", "50%"]
    assert rows["web-01"]["last_rto_seconds"] == ["", "-"], "the newest test never recovered"
    assert rows["db-01"]["dr_success_rate"] == ["", "-"], "db-01 has never been DR-tested"


def test_the_rto_chart_draws_each_test_by_phase_and_marks_the_failure(stack: Stack) -> None:
    html = render_report(
        stack.services.gateway,
        stack.services.catalog,
        stack.clock.now(),
        stack.services.settings.regions,
    )
    tests = stack.services.catalog.dr_history(WEB, now=stack.clock.now(), days=REPORT_DAYS)
    recovered = next(t for t in tests if t.success)
    assert f"<title>restore {recovered.phase_seconds['restore']:.0f} s</title>" in html
    assert html.count('<rect class="bad"') == 1
    assert html.count('<rect class="ok"') == 1


def test_the_filter_box_hides_the_other_vms(page: PageRun) -> None:
    assert json.loads(page.results["filtered"]) == ["db-01", "db-01"]  # its row and its card


def test_get_api_dashboard_serves_the_report_as_html(stack: Stack) -> None:
    request = func.HttpRequest(method="GET", url="http://localhost/api/dashboard", body=b"")
    response = stack.host.call_http("dashboard", request)
    assert response.status_code == 200
    assert response.mimetype == "text/html"
    body = response.get_body().decode()
    assert body.startswith("<!doctype html>")
    assert 'data-vm="web-01"' in body


# -- a minimal DevTools protocol client ------------------------------------------------------


async def _open_in_chromium(path: Path, expressions: dict[str, str]) -> PageRun:
    """Load `path` in a fresh headless Chromium, then evaluate each expression in the page."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: `make test` installs Debian's chromium package")
    with tempfile.TemporaryDirectory() as profile:
        log = Path(profile) / "stderr.log"
        with log.open("w") as stderr:
            browser = subprocess.Popen(  # noqa: S603 - a fixed local executable and our own arguments
                [CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={profile}/data", "about:blank"],
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                start_new_session=True,  # its renderer and helpers share its process group
            )
        try:
            async with aiohttp.ClientSession() as session:
                ws = await session.ws_connect(_devtools_url(log, browser), max_msg_size=0)
                return await _drive(ws, path, expressions)
        finally:
            _stop_group(browser)


def _stop_group(browser: subprocess.Popen[bytes]) -> None:
    """End Chromium and every process it started: a helper still writing to the profile would
    make its removal fail ("Directory not empty")."""
    os.killpg(browser.pid, signal.SIGTERM)
    browser.wait(timeout=30)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            os.killpg(browser.pid, 0)  # raises once no process of the group is left
        except ProcessLookupError:
            return
        time.sleep(0.05)
    os.killpg(browser.pid, signal.SIGKILL)


def _devtools_url(log: Path, browser: subprocess.Popen[bytes]) -> str:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and browser.poll() is None:
        for line in log.read_text().splitlines():
            if line.startswith("DevTools listening on "):
                return line.removeprefix("DevTools listening on ").strip()
        time.sleep(0.1)
    raise RuntimeError(f"Chromium did not open its DevTools port:\n{log.read_text()[-2000:]}")


async def _drive(
    ws: aiohttp.ClientWebSocketResponse, path: Path, expressions: dict[str, str]
) -> PageRun:
    run = PageRun()
    ids = itertools.count(1)
    waiting: dict[int, asyncio.Future[dict[str, Any]]] = {}
    loaded = asyncio.get_running_loop().create_future()

    async def send(method: str, session: str | None = None, **params: Any) -> dict[str, Any]:
        number = next(ids)
        reply_future = waiting[number] = asyncio.get_running_loop().create_future()
        message = {"id": number, "method": method, "params": params}
        await ws.send_json(message | ({"sessionId": session} if session else {}))
        reply = await asyncio.wait_for(reply_future, 30)
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        result: dict[str, Any] = reply["result"]
        return result

    async def listen() -> None:
        async for message in ws:
            data = json.loads(message.data)
            if "id" in data:
                waiting.pop(data["id"]).set_result(data)
            else:
                _record(run, data["method"], data["params"], loaded)

    listener = asyncio.create_task(listen())
    target = await send("Target.createTarget", url="about:blank")
    attached = await send("Target.attachToTarget", targetId=target["targetId"], flatten=True)
    session = attached["sessionId"]
    for domain in ("Runtime", "Log", "Network", "Page"):
        await send(f"{domain}.enable", session)
    await send("Page.navigate", session, url=path.as_uri())
    await asyncio.wait_for(loaded, 30)
    for name, expression in expressions.items():
        reply = await send("Runtime.evaluate", session, expression=expression, returnByValue=True)
        if "exceptionDetails" in reply:
            run.errors.append(f"{name}: {reply['exceptionDetails']}")
        run.results[name] = reply["result"].get("value")
    listener.cancel()
    return run


def _record(
    run: PageRun, method: str, params: dict[str, Any], loaded: asyncio.Future[None]
) -> None:
    if method == "Page.loadEventFired" and not loaded.done():
        loaded.set_result(None)
    elif method == "Runtime.exceptionThrown":
        details = params["exceptionDetails"]
        run.errors.append(details.get("exception", {}).get("description") or details["text"])
    elif method == "Runtime.consoleAPICalled" and params["type"] in ("error", "assert", "warning"):
        run.errors.append(" ".join(str(a.get("value", a)) for a in params["args"]))
    elif method == "Log.entryAdded" and params["entry"]["level"] in ("error", "warning"):
        run.errors.append(params["entry"]["text"])
    elif method == "Network.requestWillBeSent":
        run.requests.append(params["request"]["url"])
