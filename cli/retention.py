"""`backupdr backup plan-retention | hold | release | undelete`: what retention will do, and what
an operator tells it: apply a reviewed plan, hold a backup, bring a soft-deleted one back."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

import typer

from cli.backup import VmArg, backup_by_id
from cli.context import Format, GroupOption, OutputOption, Run, checked, options
from cli.errors import BadInput
from cli.output import emit, table, vm_label
from shared.activities.retention import Planned, carry_out, plan_vm, set_hold, undelete
from shared.domain.models import Backup, BackupState
from shared.inputs import valid_policy

BackupOption = Annotated[str, typer.Option("--backup", help="the backup id (from `backup list`)")]
ApplyOption = Annotated[
    str | None,
    typer.Option(
        "--apply",
        metavar="PLAN",
        help="apply the plan with this id (printed by the dry run), past the circuit breaker",
    ),
]


def plan(
    ctx: typer.Context,
    vm: VmArg,
    resource_group: GroupOption = None,
    apply: ApplyOption = None,
    output: OutputOption = None,
) -> None:
    """What retention would keep and delete now, with every reason (a dry run: deletes nothing).
    With --apply PLAN it carries out that plan, as reviewed, even past the circuit breaker."""
    opts = options(ctx)
    run = opts.run()
    target = run.known_vm(vm, resource_group)
    if not target.gone:  # a malformed tag is bad input here; a gone VM keeps everything
        checked(valid_policy, target, run.services.settings.regions)
    planned = plan_vm(run.services, target.key, force=apply is not None, full=True)
    if apply is not None and apply != planned.digest:
        raise BadInput(
            f"--apply {apply}: the plan is now {planned.digest} (its deletions changed since "
            "it was reviewed); review it again"
        )
    applied = carry_out(run.services, planned) if apply is not None else None
    halted = None if applied else planned.plan.halted
    rows = _rows(planned, timedelta(days=run.services.settings.soft_delete_days))
    document = {
        "vm": target.name,
        "resource_group": target.resource_group,
        "plan": planned.digest,
        "halted": halted,
        "applied": applied,
        "decisions": rows,
    }
    label = vm_label(target.name, target.resource_group)
    emit(
        opts.format(output),
        document,
        lambda: [
            table(
                f"retention plan {planned.digest} for {label}"
                + (" (applied)" if applied else " (dry run)"),
                rows,
                [
                    ("backup_id", "backup"),
                    ("taken_at", "taken (UTC)"),
                    ("keep", "keep"),
                    ("hold", "hold"),
                    ("reasons", "reasons"),
                ],
            ),
            f"halted: {halted}; a timer run deletes nothing, --apply deletes what is expired"
            if halted
            else "",
            _summary(applied)
            if applied
            else f"to apply this plan as it stands: --apply {planned.digest}",
        ],
    )


def _rows(planned: Planned, window: timedelta) -> list[dict[str, Any]]:
    """One row per planned backup as `--apply` would decide it (past the circuit breaker), then
    the soft-deleted ones with when they are purged."""
    by_id = {b.backup_id: b for b in planned.backups}
    rows = [
        {
            "backup_id": d.backup_id,
            "taken_at": by_id[d.backup_id].taken_at,
            "keep": d.keep,
            "hold": by_id[d.backup_id].hold,
            "reasons": list(d.reasons),
        }
        for d in planned.forced.decisions
    ]
    for b in planned.backups:
        if b.state in (BackupState.SOFT_DELETED, BackupState.PURGING):
            when = "held: not purged" if b.hold else _purge_time(b, window)
            rows.append(
                {
                    "backup_id": b.backup_id,
                    "taken_at": b.taken_at,
                    "keep": False,
                    "hold": b.hold,
                    "reasons": [f"{b.state}: {when}"],
                }
            )
    return rows


def _purge_time(backup: Backup, window: timedelta) -> str:
    if backup.state is BackupState.PURGING or backup.deleted_at is None:
        return "purged by the next run"
    return f"purged after {backup.deleted_at + window:%Y-%m-%d %H:%M}"


def _summary(applied: dict[str, Any]) -> str:
    return (
        f"applied: {applied['deleted']} soft-deleted, {applied['purged']} purged, "
        f"{applied['kept']} kept"
    )


def hold(
    ctx: typer.Context,
    vm: VmArg,
    backup: BackupOption,
    resource_group: GroupOption = None,
    output: OutputOption = None,
) -> None:
    """Keep a backup whatever retention says (tag backup-hold=true on its snapshots)."""
    _held(ctx, vm, backup, resource_group, output, held=True)


def release(
    ctx: typer.Context,
    vm: VmArg,
    backup: BackupOption,
    resource_group: GroupOption = None,
    output: OutputOption = None,
) -> None:
    """Let retention decide about a held backup again."""
    _held(ctx, vm, backup, resource_group, output, held=False)


def _held(
    ctx: typer.Context,
    vm: str,
    backup_id: str,
    group: str | None,
    output: Format | None,
    *,
    held: bool,
) -> None:
    opts = options(ctx)
    run = opts.run()
    found = _owned(run, vm, backup_id, group)
    changed = set_hold(run.operator, found, held)
    emit(
        opts.format(output),
        {**_which(changed), "hold": changed.hold},
        lambda: [f"{changed.backup_id}: {'held' if held else 'released'}"],
    )


def undelete_backup(
    ctx: typer.Context,
    vm: VmArg,
    backup: BackupOption,
    resource_group: GroupOption = None,
    output: OutputOption = None,
) -> None:
    """Bring a soft-deleted backup back (held, so retention keeps it until it is released)."""
    opts = options(ctx)
    run = opts.run()
    found = _owned(run, vm, backup, resource_group)
    back = undelete(run.operator, found)
    emit(
        opts.format(output),
        {**_which(back), "state": back.state, "hold": back.hold},
        lambda: [
            f"{back.backup_id}: restorable again, and held; "
            f"`backupdr backup release {vm} --backup {back.backup_id}` lets retention decide"
        ],
    )


def _which(backup: Backup) -> dict[str, str]:
    return {
        "vm": backup.vm_name,
        "resource_group": backup.source_resource_group,
        "backup_id": backup.backup_id,
    }


def _owned(run: Run, vm: str, backup_id: str, group: str | None) -> Backup:
    """The backup, if it is one of this VM's (bad input otherwise: nothing is changed)."""
    target = run.known_vm(vm, group)
    found = backup_by_id(run, backup_id)
    if found.vm_key != target.key:
        raise BadInput(f"backup {backup_id} is not a backup of {target.name}")
    return found
