"""The Function App: wiring only. Each capability is a Blueprint in shared/functions."""

import os

import azure.durable_functions as df
import azure.functions as func

from shared.adapters import telemetry
from shared.functions import (
    backup,
    drtest,
    failover,
    http_api,
    purge,
    replication,
    restore,
    sweeper,
    verification,
)


def build_app() -> df.DFApp:
    """A fresh app with every capability (the local host needs one per run: the SDK indexes an
    app's functions only once)."""
    app = df.DFApp(http_auth_level=func.AuthLevel.FUNCTION)
    for capability in (
        backup,
        replication,
        verification,
        drtest,
        restore,
        failover,
        sweeper,
        purge,
        http_api,
    ):
        app.register_functions(capability.bp)
    return app


# The Functions host imports this module once per worker: the one place telemetry starts.
telemetry.configure(os.environ)
app = build_app()
