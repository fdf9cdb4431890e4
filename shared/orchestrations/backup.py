"""Backup workflows: the fleet run and one VM's backup (snapshot, record, replicate, retain)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Generator
from datetime import datetime, timedelta
from typing import Any

from shared.domain import names, pacing
from shared.domain.pacing import Bucket
from shared.orchestrations.durable import RETRY, Context, Payload, failure_text, fan_out, poll

SNAPSHOT_TIMEOUT = timedelta(hours=1)
# A follow-up waits this long at most for its reserved share of the write bucket (10,000 VMs'
# measures take about 2.2 hours of refill), then leaves the change unmeasured.
MEASURE_TIMEOUT = timedelta(hours=12)


def fleet_backup(context: Context) -> Generator[Any, Any, Payload]:
    """The first version, kept registered, unchanged, until none of its instances is Pending or
    Running; the timer starts `fleet_backup_v2`. It lists the fleet once, claims each due VM's
    slot, and backs up what it claimed as its own sub-orchestrations, in batches.
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


def fleet_backup_v2(context: Context) -> Generator[Any, Any, Payload | None]:
    """The second version, kept registered, unchanged, until none of its instances is Pending
    or Running: `fleet_backup_v3` with each VM's backup a `vm_backup` (which waits for its
    copy). The timer starts `fleet_backup_v4`."""
    return (yield from _fleet_run(context, "vm_backup"))


def fleet_backup_v3(context: Context) -> Generator[Any, Any, Payload | None]:
    """The third version, kept registered, unchanged, until none of its instances is Pending
    or Running: `fleet_backup_v4` with each VM's backup a `vm_backup_v2` (which measures its
    change and applies retention inside the run's waves). The timer starts `fleet_backup_v4`."""
    return (yield from _fleet_run(context, "vm_backup_v2"))


def fleet_backup_v4(context: Context) -> Generator[Any, Any, Payload | None]:
    """One page of the subscription's VM list per execution: claim each due VM's slot, back up
    what this run claimed (`vm_backup_v3`: its snapshots, then a follow-up of its own) in waves
    ARM's token buckets pay for, then continue as new with the next page.

    The claim (in the catalog, taken by `list_due_vms`) is what keeps an overlapping or
    catch-up run from backing a slot up twice; the engine deduplicates nothing here. A run
    whose tick comes while an earlier run still sends its snapshots lists its pages after that
    run's (the catalog's write hold), so two runs never spend one bucket at once. Each
    execution's history holds one page, so replaying it costs the same at any fleet size; the
    input carries the tick's time, the next page, the buckets and the totals so far.
    """
    return (yield from _fleet_run(context, "vm_backup_v3"))


def _fleet_run(context: Context, vm_orchestrator: str) -> Generator[Any, Any, Payload | None]:
    run: Payload = context.get_input() or {}
    now = run.get("now") or context.current_utc_datetime.isoformat()
    found = yield from _page(
        context, {"now": now, "owner": context.instance_id, "page": run.get("page")}
    )
    at = context.current_utc_datetime
    kept = run.get("buckets") or {}
    buckets = {
        "writes": pacing.writes(at, kept.get("writes")),
        "reads": pacing.reads(at, kept.get("reads")),
    }
    outcome = yield from _paced(
        context, vm_orchestrator, found["due"], found["batch_size"], buckets
    )
    totals = _totals(run.get("totals"), outcome, found)
    if found.get("next_page"):
        context.continue_as_new(
            {
                "now": now,
                "page": found["next_page"],
                "buckets": {kind: bucket.to_payload() for kind, bucket in buckets.items()},
                "totals": totals,
            }
        )
        return None
    return totals


def _page(context: Context, asked: Payload) -> Generator[Any, Any, Payload]:
    """`list_due_vms` for the page, once no other run's page holds the write bucket, and
    with the time its own hold starts come (a later one when another run's page took the
    bucket first)."""
    found: Payload = yield context.call_activity_with_retry("list_due_vms", RETRY, asked)
    while found.get("held_until"):
        yield context.create_timer(datetime.fromisoformat(found["held_until"]))
        found = yield context.call_activity_with_retry("list_due_vms", RETRY, asked)
    start = found.get("writes_from")
    if start and datetime.fromisoformat(start) > context.current_utc_datetime:
        yield context.create_timer(datetime.fromisoformat(start))
    return found


