"""The sweeper: deletes expired verification and DR-test resources that a crash left behind."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

from shared.orchestrations.durable import RETRY, Context, Payload


def sweeper(context: Context) -> Generator[Any, Any, Payload]:
    now = context.current_utc_datetime
    swept: Payload = yield context.call_activity_with_retry(
        "sweep_expired", RETRY, {"now": now.isoformat()}
    )
    return swept
