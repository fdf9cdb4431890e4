"""`backupdr backup ...`: a VM's policy, its backups, and the work on them.

Policy commands write the `backup-policy` tag (Tags API merge); work commands (trigger,
replicate, verify) run the app's workflows; the rest read the catalog.
"""

from __future__ import annotations

import dataclasses
import re
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Annotated, Any

import typer

from cli.context import GroupOption, OutputOption, Run, checked, options
from cli.errors import FAILED, BadInput, Failed
from cli.output import cell, emit, named, percent, table, vm_label, vm_names
from cli.workflows import Start, outcome, run_workflows, succeeded
from shared.activities.restore import check_restore
from shared.domain.churn import DEFAULT_PRICE_PER_GIB_MONTH, forecast
from shared.domain.models import (
    AuditEntry,
    Backup,
    BackupState,
    ReplicationStatus,
    Tier,
)
from shared.domain.policy import (
    POLICY_TAG,
    BackupPolicy,
    Cadence,
    PolicyError,
    format_policy,
    policy_for,
    policy_from_tags,
)
from shared.domain.retention import MANUAL_KEEP
from shared.inputs import (
    RestoreFields,
    checked_backup_id,
    checked_region,
    checked_restore_shape,
    manual_backup,
    restore_request,
    valid_policy,
)
from shared.orchestrations.replication import replication_instance_id

app = typer.Typer(no_args_is_help=True, help="Back up VMs: policy, backups, copies, checks.")

VmArg = Annotated[str, typer.Argument(help="the VM's name")]
BackupArg = Annotated[str, typer.Argument(help="a backup id (from `backup list`)")]
ParallelOption = Annotated[
    int | None, typer.Option("--max-parallel", min=1, help="at most this many at once")
]
RegionOption = Annotated[
    str, typer.Option("--target-region", help="the Azure region to copy to, e.g. westus2")
]
_SINCE = re.compile(r"^([0-9]{1,4})([dh])\Z")
# How `backup restore` names its inputs in a refusal.
CLI_FIELDS = RestoreFields(
    backup="--backup",
    new_vm="--new-vm",
    disks_only="--disks-only",
    region="--region",
    resource_group="--resource-group",
    subnet="--subnet",
    vm_group="--vm-resource-group",
)
_NONE = "none"

BACKUP_COLUMNS = [
    ("backup_id", "backup"),
    ("taken_at", "taken (UTC)"),
    ("tier", "tier"),
    ("state", "state"),
    ("size_gb", "GiB"),
    ("replica_region", "replica"),
    ("replication_status", "copy"),
    ("verification", "verified"),
    ("hold", "hold"),
]


@app.command()
def configure(
    ctx: typer.Context,
    vm: VmArg,
    daily: Annotated[int | None, typer.Option(help="days with backups to keep")] = None,
    weekly: Annotated[int | None, typer.Option(help="ISO weeks with backups to keep")] = None,
    monthly: Annotated[int | None, typer.Option(help="months with backups to keep")] = None,
    schedule: Annotated[str | None, typer.Option(help="5-field cron, UTC")] = None,
    replicate_to: Annotated[
        str | None, typer.Option(help="DR region for copies ('none' stops copying)")
    ] = None,
    verify: Annotated[Cadence | None, typer.Option(help="how often to verify")] = None,
    drtest: Annotated[Cadence | None, typer.Option(help="how often to DR-test")] = None,
    resource_group: GroupOption = None,
    output: OutputOption = None,
) -> None:
    """Write the VM's backup-policy tag; options not given keep their current values."""
    opts = options(ctx)
    run = opts.run()
    target = run.vm(vm, resource_group)
    try:
        base = policy_from_tags(target.tags) or BackupPolicy()
    except PolicyError:
        base = BackupPolicy()  # configuring is how a malformed tag gets fixed
    given: dict[str, Any] = {
        "daily": daily,
        "weekly": weekly,
        "monthly": monthly,
        "schedule": schedule,
        "verify": verify,
        "drtest": drtest,
    }
    changes = {key: value for key, value in given.items() if value is not None}
    if replicate_to is not None:
        changes["replicate"] = None if replicate_to.lower() == _NONE else replicate_to
    try:
        policy = dataclasses.replace(base, **changes)
        value = format_policy(policy)
        tagged = dataclasses.replace(target, tags={**target.tags, POLICY_TAG: value})
        policy_for(tagged, run.services.settings.regions)
    except PolicyError as error:
        raise BadInput(f"{target.name}: {error}") from None
    run.operator.gateway.set_policy_tag(target.id, value)
    _audit_tag(run, target.id, target.key, value)
    document = {
        "vm": target.name,
        "resource_group": target.resource_group,
        "tag": value,
        "policy": policy.describe(),
    }
    label = vm_label(target.name, target.resource_group)
    emit(opts.format(output), document, lambda: [f"{label}: {policy.describe()}", value])


