"""What every activity shares: the audit trail, resource tags and time handling."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, TypeVar

from shared.domain.models import AuditEntry, Backup, GivenGroups
from shared.errors import CapacityError, NotFoundError, PermanentError, sanitise
from shared.services import Services

MANAGED_BY = "managed-by"
APP = "backupdr"
# Tags on every test resource (verification disks, DR-test disks, NICs and VMs): the sweeper deletes
# by `TEST_TAG` once `EXPIRES_TAG` has passed; retention treats `SOURCE_TAG` backups as in use.
TEST_TAG = "backupdr-test"
EXPIRES_TAG = "backupdr-expires"
SOURCE_TAG = "backupdr-backup"

Payload = dict[str, Any]
T = TypeVar("T")


def parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value)


def require_vm_size(svc: Services, backup: Backup, region: str, zone: str | None) -> None:
    """Pre-flight before a restore creates anything: the backup's VM size can be had in `region`
    (in `zone`, for a zonal VM) and boots the VM's generation and security type there.

    Read from the Resource SKUs list each time (nothing cached: an activity may run twice, and
    restrictions change). A backup that recorded no size (older rows) is left to the VM create.
    """
    if not backup.vm_size:
        return
    offer = svc.gateway.vm_size_offer(region, backup.vm_size)
    reason = "not offered there" if offer is None else offer.unavailable(zone)
    if reason is not None:
        where = f"{region} zone {zone}" if zone else region
        raise CapacityError(f"size {backup.vm_size} is not available in {where}: {reason}")
    assert offer is not None
    unfit = offer.cannot_run(backup.security_type, backup.hyper_v_generation)
    if unfit is not None:
        raise PermanentError(f"size {backup.vm_size} cannot run {backup.vm_name}: {unfit}")


def vm_settings(backup: Backup) -> Payload:
    """The recorded VM settings a restored VM is created with (its disks bring the Hyper-V
    generation and security type of their snapshots along)."""
    return {
        "security_type": backup.security_type,
        "secure_boot": backup.secure_boot,
        "vtpm": backup.vtpm,
        "hyper_v_generation": backup.hyper_v_generation,
        "caching": {ref.disk_role: ref.caching for ref in backup.snapshots if ref.caching},
    }


def test_tags(test_id: str, backup_id: str, now: datetime, ttl: timedelta) -> dict[str, str]:
    """Tags that let the sweeper find and expire what a verification or DR test created."""
    return {
        MANAGED_BY: APP,
        TEST_TAG: test_id,
        SOURCE_TAG: backup_id,
        EXPIRES_TAG: (now + ttl).isoformat(),
    }


def audited(
    svc: Services,
    action: str,
    resource_id: str,
    call: Callable[[], T],
    *,
    vm_key: str | None,
    operation: str,
    detail: Callable[[T], str | None] | None = None,
) -> T:
    """Run one mutating Azure call and write its outcome to the audit log, success or not
    (`detail` says what to note of a success, e.g. where Azure keeps the request's result)."""
    try:
        result = call()
    except NotFoundError as error:
        _audit(svc, action, resource_id, "not-found", vm_key, operation, str(error))
        raise
    except Exception as error:
        _audit(svc, action, resource_id, "failed", vm_key, operation, sanitise(str(error)))
        raise
    outcome = "not-found" if result is False else "ok"
    _audit(svc, action, resource_id, outcome, vm_key, operation, detail and detail(result))
    return result


def _audit(
    svc: Services,
    action: str,
    resource_id: str,
    result: str,
    vm_key: str | None,
    operation: str,
    detail: str | None,
) -> None:
    svc.catalog.audit(
        AuditEntry(
            at=svc.clock.now(),
            action=action,
            resource_id=resource_id,
            result=result,
            vm_key=vm_key,
            operation=operation,
            identity=svc.gateway.principal(),
            detail=detail,
        )
    )


def load_backup(svc: Services, payload: Payload) -> Backup:
    """The backup a step works on, named by `vm_key` and `backup_id` in its payload."""
    backup = svc.catalog.get_backup(payload["vm_key"], payload["backup_id"])
    if backup is None:
        raise LookupError(
            f"backup {payload['backup_id']} of {payload['vm_key']} is not in the catalog"
        )
    return backup


# How far back the audit log is read for test groups an operator named: a test's resources
# expire a few hours after they are made, and the sweeper runs hourly; a day leaves it room to
# have been down a while.
GIVEN_GROUPS_LOOKBACK = timedelta(days=1)


def given_test_groups(svc: Services, region_groups: set[str]) -> set[str]:
    """Resource groups a DR test was told to work in (`--test-resource-group`) besides the
    configured DR-test groups `region_groups`, as the audit log of its creates names them: a
    crashed test's leftovers there are swept, and backups restored there count as in use.
    The listing is kept in the catalog (`kept_test_groups`)."""
    now = svc.clock.now()
    found = set()
    for entry in svc.catalog.audit_entries(since=now - GIVEN_GROUPS_LOOKBACK):
        parts = entry.resource_id.split("/")
        if entry.action != "create" or entry.operation != "dr_test" or len(parts) < 5:
            continue
        if parts[3].lower() == "resourcegroups":
            found.add(parts[4])
    svc.catalog.save_given_groups(GivenGroups(now, tuple(sorted(found))))
    return _besides(found, region_groups)


def kept_test_groups(svc: Services, region_groups: set[str], fresh: timedelta) -> set[str]:
    """`given_test_groups` from the catalog's listing while it is at most `fresh` old (the
    hourly sweeper's, or an earlier caller's): the audit log is read once a listing, not
    once per VM."""
    kept = svc.catalog.given_groups()
    if kept is None or kept.listed_at < svc.clock.now() - fresh:
        return given_test_groups(svc, region_groups)
    return _besides(set(kept.groups), region_groups)


def _besides(groups: set[str], region_groups: set[str]) -> set[str]:
    configured = {g.lower() for g in region_groups}
    return {g for g in groups if g.lower() not in configured}
