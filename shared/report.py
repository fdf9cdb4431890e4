"""The fleet report: one self-contained HTML page of every protected VM's backup and DR health.

`make demo` writes it to a file and `GET /api/dashboard` serves it. Everything is inline (CSS, SVG
charts drawn here, a few lines of JS for the filter box): the page must open from a file, a mail
attachment or a locked-down network, so it fetches no CDN, font, script or icon.

Every figure a reader compares with the catalog sits in a cell `data-metric=NAME` whose
`data-value` holds the raw number and whose text is the rounded one, so a browser test (and a
script) can check the page against the store.
"""

from __future__ import annotations

import html
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from string import Template
from typing import Any

from shared.domain.models import (
    Backup,
    BackupState,
    DrTest,
    ReplicationJob,
    ReplicationStatus,
    Tier,
)
from shared.domain.policy import Regions
from shared.health import fleet_status
from shared.ports import BackupCatalog, ComputeGateway, DrSuccessRate, VerificationSummary

REPORT_DAYS = 60
PHASES = ("restore", "create_vm", "boot", "guest_check", "cleanup")
TIER_COLOURS = {Tier.MONTHLY: "#7b3fa0", Tier.WEEKLY: "#1f78b4", Tier.DAILY: "#33a02c"}
PHASE_COLOURS = dict(
    zip(PHASES, ("#1f78b4", "#ff7f00", "#6a3d9a", "#33a02c", "#999999"), strict=True)
)
PASS, FAIL, NONE = "#33a02c", "#d62728", "#cccccc"
WIDTH, LEFT, RIGHT = 640, 64, 20  # chart width and plot margins, in SVG user units


@dataclass(frozen=True)
class Axis:
    """The report window on a chart's x axis: `start` at the left margin, `now` at the right."""

    start: datetime
    now: datetime

    def x(self, moment: datetime) -> float:
        span = (self.now - self.start).total_seconds() or 1.0
        share = (moment - self.start).total_seconds() / span
        return round(LEFT + (WIDTH - LEFT - RIGHT) * min(max(share, 0.0), 1.0), 1)

    def ticks(self, count: int = 5) -> list[datetime]:
        step = (self.now - self.start) / (count - 1)
        return [self.start + step * i for i in range(count)]


def render_report(
    gateway: ComputeGateway,
    catalog: BackupCatalog,
    now: datetime,
    served: Regions,
    *,
    days: int = REPORT_DAYS,
) -> str:
    """The whole page for the fleet as it stands at `now`, charts covering the last `days`."""
    status = fleet_status(gateway, catalog, now, served)
    regions = {vm.key: vm.location for vm in gateway.list_vms()}
    verifications = {s.vm_key: s for s in catalog.verification_report(now=now, days=days)}
    rates = {r.vm_key: r for r in catalog.dr_success_rates(now=now, days=days)}
    window = now - timedelta(days=days)
    histories = {
        vm["vm_key"]: [
            b
            for b in catalog.list_backups(vm["vm_key"], include_deleted=True)
            if b.taken_at >= window and b.state is not BackupState.FAILED
        ]
        for vm in status["vms"]
    }
    first = min((b.taken_at for kept in histories.values() for b in kept), default=window)
    axis = Axis(first.replace(hour=0, minute=0, second=0, microsecond=0), now)
    rows, cards = [], []
    for vm in status["vms"]:
        key = vm["vm_key"]
        backups = histories[key]
        jobs = catalog.list_replication_jobs(vm_key=key)
        tests = sorted(catalog.dr_history(key, now=now, days=days), key=lambda t: t.started_at)
        verification = verifications.get(key) or VerificationSummary(key, 0, 0, (), None)
        rate = rates.get(key) or DrSuccessRate(key, 0, 0)
        rows.append(_row(vm, regions.get(key, ""), verification, rate))
        cards.append(_card(vm, axis, backups, _replica_lag(backups, jobs), tests))
    fleet = rates.get("*")
    return _PAGE.substitute(
        at=f"{now:%Y-%m-%d %H:%M} UTC",
        since=f"{axis.start:%Y-%m-%d}",
        days=days,
        healthy="healthy" if status["healthy"] else "needs attention",
        health_class="ok" if status["healthy"] else "bad",
        protected=len(status["vms"]),
        fleet_rate=_pct(fleet.rate if fleet else None),
        fleet_rate_value=_value(fleet.rate if fleet else None),
        legend=_legend(),
        rows="\n".join(rows),
        attention=_attention(status),
        cards="\n".join(cards),
        style=_STYLE,
        script=_SCRIPT,
    )


