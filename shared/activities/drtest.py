"""DR test steps: restore a VM from its replicated backup in the DR region, boot it, check it.

Everything a test creates (disks, NIC, VM) sits in the region's pre-provisioned DR-test group,
tagged with the test id and an expiry; the clean-up steps (`cleanup.py`) remove it whatever
happened. Steps that Azure takes a while over (the NIC, disks, VM, Run Command) are started here
and read again by a `check_*` step after a durable timer.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from functools import partial

from shared.activities.common import (
    Payload,
    audited,
    parse_time,
    require_vm_size,
    test_tags,
    vm_settings,
)
from shared.adapters import telemetry
from shared.domain import boot, names
from shared.domain.models import VM, Backup, BackupState, DrTest, ReplicationStatus
from shared.domain.policy import Cadence, PolicyError, policy_for
from shared.errors import BusyError, NotFoundError, PermanentError, TransientError, sanitise
from shared.ports import CommandRun, GuestCheck
from shared.services import Services

log = logging.getLogger("backupdr.activities")

TEST_TTL = timedelta(hours=4)
GUEST_BUSY_WAIT = timedelta(seconds=30)  # a trivial Run Command takes about this long
FIRST_REPLICA_GRACE = timedelta(days=1)
CADENCE_DAYS = {Cadence.DAILY: 1, Cadence.WEEKLY: 7, Cadence.MONTHLY: 30}


def list_dr_tests_due(payload: Payload, svc: Services) -> Payload:
    """VMs whose `drtest` cadence is due: no DR test within the cadence's period.

    A VM whose first replica is still on its way (its first backup is younger than a day) is
    not due yet; after that, a missing replica is exactly what a DR test must fail on.
    """
    now = parse_time(payload["now"])
    due = []
    for vm in svc.gateway.list_vms():
        try:
            policy = policy_for(vm, svc.settings.regions)
        except PolicyError:
            continue
        if policy is None or policy.drtest is Cadence.OFF or not policy.replicate:
            continue
        if vm.not_protectable:  # never backed up, so nothing to restore: status reports it
            continue
        if svc.catalog.dr_history(vm.key, now=now, days=CADENCE_DAYS[policy.drtest]):
            continue
        if _first_replica_pending(svc.catalog.list_backups(vm.key), policy.replicate, now):
            continue
        due.append({"vm_key": vm.key, "vm_name": vm.name, "test_region": policy.replicate})
    return {"due": due}


def _first_replica_pending(backups: list[Backup], region: str, now: datetime) -> bool:
    if any(_restorable(b, region) for b in backups):
        return False
    return not backups or now - min(b.taken_at for b in backups) < FIRST_REPLICA_GRACE


def dr_test_problems(
    svc: Services, vm: VM, region: str, group: str, backup_id: str | None
) -> list[str]:
    """Pre-flight of a requested DR test, reads only: what would make it fail before it starts
    (and be recorded as a failed test, count against the hourly limit, and stand in for the
    week's scheduled one). Each problem says what to change."""
    problems = []
    if region.lower() == vm.location.lower():
        problems.append(
            f"test region {region} is {vm.name}'s own region: a DR test restores in another"
        )
    try:
        served = svc.gateway.group_exists(group)
    except (NotFoundError, PermanentError):  # 403: not a group the deployment gave the app
        served = False
    if not served:
        problems.append(
            f"DR-test group {group} does not exist: {region} is not a region this deployment "
            "tests in (its infra creates one DR-test group per DR region)"
        )
    if backup_id is not None:
        backup = svc.catalog.get_backup(vm.key, backup_id)
        if backup is None:
            problems.append(f"no backup {backup_id} of {vm.name}")
        elif not _restorable(backup, region):
            problems.append(f"backup {backup_id} has no complete replica in {region}")
    elif not any(_restorable(b, region) for b in svc.catalog.list_backups(vm.key)):
        problems.append(f"no backup of {vm.name} has a complete replica in {region} yet")
    return problems


def _restorable(backup: Backup, region: str) -> bool:
    """A completed backup (not soft-deleted or being purged) with a whole replica in `region`."""
    return (
        backup.state is BackupState.COMPLETED
        and backup.replica_region == region
        and backup.replication_status is ReplicationStatus.COMPLETED
        and all(ref.replica_id for ref in backup.snapshots)
    )


def prepare_dr_test(payload: Payload, svc: Services) -> Payload:
    """Pick the backup to restore, check its replica in the test region is complete and that
    the VM's size can be had there (a test that cannot create its VM creates nothing)."""
    vm_key, region = payload["vm_key"], payload["test_region"]
    backup = _restorable_backup(svc, vm_key, region, payload.get("backup_id"))
    zone = _test_zone(backup, region)
    require_vm_size(svc, backup, region, zone)
    group = svc.settings.drtest_group(region)
    test_id = payload["test_id"]
    vm_name = backup.vm_name
    return {
        "backup_id": backup.backup_id,
        "vm_name": vm_name,
        "group": group,
        "vm_size": backup.vm_size,
        "os_type": backup.os_type,
        "zone": zone,
        **vm_settings(backup),
        "disks": [
            {
                "role": ref.disk_role,
                "lun": ref.lun,
                "sku": ref.sku,
                "replica_id": ref.replica_id,
                "name": names.dr_resource_name("disk", vm_name, test_id, ref.disk_role),
            }
            for ref in backup.snapshots
        ],
        "nic_name": names.dr_resource_name("nic", vm_name, test_id),
        "vm_test_name": names.dr_resource_name("vm", vm_name, test_id),
    }


def plan_dr_test(payload: Payload, svc: Services) -> Payload:
    """What `dr_test_v2` restores, and how: the backup (the one named, or the newest whose
    replica in the test region is complete) and the input of its `restore_backup_v2`: from the
    replicas into the region's DR-test group and its subnet, which the restore's pre-flight
    requires to be isolated (the VM is a copy of a production one), under the test id, keeping
    what a failure leaves (the DR test's own clean-up deletes it), each resource tagged as a
    test resource so the clean-up and the sweeper find it. Reads only.

    Answers {"problems": [...]} when there is no backup to test.
    """
    vm_key, region, test_id = payload["vm_key"], payload["test_region"], payload["test_id"]
    try:
        backup = _restorable_backup(svc, vm_key, region, payload.get("backup_id"))
    except (NotFoundError, PermanentError) as error:
        return {"problems": [str(error)]}
    return {
        "problems": [],
        "backup_id": backup.backup_id,
        "vm_name": backup.vm_name,
        "os_type": backup.os_type,
        "restore": {
            "vm_key": vm_key,
            "backup_id": backup.backup_id,
            "restore_id": test_id,
            "resource_group": svc.settings.drtest_group(region),
            "region": region,
            "new_vm": names.dr_resource_name("vm", backup.vm_name, test_id),
            "subnet": svc.settings.drtest_subnet,
            "isolated_subnet": True,  # the pre-flight refuses a subnet that is not isolated
            "keep_partial": True,
            "extra_tags": test_tags(test_id, backup.backup_id, svc.clock.now(), TEST_TTL),
        },
    }


def _test_zone(backup: Backup, region: str) -> str | None:
    """The zone the test VM and its disks go in: the VM's own in its own region, else none.

    A zone number names a datacenter of one region only (logical zones map to physical ones per
    subscription and region), so "zone 1" of the source means nothing in another region: a test
    restored elsewhere is regional, which is also what any region can give (a zonal request is
    refused where the size is zone-restricted). Tests in the VM's own region keep its zone.
    """
    if backup.zones and region.lower() == backup.region.lower():
        return backup.zones[0]
    return None


def _restorable_backup(svc: Services, vm_key: str, region: str, backup_id: str | None) -> Backup:
    if backup_id:
        backup = svc.catalog.get_backup(vm_key, backup_id)
        if backup is None:
            raise NotFoundError(f"backup {backup_id} of {vm_key} is not in the catalog")
        candidates = [backup]
    else:
        candidates = svc.catalog.list_backups(vm_key)  # only completed ones are restorable
    for backup in candidates:
        if _restorable(backup, region):
            return backup
    which = f"backup {backup_id}" if backup_id else f"no backup of {vm_key}"
    raise PermanentError(f"{which} has no complete replica in {region}")


def begin_dr_restore(payload: Payload, svc: Services) -> Payload:
    """Start the NIC on the isolated subnet and the restore of every disk from its replica."""
    plan, region, test_id = payload["plan"], payload["test_region"], payload["test_id"]
    tags = test_tags(test_id, plan["backup_id"], svc.clock.now(), TEST_TTL)
    group = plan["group"]
    nic = audited(
        svc,
        "create",
        f"{group}/networkInterfaces/{plan['nic_name']}",
        partial(
            svc.gateway.begin_nic,
            name=plan["nic_name"],
            resource_group=group,
            region=region,
            subnet=svc.settings.drtest_subnet,
            tags=tags,
        ),
        vm_key=payload["vm_key"],
        operation="dr_test",
    )
    disks, poll_after = [], nic.poll_after_seconds
    for disk in plan["disks"]:
        accepted = audited(
            svc,
            "create",
            f"{group}/disks/{disk['name']}",
            partial(
                svc.gateway.begin_disk_from_snapshot,
                name=disk["name"],
                resource_group=group,
                region=region,
                snapshot_id=disk["replica_id"],
                sku=disk["sku"],
                zone=plan.get("zone"),  # plans from before zones were recorded have none
                tags=tags,
            ),
            vm_key=payload["vm_key"],
            operation="dr_test",
        )
        poll_after = max(poll_after, accepted.poll_after_seconds)
        disks.append({"lun": disk["lun"], "disk_id": accepted.resource_id})
    return {"nic_id": nic.resource_id, "disks": disks, "poll_after": poll_after}


def check_dr_disks(payload: Payload, svc: Services) -> Payload:
    """Whether every restored disk, and the NIC when there is one, is provisioned (done), and
    whether any failed: the VM can be created on them only then."""
    disks = [svc.gateway.get_disk(d["disk_id"]) for d in payload["disks"]]
    states = [(d.name, d.provisioning_state) for d in disks]
    if payload.get("nic_id"):
        nic_id = payload["nic_id"]
        states.append((nic_id.rsplit("/", 1)[-1], svc.gateway.nic_state(nic_id)))
    failed = [f"{name}: {state}" for name, state in states if state == "Failed"]
    done = all(state in ("Succeeded", "Failed") for _, state in states)
    return {"done": done, "error": "; ".join(failed) or None}


def begin_dr_vm(payload: Payload, svc: Services) -> Payload:
    """Start creating the test VM with the restored OS disk and data disks attached."""
    plan, restore = payload["plan"], payload["restore"]
    os_disk = next(d["disk_id"] for d in restore["disks"] if d["lun"] is None)
    data = [(d["lun"], d["disk_id"]) for d in restore["disks"] if d["lun"] is not None]
    group = plan["group"]
    accepted = audited(
        svc,
        "create",
        f"{group}/virtualMachines/{plan['vm_test_name']}",
        partial(
            svc.gateway.begin_vm_from_disks,
            name=plan["vm_test_name"],
            resource_group=group,
            region=payload["test_region"],
            vm_size=plan["vm_size"],
            os_type=plan["os_type"],
            os_disk_id=os_disk,
            data_disks=data,
            nic_id=restore["nic_id"],
            tags=test_tags(payload["test_id"], plan["backup_id"], svc.clock.now(), TEST_TTL),
            # Older plans carry none of these: Azure's defaults, as such VMs were created before.
            security_type=plan.get("security_type", "Standard"),
            secure_boot=bool(plan.get("secure_boot", False)),
            vtpm=bool(plan.get("vtpm", False)),
            zone=plan.get("zone"),
            caching=plan.get("caching") or {},
        ),
        vm_key=payload["vm_key"],
        operation="dr_test",
    )
    return {"vm_id": accepted.resource_id, "poll_after": accepted.poll_after_seconds}


def check_dr_vm(payload: Payload, svc: Services) -> Payload:
    """The restored VM's provisioning and power state; a failed VM's `error` says why.

    Once provisioned, a VM still starting is read again (`poll_after`) when its group's boots,
    as the app watched them end before, say it may be running (`shared/domain/boot.py`), so the
    read that ends a DR test's boot comes when the boot does, not at a doubling interval.
    """
    runtime = svc.gateway.vm_runtime(payload["vm_id"])
    result = runtime.to_dict()
    if runtime.provisioning_state != "succeeded" or runtime.provisioned_at is None:
        return result
    group, name = _group_and_name(payload["vm_id"])
    since = max((svc.clock.now() - runtime.provisioned_at).total_seconds(), 0.0)
    try:
        bounds, seen_starting = svc.catalog.boot_times(group, name)
        if runtime.power_state == "running":
            svc.catalog.note_booted(group, name, boot.learned(bounds, seen_starting, since))
            return result
        svc.catalog.note_starting(group, name, since)
    except TransientError as error:  # learning is an aid: the catalog down fails no DR test
        log.warning("boot times not read or noted for %s: %s", payload["vm_id"], error)
        return result
    return {**result, "poll_after": boot.next_read(since, bounds)}


def _group_and_name(vm_id: str) -> tuple[str, str]:
    """(resource group, name) of a VM id, as the gateway read it."""
    parts = vm_id.split("/")
    return parts[4], parts[-1]


def begin_dr_guest_check(payload: Payload, svc: Services) -> Payload:
    """Ask the guest to answer through Run Command; `check_dr_guest` reads the answer.

    Azure runs one command at a time and refuses another while it runs, so a repeat of this
    step (at-least-once delivery) must not start a second: the request goes to the audit log
    with the address of its result (an operator wants to know what the app ran in a guest),
    and a repeat reads that run. A repeat that finds a command running but none noted (the
    first delivery died in between) answers "no run yet": the workflow starts again later.
    """
    vm_id, target = payload["vm_id"], f"{payload['vm_id']}/runCommand"
    if "since" in payload:  # absent from the inputs of instances started before it was kept
        since = parse_time(payload["since"])
        noted = svc.catalog.audit_entries(since=since, vm_key=payload["vm_key"])
        for entry in reversed(noted):
            if entry.resource_id == target and entry.result == "ok" and entry.detail:
                run = CommandRun(vm_id=vm_id, result_url=entry.detail, poll_after_seconds=0.0)
                return _guest(svc.gateway.read_guest_check(run))
    try:
        state = audited(
            svc,
            "request",
            target,
            partial(svc.gateway.begin_guest_check, vm_id, payload["os_type"]),
            vm_key=payload.get("vm_key"),
            operation="dr_test",
            detail=lambda s: s.result_url if isinstance(s, CommandRun) else None,
        )
    except BusyError:
        return {"done": False, "run": None, "poll_after": GUEST_BUSY_WAIT.total_seconds()}
    return _guest(state)


def check_dr_guest(payload: Payload, svc: Services) -> Payload:
    """The guest's answer to the Run Command `begin_dr_guest_check` started, once there is one."""
    return _guest(svc.gateway.read_guest_check(CommandRun.from_dict(payload["run"])))


def _guest(state: GuestCheck | CommandRun) -> Payload:
    if isinstance(state, CommandRun):
        return {"done": False, "run": state.to_dict(), "poll_after": state.poll_after_seconds}
    return {"done": True, **state.to_dict()}


def record_dr_test(payload: Payload, svc: Services) -> Payload:
    """Write the DR test row (success or failure, phases, RTO) and, once, its telemetry."""
    phases: dict[str, float] = payload.get("phases", {})
    target = float(payload.get("rto_target_seconds") or svc.settings.rto_target_seconds)
    rto = payload.get("rto_seconds")
    error = payload.get("error")
    if rto is not None and rto > target:
        error = "; ".join(filter(None, [error, f"RTO {rto:.0f}s exceeded target {target:.0f}s"]))
    success = bool(payload.get("connectivity_succeeded") and payload.get("cleanup_succeeded"))
    test = DrTest(
        id=payload["test_id"],
        vm_key=payload["vm_key"],
        vm_name=payload.get("vm_name") or payload["vm_key"],
        backup_name=payload.get("backup_id") or "",
        test_region=payload["test_region"],
        started_at=parse_time(payload["started"]),
        completed_at=parse_time(payload["completed"]),
        success=success and (rto is None or rto <= target),
        restore_succeeded=payload.get("restore_succeeded"),
        boot_succeeded=payload.get("boot_succeeded"),
        connectivity_succeeded=payload.get("connectivity_succeeded"),
        cleanup_succeeded=payload.get("cleanup_succeeded"),
        rto_seconds=rto,
        error_message=sanitise(error, limit=500) if error else None,
        phase_seconds=phases,
        rto_target_seconds=target,
    )
    recorded = svc.catalog.dr_history(test.vm_key, now=test.started_at, days=1)
    svc.catalog.save_dr_test(test)
    if any(earlier.id == test.id for earlier in recorded):
        return test.to_dict()  # a repeat of this step: the same row, no second event
    telemetry.emit(
        "DrTestCompleted",
        vm=test.vm_key,
        backup_id=test.backup_name,
        test_region=test.test_region,
        success=test.success,
        rto_seconds=rto,
        rto_target_seconds=target,
        restore_seconds=phases.get("restore"),
        create_vm_seconds=phases.get("create_vm"),
        boot_seconds=phases.get("boot"),
        guest_check_seconds=phases.get("guest_check"),
        cleanup_seconds=phases.get("cleanup"),
        error=test.error_message,
    )
    if rto is not None:
        telemetry.record_rto(test.vm_key, rto, target)
    return test.to_dict()
