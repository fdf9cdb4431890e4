"""Session-wide stand-ins: Azurite is started once for the tests that need it and stopped after."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from local.armsim import ArmServer, ArmSimulator
from local.azurite import Azurite, running_azurite
from shared.clock import VirtualClock


@pytest.fixture(scope="session")
def azurite() -> Iterator[Azurite]:
    """A real Azurite table service on a free loopback port, for this test session."""
    with running_azurite() as service:
        yield service


@pytest.fixture
def armsim() -> Iterator[ArmServer]:
    """The ARM simulator over HTTPS with the tiny fleet, on a virtual clock, fresh per test.

    `armsim.url` and `armsim.ca_path` are for the SDK clients; `armsim.sim` steers it.
    """
    fleet = Path(__file__).resolve().parent.parent / "local" / "fleets" / "tiny.json"
    sim = ArmSimulator(clock=VirtualClock(datetime(2026, 1, 5, tzinfo=UTC)), fleet=fleet)
    with sim.serve() as server:
        yield server