# -- the summary table ---------------------------------------------------------------------


def _row(
    vm: dict[str, Any], region: str, verification: VerificationSummary, rate: DrSuccessRate
) -> str:
    lag = vm["replica_lag_seconds"]
    replica = f"{vm['replica_region']}, {_hours(lag)}" if vm["replica_region"] else "none"
    cells = [
        f'<td><a href="#{_anchor(vm["vm_key"])}">{_e(vm["vm"])}</a></td>',
        f"<td>{_e(region)}</td>",
        _metric("backups", vm["backups"], str(vm["backups"])),
        _metric("rpo_seconds", vm["rpo_seconds"], _hours(vm["rpo_seconds"]), ok=vm["rpo_ok"]),
        _metric("replica_lag_seconds", lag, replica),
        _metric("verifications_passed", verification.passed, str(verification.passed)),
        _metric("verifications", verification.total, str(verification.total)),
        _metric("dr_tests", rate.total, str(rate.total)),
        _metric("dr_success_rate", rate.rate, _pct(rate.rate), ok=rate.rate in (None, 1.0)),
        _metric("last_rto_seconds", rate.last_rto_seconds, _minutes(rate.last_rto_seconds)),
    ]
    return f'<tr data-vm="{_e(vm["vm"].lower())}">{"".join(cells)}</tr>'


def _metric(name: str, value: float | None, text: str, *, ok: bool | None = None) -> str:
    css = "" if ok is None else f' class="{"ok" if ok else "bad"}"'
    return f'<td data-metric="{name}" data-value="{_value(value)}"{css}>{_e(text)}</td>'


def _attention(status: dict[str, Any]) -> str:
    items = [
        f"<li>misconfigured: <b>{_e(m['vm'])}</b>: {_e(m['error'])}</li>"
        for m in status["misconfigured"]
    ]
    items += [
        f"<li>not protectable: <b>{_e(m['vm'])}</b>: {_e(m['reason'])}</li>"
        for m in status["not_protectable"]
    ]
    if status["unprotected"]:
        items.append(f"<li>no backup policy: {_e(', '.join(status['unprotected']))}</li>")
    items += [
        f"<li>snapshot unknown to the catalog: {_e(s)}</li>" for s in status["unknown_snapshots"]
    ]
    return f"<ul>{''.join(items)}</ul>" if items else "<p>nothing</p>"


# -- one VM's card of charts -----------------------------------------------------------------


def _card(
    vm: dict[str, Any],
    axis: Axis,
    backups: list[Backup],
    lags: list[tuple[Backup, float | None]],
    tests: list[DrTest],
) -> str:
    charts = [
        ("Backups by tier (hollow: pruned by retention)", _timeline(axis, backups)),
        ("Replica lag, hours after the backup (red: copy failed)", _lag_chart(axis, lags, vm)),
        ("Verification of each backup", _verification_strip(axis, backups)),
        ("DR tests: RTO by phase (red: failed)", _rto_chart(tests)),
    ]
    body = "".join(
        f"<figure><figcaption>{_e(title)}</figcaption>{svg}</figure>" for title, svg in charts
    )
    return (
        f'<section class="card" id="{_anchor(vm["vm_key"])}" data-vm="{_e(vm["vm"].lower())}">'
        f'<h3>{_e(vm["vm"])}</h3><p class="policy">{_e(vm["policy"])}</p>{body}</section>'
    )


def _timeline(axis: Axis, backups: Sequence[Backup]) -> str:
    lanes = {Tier.MONTHLY: 16, Tier.WEEKLY: 36, Tier.DAILY: 56}
    marks = [f'<text x="4" y="{y + 4}">{tier}</text>' for tier, y in lanes.items()]
    for b in sorted(backups, key=lambda b: b.taken_at):
        colour = TIER_COLOURS[b.tier]
        pruned = b.state is BackupState.DELETED
        fill = f'fill="none" stroke="{colour}"' if pruned else f'fill="{colour}"'
        label = f"{b.taken_at:%Y-%m-%d %H:%M} {b.tier}" + (" (pruned)" if pruned else "")
        marks.append(
            f'<circle cx="{axis.x(b.taken_at)}" cy="{lanes[b.tier]}" r="4" {fill}>'
            f"<title>{label}</title></circle>"
        )
    return _svg(80, marks + _time_axis(axis, 72))


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
    marks = [f'<text x="4" y="14">{_hours(top)}</text>', '<text x="4" y="60">0</text>']
    for b, lag in lags:
        x = axis.x(b.taken_at)
        if lag is None:
            marks.append(
                f'<rect x="{x - 2}" y="6" width="4" height="50" fill="{FAIL}">'
                f"<title>{b.taken_at:%Y-%m-%d %H:%M} copy failed</title></rect>"
            )
            continue
        height = round(50 * lag / top, 1)
        marks.append(
            f'<rect x="{x - 2}" y="{56 - height}" width="4" height="{height}" fill="#1f78b4">'
            f"<title>{b.taken_at:%Y-%m-%d %H:%M} copied after {_hours(lag)}</title></rect>"
        )
    return _svg(80, marks + _time_axis(axis, 72))


