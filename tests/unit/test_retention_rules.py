"""Retention rules from "Nothing is lost": what counts, which backup stands for a period, manual
backups' own dates, and a circuit breaker that stops the unexpected without ratcheting shut."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta

from shared.domain.models import Backup
from shared.domain.policy import BackupPolicy
from shared.domain.retention import (
    Superseded,
    effective_policy,
    expected_deletions,
    plan_retention,
    shortens,
)
from tests.unit.builders import a_backup, assert_plan_invariants, at, every, history

DAILY_7 = BackupPolicy(daily=7, weekly=0, monthly=0)
WINDOW = timedelta(days=14)


def _ids(times: list[datetime]) -> list[str]:
    return [t.strftime("%Y-%m-%dT%H:%M") for t in times]


class TestWhatCounts:
    def test_snapshots_the_app_did_not_make_are_kept_and_take_no_place(self) -> None:
        """Foreign backups (no managed-by) in the newest days neither stand for those days nor
        count as "newest": the app's own older backups keep their places."""
        own = history(every("2026-11-01T02:00", 10))
        foreign = [
            dataclasses.replace(a_backup(t, "-x").unmanaged().build(), slot=t)
            for t in every("2026-11-11T02:00", 5)
        ]
        plan = plan_retention([*own, *foreign], DAILY_7, at("2026-11-16"))
        assert set(plan.to_keep) == {b.backup_id for b in foreign} | {b.backup_id for b in own[-7:]}
        assert all(
            "not created by backupdr" in " ".join(d.reasons)
            for d in plan.decisions
            if d.backup_id.endswith("-x")
        )

    def test_foreign_backups_do_not_dilute_the_circuit_breaker(self) -> None:
        own = history(every("2026-11-01T02:00", 4))
        foreign = [a_backup(t, "-x").unmanaged().build() for t in every("2026-10-01T02:00", 20)]
        plan = plan_retention(
            [*own, *foreign], BackupPolicy(daily=1, weekly=0, monthly=0), at("2026-11-05")
        )
        assert plan.halted is not None
        assert "would delete 3 of 4" in plan.halted

    def test_a_period_keeps_its_first_verified_backup_not_an_unrestorable_first(self) -> None:
        day = [
            a_backup("2026-11-20T02:00").verification_failed().build(),
            a_backup("2026-11-20T08:00").build(),
            a_backup("2026-11-20T14:00").verified().build(),
            a_backup("2026-11-20T20:00").verified().build(),
        ]
        newer = a_backup("2026-11-21T02:00").build()
        plan = plan_retention(
            [*day, newer], BackupPolicy(daily=2, weekly=0, monthly=0), at("2026-11-22"), force=True
        )
        assert (
            "kept: daily 2026-11-20"
            in {d.backup_id: d.reasons for d in plan.decisions}["2026-11-20T14:00"]
        )
        assert "2026-11-20T02:00" in plan.to_delete  # failed verification: never the stand-in

    def test_without_a_verified_backup_the_period_keeps_its_first(self) -> None:
        day = [a_backup("2026-11-20T02:00").build(), a_backup("2026-11-20T08:00").build()]
        plan = plan_retention(
            day, BackupPolicy(daily=1, weekly=0, monthly=0), at("2026-11-21"), force=True
        )
        assert "kept: daily 2026-11-20" in plan.decisions[-1].reasons


class TestManualBackups:
    def test_a_manual_backup_is_kept_until_its_date_and_takes_no_period(self) -> None:
        scheduled = history(every("2026-11-01T02:00", 10))
        manual = a_backup("2026-11-10T09:00", "-m").manual(at("2026-11-20T09:00")).build()
        backups = [*scheduled, manual]
        plan = plan_retention(
            backups, BackupPolicy(daily=1, weekly=0, monthly=0), at("2026-11-11"), force=True
        )
        reasons = {d.backup_id: d.reasons for d in plan.decisions}
        assert reasons[manual.backup_id] == ("kept: manual until 2026-11-20 09:00",)
        assert "kept: daily 2026-11-10" in reasons["2026-11-10T02:00"]
        later = plan_retention(
            backups, BackupPolicy(daily=1, weekly=0, monthly=0), at("2026-11-20T09:00"), force=True
        )
        assert manual.backup_id in later.to_delete

    def test_an_older_manual_row_without_a_date_keeps_thirty_days(self) -> None:
        manual = a_backup("2026-11-01T09:00", "-m").manual().build()
        own = history(every("2026-11-25T02:00", 3))
        policy = BackupPolicy(daily=1, weekly=0, monthly=0)
        assert manual.backup_id in plan_retention([*own, manual], policy, at("2026-11-30")).to_keep
        assert (
            manual.backup_id
            in plan_retention([*own, manual], policy, at("2026-12-01T09:00"), force=True).to_delete
        )


