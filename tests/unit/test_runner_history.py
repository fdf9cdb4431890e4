"""The local host's quick timestamp read gives the executor what dateutil would."""

from __future__ import annotations

from datetime import UTC, datetime

from dateutil.parser import parse as dateutil_parse
from hypothesis import given
from hypothesis import strategies as st

from shared.runner import history


@given(st.datetimes(min_value=datetime(1970, 1, 1), timezones=st.just(UTC)))
def test_a_stamp_reads_back_as_dateutil_reads_it(moment: datetime) -> None:
    text = history.stamp(moment)
    quick = history.parse_stamp(text)
    assert quick == dateutil_parse(text) == moment
    assert quick.utcoffset() == dateutil_parse(text).utcoffset()


def test_other_shapes_still_go_to_dateutil() -> None:
    for text in ("2026-11-10T02:00:00Z", "2026-11-10T02:00:00.5+01:00", "2026-11-10"):
        assert history.parse_stamp(text) == dateutil_parse(text)


def test_the_executor_reads_history_with_the_quick_parse() -> None:
    from azure.durable_functions.models.history import HistoryEvent

    history.read_stamps_quickly()
    event = HistoryEvent(
        EventType=0, EventId=-1, IsPlayed=False, Timestamp="2026-11-10T02:00:00.250000Z"
    )
    assert event.timestamp == datetime(2026, 11, 10, 2, 0, 0, 250000, tzinfo=UTC)
    assert event.timestamp.tzinfo is UTC  # dateutil's parse would give its own tzutc()
