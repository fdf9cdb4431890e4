"""Clocks: the system clock in Azure, a virtual one shared by the simulator and the local host."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware UTC."""
        ...


class SettableClock(Clock, Protocol):
    """A clock the local durable host can move to a durable timer's moment (virtual time jumps
    there; a clock on real time waits for it)."""

    def advance_to(self, moment: datetime) -> datetime:
        """Move to `moment` (a moment already past changes nothing) and return the time."""
        ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class VirtualClock:
    """Time that moves only when told to; thread-safe, never goes backwards."""

    def __init__(self, start: datetime) -> None:
        if start.tzinfo is None:
            raise ValueError("VirtualClock needs a timezone-aware start time")
        self._now = start.astimezone(UTC)
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> datetime:
        """Move time forward by `seconds` (>= 0) and return the new time."""
        if seconds < 0:
            raise ValueError("time cannot go backwards")
        with self._lock:
            self._now += timedelta(seconds=seconds)
            return self._now

    def advance_to(self, moment: datetime) -> datetime:
        """Move time forward to `moment`; a moment already past leaves the clock where it is."""
        with self._lock:
            self._now = max(self._now, moment.astimezone(UTC))
            return self._now
