"""A DR test sees its VM running when the boot ends, not at a doubling interval's next read.

Azure gives no hint for a boot, so the app learns each group's boot time from the boots it
watched end, timed from the provisioning time Azure states in the instance view. The first test
in a group reads at most a tenth late; later ones converge on the boot's end; a slower boot is
followed at once; and the catalog down costs the hint, never the test.

A 100 s boot: waits doubling from 5 s would read at +5, 15, 35, 75 and 155 s, 55 s late.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from local.armsim import Durations
from local.azurite import Azurite
from local.stack import Stack, local_stack
from shared.domain.boot import MIN_STEP_SECONDS
from shared.domain.models import DrTest
from shared.errors import TransientError
from shared.ports import BackupCatalog
from shared.services import Services, install

SUB = "00000000-0000-0000-0000-000000000001"
START = datetime(2026, 11, 10, tzinfo=UTC)
VM_KEY = "rg-app-eastus~boot-01"
DR_GROUP = "rg-backupdr-drtest-westus2"
BOOT = 100.0
FLEET = {
    "subscriptions": [
        {
            "id": SUB,
            "resource_groups": [
                {"name": "rg-app-eastus", "region": "eastus"},
                {"name": "rg-backups-eastus", "region": "eastus"},
                {"name": "rg-backupdr-drtest-eastus", "region": "eastus"},
                {"name": "rg-backups-westus2", "region": "westus2"},
                {
                    "name": DR_GROUP,
                    "region": "westus2",
                    "vnets": [
                        {
                            "name": "vnet-backupdr-drtest",
                            "address_prefix": "10.90.0.0/16",
                            "subnets": [
                                {
                                    "name": "snet-restore",
                                    "address_prefix": "10.90.1.0/24",
                                    "isolated": True,
                                }
                            ],
                        }
                    ],
                },
                {"name": "rg-backupdr-recovery-westus2", "region": "westus2"},
            ],
            "vms": [
                {
                    "name": "boot-01",
                    "resource_group": "rg-app-eastus",
                    "tags": {"backup-policy": "schedule=0 2 * * *;daily=7;replicate=westus2"},
                    "os_disk": {"size_gb": 8},
                }
            ],
        }
    ]
}
_prefixes = (f"drboot{n}" for n in itertools.count())


@pytest.fixture
def stack(azurite: Azurite) -> Iterator[Stack]:
    durations = Durations(vm_boot_seconds=BOOT)
    with local_stack(
        FLEET, start=START, azurite=azurite, durations=durations, table_prefix=next(_prefixes)
    ) as running:
        running.host.run_timers(until=START + timedelta(hours=2, minutes=30))  # backup + replica
        yield running


def _dr_test(stack: Stack) -> DrTest:
    """One DR test, started an hour after the last (no timer runs meanwhile)."""
    stack.clock.advance(3600)
    stack.host.start("dr_test_v2", input={"vm_key": VM_KEY, "test_region": "westus2"})
    stack.host.run_until_idle()
    test = stack.services.catalog.dr_history(VM_KEY, now=stack.clock.now(), days=1)[0]
    assert test.success, test.error_message
    return test


def _instance_view_reads(stack: Stack, test: DrTest) -> int:
    """Reads of a VM's instance view while the test ran (only its VM is read meanwhile)."""
    assert test.completed_at is not None
    return sum(
        1
        for r in stack.simulator.world.requests
        if r.method == "GET"
        and r.path.lower().endswith("/instanceview")
        and test.started_at <= r.at <= test.completed_at
    )


def test_the_first_boot_is_read_at_most_a_tenth_late_and_later_ones_converge_on_its_end(
    stack: Stack,
) -> None:
    first = _dr_test(stack)
    assert BOOT <= first.phase_seconds["boot"] <= BOOT * 1.1
    later = [_dr_test(stack) for _ in range(6)]
    boots = [test.phase_seconds["boot"] for test in later]
    assert all(BOOT <= b <= first.phase_seconds["boot"] for b in boots), boots
    assert boots[-1] <= BOOT + MIN_STEP_SECONDS, boots  # the orchestrations' shortest wait
    # The create's read at its Retry-After, the boot's first read 5 s later, at most one read
    # that halves what the group learned, and one at the upper bound.
    assert all(_instance_view_reads(stack, test) <= 4 for test in later)


def test_a_slower_boot_is_followed_at_once(stack: Stack) -> None:
    _dr_test(stack)
    _dr_test(stack)
    world = stack.simulator.world
    world.durations = dataclasses.replace(world.durations, vm_boot_seconds=2 * BOOT)
    slower = _dr_test(stack)
    assert 2 * BOOT <= slower.phase_seconds["boot"] <= 2 * BOOT * 1.1


class _BootTimesDown:
    """The catalog, with its boot-time rows unreachable (a Table Storage outage)."""

    def __init__(self, inner: BackupCatalog) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        if name in ("boot_times", "note_starting", "note_booted"):
            raise TransientError("Table Storage unavailable")
        return getattr(self._inner, name)


def test_the_catalog_down_costs_the_hint_not_the_dr_test(stack: Stack) -> None:
    svc = stack.services
    install(Services(svc.settings, svc.gateway, _BootTimesDown(svc.catalog), svc.clock))
    test = _dr_test(stack)
    assert test.phase_seconds["boot"] >= BOOT
