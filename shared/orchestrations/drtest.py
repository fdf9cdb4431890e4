"""DR test workflows: restore a VM in its DR region, prove it boots and answers, clean up."""

from __future__ import annotations

from collections.abc import Generator
from datetime import datetime, timedelta
from typing import Any

from shared.domain import names
from shared.orchestrations.cleanup import clean_up_test
from shared.orchestrations.durable import RETRY, Context, Payload, failure_text, fan_out, poll

DISK_TIMEOUT = timedelta(hours=1)
CREATE_TIMEOUT = timedelta(minutes=30)
BOOT_TIMEOUT = timedelta(minutes=15)
GUEST_TIMEOUT = timedelta(minutes=10)
PARALLEL = 2


class DrTestFailed(Exception):
    """A phase of the DR test did not succeed; the message says which and why."""


def dr_tests(context: Context) -> Generator[Any, Any, Payload]:
    """The first version, kept registered, unchanged, until none of its instances is Pending
    or Running: the due DR tests, each a `dr_test`. The timer starts `dr_tests_v2`."""
    return (yield from _due_tests(context, "dr_test"))


def dr_tests_v2(context: Context) -> Generator[Any, Any, Payload]:
    """Run the DR tests due by each VM's `drtest` cadence, PARALLEL at a time, each a
    `dr_test_v2`."""
    return (yield from _due_tests(context, "dr_test_v2"))


def _due_tests(context: Context, orchestrator: str) -> Generator[Any, Any, Payload]:
    now = context.current_utc_datetime
    found = yield context.call_activity_with_retry(
        "list_dr_tests_due", RETRY, {"now": now.isoformat()}
    )
    items = [{**item, "test_id": names.dr_test_id(item["vm_key"], now)} for item in found["due"]]
    outcome: Payload = yield from fan_out(
        context, orchestrator, items, lambda item: item["test_id"], PARALLEL
    )
    return outcome


def dr_test(context: Context) -> Generator[Any, Any, Payload]:
    """The first version, kept registered, unchanged (with its steps), until none of its
    instances is Pending or Running; new DR tests run `dr_test_v2`.

    The chain: replica complete -> NIC + disks restored -> VM created -> running -> guest
    answers (RTO stops) -> clean up, always -> record success, phases, RTO and errors.

    Input: {vm_key, test_region, test_id?, backup_id?, rto_target_seconds?}.
    """
    item: Payload = context.get_input()
    started = context.current_utc_datetime
    test_id = item.get("test_id") or names.dr_test_id(item["vm_key"], started)
    step = {**item, "test_id": test_id}
    phases: dict[str, float] = {}
    outcome: Payload = {
        "restore_succeeded": False,
        "boot_succeeded": False,
        "connectivity_succeeded": False,
    }
    plan: Payload = {}
    error = None
    rto = None
    clock = _PhaseClock(context, phases)
    try:
        plan = yield context.call_activity_with_retry("prepare_dr_test", RETRY, step)
        restore = yield context.call_activity_with_retry(
            "begin_dr_restore", RETRY, {**step, "plan": plan}
        )
        disks = yield from poll(
            context,
            "check_dr_disks",
            {"disks": restore["disks"], "nic_id": restore["nic_id"]},
            first_wait=restore["poll_after"],
            timeout=DISK_TIMEOUT,
            done=lambda r: bool(r["done"]),
        )
        if disks is None or disks["error"]:
            raise DrTestFailed(f"restore: {disks['error'] if disks else 'disks timed out'}")
        outcome["restore_succeeded"] = True
        clock.lap()
        vm = yield context.call_activity_with_retry(
            "begin_dr_vm", RETRY, {**step, "plan": plan, "restore": restore}
        )
        created = yield from poll(
            context,
            "check_dr_vm",
            vm,
            first_wait=vm["poll_after"],
            timeout=CREATE_TIMEOUT,
            done=lambda r: r["provisioning_state"] in ("succeeded", "failed"),
        )
        if created is None:
            raise DrTestFailed(f"create VM: timed out after {CREATE_TIMEOUT}")
        if created["provisioning_state"] != "succeeded":  # stopped at the first failed read
            raise DrTestFailed(f"create VM failed: {created.get('error') or 'provisioning failed'}")
        clock.lap()
        running = yield from poll(
            context,
            "check_dr_vm",
            vm,
            first_wait=0,
            timeout=BOOT_TIMEOUT,
            done=lambda r: r["power_state"] == "running",
        )
        if running is None:
            raise DrTestFailed(f"boot: VM not running within {BOOT_TIMEOUT}")
        outcome["boot_succeeded"] = True
        clock.lap()
        guest = yield from _guest_check(context, item["vm_key"], vm["vm_id"], plan["os_type"])
        clock.lap()
        if guest is None:
            raise DrTestFailed(f"guest check: no answer within {GUEST_TIMEOUT}")
        if not guest["succeeded"]:
            raise DrTestFailed(f"guest check: {guest['output'][:200] or 'no answer'}")
        outcome["connectivity_succeeded"] = True
        rto = (context.current_utc_datetime - started).total_seconds()
    except Exception as failure:
        error = failure_text(failure)
        clock.lap()  # the phase that failed, up to its failure
    cleanup_ok = yield from clean_up_test(
        context, item["test_region"], test_id, item["vm_key"], "dr_test"
    )
    clock.lap("cleanup")
    recorded: Payload = yield context.call_activity_with_retry(
        "record_dr_test",
        RETRY,
        {
            **step,
            **outcome,
            "vm_name": plan.get("vm_name") or item.get("vm_name"),
            "backup_id": plan.get("backup_id") or item.get("backup_id"),
            "cleanup_succeeded": cleanup_ok,
            "rto_seconds": rto,
            "phases": phases,
            "error": error,
            "started": started.isoformat(),
            "completed": context.current_utc_datetime.isoformat(),
        },
    )
    return {"state": "completed" if recorded["success"] else "failed", **recorded}


