"""How long a cross-region snapshot copy takes, learned from the copies the app watched.

A copy's PUT answers with a Retry-After that covers creating the replica, not copying it, so a
first read there finds it barely started; a later read's progress dates its end, and one more
read lands there: three reads, where the end could have been read once. A copy's time grows
with the data it moves (the changed blocks of an incremental snapshot), at a rate and with a
fixed part that belong to the pair of regions. Every copy read midway states its whole duration
(its elapsed time over its fraction done), and those samples fit the line the next copy's first
read is placed on. A copy slower than the line is read midway and adds its sample; a faster one
is read a little late, by at most the line's error.

A disk's first copy into a region moves the whole disk (no earlier copy there to add changes
to), so its time follows the disk's size; first copies and later ones keep lines of their own.
While a pair of regions has no line yet, one copy probes it (read midway, so its progress dates
it) and the copies started beside it wait for that line instead of reading midway each.
"""

from __future__ import annotations

import dataclasses
import itertools
import statistics
from collections.abc import Sequence

# Samples kept per pair of regions: enough to fit through noise, few enough to follow a change.
SAMPLES = 12
# A first read comes this much after the expected end, so a copy just as long is seen done.
MARGIN = 0.02
MIN_MARGIN_SECONDS = 5.0
# A sample this many times its line's median is an outlier, not the pace (see `fitted`).
OUTLIER = 1.5


@dataclasses.dataclass(frozen=True)
class CopySample:
    """A copy of `gib` GiB took (or, by its progress, will take) `seconds`: `first`, a disk's
    first copy into the region, whose `gib` is the disk's size; else its changed GiB."""

    gib: float
    seconds: float
    first: bool = False


@dataclasses.dataclass(frozen=True)
class CopyRate:
    """Copies into a region take `base` seconds plus `per_gib` for every changed GiB."""

    base: float
    per_gib: float

    def expected(self, gib: float) -> float:
        return self.base + self.per_gib * gib

    def first_read(self, gib: float) -> float:
        """Seconds after the start at which a copy of `gib` GiB is read the first time."""
        return past_end(self.expected(gib))


def past_end(seconds: float) -> float:
    """When to read a copy expected to take `seconds`: a margin after, so it is seen done."""
    return seconds + max(MIN_MARGIN_SECONDS, MARGIN * seconds)


def fitted(samples: Sequence[CopySample]) -> CopyRate | None:
    """The line through the samples, scaled up until none lies above it (a read on the line
    itself would find every slower copy midway), or None with no samples.

    The line is Theil-Sen's (the median of the slopes between pairs of samples, negative ones
    read as flat, and the median intercept), so one odd sample cannot tilt it. A sample far
    above it (a copy that moved more than its change, its predecessor never copied there) is
    left out of the scale too: it would make every later read late, where it costs one read.
    """
    if not samples:
        return None
    slopes = [
        (b.seconds - a.seconds) / (b.gib - a.gib)
        for a, b in itertools.combinations(samples, 2)
        if b.gib != a.gib
    ]
    per_gib = max(0.0, statistics.median(slopes)) if slopes else 0.0
    base = max(0.0, statistics.median(s.seconds - per_gib * s.gib for s in samples))
    line = CopyRate(base, per_gib)
    ratios = [s.seconds / max(line.expected(s.gib), 1.0) for s in samples]
    typical = statistics.median(ratios)
    scale = max(r for r in ratios if r <= OUTLIER * typical)
    return CopyRate(base * scale, per_gib * scale)


def whole_duration(elapsed: float, percent: float | None) -> float | None:
    """A copy's whole duration from its progress (`percent` done after `elapsed` seconds), or
    None when its progress says nothing (not started, or already done)."""
    if percent is None or not 0 < percent < 100 or elapsed <= 0:
        return None
    return elapsed * 100 / percent
