"""Failover steps: bring a VM up for good in its DR region, from a backup's replica there.

A failover is a restore (`restore_backup_v2`: pre-flight, disks and NIC, the VM with the
recorded settings, clean-up after a failure) into the DR region's recovery group and subnet,
which infra provisions apart from the isolated DR-test network; then the VM is left running and
its guest checked as a DR test checks it. Each VM's failover is a row of the `failovers` table,
with its RTO split by phase. A region failover lists the region's protected VMs from the catalog
as well as from Azure (the region may be down), in the order of their `backup-recovery-group` tag.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from shared.activities.common import Payload, parse_time
from shared.activities.drtest import _restorable_backup
from shared.activities.restore import check_restore
from shared.domain import names
from shared.domain.models import VM, Failover
from shared.domain.policy import PolicyError, policy_for
from shared.errors import NotFoundError, PermanentError, TransientError, sanitise
from shared.inputs import VM_NAME, gone_vms, known_vm
from shared.services import Services

RECOVERY_GROUP_TAG = "backup-recovery-group"
PHASES = ("restore", "create_vm", "boot", "guest_check")
# No VM's failover takes longer (restore, boot and guest check time out well within it): a
# failover requested earlier has ended.
RUNS = timedelta(hours=6)


def recovery_group(vm: VM) -> int | None:
    """The VM's `backup-recovery-group` (a whole number, lower first); None (last) when the tag
    is missing or not a whole number."""
    value = next((v for k, v in vm.tags.items() if k.lower() == RECOVERY_GROUP_TAG), None)
    try:
        return int(value.strip()) if value is not None else None
    except ValueError:
        return None


def group_order(group: int | None) -> tuple[bool, int]:
    """Sort key: recovery groups in order, VMs without one last."""
    return (group is None, group or 0)


def failover_id(vm_key: str, started: datetime) -> str:
    """A single VM's failover: its durable instance id, restore id and row id."""
    return names.orchestration_id("failover", vm_key, started.replace(microsecond=0))


def region_failover_id(region: str, started: datetime, group: int | None = None) -> str:
    """A region failover's durable instance id (one per region, group and second)."""
    only = f"-g{group}" if group is not None else ""
    return f"region-failover-{region}{only}-{started.replace(microsecond=0):%Y%m%dt%H%M%Sz}"


def member_id(vm_key: str, region_started: datetime) -> str:
    """The failover id of a VM within a region failover: unique to that run, so its
    sub-orchestration never names a running instance."""
    return names.orchestration_id("rfo", vm_key, region_started.replace(microsecond=0))


def live_sources(svc: Services) -> list[VM]:
    """The live VMs a failover may start from: none of those in a recovery group (a VM failed
    over earlier, which may bear its source's name, never hides its source)."""
    return [
        vm
        for vm in svc.gateway.list_vms()
        if vm.resource_group.lower() != svc.settings.recovery_group(vm.location).lower()
    ]


def source_vm(svc: Services, name: str, resource_group: str | None = None) -> VM:
    """The VM a failover names: live, or as the catalog last recorded it (InputError if
    neither knows it)."""
    return known_vm(live_sources(svc), svc.catalog, name, resource_group)


def region_vms(svc: Services, region: str) -> tuple[list[VM], list[Payload]]:
    """The protected VMs of `region` (live ones, and those only the catalog still knows) and
    those of the region that cannot be failed over, each with the reason.

    The live list is read once; if Azure cannot answer (the region, or ARM, is down), the
    catalog alone answers: every VM it holds backups of, as its newest backup recorded it.
    """
    try:
        live = live_sources(svc)
    except (TransientError, PermanentError):
        live = []
    candidates = live + gone_vms(svc.catalog, live)
    chosen, skipped = [], []
    for vm in sorted(candidates, key=lambda v: v.key):
        if vm.location.lower() != region.lower():
            continue
        try:
            policy = policy_for(vm, svc.settings.regions)
        except PolicyError as error:
            skipped.append({"vm_name": vm.name, "reason": f"misconfigured: {error}"})
            continue
        if policy is None:
            continue  # not protected: nothing to fail over
        if vm.not_protectable:
            skipped.append({"vm_name": vm.name, "reason": vm.not_protectable_reason})
        elif not policy.replicate:
            skipped.append({"vm_name": vm.name, "reason": "its policy replicates nowhere"})
        else:
            chosen.append(vm)
    return chosen, skipped


