"""How the app learns a group's boot time (shared/domain/boot.py), played against boots of a
known length: the reads it asks for never come more than a tenth late, and converge on the end.
"""

from __future__ import annotations

import pytest

from shared.domain.boot import MIN_STEP_SECONDS, BootBounds, learned, next_read
from shared.orchestrations.durable import MIN_WAIT_SECONDS


def _watch(boot: float, bounds: BootBounds | None) -> tuple[float, int, BootBounds | None]:
    """One boot of `boot` seconds watched as boot_and_check does (its poll waits at least
    MIN_WAIT_SECONDS), from a first read 5 s after provisioning: (when it was seen running,
    reads, the bounds after it)."""
    at, reads, starting = MIN_WAIT_SECONDS, 1, None
    while at < boot:
        starting = at
        at += max(next_read(at, bounds), MIN_WAIT_SECONDS)
        reads += 1
    return at, reads, learned(bounds, starting, at)


@pytest.mark.parametrize("boot", [7.0, 45.0, 100.0, 333.3, 1200.0])
def test_boots_of_one_length_are_seen_at_most_a_tenth_late_and_then_on_time(boot: float) -> None:
    seen, _, bounds = _watch(boot, None)
    assert boot <= seen <= max(boot * 1.1, MIN_STEP_SECONDS * 2)
    for _ in range(12):
        seen, reads, bounds = _watch(boot, bounds)
        assert boot <= seen <= max(boot * 1.1, MIN_STEP_SECONDS * 2)
        assert reads <= 3
    assert seen <= boot + max(MIN_STEP_SECONDS, boot * 0.02)


def test_no_read_is_placed_closer_than_the_orchestrations_shortest_wait() -> None:
    assert MIN_STEP_SECONDS == MIN_WAIT_SECONDS


def test_a_slower_boot_than_learned_starts_the_bounds_afresh() -> None:
    _, _, bounds = _watch(45.0, None)
    seen, _, after = _watch(90.0, bounds)
    assert after is not None
    assert 90.0 <= seen <= 99.0
    assert after == BootBounds(after.lower, seen)
    assert after.lower >= 45.0


def test_a_vm_first_seen_running_can_lower_the_bounds_never_raise_them() -> None:
    bounds = BootBounds(40.0, 50.0)
    assert learned(bounds, None, 45.0) == BootBounds(40.0, 45.0)
    assert learned(bounds, None, 120.0) == bounds
    assert learned(bounds, None, 30.0) == BootBounds(0.0, 30.0)
    assert learned(None, None, 30.0) is None
