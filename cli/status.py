"""`backupdr status` and `backupdr report`: the fleet's health, as tables or as an HTML page."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from cli.context import Format, OutputOption, Run, options
from cli.errors import FAILED, BadInput, Failed
from cli.output import duration, emit, percent, table
from shared.health import fleet_status

T = TypeVar("T")


def status(ctx: typer.Context, output: OutputOption = None) -> None:
    """Per VM: RPO against its schedule, replica lag, verification, DR success and last RTO;
    first, what needs an operator, one line per VM and reason (a bad policy tag, disks Azure
    cannot snapshot, RPO or replication over target, a failed or overdue verification, a failed
    DR test, backups whose snapshots Azure no longer has); also VMs with no policy, VMs that are
    gone but have backups (source gone) and snapshots the catalog does not know; for a VM whose
    replica lags, the backup it waits on and why. Exits 1 when the fleet is not healthy."""
    opts = options(ctx)
    health = _read(opts.run(), fleet_status)
    emit(opts.format(output), health, lambda: _views(health))
    if not health["healthy"]:
        raise typer.Exit(FAILED)


def _read(run: Run, read: Callable[..., T]) -> T:
    """`fleet_status` or `gather_report` for this run, with the app's replication lag target."""
    settings = run.services.settings
    return read(
        run.services.gateway,
        run.services.catalog,
        run.now,
        settings.regions,
        lag_target_seconds=settings.replication_lag_target_seconds,
    )


def _views(health: dict[str, Any]) -> list[Any]:
    rows = [
        {
            **vm,
            "rpo": duration(vm["rpo_seconds"]),
            "target": duration(vm["rpo_target_seconds"]),
            "lag": duration(vm["replica_lag_seconds"]),
            "verified": percent(vm["verification_rate"]),
            "dr": percent(vm["dr_success_rate"]),
            "rto": duration(vm["last_rto_seconds"]),
        }
        for vm in health["vms"]
    ]
    views: list[Any] = []
    if health["needs_operator"]:
        views.append(
            table(
                "needs an operator",
                health["needs_operator"],
                [
                    ("vm", "VM"),
                    ("resource_group", "resource group"),
                    ("kind", "what"),
                    ("reason", "why"),
                ],
            )
        )
    views.append(
        table(
            f"fleet at {health['at']}",
            rows,
            [
                ("vm", "VM"),
                ("backups", "backups"),
                ("rpo", "RPO"),
                ("target", "target"),
                ("rpo_ok", "RPO ok"),
                ("replica_region", "DR region"),
                ("lag", "replica lag"),
                ("last_verified", "last verified"),
                ("verified", "verified"),
                ("dr", "DR ok"),
                ("rto", "last RTO"),
            ],
        )
    )
    if health["source_gone"]:
        views.append(
            table(
                "source gone (VM no longer in Azure; its backups are kept)",
                health["source_gone"],
                [
                    ("vm", "VM"),
                    ("resource_group", "resource group"),
                    ("region", "region"),
                    ("backups", "backups"),
                    ("last_backup", "last backup"),
                    ("replica_region", "DR region"),
                ],
            )
        )
    behind = [
        {"vm": vm["vm"], **vm["replication_behind"]}
        for vm in health["vms"]
        if vm["replication_behind"]
    ]
    if behind:
        views.append(
            table(
                "replication behind (oldest backup not replicated)",
                behind,
                [
                    ("vm", "VM"),
                    ("backup_id", "backup"),
                    ("replication_status", "state"),
                    ("since", "since"),
                    ("error", "last error"),
                ],
            )
        )
    if health["missing_snapshots"]:
        rows = [{**m, "missing": ", ".join(m["missing"])} for m in health["missing_snapshots"]]
        views.append(
            table(
                "backups whose snapshots Azure no longer has",
                rows,
                [("vm", "VM"), ("backup_id", "backup"), ("missing", "missing snapshots")],
            )
        )
    views.append(f"no policy: {', '.join(health['unprotected']) or 'none'}")
    if health["unknown_snapshots"]:
        views.append(
            "snapshots the catalog does not know: " + ", ".join(health["unknown_snapshots"])
        )
    views.append("healthy" if health["healthy"] else "NOT healthy")
    return views


def report(
    ctx: typer.Context,
    html: Annotated[
        Path | None, typer.Option("--html", help="the HTML file to write", dir_okay=False)
    ] = None,
    output: OutputOption = None,
) -> None:
    """Write the fleet's health report as one self-contained HTML page; with `-o json`, print
    the data behind it (what needs an operator, the span of the data, per-VM figures and
    histories) as one JSON document instead, and write the page too if --html names a file."""
    from shared.report import gather_report, render_html, report_document  # heavy: on use

    opts = options(ctx)
    fmt = opts.format(output)
    if html is None and fmt is not Format.JSON:
        raise BadInput("give --html FILE to write the page, or -o json for its data")
    data = _read(opts.run(), gather_report)
    document = report_document(data)
    if html is not None:
        try:
            html.write_text(render_html(data), encoding="utf-8")
        except OSError as error:
            raise Failed(f"cannot write {html}: {error.strerror}") from None
        document["html"] = str(html)
    emit(fmt, document, lambda: [f"wrote {html}"])
