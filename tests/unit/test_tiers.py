"""The tier a new backup gets: monthly, weekly or daily by the first backup of its period."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from shared.domain.models import Tier
from shared.domain.tiers import day_key, month_key, periods_start, tier_for, week_key
from tests.unit.builders import at


@pytest.mark.parametrize(
    ("taken", "earlier", "tier"),
    [
        pytest.param("2026-11-29T02:00", [], Tier.MONTHLY, id="first-backup-ever"),
        pytest.param("2026-11-29T14:00", ["2026-11-29T02:00"], Tier.DAILY, id="second-same-day"),
        pytest.param("2026-11-29T02:00", ["2026-11-28T02:00"], Tier.DAILY, id="same-iso-week"),
        pytest.param("2026-11-30T02:00", ["2026-11-29T02:00"], Tier.WEEKLY, id="monday-new-week"),
        pytest.param(
            "2026-12-01T02:00", ["2026-11-30T02:00"], Tier.MONTHLY, id="new-month-mid-week"
        ),
        pytest.param("2026-12-02T02:00", ["2026-12-01T02:00"], Tier.DAILY, id="after-month-start"),
        pytest.param(
            "2026-12-31T02:00", ["2026-12-28T02:00"], Tier.DAILY, id="53-week-year-week-53"
        ),
        pytest.param(
            "2027-01-01T02:00", ["2026-12-31T02:00"], Tier.MONTHLY, id="new-year-inside-w53"
        ),
        pytest.param("2027-01-03T02:00", ["2027-01-01T02:00"], Tier.DAILY, id="w53-ends-sunday"),
        pytest.param("2027-01-04T02:00", ["2027-01-03T02:00"], Tier.WEEKLY, id="2027-w01"),
        pytest.param("2028-02-29T02:00", ["2028-02-28T02:00"], Tier.DAILY, id="leap-day"),
        pytest.param("2028-03-01T02:00", ["2028-02-29T02:00"], Tier.MONTHLY, id="after-leap-day"),
        pytest.param(
            "2026-11-29T02:00",
            ["2026-11-29T03:00", "2026-12-05T02:00"],
            Tier.MONTHLY,
            id="later-ignored",
        ),
        pytest.param(
            "2026-12-01T00:30", ["2026-11-30T23:30"], Tier.MONTHLY, id="utc-midnight-boundary"
        ),
    ],
)
def test_tier_of_a_new_backup(taken: str, earlier: list[str], tier: Tier) -> None:
    assert tier_for(at(taken), [at(e) for e in earlier]) is tier


@pytest.mark.parametrize(
    ("moment", "day", "week", "month"),
    [
        pytest.param("2026-11-29T23:59", "2026-11-29", "2026-W48", "2026-11", id="sunday"),
        pytest.param("2026-12-31T00:00", "2026-12-31", "2026-W53", "2026-12", id="iso-week-53"),
        pytest.param(
            "2027-01-01T00:00", "2027-01-01", "2026-W53", "2027-01", id="week-in-old-year"
        ),
        pytest.param(
            "2024-12-30T00:00", "2024-12-30", "2025-W01", "2024-12", id="week-in-new-year"
        ),
        pytest.param("2028-02-29T12:00", "2028-02-29", "2028-W09", "2028-02", id="leap-day"),
    ],
)
def test_period_keys(moment: str, day: str, week: str, month: str) -> None:
    assert (day_key(at(moment)), week_key(at(moment)), month_key(at(moment))) == (day, week, month)


def test_naive_time_is_refused() -> None:
    with pytest.raises(ValueError, match=r"taken_at=.*naive datetime"):
        tier_for(datetime(2026, 11, 29), [])


@pytest.mark.parametrize("every_hours", [5, 24, 24 * 6, 24 * 13])
def test_backups_before_the_periods_start_never_change_a_tier(every_hours: int) -> None:
    """The backup step reads only the backups since `periods_start` (not a year of history):
    across years, month ends inside ISO weeks and week 53, the tier it gives is the one the
    whole history gives."""
    times = [at("2026-11-20T01:00") + timedelta(hours=every_hours * n) for n in range(150)]
    for index, taken in enumerate(times[1:], start=1):
        window = [t for t in times[:index] if t >= periods_start(taken)]
        assert tier_for(taken, window) is tier_for(taken, times[:index]), taken


def test_periods_start_is_the_month_start() -> None:
    assert periods_start(at("2026-12-02T02:00")) == at("2026-12-01T00:00")
