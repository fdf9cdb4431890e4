"""Every failure the app reports as an event has an alert rule deployed for it: a failure that
only shows on a dashboard nobody opens is one nobody hears of."""

from __future__ import annotations

import pytest

from shared.adapters.telemetry import EVENTS
from tests.unit.test_infra_telemetry_names import ALERTS_BICEP, MONITOR, names_and_fields

FAILURE_EVENTS = sorted(name for name in EVENTS if name.endswith("Failed"))


def _deployed_alert_events() -> set[str]:
    """The event names the alert queries that alerts.bicep deploys filter on."""
    bicep = ALERTS_BICEP.read_text()
    deployed = [
        path
        for path in sorted(MONITOR.glob("alerts/*.kql"))
        if f"'../monitor/alerts/{path.name}'" in bicep
    ]
    return set().union(*(names_and_fields(path.read_text())[0] for path in deployed))


def test_there_are_failure_events_to_check() -> None:
    assert "BackupFailed" in FAILURE_EVENTS


@pytest.mark.parametrize("event", FAILURE_EVENTS)
def test_a_failure_event_fires_a_deployed_alert(event: str) -> None:
    assert event in _deployed_alert_events()