def _paced(
    context: Context,
    vm_orchestrator: str,
    due: list[Payload],
    batch_size: int,
    buckets: dict[str, Bucket],
) -> Generator[Any, Any, Payload]:
    """Start backups in waves of at most `batch_size`, each once both buckets hold what its
    VMs will send (each due item says its `writes` and `reads`); Azure's count of write tokens
    left corrects the model. `buckets` is left as the last wave took it.

    A wave is awaited before the next starts: with the real executor, sub-orchestrations
    created before a timer's yield were only sent with the later yield that awaited them, so
    overlapping waves would take a task_any over running children."""
    counts: Counter[str] = Counter()
    start = 0
    while start < len(due):
        window = due[start : start + batch_size]
        wait = max(
            bucket.wait_for(window[0][kind], context.current_utc_datetime)
            for kind, bucket in buckets.items()
        )
        if wait:
            yield context.create_timer(context.current_utc_datetime + wait)
        now = context.current_utc_datetime
        wave = window[
            : min(
                bucket.largest_start([item[kind] for item in window], now)
                for kind, bucket in buckets.items()
            )
        ]
        for kind, bucket in buckets.items():
            buckets[kind] = bucket.take(sum(item[kind] for item in wave), now)
        results: list[Payload] = []
        outcome = yield from fan_out(
            context, vm_orchestrator, wave, _instance_id, len(wave), results
        )
        counts.update({state: n for state, n in outcome.items() if state != "total"})
        for told in (r["writes"] for r in results if r.get("writes")):
            buckets["writes"] = buckets["writes"].observed(
                told["remaining"],
                datetime.fromisoformat(told["seen_at"]),
                context.current_utc_datetime,
            )
        start += len(wave)
    return {"total": len(due), **counts}


def _totals(before: Payload | None, outcome: Payload, found: Payload) -> Payload:
    """This page's outcome added to the earlier pages'."""
    totals: Payload = dict(
        before or {"total": 0, "under_way": 0, "misconfigured": [], "not_protectable": []}
    )
    for state, count in outcome.items():
        totals[state] = totals.get(state, 0) + count
    totals["under_way"] += found["under_way"]
    totals["misconfigured"] = [*totals["misconfigured"], *found["misconfigured"]]
    totals["not_protectable"] = [*totals["not_protectable"], *found["not_protectable"]]
    return totals


def _instance_id(item: Payload) -> str:
    """Per (VM, slot, claim): a later claim of the same slot (a retry) is a new instance."""
    return names.backup_instance_id(item["vm_key"], _slot(item), item["generation"])


def _slot(item: Payload) -> datetime:
    return datetime.fromisoformat(item["slot"])


def vm_backup(context: Context) -> Generator[Any, Any, Payload]:
    """The first version, kept registered, unchanged, until none of its instances is Pending
    or Running: `vm_backup_v2`, but waiting for the copy as a sub-orchestration."""
    return (yield from _vm_backup(context, _copy_and_wait))


def vm_backup_v2(context: Context) -> Generator[Any, Any, Payload]:
    """The second version, kept registered, unchanged, until none of its instances is Pending
    or Running: one VM's snapshots, record (measuring its change), start its copy, retention.
    Manual backups and `fleet_backup_v4` start `vm_backup_v3`.

    Input: {vm_key, resource_group, name, slot, manual?, owner?}; `owner` is the fleet run
    that claimed the slot. The copy runs as its own orchestration (`begin_replication`), so
    neither this backup nor the fleet run waits for it: a fleet run lasts as long as its
    snapshots, however far the copies have to go. A failure at any step is recorded on the
    backup row (and is an event); retention runs after a failed backup too, so a VM that keeps
    failing does not pile up partial snapshots.
    """
    return (yield from _vm_backup(context, _start_copy))


def vm_backup_v3(context: Context) -> Generator[Any, Any, Payload]:
    """One VM: snapshot every disk -> record -> start its follow-up (`after_backup`), then let
    go of the slot's claim.

    Input: {vm_key, resource_group, name, slot, manual?, owner?}; `owner` is the fleet run
    that claimed the slot. What each backup does after its snapshots (measure its change, start
    its copy, retention) sends ARM writes from the subscription's bucket; it runs as its own
    orchestration, after the fleet run's snapshots, so neither this backup nor the fleet run
    waits for it or shares the bucket with it. A failure at any step is recorded on the backup
    row (and is an event); a failed backup has its follow-up too (retention), so a VM that keeps
    failing does not pile up partial snapshots.
    """
    return (yield from _vm_backup(context, None))


