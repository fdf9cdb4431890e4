"""Schedules in UTC: the slot a moment belongs to, the next one, and whether a VM is due."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta, timezone

import pytest

from shared.domain.schedule import RPO_GRACE, is_due, next_slot, rpo_target_seconds, slot_at
from tests.unit.builders import at

DAILY_2AM = "0 2 * * *"


@pytest.mark.parametrize(
    ("cron", "now", "slot"),
    [
        pytest.param(DAILY_2AM, "2026-11-29T02:00", "2026-11-29T02:00", id="exactly-on-the-slot"),
        pytest.param(DAILY_2AM, "2026-11-29T02:00:59", "2026-11-29T02:00", id="seconds-later"),
        pytest.param(DAILY_2AM, "2026-11-29T01:59:59", "2026-11-28T02:00", id="just-before"),
        pytest.param(DAILY_2AM, "2026-03-01T00:00", "2026-02-28T02:00", id="across-month"),
        pytest.param(DAILY_2AM, "2028-03-01T01:00", "2028-02-29T02:00", id="leap-day"),
        pytest.param("*/15 * * * *", "2026-11-29T10:44", "2026-11-29T10:30", id="every-15-min"),
        pytest.param("0 */6 * * *", "2026-11-29T05:59", "2026-11-29T00:00", id="every-6-hours"),
        pytest.param("0 3 * * sun", "2026-11-29T12:00", "2026-11-29T03:00", id="weekly-sunday"),
        pytest.param("0 3 1 * *", "2026-11-29T12:00", "2026-11-01T03:00", id="monthly"),
    ],
)
def test_slot_at_is_the_latest_scheduled_instant_not_after_now(
    cron: str, now: str, slot: str
) -> None:
    assert slot_at(cron, at(now)) == at(slot)


def test_slot_at_reads_an_aware_non_utc_time_as_the_same_instant() -> None:
    tokyo = timezone(timedelta(hours=9))
    now = datetime(2026, 11, 29, 11, 30, tzinfo=tokyo)  # 02:30 UTC
    assert slot_at(DAILY_2AM, now) == at("2026-11-29T02:00")
    assert slot_at(DAILY_2AM, now).tzinfo is not None


@pytest.mark.parametrize(
    ("after", "expected"),
    [
        pytest.param("2026-11-29T02:00", "2026-11-30T02:00", id="on-a-slot-gives-the-next"),
        pytest.param("2026-11-29T01:00", "2026-11-29T02:00", id="before-a-slot"),
        pytest.param("2026-12-31T03:00", "2027-01-01T02:00", id="across-the-year"),
    ],
)
def test_next_slot_is_strictly_after(after: str, expected: str) -> None:
    assert next_slot(DAILY_2AM, at(after)) == at(expected)


@pytest.mark.parametrize(
    ("last_slot", "now", "due"),
    [
        pytest.param(None, "2026-11-29T02:05", True, id="never-backed-up"),
        pytest.param("2026-11-29T02:00", "2026-11-29T02:05", False, id="slot-already-done"),
        pytest.param("2026-11-28T02:00", "2026-11-29T01:59", False, id="next-slot-not-reached"),
        pytest.param("2026-11-28T02:00", "2026-11-29T02:00", True, id="next-slot-reached"),
        pytest.param("2026-11-01T02:00", "2026-11-29T12:00", True, id="missed-slots-catch-up"),
    ],
)
def test_is_due_when_the_current_slot_has_no_backup(
    last_slot: str | None, now: str, due: bool
) -> None:
    assert is_due(DAILY_2AM, None if last_slot is None else at(last_slot), at(now)) is due


def test_a_vm_that_missed_many_slots_is_due_once_not_once_per_slot() -> None:
    now = at("2026-11-29T12:00")
    assert is_due(DAILY_2AM, at("2026-11-01T02:00"), now)
    caught_up = slot_at(DAILY_2AM, now)
    assert not is_due(DAILY_2AM, caught_up, now + timedelta(hours=1))


@pytest.mark.parametrize(
    ("cron", "now", "seconds"),
    [
        pytest.param(DAILY_2AM, "2026-11-29T12:00", 86_400, id="daily"),
        pytest.param("0 */6 * * *", "2026-11-29T12:00", 21_600, id="six-hourly"),
        # Friday 2026-11-27: the last gap is Thursday -> Friday, a day, though the next is three.
        pytest.param("0 2 * * mon-fri", "2026-11-27T12:00", 86_400, id="friday"),
        pytest.param("0 2 * * mon-fri", "2026-11-28T12:00", 86_400, id="saturday"),
        pytest.param("0 2 * * mon-fri", "2026-11-30T12:00", 3 * 86_400, id="monday"),
        # Monthly on the 1st: on 2026-12-15 the last gap is November's 30 days.
        pytest.param("0 2 1 * *", "2026-12-15T12:00", 30 * 86_400, id="monthly"),
    ],
)
def test_the_rpo_target_is_the_last_gap_between_slots_plus_the_grace(
    cron: str, now: str, seconds: float
) -> None:
    assert rpo_target_seconds(cron, at(now)) == seconds + RPO_GRACE.total_seconds()


def test_a_failed_friday_is_late_by_saturday_and_a_good_friday_is_not_late_on_monday() -> None:
    weekdays = "0 2 * * mon-fri"
    thursday, friday = at("2026-11-26T02:05"), at("2026-11-27T02:05")
    saturday, monday = at("2026-11-28T04:00"), at("2026-11-30T02:30")
    assert (saturday - thursday).total_seconds() > rpo_target_seconds(weekdays, saturday)
    assert (monday - friday).total_seconds() <= rpo_target_seconds(weekdays, monday)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        pytest.param(
            lambda: slot_at(DAILY_2AM, datetime(2026, 11, 29)), "now=2026-11-29T00:00:00: naive"
        ),
        pytest.param(
            lambda: is_due(DAILY_2AM, datetime(2026, 11, 28), at("2026-11-29")),
            r"last_slot=.*naive",
        ),
        pytest.param(
            lambda: next_slot("0 2 * *", at("2026-11-29")),
            r"cron='0 2 \* \*': not a 5-field cron expression",
        ),
    ],
    ids=["naive-now", "naive-last-slot", "bad-cron"],
)
def test_bad_input_is_refused_with_a_clear_error(call: Callable[[], object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()
