"""Retention periods (UTC day, ISO week, calendar month) and the tier a new backup gets.

The period keys are shared with retention, so the tier written on a snapshot and the period that
later keeps it are the same calendar arithmetic. ISO weeks start on Monday and belong to the ISO
year (2026-12-31 is in 2026-W53, 2027-01-03 too), which is what `datetime.isocalendar` gives.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime

from shared.domain.models import Tier
from shared.domain.schedule import require_utc

PeriodKey = Callable[[datetime], str]


def day_key(moment: datetime) -> str:
    """`2026-11-29`: the UTC day."""
    return require_utc(moment).strftime("%Y-%m-%d")


def week_key(moment: datetime) -> str:
    """`2026-W48`: the ISO year and week."""
    year, week, _ = require_utc(moment).isocalendar()
    return f"{year}-W{week:02d}"


def month_key(moment: datetime) -> str:
    """`2026-11`: the UTC calendar month."""
    return require_utc(moment).strftime("%Y-%m")


# Longest period first: a backup takes the tier of the longest period it opens.
PERIOD_KEYS: tuple[tuple[Tier, PeriodKey], ...] = (
    (Tier.MONTHLY, month_key),
    (Tier.WEEKLY, week_key),
    (Tier.DAILY, day_key),
)


def periods_start(moment: datetime) -> datetime:
    """The first instant of `moment`'s UTC month: only backups since then decide the tier of
    one taken at `moment`. An ISO week that began the month before does not reach further: a
    backup that is not the month's first has an earlier one this month, in its week when the
    week began last month."""
    return require_utc(moment).replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def tier_for(taken_at: datetime, earlier: Iterable[datetime]) -> Tier:
    """The tier of a backup taken at `taken_at`, given when the VM's completed backups were taken.

    Monthly if it is the VM's first completed backup in its UTC month, else weekly if first in its
    ISO week, else daily. Times in `earlier` at or after `taken_at` are ignored, so passing the
    whole catalog is safe.
    """
    taken_at = require_utc(taken_at, "taken_at")
    prior = [t for t in (require_utc(e, "earlier") for e in earlier) if t < taken_at]
    for tier, key in PERIOD_KEYS:
        if all(key(t) != key(taken_at) for t in prior):
            return tier
    return Tier.DAILY
