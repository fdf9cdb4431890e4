"""`backupdr dr ...`: restore VMs in their DR region to prove recovery works, and the record."""

from __future__ import annotations

import dataclasses
from typing import Annotated, Any

import typer

from cli.context import GroupOption, OutputOption, Run, checked, options
from cli.errors import FAILED, BadInput
from cli.output import duration, emit, named, percent, table, vm_label, vm_names
from cli.workflows import Start, outcome, run_workflows, succeeded
from shared.activities import failover as failovers
from shared.activities.drtest import dr_test_problems
from shared.domain.models import VM
from shared.domain.policy import PolicyError, Regions, policy_for
from shared.inputs import (
    RESOURCE_GROUP,
    InputError,
    checked_backup_id,
    checked_region,
    dr_test_request,
    gone_vms,
    policy_region,
)

app = typer.Typer(
    no_args_is_help=True,
    help="Disaster recovery: tests (run them, read the record) and failover to the DR region.",
)

DaysOption = Annotated[int, typer.Option(min=1, help="the window, in days")]
RESULT_COLUMNS = [
    ("vm", "VM"),
    ("resource_group", "resource group"),
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
        else checked(policy_region, target, run.services.settings.regions)
    )
    if backup is not None:
        checked(checked_backup_id, backup, "--backup")
        if run.services.catalog.get_backup(target.key, backup) is None:
            raise BadInput(f"--backup {backup!r}: no such backup of {target.name}")
    if test_resource_group is not None:
        run = _in_group(run, test_resource_group)
    group = run.services.settings.drtest_group(region)
    problems = dr_test_problems(run.services, target, region, group, backup)
    if problems:
        raise BadInput("; ".join(problems))
    test_id, payload = dr_test_request(
        target, run.now, test_region=region, backup_id=backup, rto_target_seconds=rto_target
    )
    _run_tests(opts.format(output), run, [Start("dr_test_v2", test_id, payload)], None)


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
        region = _replicate_region(vm, run.services.settings.regions)
        if region:
            test_id, payload = dr_test_request(vm, now, test_region=region)
            starts.append(Start("dr_test_v2", test_id, payload))
    _run_tests(opts.format(output), run, starts, max_parallel)


def _replicate_region(vm: VM, served: Regions) -> str | None:
    try:
        policy = policy_for(vm, served)
    except PolicyError:
        return None  # `backupdr status` reports misconfigured tags
    if vm.not_protectable:
        return None  # never backed up (`backupdr status` says why)
    return policy.replicate if policy else None


def _run_tests(fmt: Any, run: Run, starts: list[Start], max_parallel: int | None) -> None:
    statuses = run_workflows(run, starts, label="DR testing", max_parallel=max_parallel)
    names = vm_names(run.services)
    results = [
        named({"vm_key": start.payload["vm_key"], **outcome(status)}, names)
        for start, status in zip(starts, statuses, strict=True)
    ]
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
    names = {target.key: (target.name, target.resource_group)}
    tests = [
        named(t.to_dict(), names)
        for t in run.services.catalog.dr_history(target.key, now=run.now, days=days)
    ]
    emit(
        opts.format(output),
        {"vm": target.name, "resource_group": target.resource_group, "days": days, "tests": tests},
        lambda: [
            table(
                f"DR tests of {vm_label(target.name, target.resource_group)}, last {days} days",
                [{**t, "rto": duration(t.get("rto_seconds"))} for t in tests],
                [("started_at", "started"), *RESULT_COLUMNS[2:]],
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
    names = vm_names(run.services)
    rates = [
        {**named(r.to_dict(), names), "rate": r.rate}
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
                    ("vm", "VM"),
                    ("resource_group", "resource group"),
                    ("total", "tests"),
                    ("succeeded", "passed"),
                    ("rate", "rate"),
                    ("rto", "last RTO"),
                ],
            ),
            "RTO " + ", ".join(f"p{p} {duration(s)}" for p, s in rto.items()) if rto else "",
        ],
    )


FAILOVER_COLUMNS = [
    ("group", "group"),
    ("vm_name", "VM"),
    ("state", "state"),
    ("new_vm_name", "new VM"),
    ("rto", "RTO"),
    ("phases", "restore / create / boot / guest"),
    ("error", "error"),
]


@app.command("failover")
def failover(
    ctx: typer.Context,
    vm: Annotated[str | None, typer.Argument(help="the VM's name (or --region)")] = None,
    region: Annotated[
        str | None,
        typer.Option(help="fail over every protected VM of this region (or a VM)"),
    ] = None,
    group: Annotated[
        int | None,
        typer.Option(min=0, help="with --region: only this backup-recovery-group"),
    ] = None,
    backup: Annotated[
        str | None,
        typer.Option(help="with a VM: the backup to restore (default: newest complete replica)"),
    ] = None,
    resource_group: GroupOption = None,
    output: OutputOption = None,
) -> None:
    """Bring a VM, or every protected VM of a region, up in its DR region from the replicas,
    in the recovery group and subnet infra provisions there, and leave it running.

    A region goes by `backup-recovery-group` tag (lower first, untagged last), the VMs of a
    group in parallel. Every check (a complete replica, the subnet, the size, the name) runs
    before anything starts: a failed one exits 2 and creates nothing.
    """
    if (vm is None) == (region is None):
        raise BadInput("give a VM or --region REGION (exactly one)")
    if group is not None and region is None:
        raise BadInput("--group is for a region failover: give it with --region")
    if backup is not None and vm is None:
        raise BadInput("--backup is for one VM's failover: give it with a VM")
    opts = options(ctx)
    run = opts.run()
    if vm is not None:
        _fail_over_vm(opts.format(output), run, vm, backup, resource_group)
    else:
        where = checked(checked_region, region, "--region")
        _fail_over_region(opts.format(output), run, where, group)


