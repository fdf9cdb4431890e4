"""`make demo`: the real workflows on a seeded fleet, on Azurite and the ARM simulator.

Starts both stand-ins, fires the app's own timers over 45 simulated days on the virtual clock (one
VM's DR restores never boot, and snapshot calls are throttled for a stretch), prints the fleet's
health, writes the HTML report, and stops what it started.
"""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from rich import box
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from local.armsim import FaultRule
from local.stack import FLEETS, Stack, local_stack
from shared.health import fleet_status
from shared.report import render_report

START = datetime(2026, 11, 1, tzinfo=UTC)
# Coarser timers than production's (local.settings.json.example), so 45 days run in well under
# two minutes: much of the cost is per tick. Every demo policy's slot falls between 00:00 and
# 03:00 UTC, so the fleet run fires on those four hours only and still takes each backup in its
# own slot.
DEMO_SETTINGS = {
    "BACKUPDR_FLEET_BACKUP_SCHEDULE": "0 0 0-3 * * *",  # production: every 15 minutes
    "BACKUPDR_REPLICATE_SCHEDULE": "0 7 5 * * *",  # catch-up; production: twice an hour
    "BACKUPDR_VERIFY_SCHEDULE": "0 20 4 * * *",  # production: every 6 hours
    "BACKUPDR_SWEEPER_SCHEDULE": "0 45 5 * * *",  # production: hourly
}
FAILING_DR_VM = "api-westus2-01"  # its restored VM never reaches PowerState/running
THROTTLED_CALLS = 12  # snapshot calls answered 429 (Retry-After 1 s) on the throttled day


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m local.demo", description=__doc__)
    parser.add_argument("--days", type=int, default=45, help="simulated days to run (45)")
    parser.add_argument("--fleet", type=Path, default=FLEETS / "demo-small.json")
    parser.add_argument("--report", type=Path, default=Path("backupdr-report.html"))
    args = parser.parse_args(argv)
    if not 2 <= args.days <= 400:
        parser.error(f"--days {args.days}: give 2 to 400 simulated days")
    if not args.fleet.is_file():
        parser.error(f"--fleet {args.fleet}: no such file")
    console = Console(highlight=False, soft_wrap=True)
    began = time.monotonic()
    with local_stack(args.fleet, start=START, settings=DEMO_SETTINGS) as stack:
        throttled_on = START + timedelta(days=_throttle_day(args.days) - 1)
        vms = stack.services.gateway.list_vms()
        console.print(
            f"Azurite and the ARM simulator are up: {args.fleet.name}, {len(vms)} VMs in "
            f"{' and '.join(sorted({vm.location for vm in vms}))}.\n"
            "Demo timers: fleet backup hourly 00:00-03:00 UTC, when the fleet's slots fall;\n"
            "  replication catch-up, verification, DR tests, sweeper and purge once a day.\n"
            f"Faults: DR restores of {FAILING_DR_VM} never boot; {THROTTLED_CALLS} snapshot calls "
            f"throttled (429) on {throttled_on:%Y-%m-%d}."
        )
        _run(stack, args.days, console)
        now = stack.clock.now()
        settings = stack.services.settings
        status = fleet_status(
            stack.services.gateway,
            stack.services.catalog,
            now,
            settings.regions,
            lag_target_seconds=settings.replication_lag_target_seconds,
        )
        console.print(_status_table(status))
        for item in status["misconfigured"]:
            console.print(f"[red]misconfigured[/] {item['vm']}: {item['error']}")
        console.print(f"no backup policy: {', '.join(status['unprotected']) or 'none'}")
        args.report.write_text(
            render_report(
                stack.services.gateway,
                stack.services.catalog,
                now,
                settings.regions,
                lag_target_seconds=settings.replication_lag_target_seconds,
            )
        )
        requests = stack.simulator.requests
        throttled = sum(r.status == 429 for r in requests)
        bill = ", ".join(f"{r} {gib:.0f}" for r, gib in sorted(stack.simulator.bill().items()))
        console.print(
            f"\n{args.days} simulated days in {time.monotonic() - began:.0f} s: "
            f"{len(requests)} ARM requests ({throttled} answered 429), "
            f"snapshot storage GiB-months {bill}.\n"
            f"Report: {args.report.resolve()}"
        )
    console.print("Stopped Azurite and the ARM simulator.")
    return 0


def _throttle_day(days: int) -> int:
    """The simulated day (1 = the first) whose snapshot calls are throttled: day 20 of 45."""
    return max(1, days * 4 // 9)


def _run(stack: Stack, days: int, console: Console) -> None:
    """Fire the timers day by day; one VM's DR restores fail throughout, one day is throttled."""
    stack.simulator.add_fault(
        FaultRule(
            operation="vms.create",
            resource=f"*/virtualmachines/{FAILING_DR_VM}*",
            kind="never-boots",
        )
    )
    throttle = FaultRule(operation="snapshots.*", kind="429", count=0, retry_after=1)
    stack.simulator.add_fault(throttle)
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("simulating", total=days)
        for day in range(1, days + 1):
            throttle.count = THROTTLED_CALLS if day == _throttle_day(days) else 0
            stack.host.run_timers(until=START + timedelta(days=day))
            progress.update(task, advance=1, description=f"{stack.clock.now():%Y-%m-%d}")


def _status_table(status: dict[str, Any]) -> Table:
    table = Table(
        title=f"Fleet status at {status['at'][:16].replace('T', ' ')} UTC",
        box=box.SIMPLE_HEAD,
        collapse_padding=True,
        pad_edge=False,
        show_edge=False,
    )
    for column in ("VM", "backups", "RPO h", "replica", "lag h", "verified", "DR ok", "RTO min"):
        left = column in ("VM", "replica")
        table.add_column(column, justify="left" if left else "right", no_wrap=True)
    for row in status["vms"]:
        rate = row["dr_success_rate"]
        table.add_row(
            row["vm"],
            str(row["backups"]),
            _fixed(row["rpo_seconds"], 3600, ok=row["rpo_ok"]),
            row["replica_region"] or "-",
            _fixed(row["replica_lag_seconds"], 3600),
            "yes" if row["last_verified"] else "no",
            "-" if rate is None else f"[{'green' if rate == 1 else 'red'}]{rate:.0%}[/]",
            _fixed(row["last_rto_seconds"], 60),
        )
    return table


def _fixed(seconds: float | None, unit: int, *, ok: bool = True) -> str:
    if seconds is None:
        return "-"
    return f"{seconds / unit:.1f}" if ok else f"[red]{seconds / unit:.1f}[/]"


if __name__ == "__main__":
    raise SystemExit(main())
