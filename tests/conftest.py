"""Session-wide stand-ins: Azurite is started once for the tests that need it and stopped after."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from local.azurite import Azurite, running_azurite


@pytest.fixture(scope="session")
def azurite() -> Iterator[Azurite]:
    """A real Azurite table service on a free loopback port, for this test session."""
    with running_azurite() as service:
        yield service
