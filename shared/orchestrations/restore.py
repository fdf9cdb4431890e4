"""Restore workflow: a VM's disks from a backup, as new disks (and a new VM) beside the original."""

from __future__ import annotations

from collections.abc import Generator
from datetime import timedelta
from typing import Any

from shared.orchestrations.durable import RETRY, Context, Payload, failure_text, poll

DISK_TIMEOUT = timedelta(hours=1)
CREATE_TIMEOUT = timedelta(minutes=30)


def restore_backup(context: Context) -> Generator[Any, Any, Payload]:
    """New disks from every snapshot -> provisioned -> (a new VM on them, running).

    Input: {vm_key, backup_id, restore_id, resource_group, new_vm?, subnet?}. The new VM's NIC
    is made with the disks, and the VM only once both are provisioned. The original disks are
    never touched; what was created stays for the operator, even after a failure.
    """
    item: Payload = context.get_input()
    created: Payload = {"disks": [], "vm_id": None}
    try:
        restore = yield context.call_activity_with_retry("begin_restore_disks", RETRY, item)
        created["disks"] = [d["disk_id"] for d in restore["disks"]]
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
        if item.get("new_vm"):
            vm = yield context.call_activity_with_retry(
                "begin_restore_vm", RETRY, {**item, "restore": restore}
            )
            created["vm_id"] = vm["vm_id"]
            running = yield from poll(
                context,
                "check_dr_vm",
                vm,
                first_wait=vm["poll_after"],
                timeout=CREATE_TIMEOUT,
                done=lambda r: r["provisioning_state"] in ("succeeded", "failed"),
            )
            if running is None:
                raise RuntimeError(f"VM: timed out after {CREATE_TIMEOUT}")
            if running["provisioning_state"] != "succeeded":  # the first failed read ends it
                raise RuntimeError(f"VM failed: {running.get('error') or 'provisioning failed'}")
    except Exception as error:
        return {"state": "failed", "error": failure_text(error), **created}
    return {"state": "completed", **created}