class TestFailedSlots:
    def test_only_the_newest_failed_slot_waits_for_its_retry(self) -> None:
        good = history(every("2026-11-01T02:00", 3))
        failed = [a_backup(t).failed().build() for t in every("2026-11-04T02:00", 4)]
        plan = plan_retention([*good, *failed], DAILY_7, at("2026-11-08"))
        assert set(plan.to_delete) == {b.backup_id for b in failed[:-1]}
        assert plan.halted is None


class TestCreating:
    def test_a_backup_being_created_is_kept_for_a_day_or_while_it_is_the_newest_slot(
        self,
    ) -> None:
        stuck = a_backup("2026-11-26T02:00").creating().build()
        recent = a_backup("2026-11-29T20:00").creating().build()
        backups = [stuck, *history(every("2026-11-27T02:00", 3)), recent]
        plan = plan_retention(backups, DAILY_7, at("2026-11-30"))
        reasons = {d.backup_id: d.reasons for d in plan.decisions}
        assert reasons[recent.backup_id] == ("kept: still being created",)
        assert reasons[stuck.backup_id] == (
            "expired: abandoned while being created (partial snapshots)",
        )
        alone = plan_retention([stuck], DAILY_7, at("2026-11-30"))
        assert alone.to_keep == (stuck.backup_id,)  # the newest slot: its workflow may resume


class TestPolicyChanges:
    def test_a_shortened_policy_waits_out_the_window(self) -> None:
        old = BackupPolicy()
        cut = BackupPolicy(daily=7, weekly=0, monthly=0)
        assert shortens(cut, old)
        assert not shortens(old, cut)
        changed = at("2026-06-01")
        history_ = [Superseded(old, changed)]
        assert effective_policy(cut, history_, changed + WINDOW - timedelta(hours=1), WINDOW) == (
            dataclasses.replace(cut, weekly=4, monthly=12)
        )
        assert effective_policy(cut, history_, changed + WINDOW, WINDOW) == cut

    def test_a_lengthened_policy_applies_at_once(self) -> None:
        longer = BackupPolicy(daily=30)
        assert (
            effective_policy(
                longer, [Superseded(BackupPolicy(), at("2026-06-01"))], at("2026-06-02"), WINDOW
            )
            == longer
        )


def _simulate(
    days: int,
    policy_on: dict[int, BackupPolicy],
    skipped: set[int] = frozenset(),  # type: ignore[assignment]
) -> tuple[list[Backup], int, list[int]]:
    """A VM backed up daily for `days`, retention run after each backup as the app runs it
    (breaker expectations from the last applied run, shortenings after the window); returns the
    backups left, the halted runs and the days deletion ran."""
    start = at("2026-01-01T02:00")
    backups: list[Backup] = []
    current = policy_on[0]
    superseded: list[Superseded] = []
    applied_at: datetime | None = None
    applied: BackupPolicy | None = None
    halted = 0
    ran: list[int] = []
    for day in range(days):
        now = start + timedelta(days=day)
        backups = [*backups, *history([now])]
        if day in policy_on and policy_on[day] != current:
            superseded.append(Superseded(current, now))
            current = policy_on[day]
        if day in skipped:
            continue
        effective = effective_policy(current, superseded, now, WINDOW)
        expected = expected_deletions(backups, effective, applied, applied_at, now)
        plan = plan_retention(backups, effective, now, expected=expected)
        assert_plan_invariants(backups, effective, now, plan)
        if plan.halted:
            halted += 1
            continue
        applied_at, applied = now, effective
        gone = set(plan.to_delete)
        if gone:
            ran.append(day)
        backups = [b for b in backups if b.backup_id not in gone]
    return backups, halted, ran


class TestCircuitBreaker:
    def test_cutting_7_4_12_to_7_0_0_converges_after_the_window(self) -> None:
        """The issue's ratchet: the old breaker halted 365 of 365 runs after this cut."""
        backups, halted, _ = _simulate(365, {0: BackupPolicy(), 200: DAILY_7})
        assert halted == 0
        assert len(backups) == 7

    def test_ten_days_without_retention_then_converges(self) -> None:
        backups, halted, ran = _simulate(60, {0: DAILY_7}, skipped=set(range(30, 40)))
        assert halted == 0
        assert 40 in ran
        assert len(backups) == 7

    def test_an_unexpected_mass_deletion_stops(self) -> None:
        """One new backup since the last run, and a policy cut retention has no record of (its
        state lost, the cut never seen to wait out its window) that would expire nine of
        eleven: halted, nothing deleted."""
        backups = history(every("2026-11-01T02:00", 11))
        last_run = at("2026-11-10T03:00")
        policy = BackupPolicy(daily=2, weekly=0, monthly=0)
        expected = expected_deletions(backups, policy, None, last_run, at("2026-11-11T03:00"))
        plan = plan_retention(backups, policy, at("2026-11-11T03:00"), expected=expected)
        assert plan.halted is not None
        assert plan.to_delete == ()
        assert "would delete 9 of 11" in plan.halted

    def test_no_record_of_a_last_run_expects_nothing(self) -> None:
        backups = history(every("2026-11-01T02:00", 11))
        assert expected_deletions(backups, DAILY_7, None, None, at("2026-11-12")) == 0
