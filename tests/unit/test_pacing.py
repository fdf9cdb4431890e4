"""The fleet run's model of ARM's token buckets (shared/domain/pacing.py), checked against the
simulator's own buckets (local/armsim/throttle.py): what the model lets through, ARM grants."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from local.armsim.throttle import RequestClass, Throttle
from shared.domain import pacing
from shared.domain.pacing import WRITE_BURST, WRITE_REFILL_PER_SECOND

T0 = datetime(2026, 11, 10, 2, tzinfo=UTC)
SUBSCRIPTION = "00000000-0000-0000-0000-000000000001"


def test_a_full_bucket_pays_a_burst_at_once_and_then_the_refill_rate() -> None:
    bucket = pacing.writes(T0)
    assert bucket.wait_for(int(WRITE_BURST), T0) == timedelta(0)

    spent = bucket.take(int(WRITE_BURST), T0)
    assert spent.wait_for(20, T0) == timedelta(seconds=20 / WRITE_REFILL_PER_SECOND)
    assert spent.wait_for(20, T0 + timedelta(seconds=2)) == timedelta(0)


def test_the_refill_stops_at_the_burst() -> None:
    later = pacing.writes(T0).take(50, T0).at_time(T0 + timedelta(hours=1))
    assert later.tokens == WRITE_BURST


def test_a_wave_takes_the_items_the_bucket_pays_for_and_always_one() -> None:
    bucket = pacing.writes(T0).take(int(WRITE_BURST) - 5, T0)
    assert bucket.largest_start([2, 2, 2, 2], T0) == 2
    assert bucket.largest_start([9, 1], T0) == 1  # dearer than what is left: alone
    assert bucket.wait_for(9, T0) == timedelta(seconds=4 / WRITE_REFILL_PER_SECOND)


def test_a_request_larger_than_the_burst_waits_only_for_a_full_bucket() -> None:
    bucket = pacing.writes(T0).take(int(WRITE_BURST), T0)
    assert bucket.wait_for(10_000, T0) == timedelta(seconds=WRITE_BURST / WRITE_REFILL_PER_SECOND)


def test_azure_s_lower_count_of_tokens_left_wins_and_a_higher_one_does_not() -> None:
    bucket = pacing.writes(T0)
    assert bucket.observed(12, T0, T0).tokens == 12
    assert bucket.take(190, T0).observed(150, T0, T0).tokens == 10


def test_a_count_seen_earlier_counts_with_the_refill_since() -> None:
    later = T0 + timedelta(seconds=3)
    told = pacing.writes(T0).observed(0, T0, later)
    assert told.tokens == 3 * WRITE_REFILL_PER_SECOND
    assert told.at == later


def test_the_bucket_survives_the_orchestration_input() -> None:
    bucket = pacing.writes(T0).take(37, T0)
    assert pacing.writes(T0, bucket.to_payload()) == bucket
    assert pacing.writes(T0, None) == pacing.writes(T0)


@pytest.mark.parametrize("kind", ["write", "read"])
def test_paced_by_the_model_arm_grants_every_request(kind: RequestClass) -> None:
    """A minute of waves as the fleet run starts them (wait, then take what is paid for): the
    simulator's bucket refuses none, and the model keeps it busy (within a wave of the rate)."""
    bucket = pacing.writes(T0) if kind == "write" else pacing.reads(T0)
    arm, now, sent = Throttle(), T0, 0
    while now < T0 + timedelta(minutes=1):
        now += bucket.wait_for(30, now)
        wave = bucket.largest_start([2] * 15, now)
        bucket = bucket.take(2 * wave, now)
        for _ in range(2 * wave):
            _, retry_after = arm.take(SUBSCRIPTION, kind, now)
            assert retry_after == 0
        sent += 2 * wave
        now += timedelta(seconds=1)
    possible = bucket.burst + bucket.refill * (now - T0).total_seconds()
    assert sent >= possible - 30