def _verification_strip(axis: Axis, backups: Sequence[Backup]) -> str:
    colours = {"passed": PASS, "failed": FAIL, "unverified": NONE}
    marks = []
    for b in backups:
        state = str(b.verification)
        marks.append(
            f'<rect x="{axis.x(b.taken_at) - 3}" y="6" width="6" height="16" '
            f'fill="{colours[state]}"><title>{b.taken_at:%Y-%m-%d %H:%M} {state}</title></rect>'
        )
    return _svg(48, marks + _time_axis(axis, 40))


def _rto_chart(tests: Sequence[DrTest]) -> str:
    if not tests:
        return _svg(24, ['<text x="4" y="16">no DR tests in the window</text>'])
    top = max(sum(t.phase_seconds.get(p, 0.0) for p in PHASES) for t in tests) or 1.0
    slot = (WIDTH - LEFT - RIGHT) / max(len(tests), 8)
    marks = [f'<text x="4" y="14">{_minutes(top)}</text>', '<text x="4" y="96">0</text>']
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
            f"<title>{test.started_at:%Y-%m-%d %H:%M} {test.test_region}: {_e(outcome)}; "
            f"RTO {_minutes(test.rto_seconds)}</title></rect>"
            f'<text x="{x}" y="112">{test.started_at:%m-%d}</text>'
        )
    return _svg(118, marks)


def _time_axis(axis: Axis, y: int) -> list[str]:
    return [
        f'<text x="{axis.x(t)}" y="{y}" text-anchor="middle">{t:%m-%d}</text>' for t in axis.ticks()
    ]


def _svg(height: int, marks: list[str]) -> str:
    return (
        f'<svg viewBox="0 0 {WIDTH} {height}" width="100%" role="img" '
        f'preserveAspectRatio="xMinYMin meet">{"".join(marks)}</svg>'
    )


def _legend() -> str:
    def keys(colours: dict[Any, str]) -> str:
        return "".join(
            f'<span><i style="background:{c}"></i>{_e(str(k))}</span>' for k, c in colours.items()
        )

    return f"<p>tiers {keys(TIER_COLOURS)}</p><p>RTO phases {keys(PHASE_COLOURS)}</p>"


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
th:first-child,td:first-child,td:nth-child(2){text-align:left}
.ok{color:#1b7a1b}.bad{color:#c0392b;font-weight:600}
#cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(520px,1fr));gap:1rem}
.card{border:1px solid #ddd;border-radius:6px;padding:.5rem 1rem}
.card h3{margin:.25rem 0}.policy{color:#555;margin:0 0 .5rem}
figure{margin:.5rem 0}figcaption{font-size:12px;color:#555}
svg text{font-size:10px;fill:#555}
#legend span{margin-right:.8rem}#legend i{display:inline-block;width:10px;height:10px;margin:0 4px}
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
<p>At $at; charts since $since, counts over the last $days days.
Fleet: <b class="$health_class">$healthy</b>, $protected protected VMs, DR success
<b data-metric="fleet_dr_success_rate" data-value="$fleet_rate_value">$fleet_rate</b>.</p>
<div id="legend">$legend</div>
<p><label>Filter VMs <input id="filter" type="search" placeholder="name"></label></p>
<div class="scroll"><table id="fleet"><thead><tr>
<th>VM</th><th>region</th><th>backups</th><th>RPO</th><th>replica, lag</th><th>verified ok</th>
<th>verifications</th><th>DR tests</th><th>DR success</th><th>last RTO</th></tr></thead>
<tbody>
$rows
</tbody></table></div>
<h2>Needs an operator</h2>
$attention
<h2>Per VM</h2>
<div id="cards">
$cards
</div>
<script>$script</script>
</body></html>
""")
