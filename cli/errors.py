"""Exit codes scripts can trust, and every error as one thing on stderr.

0: done and everything checked out; 1: an operation or a check failed; 2: bad input (nothing was
changed). Typer's own usage errors (unknown option, bad integer) are bad input too.

An error is one `error: ...` line on stderr or, with `-o json`, one JSON document there
(`{"error": "...", "exit_code": 2}`): stdout only ever holds a command's result, so a script
reads one JSON document from stdout when it succeeded (or when a workflow it ran failed) and
one from stderr when the command was refused.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Sequence
from typing import Any

import typer
from typer.core import TyperGroup

from shared.errors import BackupDrError, sanitise
from shared.settings import SettingsError

OK, FAILED, BAD_INPUT = 0, 1, 2
_OUTPUT_OPTIONS = ("-o", "--output")
# A catalog key that reached a message: `~` is in neither resource group nor VM names
# (shared/domain/models.py `vm_key`), and neither name starts or ends with a period.
_NAME = r"[\w-](?:[\w.-]*[\w-])?"
_KEY = re.compile(rf"(?<![\w.~-])({_NAME})~({_NAME})(?![\w~-])")


class BadInput(typer.TyperException):
    """The operator asked for something invalid; nothing was changed."""

    exit_code = BAD_INPUT


class Failed(typer.TyperException):
    """An operation or a check did not succeed."""

    exit_code = FAILED


class OneLineErrors(TyperGroup):
    """The root command: every error is one line (or JSON document) on stderr, with its code."""

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        windows_expand_args: bool = True,
        **extra: Any,
    ) -> Any:
        as_json = wants_json(sys.argv[1:] if args is None else args)
        try:
            code = super().main(args, prog_name, complete_var, False, windows_expand_args, **extra)
        except typer.TyperException as error:  # click usage errors are TyperExceptions too
            if type(error).__name__ == "NoArgsIsHelpError":  # a group with no command: its help
                typer.echo(error.format_message(), err=True, nl=False)  # (rich drew it already)
                code = error.exit_code
            else:
                code = report(error.format_message(), error.exit_code, as_json)
        except SettingsError as error:
            code = report(str(error), BAD_INPUT, as_json)
        except BackupDrError as error:
            code = report(error.reason, FAILED, as_json)
        except typer.Abort:
            code = report("aborted", FAILED, as_json)
        code = code if isinstance(code, int) else OK
        if standalone_mode:
            sys.exit(code)
        return code


def report(message: str, code: int, as_json: bool) -> int:
    """Say why on stderr, as a line or a JSON document; `code` is the exit code."""
    text = readable(sanitise(message.strip(), limit=500))
    if as_json:
        typer.echo(json.dumps({"error": text, "exit_code": code}), err=True)
    else:
        typer.echo(f"error: {text}", err=True)
    return code


def readable(text: str) -> str:
    """Text for people: a catalog key `rg~vm` that reached a message reads `vm (rg)`."""
    return _KEY.sub(r"\2 (\1)", text)


def wants_json(words: Sequence[str]) -> bool:
    """Whether the command line asks for `-o json` (the last `-o` wins, as click decides), read
    before click parses it so that an error from parsing is JSON too."""
    chosen = None
    for word, following in zip(words, [*words[1:], None], strict=True):
        if word == "--":
            break
        if word in _OUTPUT_OPTIONS:
            chosen = following
        elif word.startswith("--output="):
            chosen = word.removeprefix("--output=")
        elif word.startswith("-o") and not word.startswith("--"):
            chosen = word.removeprefix("-o")
    return chosen == "json"