def after_backup(context: Context) -> Generator[Any, Any, Payload]:
    """A backup's follow-up: measure its change when the write bucket's refill reserved for
    it comes (`measure_backup`), start its copy if the policy says (`begin_replication`), and
    apply the VM's retention. Started once per backup (`after-<backup id>`) by `vm_backup_v3`.

    A measure that cannot be made (the catalog down past the retries) leaves the change
    unknown and the copy to the catch-up run; retention runs whatever happened before it.
    Input: {vm_key, backup_id}."""
    ref: Payload = context.get_input()
    try:
        measured = yield from poll(
            context,
            "measure_backup",
            ref,
            first_wait=0,
            timeout=MEASURE_TIMEOUT,
            done=lambda r: r["state"] == "done",
        )
    except Exception:
        measured = None
    target = (measured or {}).get("replica_region")
    if target:
        yield context.call_activity_with_retry(
            "begin_replication", RETRY, {**ref, "target_region": target}
        )
    retention = yield from _retain(context, ref, paced=True)
    return {**ref, "measured": measured is not None, "retention": retention}


def after_backup_instance_id(backup_id: str) -> str:
    """One follow-up per backup: a repeated start (a retried step) finds it (Azure
    deduplicates client starts)."""
    return f"after-{backup_id}"


Copy = Callable[[Context, Payload, str], Generator[Any, Any, None]]


def _vm_backup(context: Context, copy: Copy | None) -> Generator[Any, Any, Payload]:
    item: Payload = context.get_input()
    key = item["vm_key"]
    backup_id = names.backup_id(key, _slot(item), bool(item.get("manual")))
    ref = {"vm_key": key, "backup_id": backup_id}
    outcome = yield from _back_up(context, item, ref, copy)
    if item.get("owner"):
        yield context.call_activity_with_retry(
            "release_claim",
            RETRY,
            {"vm_key": key, "work": names.backup_claim(backup_id), "owner": item["owner"]},
        )
    return {**ref, **outcome}


def _copy_and_wait(context: Context, ref: Payload, target: str) -> Generator[Any, Any, None]:
    yield context.call_sub_orchestrator(
        "replicate_backup",
        {**ref, "target_region": target},
        f"{context.instance_id}:replicate",
    )


def _start_copy(context: Context, ref: Payload, target: str) -> Generator[Any, Any, None]:
    yield context.call_activity_with_retry(
        "begin_replication", RETRY, {**ref, "target_region": target}
    )


def _back_up(
    context: Context, item: Payload, ref: Payload, copy: Copy | None
) -> Generator[Any, Any, Payload]:
    """The backup's outcome, with Azure's count of write tokens left after its PUTs (the fleet
    run paces by it). Without `copy` (`vm_backup_v3`), what follows the snapshots is the
    follow-up's."""
    seen: Payload = {}
    try:
        begun = yield context.call_activity_with_retry("begin_backup", RETRY, item)
        seen = {"writes": begun.get("writes")}
        result = begun
        if begun["state"] == "creating":
            result = yield from poll(
                context,
                "check_backup",
                ref if copy else {**ref, "changes": "later"},
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
    if result["state"] not in ("completed", "failed"):
        return {**result, **seen}
    completed = result["state"] == "completed"
    if copy is None:
        yield context.call_activity_with_retry("begin_after_backup", RETRY, ref)
        return {**({"state": "completed"} if completed else result), **seen}
    if completed:
        target = result.get("replica_region")
        if target:
            yield from copy(context, ref, target)
        result = {"state": "completed"}
    retention = yield from _retain(context, ref)
    return {**result, "retention": retention, **seen}


def _retain(context: Context, ref: Payload, *, paced: bool = False) -> Generator[Any, Any, Payload]:
    """Apply the VM's retention; a failure of it is recorded (an event), never the backup's.
    `paced`: when its writes' reserved refill comes (each "waiting" answer names it, and the
    next call hands it back)."""
    try:
        # Keys only: retention takes the policy the backup's row recorded from Azure (or reads
        # the VM) and the time from the app's clock.
        asked = {**ref, "paced": True} if paced else ref
        retention: Payload = yield context.call_activity_with_retry("apply_retention", RETRY, asked)
        while retention.get("state") == "waiting":
            yield context.create_timer(datetime.fromisoformat(retention["writes_from"]))
            retention = yield context.call_activity_with_retry(
                "apply_retention",
                RETRY,
                {**asked, "writes_from": retention["writes_from"], "writes": retention["writes"]},
            )
    except Exception as error:
        retention = yield context.call_activity_with_retry(
            "fail_retention", RETRY, {**ref, "error": failure_text(error)}
        )
    return retention
