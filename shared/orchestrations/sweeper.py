"""The sweeper: deletes expired verification and DR-test resources that a crash left behind."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

from shared.orchestrations.cleanup import clean_up_test
from shared.orchestrations.durable import RETRY, Context, Payload


def sweeper(context: Context) -> Generator[Any, Any, Payload]:
    """Clean up, one after the other, every test whose resources' expiry has passed."""
    now = context.current_utc_datetime
    found: Payload = yield context.call_activity_with_retry(
        "list_expired_tests", RETRY, {"now": now.isoformat()}
    )
    swept: dict[str, list[str]] = {}
    left: list[str] = []
    for test in found["expired"]:
        clean = yield from clean_up_test(
            context,
            test["region"],
            test["test_id"],
            None,
            "sweeper",
            resource_group=test.get("resource_group"),
        )
        swept.setdefault(test["region"], []).append(test["test_id"])
        if not clean:
            left.append(test["test_id"])
    return {"swept": swept, "not_clean": left}