@app.command()
def disable(
    ctx: typer.Context, vm: VmArg, resource_group: GroupOption = None, output: OutputOption = None
) -> None:
    """Remove the VM's backup-policy tag: no new backups; existing backups stay."""
    opts = options(ctx)
    run = opts.run()
    target = run.vm(vm, resource_group)
    run.operator.gateway.set_policy_tag(target.id, None)
    _audit_tag(run, target.id, target.key, None)
    emit(
        opts.format(output),
        {"vm": target.name, "resource_group": target.resource_group, "disabled": True},
        lambda: [
            f"{vm_label(target.name, target.resource_group)}: backups disabled "
            "(existing backups are kept)"
        ],
    )


def _audit_tag(run: Run, vm_id: str, vm_key: str, value: str | None) -> None:
    run.services.catalog.audit(
        AuditEntry(
            at=run.now,
            action="tag",
            resource_id=vm_id,
            result="ok",
            vm_key=vm_key,
            operation="configure" if value else "disable",
            identity=run.operator.gateway.principal(),
            detail=value,
        )
    )


@app.command()
def show(
    ctx: typer.Context, vm: VmArg, resource_group: GroupOption = None, output: OutputOption = None
) -> None:
    """The VM's policy in words, and its latest backup."""
    opts = options(ctx)
    run = opts.run()
    target = run.known_vm(vm, resource_group)
    policy = checked(valid_policy, target, run.services.settings.regions)
    backups = run.services.catalog.list_backups(target.key)
    latest = next((b for b in backups if b.state is BackupState.COMPLETED), None)
    document = {
        "vm": target.name,
        "resource_group": target.resource_group,
        "location": target.location,
        "source_gone": target.gone,
        "tag": format_policy(policy) if policy else None,
        "policy": policy.describe() if policy else None,
        "backups": len(backups),
        "last_backup": latest.to_dict() if latest else None,
    }
    emit(
        opts.format(output),
        document,
        lambda: [
            f"{target.name} ({target.resource_group}, {target.location})"
            + (": source gone (as its last backup recorded it)" if target.gone else ""),
            f"policy: {policy.describe() if policy else 'none (not backed up)'}",
            f"last backup: {latest.backup_id if latest else '-'}"
            + (f" at {cell(latest.taken_at)} ({latest.tier})" if latest else ""),
        ],
    )


@app.command()
def trigger(
    ctx: typer.Context,
    vm: VmArg,
    tier: Annotated[
        Tier | None,
        typer.Option(help="fail unless the backup gets this tier (tiers follow the calendar)"),
    ] = None,
    keep_days: Annotated[
        int,
        typer.Option(help="keep this backup this many days, whatever the VM's policy says"),
    ] = MANUAL_KEEP.days,
    resource_group: GroupOption = None,
    output: OutputOption = None,
) -> None:
    """Back up the VM now, with the scheduled workflow (snapshot, copy, retention)."""
    opts = options(ctx)
    run = opts.run()
    target = run.vm(vm, resource_group)
    instance_id, payload = checked(
        manual_backup, target, run.now, run.services.settings.regions, keep_days
    )
    (status,) = run_workflows(
        run, [Start("vm_backup_v3", instance_id, payload)], label=f"backing up {target.name}"
    )
    result = outcome(status)
    backup = run.services.catalog.get_backup(target.key, result.get("backup_id", ""))
    document = {
        "vm": target.name,
        "resource_group": target.resource_group,
        **{key: value for key, value in result.items() if key != "vm_key"},
        "backup": backup.to_dict() if backup else None,
    }
    emit(
        opts.format(output),
        document,
        lambda: [
            table(
                f"backup of {vm_label(target.name, target.resource_group)}",
                [_backup_row(backup)] if backup else [],
                BACKUP_COLUMNS,
            ),
            f"state: {result.get('state')}",
            f"error: {result['error']}" if result.get("error") else "",
        ],
    )
    if not succeeded(result):
        raise typer.Exit(FAILED)
    if tier is not None and backup is not None and backup.tier is not tier:
        raise Failed(
            f"backup {backup.backup_id} is {backup.tier}, not {tier}: a backup is monthly when "
            "first in its month, weekly when first in its ISO week, else daily"
        )


