"""Restore workflows: a VM's disks from a backup (or its replica), as new disks and a new VM."""

from __future__ import annotations

from collections.abc import Generator
from datetime import timedelta
from typing import Any

from shared.activities.restore import RESTORE_TAG
from shared.orchestrations.cleanup import clean_up_test
from shared.orchestrations.durable import RETRY, Context, Payload, failure_text, poll

DISK_TIMEOUT = timedelta(hours=1)
CREATE_TIMEOUT = timedelta(minutes=30)


def restore_backup(context: Context) -> Generator[Any, Any, Payload]:
    """The first version, registered until no instance started under it is left: new disks
    -> provisioned -> (a new VM on them, running), with no pre-flight and no clean-up.

    Input: {vm_key, backup_id, restore_id, resource_group, new_vm?, subnet?}. Its durable calls
    are `_restore`'s, in the same order, so its histories replay unchanged.
    """
    item: Payload = context.get_input()
    created: Payload = {"disks": [], "nic_id": None, "vm_id": None}
    try:
        yield from _restore(context, item, created)
    except Exception as error:
        return {"state": "failed", "error": failure_text(error), **created}
    return {"state": "completed", **created}


def restore_backup_v2(context: Context) -> Generator[Any, Any, Payload]:
    """Pre-flight -> new disks (from the replicas in another region) and NIC -> provisioned ->
    (a new VM on them) -> record; a failure midway deletes what carries the restore id.

    Input: {vm_key, backup_id, restore_id, resource_group, region, new_vm?, subnet?,
    isolated_subnet?, keep_partial?, extra_tags?}; `extra_tags` go on everything it creates (a DR
    test's test id and expiry, so its clean-up and the sweeper find them); `isolated_subnet` (a DR
    test's) has the pre-flight refuse a subnet that lets the new VM out. A pre-flight problem
    ends it "rejected" with nothing created; after a failure the clean-up workflow deletes the VM,
    NIC and disks it made (unless `keep_partial`: then they are listed as kept). Either way the
    outcome and reason go to the audit log.
    (`restore_backup` stays registered, unchanged, for instances started before this.)
    """
    item: Payload = context.get_input()
    result: Payload = {"disks": [], "nic_id": None, "vm_id": None}
    check = yield context.call_activity_with_retry("check_restore", RETRY, item)
    result["region"] = check["region"]
    if check["problems"]:
        result |= {"state": "rejected", "error": "; ".join(check["problems"])}
    else:
        try:
            yield from _restore(context, item, result)
            result["state"] = "completed"
        except Exception as error:
            result |= {"state": "failed", "error": failure_text(error)}
            # What it made is found by its tag, not from `result`: a create step that failed
            # half way may have made some of its resources.
            if item.get("keep_partial"):
                left = yield context.call_activity_with_retry("list_restored", RETRY, item)
                result["kept"] = left["ids"]
            else:
                clean = yield from clean_up_test(
                    context,
                    check["region"],
                    item["restore_id"],
                    item["vm_key"],
                    "restore",
                    resource_group=item["resource_group"],
                    tag=RESTORE_TAG,
                )
                result["cleaned_up"] = clean
                if not clean:
                    result["error"] += "; clean-up incomplete: delete what is tagged " + (
                        f"{RESTORE_TAG}={item['restore_id']} in {item['resource_group']}"
                    )
    yield context.call_activity_with_retry(
        "record_restore",
        RETRY,
        {**item, "result": result, "completed": context.current_utc_datetime.isoformat()},
    )
    return result


def _restore(context: Context, item: Payload, result: Payload) -> Generator[Any, Any, None]:
    """The creates, noting each in `result` as soon as Azure accepted it."""
    restore = yield context.call_activity_with_retry("begin_restore_disks", RETRY, item)
    result["disks"] = [d["disk_id"] for d in restore["disks"]]
    result["nic_id"] = restore["nic_id"]
    if restore.get("applied"):  # the recorded settings the new VM gets, and what differs
        result["applied"] = restore["applied"]
    disks = yield from poll(
        context,
        "check_dr_disks",
        {"disks": restore["disks"], "nic_id": restore["nic_id"]},
        first_wait=restore["poll_after"],
        timeout=DISK_TIMEOUT,
        done=lambda r: bool(r["done"]),
    )
    if disks is None or disks["error"]:
        raise RuntimeError(f"disks: {disks['error'] if disks else 'timed out'}")
    # When the disks (and NIC) were ready: a failover splits its RTO into restore and create_vm.
    result["disks_ready"] = context.current_utc_datetime.isoformat()
    if not item.get("new_vm"):
        return
    vm = yield context.call_activity_with_retry(
        "begin_restore_vm", RETRY, {**item, "restore": restore}
    )
    result["vm_id"] = vm["vm_id"]
    created = yield from poll(
        context,
        "check_dr_vm",
        vm,
        first_wait=vm["poll_after"],
        timeout=CREATE_TIMEOUT,
        done=lambda r: r["provisioning_state"] in ("succeeded", "failed"),
    )
    if created is None:
        raise RuntimeError(f"VM: timed out after {CREATE_TIMEOUT}")
    if created["provisioning_state"] != "succeeded":  # the first failed read ends it
        raise RuntimeError(f"VM failed: {created.get('error') or 'provisioning failed'}")
