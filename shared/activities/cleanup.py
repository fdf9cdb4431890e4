"""Cleanup steps: remove a test's resources now, and sweep what crashed tests left behind."""

from __future__ import annotations

from collections import defaultdict
from functools import partial

from shared.activities.common import EXPIRES_TAG, TEST_TAG, Payload, audited, parse_time
from shared.services import Services


def cleanup_test_resources(payload: Payload, svc: Services) -> Payload:
    """Delete everything tagged with this test id in the region's DR-test group, and confirm."""
    group = svc.settings.drtest_group(payload["region"])
    test_id = payload["test_id"]
    deleted = audited(
        svc,
        "delete",
        f"{group}/{TEST_TAG}={test_id}",
        partial(svc.gateway.delete_tagged, group, TEST_TAG, test_id),
        vm_key=payload.get("vm_key"),
        operation=payload.get("operation", "cleanup"),
    )
    left = [
        r.id for r in svc.gateway.list_tagged(group, TEST_TAG) if r.tags.get(TEST_TAG) == test_id
    ]
    return {"deleted": deleted, "clean": not left, "left": left}


def sweep_expired(payload: Payload, svc: Services) -> Payload:
    """Delete test resources whose expiry has passed, in every region the fleet touches."""
    now = parse_time(payload["now"])
    regions: set[str] = set()
    for vm in svc.gateway.list_vms():
        regions.add(vm.location)
    regions |= {b.replica_region for b in svc.catalog.latest_backups().values() if b.replica_region}
    swept: dict[str, list[str]] = defaultdict(list)
    for region in sorted(regions):
        group = svc.settings.drtest_group(region)
        expired = {
            r.tags[TEST_TAG]
            for r in svc.gateway.list_tagged(group, EXPIRES_TAG)
            if TEST_TAG in r.tags and parse_time(r.tags[EXPIRES_TAG]) <= now
        }
        for test_id in sorted(expired):
            swept[region] += cleanup_test_resources(
                {"region": region, "test_id": test_id, "operation": "sweeper"}, svc
            )["deleted"]
    return {"swept": dict(swept)}