def _fail_over_vm(
    fmt: Any, run: Run, name: str, backup: str | None, resource_group: str | None
) -> None:
    target = checked(failovers.source_vm, run.services, name, resource_group)
    region = _failover_region(target, run.services.settings.regions)
    if backup is not None:
        checked(checked_backup_id, backup, "--backup")
        if run.services.catalog.get_backup(target.key, backup) is None:
            raise BadInput(f"--backup {backup!r}: no such backup of {target.name}")
    instance_id = failovers.failover_id(target.key, run.now)
    item = {
        "vm_key": target.key,
        "vm_name": target.name,
        "target_region": region,
        "failover_id": instance_id,
        "backup_id": backup,
    }
    plan, problems = failovers.failover_problems(run.services, item)
    if problems:
        raise BadInput(f"{target.name}: " + "; ".join(problems))
    (status,) = run_workflows(
        run, [Start("failover_vm", instance_id, item)], label=f"failing over {target.name}"
    )
    result = outcome(status)
    emit(
        fmt,
        result,
        lambda: [
            f"failover of {target.name} to {region} from backup {plan['backup_id']}: "
            f"{result.get('state')}",
            f"VM: {result.get('new_vm_name') or '-'} in {plan['resource_group']}"
            f" ({result.get('vm_id') or '-'})",
            f"RTO {duration(result.get('rto_seconds')) or '-'}"
            f" ({_phases(result.get('phase_seconds'))})",
            f"error: {result['error']}" if result.get("error") else "",
        ],
    )
    if not succeeded(result):
        raise typer.Exit(FAILED)


def _failover_region(vm: VM, served: Regions) -> str:
    try:
        return policy_region(vm, served)
    except InputError as error:
        if error.code != "NoTestRegion":  # a malformed policy tag says what is wrong with it
            raise BadInput(str(error)) from None
    raise BadInput(
        f"{vm.name}'s backups stay in {vm.location}: a failover starts from a replica in a DR "
        "region (the policy's replicate=REGION)"
    )


def _fail_over_region(fmt: Any, run: Run, region: str, group: int | None) -> None:
    chosen, _ = failovers.region_vms(run.services, region)
    if not chosen:
        served = sorted({v.location for v in _protected(run)})
        raise BadInput(
            f"--region {region}: no protected VM to fail over there"
            + (f" (protected VMs are in {', '.join(served)})" if served else "")
        )
    if group is not None:
        chosen = [v for v in chosen if failovers.recovery_group(v) == group]
        if not chosen:
            raise BadInput(f"--group {group}: no protected VM of {region} is in that group")
    started = run.now
    problems = []
    for target in chosen:
        item = {
            "vm_key": target.key,
            "vm_name": target.name,
            "target_region": policy_region(target, run.services.settings.regions),
            "failover_id": failovers.member_id(target.key, started),
        }
        problems += [
            f"{target.name}: {p}" for p in failovers.failover_problems(run.services, item)[1]
        ]
    if problems:
        raise BadInput("; ".join(problems))
    instance_id = failovers.region_failover_id(region, started, group)
    payload = {"region": region, "region_failover_id": instance_id, "group": group}
    (status,) = run_workflows(
        run,
        [Start("failover_region", instance_id, payload)],
        label=f"failing over {len(chosen)} VM(s) of {region}",
        children=("failover_vm", len(chosen)),
    )
    result = outcome(status)
    rows = [
        {
            **v,
            "group": g["group"],
            "rto": duration(v.get("rto_seconds")),
            "phases": _phases(v.get("phase_seconds")),
        }
        for g in result.get("groups", [])
        for v in g["vms"]
    ]
    emit(
        fmt,
        result,
        lambda: [
            table(f"Failover of {region}", rows, FAILOVER_COLUMNS),
            *[f"skipped {s['vm_name']}: {s['reason']}" for s in result.get("skipped", [])],
            f"{region}: {result.get('failed_over', 0)} of {result.get('total', 0)} VM(s) up, "
            f"region RTO {duration(result.get('rto_seconds')) or '-'}",
            f"error: {result['error']}" if result.get("error") else "",
        ],
    )
    if not succeeded(result):
        raise typer.Exit(FAILED)


def _protected(run: Run) -> list[VM]:
    vms = failovers.live_sources(run.services)
    every = vms + gone_vms(run.services.catalog, vms)
    return [v for v in every if _replicate_region(v, run.services.settings.regions)]


def _phases(phases: dict[str, float] | None) -> str:
    if not phases:
        return "-"
    return " / ".join(duration(phases.get(p)) or "-" for p in failovers.PHASES)