@app.command("list")
def list_backups(
    ctx: typer.Context,
    vm: VmArg,
    tier: Annotated[Tier | None, typer.Option(help="only this tier")] = None,
    since: Annotated[
        str | None, typer.Option(help="taken since: 2026-11-01, 2026-11-01T02:00, 7d or 12h")
    ] = None,
    resource_group: GroupOption = None,
    output: OutputOption = None,
) -> None:
    """The VM's backups, newest first."""
    opts = options(ctx)
    run = opts.run()
    target = run.known_vm(vm, resource_group)
    after = _since(since, run.now) if since else None
    backups = [
        b
        for b in run.services.catalog.list_backups(target.key)
        if (tier is None or b.tier is tier) and (after is None or b.taken_at >= after)
    ]
    rows = [_backup_row(b) for b in backups]
    gone = " (source gone)" if target.gone else ""
    emit(
        opts.format(output),
        {
            "vm": target.name,
            "resource_group": target.resource_group,
            "source_gone": target.gone,
            "backups": [b.to_dict() for b in backups],
        },
        lambda: [
            table(
                f"backups of {vm_label(target.name, target.resource_group)}{gone}",
                rows,
                BACKUP_COLUMNS,
            )
        ],
    )


def _since(text: str, now: datetime) -> datetime:
    relative = _SINCE.match(text.strip())
    if relative:
        unit = "days" if relative[2] == "d" else "hours"
        return now - timedelta(**{unit: int(relative[1])})
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise BadInput(f"--since {text!r}: give a date (2026-11-01), a time, or 7d / 12h") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _backup_row(backup: Backup) -> dict[str, Any]:
    return {**backup.to_dict(), "taken_at": backup.taken_at, "hold": "held" if backup.hold else ""}


@app.command()
def restore(
    ctx: typer.Context,
    vm: VmArg,
    backup: Annotated[str, typer.Option("--backup", help="the backup to restore from")],
    new_vm: Annotated[
        str | None,
        typer.Option(
            "--new-vm", help="create a VM of this name on the restored disks (or --disks-only)"
        ),
    ] = None,
    disks_only: Annotated[
        bool, typer.Option("--disks-only", help="restore the disks only, no VM (or --new-vm)")
    ] = False,
    region: Annotated[
        str | None,
        typer.Option(
            help="the VM's own region (default: from the backup's snapshots) or the backup's "
            "replica region (from its replicas, which must be complete)"
        ),
    ] = None,
    target_group: Annotated[
        str | None,
        typer.Option(
            "--resource-group",
            "-g",
            help="the resource group to restore into (default: the VM's own); it must exist",
        ),
    ] = None,
    subnet: Annotated[
        str | None,
        typer.Option(
            help="VNET/SUBNET in the target group, or a subnet's resource id, for the new VM's "
            "NIC (default: the VM's recorded subnet, when restoring in its own region)"
        ),
    ] = None,
    keep_partial: Annotated[
        bool,
        typer.Option("--keep-partial", help="if it fails midway, keep and list what it created"),
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="do not ask for confirmation")] = False,
    vm_group: Annotated[
        str | None,
        typer.Option("--vm-resource-group", help="the VM's resource group, when names repeat"),
    ] = None,
    output: OutputOption = None,
) -> None:
    """Restore a backup as new disks, and with --new-vm a new VM on them built as the backup
    recorded it (size, security profile, disks' LUNs, SKUs and caching, licence type, tags but
    its backup policy, boot diagnostics, the NIC's accelerated networking, and its static
    private IP when back on its own subnet and free: Dynamic otherwise, saying why); the VM's
    own disks are never touched. Give exactly one of --new-vm NAME or --disks-only: there is no
    default, as the two leave different things behind.

    Before creating anything it checks that the backup (or its replica in --region) is complete,
    the group and subnet exist, the size is available there and the name is free; a failed
    check exits 2 and changes nothing. A restore that fails midway deletes what it created
    (with --keep-partial: lists it) and exits 1.
    """
    checked(
        checked_restore_shape, new_vm, disks_only, target_group, subnet, keep_partial, CLI_FIELDS
    )
    opts = options(ctx)
    run = opts.run()
    target = run.known_vm(vm, vm_group)  # a VM that is gone is restored from the catalog alone
    checked(checked_backup_id, backup, "--backup")
    found = run.services.catalog.find_backup(backup)
    restore_id, payload = checked(
        partial(
            restore_request,
            backup_id=backup,
            new_vm=new_vm,
            disks_only=disks_only,
            region=region,
            resource_group=target_group,
            subnet=subnet,
            keep_partial=keep_partial,
            fields=CLI_FIELDS,
        ),
        target,
        found,
        run.now,
    )
    assert found is not None  # restore_request refuses a backup the catalog does not have
    where, group = payload["region"], payload["resource_group"]
    # The workflow checks again before it creates anything; this answers before the prompt.
    problems = check_restore(payload, run.operator)["problems"]
    if problems:
        raise BadInput("; ".join(problems))
    source = "snapshots" if where == found.region else "replicas"
    what = f"{len(found.snapshots)} new disk(s)" + (f" and VM {new_vm}" if new_vm else "")
    if not yes:
        typer.confirm(
            f"Restore {found.backup_id} of {target.name} from its {source} in {where} as {what} "
            f"in {group}? The VM's own disks are not touched.",
            abort=True,
            err=True,
        )
    (status,) = run_workflows(
        run.as_operator(),  # it writes the operator's groups, which the app's roles do not reach
        [Start("restore_backup_v2", restore_id, payload)],
        label=f"restoring {target.name}",
    )
    result = outcome(status)
    if result.get("state") == "rejected":  # something changed since the check above
        raise BadInput(str(result.get("error")))
    emit(
        opts.format(output),
        result,
        lambda: [
            f"restore of {found.backup_id} into {group} ({where}): {result.get('state')}",
            *[f"disk: {disk}" for disk in result.get("disks", [])],
            f"NIC: {result.get('nic_id') or '-'}",
            f"VM: {result.get('vm_id') or '-'}",
            f"error: {result['error']}" if result.get("error") else "",
            *[f"kept: {kept}" for kept in result.get("kept", [])],
            "deleted what it created" if result.get("cleaned_up") else "",
            *_applied_lines(result.get("applied")),
        ],
    )
    if not succeeded(result):
        raise typer.Exit(FAILED)


