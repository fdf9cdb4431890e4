"""Backup workflows: the fleet run and one VM's backup (snapshot, record, replicate, retain)."""

from __future__ import annotations

from collections.abc import Generator
from datetime import datetime, timedelta
from typing import Any

from shared.domain import names
from shared.domain.models import vm_key as make_vm_key
from shared.orchestrations.durable import RETRY, Context, Payload, failure_text, fan_out, poll
from shared.orchestrations.replication import replication_instance_id

SNAPSHOT_TIMEOUT = timedelta(hours=1)


def fleet_backup(context: Context) -> Generator[Any, Any, Payload]:
    """List the fleet once, then back up each due VM as its own sub-orchestration, in batches.

    Instance ids are deterministic per (VM, slot): an overlapping run for the same slot cannot
    start a second backup of any VM; its start is refused and counted, not retried.
    """
    now = context.current_utc_datetime
    found = yield context.call_activity_with_retry("list_due_vms", RETRY, {"now": now.isoformat()})
    outcome = yield from fan_out(
        context, "vm_backup", found["due"], _instance_id, found["batch_size"]
    )
    return {**outcome, "misconfigured": found["misconfigured"]}


def _instance_id(item: Payload) -> str:
    vm = item["vm"]
    key = make_vm_key(vm["resource_group"], vm["name"])
    return names.orchestration_id("backup", key, _slot(item))


def _slot(item: Payload) -> datetime:
    return datetime.fromisoformat(item["slot"])


def vm_backup(context: Context) -> Generator[Any, Any, Payload]:
    """One VM: snapshot every disk -> record -> replicate (if the policy says) -> retention.

    Input: {vm, policy, slot, manual}. A failure at any step is recorded on the backup row.
    """
    item: Payload = context.get_input()
    vm = item["vm"]
    key = make_vm_key(vm["resource_group"], vm["name"])
    backup_id = names.backup_id(key, _slot(item), bool(item.get("manual")))
    ref = {"vm_key": key, "backup_id": backup_id}
    try:
        begun = yield context.call_activity_with_retry("begin_backup", RETRY, item)
        result = begun
        if begun["state"] == "creating":
            result = yield from poll(
                context,
                "check_backup",
                ref,
                first_wait=begun["poll_after"],
                timeout=SNAPSHOT_TIMEOUT,
                done=lambda r: r["state"] != "creating",
            )
            if result is None:
                raise TimeoutError(f"snapshots not done within {SNAPSHOT_TIMEOUT}")
    except Exception as error:
        failed = yield context.call_activity_with_retry(
            "fail_backup", RETRY, {**item, **ref, "error": failure_text(error)}
        )
        return {**ref, **failed}
    if result["state"] != "completed":
        return {**ref, **result}
    target = result.get("replica_region")
    if target:
        yield context.call_sub_orchestrator(
            "replicate_backup",
            {**ref, "target_region": target},
            replication_instance_id(backup_id),
        )
    retention = yield context.call_activity_with_retry(
        "apply_retention",
        RETRY,
        {
            "vm_key": key,
            "policy": item.get("policy"),
            "now": context.current_utc_datetime.isoformat(),
        },
    )
    return {**ref, "state": "completed", "retention": retention}
