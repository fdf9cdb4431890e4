"""Names of what the app creates: valid for Azure, stable, and distinct for distinct inputs."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from shared.domain.names import (
    backup_id,
    dr_resource_name,
    dr_test_id,
    orchestration_id,
    orchestration_prefix,
    replica_name,
    snapshot_name,
    verify_disk_name,
)
from tests.unit.builders import at

# Azure snapshot/disk names, kept lowercase by the app.
AZURE_NAME = re.compile(r"[a-z0-9]([a-z0-9_.-]{0,78}[a-z0-9_])?")
SLOT = at("2026-11-29T02:00")

# VM names as Azure allows them (letters, digits, `-`, `_`, `.`; up to 64), and VM keys.
vm_names = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}[A-Za-z0-9_]", fullmatch=True)
vm_keys = st.builds(
    lambda rg, vm: f"{rg}~{vm}".lower(),
    st.from_regex(r"[a-z0-9_-]{1,90}", fullmatch=True),
    vm_names,
)
slots = st.datetimes(
    min_value=datetime(2020, 1, 1),
    max_value=datetime(2100, 1, 1),
    timezones=st.just(UTC),
).map(lambda d: d.replace(microsecond=0))
roles = st.sampled_from(["os", "lun0", "lun1", "lun15", "lun63"])
regions = st.sampled_from(["westus2", "eastus", "northeurope", "swedencentral"])


class TestExamples:
    """What the names look like (they show up in the portal and on the command line)."""

    def test_backup_id_starts_with_sortable_utc_time(self) -> None:
        assert re.fullmatch(r"20261129t020000z-[0-9a-f]{10}", backup_id("rg~web", SLOT))
        assert backup_id("rg~web", SLOT, manual=True).endswith("-m")

    def test_backup_ids_sort_by_time(self) -> None:
        ids = [backup_id("rg~web", SLOT + timedelta(hours=h)) for h in (0, 5, 30, 24 * 400)]
        assert sorted(ids) == ids

    def test_snapshot_name_reads_vm_disk_and_backup(self) -> None:
        name = snapshot_name("Web-01", "rg-app~web-01", "lun0", SLOT)
        assert name == f"web-01-lun0-{backup_id('rg-app~web-01', SLOT)}"

    def test_long_vm_name_is_cut_with_a_hash(self) -> None:
        name = snapshot_name("v" * 64, "rg~" + "v" * 64, "os", SLOT)
        assert len(name) == 80
        assert re.fullmatch(r"v+-[0-9a-f]{10}-os-20261129t020000z-[0-9a-f]{10}", name)

    def test_dr_vm_name_fits_in_64_characters(self) -> None:
        test = dr_test_id("rg~web", SLOT)
        assert test.startswith(orchestration_prefix("dr", "rg~web"))
        assert test.endswith("-20261129t020000z")
        assert len(dr_resource_name("vm", "w" * 64, test)) <= 64

    def test_dr_resources_of_one_test_share_the_vm_and_test(self) -> None:
        test = dr_test_id("rg~web", SLOT)
        assert dr_resource_name("vm", "web", test) == f"web-{test}"
        assert dr_resource_name("nic", "web", test) == f"web-{test}-nic"
        assert dr_resource_name("disk", "web", test, "lun2") == f"web-{test}-lun2"

    def test_replica_and_verify_disk_follow_their_snapshot(self) -> None:
        snap = snapshot_name("web", "rg~web", "os", SLOT)
        assert replica_name(snap, "westus2") == f"{snap}-westus2"
        assert verify_disk_name(snap) == f"{snap}-verify"

    def test_orchestration_id_is_one_per_vm_kind_and_slot(self) -> None:
        vm_hash = backup_id("rg~web", SLOT).split("-")[1]
        assert (
            orchestration_id("vm_backup", "rg~web", SLOT) == f"vm_backup-{vm_hash}-20261129t020000z"
        )

    def test_a_vms_orchestrations_of_one_kind_share_a_prefix_no_other_vm_or_kind_has(self) -> None:
        prefix = orchestration_prefix("backup", "rg~web")
        assert orchestration_id("backup", "rg~web", SLOT).startswith(prefix)
        assert not orchestration_id("backup", "rg~web2", SLOT).startswith(prefix)
        assert not orchestration_id("manual-backup", "rg~web", SLOT).startswith(prefix)

    @pytest.mark.parametrize(
        ("call", "message"),
        [
            pytest.param(
                lambda: backup_id("", SLOT), "vm_key='': must not be empty", id="empty-key"
            ),
            pytest.param(
                lambda: backup_id("rg~web", datetime(2026, 11, 29)), "slot=.*naive", id="naive-slot"
            ),
            pytest.param(
                lambda: snapshot_name("web", "rg~web", "data", SLOT),
                "disk_role='data': must be 'os' or 'lun<N>'",
                id="bad-role",
            ),
            pytest.param(
                lambda: replica_name("snap", "West US"),
                "region='West US': must be an Azure region name",
                id="bad-region",
            ),
            pytest.param(
                lambda: dr_resource_name("ip", "web", "dr-1"),
                "kind='ip': must be one of vm, nic, disk",
                id="bad-kind",
            ),
            pytest.param(
                lambda: dr_resource_name("disk", "web", "dr-1"),
                "kind='disk' needs a disk_role",
                id="disk-without-role",
            ),
            pytest.param(
                lambda: dr_resource_name("nic", "web", "dr-1", "os"),
                "disk_role='os': only for kind 'disk'",
                id="role-on-nic",
            ),
            pytest.param(
                lambda: dr_resource_name("vm", "web", "DR/1"), "test_id='DR/1'", id="bad-test-id"
            ),
            pytest.param(
                lambda: orchestration_id("vm backup", "rg~web", SLOT),
                "kind='vm backup'",
                id="bad-orchestration-kind",
            ),
        ],
    )
    def test_bad_input_is_refused(self, call: Callable[[], str], message: str) -> None:
        with pytest.raises(ValueError, match=message):
            call()


class TestProperties:
    """Every name is valid, stable and distinct (hypothesis)."""

    @settings(max_examples=150)
    @given(vm_names, vm_keys, roles, slots, st.booleans(), regions)
    def test_every_name_is_a_valid_azure_name(
        self, vm: str, key: str, role: str, slot: datetime, manual: bool, region: str
    ) -> None:
        snap = snapshot_name(vm, key, role, slot, manual)
        test = dr_test_id(key, slot)
        names = [snap, replica_name(snap, region), verify_disk_name(snap)]
        names += [dr_resource_name("nic", vm, test), dr_resource_name("disk", vm, test, role)]
        for name in names:
            assert AZURE_NAME.fullmatch(name), name
        vm_name = dr_resource_name("vm", vm, test)
        assert AZURE_NAME.fullmatch(vm_name)
        assert len(vm_name) <= 64

    @settings(max_examples=100)
    @given(vm_names, vm_keys, roles, slots)
    def test_names_are_stable(self, vm: str, key: str, role: str, slot: datetime) -> None:
        assert snapshot_name(vm, key, role, slot) == snapshot_name(vm, key, role, slot)
        assert backup_id(key, slot) == backup_id(key, slot)

    @settings(max_examples=150)
    @given(
        st.lists(
            st.tuples(vm_names, vm_keys, roles, slots),
            min_size=2,
            max_size=2,
            unique_by=lambda t: (t[0].lower(), t[1], t[2], t[3]),
        )
    )
    def test_distinct_inputs_give_distinct_snapshot_names(
        self, pair: list[tuple[str, str, str, datetime]]
    ) -> None:
        # Same VM key and role and slot but a different VM name cannot happen in Azure; all other
        # differences must show.
        (vm_a, key_a, role_a, slot_a), (vm_b, key_b, role_b, slot_b) = pair
        assume((key_a, role_a, slot_a) != (key_b, role_b, slot_b))
        assert snapshot_name(vm_a, key_a, role_a, slot_a) != snapshot_name(
            vm_b, key_b, role_b, slot_b
        )

    @settings(max_examples=100)
    @given(vm_names, st.sampled_from(["rg-a", "rg-b"]))
    def test_same_vm_name_in_different_resource_groups_differs(self, vm: str, rg: str) -> None:
        assert backup_id(f"{rg}~{vm}", SLOT) != backup_id(f"{rg}-x~{vm}", SLOT)
        assert snapshot_name(vm, f"{rg}~{vm}", "os", SLOT) != snapshot_name(
            vm, f"{rg}-x~{vm}", "os", SLOT
        )

    @settings(max_examples=150)
    @given(
        st.lists(
            st.from_regex(r"[a-z0-9][a-z0-9_.-]{60,120}[a-z0-9]", fullmatch=True),
            min_size=2,
            max_size=2,
            unique=True,
        )
    )
    def test_long_names_cut_to_fit_stay_distinct(self, pair: list[str]) -> None:
        first, second = pair
        assert verify_disk_name(first) != verify_disk_name(second)
        assert replica_name(first, "westus2") != replica_name(second, "westus2")
        test = "dr-20261129t020000z-0123456789"
        assert dr_resource_name("vm", first, test) != dr_resource_name("vm", second, test)
