"""Retention properties over random histories (hypothesis): what must hold for every plan."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from shared.domain.models import Backup, BackupState, ReplicationStatus, VerificationState
from shared.domain.policy import BackupPolicy
from shared.domain.retention import RetentionPlan, plan_retention
from tests.unit.builders import a_backup, assert_plan_invariants, at

START = at("2026-01-01T00:00")
NOW = at("2027-02-01T00:00")  # a few backups land after it (clock skew)


@st.composite
def backups(draw: st.DrawFn) -> Backup:
    """One backup somewhere in about 13 months, in any state the catalog can hold."""
    minutes = draw(st.integers(0, 400 * 24 * 60 // 30)) * 30
    taken = START + timedelta(minutes=minutes)
    return dataclasses.replace(
        a_backup(taken).build(),
        state=draw(st.sampled_from(BackupState)),
        verification=draw(st.sampled_from(VerificationState)),
        replication_status=draw(st.sampled_from(ReplicationStatus)),
        managed=draw(st.booleans() | st.just(True)),
        hold=draw(st.just(False) | st.booleans()),
    )


@st.composite
def policies(draw: st.DrawFn) -> BackupPolicy:
    count = st.integers(0, 15)
    daily, weekly, monthly = draw(st.tuples(count, count, count).filter(any))
    return BackupPolicy(daily=daily, weekly=weekly, monthly=monthly)


histories = st.lists(backups(), max_size=60, unique_by=lambda b: b.backup_id)


@st.composite
def cases(draw: st.DrawFn) -> tuple[list[Backup], BackupPolicy | None, tuple[str, ...]]:
    history = draw(histories)
    policy = draw(st.none() | policies())
    ids = [b.backup_id for b in history]
    in_use = tuple(draw(st.lists(st.sampled_from(ids), max_size=2))) if ids else ()
    return history, policy, in_use


def _plan(
    history: list[Backup], policy: BackupPolicy | None, in_use: tuple[str, ...], force: bool
) -> RetentionPlan:
    return plan_retention(history, policy, NOW, in_use=in_use, force=force)


def _newest_completed(history: list[Backup], now: datetime) -> str | None:
    done = [b for b in history if b.state is BackupState.COMPLETED and b.taken_at <= now]
    return max(done, key=lambda b: (b.taken_at, b.backup_id)).backup_id if done else None


class TestRetentionProperties:
    """Invariants of `plan_retention`, forced past the circuit breaker or not."""

    @settings(max_examples=300, deadline=None)
    @given(cases(), st.booleans())
    def test_every_plan_keeps_period_firsts_plus_safety_keeps_with_reasons(
        self, case: tuple[list[Backup], BackupPolicy | None, tuple[str, ...]], force: bool
    ) -> None:
        history, policy, in_use = case
        plan = _plan(history, policy, in_use, force)
        assert_plan_invariants(history, policy, NOW, plan, in_use)

    @settings(max_examples=200, deadline=None)
    @given(cases(), st.booleans())
    def test_newest_completed_backup_is_never_deleted(
        self, case: tuple[list[Backup], BackupPolicy | None, tuple[str, ...]], force: bool
    ) -> None:
        history, policy, in_use = case
        newest = _newest_completed(history, NOW)
        assert newest is None or newest not in _plan(history, policy, in_use, force).to_delete

    @settings(max_examples=200, deadline=None)
    @given(cases(), st.booleans())
    def test_unmanaged_backups_are_never_deleted(
        self, case: tuple[list[Backup], BackupPolicy | None, tuple[str, ...]], force: bool
    ) -> None:
        history, policy, in_use = case
        unmanaged = {b.backup_id for b in history if not b.managed}
        assert not unmanaged & set(_plan(history, policy, in_use, force).to_delete)

    @settings(max_examples=200, deadline=None)
    @given(cases(), st.booleans())
    def test_applying_a_plan_then_planning_again_deletes_nothing_more(
        self, case: tuple[list[Backup], BackupPolicy | None, tuple[str, ...]], force: bool
    ) -> None:
        history, policy, in_use = case
        first = _plan(history, policy, in_use, force)
        remaining = [b for b in history if b.backup_id not in set(first.to_delete)]
        again = _plan(remaining, policy, in_use, force=False)
        assert again.to_delete == ()
        assert again.to_keep == first.to_keep
        assert again.halted == first.halted

    @settings(max_examples=200, deadline=None)
    @given(cases())
    def test_unforced_plan_never_deletes_more_than_half_of_the_complete_backups(
        self, case: tuple[list[Backup], BackupPolicy | None, tuple[str, ...]]
    ) -> None:
        history, policy, in_use = case
        plan = _plan(history, policy, in_use, force=False)
        complete = {b.backup_id for b in history if b.state is BackupState.COMPLETED}
        assert 2 * len(complete & set(plan.to_delete)) <= len(complete)
