"""Pacing a fleet run to ARM's per-subscription token buckets, on an orchestration's clock.

ARM throttles each subscription with token buckets: writes hold 200 tokens refilled 10 a second,
reads 250 refilled 25 a second ("Understand how Azure Resource Manager throttles requests", the
token bucket algorithm section). A request past an empty bucket is refused with 429 (and so is
every other client's in the subscription), so a run that sends faster than the refill only buys
retries. The fleet run keeps its own model of both buckets (full when it starts, as after a quiet
spell), takes what a wave of backups will send before it starts the wave, and waits on a durable
timer when a bucket is short. Azure's `x-ms-ratelimit-remaining-subscription-writes`, when lower
than the model (other writers share the subscription), corrects it.

What each backup writes after its snapshots (its change's read access, its copy's PUTs, its
retention's tags and deletes) waits for the run: each page holds the bucket for its snapshots
(`writes_held`), and the follow-ups then reserve, one after another, the refill of what they
send (`refill_time`; the catalog's `reserve_writes`), so together they never outrun it. A run
that outlasts its tick keeps the bucket: the next tick's run lists its pages after the hold.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta
from typing import Any

WRITE_BURST = 200.0
WRITE_REFILL_PER_SECOND = 10.0
READ_BURST = 250.0
READ_REFILL_PER_SECOND = 25.0
# How long after its writes are paid for a page still holds the bucket: its last wave's
# snapshots complete (10 s in the simulator), its backups record and retain, and the next
# page is listed (which holds it again).
HOLD_MARGIN = timedelta(seconds=60)


@dataclasses.dataclass(frozen=True)
class Bucket:
    """Tokens left at `at`; below zero is a debt the refill pays first."""

    tokens: float
    at: datetime
    burst: float
    refill: float

    def at_time(self, now: datetime) -> Bucket:
        elapsed = max((now - self.at).total_seconds(), 0.0)
        tokens = min(self.burst, self.tokens + elapsed * self.refill)
        return dataclasses.replace(self, tokens=tokens, at=max(now, self.at))

    def wait_for(self, cost: int, now: datetime) -> timedelta:
        """How long until `cost` tokens are there (a burst's worth when more are asked)."""
        short = min(float(cost), self.burst) - self.at_time(now).tokens
        return timedelta(seconds=max(short, 0.0) / self.refill)

    def take(self, cost: int, now: datetime) -> Bucket:
        current = self.at_time(now)
        return dataclasses.replace(current, tokens=current.tokens - cost)

    def observed(self, remaining: int, seen_at: datetime, now: datetime) -> Bucket:
        """Trust Azure's count of tokens left at `seen_at`, refilled since, when it is lower
        than the model's."""
        elapsed = max((now - seen_at).total_seconds(), 0.0)
        told = min(self.burst, remaining + elapsed * self.refill)
        current = self.at_time(now)
        return dataclasses.replace(current, tokens=min(current.tokens, told))

    def largest_start(self, costs: list[int], now: datetime) -> int:
        """How many of the items (each costing its tokens), in order, the bucket pays for now;
        at least one, so an item dearer than a burst is never held forever."""
        tokens = self.at_time(now).tokens
        count = 0
        for cost in costs:
            if count and cost > tokens:
                break
            tokens -= cost
            count += 1
        return count

    def to_payload(self) -> dict[str, Any]:
        return {"tokens": self.tokens, "at": self.at.isoformat()}


def writes_held(writes: int) -> timedelta:
    """How long a page whose backups send `writes` snapshot PUTs holds the write bucket, from
    when it may start: a copy started meanwhile would take tokens its snapshots are paced by
    (a 1,000-VM run with replication took 1.17x its bound so), and a backup's RPO comes
    before its copy's start."""
    return refill_time(writes) + HOLD_MARGIN


def refill_time(writes: int) -> timedelta:
    """How long the write bucket takes to refill `writes` tokens."""
    return timedelta(seconds=writes / WRITE_REFILL_PER_SECOND)


def writes(now: datetime, payload: dict[str, Any] | None = None) -> Bucket:
    """The subscription's write bucket: as an earlier execution left it, else full."""
    return _bucket(WRITE_BURST, WRITE_REFILL_PER_SECOND, now, payload)


def reads(now: datetime, payload: dict[str, Any] | None = None) -> Bucket:
    """The subscription's read bucket: as an earlier execution left it, else full."""
    return _bucket(READ_BURST, READ_REFILL_PER_SECOND, now, payload)


def _bucket(burst: float, refill: float, now: datetime, payload: dict[str, Any] | None) -> Bucket:
    if not payload:
        return Bucket(burst, now, burst, refill)
    return Bucket(float(payload["tokens"]), datetime.fromisoformat(payload["at"]), burst, refill)
