"""Printing results: rich tables for people, one JSON document for scripts.

Every command builds one JSON-ready document; `-o json` prints exactly that on stdout, and the
table view is drawn from the same document, so both always say the same thing.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from rich.console import Console, RenderableType
from rich.table import Table

from cli.context import Format

Row = Mapping[str, Any]
# Rich draws for 80 columns when stdout is not a terminal; a table there is as wide as it needs.
PIPE_WIDTH = 10_000


def emit(fmt: Format, document: Any, render: Callable[[], Iterable[RenderableType]]) -> None:
    """Print `document` as JSON, or what `render` draws from it as tables and lines."""
    if fmt is Format.JSON:
        print(json.dumps(document, indent=2, default=str))
        return
    console = Console(highlight=False)
    if not console.is_terminal:  # a pipe, a log, CI: as wide as the content, never cut
        console = Console(highlight=False, width=PIPE_WIDTH)
    for part in render():
        console.print(part)


def table(title: str, rows: Iterable[Row], columns: Sequence[tuple[str, str]]) -> Table:
    """A table of `rows` showing (key, heading) `columns`, values shown for reading."""
    view = Table(title=title, title_justify="left")
    for _, heading in columns:
        view.add_column(heading, overflow="fold")  # a narrow terminal wraps an id, never cuts it
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
    return str(value)


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
