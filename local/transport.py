"""The SDKs' HTTP transport in the local stack: their waits do not sleep.

The local host moves its virtual clock only while no activity runs (shared/runner/host.py), so
an azure-core wait inside an activity (a retry's Retry-After or backoff, a poller's interval)
cannot let simulated time pass: sleeping it would buy nothing but wall time. What the app does
after the wait (its next request, or the error once retries run out) is unchanged.
"""

from __future__ import annotations

from azure.core.pipeline.transport import RequestsTransport


# azure-core exports RequestsTransport lazily (a module __getattr__), so mypy sees Any.
class NoWaitTransport(RequestsTransport):  # type: ignore[misc]
    """azure-core's requests transport, skipping each wait instead of sleeping it."""

    def sleep(self, duration: float) -> None:
        del duration
