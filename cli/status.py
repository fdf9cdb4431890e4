"""`backupdr status` and `backupdr report`: the fleet's health, as tables or as an HTML page."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from cli.context import OutputOption, options
from cli.errors import FAILED, Failed
from cli.output import duration, emit, percent, table
from shared.health import fleet_status


def status(ctx: typer.Context, output: OutputOption = None) -> None:
    """Per VM: RPO against its schedule, replica lag, verification, DR success and last RTO;
    also misconfigured tags, VMs whose disks cannot be backed up (not protectable), VMs with no
    policy, VMs that are gone but have backups (source gone) and snapshots the catalog does not
    know; for a VM whose replica lags, the backup it waits on and why; backups whose snapshots
    Azure no longer has. Exits 1 when the fleet is not healthy."""
    opts = options(ctx)
    run = opts.run()
    health = fleet_status(
        run.services.gateway, run.services.catalog, run.now, run.services.settings.regions
    )
    emit(opts.format(output), health, lambda: _views(health))
    if not health["healthy"]:
        raise typer.Exit(FAILED)


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
    views: list[Any] = [
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
    ]
    if health["misconfigured"]:
        views.append(
            table(
                "misconfigured policy tags",
                health["misconfigured"],
                [("vm", "VM"), ("error", "why")],
            )
        )
    if health["not_protectable"]:
        views.append(
            table(
                "not protectable (disks Azure cannot snapshot)",
                health["not_protectable"],
                [("vm", "VM"), ("reason", "why")],
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
    html: Annotated[Path, typer.Option("--html", help="the HTML file to write", dir_okay=False)],
) -> None:
    """Write the fleet's health report as one self-contained HTML page."""
    from shared.report import render_report

    run = options(ctx).run()
    page = render_report(
        run.services.gateway, run.services.catalog, run.now, run.services.settings.regions
    )
    try:
        html.write_text(page, encoding="utf-8")
    except OSError as error:
        raise Failed(f"cannot write {html}: {error.strerror}") from None
    typer.echo(f"wrote {html}")
