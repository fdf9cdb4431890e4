"""The fleet report: one self-contained HTML page of every protected VM's backup and DR health.

`make demo` writes it to a file, `GET /api/dashboard` serves it, and `backupdr report -o json`
prints the same data as one JSON document. Everything is inline (CSS, SVG charts drawn here, a few
lines of JS for the filter box): the page must open from a file, a mail attachment or a
locked-down network, so it fetches no CDN, font, script or icon.

The page opens with what needs an operator (health's list, reasons in words) and the span of time
its data covers. Every figure a reader compares with the catalog sits in a cell `data-metric=NAME`
whose `data-value` holds the raw number and whose text is the rounded one, so a browser test (and
a script) can check the page against the store.
"""

from __future__ import annotations

import html
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from string import Template
from typing import Any

from shared.domain.churn import DEFAULT_PRICE_PER_GIB_MONTH, ChurnForecast, forecast
from shared.domain.models import (
    Backup,
    BackupState,
    DiskContent,
    DrTest,
    ReplicationJob,
    ReplicationStatus,
    Tier,
    VerificationState,
)
from shared.domain.policy import Regions
from shared.health import fleet_status, iso
from shared.ports import BackupCatalog, ComputeGateway, DrSuccessRate
from shared.report_axis import label_format, time_ticks
from shared.settings import REPLICATION_LAG_TARGET_SECONDS

REPORT_DAYS = 60
PHASES = ("restore", "create_vm", "boot", "guest_check", "cleanup")
TIER_COLOURS = {Tier.MONTHLY: "#7b3fa0", Tier.WEEKLY: "#1f78b4", Tier.DAILY: "#33a02c"}
PHASE_COLOURS = dict(
    zip(PHASES, ("#1f78b4", "#ff7f00", "#6a3d9a", "#33a02c", "#999999"), strict=True)
)
PASS, FAIL, NONE, COPIED = "#33a02c", "#d62728", "#cccccc", "#1f78b4"
VERIFICATION_COLOURS = {"passed": PASS, "failed": FAIL, "unverified": NONE}
WIDTH, LEFT, RIGHT = 640, 64, 20  # chart width and plot margins, in SVG user units
MIN_SPAN = timedelta(hours=1)  # the narrowest x axis: one data point still sits on a scale


@dataclass(frozen=True)
class Axis:
    """The data's span on a chart's x axis: `start` at the left margin, `end` at the right."""

    start: datetime
    end: datetime

    def x(self, moment: datetime) -> float:
        span = (self.end - self.start).total_seconds() or 1.0
        share = (moment - self.start).total_seconds() / span
        return round(LEFT + (WIDTH - LEFT - RIGHT) * min(max(share, 0.0), 1.0), 1)


@dataclass(frozen=True)
class VmReport:
    """One protected VM: its `fleet_status` row and the history its charts draw."""

    status: dict[str, Any]
    region: str
    live: list[Backup]  # restorable now (the counts)
    backups: list[Backup]  # taken in the window and not failed, pruned ones too (the charts)
    lags: list[tuple[Backup, float | None]]
    tests: list[DrTest]  # in the window, oldest first
    rate: DrSuccessRate
    disks: tuple[DiskContent, ...]  # what the newest verification read of each disk
    churn: ChurnForecast | None  # measured change per day and what a month of it adds


@dataclass(frozen=True)
class FleetReport:
    """Everything the page and `report -o json` show, read from Azure and the catalog once."""

    status: dict[str, Any]
    days: int
    vms: list[VmReport]
    first: datetime | None  # the oldest and newest data point drawn, None when there is none
    last: datetime | None


