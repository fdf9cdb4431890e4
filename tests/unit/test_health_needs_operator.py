"""What needs an operator, from a health document: one entry per VM and reason, each reason a
sentence with the figures that matter, and nothing for a VM within its targets."""

from __future__ import annotations

from typing import Any

import pytest

from shared.health import needs_operator

NOW = "2026-11-30T09:00:00+00:00"
HOUR = 3600.0


def _vm(name: str = "web-01", **changes: Any) -> dict[str, Any]:
    """A daily-policy VM backed up 7 h ago, verified, replicated, its last DR test passed."""
    return {
        "vm": name,
        "vm_key": f"rg-app~{name}",
        "resource_group": "rg-app",
        "verify": "daily",
        "rpo_seconds": 7 * HOUR,
        "rpo_target_seconds": 25 * HOUR,
        "rpo_ok": True,
        "replication_behind": None,
        "verification": {
            "first_backup": "2026-11-01T02:00:00+00:00",
            "last_passed": "2026-11-30T04:20:00+00:00",
            "last": {
                "backup_id": "20261130t020000z-a",
                "result": "passed",
                "at": "2026-11-30T04:20:00+00:00",
                "error": None,
            },
        },
        "last_dr_test": {"started_at": "2026-11-29T03:00:00+00:00", "success": True, "error": None},
        **changes,
    }


def _health(*vms: dict[str, Any], **changes: Any) -> dict[str, Any]:
    return {
        "at": NOW,
        "replication_lag_target_seconds": 4 * HOUR,
        "vms": list(vms),
        "misconfigured": [],
        "not_protectable": [],
        "missing_snapshots": [],
        **changes,
    }


def _behind(status: str, taken_at: str, **changes: Any) -> dict[str, Any]:
    return {
        "backup_id": "20261130t020000z-a",
        "taken_at": taken_at,
        "replication_status": status,
        "since": taken_at,
        "error": None,
        "completion_percent": 0.0,
        **changes,
    }


def _verification(last_passed: str | None, last: dict[str, Any] | None) -> dict[str, Any]:
    return {"first_backup": "2026-11-27T02:00:00+00:00", "last_passed": last_passed, "last": last}


def _reasons(health: dict[str, Any]) -> list[tuple[str, str, str]]:
    return [(e["vm"], e["kind"], e["reason"]) for e in needs_operator(health)]


def test_a_vm_within_its_targets_needs_nobody() -> None:
    assert needs_operator(_health(_vm())) == []


@pytest.mark.parametrize(
    ("changes", "kind", "reason"),
    [
        pytest.param(
            {"rpo_seconds": 30 * HOUR, "rpo_ok": False},
            "rpo",
            "RPO 30 h over a 24 h schedule (target 25 h)",
            id="rpo-over-target",
        ),
        pytest.param(
            {"rpo_seconds": None, "rpo_ok": False},
            "rpo",
            "no completed backup yet (target 25 h, a 24 h schedule)",
            id="no-backup-yet",
        ),
        pytest.param(
            {
                "replication_behind": _behind(
                    "in_progress", "2026-11-30T02:00:00+00:00", completion_percent=40.0
                )
            },
            "replication",
            "replication 7 h behind (target 4 h): backup 20261130t020000z-a copy stuck at 40 %",
            id="copy-stuck",
        ),
        pytest.param(
            {
                "replication_behind": _behind(
                    "failed", "2026-11-30T02:00:00+00:00", error="CopySourceNotFound: gone"
                )
            },
            "replication",
            "replication 7 h behind (target 4 h): backup 20261130t020000z-a copy failed: "
            "CopySourceNotFound: gone",
            id="copy-failed",
        ),
        pytest.param(
            {"replication_behind": _behind("none", "2026-11-29T02:00:00+00:00")},
            "replication",
            "replication 31 h behind (target 4 h): backup 20261130t020000z-a copy not started",
            id="copy-not-started",
        ),
        pytest.param(
            {
                "verification": _verification(
                    "2026-11-28T04:20:00+00:00",
                    {
                        "backup_id": "20261130t020000z-a",
                        "result": "failed",
                        "at": "2026-11-30T04:20:00+00:00",
                        "error": "os: provisioning Failed",
                    },
                )
            },
            "verification",
            "verification of backup 20261130t020000z-a failed on 2026-11-30: "
            "os: provisioning Failed",
            id="verification-failed",
        ),
        pytest.param(
            {"verification": _verification("2026-11-27T09:00:00+00:00", None)},
            "verification",
            "no verified backup in 3 days (policy: verify daily)",
            id="verification-overdue",
        ),
        pytest.param(
            {"verification": _verification(None, None)},
            "verification",
            "no verified backup in 3 days (policy: verify daily)",
            id="never-verified-since-the-first-backup",
        ),
        pytest.param(
            {
                "last_dr_test": {
                    "started_at": "2026-11-30T03:00:00+00:00",
                    "success": False,
                    "error": "guest_check: the VM did not answer on port 22",
                }
            },
            "dr_test",
            "DR test failed on 2026-11-30: guest_check: the VM did not answer on port 22",
            id="dr-test-failed",
        ),
    ],
)
def test_each_reason_is_a_sentence_with_its_figures(
    changes: dict[str, Any], kind: str, reason: str
) -> None:
    assert _reasons(_health(_vm(**changes))) == [("web-01", kind, reason)]


