"""The composition root: the one place that builds the real adapters from settings.

Activities reach Azure and the catalog only through `services()`. In Azure they are built lazily
on first use from app settings (never at import time); the local host, the CLI and the tests
`install` their own (the simulator-backed gateway, an Azurite catalog, a virtual clock).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from shared.adapters.arm import gateway_from_settings
from shared.adapters.catalog import catalog_from_settings
from shared.clock import Clock, SystemClock
from shared.ports import BackupCatalog, ComputeGateway
from shared.settings import Settings


@dataclass(frozen=True)
class Services:
    settings: Settings
    gateway: ComputeGateway
    catalog: BackupCatalog
    clock: Clock


_current: Services | None = None
_lock = threading.Lock()


def services() -> Services:
    """The installed services, built from the environment on first use."""
    global _current
    with _lock:
        if _current is None:
            _current = _from_settings(Settings.from_env())
        return _current


def install(current: Services | None) -> None:
    """Use these services from now on (None: build from the environment again on next use)."""
    global _current
    with _lock:
        _current = current


def _from_settings(settings: Settings) -> Services:
    return Services(
        settings=settings,
        gateway=gateway_from_settings(settings),
        catalog=catalog_from_settings(settings),
        clock=SystemClock(),
    )