def dr_test_v2(context: Context) -> Generator[Any, Any, Payload]:
    """The DR test as a failover runs it: plan -> restore (`restore_backup_v2`, as a
    sub-orchestration: pre-flight, disks and NIC from the replicas, the VM with the recorded
    settings) into the region's DR-test group and isolated subnet -> running -> guest answers
    (RTO stops) -> clean up, always -> record success, phases, RTO and errors.

    The restore keeps what a failure leaves and tags everything as this test's, so the clean-up
    here (and the sweeper, after the expiry) deletes it, success or not. A restore its
    pre-flight rejects (no complete replica, the size not available there, ...) created nothing
    and fails the test at `restore` with the reason.

    Input: {vm_key, test_region, test_id?, backup_id?, rto_target_seconds?}; the restore runs
    as the instance `<test id>-restore`.
    """
    item: Payload = context.get_input()
    started = context.current_utc_datetime
    test_id = item.get("test_id") or names.dr_test_id(item["vm_key"], started)
    step = {**item, "test_id": test_id}
    phases: dict[str, float] = {}
    outcome: Payload = {
        "restore_succeeded": False,
        "boot_succeeded": False,
        "connectivity_succeeded": False,
    }
    plan: Payload = {}
    error = None
    rto = None
    try:
        plan = yield context.call_activity_with_retry("plan_dr_test", RETRY, step)
        if plan["problems"]:
            raise DrTestFailed(f"restore: {'; '.join(plan['problems'])}")
        restored: Payload = yield context.call_sub_orchestrator(
            "restore_backup_v2", plan["restore"], f"{test_id}-restore"
        )
        restore_phases(phases, restored, started, context.current_utc_datetime)
        if restored.get("disks_ready"):
            outcome["restore_succeeded"] = True
        if restored["state"] != "completed":
            raise DrTestFailed(_restore_failure(restored))
        booted, failure = yield from boot_and_check(
            context, item["vm_key"], restored["vm_id"], plan["os_type"], phases
        )
        outcome["boot_succeeded"] = booted
        if failure is not None:
            raise DrTestFailed(failure)
        outcome["connectivity_succeeded"] = True
        rto = (context.current_utc_datetime - started).total_seconds()
    except Exception as failure:
        error = failure_text(failure)
        if not phases:  # failed before its restore ended: all of it was `restore`
            phases["restore"] = (context.current_utc_datetime - started).total_seconds()
    lap = context.current_utc_datetime
    cleanup_ok = yield from clean_up_test(
        context, item["test_region"], test_id, item["vm_key"], "dr_test"
    )
    phases["cleanup"] = (context.current_utc_datetime - lap).total_seconds()
    recorded: Payload = yield context.call_activity_with_retry(
        "record_dr_test",
        RETRY,
        {
            **step,
            **outcome,
            "vm_name": plan.get("vm_name") or item.get("vm_name"),
            "backup_id": plan.get("backup_id") or item.get("backup_id"),
            "cleanup_succeeded": cleanup_ok,
            "rto_seconds": rto,
            "phases": phases,
            "error": error,
            "started": started.isoformat(),
            "completed": context.current_utc_datetime.isoformat(),
        },
    )
    return {"state": "completed" if recorded["success"] else "failed", **recorded}


