"""The fleet report in headless Chromium: it loads cleanly, fetches nothing, shows the store, and
opens with what needs an operator, reasons in words.

A few simulated days of the tiny fleet with one failure of each kind an operator must see: a DR
test whose VM never boots (web-01), a verification whose test disks fail to provision (db-01),
copies to the DR region that stop half way (web-01, behind its 4 h lag target), a snapshot
deleted behind the app's back (db-01) and a malformed policy tag (scratch-01). The page is then
opened through the DevTools protocol (aiohttp's websocket client, already a dependency), which
reports console errors, uncaught exceptions and every request the page makes, reads the text as
rendered, and saves a screenshot to test-artifacts/report.png for a person to look at.
"""

from __future__ import annotations

import asyncio
import base64
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
from typer.testing import CliRunner, Result

from cli.main import app
from local.armsim import FaultRule
from local.azurite import Azurite
from local.stack import FLEETS, Stack, local_stack
from shared.domain.models import BackupState
from shared.health import fleet_status
from shared.report import REPORT_DAYS, render_report

START = datetime(2026, 11, 10, tzinfo=UTC)
WEB, DB = "rg-app-eastus~web-01", "rg-app-eastus~db-01"
GROUP = "rg-app-eastus"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
VIEWPORT = (1280, 900)  # CSS pixels: a laptop's browser window
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
# What a reader sees: rendered text (innerText) of rows that take up room on the page.
OPERATOR_ROWS = """JSON.stringify([...document.querySelectorAll("#operator tbody tr")].map(tr => ({
  kind: tr.dataset.kind,
  cells: [...tr.cells].map(td => td.innerText),
  shown: tr.getBoundingClientRect().height > 0 && getComputedStyle(tr).visibility === "visible",
})))"""
SPAN = """document.getElementById("span").innerText"""
LEGENDS = """JSON.stringify([...document.querySelectorAll("figure")].map(f => [
  f.querySelector("figcaption").innerText,
  f.querySelector(".legend") ? f.querySelector(".legend").innerText : null,
]))"""
# Pairs of x-axis labels in one chart whose boxes overlap: unreadable ticks.
CROWDED_TICKS = """JSON.stringify([...document.querySelectorAll("svg")].flatMap(svg => {
  const boxes = [...svg.querySelectorAll('text[text-anchor="middle"]')]
    .map(t => [t.textContent, t.getBoundingClientRect()]);
  return boxes.slice(1).filter(([, box], i) => box.left < boxes[i][1].right)
    .map(([text], i) => [boxes[i][0], text]);
}))"""
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
    screenshot: Path | None = None


def _fleet() -> dict[str, Any]:
    """The tiny fleet, with scratch-01's policy tag malformed."""
    fleet: dict[str, Any] = json.loads((FLEETS / "tiny.json").read_text())
    scratch = fleet["subscriptions"][0]["vms"][2]
    assert scratch["name"] == "scratch-01"
    scratch["tags"] = {"backup-policy": "daily=x"}
    return fleet


@pytest.fixture(scope="module")
def stack(azurite: Azurite) -> Iterator[Stack]:
    with local_stack(_fleet(), start=START, azurite=azurite, table_prefix="report") as running:
        running.host.run_timers(until=START + timedelta(days=2, hours=6))
        _dr_test(running)
        running.simulator.add_fault(
            FaultRule(
                operation="vms.create", resource="*/virtualmachines/web-01*", kind="never-boots"
            )
        )
        _dr_test(running)
        running.simulator.clear_faults()
        # From here on db-01's verification disks fail to provision and every copy stops
        # half way (a fault rule fires on each matching request until cleared).
        running.simulator.add_fault(
            FaultRule(operation="disks.create", resource="*/disks/db-01*", kind="fail-operation")
        )
        running.simulator.add_fault(FaultRule(operation="snapshots.copy", kind="copy-fails"))
        running.host.run_timers(until=running.clock.now() + timedelta(days=1))
        running.host.run_until_idle()
        running.operator.delete_snapshot(_live(running, DB)[-1].snapshots[0].snapshot_id)
        yield running


def _dr_test(stack: Stack) -> None:
    request = func.HttpRequest(method="POST", url="http://localhost/api/dr-tests/web-01", body=b"")
    assert stack.host.call_http("start_dr_test", request).status_code == 202
    stack.host.run_until_idle()
    stack.clock.advance(3600)


def _live(stack: Stack, key: str) -> list[Any]:
    return [b for b in stack.services.catalog.list_backups(key) if b.state is BackupState.COMPLETED]