def gather_report(
    gateway: ComputeGateway,
    catalog: BackupCatalog,
    now: datetime,
    served: Regions,
    *,
    days: int = REPORT_DAYS,
    lag_target_seconds: float = REPLICATION_LAG_TARGET_SECONDS,
) -> FleetReport:
    """The fleet as it stands at `now`, histories covering the last `days`."""
    status = fleet_status(gateway, catalog, now, served, lag_target_seconds=lag_target_seconds)
    regions = {vm.key: vm.location for vm in gateway.list_vms()}
    rates = {r.vm_key: r for r in catalog.dr_success_rates(now=now, days=days)}
    window = now - timedelta(days=days)
    vms = []
    for vm in status["vms"]:
        key = vm["vm_key"]
        every = catalog.list_backups(key, include_deleted=True)
        backups = [b for b in every if b.taken_at >= window and b.state is not BackupState.FAILED]
        newest = catalog.verifications(key, now=now, days=days)[:1]
        vms.append(
            VmReport(
                status=vm,
                region=regions.get(key, ""),
                live=[b for b in every if b.state is BackupState.COMPLETED],
                backups=backups,
                lags=_replica_lag(backups, catalog.list_replication_jobs(vm_key=key)),
                tests=sorted(
                    catalog.dr_history(key, now=now, days=days), key=lambda t: t.started_at
                ),
                rate=rates.get(key) or DrSuccessRate(key, 0, 0),
                disks=newest[0].disks if newest else (),
                churn=forecast(
                    ((b.taken_at, b.changed_bytes) for b in backups if b.changed_bytes is not None),
                    DEFAULT_PRICE_PER_GIB_MONTH,
                ),
            )
        )
    moments = [moment for vm in vms for moment in _data_points(vm)]
    fleet = dict(status, fleet_dr_success_rate=_rate(rates.get("*")))
    return FleetReport(fleet, days, vms, min(moments, default=None), max(moments, default=None))


def render_report(
    gateway: ComputeGateway, catalog: BackupCatalog, now: datetime, served: Regions, **options: Any
) -> str:
    """The whole page for the fleet at `now`; `options` as `gather_report`'s (days, lag target)."""
    return render_html(gather_report(gateway, catalog, now, served, **options))


def _data_points(vm: VmReport) -> Iterable[datetime]:
    """Every moment a chart draws: backups taken, verified and copied, DR tests run."""
    for b in vm.backups:
        yield b.taken_at
        if b.verified_at:
            yield b.verified_at
    for b, lag in vm.lags:
        if lag is not None:
            yield b.taken_at + timedelta(seconds=lag)
    for test in vm.tests:
        yield test.started_at
        if test.completed_at:
            yield test.completed_at


def _rate(rate: DrSuccessRate | None) -> float | None:
    return rate.rate if rate else None


# -- the data as one JSON document -----------------------------------------------------------


def report_document(report: FleetReport) -> dict[str, Any]:
    """The data behind the page, JSON-ready: `backupdr report -o json` prints it."""
    status = report.status
    return {
        "at": status["at"],
        "span": {"first": iso(report.first), "last": iso(report.last)},
        "days": report.days,
        "healthy": status["healthy"],
        "needs_operator": status["needs_operator"],
        "unprotected": status["unprotected"],
        "unknown_snapshots": status["unknown_snapshots"],
        "fleet_dr_success_rate": status["fleet_dr_success_rate"],
        "vms": [_vm_document(vm) for vm in report.vms],
    }


def _vm_document(vm: VmReport) -> dict[str, Any]:
    copied = {b.backup_id: lag for b, lag in vm.lags}
    return {
        **_figures(vm),
        "vm": vm.status["vm"],
        "resource_group": vm.status["resource_group"],
        "region": vm.region,
        "policy": vm.status["policy"],
        "rpo_target_seconds": vm.status["rpo_target_seconds"],
        "rpo_ok": vm.status["rpo_ok"],
        "replica_region": vm.status["replica_region"],
        "disks_read": [d.to_dict() for d in vm.disks],
        "churn": asdict(vm.churn) if vm.churn else None,
        "backup_history": [
            {
                "backup_id": b.backup_id,
                "taken_at": b.taken_at.isoformat(),
                "tier": str(b.tier),
                "state": str(b.state),
                "verification": str(b.verification),
                "replication_status": str(b.replication_status),
                "copied_after_seconds": copied.get(b.backup_id),
            }
            for b in vm.backups
        ],
        "dr_test_history": [
            {
                "started_at": t.started_at.isoformat(),
                "test_region": t.test_region,
                "success": t.success,
                "rto_seconds": t.rto_seconds,
                "error": t.error_message,
                "phase_seconds": t.phase_seconds,
            }
            for t in vm.tests
        ],
    }


