"""ARM throttling: token buckets per subscription and request class, on the virtual clock."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

RequestClass = Literal["read", "write", "delete"]

# ARM's documented per-subscription limits: (burst, refill per second).
LIMITS: dict[RequestClass, tuple[float, float]] = {
    "read": (250.0, 25.0),
    "write": (200.0, 10.0),
    "delete": (200.0, 10.0),
}
HEADER_NAMES: dict[RequestClass, str] = {
    "read": "x-ms-ratelimit-remaining-subscription-reads",
    "write": "x-ms-ratelimit-remaining-subscription-writes",
    "delete": "x-ms-ratelimit-remaining-subscription-deletes",
}


@dataclass
class TokenBucket:
    """`capacity` tokens at most, refilled at `rate` per (virtual) second."""

    capacity: float
    rate: float
    tokens: float
    updated: datetime

    def _refill(self, now: datetime) -> None:
        elapsed = max(0.0, (now - self.updated).total_seconds())
        self.tokens = min(self.capacity, self.tokens + elapsed * self.rate)
        self.updated = max(self.updated, now)

    def take(self, now: datetime) -> float:
        """Take one token: 0.0 when granted, else the seconds until one is available."""
        self._refill(now)
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.rate

    def remaining(self) -> int:
        return int(self.tokens)


class Throttle:
    """One bucket per (subscription, request class); not thread-safe (the simulator locks)."""

    def __init__(self) -> None:
        self._buckets: dict[tuple[str, RequestClass], TokenBucket] = {}

    def _bucket(self, subscription: str, kind: RequestClass, now: datetime) -> TokenBucket:
        key = (subscription.lower(), kind)
        bucket = self._buckets.get(key)
        if bucket is None:
            capacity, rate = LIMITS[kind]
            bucket = self._buckets[key] = TokenBucket(capacity, rate, capacity, now)
        return bucket

    def take(self, subscription: str, kind: RequestClass, now: datetime) -> tuple[int, int]:
        """Spend one request: (remaining tokens, Retry-After seconds; 0 means allowed)."""
        bucket = self._bucket(subscription, kind, now)
        wait = bucket.take(now)
        return bucket.remaining(), (math.ceil(wait) if wait > 0 else 0)
