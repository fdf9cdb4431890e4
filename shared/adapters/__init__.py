"""The one adapter per outside system: Azure Resource Manager, Table Storage, telemetry."""