def _figures(vm: VmReport) -> dict[str, Any]:
    """The numbers of the summary table, by metric name: verification counts are backups (each
    counted once, by its latest result), not verification runs."""
    states = [b.verification for b in vm.live]
    return {
        "backups": len(vm.live),
        "backups_verified": sum(s is not VerificationState.UNVERIFIED for s in states),
        "backups_verified_ok": sum(s is VerificationState.PASSED for s in states),
        "rpo_seconds": vm.status["rpo_seconds"],
        "replica_lag_seconds": vm.status["replica_lag_seconds"],
        "dr_tests": vm.rate.total,
        "dr_success_rate": vm.rate.rate,
        "last_rto_seconds": vm.rate.last_rto_seconds,
    }


# -- the page --------------------------------------------------------------------------------


def render_html(report: FleetReport) -> str:
    """The self-contained page for `report`."""
    status = report.status
    axis = _axis(report)
    return _PAGE.substitute(
        span=_span(report),
        days=report.days,
        healthy="healthy" if status["healthy"] else "needs attention",
        health_class="ok" if status["healthy"] else "bad",
        protected=len(report.vms),
        fleet_rate=_pct(status["fleet_dr_success_rate"]),
        fleet_rate_value=_value(status["fleet_dr_success_rate"]),
        operator=_operator(status),
        rows="\n".join(_row(vm) for vm in report.vms),
        cards="\n".join(_card(vm, axis) for vm in report.vms),
        style=_STYLE,
        script=_SCRIPT,
    )


def _axis(report: FleetReport) -> Axis:
    """The charts' x axis: from the first data point to the report's moment (at least an hour)."""
    now = datetime.fromisoformat(report.status["at"])
    first = report.first or now
    return Axis(min(first, now - MIN_SPAN), now)


def _span(report: FleetReport) -> str:
    at = datetime.fromisoformat(report.status["at"])
    if report.first is None or report.last is None:
        return f"No backups or tests yet; report at {_when(at)} UTC."
    return (
        f'Data from <time id="first">{_when(report.first)}</time> to '
        f'<time id="last">{_when(report.last)}</time> UTC; report at {_when(at)} UTC.'
    )


def _when(moment: datetime) -> str:
    return f"{moment:%Y-%m-%d %H:%M}"


# -- what needs an operator and the summary table ---------------------------------------------


def _operator(status: dict[str, Any]) -> str:
    """Health's list, VM by name and resource group, the reason as text on the page."""
    rows = "".join(
        f'<tr data-kind="{_e(item["kind"])}"><td>{_e(item["vm"])}</td>'
        f"<td>{_e(item['resource_group'])}</td><td>{_e(item['reason'])}</td></tr>"
        for item in status["needs_operator"]
    )
    listed = (
        '<table id="operator"><thead><tr><th>VM</th><th>resource group</th><th>why</th></tr>'
        f"</thead><tbody>{rows}</tbody></table>"
        if rows
        else '<p id="operator">nothing</p>'
    )
    notes = []
    if status["unprotected"]:
        notes.append(f"<p>No backup policy: {_e(', '.join(status['unprotected']))}.</p>")
    if status["unknown_snapshots"]:
        names = ", ".join(s.rsplit("/", 1)[-1] for s in status["unknown_snapshots"])
        notes.append(f"<p>Snapshots of this app the catalog does not know: {_e(names)}.</p>")
    return listed + "".join(notes)


def _row(vm: VmReport) -> str:
    figures, status = _figures(vm), vm.status
    lag = figures["replica_lag_seconds"]
    replica = f"{status['replica_region']}, {_hours(lag)}" if status["replica_region"] else "none"
    rate = figures["dr_success_rate"]
    cells = [
        f'<td><a href="#{_anchor(status["vm_key"])}">{_e(status["vm"])}</a></td>',
        f"<td>{_e(status['resource_group'])}</td>",
        f"<td>{_e(vm.region)}</td>",
        _metric("backups", figures["backups"], str(figures["backups"])),
        _metric(
            "rpo_seconds",
            figures["rpo_seconds"],
            _hours(figures["rpo_seconds"]),
            ok=status["rpo_ok"],
        ),
        _metric("replica_lag_seconds", lag, replica),
        _metric("backups_verified", figures["backups_verified"], str(figures["backups_verified"])),
        _metric(
            "backups_verified_ok",
            figures["backups_verified_ok"],
            str(figures["backups_verified_ok"]),
        ),
        _metric("dr_tests", figures["dr_tests"], str(figures["dr_tests"])),
        _metric("dr_success_rate", rate, _pct(rate), ok=rate in (None, 1.0)),
        _metric(
            "last_rto_seconds", figures["last_rto_seconds"], _minutes(figures["last_rto_seconds"])
        ),
    ]
    return f'<tr data-vm="{_e(status["vm"].lower())}">{"".join(cells)}</tr>'


