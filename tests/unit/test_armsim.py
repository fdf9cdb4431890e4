"""The simulator's pure parts: token buckets, fault rules, fleet validation, varied times."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from local.armsim import ArmSimulator, Durations, FaultRule, FleetError
from local.armsim.faults import KINDS, Faults
from local.armsim.state import HINT_STEP, World
from local.armsim.throttle import Throttle
from shared.clock import VirtualClock

START = datetime(2026, 1, 5, tzinfo=UTC)


class TestThrottle:
    """ARM's per-subscription buckets: burst, then refill per virtual second."""

    @pytest.mark.parametrize(
        ("kind", "burst", "per_second"),
        [("read", 250, 25), ("write", 200, 10), ("delete", 200, 10)],
        ids=["reads", "writes", "deletes"],
    )
    def test_bucket_allows_its_burst_then_asks_to_wait(
        self, kind: str, burst: int, per_second: int
    ) -> None:
        throttle = Throttle()
        answers = [throttle.take("sub", kind, START) for _ in range(burst)]  # type: ignore[arg-type]
        assert answers[-1] == (0, 0)
        assert throttle.take("sub", kind, START) == (0, 1)  # type: ignore[arg-type]
        later = START + timedelta(seconds=1)
        assert throttle.take("sub", kind, later) == (per_second - 1, 0)  # type: ignore[arg-type]

    def test_subscriptions_have_separate_buckets(self) -> None:
        throttle = Throttle()
        for _ in range(200):
            throttle.take("a", "write", START)
        assert throttle.take("b", "write", START) == (199, 0)


class TestFaults:
    """Rules fire by operation, resource pattern and region, for their count."""

    def test_counted_rule_fires_that_many_times(self) -> None:
        faults = Faults()
        faults.add(FaultRule(operation="snapshots.*", resource="*web-01*", count=2))
        fired = [
            faults.take("snapshots.create", ["/x/snapshots/web-01-os"], None, KINDS) is not None
            for _ in range(3)
        ]
        assert fired == [True, True, False]

    @pytest.mark.parametrize(
        ("operation", "path", "region", "fires"),
        [
            ("disks.create", "/x/disks/web-01", "eastus", True),
            ("disks.get", "/x/disks/web-01", "eastus", False),
            ("disks.create", "/x/disks/db-01", "eastus", False),
            ("disks.create", "/x/disks/WEB-01", "eastus", True),
            ("disks.create", "/x/disks/web-01", "westus2", False),
        ],
        ids=["match", "other-operation", "other-resource", "case-insensitive", "other-region"],
    )
    def test_rule_matches_operation_resource_and_region(
        self, operation: str, path: str, region: str, fires: bool
    ) -> None:
        faults = Faults()
        faults.add(FaultRule("disks.create", "*web-01", "fail-operation", region="East US"))
        assert (faults.take(operation, [path], region, KINDS) is not None) == fires

    def test_probability_is_repeatable_with_the_same_seed(self) -> None:
        def run() -> list[bool]:
            faults = Faults(seed=7)
            faults.add(FaultRule(kind="5xx", probability=0.5))
            return [faults.take("vms.get", ["/p"], None, KINDS) is not None for _ in range(40)]

        first = run()
        assert first == run()
        assert 5 < sum(first) < 35

    @pytest.mark.parametrize(
        ("arguments", "message"),
        [
            ({"kind": "meteor"}, "unknown fault kind"),
            ({"kind": "5xx", "probability": 2.0}, "between 0 and 1"),
            ({"kind": "region-outage"}, "needs a region"),
        ],
        ids=["kind", "probability", "outage-region"],
    )
    def test_bad_rule_is_refused_with_a_clear_message(
        self, arguments: dict[str, object], message: str
    ) -> None:
        with pytest.raises(ValueError, match=message):
            FaultRule(**arguments)  # type: ignore[arg-type]


def _with_subnet(extra: dict[str, object]) -> dict[str, object]:
    """A fleet of one group with a VNet whose subnet has `extra` keys."""
    subnet = {"name": "snet", "address_prefix": "10.9.1.0/24", **extra}
    vnet = {"name": "vnet", "address_prefix": "10.9.0.0/16", "subnets": [subnet]}
    group = {"name": "rg", "region": "eastus", "vnets": [vnet]}
    return {"subscriptions": [{"id": "s", "resource_groups": [group]}]}


