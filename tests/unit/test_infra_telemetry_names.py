"""The workbook's and the alerts' queries read only event, metric and field names the code emits."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from shared.adapters.telemetry import EVENTS, METRICS

MONITOR = Path(__file__).resolve().parents[2] / "infra" / "monitor"
ALERTS_BICEP = MONITOR.parent / "app" / "alerts.bicep"

_NAME_EQUALS = re.compile(r'\bname\s*==\s*"([^"]+)"')
_NAME_IN = re.compile(r"\bname\s+in\s*\(([^)]*)\)")
_QUOTED = re.compile(r'"([^"]+)"')
_FIELD = re.compile(r"""customDimensions(?:\.(\w+)|\[\s*["'](\w+)["']\s*\])""")


def names_and_fields(query: str) -> tuple[set[str], set[str]]:
    """The event/metric names a query filters on and the customDimensions fields it reads."""
    names = set(_NAME_EQUALS.findall(query))
    for listed in _NAME_IN.findall(query):
        names.update(_QUOTED.findall(listed))
    fields = {dot or bracket for dot, bracket in _FIELD.findall(query)}
    return names, fields


def problems(query: str) -> list[str]:
    """Why a query would read something the code never emits (empty when it is sound)."""
    catalogue = METRICS if "customMetrics" in query else EVENTS
    names, fields = names_and_fields(query)
    found = [f"unknown name {n!r}" for n in sorted(names - set(catalogue))]
    if not names:
        found.append("filters on no event or metric name")
    emitted = set().union(*(catalogue[n] for n in names if n in catalogue))
    found += [f"field {f!r} is not sent with {sorted(names)}" for f in sorted(fields - emitted)]
    return found


def alert_queries() -> list[object]:
    return [pytest.param(p.read_text(), id=p.stem) for p in sorted(MONITOR.glob("alerts/*.kql"))]


def workbook_query_texts() -> dict[str, str]:
    workbook = json.loads((MONITOR / "fleet-health.workbook.json").read_text())
    return {i["name"]: i["content"]["query"] for i in workbook["items"] if i["type"] == 3}


def workbook_queries() -> list[object]:
    return [pytest.param(query, id=name) for name, query in workbook_query_texts().items()]


@pytest.mark.parametrize("query", alert_queries() + workbook_queries())
def test_query_reads_only_names_the_code_emits(query: str) -> None:
    assert problems(query) == []


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        pytest.param(
            'customEvents | where name == "BackupFailed" | extend x = customDimensions.lag_seconds',
            ["field 'lag_seconds' is not sent with ['BackupFailed']"],
            id="field-of-another-event",
        ),
        pytest.param(
            'customEvents | where name in ("BackupDone") | extend v = customDimensions["vm"]',
            ["unknown name 'BackupDone'", "field 'vm' is not sent with ['BackupDone']"],
            id="misspelt-event",
        ),
        pytest.param(
            'customMetrics | where name == "backupdr.rpo_seconds" | extend customDimensions.tier',
            ["field 'tier' is not sent with ['backupdr.rpo_seconds']"],
            id="metric-dimension-that-is-not-sent",
        ),
        pytest.param("customEvents | take 5", ["filters on no event or metric name"], id="no-name"),
    ],
)
def test_the_check_catches_a_query_that_reads_what_is_never_sent(
    query: str, expected: list[str]
) -> None:
    assert problems(query) == expected


def test_every_alert_query_file_is_deployed_and_its_placeholders_filled() -> None:
    bicep = ALERTS_BICEP.read_text()
    for path in MONITOR.glob("alerts/*.kql"):
        assert f"'../monitor/alerts/{path.name}'" in bicep, path.name
        for placeholder in re.findall(r"__[A-Z_]+__", path.read_text()):
            assert f"'{placeholder}'" in bicep, placeholder


def test_the_workbook_shows_every_event_and_metric() -> None:
    read = names_and_fields("\n".join(workbook_query_texts().values()))[0]
    assert set(EVENTS) | set(METRICS) <= read