def _metric(name: str, value: float | None, text: str, *, ok: bool | None = None) -> str:
    css = "" if ok is None else f' class="{"ok" if ok else "bad"}"'
    return f'<td data-metric="{name}" data-value="{_value(value)}"{css}>{_e(text)}</td>'


# -- one VM's card of charts -----------------------------------------------------------------


def _card(vm: VmReport, axis: Axis) -> str:
    status = vm.status
    charts = [
        ("Backups by tier", _timeline(axis, vm.backups), _tier_legend()),
        (
            "Replica lag: hours from the backup to its copy",
            _lag_chart(axis, vm.lags, status),
            _legend({"copied": COPIED, "copy failed": FAIL}),
        ),
        (
            "Verification of each backup",
            _verification_strip(axis, vm.backups),
            _legend(VERIFICATION_COLOURS),
        ),
        ("DR tests: RTO by phase", _rto_chart(vm.tests), _rto_legend()),
    ]
    body = "".join(
        f'<figure><figcaption>{_e(title)}</figcaption>{svg}<p class="legend">{legend}</p></figure>'
        for title, svg, legend in charts
    )
    return (
        f'<section class="card" id="{_anchor(status["vm_key"])}" '
        f'data-vm="{_e(status["vm"].lower())}"><h3>{_e(status["vm"])} '
        f"<small>{_e(status['resource_group'])}</small></h3>"
        f'<p class="policy">{_e(status["policy"])}</p>{_content(vm)}{body}</section>'
    )


def _content(vm: VmReport) -> str:
    """What the newest verification found on each disk, and what the VM's churn costs."""
    disks = "".join(
        f"<li>{_e(d.role)}: {_e(d.table)} "
        + _e(
            ", ".join(f"{p.type} / {p.file_system or 'no known file system'}" for p in d.partitions)
        )
        + f" ({d.bytes_read // 1024} KiB read, entropy {d.entropy:.1f} bits/byte)</li>"
        for d in vm.disks
    )
    churn = (
        f"Changed {vm.churn.changed_gib_per_day} GiB a day; a month adds about "
        f"{vm.churn.added_gib_per_month} GiB of snapshots, {vm.churn.added_cost_per_month:.2f} "
        f"at {DEFAULT_PRICE_PER_GIB_MONTH} per GiB-month."
        if vm.churn
        else "Changed bytes not measured yet."
    )
    read = f'<ul class="disks">{disks}</ul>' if disks else "<p>No verification read yet.</p>"
    return f'<div class="content"><p class="churn">{churn}</p>{read}</div>'


def _timeline(axis: Axis, backups: Sequence[Backup]) -> str:
    lanes = {Tier.MONTHLY: 16, Tier.WEEKLY: 36, Tier.DAILY: 56}
    marks = [f'<text x="4" y="{y + 4}">{tier}</text>' for tier, y in lanes.items()]
    for b in sorted(backups, key=lambda b: b.taken_at):
        colour = TIER_COLOURS[b.tier]
        pruned = b.state is BackupState.DELETED
        fill = f'fill="none" stroke="{colour}"' if pruned else f'fill="{colour}"'
        label = f"{_when(b.taken_at)} {b.tier}" + (" (pruned)" if pruned else "")
        marks.append(
            f'<circle cx="{axis.x(b.taken_at)}" cy="{lanes[b.tier]}" r="4" {fill}>'
            f"<title>{label}</title></circle>"
        )
    return _svg(84, marks + _time_axis(axis, 64))


def _replica_lag(
    backups: Iterable[Backup], jobs: Iterable[ReplicationJob]
) -> list[tuple[Backup, float | None]]:
    """Per replicated backup: seconds from taking it to its last disk's copy at 100 %, or None
    when the copy failed. Backups still copying, or never meant to be copied, are left out."""
    done: dict[str, list[datetime]] = defaultdict(list)
    for job in jobs:
        if job.status is ReplicationStatus.COMPLETED and job.completed_at:
            done[job.backup_id].append(job.completed_at)
    lags: list[tuple[Backup, float | None]] = []
    for b in backups:
        if b.replication_status is ReplicationStatus.FAILED:
            lags.append((b, None))
        elif b.replication_status is ReplicationStatus.COMPLETED and done[b.backup_id]:
            lags.append((b, (max(done[b.backup_id]) - b.taken_at).total_seconds()))
    return lags


