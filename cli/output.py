"""Printing results: rich tables for people, one JSON document for scripts.

Every command builds one JSON-ready document; `-o json` prints exactly that on stdout, and the
table view is drawn from the same document, so both always say the same thing. People see a VM
as its name and resource group, never as the catalog's key (`rg~vm`).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from rich.console import Console, RenderableType
from rich.table import Table

from cli.context import Format
from cli.errors import readable
from shared.services import Services

Row = Mapping[str, Any]
# Rich draws for 80 columns when stdout is not a terminal; a table there is as wide as it needs.
PIPE_WIDTH = 10_000
FLEET_KEY = "*"  # the catalog's row for the whole fleet (`dr_success_rates`)
FLEET = "all VMs"


def emit(fmt: Format, document: Any, render: Callable[[], Iterable[RenderableType]]) -> None:
    """Print `document` as JSON, or what `render` draws from it as tables and lines (an empty
    line is left out, so a view can hold a line that applies only sometimes)."""
    if fmt is Format.JSON:
        print(json.dumps(document, indent=2, default=str))
        return
    console = _console()
    for part in render():
        if part != "":
            console.print(readable(part) if isinstance(part, str) else part)


def _console() -> Console:
    """A terminal's own width; anywhere else (a pipe, a log, CI even with FORCE_COLOR set, which
    makes rich take a pipe for an 80-column terminal) as wide as the content, so nothing is cut.
    Text is printed as given: a `[...]` in an Azure message is not rich markup."""
    width = None if sys.stdout.isatty() else PIPE_WIDTH
    return Console(width=width, highlight=False, markup=False, emoji=False)


def table(title: str, rows: Iterable[Row], columns: Sequence[tuple[str, str]]) -> Table:
    """A table of `rows` showing (key, heading) `columns`, values shown for reading.

    A terminal too narrow for a table folds long values onto further lines, never cuts them
    to `…`: a backup id stays whole, if on two lines (a pipe is never narrow: see `emit`)."""
    view = Table(title=title, title_justify="left")
    for _, heading in columns:
        view.add_column(heading, overflow="fold")
    for row in rows:
        view.add_row(*(cell(row.get(key)) for key, _ in columns))
    return view


def cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, datetime):
        return f"{value:%Y-%m-%d %H:%M}"
    if isinstance(value, float):
        return f"{value:.2f}"
    if isinstance(value, list | tuple):
        return ", ".join(cell(v) for v in value)
    return readable(str(value))


def vm_names(services: Services) -> dict[str, tuple[str, str]]:
    """Each VM's (name, resource group) by catalog key: live VMs as Azure names them, deleted
    ones as their last backup recorded them (a key is lower case; names keep their case)."""
    latest = services.catalog.latest_backups()
    names = {key: (b.vm_name, b.source_resource_group) for key, b in latest.items()}
    return names | {vm.key: (vm.name, vm.resource_group) for vm in services.gateway.list_vms()}


def named(row: Row, names: Mapping[str, tuple[str, str]]) -> dict[str, Any]:
    """`row` with its VM's name and resource group in place of the catalog key."""
    key = str(row.get("vm_key"))
    group, _, name = key.partition("~")
    vm, resource_group = (FLEET, None) if key == FLEET_KEY else names.get(key, (name, group))
    rest = {k: v for k, v in row.items() if k != "vm_key"}
    return {"vm": vm, "resource_group": resource_group, **rest}


def vm_label(name: str, resource_group: str) -> str:
    """`web-01 (rg-app-eastus)`: a VM as people tell it apart."""
    return f"{name} ({resource_group})"


def duration(seconds: float | None) -> str | None:
    """`2d 3h`, `3h 12m`, `4m 10s`: an age or a lag at a glance."""
    if seconds is None:
        return None
    whole = int(seconds)
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    return f"{minutes}m {secs}s"


def percent(rate: float | None) -> str | None:
    return None if rate is None else f"{rate:.0%}"
