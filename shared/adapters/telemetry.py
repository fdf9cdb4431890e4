"""Telemetry: one structured event per workflow outcome, and the RPO/RTO metrics.

Events are Python log records on the logger `backupdr.events` carrying the log attribute
`microsoft.custom_event.name`. With azure-monitor-opentelemetry (exporter 1.0.0b58 and later
read that attribute) each record lands in Application Insights as a **customEvent**: `name` is
the event name and every field is a string in `customDimensions` (None fields are left out).
The workbook and alert queries in `infra/monitor/` read exactly these names; a test holds them to
`EVENTS` and `METRICS`, so a field renamed here fails the build instead of a silent dashboard.

Metrics are OpenTelemetry histograms, exported as `customMetrics` rows with `vm` and
`target_seconds` in `customDimensions`.

Nothing is switched on at import time: `configure(env)` turns on the exporter when the app runs
with an Application Insights connection string, and is a no-op everywhere else.
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from opentelemetry import metrics
from opentelemetry.metrics import Histogram, MeterProvider
from opentelemetry.sdk.metrics import MeterProvider as SdkMeterProvider
from opentelemetry.sdk.metrics.export import HistogramDataPoint, InMemoryMetricReader

FieldValue = str | int | float | bool | None

EVENTS_LOGGER = "backupdr.events"
# The log attribute the Azure Monitor exporter turns into a customEvent's name.
CUSTOM_EVENT_NAME_ATTRIBUTE = "microsoft.custom_event.name"

EVENTS: Mapping[str, frozenset[str]] = {
    # changed_bytes: written since the previous backup (page-range diff); changed_errors: why a
    # disk's change could not be measured.
    "BackupCompleted": frozenset(
        {
            "vm",
            "backup_id",
            "tier",
            "disks",
            "size_gb",
            "changed_bytes",
            "changed_errors",
            "duration_seconds",
            "manual",
        }
    ),
    # A fleet run's backup measures its change after the run's snapshots (BackupCompleted
    # then has no changed_bytes).
    "BackupChangesMeasured": frozenset({"vm", "backup_id", "changed_bytes", "changed_errors"}),
    # A backup's change far above the VM's own history (measure "changed bytes") or its data
    # reading as random where it did not (measure "entropy"): the pattern of mass encryption.
    "ChurnAnomaly": frozenset({"vm", "backup_id", "measure", "reason"}),
    "BackupFailed": frozenset({"vm", "backup_id", "error"}),
    "ReplicationCompleted": frozenset(
        {"vm", "backup_id", "target_region", "duration_seconds", "lag_seconds"}
    ),
    "ReplicationFailed": frozenset({"vm", "backup_id", "target_region", "error"}),
    # bytes_read: what verification read of the test disks; disks: their tables and file systems.
    "VerificationCompleted": frozenset(
        {
            "vm",
            "backup_id",
            "success",
            "size_matches",
            "duration_seconds",
            "error",
            "bytes_read",
            "disks",
        }
    ),
    "DrTestCompleted": frozenset(
        {
            "vm",
            "backup_id",
            "test_region",
            "success",
            "rto_seconds",
            "rto_target_seconds",
            "restore_seconds",
            "create_vm_seconds",
            "boot_seconds",
            "guest_check_seconds",
            "cleanup_seconds",
            "error",
        }
    ),
    "RetentionApplied": frozenset({"vm", "kept", "deleted", "purged", "halted"}),
    # A policy tag edit that keeps fewer periods: it takes effect only `effective_at`.
    "RetentionReduced": frozenset({"vm", "previous", "policy", "effective_at"}),
    "RetentionFailed": frozenset({"vm", "error"}),
    # One per protected VM per fleet run: what the "missed its backup window" alert reads. A VM
    # whose disks cannot be snapshotted counts as misconfigured, with `not_protectable` saying why.
    "RpoObserved": frozenset(
        {"vm", "rpo_seconds", "target_seconds", "misconfigured", "not_protectable"}
    ),
    # Every audit-log entry, also kept where the app's identity cannot rewrite it (it may only
    # ingest into Application Insights: Monitoring Metrics Publisher).
    "AuditRecorded": frozenset(
        {"at", "action", "resource_id", "result", "vm", "operation", "identity", "detail"}
    ),
}

RPO_METRIC = "backupdr.rpo_seconds"
RTO_METRIC = "backupdr.rto_seconds"
# Metric name -> the attributes (customDimensions) each point carries.
METRICS: Mapping[str, frozenset[str]] = {
    RPO_METRIC: frozenset({"vm", "target_seconds"}),
    RTO_METRIC: frozenset({"vm", "target_seconds"}),
}

_logger = logging.getLogger(EVENTS_LOGGER)
# Events are INFO records; the logger must pass them whatever the root level is.
_logger.setLevel(logging.INFO)
_configured = False
# Set only inside captured_metrics(), so tests read metrics without the global provider.
_provider_override: MeterProvider | None = None


def emit(event: str, **fields: FieldValue) -> None:
    """Log one outcome event; unknown event or field names raise, so a typo fails tests."""
    allowed = EVENTS.get(event)
    if allowed is None:
        raise ValueError(f"unknown telemetry event {event!r}; known: {', '.join(sorted(EVENTS))}")
    unknown = sorted(set(fields) - allowed)
    if unknown:
        raise ValueError(f"event {event} has no field named {', '.join(unknown)}")
    attributes: dict[str, Any] = {k: v for k, v in fields.items() if v is not None}
    attributes[CUSTOM_EVENT_NAME_ATTRIBUTE] = event
    _logger.info(event, extra=attributes)


def record_rpo(vm: str, seconds: float, target_seconds: float) -> None:
    """Record a VM's recovery point age (now minus its newest completed backup)."""
    _record(RPO_METRIC, vm, seconds, target_seconds)


