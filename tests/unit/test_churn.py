"""A VM's measured churn and what a month of it adds to snapshot storage."""

from __future__ import annotations

from datetime import UTC, datetime

from shared.domain.churn import ChurnForecast, forecast

GIB = 1024**3


def _at(day: int, hour: int = 2) -> datetime:
    return datetime(2026, 11, day, hour, tzinfo=UTC)


def test_a_month_adds_thirty_days_of_the_mean_daily_change_at_the_given_price() -> None:
    found = forecast([(_at(1), 2 * GIB), (_at(2), 4 * GIB)], price_per_gib_month=0.05)
    assert found == ChurnForecast(3.0, 90.0, 4.5)


def test_backups_on_the_same_day_add_up_to_that_days_change() -> None:
    found = forecast([(_at(1, 2), GIB), (_at(1, 14), GIB)], price_per_gib_month=1.0)
    assert found is not None
    assert found.changed_gib_per_day == 2.0


def test_nothing_measured_is_no_forecast() -> None:
    assert forecast([], price_per_gib_month=0.05) is None
