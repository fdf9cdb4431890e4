"""Changes far outside a VM's habits: judged against its own history, and they hold its past."""

from __future__ import annotations

import dataclasses

from shared.domain.anomaly import churn_anomaly, entropy_anomaly
from shared.domain.models import Backup
from shared.domain.policy import BackupPolicy
from shared.domain.retention import plan_retention
from tests.unit.builders import a_backup, at, every, history

GIB = 1024**3


class TestChurn:
    """The mass-encryption pattern in changed bytes."""

    def test_a_jump_far_above_the_vms_median_is_an_anomaly_with_its_numbers(self) -> None:
        reason = churn_anomaly(60 * GIB, [2 * GIB, 3 * GIB, 2 * GIB, 4 * GIB], factor=5)
        assert reason == (
            "60.0 GiB changed since the previous backup, 24x the VM's 30-day median of 2.5 GiB"
        )

    def test_a_busy_vm_is_judged_by_its_own_normal(self) -> None:
        assert churn_anomaly(60 * GIB, [40 * GIB, 50 * GIB, 45 * GIB], factor=5) is None

    def test_an_idle_vm_writing_a_little_is_no_anomaly(self) -> None:
        assert churn_anomaly(GIB, [0, 0, 1024, 0], factor=5) is None

    def test_no_history_means_no_normal_to_compare_with(self) -> None:
        assert churn_anomaly(500 * GIB, [GIB, GIB], factor=5) is None


class TestEntropy:
    """The mass-encryption pattern in the bytes themselves."""

    def test_random_data_on_a_vm_whose_data_was_not_random_is_an_anomaly(self) -> None:
        reason = entropy_anomaly(7.99, [5.1, 5.3, 5.2])
        assert reason is not None
        assert "reads as random (7.99 bits per byte)" in reason

    def test_a_disk_encrypted_at_rest_all_along_is_no_anomaly(self) -> None:
        assert entropy_anomaly(7.99, [7.98, 7.99, 7.97]) is None

    def test_ordinary_data_is_no_anomaly(self) -> None:
        assert entropy_anomaly(6.2, [5.1, 5.3, 5.2]) is None


class TestRetentionHold:
    """An anomaly keeps the VM's earlier backups until an operator releases it."""

    def _backups(self, released: bool) -> list[Backup]:
        backups = history(every("2026-11-01T02:00", 20))
        backups[15] = dataclasses.replace(
            backups[15], anomaly="60 GiB changed", anomaly_released=released
        )
        return backups

    def test_every_backup_before_an_unreleased_anomaly_is_kept(self) -> None:
        backups = self._backups(released=False)
        plan = plan_retention(backups, BackupPolicy(daily=3, weekly=0, monthly=0), at("2026-11-21"))
        anomaly = backups[15]
        earlier = [b.backup_id for b in backups if b.taken_at < anomaly.taken_at]
        assert not set(earlier) & set(plan.to_delete)
        reasons = {d.backup_id: d.reasons for d in plan.decisions}
        assert f"kept: change anomaly at {anomaly.backup_id}" in (reasons[earlier[0]][0])

    def test_a_released_anomaly_lets_retention_decide_again(self) -> None:
        backups = self._backups(released=True)
        plan = plan_retention(
            backups, BackupPolicy(daily=3, weekly=0, monthly=0), at("2026-11-21"), force=True
        )
        assert a_backup("2026-11-01T02:00").build().backup_id in plan.to_delete
