"""Exit codes scripts can trust, and errors as one line on stderr.

0: done and everything checked out; 1: an operation or a check failed; 2: bad input (nothing was
changed). Typer's own usage errors (unknown option, bad integer) are bad input too.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

import typer
from typer.core import TyperGroup

from shared.errors import BackupDrError, sanitise
from shared.settings import SettingsError

OK, FAILED, BAD_INPUT = 0, 1, 2


class BadInput(typer.TyperException):
    """The operator asked for something invalid; nothing was changed."""

    exit_code = BAD_INPUT


class Failed(typer.TyperException):
    """An operation or a check did not succeed."""

    exit_code = FAILED


class OneLineErrors(TyperGroup):
    """The root command: every error is one `error: ...` line on stderr with its exit code."""

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        windows_expand_args: bool = True,
        **extra: Any,
    ) -> Any:
        try:
            code = super().main(args, prog_name, complete_var, False, windows_expand_args, **extra)
        except typer.TyperException as error:  # click usage errors are TyperExceptions too
            if type(error).__name__ == "NoArgsIsHelpError":  # a group with no command: its help
                typer.echo(error.format_message(), err=True, nl=False)  # (rich drew it already)
            else:
                typer.echo(f"error: {sanitise(error.format_message(), limit=500)}", err=True)
            code = error.exit_code
        except SettingsError as error:
            typer.echo(f"error: {error}", err=True)
            code = BAD_INPUT
        except BackupDrError as error:
            typer.echo(f"error: {sanitise(str(error), limit=500)}", err=True)
            code = FAILED
        except typer.Abort:
            typer.echo("error: aborted", err=True)
            code = FAILED
        code = code if isinstance(code, int) else OK
        if standalone_mode:
            sys.exit(code)
        return code
