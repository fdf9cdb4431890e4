"""Retention plans: golden files per fixture and policy (restic style), and the safety rules.

Goldens live in tests/unit/golden/retention_<fixture>.json; rewrite them with
BACKUPDR_UPDATE_GOLDENS=1 and read the diff: they are the spec. Each golden records, per policy, the
plan made with `force=True` (so the period counting shows even where the circuit breaker would stop
a first run) as kept backups with their reasons and expired backups grouped by reason, and beside it
what the unforced plan says about halting.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from shared.domain.models import Backup, ReplicationStatus
from shared.domain.policy import BackupPolicy, format_policy, parse_policy
from shared.domain.retention import Decision, plan_retention
from tests.unit.builders import BackupBuilder, a_backup, assert_plan_invariants, at, every, history

GOLDEN_DIR = Path(__file__).parent / "golden"
UPDATE = os.environ.get("BACKUPDR_UPDATE_GOLDENS") == "1"


def _year_with_gaps() -> list[Backup]:
    rng = random.Random(2026)  # fixed seed: the gaps are part of the spec
    return history(t for t in every("2026-01-01T02:00", 365) if rng.random() > 0.2)


def _vm_off_two_weeks() -> list[Backup]:
    before = every("2026-09-01T02:00", 71)  # to 2026-11-10
    after = every("2026-11-25T02:00", 5)  # off 11-11 .. 11-24
    return history([*before, *after])


def _sub_daily() -> list[Backup]:
    return history(every("2026-11-20T00:00", 40, timedelta(hours=6)))


def _calendar_boundaries() -> list[Backup]:
    # 2026 has 53 ISO weeks: 2026-W53 runs from Mon 12-28 to Sun 2027-01-03. 2028 is a leap year.
    days = [
        "2026-11-30", "2026-12-01", "2026-12-02",  # one ISO week across a month boundary
        "2026-12-27", "2026-12-28", "2026-12-31", "2027-01-01", "2027-01-03", "2027-01-04",
        "2028-02-28", "2028-02-29", "2028-03-01",
    ]  # fmt: skip
    return history(at(f"{day}T02:00") for day in days)


def _replication_and_verification() -> list[Backup]:
    days = [f"2026-11-{d:02d}T02:00" for d in range(16, 30)]
    return [
        a_backup(days[0]).verified().replicated().build(),
        a_backup(days[1]).held().build(),
        a_backup(days[2]).unmanaged().build(),
        a_backup(days[3]).replicated().build(),
        a_backup(days[4]).verified().build(),
        a_backup(days[5]).replicated(ReplicationStatus.FAILED).build(),
        a_backup(days[6]).replicated().build(),
        a_backup(days[7]).failed().build(),
        a_backup(days[8]).deleted().build(),
        a_backup(days[9]).replicated(ReplicationStatus.IN_PROGRESS).build(),
        a_backup(days[10]).replicated(ReplicationStatus.PENDING).build(),
        a_backup(days[11]).build(),  # never verified, never replicated
        a_backup(days[12]).failed().build(),
        a_backup(days[13]).creating().build(),
    ]


# fixture name -> (backups, now, in_use, policies; None stands for a missing policy)
FIXTURES: dict[str, tuple[list[Backup], datetime, tuple[str, ...], list[str | None]]] = {
    "year_with_gaps": (
        _year_with_gaps(),
        at("2027-01-01T12:00"),
        (),
        [
            "",
            "daily=30;weekly=0;monthly=0",
            "daily=0;weekly=8;monthly=0",
            "daily=3;weekly=3;monthly=6",
        ],
    ),
    "vm_off_two_weeks": (
        _vm_off_two_weeks(),
        at("2026-11-29T12:00"),
        (),
        ["", "daily=7;weekly=2;monthly=1"],
    ),
    "sub_daily": (
        _sub_daily(),
        at("2026-11-29T20:00"),
        (),
        ["schedule=0 */6 * * *", "schedule=0 */6 * * *;daily=2;weekly=1;monthly=1"],
    ),
    "calendar_boundaries": (
        _calendar_boundaries(),
        at("2028-03-01T12:00"),
        (),
        ["daily=2;weekly=0;monthly=0", "daily=0;weekly=3;monthly=0", "daily=0;weekly=0;monthly=4"],
    ),
    "replication_and_verification": (
        _replication_and_verification(),
        at("2026-11-29T12:00"),
        ("2026-11-20T02:00",),  # a DR test reads this one
        ["daily=1;weekly=0;monthly=0", None],
    ),
}


def _golden_plan(
    backups: list[Backup], now: datetime, in_use: tuple[str, ...], text: str | None
) -> dict[str, Any]:
    policy = None if text is None else parse_policy(text)
    forced = plan_retention(backups, policy, now, in_use=in_use, force=True)
    unforced = plan_retention(backups, policy, now, in_use=in_use)
    assert_plan_invariants(backups, policy, now, forced, in_use)
    assert_plan_invariants(backups, policy, now, unforced, in_use)
    expired: dict[str, list[str]] = {}
    for d in forced.decisions:
        if not d.keep:
            expired.setdefault(d.reasons[0], []).append(d.backup_id)
    return {
        "halted_without_force": unforced.halted,
        "kept": {d.backup_id: d.reasons for d in forced.decisions if d.keep},
        "expired": expired,
    }


def _dump(value: Any, indent: str = "") -> str:
    """Indented JSON with lists on one line, so a golden reads like a table."""
    if not isinstance(value, dict) or not value:
        return json.dumps(value)
    inner = indent + "  "
    items = [f"{inner}{json.dumps(k)}: {_dump(v, inner)}" for k, v in value.items()]
    return "{\n" + ",\n".join(items) + f"\n{indent}}}"


@pytest.mark.parametrize("name", list(FIXTURES))
def test_retention_plan_matches_golden(name: str) -> None:
    backups, now, in_use, policies = FIXTURES[name]
    golden: dict[str, Any] = {
        "fixture": name,
        "now": now.isoformat(),
        "plans": {
            "no valid policy" if text is None else format_policy(parse_policy(text)): _golden_plan(
                backups, now, in_use, text
            )
            for text in policies
        },
    }
    path = GOLDEN_DIR / f"retention_{name}.json"
    if UPDATE:
        GOLDEN_DIR.mkdir(exist_ok=True)
        path.write_text(_dump(golden) + "\n")
    expected = json.loads(path.read_text())
    assert expected == json.loads(json.dumps(golden)), f"{path.name} differs (module docstring)"


class TestPeriods:
    """Period counting: what the daily/weekly/monthly counts keep."""

    def test_vm_off_for_two_weeks_keeps_its_last_seven_backup_days(self) -> None:
        backups, now, _, _ = FIXTURES["vm_off_two_weeks"]
        plan = plan_retention(backups, BackupPolicy(weekly=0, monthly=0), now, force=True)
        days = [d.backup_id[:10] for d in plan.decisions if "kept: daily" in " ".join(d.reasons)]
        assert days == [f"2026-11-{d:02d}" for d in (29, 28, 27, 26, 25, 10, 9)]

    def test_first_backup_of_a_day_is_kept_not_the_last(self) -> None:
        backups = history(every("2026-11-29T00:00", 4, timedelta(hours=6)))
        plan = plan_retention(backups, BackupPolicy(daily=1, weekly=0, monthly=0), at("2026-11-30"))
        assert _reasons(plan.decisions) == {
            "2026-11-29T18:00": ("kept: newest completed",),
            "2026-11-29T12:00": ("expired: beyond 1 daily / 0 weekly / 0 monthly",),
            "2026-11-29T06:00": ("expired: beyond 1 daily / 0 weekly / 0 monthly",),
            "2026-11-29T00:00": ("kept: daily 2026-11-29",),
        }

    def test_failed_backups_do_not_use_up_a_days_place(self) -> None:
        backups = [
            a_backup("2026-11-27T02:00").build(),
            a_backup("2026-11-28T02:00").failed().build(),
            a_backup("2026-11-29T02:00").failed().build(),
        ]
        plan = plan_retention(backups, BackupPolicy(daily=1, weekly=0, monthly=0), at("2026-11-30"))
        assert _reasons(plan.decisions)["2026-11-27T02:00"] == (
            "kept: daily 2026-11-27",
            "kept: newest completed",
        )

    def test_backup_taken_after_now_is_kept_and_not_counted(self) -> None:
        backups = [a_backup("2026-11-28T02:00").build(), a_backup("2026-11-30T02:00").build()]
        plan = plan_retention(backups, BackupPolicy(daily=1, weekly=0, monthly=0), at("2026-11-29"))
        assert _reasons(plan.decisions) == {
            "2026-11-30T02:00": ("kept: taken after now",),
            "2026-11-28T02:00": ("kept: daily 2026-11-28", "kept: newest completed"),
        }

    def test_deleted_backups_get_no_decision(self) -> None:
        backups = [a_backup("2026-11-28T02:00").deleted().build(), a_backup("2026-11-29").build()]
        plan = plan_retention(backups, BackupPolicy(), at("2026-11-30"))
        assert [d.backup_id for d in plan.decisions] == ["2026-11-29T00:00"]


def _reasons(decisions: tuple[Decision, ...]) -> dict[str, tuple[str, ...]]:
    return {d.backup_id: d.reasons for d in decisions}


Modify = Callable[[BackupBuilder], BackupBuilder]

# The backup under test is the oldest of four daily backups; daily=1 would expire it.
SAFETY_CASES = [
    pytest.param(lambda b: b.verified(), (), "kept: newest verified", id="newest-verified"),
    pytest.param(lambda b: b.replicated(), (), "kept: newest replicated", id="newest-replicated"),
    pytest.param(
        lambda b: b.replicated(ReplicationStatus.IN_PROGRESS),
        (),
        "kept: copy in progress",
        id="copy-in-progress",
    ),
    pytest.param(
        lambda b: b.replicated(ReplicationStatus.PENDING),
        (),
        "kept: copy in progress",
        id="copy-pending",
    ),
    pytest.param(
        lambda b: b,
        ("2026-11-26T02:00",),
        "kept: in use by verification or DR test",
        id="in-use",
    ),
    pytest.param(lambda b: b.unmanaged(), (), "kept: not created by backupdr", id="unmanaged"),
    pytest.param(lambda b: b.held(), (), "kept: backup-hold", id="backup-hold"),
]


class TestSafetyRules:
    """Safety rules keep a backup whatever the counts say, even when forced."""

    @pytest.mark.parametrize(("modify", "in_use", "reason"), SAFETY_CASES)
    def test_safety_rule_keeps_an_otherwise_expired_backup(
        self, modify: Modify, in_use: tuple[str, ...], reason: str
    ) -> None:
        oldest = modify(a_backup("2026-11-26T02:00")).build()
        backups = [oldest, *history(every("2026-11-27T02:00", 3))]
        policy = BackupPolicy(daily=1, weekly=0, monthly=0)
        plan = plan_retention(backups, policy, at("2026-11-30"), in_use=in_use, force=True)
        assert _reasons(plan.decisions)[oldest.backup_id] == (reason,)
        assert_plan_invariants(backups, policy, at("2026-11-30"), plan, in_use)

    @pytest.mark.parametrize(
        "modify",
        [
            pytest.param(lambda b: b.failed(), id="failed-backup"),
            pytest.param(lambda b: b.replicated(ReplicationStatus.FAILED), id="failed-replica"),
            pytest.param(lambda b: b.verification_failed(), id="failed-verification"),
        ],
    )
    def test_failures_do_not_protect_a_backup(self, modify: Modify) -> None:
        oldest = modify(a_backup("2026-11-26T02:00")).build()
        backups = [oldest, *history(every("2026-11-27T02:00", 3))]
        policy = BackupPolicy(daily=1, weekly=0, monthly=0)
        plan = plan_retention(backups, policy, at("2026-11-30"), force=True)
        assert oldest.backup_id in plan.to_delete

    def test_newest_completed_is_kept_behind_newer_failures(self) -> None:
        backups = [
            a_backup("2026-11-20T02:00").build(),
            *(a_backup(t).failed().build() for t in every("2026-11-21T02:00", 3)),
        ]
        plan = plan_retention(backups, BackupPolicy(), at("2026-11-30"))
        assert _reasons(plan.decisions)["2026-11-20T02:00"] == (
            "kept: daily 2026-11-20",
            "kept: weekly 2026-W47",
            "kept: monthly 2026-11",
            "kept: newest completed",
        )


class TestBrakes:
    """A missing policy and the circuit breaker each stop every deletion."""

    def test_missing_policy_deletes_nothing_and_says_why(self) -> None:
        backups = history(every("2026-01-01T02:00", 30))
        plan = plan_retention(
            backups, None, at("2026-02-01"), policy_error="daily='x': must be a whole number"
        )
        assert plan.to_delete == ()
        assert plan.halted == "no valid policy: daily='x': must be a whole number"
        assert all("kept: no valid policy (deletes nothing)" in d.reasons for d in plan.decisions)

    def test_circuit_breaker_stops_a_plan_that_deletes_more_than_half(self) -> None:
        backups = history(every("2026-11-26T02:00", 4))
        plan = plan_retention(backups, BackupPolicy(daily=1, weekly=0, monthly=0), at("2026-11-30"))
        assert plan.to_delete == ()
        assert plan.halted == (
            "circuit breaker (would delete 3 of 4, 0 expected): more than half of the VM's "
            "backups, so nothing is deleted"
        )
        assert _reasons(plan.decisions)["2026-11-26T02:00"] == (
            "kept: circuit breaker (would delete 3 of 4, 0 expected)",
        )

    def test_deleting_exactly_half_is_allowed(self) -> None:
        backups = history(every("2026-11-27T02:00", 4))
        policy = BackupPolicy(daily=2, weekly=0, monthly=0)
        plan = plan_retention(backups, policy, at("2026-11-30T12:00"))
        assert plan.halted is None
        assert plan.to_delete == ("2026-11-28T02:00", "2026-11-27T02:00")

    def test_expiring_failed_backups_does_not_trip_the_breaker(self) -> None:
        good = history(every("2026-11-29T02:00", 1))
        failed = [
            a_backup(moment, "-f").failed().build() for moment in every("2026-11-25T02:00", 4)
        ]
        plan = plan_retention(good + failed, BackupPolicy(daily=7), at("2026-11-30"))
        assert plan.halted is None
        assert len(plan.to_delete) == 4
        assert plan.to_keep == (good[0].backup_id,)

    def test_force_passes_the_circuit_breaker(self) -> None:
        backups = history(every("2026-11-26T02:00", 4))
        policy = BackupPolicy(daily=1, weekly=0, monthly=0)
        plan = plan_retention(backups, policy, at("2026-11-30"), force=True)
        assert plan.halted is None
        assert len(plan.to_delete) == 3

    def test_planning_daily_for_a_year_never_trips_the_breaker_and_ends_like_one_forced_plan(
        self,
    ) -> None:
        everything = _year_with_gaps()
        policy = BackupPolicy()
        current: list[Backup] = []
        for backup in everything:
            current.append(backup)
            plan = plan_retention(current, policy, backup.taken_at + timedelta(hours=1))
            assert plan.halted is None, plan.halted
            gone = set(plan.to_delete)
            current = [b for b in current if b.backup_id not in gone]
        once = plan_retention(everything, policy, at("2027-01-01"), force=True)
        assert [b.backup_id for b in reversed(current)] == list(once.to_keep)


class TestBadInput:
    """Bad input is refused with a one-line error, never half-planned."""

    @pytest.mark.parametrize(
        ("backups", "now", "message"),
        [
            pytest.param(
                [a_backup("2026-11-29").build(), a_backup("2026-11-28").of_vm("rg~other").build()],
                at("2026-11-30"),
                "one VM's backups; got 2 VMs",
                id="two-vms",
            ),
            pytest.param(
                [a_backup("2026-11-29").build(), a_backup("2026-11-29").build()],
                at("2026-11-30"),
                "backup_id='2026-11-29T00:00': appears more than once",
                id="duplicate-id",
            ),
            pytest.param([], datetime(2026, 11, 30), "naive datetime", id="naive-now"),
        ],
    )
    def test_bad_input_is_refused(self, backups: list[Backup], now: datetime, message: str) -> None:
        with pytest.raises(ValueError, match=message):
            plan_retention(backups, BackupPolicy(), now)
