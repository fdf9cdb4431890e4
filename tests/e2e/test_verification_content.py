"""Verification reads the test disk, and backups measure what changed: the faults it must catch.

Two weeks of the app's own timers over the tiny fleet, with a disk fault on each VM from day 3:
db-01's disks are zeroed, scratch-01's GPT is corrupted (both headers), web-01 is encrypted by
ransomware (its used blocks rewritten with random bytes over a day). The simulator serves each
disk's synthetic image through the read SAS its beginGetAccess grants (local/armsim/blobdata.py).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from typer.testing import CliRunner

from cli.main import app
from local.armsim import FaultRule
from local.azurite import Azurite
from local.stack import FLEETS, Stack, local_stack
from shared.adapters.telemetry import captured_events
from shared.domain.models import VM, BackupState, Verification
from shared.report import render_report

START = datetime(2026, 11, 10, tzinfo=UTC)
FAULTS_FROM = START + timedelta(days=3)
END = START + timedelta(days=14)
SAMPLE = 128 * 1024
# What verification may read of a disk besides its sample: the first 34 sectors, the backup GPT
# header, and each partition's first 68 KiB (shared/domain/disk_layout.py).
METADATA_PER_PARTITION = 0x11000
SCRATCH_POLICY = "schedule=0 2 * * *;daily=7;weekly=0;monthly=0;verify=daily"


class Run:
    def __init__(self, stack: Stack, events: list[dict[str, Any]]) -> None:
        self.stack = stack
        self.events = events

    def vm(self, name: str) -> VM:
        return next(v for v in self.stack.services.gateway.list_vms() if v.name == name)

    def verifications(self, name: str) -> list[Verification]:
        return self.stack.services.catalog.verifications(
            self.vm(name).key, now=self.stack.clock.now(), days=30
        )


@pytest.fixture(scope="module")
def run(azurite: Azurite) -> Iterator[Run]:
    settings = {"BACKUPDR_VERIFY_SAMPLE_BYTES": str(SAMPLE)}
    with (
        captured_events() as events,
        local_stack(
            FLEETS / "tiny.json",
            start=START,
            azurite=azurite,
            table_prefix="content",
            settings=settings,
        ) as stack,
    ):
        scratch = next(v for v in stack.services.gateway.list_vms() if v.name == "scratch-01")
        stack.operator.set_policy_tag(scratch.id, SCRATCH_POLICY)
        stack.host.run_timers(until=FAULTS_FROM)
        stack.simulator.set_content_fault("db-01", "zeroed")
        stack.simulator.set_content_fault("scratch-01", "corrupt-gpt")
        stack.simulator.set_content_fault("web-01", "encrypted")
        stack.host.run_timers(until=END)
        stack.host.run_until_idle()
        yield Run(stack, events)


def _before_and_after(run: Run, name: str) -> tuple[list[Verification], list[Verification]]:
    rows = run.verifications(name)
    backups = {b.backup_id: b for b in run.stack.services.catalog.list_backups(run.vm(name).key)}
    taken = {v.id: backups[v.backup_name].taken_at for v in rows if v.backup_name in backups}
    before = [v for v in rows if v.id in taken and taken[v.id] < FAULTS_FROM]
    after = [v for v in rows if v.id in taken and taken[v.id] > FAULTS_FROM + timedelta(days=1)]
    return before, after


def test_healthy_backups_pass_by_their_partitions_and_file_systems(run: Run) -> None:
    for name in ("db-01", "scratch-01", "web-01"):
        before, _ = _before_and_after(run, name)
        assert before, name
        for row in before:
            assert row.success, (name, row.error_message)
            os_disk = next(d for d in row.disks if d.role == "os")
            assert os_disk.table == "gpt"
            assert os_disk.failures == ()
            assert {p.file_system for p in os_disk.partitions} & {"ext4", "XFS"}, os_disk
            assert 4.0 < os_disk.entropy < 7.0


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("db-01", "every block sampled is zero: the disk holds no data"),
        ("scratch-01", "primary GPT header CRC32 is wrong"),
    ],
)
def test_a_damaged_disk_fails_verification_with_the_reason(
    run: Run, name: str, reason: str
) -> None:
    _, after = _before_and_after(run, name)
    assert after, name
    for row in after:
        assert not row.success
        assert row.disk_readable is False
        assert reason in (row.error_message or ""), row.error_message


def test_ransomware_raises_an_anomaly_and_holds_the_backups_before_it(run: Run) -> None:
    anomalies = [e for e in run.events if e["event"] == "ChurnAnomaly" and "web-01" in e["vm"]]
    assert anomalies
    assert anomalies[0]["measure"] == "changed bytes"
    backups = run.stack.services.catalog.list_backups(run.vm("web-01").key, include_deleted=True)
    flagged = min((b for b in backups if b.anomaly), key=lambda b: b.taken_at)
    # the fleet's seeded history (before START) was retention's before the anomaly
    earlier = [
        b for b in backups if START <= b.taken_at <= flagged.taken_at and b.deleted_at is None
    ]
    # daily=7 would have expired most of these by now; the anomaly keeps them all
    assert len(earlier) >= 3
    assert END - earlier[0].taken_at > timedelta(days=8)
    assert all(b.state is BackupState.COMPLETED for b in earlier), [b.state for b in earlier]


def test_a_healthy_vm_raises_no_anomaly_before_the_faults(run: Run) -> None:
    early = [
        e
        for e in run.events
        if e["event"] == "ChurnAnomaly" and e["backup_id"] < FAULTS_FROM.strftime("%Y%m%d")
    ]
    assert early == []


def test_a_verification_reads_at_most_its_sample_and_the_partition_metadata(run: Run) -> None:
    for name in ("db-01", "scratch-01", "web-01"):
        for row in run.verifications(name):
            for disk in row.disks:
                heads = max(1, len(disk.partitions))  # an unreadable table: the disk's own head
                bound = 34 * 512 + 512 + SAMPLE + METADATA_PER_PARTITION * heads
                assert disk.bytes_read <= bound, (name, disk)
    rows = [row for n in ("db-01", "scratch-01", "web-01") for row in run.verifications(n)]
    read = sum(d.bytes_read for row in rows for d in row.disks)
    served: dict[str, int] = {}
    for request in run.stack.simulator.requests:
        if "/providers/microsoft.compute/disks/" in request.resource.lower():
            served[request.resource] = served.get(request.resource, 0) + request.bytes_out
    assert sum(served.values()) >= read  # the simulator's log saw every byte the app counted
    # and by its own count, no test disk gave more than a sample and its partitions' metadata
    heads = max(len(d.partitions) for row in rows for d in row.disks)
    bound = 34 * 512 + 512 + SAMPLE + METADATA_PER_PARTITION * heads
    assert len(served) >= len(rows)
    assert max(served.values()) <= bound, served


def test_no_sas_reaches_a_row_an_event_or_an_error(run: Run) -> None:
    catalog = run.stack.services.catalog
    rows = [
        *(v.to_dict() for n in ("db-01", "scratch-01", "web-01") for v in run.verifications(n)),
        *(
            b.to_dict()
            for n in ("db-01", "scratch-01", "web-01")
            for b in catalog.list_backups(run.vm(n).key, include_deleted=True)
        ),
        *(e.to_dict() for e in catalog.audit_entries(since=START)),
        *run.events,
    ]
    text = json.dumps(rows, default=str)
    assert "sig=" not in text
    assert "/md-" not in text


def test_a_sas_that_expires_mid_read_fails_the_verification_without_leaking_it(
    azurite: Azurite,
) -> None:
    with (
        captured_events() as events,
        local_stack(
            FLEETS / "tiny.json",
            start=START,
            azurite=azurite,
            table_prefix="sasexpiry",
            settings={"BACKUPDR_VERIFY_SAMPLE_BYTES": str(SAMPLE)},
        ) as stack,
    ):
        stack.host.run_timers(until=START + timedelta(hours=6))
        struck = stack.clock.now()
        stack.simulator.add_fault(FaultRule(operation="blob.read", kind="sas-expires"))
        stack.host.run_timers(until=START + timedelta(hours=12))
        stack.host.run_until_idle()
        db = next(v for v in stack.services.gateway.list_vms() if v.name == "db-01")
        rows = [
            r
            for r in stack.services.catalog.verifications(db.key, now=stack.clock.now(), days=1)
            if r.verified_at > struck
        ]
    assert rows
    assert not any(r.success for r in rows)
    assert all("ClientAuthenticationError" in (r.error_message or "") for r in rows), rows
    text = json.dumps([r.to_dict() for r in rows] + events, default=str)
    assert "sig=" not in text
    assert "/md-" not in text


def test_the_report_and_the_cli_show_the_disks_read_and_the_churn(run: Run) -> None:
    stack = run.stack
    services = stack.services
    page = render_report(
        services.gateway, services.catalog, stack.clock.now(), services.settings.regions
    )
    assert "Linux data / " in page
    assert "EFI system / FAT32" in page
    assert "GiB a day; a month adds about" in page
    result = CliRunner().invoke(
        app, ["-o", "json", "backup", "verification-report", "--days", "14"], env=stack.cli_env()
    )
    assert result.exit_code == 0, result.output
    vms = {row["vm"]: row for row in json.loads(result.stdout)["vms"]}
    web = vms["web-01"]
    assert {d["role"] for d in web["disks"]} == {"os", "lun0"}
    assert web["churn"]["changed_gib_per_day"] > 0
    assert web["churn"]["added_cost_per_month"] > 0
