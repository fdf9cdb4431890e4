"""Session-wide stand-ins: Azurite is started once for the tests that need it and stopped after."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from local.armsim import ArmServer, ArmSimulator
from local.azurite import Azurite, running_azurite
from shared.clock import VirtualClock

# Hypothesis' too-slow health check and per-example deadline are timed assertions: on this shared
# 2-core machine, with both pytest workers and their Azurites busy, a first draw that builds (and
# validates) a policy has taken over a second. What the properties assert does not depend on time.
settings.register_profile(
    "shared-machine", suppress_health_check=[HealthCheck.too_slow], deadline=None
)
settings.load_profile("shared-machine")


# The longest file runs first: with `--dist loadfile` files go to workers in collection order,
# and the month run alone takes most of the suite's wall time.
FIRST = "tests/e2e/test_fleet_month.py"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=lambda item: item.nodeid.split("::")[0] != FIRST)


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
