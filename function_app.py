"""The Function App: wiring only. Each capability is a Blueprint in shared/functions."""

import azure.durable_functions as df
import azure.functions as func

from shared.functions import backup, drtest, http_api, replication, sweeper, verification


def build_app() -> df.DFApp:
    """A fresh app with every capability (the local host needs one per run: the SDK indexes an
    app's functions only once)."""
    app = df.DFApp(http_auth_level=func.AuthLevel.FUNCTION)
    for capability in (backup, replication, verification, drtest, sweeper, http_api):
        app.register_functions(capability.bp)
    return app


app = build_app()
