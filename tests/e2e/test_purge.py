"""The purge timer keeps the task hub bounded: finished instances older than the retention window
go, running and recent ones stay.

The app runs on the local host with a one-day window for a day and a bit, with toy orchestrators
for instances in every state (the app's own workflows are never running for a day). The app's
other timers are moved to New Year's Day, outside the run, so the purge is the only one firing.
"""

# azure-functions-durable ships no type information, so its decorators are untyped.
# mypy: disable-error-code="untyped-decorator"

from __future__ import annotations

from collections.abc import Generator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import azure.durable_functions as df
import pytest

from function_app import build_app
from local.azurite import Azurite
from local.stack import FLEETS, ROOT, local_stack
from shared.runner import LocalDurableHost, run_to_completion

START = datetime(2026, 11, 10, tzinfo=UTC)
# local.settings.json.example purges daily at 04:30; with a one-day window the tick a day after
# START purges what was created before START + 04:30.
CUTOFF = START + timedelta(hours=4, minutes=30)
END = CUTOFF + timedelta(days=1, minutes=5)
OTHER_TIMERS = [
    "BACKUPDR_FLEET_BACKUP_SCHEDULE",
    "BACKUPDR_REPLICATE_SCHEDULE",
    "BACKUPDR_VERIFY_SCHEDULE",
    "BACKUPDR_DRTEST_SCHEDULE",
    "BACKUPDR_SWEEPER_SCHEDULE",
]
NEW_YEAR = "0 0 0 1 1 *"
Context = Any  # df.DurableOrchestrationContext, untyped

toys = df.Blueprint()


@toys.orchestration_trigger(context_name="context")
def nap(context: Context) -> Generator[Any, Any, str]:
    yield context.create_timer(context.current_utc_datetime + timedelta(days=context.get_input()))
    return "awake"


@toys.orchestration_trigger(context_name="context")
def doomed(context: Context) -> Generator[Any, Any, str]:
    yield context.create_timer(context.current_utc_datetime)
    raise RuntimeError("doomed")


@pytest.fixture
def host(azurite: Azurite) -> Iterator[LocalDurableHost]:
    """The app with the toys, on the stack's services, clock and settings."""
    settings = {"BACKUPDR_HISTORY_RETENTION_DAYS": "1"} | dict.fromkeys(OTHER_TIMERS, NEW_YEAR)
    with local_stack(
        FLEETS / "tiny.json", start=START, azurite=azurite, table_prefix="purge", settings=settings
    ) as stack:
        app = build_app()
        app.register_functions(toys)
        with LocalDurableHost(
            app, stack.clock, host_json=ROOT / "host.json", settings=stack.settings_env
        ) as running:
            yield running


def test_finished_instances_older_than_the_window_are_purged(host: LocalDurableHost) -> None:
    host.start("nap", 0, "old-completed")
    host.start("doomed", None, "old-failed")
    host.start("nap", 30, "old-terminated")
    host.start("nap", 30, "old-running")
    host.run_until_idle(max_virtual_seconds=1)
    client = df.DurableOrchestrationClient(host.client_binding())
    run_to_completion(client.terminate("old-terminated", "not needed"))

    host.run_timers(until=START + timedelta(hours=12))  # the 04:30 purge: all younger than a day
    old = {"old-completed", "old-failed", "old-terminated", "old-running"}
    assert old <= {s.instance_id for s in host.instances()}
    host.start("nap", 0, "recent-completed")
    host.run_timers(until=END)

    statuses = {s.instance_id: s for s in host.instances()}
    assert statuses["old-running"].runtime_status == "Running"
    assert statuses["recent-completed"].runtime_status == "Completed"
    assert set(statuses) == {"old-running", "recent-completed"}
