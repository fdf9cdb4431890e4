"""Verification workflows: restore a backup's snapshots to test disks, check them, delete them."""

from __future__ import annotations

from collections.abc import Generator
from datetime import timedelta
from typing import Any

from shared.orchestrations.cleanup import clean_up_test
from shared.orchestrations.durable import RETRY, Context, Payload, failure_text, fan_out, poll

DISK_TIMEOUT = timedelta(hours=1)
PARALLEL = 4


def verify_backups(context: Context) -> Generator[Any, Any, Payload]:
    """Verify the unverified backups due by each VM's cadence, PARALLEL at a time."""
    now = context.current_utc_datetime
    found = yield context.call_activity_with_retry(
        "list_verifications_due", RETRY, {"now": now.isoformat()}
    )
    outcome: Payload = yield from fan_out(
        context,
        "verify_backup",
        found["due"],
        lambda b: f"{context.instance_id}:{b['backup_id']}",
        PARALLEL,
    )
    return outcome


def verify_backup(context: Context) -> Generator[Any, Any, Payload]:
    """Test disks from every snapshot -> provisioned, size equal to the source snapshot,
    unattached -> delete them, always -> record the result with its timings.

    Input: {vm_key, backup_id, region}.
    """
    item: Payload = context.get_input()
    started = context.current_utc_datetime
    test_id = f"verify-{item['backup_id']}"
    step = {**item, "test_id": test_id}
    checks: Payload = {}
    error = None
    try:
        begun = yield context.call_activity_with_retry("begin_verification", RETRY, step)
        result = yield from poll(
            context,
            "check_verification",
            {"disks": begun["disks"]},
            first_wait=begun["poll_after"],
            timeout=DISK_TIMEOUT,
            done=lambda r: bool(r["done"]),
        )
        if result is None:
            error = f"test disks not provisioned within {DISK_TIMEOUT}"
        else:
            checks = result
    except Exception as failure:
        error = failure_text(failure)
    cleanup_ok = yield from clean_up_test(
        context, item["region"], test_id, item["vm_key"], "verify"
    )
    recorded: Payload = yield context.call_activity_with_retry(
        "record_verification",
        RETRY,
        {
            **step,
            "started": started.isoformat(),
            "checks": checks,
            "error": error,
            "cleanup_ok": cleanup_ok,
        },
    )
    return {"state": "completed" if recorded["success"] else "failed", **recorded}
