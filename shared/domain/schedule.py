"""When backups are due: a policy's cron read in UTC, and the scheduled slot each run belongs to.

A slot is the scheduled instant a backup stands for, not the moment it ran. Names and durable
instance ids are built from the slot, so a late, retried or duplicated run of the same slot lands
on the same backup instead of making a second one.
"""

from __future__ import annotations

import functools
import re
from datetime import UTC, datetime, timedelta

from croniter import CroniterError, croniter

# Croniter's `R` (random) and `H` (hashed) fields would make a slot depend on more than the cron
# text; a schedule must be the same wherever it is read. Month and day names (MAR, THU) are fine.
_NONDETERMINISTIC = re.compile(r"(?<![a-z])[rh](?![a-z])", re.IGNORECASE)


def require_utc(value: datetime, what: str = "time") -> datetime:
    """`value` in UTC; naive datetimes are refused because their zone is a guess."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(
            f"{what}={value.isoformat()}: naive datetime; pass a timezone-aware UTC one"
        )
    return value.astimezone(UTC)


@functools.lru_cache(maxsize=256)
def cron_problem(cron: str) -> str | None:
    """Why `cron` cannot be a schedule (a short phrase), or None when it can (cached: pure)."""
    if len(cron.split()) != 5:
        return "not a 5-field cron expression"
    if _NONDETERMINISTIC.search(cron):
        return "random (R) and hashed (H) fields are not allowed"
    if not croniter.is_valid(cron):
        return "not a valid cron expression"
    try:
        croniter(cron, datetime(2000, 1, 1, tzinfo=UTC)).get_next(datetime)
    except CroniterError:
        return "never fires"
    return None


def _iterator(cron: str, start: datetime) -> croniter:
    problem = cron_problem(cron)
    if problem:
        raise ValueError(f"cron={cron!r}: {problem}")
    return croniter(cron, start)


def slot_at(cron: str, now: datetime) -> datetime:
    """The latest scheduled instant at or before `now`."""
    now = require_utc(now, "now")
    # Cron fires on whole minutes; croniter's get_prev is strictly before its start, so start one
    # minute past the minute `now` falls in.
    start = now.replace(second=0, microsecond=0) + timedelta(minutes=1)
    slot: datetime = _iterator(cron, start).get_prev(datetime)
    return slot.astimezone(UTC)


def next_slot(cron: str, after: datetime) -> datetime:
    """The first scheduled instant strictly after `after`."""
    after = require_utc(after, "after")
    slot: datetime = _iterator(cron, after).get_next(datetime)
    return slot.astimezone(UTC)


def is_due(cron: str, last_slot: datetime | None, now: datetime) -> bool:
    """True when the slot at `now` has no backup yet.

    Only the latest slot counts, so a VM that missed several slots (off, or the app was down) is
    due once to catch up, not once per missed slot.
    """
    current = slot_at(cron, now)
    return last_slot is None or current > require_utc(last_slot, "last_slot")


def interval_seconds(cron: str, around: datetime) -> float:
    """Seconds between the slot at `around` and the next one: the RPO a schedule promises there."""
    current = slot_at(cron, around)
    return (next_slot(cron, current) - current).total_seconds()