@pytest.mark.parametrize(
    "changes",
    [
        pytest.param(
            {"replication_behind": _behind("in_progress", "2026-11-30T06:00:00+00:00")},
            id="copy-within-the-lag-target",
        ),
        pytest.param(
            {"verification": _verification("2026-11-28T10:00:00+00:00", None)},
            id="verified-within-a-day-and-a-days-grace",
        ),
        pytest.param(
            {"verify": "weekly", "verification": _verification("2026-11-23T09:00:00+00:00", None)},
            id="weekly-verified-a-week-ago",
        ),
        pytest.param(
            {"verify": "off", "verification": _verification(None, None)},
            id="verification-off",
        ),
        pytest.param({"verification": None}, id="no-backups-to-verify"),
        pytest.param({"last_dr_test": None}, id="never-dr-tested"),
    ],
)
def test_what_is_within_its_target_is_not_listed(changes: dict[str, Any]) -> None:
    assert needs_operator(_health(_vm(**changes))) == []


def test_tags_disks_and_missing_snapshots_are_listed_one_entry_per_vm() -> None:
    names = {"vm_key": "rg-app~x", "resource_group": "rg-app"}
    health = _health(
        _vm("web-01"),
        misconfigured=[{"vm": "app-01", **names, "error": "daily='x': must be a whole number"}],
        not_protectable=[{"vm": "legacy-01", **names, "reason": "unmanaged disk (VHD)"}],
        missing_snapshots=[
            {"vm": "web-01", "vm_key": "rg-app~web-01", "resource_group": "rg-app", "backup_id": b}
            for b in ("20261128t020000z-a", "20261129t020000z-a")
        ],
    )
    assert _reasons(health) == [
        ("app-01", "misconfigured", "backup-policy tag invalid: daily='x': must be a whole number"),
        ("legacy-01", "not_protectable", "not protectable: unmanaged disk (VHD)"),
        (
            "web-01",
            "missing_snapshots",
            "2 listed backups have missing snapshots: 20261128t020000z-a, 20261129t020000z-a",
        ),
    ]


def test_entries_name_the_vm_and_its_resource_group_sorted_by_vm() -> None:
    failing = {"rpo_seconds": 30 * HOUR, "rpo_ok": False}
    listed = needs_operator(_health(_vm("web-02", **failing), _vm("db-01", **failing)))
    assert [(e["vm"], e["resource_group"], e["vm_key"]) for e in listed] == [
        ("db-01", "rg-app", "rg-app~db-01"),
        ("web-02", "rg-app", "rg-app~web-02"),
    ]
