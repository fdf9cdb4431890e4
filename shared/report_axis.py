"""Time-axis ticks for the report's charts: spacing and labels that suit the span on show.

An hour's data gets ticks every few minutes labelled `HH:MM`, a few days' data ticks at midnight
labelled `MM-DD`, a year's data ticks on the first of every other month labelled `YYYY-MM`, so the
labels neither crowd each other out nor leave a chart with one tick. Pure: it reads no clock.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

MAX_TICKS = 7
# Steps that divide a day (or a week) evenly, shortest first, each with its label's format: the
# date joins the time once ticks are far enough apart that a chart may cross midnight unseen.
FIXED_STEPS = (
    *((timedelta(minutes=m), "%H:%M") for m in (1, 5, 10, 15, 30)),
    *((timedelta(hours=h), "%H:%M") for h in (1, 2, 3)),
    *((timedelta(hours=h), "%m-%d %H:%M") for h in (6, 12)),
    *((timedelta(days=d), "%m-%d") for d in (1, 2, 7, 14)),
)
MONTH_STEPS = (1, 2, 3, 6, 12)
MONTH_LABEL = "%Y-%m"
WHOLE_LABEL = "%Y-%m-%d %H:%M"
# Ticks line up on whole steps counted from a Monday midnight, so weekly ticks fall on Mondays.
ORIGIN = datetime(2000, 1, 3, tzinfo=UTC)


def time_ticks(
    start: datetime, end: datetime, max_ticks: int = MAX_TICKS
) -> list[tuple[datetime, str]]:
    """Ticks (moment, label) on round times within [start, end]: the shortest step that gives at
    most `max_ticks` of them. A span of no length gets one tick with its full date and time."""
    return _ticks(start, end, max_ticks)[0]


def label_format(start: datetime, end: datetime, max_ticks: int = MAX_TICKS) -> str:
    """The strftime format of `time_ticks`' labels for this span, for labelling other moments
    in it (each DR test's bar) the same way."""
    return _ticks(start, end, max_ticks)[1]


def _ticks(
    start: datetime, end: datetime, max_ticks: int
) -> tuple[list[tuple[datetime, str]], str]:
    if end < start:
        raise ValueError(
            f"axis ends ({end:%Y-%m-%d %H:%M}) before it starts ({start:%Y-%m-%d %H:%M})"
        )
    if end == start:
        return [(start, f"{start:{WHOLE_LABEL}}")], WHOLE_LABEL
    for step, label in FIXED_STEPS:
        if (end - start) / step <= max_ticks:
            first = ORIGIN + step * -((ORIGIN - start) // step)  # the first whole step >= start
            moments = [first + step * i for i in range((end - first) // step + 1)]
            return [(m, f"{m:{label}}") for m in moments], label
    years = -(-(end.year - start.year + 1) // max_ticks)
    for months in (*MONTH_STEPS, years * 12):
        ticks = _month_ticks(start, end, months)
        if len(ticks) <= max_ticks:
            break
    return ticks, MONTH_LABEL


def _month_ticks(start: datetime, end: datetime, months: int) -> list[tuple[datetime, str]]:
    """The first of every `months`-th month (counted from January) within [start, end]."""
    ticks: list[tuple[datetime, str]] = []
    index = start.year * 12 + start.month - 1
    index -= index % months
    while True:
        moment = datetime(index // 12, index % 12 + 1, 1, tzinfo=start.tzinfo)
        if moment > end:
            return ticks
        if moment >= start:
            ticks.append((moment, f"{moment:{MONTH_LABEL}}"))
        index += months