class TestFleet:
    """Fleet files seed VMs with disks; mistakes name where they are."""

    def test_demo_fleet_has_twenty_vms_in_two_regions_with_data_disks(self) -> None:
        sim = ArmSimulator(fleet="local/fleets/demo.json")
        vms = sim.vms()
        assert len(vms) >= 20
        assert {vm["location"] for vm in vms} == {"eastus", "westus2"}
        assert sum(1 for vm in vms if vm["properties"]["storageProfile"]["dataDisks"]) >= 4

    def test_realistic_fleet_has_an_ephemeral_os_disk_and_a_vm_on_vhds(self) -> None:
        sim = ArmSimulator(fleet="local/fleets/realistic.json")
        storage = {vm["name"]: vm["properties"]["storageProfile"] for vm in sim.vms()}
        assert 20 <= len(storage) <= 26  # the month test runs 30 days over it: keep it this size
        assert storage["stateless-eastus-01"]["osDisk"]["diffDiskSettings"]["option"] == "Local"
        legacy = storage["sql-legacy-01"]
        assert all("vhd" in d for d in [legacy["osDisk"], *legacy["dataDisks"]])
        assert not [
            d
            for d in sim.disks()
            if d["name"].startswith(("sql-legacy-01", "stateless-eastus-01-os"))
        ]

    @pytest.mark.parametrize(
        ("fleet", "message"),
        [
            ({}, "non-empty 'subscriptions'"),
            ({"subscriptions": [{"id": "s", "vms": [{"name": "a"}]}]}, r"vms\[0\] \(a\)"),
            (
                {"subscriptions": [{"id": "s", "vms": [{"name": "a", "resource_group": "nope"}]}]},
                "ResourceGroupNotFound",
            ),
            ({"subscriptions": [{"id": "s", "vms": [{"name": "a", "cpu": 4}]}]}, "unknown keys"),
            (_with_subnet({"isolate": True}), r"vnets\[0\]\.subnets\[0\]: unknown keys isolate"),
            (_with_subnet({"isolated": "yes"}), "'isolated' must be true or false"),
        ],
        ids=[
            "empty",
            "no-group",
            "missing-group",
            "unknown-key",
            "subnet-key",
            "isolated-not-bool",
        ],
    )
    def test_bad_fleet_says_where(self, fleet: dict[str, object], message: str) -> None:
        with pytest.raises(FleetError, match=message):
            ArmSimulator(fleet=fleet)


class TestVariedDurations:
    """Deletes, NIC creates and Run Command take varied virtual time, and hint at it roughly."""

    @staticmethod
    def world(seed: int = 0) -> World:
        return World(VirtualClock(START), Durations(), page_size=100, seed=seed)

    def test_a_varied_time_stays_within_the_jitter_and_repeats_for_the_same_seed(self) -> None:
        def times(seed: int) -> list[float]:
            return [self.world(seed).varied(120.0, f"delete:vm-{n}") for n in range(50)]

        first = times(1)
        assert all(120.0 * 0.7 <= t <= 120.0 * 1.3 for t in first)
        assert len(set(first)) == 50
        assert first == times(1)
        assert first != times(2)

    def test_the_retry_after_of_a_varied_operation_is_a_rounded_hint_that_is_sometimes_early(
        self,
    ) -> None:
        world = self.world()
        operations = [
            world.start_operation(
                "sub",
                "Microsoft.Network",
                "eastus",
                "2026-03-01",
                world.varied(13.0, f"delete:nic-{n}"),
                expected_seconds=13.0,
            )
            for n in range(40)
        ]
        assert {op.retry_after(world.now()) for op in operations} == {15}
        takes = [(op.done_at - op.started).total_seconds() for op in operations]
        assert any(t > 15 for t in takes), "a client that trusts the hint sometimes polls early"
        assert any(t < 15 for t in takes)

    def test_a_varied_operation_past_its_expected_time_hints_one_step_more(self) -> None:
        world = self.world()
        late = world.start_operation(
            "sub", "Microsoft.Compute", "eastus", "v", 39.0, expected_seconds=30.0
        )
        world.clock.advance(31)
        assert late.retry_after(world.now()) == HINT_STEP

    def test_an_operation_that_is_not_varied_hints_its_exact_time_left(self) -> None:
        world = self.world()
        exact = world.start_operation("sub", "Microsoft.Compute", "eastus", "v", 10.0)
        world.clock.advance(3.5)
        assert exact.retry_after(world.now()) == 7