@app.command()
def replicate(
    ctx: typer.Context, backup: BackupArg, target_region: RegionOption, output: OutputOption = None
) -> None:
    """Copy one backup to another region (incremental CopyStart, followed to 100 %)."""
    opts = options(ctx)
    run = opts.run()
    found = backup_by_id(run, backup)
    region = _copy_region(found, target_region)
    _run_copies(opts.format(output), run, [found], region, None)


@app.command("replicate-all")
def replicate_all(
    ctx: typer.Context,
    vm: VmArg,
    target_region: RegionOption,
    max_parallel: ParallelOption = None,
    resource_group: GroupOption = None,
    output: OutputOption = None,
) -> None:
    """Copy every completed backup of the VM not yet copied, oldest first."""
    opts = options(ctx)
    run = opts.run()
    target = run.known_vm(vm, resource_group)
    backups = [
        b
        for b in reversed(run.services.catalog.list_backups(target.key))
        if b.state is BackupState.COMPLETED
        and not (
            b.replica_region == target_region
            and b.replication_status is ReplicationStatus.COMPLETED
        )
    ]
    region = checked(checked_region, target_region, "--target-region")
    if region == target.location.lower():
        raise BadInput(f"--target-region {region}: is the VM's own region; pick another region")
    _run_copies(opts.format(output), run, backups, region, max_parallel)


def _copy_region(backup: Backup, target_region: str) -> str:
    region = checked(checked_region, target_region, "--target-region")
    if region == backup.region.lower():
        raise BadInput(f"--target-region {region}: is the backup's own region; pick another")
    return region


def _run_copies(
    fmt: Any, run: Run, backups: list[Backup], region: str, max_parallel: int | None
) -> None:
    starts = [
        Start(
            "replicate_backup",
            replication_instance_id(b.backup_id),
            {"vm_key": b.vm_key, "backup_id": b.backup_id, "target_region": region},
        )
        for b in backups
    ]
    statuses = run_workflows(run, starts, label=f"copying to {region}", max_parallel=max_parallel)
    results = [
        {"backup_id": b.backup_id, **outcome(s)} for b, s in zip(backups, statuses, strict=True)
    ]
    emit(
        fmt,
        {"target_region": region, "results": results},
        lambda: [
            table(
                f"copies to {region}",
                [{**r, "why": r.get("error") or r.get("reason")} for r in results],
                [("backup_id", "backup"), ("state", "state"), ("why", "why")],
            )
        ],
    )
    if not all(succeeded(r) for r in results):
        raise typer.Exit(FAILED)