def record_rto(vm: str, seconds: float, target_seconds: float | None) -> None:
    """Record a DR test's measured recovery time."""
    _record(RTO_METRIC, vm, seconds, target_seconds)


def _record(metric: str, vm: str, seconds: float, target_seconds: float | None) -> None:
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"{metric} must be a finite number of seconds >= 0, got {seconds!r}")
    attributes: dict[str, str | float] = {"vm": vm}
    if target_seconds is not None:
        attributes["target_seconds"] = float(target_seconds)
    provider = _provider_override or metrics.get_meter_provider()
    _histograms(provider)[metric].record(seconds, attributes)


@functools.lru_cache(maxsize=4)
def _histograms(provider: MeterProvider) -> dict[str, Histogram]:
    # Keyed by provider: the global proxy provider is replaced once configure() runs.
    meter = provider.get_meter("backupdr")
    return {
        RPO_METRIC: meter.create_histogram(
            RPO_METRIC, unit="s", description="Age of a VM's newest completed backup"
        ),
        RTO_METRIC: meter.create_histogram(
            RTO_METRIC, unit="s", description="Recovery time measured by a DR test"
        ),
    }


def configure(settings_env: Mapping[str, str]) -> None:
    """Send events and metrics to Application Insights when a connection string is set.

    With `APPLICATIONINSIGHTS_AUTHENTICATION_STRING` (`ClientId=...;Authorization=AAD`) the
    exporter signs in with that managed identity, as an App Insights with local auth off
    requires. Tracing and live metrics stay off: the Functions host already records requests,
    and the workbook needs only the events and metrics. Idempotent; a no-op without a string.
    """
    global _configured
    connection = settings_env.get("APPLICATIONINSIGHTS_CONNECTION_STRING", "").strip()
    if not connection or _configured:
        return
    credential = _entra_credential(settings_env.get("APPLICATIONINSIGHTS_AUTHENTICATION_STRING"))
    # Imported here: the distro is heavy and only the deployed app needs it.
    from azure.monitor.opentelemetry import configure_azure_monitor

    configure_azure_monitor(
        connection_string=connection,
        credential=credential,
        logger_name=EVENTS_LOGGER,
        disable_tracing=True,
        enable_live_metrics=False,
    )
    _configured = True


def _entra_credential(auth_string: str | None) -> Any:
    """The managed identity named by an App Insights authentication string, or None."""
    if not auth_string:
        return None
    parts = dict(_key_value(part) for part in auth_string.split(";") if part.strip())
    if parts.get("authorization", "").upper() != "AAD":
        raise ValueError("APPLICATIONINSIGHTS_AUTHENTICATION_STRING must contain Authorization=AAD")
    from azure.identity import ManagedIdentityCredential

    return ManagedIdentityCredential(client_id=parts.get("clientid") or None)


def _key_value(part: str) -> tuple[str, str]:
    key, sep, value = part.partition("=")
    if not sep:
        raise ValueError(
            f"APPLICATIONINSIGHTS_AUTHENTICATION_STRING part {part.strip()!r} is not key=value"
        )
    return key.strip().lower(), value.strip()


class _Collector(logging.Handler):
    def __init__(self, sink: list[dict[str, FieldValue]]) -> None:
        super().__init__(logging.INFO)
        self._sink = sink

    def emit(self, record: logging.LogRecord) -> None:
        event = record.__dict__.get(CUSTOM_EVENT_NAME_ATTRIBUTE)
        if not isinstance(event, str) or event not in EVENTS:
            return
        fields = {k: v for k, v in record.__dict__.items() if k in EVENTS[event]}
        self._sink.append({"event": event, **fields})


@contextmanager
def captured_events() -> Iterator[list[dict[str, FieldValue]]]:
    """Collect the events emitted inside the block as dicts: {"event": name, **fields}.

    They are read off the same log records Application Insights receives, so a test sees what
    the portal will (fields that were None are absent).
    """
    sink: list[dict[str, FieldValue]] = []
    handler = _Collector(sink)
    _logger.addHandler(handler)
    try:
        yield sink
    finally:
        _logger.removeHandler(handler)


class CapturedMetrics:
    """Points recorded inside `captured_metrics()`, read on demand."""

    def __init__(self, reader: InMemoryMetricReader) -> None:
        self._reader = reader

    def points(self, metric: str) -> list[HistogramDataPoint]:
        """Every histogram point of `metric` (one per distinct attribute set)."""
        data = self._reader.get_metrics_data()
        found: list[HistogramDataPoint] = []
        for resource in data.resource_metrics if data else ():
            for scope in resource.scope_metrics:
                for item in scope.metrics:
                    if item.name == metric:
                        found.extend(
                            p for p in item.data.data_points if isinstance(p, HistogramDataPoint)
                        )
        return found


@contextmanager
def captured_metrics() -> Iterator[CapturedMetrics]:
    """Route record_rpo/record_rto to an in-memory reader for the block (tests only)."""
    global _provider_override
    reader = InMemoryMetricReader()
    provider = SdkMeterProvider(metric_readers=[reader])
    _provider_override = provider
    try:
        yield CapturedMetrics(reader)
    finally:
        _provider_override = None
        provider.shutdown()
