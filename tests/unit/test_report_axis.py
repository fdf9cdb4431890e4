"""Time-axis ticks suit the span on show: minutes for an hour's data, days for weeks, months
for a year, never more than seven labels and never a label twice."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from shared.report_axis import MAX_TICKS, label_format, time_ticks

START = datetime(2026, 11, 10, 2, 7, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("span", "labels"),
    [
        pytest.param(timedelta(minutes=10), ["02:10", "02:15"], id="ten minutes: every 5 minutes"),
        pytest.param(
            timedelta(hours=1),
            ["02:10", "02:20", "02:30", "02:40", "02:50", "03:00"],
            id="an hour: every 10 minutes",
        ),
        pytest.param(
            timedelta(hours=20),
            ["03:00", "06:00", "09:00", "12:00", "15:00", "18:00", "21:00"],
            id="most of a day: every 3 hours",
        ),
        pytest.param(
            timedelta(days=1),
            ["11-10 06:00", "11-10 12:00", "11-10 18:00", "11-11 00:00"],
            id="a day: every 6 hours, with the date",
        ),
        pytest.param(
            timedelta(days=5),
            ["11-11", "11-12", "11-13", "11-14", "11-15"],
            id="five days: midnights",
        ),
        pytest.param(
            timedelta(days=45),
            ["11-16", "11-23", "11-30", "12-07", "12-14", "12-21"],
            id="45 days: Mondays",
        ),
        pytest.param(
            timedelta(days=365),
            ["2027-01", "2027-03", "2027-05", "2027-07", "2027-09", "2027-11"],
            id="a year: every other month",
        ),
        pytest.param(
            timedelta(days=3 * 365),
            ["2027-01", "2027-07", "2028-01", "2028-07", "2029-01", "2029-07"],
            id="three years: half years",
        ),
    ],
)
def test_ticks_step_and_label_by_the_span(span: timedelta, labels: list[str]) -> None:
    assert [label for _, label in time_ticks(START, START + span)] == labels


@pytest.mark.parametrize(
    "span",
    [timedelta(minutes=m) for m in (1, 7, 59, 61, 181)]
    + [timedelta(hours=h) for h in (5, 13, 23, 25, 49, 170)]
    + [timedelta(days=d) for d in (3, 15, 60, 61, 99, 100, 200, 400, 1000, 20000)],
    ids=str,
)
def test_ticks_are_few_distinct_in_order_and_inside_the_span(span: timedelta) -> None:
    ticks = time_ticks(START, START + span)
    moments = [moment for moment, _ in ticks]
    assert 1 <= len(ticks) <= MAX_TICKS
    assert moments == sorted(set(moments))
    assert all(START <= moment <= START + span for moment in moments)
    assert len({label for _, label in ticks}) == len(ticks), "no label twice"
    fmt = label_format(START, START + span)
    assert all(f"{moment:{fmt}}" == label for moment, label in ticks)


def test_a_span_of_no_length_gets_one_tick_with_date_and_time() -> None:
    assert time_ticks(START, START) == [(START, "2026-11-10 02:07")]
    assert label_format(START, START) == "%Y-%m-%d %H:%M"


def test_an_axis_that_ends_before_it_starts_is_refused() -> None:
    with pytest.raises(ValueError, match=r"ends \(2026-11-10 02:07\) before it starts"):
        time_ticks(START, START - timedelta(seconds=1))
