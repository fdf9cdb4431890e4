"""Backup workflows: the fleet run and one VM's backup (snapshot, record, replicate, retain)."""

from __future__ import annotations

from collections.abc import Generator
from datetime import datetime, timedelta
from typing import Any

from shared.domain import names
from shared.orchestrations.durable import RETRY, Context, Payload, failure_text, fan_out, poll

SNAPSHOT_TIMEOUT = timedelta(hours=1)


def fleet_backup(context: Context) -> Generator[Any, Any, Payload]:
    """List the fleet once, claim each due VM's slot, and back up what this run claimed as its
    own sub-orchestrations, in batches.

    The claim (in the catalog, taken by `list_due_vms`) is what keeps an overlapping or
    catch-up run from backing a slot up twice; the engine deduplicates nothing here. Only keys
    and counts pass through this instance's history, whatever the fleet's size.
    """
    now = context.current_utc_datetime
    found = yield context.call_activity_with_retry(
        "list_due_vms", RETRY, {"now": now.isoformat(), "owner": context.instance_id}
    )
    outcome = yield from fan_out(
        context, "vm_backup", found["due"], _instance_id, found["batch_size"]
    )
    return {
        **outcome,
        "under_way": found["under_way"],
        "misconfigured": found["misconfigured"],
        # Absent from what list_due_vms answered before it reported them (older histories).
        "not_protectable": found.get("not_protectable", []),
    }


def _instance_id(item: Payload) -> str:
    """Per (VM, slot, claim): a later claim of the same slot (a retry) is a new instance."""
    return names.backup_instance_id(item["vm_key"], _slot(item), item["generation"])


def _slot(item: Payload) -> datetime:
    return datetime.fromisoformat(item["slot"])


def vm_backup(context: Context) -> Generator[Any, Any, Payload]:
    """One VM: snapshot every disk -> record -> replicate (if the policy says) -> retention,
    then let go of the slot's claim.

    Input: {vm_key, resource_group, name, slot, manual?, owner?}; `owner` is the fleet run
    that claimed the slot. A failure at any step is recorded on the backup row (and is an
    event); retention runs after a failed backup too, so a VM that keeps failing does not pile
    up partial snapshots.
    """
    item: Payload = context.get_input()
    key = item["vm_key"]
    backup_id = names.backup_id(key, _slot(item), bool(item.get("manual")))
    ref = {"vm_key": key, "backup_id": backup_id}
    outcome = yield from _back_up(context, item, ref)
    if item.get("owner"):
        yield context.call_activity_with_retry(
            "release_claim",
            RETRY,
            {"vm_key": key, "work": names.backup_claim(backup_id), "owner": item["owner"]},
        )
    return {**ref, **outcome}


def _back_up(context: Context, item: Payload, ref: Payload) -> Generator[Any, Any, Payload]:
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
        result = yield context.call_activity_with_retry(
            "fail_backup", RETRY, {**item, **ref, "error": failure_text(error)}
        )
    if result["state"] == "completed":
        target = result.get("replica_region")
        if target:
            yield context.call_sub_orchestrator(
                "replicate_backup",
                {**ref, "target_region": target},
                f"{context.instance_id}:replicate",
            )
        result = {"state": "completed"}
    elif result["state"] != "failed":
        return dict(result)
    retention = yield from _retain(context, ref["vm_key"])
    return {**result, "retention": retention}


def _retain(context: Context, vm_key: str) -> Generator[Any, Any, Payload]:
    """Apply the VM's retention; a failure of it is recorded (an event), never the backup's."""
    try:
        # The VM only: retention reads its policy from Azure and the time from the app's clock.
        retention: Payload = yield context.call_activity_with_retry(
            "apply_retention", RETRY, {"vm_key": vm_key}
        )
    except Exception as error:
        retention = yield context.call_activity_with_retry(
            "fail_retention", RETRY, {"vm_key": vm_key, "error": failure_text(error)}
        )
    return retention
