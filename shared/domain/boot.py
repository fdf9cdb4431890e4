"""When to look again at a restored VM that is still booting, and how long boots take.

A DR test's RTO stops only when the app sees the VM running, so every second between the boot's
end and the read that sees it is RTO the VM did not need. Azure gives no hint for a boot (the
VM PUT's Retry-After covers provisioning only), but the instance view dates the provisioning
(`ProvisioningState/succeeded` has a `time`), so a boot is timed on Azure's clock, not from when
the app happened to look. Each boot the app watches end bounds the group's boot time: seen
starting `seen_starting` and running `running_at` seconds after provisioning, it ended in
between. The bounds of successive boots are intersected, and while they are wide a read at
their middle halves them (one more read), so the reads converge on the boot's end.
"""

from __future__ import annotations

import dataclasses

# The shortest wait between reads: the orchestrations' poll waits at least this long
# (shared/orchestrations/durable.py, MIN_WAIT_SECONDS), so no read can be placed closer.
MIN_STEP_SECONDS = 5.0
# With nothing learned, or past what was, a read comes after a tenth of the time so far: at
# most a tenth late, in a number of reads that grows with the log of the boot, not its length.
CREEP = 0.1
# Bounds closer than this (or than a step) are close enough: read at the upper one.
TOLERANCE = 0.02


@dataclasses.dataclass(frozen=True)
class BootBounds:
    """Boots in a group took longer than `lower` and at most `upper` seconds."""

    lower: float
    upper: float

    def probe(self) -> float | None:
        """Where a read halves the bounds (at least a step before the upper one, which is read
        next if the VM still starts), while they are wider than the tolerance."""
        if self.upper - self.lower <= max(MIN_STEP_SECONDS, TOLERANCE * self.upper):
            return None
        return min((self.lower + self.upper) / 2, self.upper - MIN_STEP_SECONDS)


def next_read(since_provisioned: float, bounds: BootBounds | None) -> float:
    """Seconds until the next read of a VM still starting: at the bounds' middle while they are
    wide, then at the upper bound, past it a tenth of the time so far (at least 5 s)."""
    if bounds is not None:
        for target in (bounds.probe(), bounds.upper):
            if target is not None and since_provisioned < target:
                return target - since_provisioned
    return max(MIN_STEP_SECONDS, CREEP * since_provisioned)


def learned(
    bounds: BootBounds | None, seen_starting: float | None, running_at: float
) -> BootBounds | None:
    """The group's bounds after a VM was seen running `running_at` seconds after provisioning,
    having last been seen starting at `seen_starting` (None: never seen starting).

    A boot that does not fit the bounds (boots vary) starts them afresh from its own."""
    if seen_starting is None:  # it only says the boot took at most `running_at`
        if bounds is None:
            return None
        lower = bounds.lower if bounds.lower < running_at else 0.0
        return BootBounds(lower, min(bounds.upper, running_at))
    watched = BootBounds(seen_starting, running_at)
    if bounds is None:
        return watched
    lower, upper = max(bounds.lower, watched.lower), min(bounds.upper, watched.upper)
    return BootBounds(lower, upper) if lower < upper else watched