def restore_phases(
    phases: dict[str, float], restored: Payload, started: datetime, now: datetime
) -> None:
    """Split the time a `restore_backup_v2` took into `restore` (to its disks and NIC ready)
    and `create_vm` (the rest); all of it is `restore` when its disks never got ready."""
    disks_ready = restored.get("disks_ready")
    if disks_ready:
        ready = datetime.fromisoformat(disks_ready)
        phases["restore"] = (ready - started).total_seconds()
        phases["create_vm"] = (now - ready).total_seconds()
    else:
        phases["restore"] = (now - started).total_seconds()


def _restore_failure(restored: Payload) -> str:
    """A failed or rejected restore as the DR test's error, named by the phase it failed in:
    `restore` (pre-flight, disks, NIC) or `create VM`."""
    error = str(restored.get("error") or restored["state"])
    if not restored.get("disks_ready"):
        return f"restore: {error.removeprefix('disks: ')}"
    if error.startswith("VM failed: "):
        return f"create VM failed: {error.removeprefix('VM failed: ')}"
    return f"create VM: {error.removeprefix('VM: ')}"


def boot_and_check(
    context: Context, vm_key: str, vm_id: str, os_type: str, phases: dict[str, float]
) -> Generator[Any, Any, tuple[bool, str | None]]:
    """A created VM running (`boot`), then its guest answering (`guest_check`), each phase
    timed into `phases`: whether it ran, and what failed (None: the guest answered)."""
    vm = {"vm_id": vm_id}
    lap = context.current_utc_datetime
    running = yield from poll(
        context,
        "check_dr_vm",
        vm,
        first_wait=0,
        timeout=BOOT_TIMEOUT,
        done=lambda r: r["power_state"] == "running",
    )
    phases["boot"] = (context.current_utc_datetime - lap).total_seconds()
    if running is None:
        return False, f"boot: VM not running within {BOOT_TIMEOUT}"
    lap = context.current_utc_datetime
    guest = yield from _guest_check(context, vm_key, vm_id, os_type)
    phases["guest_check"] = (context.current_utc_datetime - lap).total_seconds()
    if guest is None:
        return True, f"guest check: no answer within {GUEST_TIMEOUT}"
    if not guest["succeeded"]:
        return True, f"guest check: {guest['output'][:200] or 'no answer'}"
    return True, None


def _guest_check(
    context: Context, vm_key: str, vm_id: str, os_type: str
) -> Generator[Any, Any, Payload | None]:
    """Run Command in the guest, its answer read on durable timers; None if none came in time.

    A start that finds another command still running (its own earlier delivery) starts again
    after a wait, until the guest takes ours.
    """
    since = context.current_utc_datetime
    deadline = since + GUEST_TIMEOUT
    step = {"vm_key": vm_key, "vm_id": vm_id, "os_type": os_type, "since": since.isoformat()}
    while True:
        started: Payload = yield context.call_activity_with_retry(
            "begin_dr_guest_check", RETRY, step
        )
        if started["done"]:
            return started
        if started["run"] is not None:
            break
        if context.current_utc_datetime >= deadline:
            return None
        wait = timedelta(seconds=float(started["poll_after"]))
        yield context.create_timer(min(context.current_utc_datetime + wait, deadline))
    answer: Payload | None = yield from poll(
        context,
        "check_dr_guest",
        {"run": started["run"]},
        first_wait=started["poll_after"],
        timeout=GUEST_TIMEOUT,
        done=lambda r: bool(r["done"]),
    )
    return answer


class _PhaseClock:
    """Seconds spent in each phase, in order, on the orchestration's replay-safe clock."""

    PHASES = ("restore", "create_vm", "boot", "guest_check")

    def __init__(self, context: Context, phases: dict[str, float]) -> None:
        self._context = context
        self._phases = phases
        self._last: datetime = context.current_utc_datetime

    def lap(self, phase: str | None = None) -> None:
        """End `phase` now; by default the next one of PHASES not yet ended (if any is left)."""
        name = phase or next((p for p in self.PHASES if p not in self._phases), None)
        if name is None:
            return
        now: datetime = self._context.current_utc_datetime
        self._phases[name] = (now - self._last).total_seconds()
        self._last = now
