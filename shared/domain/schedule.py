"""When backups are due: a policy's cron read in UTC, and the scheduled slot each run belongs to.

A slot is the scheduled instant a backup stands for, not the moment it ran. Names and durable
instance ids are built from the slot, so a late, retried or duplicated run of the same slot lands
on the same backup instead of making a second one.
"""

from __future__ import annotations

import functools
import itertools
import re
from datetime import UTC, datetime, timedelta

from croniter import CroniterError, croniter

# Croniter's `R` (random) and `H` (hashed) fields would make a slot depend on more than the cron
# text; a schedule must be the same wherever it is read. Month and day names (MAR, THU) are fine.
_NONDETERMINISTIC = re.compile(r"(?<![a-z])[rh](?![a-z])", re.IGNORECASE)
# Quartz-style extensions croniter reads but the policy's docs do not promise: last (L), nearest
# weekday (W), nth weekday (#) and no specific value (?).
_EXTENSIONS = re.compile(r"[#?]|(?<![a-z])(?:l|w|lw)(?![a-z])", re.IGNORECASE)
# A range whose start is past its end: croniter wraps it around (`5-1` hours is 5..23 and 0..1),
# which is rarely what was meant; the schedule must say the hours it wants.
_RANGE = re.compile(r"([a-z0-9]+)-([a-z0-9]+)", re.IGNORECASE)
_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_NAMES: tuple[dict[str, int], ...] = (
    {},
    {},
    {},
    {name: index + 1 for index, name in enumerate(_MONTHS)},
    {name: index for index, name in enumerate(("sun", "mon", "tue", "wed", "thu", "fri", "sat"))},
)
# The production fleet timer's tick (BACKUPDR_FLEET_BACKUP_SCHEDULE, every 15 minutes): slots
# closer together than that would be due between two ticks, and each tick could take only one.
FLEET_TICK_MINUTES = 15
# How long after its slot a backup may complete before the VM counts as late: a fleet tick to
# start it, snapshot time and the retries of a throttled or failed first try.
RPO_GRACE = timedelta(hours=1)


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
    if _EXTENSIONS.search(cron):
        return "L, W, # and ? are not supported; use plain cron fields"
    reversed_range = _reversed_range(cron.split())
    if reversed_range:
        return f"range {reversed_range} runs backwards; list both parts (e.g. 22-23,0-1)"
    if not croniter.is_valid(cron):
        return "not a valid cron expression"
    try:
        schedule = croniter(cron, datetime(2000, 1, 1, tzinfo=UTC))
        schedule.get_next(datetime)
    except CroniterError:
        return "never fires"
    if _closest_minutes(schedule.expanded[0]) < FLEET_TICK_MINUTES:
        return f"fires more often than every {FLEET_TICK_MINUTES} minutes, the fleet timer's tick"
    return None


def _reversed_range(fields: list[str]) -> str | None:
    for index, field in enumerate(fields):
        for start, end in _RANGE.findall(field):
            first, last = (_NAMES[index].get(v.lower(), v) for v in (start, end))
            if str(first).isdigit() and str(last).isdigit() and int(first) > int(last):
                return f"{start}-{end}"
    return None


def _closest_minutes(minutes: list[int | str]) -> int:
    """The shortest gap between two minutes of the hour a cron fires at, counting the gap
    across the hour (stricter than needed when the next hour does not fire)."""
    if "*" in minutes:
        return 1
    ordered = sorted(int(m) for m in minutes)
    gaps = [b - a for a, b in itertools.pairwise(ordered)]
    return min([*gaps, 60 - ordered[-1] + ordered[0]])


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
    return _slot_before(cron, now.replace(second=0, microsecond=0) + timedelta(minutes=1))


@functools.lru_cache(maxsize=4096)
def _slot_before(cron: str, start: datetime) -> datetime:
    """Cached: every fleet tick asks this for each VM's schedule at the same minute, and for
    the slot before its current one (the RPO target) at a minute that holds until the next slot;
    a croniter costs a millisecond, a tick of a 24-VM page made 57 of them."""
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


def rpo_target_seconds(cron: str, now: datetime) -> float:
    """The age the newest backup may have at `now`: the gap between the two most recent slots
    (the one the newest backup should stand for and the one before), plus `RPO_GRACE` for the
    run to take it.

    The last gap, not the next: a weekday schedule's Monday slot comes after a three-day gap,
    so Monday's target is three days, and a failed Friday is late by Saturday, not by Monday.
    """
    current = slot_at(cron, now)
    previous = slot_at(cron, current - timedelta(minutes=1))
    return (current - previous + RPO_GRACE).total_seconds()