def _lag_chart(axis: Axis, lags: list[tuple[Backup, float | None]], vm: dict[str, Any]) -> str:
    if not vm["replica_region"]:
        return _svg(24, ['<text x="4" y="16">this VM does not replicate</text>'])
    top = max([lag for _, lag in lags if lag is not None] + [3600.0])
    marks = [f'<text x="4" y="14">{_hours(top)}</text>', '<text x="4" y="60">0 h</text>']
    for b, lag in lags:
        x = axis.x(b.taken_at)
        if lag is None:
            marks.append(
                f'<rect x="{x - 2}" y="6" width="4" height="50" fill="{FAIL}">'
                f"<title>{_when(b.taken_at)} copy failed</title></rect>"
            )
            continue
        height = round(50 * lag / top, 1)
        marks.append(
            f'<rect x="{x - 2}" y="{56 - height}" width="4" height="{height}" fill="{COPIED}">'
            f"<title>{_when(b.taken_at)} copied after {_hours(lag)}</title></rect>"
        )
    return _svg(84, marks + _time_axis(axis, 64))


def _verification_strip(axis: Axis, backups: Sequence[Backup]) -> str:
    marks = []
    for b in backups:
        state, x = str(b.verification), axis.x(b.taken_at) - 3
        marks.append(
            f'<rect x="{x}" y="6" width="6" height="16" fill="{VERIFICATION_COLOURS[state]}">'
            f"<title>{_when(b.taken_at)} {state}</title></rect>"
        )
    return _svg(52, marks + _time_axis(axis, 32))


def _rto_chart(tests: Sequence[DrTest]) -> str:
    """A bar per DR test in run order (not to time scale: tests may be weeks or minutes apart),
    each labelled with its start in the format a time axis over their span would use."""
    if not tests:
        return _svg(24, ['<text x="4" y="16">no DR tests in the window</text>'])
    top = max(sum(t.phase_seconds.get(p, 0.0) for p in PHASES) for t in tests) or 1.0
    slot = (WIDTH - LEFT - RIGHT) / max(len(tests), 8)
    marks = [f'<text x="4" y="14">{_minutes(top)}</text>', '<text x="4" y="96">0 min</text>']
    label = label_format(tests[0].started_at, tests[-1].started_at)
    for i, test in enumerate(tests):
        x, y = round(LEFT + i * slot + slot * 0.15, 1), 96.0
        for phase in PHASES:
            seconds = test.phase_seconds.get(phase, 0.0)
            height = round(86 * seconds / top, 1)
            y -= height
            marks.append(
                f'<rect x="{x}" y="{round(y, 1)}" width="{round(slot * 0.7, 1)}" height="{height}" '
                f'fill="{PHASE_COLOURS[phase]}"><title>{phase} {seconds:.0f} s</title></rect>'
            )
        outcome = "ok" if test.success else f"failed: {test.error_message or 'unknown error'}"
        marks.append(
            f'<rect class="{"ok" if test.success else "bad"}" x="{x}" y="{round(y, 1)}" '
            f'width="{round(slot * 0.7, 1)}" height="{round(96 - y, 1)}" fill="none" '
            f'stroke="{"none" if test.success else FAIL}" stroke-width="2">'
            f"<title>{_when(test.started_at)} {test.test_region}: {_e(outcome)}; "
            f"RTO {_minutes(test.rto_seconds)}</title></rect>"
            f'<text x="{x}" y="112">{test.started_at:{label}}</text>'
        )
    return _svg(118, marks)


def _time_axis(axis: Axis, y: int) -> list[str]:
    """Tick marks and labels on round times that suit the axis's span (see `time_ticks`)."""
    return [
        f'<line x1="{axis.x(t)}" x2="{axis.x(t)}" y1="{y - 10}" y2="{y - 6}" stroke="#999"/>'
        f'<text x="{axis.x(t)}" y="{y + 4}" text-anchor="middle">{label}</text>'
        for t, label in time_ticks(axis.start, axis.end)
    ]