def _html(stack: Stack) -> str:
    return render_report(
        stack.services.gateway,
        stack.services.catalog,
        stack.clock.now(),
        stack.services.settings.regions,
    )


def _cli(stack: Stack, *args: str) -> Result:
    return CliRunner().invoke(app, list(args), env={**stack.cli_env(), "COLUMNS": "250"})


@pytest.fixture(scope="module")
def page(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> PageRun:
    path = tmp_path_factory.mktemp("report") / "report.html"
    path.write_text(_html(stack))
    (ARTIFACTS / "report.png").unlink(missing_ok=True)
    expressions = {
        "rows": FLEET_ROWS,
        "operator": OPERATOR_ROWS,
        "span": SPAN,
        "legends": LEGENDS,
        "crowded": CROWDED_TICKS,
        "filtered": FILTER_DB,  # last: it hides rows
    }
    return asyncio.run(_open_in_chromium(path, expressions, ARTIFACTS / "report.png"))


@pytest.fixture(scope="module")
def health(stack: Stack) -> dict[str, Any]:
    return fleet_status(
        stack.services.gateway,
        stack.services.catalog,
        stack.clock.now(),
        stack.services.settings.regions,
    )


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
    assert _html(stack).count('<section class="card"') == 2


def test_backup_and_verification_counts_are_backups_in_the_catalog(
    stack: Stack, page: PageRun
) -> None:
    """Verified counts are backups (each by its latest result), not verification runs."""
    rows = dict(json.loads(page.results["rows"]))
    for name, key in (("web-01", WEB), ("db-01", DB)):
        live = _live(stack, key)
        verified = [b for b in live if str(b.verification) != "unverified"]
        passed = [b for b in live if str(b.verification) == "passed"]
        assert rows[name]["backups"] == [f"{len(live)}.0", str(len(live))], name
        assert rows[name]["backups_verified"][1] == str(len(verified)), name
        assert rows[name]["backups_verified_ok"][1] == str(len(passed)), name
        assert passed, name
    assert any(str(b.verification) == "failed" for b in _live(stack, DB))


def test_rpo_and_replica_lag_match_the_fleet_status(page: PageRun, health: dict[str, Any]) -> None:
    rows = dict(json.loads(page.results["rows"]))
    for vm in health["vms"]:
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
    html = _html(stack)
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


# -- what needs an operator ------------------------------------------------------------------


def test_health_lists_one_failure_of_each_kind_by_vm_and_reason(
    stack: Stack, health: dict[str, Any]
) -> None:
    listed = {
        (e["vm"], e["resource_group"], e["kind"]): e["reason"] for e in health["needs_operator"]
    }
    assert set(listed) == {
        ("db-01", GROUP, "missing_snapshots"),
        ("db-01", GROUP, "verification"),
        ("scratch-01", GROUP, "misconfigured"),
        ("web-01", GROUP, "dr_test"),
        ("web-01", GROUP, "replication"),
    }
    failed = next(b for b in _live(stack, DB) if str(b.verification) == "failed")
    assert listed["db-01", GROUP, "verification"].startswith(
        f"verification of backup {failed.backup_id} failed on 2026-11-13: "
    )
    assert "provisioning Failed" in listed["db-01", GROUP, "verification"]
    oldest = _live(stack, DB)[-1].backup_id
    assert listed["db-01", GROUP, "missing_snapshots"] == (
        f"1 listed backup has missing snapshots: {oldest}"
    )
    assert listed["scratch-01", GROUP, "misconfigured"].startswith(
        "backup-policy tag invalid: daily='x'"
    )
    assert listed["web-01", GROUP, "dr_test"].startswith("DR test failed on 2026-11-12: ")
    copy = listed["web-01", GROUP, "replication"]
    assert copy.startswith("replication 6 h behind (target 4 h): backup ")
    assert "copy failed: " in copy
    assert health["healthy"] is False


def test_the_page_shows_each_vm_and_reason_as_visible_text(
    page: PageRun, health: dict[str, Any]
) -> None:
    shown = json.loads(page.results["operator"])
    assert all(row["shown"] for row in shown)
    assert [(row["kind"], row["cells"]) for row in shown] == [
        (e["kind"], [e["vm"], e["resource_group"], e["reason"]]) for e in health["needs_operator"]
    ]
    assert "~" not in json.dumps(shown), "VMs by name and group, never the catalog's keys"


def test_the_header_states_the_span_of_the_data_in_utc(stack: Stack, page: PageRun) -> None:
    """From the first backup taken to the newest thing recorded (here a verification or a copy
    after the last backup), then the moment of the report."""
    backups = [b for key in (WEB, DB) for b in _live(stack, key)]
    first, newest = min(b.taken_at for b in backups), max(b.taken_at for b in backups)
    verified = max(b.verified_at for b in backups if b.verified_at)
    last = max(newest, verified)
    assert page.results["span"] == (
        f"Data from {first:%Y-%m-%d %H:%M} to {last:%Y-%m-%d %H:%M} UTC; "
        f"report at {stack.clock.now():%Y-%m-%d %H:%M} UTC."
    )


def test_every_chart_has_a_legend_and_uncrowded_time_labels(page: PageRun) -> None:
    legends = json.loads(page.results["legends"])
    assert len(legends) == 8, "four charts per protected VM"
    assert all(legend for _, legend in legends), legends
    by_chart = dict(legends)
    assert "copy failed" in by_chart["Replica lag: hours from the backup to its copy"]
    assert "unverified" in by_chart["Verification of each backup"]
    assert json.loads(page.results["crowded"]) == []


def test_a_screenshot_of_the_page_is_saved_as_a_test_artifact(page: PageRun) -> None:
    assert page.screenshot is not None
    assert page.screenshot.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


def test_status_lists_them_and_exits_1(stack: Stack, health: dict[str, Any]) -> None:
    result = _cli(stack, "-o", "json", "status")
    assert result.exit_code == 1
    assert json.loads(result.stdout)["needs_operator"] == health["needs_operator"]
    table = _cli(stack, "status")
    assert table.exit_code == 1
    assert "needs an operator" in table.stdout
    for entry in health["needs_operator"]:
        assert entry["reason"][:40] in table.stdout


def test_report_json_is_one_document_with_the_data_behind_the_page(
    stack: Stack, health: dict[str, Any], tmp_path: Path
) -> None:
    result = _cli(stack, "-o", "json", "report")
    assert result.exit_code == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["needs_operator"] == health["needs_operator"]
    assert document["span"]["last"].startswith("2026-11-13T")
    web = next(vm for vm in document["vms"] if vm["vm"] == "web-01")
    assert (web["resource_group"], web["dr_tests"], web["dr_success_rate"]) == (GROUP, 2, 0.5)
    assert [b["backup_id"] for b in web["backup_history"]][-1] == _live(stack, WEB)[-1].backup_id
    page = tmp_path / "fleet.html"
    both = json.loads(_cli(stack, "-o", "json", "report", "--html", str(page)).stdout)
    assert both["html"] == str(page)
    assert page.read_text().startswith("<!doctype html>")


def test_report_without_a_file_or_json_is_refused(stack: Stack) -> None:
    result = _cli(stack, "report")
    assert result.exit_code == 2
    assert "give --html FILE" in result.stderr


# -- a minimal DevTools protocol client ------------------------------------------------------


async def _open_in_chromium(
    path: Path, expressions: dict[str, str], screenshot: Path | None = None
) -> PageRun:
    """Load `path` in a fresh headless Chromium 1280 pixels wide, save the whole page as a PNG
    at `screenshot` if given, then evaluate each expression in the page."""
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
                return await _drive(ws, path, expressions, screenshot)
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
    ws: aiohttp.ClientWebSocketResponse,
    path: Path,
    expressions: dict[str, str],
    screenshot: Path | None,
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
    await send(
        "Emulation.setDeviceMetricsOverride",
        session,
        width=VIEWPORT[0],
        height=VIEWPORT[1],
        deviceScaleFactor=1,
        mobile=False,
    )
    await send("Page.navigate", session, url=path.as_uri())
    await asyncio.wait_for(loaded, 30)
    if screenshot:
        run.screenshot = await _screenshot(send, session, screenshot)
    for name, expression in expressions.items():
        reply = await send("Runtime.evaluate", session, expression=expression, returnByValue=True)
        if "exceptionDetails" in reply:
            run.errors.append(f"{name}: {reply['exceptionDetails']}")
        run.results[name] = reply["result"].get("value")
    listener.cancel()
    return run


async def _screenshot(send: Any, session: str, path: Path) -> Path:
    """The whole page, beyond the viewport, as a PNG (Page.captureScreenshot)."""
    metrics = await send("Page.getLayoutMetrics", session)
    size = metrics["cssContentSize"]
    clip = {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}
    shot = await send(
        "Page.captureScreenshot", session, format="png", captureBeyondViewport=True, clip=clip
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(base64.b64decode(shot["data"]))
    return path


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
