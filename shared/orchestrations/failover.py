"""Failover workflows: a VM, or every protected VM of a region, brought up in the DR region.

`failover_vm` runs the restore workflow (`restore_backup_v2`, as a sub-orchestration: its
pre-flight, creates and clean-up after a failure) into the DR region's recovery group, then
waits for the VM to run and checks its guest as a DR test does, and records the row with the RTO
by phase. The VM is left running: unlike a DR test, nothing is cleaned up once it came up.
`failover_region` runs `failover_vm` for every protected VM of a region, recovery group after
recovery group, the VMs of a group in parallel in batches.
"""

from __future__ import annotations

from collections.abc import Generator
from datetime import datetime
from itertools import groupby
from typing import Any

from shared.activities.failover import group_order, restore_request
from shared.orchestrations.drtest import boot_and_check, restore_phases
from shared.orchestrations.durable import RETRY, Context, Payload, failure_text, fan_out


class FailoverFailed(Exception):
    """A phase of the failover did not succeed; the message says which and why."""


def failover_vm(context: Context) -> Generator[Any, Any, Payload]:
    """Plan (backup, recovery group, name) -> restore (sub-orchestration: pre-flight, disks,
    NIC, VM) -> running -> guest answers (RTO stops) -> record.

    Input: {vm_key, vm_name?, target_region, failover_id, backup_id?, region_failover_id?,
    recovery_group?}. `failover_id` names this instance, the restore and the row.
    """
    item: Payload = context.get_input()
    started = context.current_utc_datetime
    row: Payload = {
        "failover_id": item["failover_id"],
        "vm_key": item["vm_key"],
        "vm_name": item.get("vm_name"),
        "target_region": item["target_region"],
        "region_failover_id": item.get("region_failover_id"),
        "recovery_group": item.get("recovery_group"),
        "started": started.isoformat(),
        "state": "running",
    }
    phases: dict[str, float] = {}
    try:
        plan = yield context.call_activity_with_retry("prepare_failover", RETRY, item)
        if plan["problems"]:
            row |= {"state": "rejected", "error": "; ".join(plan["problems"])}
        else:
            row |= {k: plan[k] for k in ("backup_id", "vm_name", "source_region", "new_vm")}
            row["resource_group"] = plan["resource_group"]
            yield context.call_activity_with_retry("record_failover", RETRY, row)
            yield from _bring_up(context, item, plan, row, phases, started)
    except Exception as error:
        row["error"] = failure_text(error)
        if row["state"] != "rejected":  # a restore its pre-flight refused created nothing
            row["state"] = "failed"
    row |= {"phases": phases, "completed": context.current_utc_datetime.isoformat()}
    recorded: Payload = yield context.call_activity_with_retry("record_failover", RETRY, row)
    return {**recorded, "started": started.isoformat(), "failover_id": item["failover_id"]}


def _bring_up(
    context: Context,
    item: Payload,
    plan: Payload,
    row: Payload,
    phases: dict[str, float],
    started: datetime,
) -> Generator[Any, Any, None]:
    restored: Payload = yield context.call_sub_orchestrator(
        "restore_backup_v2", restore_request(item, plan), f"{item['failover_id']}-restore"
    )
    if restored["state"] == "completed":  # after a failure the restore deleted what it made
        row["vm_id"] = restored.get("vm_id")
    restore_phases(phases, restored, started, context.current_utc_datetime)
    if restored["state"] != "completed":
        state = "rejected" if restored["state"] == "rejected" else "failed"
        row["state"] = state
        raise FailoverFailed(f"restore {restored['state']}: {restored.get('error')}")
    _, failure = yield from boot_and_check(
        context, item["vm_key"], restored["vm_id"], plan["os_type"], phases
    )
    if failure is not None:
        raise FailoverFailed(failure)
    row["rto_seconds"] = (context.current_utc_datetime - started).total_seconds()
    row["state"] = "completed"


def failover_region(context: Context) -> Generator[Any, Any, Payload]:
    """Every protected VM of a region, by recovery group: groups in order, the VMs of a group
    in parallel in batches, each a `failover_vm` under an id unique to this run.

    Input: {region, region_failover_id, group?}. The region's RTO runs from this start to the
    end of its last VM; the output sums up every VM by group.
    """
    item: Payload = context.get_input()
    started = context.current_utc_datetime
    listed = yield context.call_activity_with_retry(
        "list_region_failover",
        RETRY,
        {
            "region": item["region"],
            "group": item.get("group"),
            "region_failover_id": item["region_failover_id"],
            "started": started.isoformat(),
        },
    )
    vms: list[Payload] = listed["vms"]
    groups: list[Payload] = []
    done = 0
    for group, members in groupby(vms, key=lambda v: v["recovery_group"]):
        batch = list(members)
        context.set_custom_status(
            {"group": group, "done": done, "total": len(vms), "groups_done": len(groups)}
        )
        results: list[Payload] = []
        yield from fan_out(
            context,
            "failover_vm",
            batch,
            lambda v: str(v["failover_id"]),
            int(listed["batch_size"]),
            results,
        )
        done += len(batch)
        groups.append(
            {
                "group": group,
                "vms": [_summary(vm, result) for vm, result in zip(batch, results, strict=True)],
            }
        )
    ends = [
        datetime.fromisoformat(v["completed_at"])
        for g in groups
        for v in g["vms"]
        if v.get("completed_at")
    ]
    every = [v for g in groups for v in g["vms"]]
    completed = sum(v["state"] == "completed" for v in every)
    return {
        "state": "completed" if completed == len(every) else "failed",
        "region": item["region"],
        "region_failover_id": item["region_failover_id"],
        "started": started.isoformat(),
        "completed": context.current_utc_datetime.isoformat(),
        "rto_seconds": (max(ends) - started).total_seconds() if ends else None,
        "total": len(every),
        "failed_over": completed,
        "groups": sorted(groups, key=lambda g: group_order(g["group"])),
        "skipped": listed["skipped"],
    }


def _summary(vm: Payload, result: Payload) -> Payload:
    keep = ("state", "error", "new_vm_name", "vm_id", "rto_seconds", "phase_seconds")
    return {
        "vm_name": vm["vm_name"],
        "failover_id": vm["failover_id"],
        "target_region": vm["target_region"],
        "completed_at": result.get("completed_at"),
        **{k: result.get(k) for k in keep},
    }
