"""Clean-up of what a DR test, verification or failed restore created, as a sub-workflow of theirs.

Deletes go kind by kind in dependency order (VMs, then NICs, then disks: a VM holds its NIC and
disks until it is gone). Each kind's deletes are sent in one step and waited out on durable
timers, never inside an activity: a VM delete takes Azure minutes.
"""

from __future__ import annotations

from collections.abc import Generator
from datetime import timedelta
from typing import Any

from shared.orchestrations.durable import RETRY, Context, poll

DELETE_TIMEOUT = timedelta(minutes=30)  # per kind; Azure deletes a VM in minutes
# Rounds of "delete the first kind left": VMs, NICs, disks, and the round that finds none.
MAX_ROUNDS = 4


def clean_up_test(
    context: Context,
    region: str,
    test_id: str,
    vm_key: str | None,
    operation: str,
    *,
    resource_group: str | None = None,
    tag: str | None = None,
) -> Generator[Any, Any, bool]:
    """Delete everything tagged with the test id; True when nothing of it is left.

    By default that is the region's DR-test group and the test tag; a restore names the group it
    worked in and its own tag (their steps' inputs carry these only when given, so the DR
    tests' histories replay unchanged).

    It never raises, so callers run it always, even after a failure: a step that fails or a
    kind that outlasts DELETE_TIMEOUT ends it unclean, and the sweeper deletes what is left
    once its expiry tag passes.
    """
    step: dict[str, Any] = {
        "region": region,
        "test_id": test_id,
        "vm_key": vm_key,
        "operation": operation,
    }
    if resource_group is not None:
        step |= {"resource_group": resource_group, "tag": tag}
    try:
        for _ in range(MAX_ROUNDS):
            begun = yield context.call_activity_with_retry("begin_test_cleanup", RETRY, step)
            if begun["kind"] is None:
                return bool(begun["clean"])
            gone = yield from poll(
                context,
                "check_test_cleanup",
                {**step, "kind": begun["kind"]},
                first_wait=begun["poll_after"],
                timeout=DELETE_TIMEOUT,
                done=lambda r: not r["left"],
            )
            if gone is None:
                return False
    except Exception:
        return False
    return False
