"""`backupdr dr ...`: restore VMs in their DR region to prove recovery works, and the record."""

from __future__ import annotations

import dataclasses
from typing import Annotated, Any

import typer

from cli.context import GroupOption, OutputOption, Run, checked, options
from cli.errors import FAILED, BadInput
from cli.output import duration, emit, percent, table
from cli.workflows import Start, outcome, run_workflows, succeeded
from shared.domain.models import VM
from shared.domain.policy import PolicyError, policy_for
from shared.inputs import (
    RESOURCE_GROUP,
    checked_backup_id,
    checked_region,
    dr_test_request,
    policy_region,
)

app = typer.Typer(no_args_is_help=True, help="Disaster-recovery tests: run them, read the record.")

DaysOption = Annotated[int, typer.Option(min=1, help="the window, in days")]
RESULT_COLUMNS = [
    ("vm_name", "VM"),
    ("backup_name", "backup"),
    ("test_region", "region"),
    ("success", "passed"),
    ("rto", "RTO"),
    ("error_message", "error"),
]


@app.command("test")
def start_test(
    ctx: typer.Context,
    vm: Annotated[str, typer.Argument(help="the VM's name")],
    test_region: Annotated[
        str | None, typer.Option(help="where to restore (default: the policy's replicate region)")
    ] = None,
    backup: Annotated[
        str | None, typer.Option(help="the backup to restore (default: newest replicated)")
    ] = None,
    test_resource_group: Annotated[
        str | None, typer.Option(help="the DR-test group (default: the setting for the region)")
    ] = None,
    rto_target: Annotated[
        float | None, typer.Option(min=1, help="seconds; slower recoveries fail the test")
    ] = None,
    resource_group: GroupOption = None,
    output: OutputOption = None,
) -> None:
    """Restore the VM from a replicated backup in the DR region, boot it, check it, clean up."""
    opts = options(ctx)
    run = opts.run()
    target = run.known_vm(vm, resource_group)
    region = (
        checked(checked_region, test_region, "--test-region")
        if test_region is not None
        else checked(policy_region, target)
    )
    if backup is not None:
        checked(checked_backup_id, backup, "--backup")
        if run.services.catalog.get_backup(target.key, backup) is None:
            raise BadInput(f"--backup {backup!r}: no such backup of {target.name}")
    if test_resource_group is not None:
        run = _in_group(run, test_resource_group)
    test_id, payload = dr_test_request(
        target, run.now, test_region=region, backup_id=backup, rto_target_seconds=rto_target
    )
    _run_tests(opts.format(output), run, [Start("dr_test", test_id, payload)], None)


def _in_group(run: Run, group: str) -> Run:
    """This run with DR tests placed in `group` instead of the region's configured group."""
    if not RESOURCE_GROUP.match(group):
        raise BadInput(f"--test-resource-group {group!r} is not a valid resource group name")
    settings = dataclasses.replace(run.services.settings, drtest_resource_group=group)
    return dataclasses.replace(run, services=dataclasses.replace(run.services, settings=settings))


@app.command("test-all")
def start_all_tests(
    ctx: typer.Context,
    max_parallel: Annotated[
        int, typer.Option("--max-parallel", min=1, help="at most this many at once")
    ] = 2,
    output: OutputOption = None,
) -> None:
    """DR-test every VM whose policy replicates, in its replicate region."""
    opts = options(ctx)
    run = opts.run()
    now = run.now
    starts = []
    for vm in sorted(run.services.gateway.list_vms(), key=lambda v: v.key):
        region = _replicate_region(vm)
        if region:
            test_id, payload = dr_test_request(vm, now, test_region=region)
            starts.append(Start("dr_test", test_id, payload))
    _run_tests(opts.format(output), run, starts, max_parallel)


def _replicate_region(vm: VM) -> str | None:
    try:
        policy = policy_for(vm)
    except PolicyError:
        return None  # `backupdr status` reports misconfigured tags
    if vm.not_protectable:
        return None  # never backed up (`backupdr status` says why)
    return policy.replicate if policy else None


def _run_tests(fmt: Any, run: Run, starts: list[Start], max_parallel: int | None) -> None:
    statuses = run_workflows(run, starts, label="DR testing", max_parallel=max_parallel)
    results = [outcome(status) for status in statuses]
    emit(
        fmt,
        {"results": results},
        lambda: [
            table(
                "DR tests",
                [{**r, "rto": duration(r.get("rto_seconds"))} for r in results],
                RESULT_COLUMNS,
            )
        ],
    )
    if not all(succeeded(r) for r in results):
        raise typer.Exit(FAILED)


@app.command("test-history")
def history(
    ctx: typer.Context,
    vm: Annotated[str, typer.Argument(help="the VM's name")],
    days: DaysOption = 30,
    resource_group: GroupOption = None,
    output: OutputOption = None,
) -> None:
    """The VM's DR tests over the last days, newest first, with phases and RTO."""
    opts = options(ctx)
    run = opts.run()
    target = run.known_vm(vm, resource_group)
    tests = [
        t.to_dict() for t in run.services.catalog.dr_history(target.key, now=run.now, days=days)
    ]
    emit(
        opts.format(output),
        {"vm": target.name, "days": days, "tests": tests},
        lambda: [
            table(
                f"DR tests of {target.name}, last {days} days",
                [{**t, "rto": duration(t.get("rto_seconds"))} for t in tests],
                [("started_at", "started"), *RESULT_COLUMNS[1:]],
            )
        ],
    )


@app.command("success-rate")
def success_rate(
    ctx: typer.Context,
    vm: Annotated[str | None, typer.Option(help="only this VM")] = None,
    days: DaysOption = 30,
    resource_group: GroupOption = None,
    output: OutputOption = None,
) -> None:
    """DR success per VM and for the fleet, with RTO percentiles of the successful tests."""
    opts = options(ctx)
    run = opts.run()
    key = run.known_vm(vm, resource_group).key if vm else None
    catalog = run.services.catalog
    rates = [
        {**r.to_dict(), "rate": r.rate}
        for r in catalog.dr_success_rates(now=run.now, days=days, vm_key=key)
    ]
    rto = catalog.rto_percentiles(now=run.now, days=days, vm_key=key)
    emit(
        opts.format(output),
        {"days": days, "rates": rates, "rto_percentiles": {f"p{p}": s for p, s in rto.items()}},
        lambda: [
            table(
                f"DR success, last {days} days",
                [
                    {**r, "rate": percent(r["rate"]), "rto": duration(r["last_rto_seconds"])}
                    for r in rates
                ],
                [
                    ("vm_key", "VM"),
                    ("total", "tests"),
                    ("succeeded", "passed"),
                    ("rate", "rate"),
                    ("rto", "last RTO"),
                ],
            ),
            "RTO " + ", ".join(f"p{p} {duration(s)}" for p, s in rto.items()) if rto else "",
        ],
    )
