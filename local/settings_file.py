"""`.backupdr/local.json`: what `backupdr serve` tells the CLI about the local stack it runs.

serve writes it when the stack is up and removes it when it stops; the CLI reads it when no
target is given, so the next command works with nothing typed. It holds keys: written 0600, and
gitignored. A file left by a serve that was killed names a process that is gone: `running()`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path

DEFAULT_PATH = Path(".backupdr") / "local.json"
PATH_VARIABLE = "BACKUPDR_LOCAL_SETTINGS"  # another file than ./.backupdr/local.json


class SettingsFileError(ValueError):
    """The settings file cannot be read as one `backupdr serve` writes."""


@dataclass(frozen=True)
class LocalSettings:
    pid: int  # the serve process
    api: str  # the Function App's HTTP functions: http://127.0.0.1:PORT/api
    function_key: str
    master_key: str
    simulator: str  # the ARM simulator's https URL
    ca_bundle: str  # the CA certificate the simulator's TLS chains to
    subscription: str
    clock: str  # "virtual" or "real"
    env: dict[str, str]  # the app settings the CLI runs its workflows with (catalog, regions...)

    def running(self) -> bool:
        """Whether the serve process that wrote this is still alive."""
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:  # alive, someone else's (a reused pid)
            return True
        return True


def settings_path(environ: Mapping[str, str]) -> Path:
    return Path(environ.get(PATH_VARIABLE) or DEFAULT_PATH)


def write(path: Path, settings: LocalSettings) -> None:
    """Write atomically, readable by its owner only (it holds the master key)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as file:
        json.dump(asdict(settings), file, indent=2)
        file.write("\n")
    partial.replace(path)


def read(path: Path) -> LocalSettings | None:
    """The settings at `path`; None if there is no file."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as error:
        raise SettingsFileError(f"cannot read {path}: {error}") from None
    names = {f.name for f in fields(LocalSettings)}
    if not isinstance(document, dict) or set(document) != names:
        raise SettingsFileError(
            f"{path} is not a file `backupdr serve` wrote (delete it and start serve again)"
        )
    return LocalSettings(**document)


def remove(path: Path, pid: int) -> None:
    """Remove the file if this process wrote it (a newer serve may have replaced it)."""
    try:
        current = read(path)
    except SettingsFileError:
        return
    if current is not None and current.pid == pid:
        path.unlink(missing_ok=True)
