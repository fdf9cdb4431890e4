"""The telemetry API the workflows call: validated events, the capture helper, RPO/RTO metrics."""

from __future__ import annotations

import logging

import pytest

from shared.adapters import telemetry
from shared.adapters.telemetry import (
    EVENTS,
    captured_events,
    captured_metrics,
    configure,
    emit,
    record_rpo,
    record_rto,
)


class TestEmit:
    """emit() accepts only catalogued names and logs one record per outcome."""

    def test_emit_records_the_event_with_its_fields(self) -> None:
        with captured_events() as events:
            emit(
                "BackupCompleted",
                vm="rg/web-1",
                backup_id="b1",
                tier="daily",
                disks=2,
                size_gb=64,
                duration_seconds=41.5,
                manual=False,
            )
        assert events == [
            {
                "event": "BackupCompleted",
                "vm": "rg/web-1",
                "backup_id": "b1",
                "tier": "daily",
                "disks": 2,
                "size_gb": 64,
                "duration_seconds": 41.5,
                "manual": False,
            }
        ]

    def test_emit_leaves_out_fields_that_are_none(self) -> None:
        with captured_events() as events:
            emit(
                "VerificationCompleted",
                vm="rg/web-1",
                backup_id="b1",
                success=True,
                size_matches=True,
                duration_seconds=12.0,
                error=None,
            )
        assert "error" not in events[0]

    @pytest.mark.parametrize(
        ("event", "fields", "message"),
        [
            pytest.param(
                "BackupComplete", {"vm": "v"}, "unknown telemetry event", id="typo-in-event"
            ),
            pytest.param(
                "BackupFailed",
                {"vm": "v", "reason": "x"},
                "has no field named reason",
                id="field-of-no-event",
            ),
            pytest.param(
                "RetentionApplied",
                {"vm": "v", "lag_seconds": 1},
                "has no field named lag_seconds",
                id="field-of-another-event",
            ),
        ],
    )
    def test_emit_rejects_names_outside_the_catalogue(
        self, event: str, fields: dict[str, str | int], message: str
    ) -> None:
        with captured_events() as events, pytest.raises(ValueError, match=message):
            emit(event, **fields)
        assert events == []

    def test_emitted_record_carries_the_custom_event_attribute_app_insights_reads(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        with caplog.at_level(logging.INFO, logger=telemetry.EVENTS_LOGGER):
            emit(
                "RpoObserved",
                vm="rg/db-1",
                rpo_seconds=3600.0,
                target_seconds=86400.0,
                misconfigured=False,
            )
        (record,) = caplog.records
        assert record.name == "backupdr.events"
        assert record.__dict__["microsoft.custom_event.name"] == "RpoObserved"
        assert record.__dict__["rpo_seconds"] == 3600.0

    def test_every_event_names_the_vm_it_is_about(self) -> None:
        assert all("vm" in fields for fields in EVENTS.values())


class TestMetrics:
    """record_rpo and record_rto write histograms tagged with the VM and its target."""

    def test_rpo_is_recorded_per_vm_with_its_target(self) -> None:
        with captured_metrics() as captured:
            record_rpo("rg/web-1", 1800.0, 86400.0)
            record_rpo("rg/web-1", 3600.0, 86400.0)
            record_rpo("rg/db-1", 60.0, 3600.0)
            points = {
                dict(p.attributes or {})["vm"]: p for p in captured.points("backupdr.rpo_seconds")
            }
        assert points["rg/web-1"].count == 2
        assert points["rg/web-1"].max == 3600.0
        assert dict(points["rg/web-1"].attributes or {})["target_seconds"] == 86400.0
        assert points["rg/db-1"].sum == 60.0

    def test_rto_without_a_target_has_no_target_dimension(self) -> None:
        with captured_metrics() as captured:
            record_rto("rg/web-1", 540.0, None)
            (point,) = captured.points("backupdr.rto_seconds")
        assert dict(point.attributes or {}) == {"vm": "rg/web-1"}
        assert point.sum == 540.0

    @pytest.mark.parametrize("seconds", [-1.0, float("nan"), float("inf")], ids=str)
    def test_impossible_durations_are_refused(self, seconds: float) -> None:
        with pytest.raises(ValueError, match="finite number of seconds"):
            record_rto("rg/web-1", seconds, 3600.0)


class TestConfigure:
    """configure() is a no-op locally and refuses a malformed Entra authentication string."""

    def test_without_a_connection_string_nothing_is_switched_on(self) -> None:
        before = list(logging.getLogger(telemetry.EVENTS_LOGGER).handlers)
        configure({"APPLICATIONINSIGHTS_AUTHENTICATION_STRING": "ClientId=x;Authorization=AAD"})
        assert logging.getLogger(telemetry.EVENTS_LOGGER).handlers == before
        assert telemetry._configured is False

    @pytest.mark.parametrize(
        ("auth", "message"),
        [
            pytest.param("ClientId=abc", "Authorization=AAD", id="no-authorization"),
            pytest.param("ClientId=abc;AAD", "is not key=value", id="bare-word"),
        ],
    )
    def test_bad_authentication_string_is_a_clear_error(self, auth: str, message: str) -> None:
        env = {
            "APPLICATIONINSIGHTS_CONNECTION_STRING": f"InstrumentationKey={'0' * 8}-0000-0000",
            "APPLICATIONINSIGHTS_AUTHENTICATION_STRING": auth,
        }
        with pytest.raises(ValueError, match=message):
            configure(env)
        assert telemetry._configured is False


class TestApplicationInsightsShape:
    """The installed exporter turns an emitted event into the customEvent the KQL reads."""

    def test_event_becomes_a_custom_event_with_string_dimensions(self) -> None:
        from azure.monitor.opentelemetry.exporter._generated.exporter.models import (
            TelemetryEventData,
        )
        from azure.monitor.opentelemetry.exporter.export.logs._exporter import (
            _convert_log_to_envelope,
        )
        from opentelemetry.instrumentation.logging.handler import LoggingHandler
        from opentelemetry.sdk._logs import LoggerProvider
        from opentelemetry.sdk._logs.export import (
            InMemoryLogRecordExporter,
            SimpleLogRecordProcessor,
        )

        exporter = InMemoryLogRecordExporter()  # type: ignore[no-untyped-call]
        provider = LoggerProvider()
        provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
        handler = LoggingHandler(logger_provider=provider)
        events_logger = logging.getLogger(telemetry.EVENTS_LOGGER)
        events_logger.addHandler(handler)
        try:
            emit(
                "DrTestCompleted",
                vm="rg/web-1",
                backup_id="b1",
                success=False,
                error=None,
                rto_seconds=512.5,
            )
        finally:
            events_logger.removeHandler(handler)
        (record,) = exporter.get_finished_logs()
        envelope = _convert_log_to_envelope(record)
        assert envelope.data is not None
        data = envelope.data.base_data
        assert isinstance(data, TelemetryEventData)
        assert data.name == "DrTestCompleted"
        dimensions = data.properties or {}
        assert {k: dimensions[k] for k in ("vm", "backup_id", "success", "rto_seconds")} == {
            "vm": "rg/web-1",
            "backup_id": "b1",
            "success": "False",
            "rto_seconds": "512.5",
        }
        assert "error" not in dimensions
