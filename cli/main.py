"""The `backupdr` command line: the operator's view of the backup/DR app.

Global options pick the target (real Azure, or `--simulator URL`) and the output (`-o json`).
Exit codes: 0 ok, 1 an operation or check failed, 2 bad input (see cli/errors.py).
"""

from __future__ import annotations

from typing import Annotated

import typer

from cli import backup, dr, retention, serve, status
from cli.context import SETTINGS_HELP, Format, Options, options
from cli.errors import BadInput, OneLineErrors

app = typer.Typer(
    cls=OneLineErrors,
    name="backupdr",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Azure VM backup and disaster recovery.",
    epilog=SETTINGS_HELP,
)
backup.app.command("plan-retention")(retention.plan)
backup.app.command("hold")(retention.hold)
backup.app.command("release")(retention.release)
backup.app.command("undelete")(retention.undelete_backup)
app.add_typer(backup.app, name="backup")
app.add_typer(dr.app, name="dr")
app.command("status")(status.status)
app.command("report")(status.report)
app.command("serve", **serve.COMMAND)(serve.serve)


@app.callback()
def root(
    ctx: typer.Context,
    output: Annotated[
        Format, typer.Option("--output", "-o", help="table, or json for scripts")
    ] = Format.TABLE,
    subscription: Annotated[
        str | None,
        typer.Option(envvar="AZURE_SUBSCRIPTION_ID", help="the Azure subscription id"),
    ] = None,
    simulator: Annotated[
        str | None,
        typer.Option(envvar="BACKUPDR_SIMULATOR", help="URL of `python -m local.armsim`"),
    ] = None,
    ca: Annotated[
        str | None,
        typer.Option(envvar="BACKUPDR_CA_BUNDLE", help="the simulator's CA certificate file"),
    ] = None,
) -> None:
    """Back up Azure VMs, copy, verify and DR-test the backups, and report on all of it."""
    ctx.obj = Options(output=output, subscription=subscription, simulator=simulator, ca_bundle=ca)


@app.command(
    add_help_option=False,
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
)
def demo(ctx: typer.Context) -> None:
    """Run the seeded demo fleet on its own Azurite and simulator; arguments (--days, --fleet,
    --help) go to the demo."""
    from local.demo import main as demo_main

    if options(ctx).output is Format.JSON:
        raise BadInput("-o json: the demo narrates for people and has no JSON output")
    raise typer.Exit(demo_main(list(ctx.args)))


def main() -> None:
    app()
