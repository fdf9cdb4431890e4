"""Cleanup steps: delete what a test created, one kind at a time, and find what crashes left.

Everything a DR test or verification creates sits in the region's DR-test group, tagged with the
test id (a failed restore's: in the group it restored into, tagged with the restore id).
Deleting a VM takes Azure minutes, so these steps only send the deletes and look again;
the clean-up workflow (`shared/orchestrations/cleanup.py`) waits between them on durable timers.
"""

from __future__ import annotations

from datetime import datetime
from functools import partial
from typing import Literal

from shared.activities.common import (
    EXPIRES_TAG,
    SOURCE_TAG,
    TEST_TAG,
    Payload,
    audited,
    given_test_groups,
    parse_time,
)
from shared.activities.retention import note_restores
from shared.errors import NotFoundError, PermanentError
from shared.ports import Accepted, TaggedResource
from shared.services import Services

# What a test creates, in the order it must go: a VM holds its NIC and disks until it is gone.
DELETE_ORDER = (
    "Microsoft.Compute/virtualMachines",
    "Microsoft.Network/networkInterfaces",
    "Microsoft.Compute/disks",
)
RECHECK_SECONDS = 10.0  # once the first wait is over, how soon to look whether a kind is gone


def begin_test_cleanup(payload: Payload, svc: Services) -> Payload:
    """Start deleting the first kind (in DELETE_ORDER) of which the test left something.

    Answers that kind and when to look again, or kind None and whether the test is clean once
    none of those kinds is left. Deleting again what is being deleted is harmless, so a retried
    or repeated step converges.
    """
    left = _left(svc, payload)
    kind = next((k for k in DELETE_ORDER if any(_is(r, k) for r in left)), None)
    if kind is None:
        return {"kind": None, "clean": not left, "left": [r.id for r in left]}
    poll_after = 0.0
    for resource in (r for r in left if _is(r, kind)):
        accepted = audited(
            svc,
            "delete",
            resource.id,
            partial(_begin_delete, svc, resource.id),
            vm_key=payload.get("vm_key"),
            operation=payload.get("operation", "cleanup"),
        )
        if accepted:
            poll_after = max(poll_after, accepted.poll_after_seconds)
    return {"kind": kind, "poll_after": poll_after}


def check_test_cleanup(payload: Payload, svc: Services) -> Payload:
    """What is left of the kind being deleted (one list of the group, however many there are)."""
    left = [r.id for r in _left(svc, payload) if _is(r, payload["kind"])]
    return {"left": left, "poll_after": RECHECK_SECONDS}


def list_expired_tests(payload: Payload, svc: Services) -> Payload:
    """Tests whose resources' expiry has passed, in the DR-test group of every region the
    deployment serves or the fleet touches (a region without one has none), and in every group
    an operator gave a DR test (`resource_group`)."""
    now = parse_time(payload["now"])
    regions = {vm.location for vm in svc.gateway.list_vms()}
    regions |= {b.replica_region for b in svc.catalog.latest_backups().values() if b.replica_region}
    regions |= (svc.settings.backup_regions or set()) | (svc.settings.dr_regions or set())
    groups = {svc.settings.drtest_group(region): region for region in sorted(regions)}
    expired = [
        {"region": region, "test_id": test_id}
        for group, region in groups.items()
        for test_id in _expired_tests(svc, group, now)
    ]
    for group in sorted(given_test_groups(svc, set(groups))):
        try:
            found = _expired_tests(svc, group, now)
        except PermanentError:  # the operator's group, where the app was given no role
            continue
        expired += [{"region": group, "test_id": t, "resource_group": group} for t in found]
    return {"expired": expired}


def _expired_tests(svc: Services, group: str, now: datetime) -> list[str]:
    """The group's expired tests; the same list tells retention what is restored there."""
    listed_at = svc.clock.now()
    try:
        tagged = svc.gateway.list_tagged(group, EXPIRES_TAG, SOURCE_TAG)
    except NotFoundError:  # a group that does not exist has no test and nothing in use
        tagged = []
    note_restores(svc, group, listed_at, tagged)
    return sorted(
        {
            r.tags[TEST_TAG]
            for r in tagged
            if TEST_TAG in r.tags and EXPIRES_TAG in r.tags and _expired(r, now)
        }
    )


def _expired(resource: TaggedResource, now: datetime) -> bool:
    """Whether a test resource's expiry has passed. An expiry that is not a time with a zone
    counts as passed (its deletes are audited like any other): a tag nobody can read must not
    keep a clone of a production VM running for good, nor stop the sweep of everything else."""
    try:
        return parse_time(resource.tags[EXPIRES_TAG]) <= now
    except (ValueError, TypeError):  # not ISO 8601, or no zone to compare with
        return True


def _left(svc: Services, payload: Payload) -> list[TaggedResource]:
    """Everything still tagged with the test id (deleting too): in the region's DR-test group,
    or, for a restore, in the `resource_group` it worked in under its own `tag`."""
    group = payload.get("resource_group") or svc.settings.drtest_group(payload["region"])
    tag = payload.get("tag") or TEST_TAG
    return [r for r in svc.gateway.list_tagged(group, tag) if r.tags.get(tag) == payload["test_id"]]


def _is(resource: TaggedResource, kind: str) -> bool:
    return resource.type.lower() == kind.lower()


def _begin_delete(svc: Services, resource_id: str) -> Accepted | Literal[False]:
    """The delete, started; False (audited as not-found) when Azure had nothing to delete."""
    return svc.gateway.begin_delete(resource_id) or False
