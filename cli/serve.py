"""`backupdr serve`: the Function App with Azurite and the ARM simulator (local/serve.py)."""

from __future__ import annotations

from typing import Any

import typer

# Registration for cli/main.py: the arguments go to local.serve as they are, --help included.
COMMAND: dict[str, Any] = {
    "add_help_option": False,
    "context_settings": {"allow_extra_args": True, "ignore_unknown_options": True},
}


def serve(ctx: typer.Context) -> None:
    """Run the Function App locally, as `func start` would, with Azurite and the ARM simulator;
    writes the settings the next backupdr command reads. Arguments (--port, --fleet, --start,
    --real-clock, --settings-file, --help) go to it."""
    from local.serve import main as serve_main

    raise typer.Exit(serve_main(list(ctx.args)))
