"""Replication workflows: copy one backup to its DR region, and catch up what is missing."""

from __future__ import annotations

from collections.abc import Generator
from datetime import timedelta
from typing import Any

from shared.domain import names
from shared.orchestrations.durable import RETRY, Context, Payload, failure_text, fan_out, poll

# How long a backup waits for an older one of the same VM to finish copying (creation order).
ORDER_TIMEOUT = timedelta(hours=6)
COPY_TIMEOUT = timedelta(hours=24)
PENDING_BATCH = 20


def replication_instance_id(backup_id: str) -> str:
    """The CLI's top-level instance id for a backup's copy (Azure deduplicates client starts)."""
    return f"replicate-{backup_id}"


def replicate_backup(context: Context) -> Generator[Any, Any, Payload]:
    """Claim the backup's replication, CopyStart every disk's snapshot, poll on durable timers
    until complete or failed, and let go of the claim.

    Input: {vm_key, backup_id, target_region, owner?, resume?}. Whoever starts it (the backup,
    the catch-up run, the CLI), a replication another instance holds is left alone: "under_way".
    Jobs go pending -> in_progress -> completed | failed; transient errors retry, and a give-up
    is recorded with a sanitised reason. `resume` (an attempt's time) polls the copies that
    attempt started instead of starting any. The claim is let go even when recording a
    failure fails (the catalog down), so the catch-up can take the backup over at once.
    """
    item: Payload = context.get_input()
    claim = {
        "vm_key": item["vm_key"],
        "work": names.replication_claim(item["backup_id"]),
        "owner": item.get("owner") or context.instance_id,
    }
    taken = yield context.call_activity_with_retry("claim_work", RETRY, claim)
    if not taken["claimed"]:
        return {"state": "under_way", "owner": taken["owner"]}
    try:
        result = yield from _replicate(context, item)
    except Exception:
        yield context.call_activity_with_retry("release_claim", RETRY, claim)
        raise
    yield context.call_activity_with_retry("release_claim", RETRY, claim)
    return result


def _replicate(context: Context, item: Payload) -> Generator[Any, Any, Payload]:
    # The attempt's time names its copy jobs, so each attempt keeps its own history rows.
    ref: Payload = {
        "vm_key": item["vm_key"],
        "backup_id": item["backup_id"],
        "target_region": item["target_region"],
        "attempt": item.get("resume") or context.current_utc_datetime.isoformat(),
    }
    try:
        if item.get("resume"):
            started: Payload = {"state": "in_progress", "poll_after": 0}
        else:
            started = yield from _start(context, ref)
        if started["state"] != "in_progress":
            return dict(started)
        result = yield from poll(
            context,
            "check_replication",
            ref,
            first_wait=started["poll_after"],
            timeout=COPY_TIMEOUT,
            done=lambda r: r["state"] != "in_progress",
        )
        if result is None:
            raise TimeoutError(f"copy not complete within {COPY_TIMEOUT}")
        return result
    except Exception as error:
        failed: Payload = yield context.call_activity_with_retry(
            "fail_replication", RETRY, {**ref, "error": failure_text(error)}
        )
        return failed


def _start(context: Context, ref: Payload) -> Generator[Any, Any, Payload]:
    """CopyStart the backup's disks once Azure's copy order and the region's limit allow."""
    started = yield from poll(
        context,
        "start_replication",
        ref,
        first_wait=0,
        timeout=ORDER_TIMEOUT,
        done=lambda r: r["state"] != "waiting",
    )
    if started is None:
        raise TimeoutError("an older backup of this VM is still copying")
    return started


def replicate_pending(context: Context) -> Generator[Any, Any, Payload]:
    """Catch up: replicate the oldest unreplicated or failed backup of each VM that no other
    instance is replicating (the listing claims each one for this run), and finish the polls
    of copies whose orchestration ended before they did."""
    now = context.current_utc_datetime
    found = yield context.call_activity_with_retry(
        "list_pending_replications", RETRY, {"now": now.isoformat(), "owner": context.instance_id}
    )
    outcome: Payload = yield from fan_out(
        context,
        "replicate_backup",
        found["pending"],
        lambda item: f"{context.instance_id}:{item['backup_id']}",
        PENDING_BATCH,
    )
    return outcome