def _svg(height: int, marks: list[str]) -> str:
    return (
        f'<svg viewBox="0 0 {WIDTH} {height}" width="100%" role="img" '
        f'preserveAspectRatio="xMinYMin meet">{"".join(marks)}</svg>'
    )


def _legend(colours: dict[Any, str]) -> str:
    return "".join(
        f'<span><i style="background:{c}"></i>{_e(str(k))}</span>' for k, c in colours.items()
    )


def _tier_legend() -> str:
    pruned = f'<span><i style="border:1px solid {NONE}"></i>hollow: pruned by retention</span>'
    return _legend(TIER_COLOURS) + pruned


def _rto_legend() -> str:
    failed = f'<span><i style="border:2px solid {FAIL}"></i>failed test</span>'
    return _legend(PHASE_COLOURS) + failed


# -- formatting ----------------------------------------------------------------------------


def _e(text: object) -> str:
    return html.escape(str(text))


def _anchor(vm_key: str) -> str:
    return "vm-" + "".join(c if c.isalnum() else "-" for c in vm_key)


def _value(number: float | None) -> str:
    return "" if number is None else repr(float(number))


def _formatter(unit: float, suffix: str) -> Callable[[float | None], str]:
    return lambda seconds: "-" if seconds is None else f"{seconds / unit:.1f} {suffix}"


_hours = _formatter(3600, "h")
_minutes = _formatter(60, "min")


def _pct(rate: float | None) -> str:
    return "-" if rate is None else f"{rate:.0%}"


_STYLE = """
body{font:14px/1.4 system-ui,-apple-system,"Segoe UI",sans-serif;margin:1.5rem;color:#222}
h1{margin:0 0 .25rem}table{border-collapse:collapse;margin:1rem 0}
th,td{padding:.25rem .6rem;border-bottom:1px solid #ddd;text-align:right;white-space:nowrap}
th:nth-child(-n+3),td:nth-child(-n+3){text-align:left}
#operator td:last-child{white-space:normal;text-align:left}
#operator{border-left:4px solid #c0392b}
.ok{color:#1b7a1b}.bad{color:#c0392b;font-weight:600}
#cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(520px,1fr));gap:1rem}
.card{border:1px solid #ddd;border-radius:6px;padding:.5rem 1rem}
.card h3{margin:.25rem 0}.card small{color:#555;font-weight:400}.policy{color:#555;margin:0 0 .5rem}
figure{margin:.5rem 0}figcaption{font-size:12px;color:#555}
svg text{font-size:10px;fill:#555}
.legend{font-size:11px;color:#555;margin:.1rem 0}
.legend span{margin-right:.8rem}
.legend i{display:inline-block;width:10px;height:10px;margin:0 4px;box-sizing:border-box}
input{font:inherit;padding:.2rem .4rem}.scroll{overflow-x:auto}
"""

_SCRIPT = """
const filter = document.getElementById("filter");
filter.addEventListener("input", () => {
  const text = filter.value.trim().toLowerCase();
  for (const item of document.querySelectorAll("[data-vm]")) {
    item.hidden = !item.dataset.vm.includes(text);
  }
});
"""

_PAGE = Template("""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy"
 content="default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:">
<link rel="icon" href="data:,">
<title>backupdr fleet report</title>
<style>$style</style></head>
<body>
<h1>backupdr fleet report</h1>
<p id="span">$span</p>
<p>Fleet: <b class="$health_class">$healthy</b>, $protected protected VMs, DR success
<b data-metric="fleet_dr_success_rate" data-value="$fleet_rate_value">$fleet_rate</b>
(DR tests and charts: the last $days days).</p>
<h2>Needs an operator</h2>
$operator
<h2>Fleet</h2>
<p><label>Filter VMs <input id="filter" type="search" placeholder="name"></label></p>
<div class="scroll"><table id="fleet"><thead><tr>
<th>VM</th><th>resource group</th><th>region</th><th>backups</th><th>RPO</th>
<th>replica, lag</th><th>backups verified</th><th>verified ok</th><th>DR tests</th>
<th>DR success</th><th>last RTO</th></tr></thead>
<tbody>
$rows
</tbody></table></div>
<h2>Per VM</h2>
<div id="cards">
$cards
</div>
<script>$script</script>
</body></html>
""")