def list_region_failover(payload: Payload, svc: Services) -> Payload:
    """The VMs a region failover brings up, by recovery group (lower first, untagged last),
    each with its failover id; reads only."""
    region, only = payload["region"], payload.get("group")
    started = parse_time(payload["started"])
    chosen, skipped = region_vms(svc, region)
    items = []
    for vm in chosen:
        group = recovery_group(vm)
        if only is not None and group != only:
            continue
        policy = policy_for(vm, svc.settings.regions)
        items.append(
            {
                "vm_key": vm.key,
                "vm_name": vm.name,
                "target_region": policy.replicate if policy else None,
                "recovery_group": group,
                "failover_id": member_id(vm.key, started),
                "region_failover_id": payload["region_failover_id"],
            }
        )
    items.sort(key=lambda i: (group_order(i["recovery_group"]), i["vm_name"].lower()))
    seen: set[str] = set()
    for entry in items:  # same-named VMs of several groups: one recovery group, distinct names
        if entry["vm_name"].lower() in seen:
            entry["new_vm"] = f"{entry['vm_name'][:53]}-{names.short_hash(entry['vm_key'])}"
        seen.add(entry["vm_name"].lower())
    return {"vms": items, "skipped": skipped, "batch_size": svc.settings.fleet_batch_size}


def prepare_failover(payload: Payload, svc: Services) -> Payload:
    """Pick the backup (the one named, or the newest whose replica in the target region is
    complete), the recovery group and subnet there, and the new VM's name: the one given
    (`new_vm`), else the VM's own if no VM of that name is in the group, else `<name>-dr`.
    Reads only.

    Answers {"problems": [...]} when there is nothing to fail over from.
    """
    vm_key, region = payload["vm_key"], payload["target_region"]
    try:
        backup = _restorable_backup(svc, vm_key, region, payload.get("backup_id"))
    except (NotFoundError, PermanentError) as error:
        return {"problems": [str(error)]}
    group = svc.settings.recovery_group(region)
    name = payload.get("new_vm") or backup.vm_name
    try:
        svc.gateway.get_vm(group, name)
    except NotFoundError:
        pass
    else:
        name = f"{name[:61]}-dr"  # the restore's pre-flight refuses it if that is taken too
    if not VM_NAME.match(name):
        name = f"vm-{names.short_hash(backup.vm_name)}"
    return {
        "problems": [],
        "backup_id": backup.backup_id,
        "vm_name": backup.vm_name,
        "source_region": backup.region,
        "target_region": region,
        "resource_group": group,
        "subnet": svc.settings.recovery_subnet,
        "new_vm": name,
        "os_type": backup.os_type,
    }


def restore_request(item: Payload, plan: Payload) -> Payload:
    """The `restore_backup_v2` input of a failover: into the recovery group and subnet, from
    the replicas in the target region, under the failover's id."""
    return {
        "vm_key": item["vm_key"],
        "backup_id": plan["backup_id"],
        "restore_id": item["failover_id"],
        "resource_group": plan["resource_group"],
        "region": plan["target_region"],
        "new_vm": plan["new_vm"],
        "subnet": plan["subnet"],
        "keep_partial": False,
    }


def failover_problems(svc: Services, item: Payload) -> tuple[Payload, list[str]]:
    """The pre-flight of one VM's failover, run before anything starts (CLI, HTTP): its plan
    and what would make it fail (no complete replica; the restore's own checks)."""
    plan = prepare_failover(item, svc)
    if plan["problems"]:
        return plan, list(plan["problems"])
    return plan, list(check_restore(restore_request(item, plan), svc)["problems"])


def record_failover(payload: Payload, svc: Services) -> Payload:
    """Write the VM's failover row: started, or how it ended. Keyed by its start and id, so a
    repeat rewrites the same row."""
    started = parse_time(payload["started"])
    failover = Failover(
        id=payload["failover_id"],
        vm_key=payload["vm_key"],
        vm_name=payload.get("vm_name") or payload["vm_key"],
        backup_id=payload.get("backup_id") or "",
        source_region=payload.get("source_region") or "",
        target_region=payload["target_region"],
        resource_group=payload.get("resource_group") or "",
        started_at=started,
        region_failover_id=payload.get("region_failover_id"),
        completed_at=parse_time(payload["completed"]) if payload.get("completed") else None,
        state=payload["state"],
        error=sanitise(payload["error"], limit=500) if payload.get("error") else None,
        vm_id=payload.get("vm_id"),
        new_vm_name=payload.get("new_vm"),
        recovery_group=payload.get("recovery_group"),
        rto_seconds=payload.get("rto_seconds"),
        phase_seconds=payload.get("phases") or {},
    )
    svc.catalog.save_failover(failover)
    return failover.to_dict()