@app.command("replication-status")
def replication_status(
    ctx: typer.Context, vm: VmArg, resource_group: GroupOption = None, output: OutputOption = None
) -> None:
    """Each backup's copy in the DR region, and its copy jobs."""
    opts = options(ctx)
    run = opts.run()
    target = run.known_vm(vm, resource_group)
    backups = [
        {
            "backup_id": b.backup_id,
            "taken_at": b.taken_at,
            "replica_region": b.replica_region,
            "replication_status": b.replication_status,
            "disks": {ref.disk_role: ref.replica_status for ref in b.snapshots},
        }
        for b in run.services.catalog.list_backups(target.key)
        if b.state is BackupState.COMPLETED
    ]
    names = {target.key: (target.name, target.resource_group)}
    listed = run.services.catalog.list_replication_jobs(vm_key=target.key)
    jobs = [named(j.to_dict(), names) for j in listed]
    emit(
        opts.format(output),
        {
            "vm": target.name,
            "resource_group": target.resource_group,
            "backups": backups,
            "jobs": jobs,
        },
        lambda: [
            table(
                f"replication of {vm_label(target.name, target.resource_group)}",
                backups,
                [
                    ("backup_id", "backup"),
                    ("taken_at", "taken (UTC)"),
                    ("replica_region", "region"),
                    ("replication_status", "status"),
                ],
            ),
            _jobs_table(jobs),
        ],
    )


JOB_COLUMNS = [
    ("backup_id", "backup"),
    ("disk_role", "disk"),
    ("target_region", "region"),
    ("status", "status"),
    ("completion_percent", "%"),
    ("started_at", "started"),
    ("error_message", "error"),
]


def _jobs_table(jobs: list[dict[str, Any]], vm_columns: list[tuple[str, str]] | None = None) -> Any:
    return table("copy jobs", jobs, [*(vm_columns or []), *JOB_COLUMNS])


@app.command("replication-jobs")
def replication_jobs(
    ctx: typer.Context,
    status: Annotated[
        ReplicationStatus | None, typer.Option(help="only jobs in this state")
    ] = None,
    output: OutputOption = None,
) -> None:
    """Copy jobs across the fleet."""
    opts = options(ctx)
    services = opts.run().services
    names = vm_names(services)
    listed = services.catalog.list_replication_jobs(status=status)
    jobs = [named(j.to_dict(), names) for j in listed]
    emit(
        opts.format(output),
        {"jobs": jobs},
        lambda: [_jobs_table(jobs, [("vm", "VM"), ("resource_group", "resource group")])],
    )


@app.command()
def verify(ctx: typer.Context, backup: BackupArg, output: OutputOption = None) -> None:
    """Restore the backup to test disks, check them, delete them, record the result."""
    opts = options(ctx)
    run = opts.run()
    _run_verifications(opts.format(output), run, [backup_by_id(run, backup)], None)


@app.command("verify-all")
def verify_all(
    ctx: typer.Context,
    vm: VmArg,
    max_parallel: ParallelOption = None,
    resource_group: GroupOption = None,
    output: OutputOption = None,
) -> None:
    """Verify every completed backup of the VM."""
    opts = options(ctx)
    run = opts.run()
    target = run.known_vm(vm, resource_group)
    backups = [
        b for b in run.services.catalog.list_backups(target.key) if b.state is BackupState.COMPLETED
    ]
    _run_verifications(opts.format(output), run, backups, max_parallel)


def _run_verifications(fmt: Any, run: Run, backups: list[Backup], max_parallel: int | None) -> None:
    starts = [
        Start(
            "verify_backup",
            f"verify-{b.backup_id}",
            {"vm_key": b.vm_key, "backup_id": b.backup_id, "region": b.region},
        )
        for b in backups
    ]
    statuses = run_workflows(run, starts, label="verifying", max_parallel=max_parallel)
    results = [
        {"backup_id": b.backup_id, **outcome(s)} for b, s in zip(backups, statuses, strict=True)
    ]
    emit(
        fmt,
        {"results": results},
        lambda: [
            table(
                "verifications",
                results,
                [
                    ("backup_id", "backup"),
                    ("success", "passed"),
                    ("size_matches", "size ok"),
                    ("verification_time_seconds", "seconds"),
                    ("error_message", "error"),
                ],
            )
        ],
    )
    if not all(succeeded(r) for r in results):
        raise typer.Exit(FAILED)


@app.command("verification-report")
def verification_report(
    ctx: typer.Context,
    vm: Annotated[str | None, typer.Option(help="only this VM")] = None,
    days: Annotated[int, typer.Option(min=1, help="the window, in days")] = 7,
    resource_group: GroupOption = None,
    price: Annotated[
        float,
        typer.Option(
            "--price-per-gib-month",
            min=0,
            help="your region's incremental snapshot price, for the cost forecast",
        ),
    ] = DEFAULT_PRICE_PER_GIB_MONTH,
    output: OutputOption = None,
) -> None:
    """Verification results per VM over the last days (rate, failures, last verified, what the
    newest verification read of each disk) and the VM's measured churn with what a month of it
    adds to snapshot storage."""
    opts = options(ctx)
    run = opts.run()
    key = run.known_vm(vm, resource_group).key if vm else None
    catalog = run.services.catalog
    summaries = catalog.verification_report(now=run.now, days=days, vm_key=key)
    names = vm_names(run.services)
    rows = []
    for s in summaries:
        newest = catalog.verifications(s.vm_key, now=run.now, days=days)[:1]
        churn = forecast(
            (
                (b.taken_at, b.changed_bytes)
                for b in catalog.list_backups(s.vm_key)
                if b.changed_bytes is not None and run.now - b.taken_at <= timedelta(days=days)
            ),
            price,
        )
        rows.append(
            {
                **named(s.to_dict(), names),
                "success_rate": s.success_rate,
                "failed": s.total - s.passed,
                "last_verified": s.last_verified,
                "disks": [d.to_dict() for d in newest[0].disks] if newest else [],
                "churn": dataclasses.asdict(churn) if churn else None,
            }
        )
    emit(
        opts.format(output),
        {"days": days, "price_per_gib_month": price, "vms": rows},
        lambda: [
            table(
                f"verifications, last {days} days",
                [_verification_row(r) for r in rows],
                [
                    ("vm", "VM"),
                    ("resource_group", "resource group"),
                    ("total", "total"),
                    ("passed", "passed"),
                    ("failed", "failed"),
                    ("success_rate", "rate"),
                    ("last_verified", "last verified"),
                    ("disks", "newest: disks read"),
                    ("changed", "changed GiB/day"),
                    ("cost", "added cost/month"),
                ],
            )
        ],
    )


def _verification_row(row: dict[str, Any]) -> dict[str, Any]:
    """A VM's row in words: each disk's table and file systems, its churn and what it costs."""
    disks = "; ".join(
        f"{d['role']}: {d['table']} "
        + ", ".join(f"{p['type']}/{p['file_system'] or 'unknown'}" for p in d["partitions"])
        + f" ({d['bytes_read'] // 1024} KiB read)"
        for d in row["disks"]
    )
    churn = row["churn"]
    return {
        **row,
        "success_rate": percent(row["success_rate"]),
        "disks": disks or "-",
        "changed": churn["changed_gib_per_day"] if churn else "-",
        "cost": f"{churn['added_cost_per_month']:.2f}" if churn else "-",
    }


def _applied_lines(applied: dict[str, Any] | None) -> list[str]:
    """The recorded settings a restored VM got, and the notes on what differs."""
    if not applied:
        return []
    address = applied.get("private_ip_address")
    boot = (
        "off"
        if not applied.get("boot_diagnostics")
        else applied.get("boot_diagnostics_uri") or "managed storage"
    )
    return [
        f"private IP: {applied.get('private_ip_allocation')}" + (f" {address}" if address else ""),
        f"accelerated networking: {'on' if applied.get('accelerated_networking') else 'off'}",
        f"license type: {applied.get('license_type') or '-'}",
        f"boot diagnostics: {boot}",
        f"tags: {', '.join(sorted(applied.get('vm_tags') or {})) or '-'}",
        *[f"note: {note}" for note in applied.get("notes") or []],
    ]


def backup_by_id(run: Run, backup_id: str) -> Backup:
    checked(checked_backup_id, backup_id, "backup")
    found = run.services.catalog.find_backup(backup_id)
    if found is None:
        raise BadInput(f"no backup with id {backup_id!r}")
    return found
