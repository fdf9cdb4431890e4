"""The Table Storage catalog keeps records whole and answers the workflows' queries (Azurite)."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar
from urllib.parse import urlparse

import pytest
from azure.core.pipeline import PipelineRequest
from azure.data.tables import TableServiceClient

from local.azurite import Azurite
from shared.adapters.catalog import SUMMARY_COLUMNS, TableCatalog, catalog_from_settings
from shared.adapters.entities import from_entity, table_key, to_entity
from shared.domain.copytime import SAMPLES, CopySample
from shared.domain.models import (
    VM,
    AuditEntry,
    Backup,
    BackupState,
    DrTest,
    Failover,
    InUseListing,
    JsonRecord,
    NicConfig,
    NicListing,
    ReplicationJob,
    ReplicationStatus,
    SnapshotRef,
    Tier,
    Verification,
    VerificationState,
    WriteHold,
)
from shared.errors import NotFoundError
from shared.settings import Settings

pytestmark = pytest.mark.azurite

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
WEB = "rg-app~web-01"
DB = "rg-app~db-01"


@pytest.fixture
def catalog(azurite: Azurite) -> TableCatalog:
    """A catalog on tables of its own, so no test sees another's rows."""
    settings = Settings(subscription_id="sub", tables_connection=azurite.connection_string)
    catalog = catalog_from_settings(settings)
    return TableCatalog(catalog.service, prefix="t" + uuid.uuid4().hex[:12])


def ago(**delta: float) -> datetime:
    return NOW - timedelta(**delta)


def snapshot_ref(role: str, *, long_ids: bool = False) -> SnapshotRef:
    pad = "x" * 200 if long_ids else ""
    return SnapshotRef(
        disk_role=role,
        source_disk_id=f"/subscriptions/s/resourceGroups/rg-app/disks/{role}{pad}",
        snapshot_id=f"/subscriptions/s/resourceGroups/rg-backups/snapshots/{role}{pad}",
        size_gb=128,
        lun=None if role == "os" else int(role.removeprefix("lun")),
        replica_id=f"/subscriptions/s/resourceGroups/rg-backups-dr/snapshots/{role}{pad}",
        replica_status=ReplicationStatus.COMPLETED,
    )


def backup(vm: str, taken: datetime, **changes: Any) -> Backup:
    record = Backup(
        backup_id=f"{taken:%Y%m%dT%H%M%S}-{vm.split('~')[-1]}",
        vm_key=vm,
        vm_id=f"/subscriptions/s/resourceGroups/rg-app/providers/Microsoft.Compute/vm/{vm}",
        vm_name=vm.split("~")[-1],
        region="eastus",
        slot=taken,
        taken_at=taken,
        tier=Tier.DAILY,
        replica_region="westus2",
    )
    return dataclasses.replace(record, **changes)


def job(
    vm: str, backup_id: str, role: str, status: ReplicationStatus, started: datetime
) -> ReplicationJob:
    finished = status in (ReplicationStatus.COMPLETED, ReplicationStatus.FAILED)
    return ReplicationJob(
        id=f"{backup_id}-{role}",
        vm_key=vm,
        backup_id=backup_id,
        disk_role=role,
        source_snapshot=f"snap-{backup_id}-{role}",
        target_snapshot=f"replica-{backup_id}-{role}",
        source_region="eastus",
        target_region="westus2",
        status=status,
        started_at=started,
        completed_at=started + timedelta(minutes=9) if finished else None,
        error_message="CopyFailed: source gone" if status == ReplicationStatus.FAILED else None,
        completion_percent=100.0 if status == ReplicationStatus.COMPLETED else 40.0,
    )


def verification(vm: str, at: datetime, success: bool) -> Verification:
    return Verification(
        id=f"v-{vm.split('~')[-1]}-{at:%Y%m%d%H%M}",
        vm_key=vm,
        backup_name=f"{at:%Y%m%d}-{vm}",
        vm_name=vm.split("~")[-1],
        verified_at=at,
        success=success,
        disk_readable=success,
        size_matches=True,
        test_disk_created=True,
        test_disk_deleted=True,
        error_message=None if success else "size mismatch: 64 != 128",
        verification_time_seconds=42.5,
    )


def dr_test(vm: str, started: datetime, success: bool | None, rto: float | None = None) -> DrTest:
    return DrTest(
        id=f"dr-{vm.split('~')[-1]}-{started:%Y%m%d%H%M}",
        vm_key=vm,
        vm_name=vm.split("~")[-1],
        backup_name=f"{started:%Y%m%d}-{vm}",
        test_region="westus2",
        started_at=started,
        completed_at=None if success is None else started + timedelta(seconds=rto or 60),
        success=success,
        restore_succeeded=success,
        boot_succeeded=success,
        connectivity_succeeded=success,
        cleanup_succeeded=None if success is None else True,
        rto_seconds=rto,
        error_message="boot timed out" if success is False else None,
        phase_seconds={"restore": 120.5, "create_vm": 60.0, "boot": 30.25},
        rto_target_seconds=900.0,
    )


class TestRecords:
    """Each record comes back exactly as saved, every field in a column of its own."""

    FULL_BACKUP = backup(
        WEB,
        ago(hours=3),
        snapshots=(snapshot_ref("os"), snapshot_ref("lun0")),
        size_gb=2**40,  # beyond Int32: stored as Int64
        manual=True,
        verification=VerificationState.PASSED,
        verified_at=ago(hours=1),
        hold=True,
        error_message="partial: lun1 skipped",
    )
    FULL_JOB = job(WEB, "b1", "os", ReplicationStatus.FAILED, ago(hours=2))
    FULL_VERIFICATION = verification(WEB, ago(hours=2), success=False)
    FULL_DR_TEST = dataclasses.replace(
        dr_test(WEB, ago(hours=5), success=True, rto=600.0), error_message="nic delete retried"
    )
    FULL_AUDIT = AuditEntry(
        at=ago(minutes=5),
        action="create",
        resource_id="/subscriptions/s/snapshots/a",
        result="ok",
        vm_key=WEB,
        operation="snapshot",
        identity="mi-backupdr",
        detail="incremental",
    )

    RoundTrip = Callable[[TableCatalog], list[Any]]
    ROUND_TRIPS: ClassVar[list[tuple[str, JsonRecord, RoundTrip]]] = [
        ("backup", FULL_BACKUP, lambda c: [c.get_backup(WEB, TestRecords.FULL_BACKUP.backup_id)]),
        ("replication job", FULL_JOB, lambda c: c.list_replication_jobs(vm_key=WEB)),
        (
            "verification",
            FULL_VERIFICATION,
            lambda c: list(c.verification_report(now=NOW, days=1)[0].failures),
        ),
        ("dr test", FULL_DR_TEST, lambda c: c.dr_history(WEB, now=NOW, days=1)),
        ("audit entry", FULL_AUDIT, lambda c: c.audit_entries(since=ago(hours=1))),
    ]

    @staticmethod
    def save(catalog: TableCatalog, record: JsonRecord) -> None:
        savers: dict[type, Callable[[Any], None]] = {
            Backup: catalog.save_backup,
            ReplicationJob: catalog.save_replication_job,
            Verification: catalog.save_verification,
            DrTest: catalog.save_dr_test,
            AuditEntry: catalog.audit,
        }
        savers[type(record)](record)

    @pytest.mark.parametrize(
        ("record", "read"), [(r, f) for _, r, f in ROUND_TRIPS], ids=[n for n, _, _ in ROUND_TRIPS]
    )
    def test_a_saved_record_reads_back_equal(
        self, catalog: TableCatalog, record: JsonRecord, read: RoundTrip
    ) -> None:
        self.save(catalog, record)
        assert read(catalog) == [record]

    # The seed's SQLite columns (seed-architecture.md), `id` included.
    SEED_COLUMNS: ClassVar[list[tuple[str, JsonRecord, str]]] = [
        (
            "replicationjobs",
            FULL_JOB,
            "id source_snapshot target_snapshot source_region target_region status started_at "
            "completed_at error_message",
        ),
        (
            "verifications",
            FULL_VERIFICATION,
            "id backup_name vm_name verified_at success disk_readable size_matches "
            "test_disk_created test_disk_deleted error_message verification_time_seconds",
        ),
        (
            "drtests",
            FULL_DR_TEST,
            "id vm_name backup_name test_region started_at completed_at success restore_succeeded "
            "boot_succeeded connectivity_succeeded cleanup_succeeded rto_seconds error_message "
            "phase_seconds rto_target_seconds",
        ),
    ]

    @pytest.mark.parametrize(
        ("table", "record", "columns"), SEED_COLUMNS, ids=[t for t, _, _ in SEED_COLUMNS]
    )
    def test_every_seed_column_is_a_column_of_its_table(
        self, catalog: TableCatalog, table: str, record: JsonRecord, columns: str
    ) -> None:
        self.save(catalog, record)
        [entity] = raw_rows(catalog, table)
        assert set(columns.split()) <= set(entity)

    def test_times_are_edm_datetimes_in_utc_and_nested_values_json_text(
        self, catalog: TableCatalog
    ) -> None:
        catalog.save_dr_test(self.FULL_DR_TEST)
        [entity] = raw_rows(catalog, "drtests")
        assert isinstance(entity["started_at"], datetime)
        assert entity["started_at"].utcoffset() == timedelta(0)
        assert entity["phase_seconds"] == '{"restore":120.5,"create_vm":60.0,"boot":30.25}'
        assert entity["PartitionKey"] == WEB

    def test_a_backup_of_64_disks_with_long_ids_fits_in_one_row(
        self, catalog: TableCatalog
    ) -> None:
        disks = tuple(snapshot_ref("os", long_ids=True) for _ in range(1)) + tuple(
            snapshot_ref(f"lun{lun}", long_ids=True) for lun in range(63)
        )
        big = backup(WEB, ago(hours=1), snapshots=disks)
        catalog.save_backup(big)
        [entity] = raw_rows(catalog, "backups")
        assert "snapshots__2" in entity  # the JSON spilled past one 64 KiB property
        assert catalog.get_backup(WEB, big.backup_id) == big

    def test_saving_again_replaces_the_row_so_a_cleared_field_is_gone(
        self, catalog: TableCatalog
    ) -> None:
        failed = backup(WEB, ago(hours=1), state=BackupState.FAILED, error_message="quota")
        catalog.save_backup(failed)
        retried = dataclasses.replace(failed, state=BackupState.COMPLETED, error_message=None)
        catalog.save_backup(retried)
        assert catalog.list_backups(WEB) == [retried]

    def test_a_naive_datetime_is_refused_with_a_clear_error(self, catalog: TableCatalog) -> None:
        naive = backup(WEB, datetime(2026, 3, 1, 2, 0))
        with pytest.raises(ValueError, match="slot: datetimes must be timezone-aware"):
            catalog.save_backup(naive)


def raw_rows(catalog: TableCatalog, table: str) -> list[dict[str, Any]]:
    """The entities as Table Storage holds them, bypassing the catalog's mapping."""
    client = catalog.service.get_table_client(catalog.table_name(table))
    return [dict(entity) for entity in client.list_entities()]


class TestBackups:
    """A VM's backups, newest first; fleet-wide lists for replication, verification and RPO."""

    def test_list_backups_is_newest_first_and_hides_deleted_unless_asked(
        self, catalog: TableCatalog
    ) -> None:
        old, deleted, new = (
            backup(WEB, ago(days=2)),
            backup(WEB, ago(days=1), state=BackupState.DELETED),
            backup(WEB, ago(hours=1)),
        )
        for record in (new, old, deleted, backup(DB, ago(hours=2))):
            catalog.save_backup(record)
        assert catalog.list_backups(WEB) == [new, old]
        assert catalog.list_backups(WEB, include_deleted=True) == [new, deleted, old]

    def test_list_backups_since_a_moment_reads_no_older_ones(self, catalog: TableCatalog) -> None:
        """Purged rows stay as history: a step that needs this month's backups asks the server
        for them, not for a year of rows."""
        old, purged, new = (
            backup(WEB, ago(days=40)),
            backup(WEB, ago(days=2), state=BackupState.DELETED),
            backup(WEB, ago(days=1)),
        )
        for record in (old, purged, new):
            catalog.save_backup(record)
        since = ago(days=2)
        assert catalog.list_backups(WEB, include_deleted=True, since=since) == [new, purged]
        assert catalog.list_backups(WEB, since=since) == [new]
        assert catalog.list_backups(WEB, since=ago(days=2) + timedelta(seconds=1)) == [new]

    def test_get_and_find_a_backup_by_its_keys_or_its_id_alone(self, catalog: TableCatalog) -> None:
        web, db = backup(WEB, ago(hours=1)), backup(DB, ago(hours=1))
        catalog.save_backup(web)
        catalog.save_backup(db)
        assert catalog.get_backup(WEB, web.backup_id) == web
        assert catalog.get_backup(DB, web.backup_id) is None
        assert catalog.find_backup(db.backup_id) == db
        assert catalog.find_backup("no-such-backup") is None

    def test_update_backup_changes_only_the_named_fields(self, catalog: TableCatalog) -> None:
        original = backup(WEB, ago(hours=1), snapshots=(snapshot_ref("os"),))
        catalog.save_backup(original)
        replicated = (dataclasses.replace(original.snapshots[0], replica_id="r-os"),)
        updated = catalog.update_backup(
            WEB,
            original.backup_id,
            verification="passed",  # JSON forms are accepted too
            verified_at=NOW.isoformat(),
            snapshots=replicated,
        )
        expected = dataclasses.replace(
            original,
            verification=VerificationState.PASSED,
            verified_at=NOW,
            snapshots=replicated,
        )
        assert updated == expected
        assert catalog.get_backup(WEB, original.backup_id) == expected

    def test_update_backup_refuses_an_unknown_field(self, catalog: TableCatalog) -> None:
        with pytest.raises(ValueError, match="Backup has no field colour, size"):
            catalog.update_backup(WEB, "b1", size=1, colour="blue")

    def test_update_backup_of_a_missing_backup_is_not_found(self, catalog: TableCatalog) -> None:
        with pytest.raises(NotFoundError, match="backup b1 of rg-app~web-01"):
            catalog.update_backup(WEB, "b1", hold=True)

    def test_latest_backups_are_the_newest_completed_per_vm(self, catalog: TableCatalog) -> None:
        web_done, db_done = backup(WEB, ago(hours=5)), backup(DB, ago(hours=9))
        for record in (
            backup(WEB, ago(days=1)),
            web_done,
            backup(WEB, ago(hours=1), state=BackupState.CREATING),
            backup(WEB, ago(hours=2), state=BackupState.FAILED),
            db_done,
            backup(DB, ago(hours=3), state=BackupState.DELETED),
        ):
            catalog.save_backup(record)
        assert catalog.latest_backups() == {DB: db_done, WEB: web_done}

    def test_backups_needing_replication_are_completed_with_a_missing_or_failed_replica(
        self, catalog: TableCatalog
    ) -> None:
        missing = backup(WEB, ago(hours=1))
        failed = backup(DB, ago(hours=2), replication_status=ReplicationStatus.FAILED)
        for record in (
            missing,
            failed,
            backup(WEB, ago(hours=3), replica_region=None),
            backup(WEB, ago(hours=4), replication_status=ReplicationStatus.IN_PROGRESS),
            backup(WEB, ago(hours=5), replication_status=ReplicationStatus.COMPLETED),
            backup(WEB, ago(hours=6), state=BackupState.FAILED),
        ):
            catalog.save_backup(record)
        assert catalog.backups_needing_replication() == [failed, missing]  # oldest first

    def test_unverified_backups_are_completed_and_never_verified_oldest_first(
        self, catalog: TableCatalog
    ) -> None:
        newer, older = backup(WEB, ago(hours=1)), backup(DB, ago(hours=8))
        for record in (
            newer,
            older,
            backup(WEB, ago(hours=2), verification=VerificationState.PASSED),
            backup(WEB, ago(hours=3), verification=VerificationState.FAILED),
            backup(WEB, ago(hours=4), state=BackupState.CREATING),
        ):
            catalog.save_backup(record)
        assert catalog.unverified_backups() == [older, newer]


def scan_latest(catalog: TableCatalog) -> dict[str, Backup]:
    """The newest completed backup per VM by reading every backup row (what the index saves)."""
    client = catalog.service.get_table_client(catalog.table_name("backups"))
    newest: dict[str, Backup] = {}
    for entity in client.query_entities("state eq 'completed'", select=SUMMARY_COLUMNS):
        row = from_entity(Backup, entity)
        known = newest.get(row.vm_key)
        if known is None or (row.taken_at, row.backup_id) > (known.taken_at, known.backup_id):
            newest[row.vm_key] = row
    return dict(sorted(newest.items()))


def counting(catalog: TableCatalog, azurite: Azurite) -> tuple[TableCatalog, list[str]]:
    """The same tables through a client that notes the table of each request it sends."""
    tables: list[str] = []

    def note(request: PipelineRequest[Any]) -> None:
        tables.append(urlparse(request.http_request.url).path.rsplit("/", 1)[-1].split("(")[0])

    service = TableServiceClient.from_connection_string(
        azurite.connection_string, raw_request_hook=note
    )
    return TableCatalog(service, prefix=catalog.table_name("")), tables


class TestLatestBackupsIndex:
    """latest_backups() reads one index row per VM, kept by every backup write."""

    def test_the_index_answers_as_a_full_scan_after_every_write(
        self, catalog: TableCatalog
    ) -> None:
        older, newer, newest = (
            backup(WEB, ago(days=1)),
            backup(WEB, ago(hours=2)),
            backup(WEB, ago(hours=1), state=BackupState.CREATING),
        )
        db = backup(DB, ago(hours=3))
        passed = VerificationState.PASSED
        steps: list[tuple[Callable[[], object], dict[str, str]]] = [
            (lambda: catalog.save_backup(newest), {}),
            (lambda: catalog.save_backup(older), {WEB: older.backup_id}),
            (lambda: catalog.save_backup(db), {DB: db.backup_id, WEB: older.backup_id}),
            (lambda: catalog.save_backup(newer), {DB: db.backup_id, WEB: newer.backup_id}),
            (lambda: catalog.update_backup(WEB, newer.backup_id, verification=passed), {}),
            (lambda: catalog.save_backup(older), {WEB: newer.backup_id}),  # a step run again
            (lambda: catalog.update_backup(WEB, newest.backup_id, state="completed"), {}),
            (lambda: catalog.update_backup(WEB, newest.backup_id, state="soft_deleted"), {}),
            (lambda: catalog.update_backup(WEB, newer.backup_id, state="deleted"), {}),
            (lambda: catalog.update_backup(WEB, newer.backup_id, state="deleted"), {}),
            (lambda: catalog.update_backup(WEB, older.backup_id, state="failed"), {}),
            (lambda: catalog.update_backup(DB, db.backup_id, state="purging"), {}),
        ]
        answers = []
        for write, expected in steps:
            write()
            latest = catalog.latest_backups()
            assert latest == scan_latest(catalog)
            answers.append({vm: b.backup_id for vm, b in latest.items()})
            assert expected.items() <= answers[-1].items()
        assert [a.get(WEB) for a in answers[4:]] == [
            newer.backup_id,  # its verification changed: the index row follows
            newer.backup_id,
            newest.backup_id,
            newer.backup_id,  # the newest went: back to the one before
            older.backup_id,
            older.backup_id,
            None,  # none completed: the VM is gone from the answer
            None,
        ]
        assert answers[-1] == {}
        assert catalog.latest_backups() == {}

    def test_latest_backups_reads_the_index_partition_only(
        self, catalog: TableCatalog, azurite: Azurite
    ) -> None:
        for hours in range(1, 21):
            catalog.save_backup(backup(WEB, ago(hours=hours)))
        catalog.save_backup(backup(DB, ago(hours=4), snapshots=(snapshot_ref("os"),)))
        catalog.latest_backups()
        spy, tables = counting(catalog, azurite)
        expected = {DB: backup(DB, ago(hours=4)), WEB: backup(WEB, ago(hours=1))}
        assert spy.latest_backups() == expected
        assert tables == [catalog.table_name("latestbackups")]  # one request, one table
        index_columns = {"PartitionKey", "RowKey", *SUMMARY_COLUMNS}
        assert all(set(row) <= index_columns for row in raw_rows(catalog, "latestbackups"))

    def test_a_page_of_vms_reads_one_row_per_vm_whatever_the_fleet(
        self, catalog: TableCatalog, azurite: Azurite
    ) -> None:
        """A fleet run asks page by page: reading the whole index on each page made a run's
        reads VMs x pages (a 10,000-VM run spent most of its CPU there)."""
        fleet = [f"rg-app~vm-{n:02}" for n in range(30)]
        for vm in fleet:
            catalog.save_backup(backup(vm, ago(hours=2)))
            catalog.save_backup(backup(vm, ago(hours=1)))
        catalog.latest_backups()  # the index is built (once, on a first read)
        page = [fleet[3], fleet[17], "rg-app~never-backed-up"]
        spy, tables = counting(catalog, azurite)
        answer = spy.latest_backups(page)
        assert answer == {vm: b for vm, b in scan_latest(catalog).items() if vm in page}
        assert answer[fleet[3]] == backup(fleet[3], ago(hours=1))
        # the "built" mark and one point read per VM asked for: no query of the partition
        assert len(tables) == 1 + len(page)
        assert all(table.endswith("latestbackups") for table in tables)

    def test_a_catalog_written_before_the_index_is_indexed_once(
        self, catalog: TableCatalog, azurite: Azurite
    ) -> None:
        web_old, web_new, db_done = (
            backup(WEB, ago(days=2)),
            backup(WEB, ago(days=1)),
            backup(DB, ago(hours=5)),
        )
        legacy = [
            web_old,
            web_new,
            backup(WEB, ago(hours=1), state=BackupState.DELETED),
            db_done,
            backup(DB, ago(hours=1), state=BackupState.FAILED),
        ]
        catalog.service.create_table_if_not_exists(catalog.table_name("backups"))
        table = catalog.service.get_table_client(catalog.table_name("backups"))
        for row in legacy:  # the rows as an older version wrote them: no index at all
            table.upsert_entity(to_entity(row, row.vm_key, row.backup_id))
        catalog.update_backup(WEB, web_old.backup_id, hold=True)  # an old one, written first

        assert catalog.latest_backups() == {DB: db_done, WEB: web_new}
        index = sorted(row["RowKey"] for row in raw_rows(catalog, "latestbackups"))
        assert index == [DB, WEB, "~built-256"]
        spy, tables = counting(catalog, azurite)
        assert spy.latest_backups() == {DB: db_done, WEB: web_new}
        assert tables == [catalog.table_name("latestbackups")]  # built once, not again

    def test_an_index_kept_in_one_partition_is_indexed_again_across_its_partitions(
        self, catalog: TableCatalog
    ) -> None:
        """The index as the last version kept it, every VM's row in partition "*" marked
        "~built": the rows are spread by a hash of the VM since (a point read costs what its
        partition holds in Azurite), so the old partition is left unread and the catalog is
        indexed again, once, from its backups, stale rows there and all."""
        web_old, web_new, db_done = (
            backup(WEB, ago(days=2)),
            backup(WEB, ago(days=1)),
            backup(DB, ago(hours=5)),
        )
        for row in (web_old, web_new, db_done):
            catalog.save_backup(row)
        table = catalog.service.get_table_client(catalog.table_name("latestbackups"))
        for entity in list(table.list_entities()):
            table.delete_entity(entity["PartitionKey"], entity["RowKey"])
        table.upsert_entity(to_entity(web_old, "*", WEB))  # stale: the newer one came since
        table.upsert_entity({"PartitionKey": table_key("*"), "RowKey": "~built"})

        assert catalog.latest_backups([WEB, DB]) == {DB: db_done, WEB: web_new}
        assert catalog.latest_backups() == {DB: db_done, WEB: web_new}
        rows = raw_rows(catalog, "latestbackups")
        old = table_key("*")
        spread = {(r["PartitionKey"], r["RowKey"]) for r in rows if r["PartitionKey"] != old}
        assert sorted(key for _, key in spread) == [DB, WEB, "~built-256"]
        assert len({partition for partition, _ in spread}) > 1

    def test_racing_writers_of_one_vm_leave_its_newest_completed(
        self, catalog: TableCatalog
    ) -> None:
        taken = [backup(WEB, ago(hours=h), state=BackupState.CREATING) for h in range(1, 9)]
        for record in taken:
            catalog.save_backup(record)

        def finish(record: Backup) -> None:
            catalog.update_backup(WEB, record.backup_id, state=BackupState.COMPLETED)
            if record in taken[:2]:
                catalog.update_backup(WEB, record.backup_id, state=BackupState.DELETED)

        with ThreadPoolExecutor(len(taken)) as pool:
            list(pool.map(finish, taken))
        assert catalog.latest_backups() == scan_latest(catalog)
        assert catalog.latest_backups()[WEB].backup_id == taken[2].backup_id


class TestReplicationJobs:
    """Jobs by status and by VM, newest started first."""

    def test_jobs_filter_by_status_vm_and_backup(self, catalog: TableCatalog) -> None:
        web_running = job(WEB, "b2", "os", ReplicationStatus.IN_PROGRESS, ago(hours=1))
        web_done = job(WEB, "b1", "os", ReplicationStatus.COMPLETED, ago(hours=3))
        db_running = job(DB, "b3", "lun0", ReplicationStatus.IN_PROGRESS, ago(hours=2))
        catalog.save_replication_jobs([web_done, web_running, db_running])
        running = ReplicationStatus.IN_PROGRESS
        assert catalog.list_replication_jobs(status=running) == [web_running, db_running]
        assert catalog.list_replication_jobs(vm_key=WEB) == [web_running, web_done]
        assert catalog.list_replication_jobs(status=running, vm_key=DB) == [db_running]
        assert catalog.list_replication_jobs() == [web_running, db_running, web_done]
        assert catalog.list_replication_jobs(vm_key=WEB, backup_id="b1") == [web_done]
        assert catalog.list_replication_jobs(status=running, backup_id="b1") == []

    def test_copies_in_progress_count_running_and_freshly_claimed_jobs_into_one_region(
        self, catalog: TableCatalog
    ) -> None:
        running = [
            job(WEB, f"b{i}", "os", ReplicationStatus.IN_PROGRESS, ago(hours=1)) for i in range(3)
        ]
        done = job(DB, "b9", "os", ReplicationStatus.COMPLETED, ago(hours=2))
        elsewhere = dataclasses.replace(
            job(DB, "b8", "os", ReplicationStatus.IN_PROGRESS, ago(hours=1)), target_region="eastus"
        )
        claimed = job(DB, "b7", "os", ReplicationStatus.PENDING, ago(minutes=5))
        abandoned = job(DB, "b6", "os", ReplicationStatus.PENDING, ago(hours=1))
        catalog.save_replication_jobs([*running, done, elsewhere, claimed, abandoned])
        since = ago(minutes=10)
        assert catalog.copies_in_progress("westus2", claimed_since=since) == 4
        assert catalog.copies_in_progress("eastus", claimed_since=since) == 1
        assert catalog.copies_in_progress("northeurope", claimed_since=since) == 0
        catalog.delete_replication_jobs([claimed])
        assert catalog.copies_in_progress("westus2", claimed_since=since) == 3

    def test_a_retried_job_rewrites_its_row(self, catalog: TableCatalog) -> None:
        started = job(WEB, "b1", "os", ReplicationStatus.IN_PROGRESS, ago(hours=1))
        done = job(WEB, "b1", "os", ReplicationStatus.COMPLETED, ago(hours=1))
        catalog.save_replication_job(started)
        catalog.save_replication_job(done)
        assert catalog.list_replication_jobs() == [done]

    def test_copy_samples_are_kept_per_pair_of_regions_the_newest_few(
        self, catalog: TableCatalog
    ) -> None:
        assert catalog.copy_samples("eastus", "westus2") == []
        samples = [CopySample(float(n), 60.0 + n) for n in range(SAMPLES + 3)]
        for sample in samples:
            catalog.note_copy("eastus", "westus2", sample)
        catalog.note_copy("westus2", "eastus", CopySample(1.0, 99.0))
        assert catalog.copy_samples("EastUS", "westus2") == samples[-SAMPLES:]
        assert catalog.copy_samples("westus2", "eastus") == [CopySample(1.0, 99.0)]

    def test_first_copies_keep_their_samples_however_many_later_copies_come(
        self, catalog: TableCatalog
    ) -> None:
        """A disk's first copy into a region is rare after a fleet's first run: later copies
        must not push the first copies' line out."""
        firsts = [CopySample(float(n), 600.0 + n, first=True) for n in range(SAMPLES + 1)]
        later = [CopySample(float(n), 60.0 + n) for n in range(3 * SAMPLES)]
        for sample in [*firsts, *later]:
            catalog.note_copy("eastus", "westus2", sample)
        kept = catalog.copy_samples("eastus", "westus2")
        assert [s for s in kept if s.first] == firsts[-SAMPLES:]
        assert [s for s in kept if not s.first] == later[-SAMPLES:]


class TestVerificationReport:
    """Per VM over N days: total, passed, failures, last verified."""

    def test_report_counts_the_window_per_vm(self, catalog: TableCatalog) -> None:
        web_fail = verification(WEB, ago(days=2), success=False)
        rows = [
            verification(WEB, ago(hours=1), success=True),
            web_fail,
            verification(WEB, ago(days=6), success=True),
            verification(WEB, ago(days=8), success=False),  # outside 7 days
            verification(DB, ago(days=3), success=True),
            verification(DB, NOW + timedelta(hours=1), success=False),  # after `now`
        ]
        for row in rows:
            catalog.save_verification(row)
        db, web = catalog.verification_report(now=NOW, days=7)
        assert web == catalog.verification_report(now=NOW, days=7, vm_key=WEB)[0]
        assert (web.vm_key, web.total, web.passed, web.failures) == (WEB, 3, 2, (web_fail,))
        assert web.last_verified == ago(hours=1)
        assert web.success_rate == pytest.approx(2 / 3)
        assert (db.vm_key, db.total, db.passed, db.last_verified) == (DB, 1, 1, ago(days=3))

    def test_a_retried_verification_replaces_its_row(self, catalog: TableCatalog) -> None:
        """The same verification (a backup's id) failed, then retried and passed: one row,
        the retry's, so the report counts backups verified, not runs."""
        failed = verification(WEB, ago(hours=3), success=False)
        retried = dataclasses.replace(verification(WEB, ago(hours=1), success=True), id=failed.id)
        catalog.save_verification(failed)
        catalog.save_verification(retried)
        catalog.save_verification(retried)  # and the retry's step delivered twice
        [web] = catalog.verification_report(now=NOW, days=7, vm_key=WEB)
        assert (web.total, web.passed, web.failures, web.last_verified) == (1, 1, (), ago(hours=1))

    def test_a_vm_asked_for_without_verifications_gets_an_empty_summary(
        self, catalog: TableCatalog
    ) -> None:
        [summary] = catalog.verification_report(now=NOW, days=7, vm_key=WEB)
        assert (summary.total, summary.success_rate, summary.last_verified) == (0, None, None)

    @pytest.mark.parametrize("days", [0, -1], ids=["zero", "negative"])
    def test_a_window_of_no_days_is_refused(self, catalog: TableCatalog, days: int) -> None:
        with pytest.raises(ValueError, match="days must be a whole number of at least 1"):
            catalog.verification_report(now=NOW, days=days)


class TestDrTests:
    """DR history, success rates per VM and for the fleet, RTO percentiles."""

    @pytest.fixture
    def seeded(self, catalog: TableCatalog) -> TableCatalog:
        for test in [
            dr_test(WEB, ago(days=1), success=True, rto=300.0),
            dr_test(WEB, ago(days=2), success=False, rto=None),
            dr_test(WEB, ago(days=3), success=True, rto=500.0),
            dr_test(WEB, ago(days=40), success=True, rto=9999.0),  # outside 30 days
            dr_test(WEB, ago(minutes=5), success=None),  # still running
            dr_test(DB, ago(days=4), success=True, rto=700.0),
            dr_test(DB, ago(days=5), success=False, rto=800.0),
        ]:
            catalog.save_dr_test(test)
        return catalog

    def test_history_is_the_vms_window_newest_first(self, seeded: TableCatalog) -> None:
        history = seeded.dr_history(WEB, now=NOW, days=30)
        assert [t.started_at for t in history] == [
            ago(minutes=5),
            ago(days=1),
            ago(days=2),
            ago(days=3),
        ]

    def test_success_rates_per_vm_then_fleet_count_finished_tests(
        self, seeded: TableCatalog
    ) -> None:
        rates = seeded.dr_success_rates(now=NOW, days=30)
        assert [(r.vm_key, r.total, r.succeeded, r.last_rto_seconds) for r in rates] == [
            (DB, 2, 1, 700.0),
            (WEB, 3, 2, 300.0),
            ("*", 5, 3, 300.0),
        ]
        assert rates[-1].rate == pytest.approx(0.6)

    def test_success_rate_of_one_vm_keeps_the_fleet_row(self, seeded: TableCatalog) -> None:
        rates = seeded.dr_success_rates(now=NOW, days=30, vm_key=DB)
        assert [(r.vm_key, r.total, r.succeeded) for r in rates] == [(DB, 2, 1), ("*", 2, 1)]

    def test_last_rto_is_none_when_the_newest_finished_test_failed(
        self, seeded: TableCatalog
    ) -> None:
        [web, _fleet] = seeded.dr_success_rates(now=ago(days=1, minutes=1), days=30, vm_key=WEB)
        assert (web.total, web.last_rto_seconds) == (2, None)

    def test_rto_percentiles_are_nearest_rank_over_successful_tests(
        self, catalog: TableCatalog
    ) -> None:
        for minute, rto in enumerate([100.0, 20.0, 90.0, 30.0, 80.0, 40.0, 70.0, 50.0, 60.0, 10.0]):
            catalog.save_dr_test(dr_test(WEB, ago(hours=1, minutes=minute), True, rto))
        catalog.save_dr_test(dr_test(DB, ago(hours=2), success=False, rto=5000.0))
        result = catalog.rto_percentiles(now=NOW, days=1, percentiles=(10, 50, 90, 95, 100))
        assert result == {10: 10.0, 50: 50.0, 90: 90.0, 95: 100.0, 100: 100.0}

    def test_rto_percentiles_of_one_vm_and_of_none(self, seeded: TableCatalog) -> None:
        assert seeded.rto_percentiles(now=NOW, days=30, vm_key=DB) == {
            50: 700.0,
            90: 700.0,
            99: 700.0,
        }
        assert seeded.rto_percentiles(now=NOW, days=30, vm_key="rg~nothing") == {}

    def test_a_percentile_outside_1_to_100_is_refused(self, catalog: TableCatalog) -> None:
        with pytest.raises(ValueError, match=r"percentiles must be in 1..100, got \[0, 101\]"):
            catalog.rto_percentiles(now=NOW, days=1, percentiles=(0, 50, 101))


class TestFailovers:
    """One row per VM failover, upserted on (start, id): a repeated write converges."""

    def _failover(self, vm_key: str, started: datetime, **changes: Any) -> Failover:
        row = Failover(
            id=f"failover-{uuid.uuid4().hex[:8]}",
            vm_key=vm_key,
            vm_name=vm_key.split("~")[-1],
            backup_id="20260301t020000z-abc",
            source_region="eastus",
            target_region="westus2",
            resource_group="rg-backupdr-recovery-westus2",
            started_at=started,
            region_failover_id="region-failover-eastus-20260301t115000z",
            recovery_group=1,
        )
        return dataclasses.replace(row, **changes)

    def test_a_rewritten_row_is_one_row_and_reads_back_newest_first(
        self, catalog: TableCatalog
    ) -> None:
        first = self._failover(WEB, ago(minutes=10))
        catalog.save_failover(first)
        done = dataclasses.replace(
            first,
            state="completed",
            completed_at=ago(minutes=6),
            rto_seconds=240.0,
            phase_seconds={"restore": 30.0, "create_vm": 60.0, "boot": 90.0, "guest_check": 60.0},
            vm_id="/subscriptions/s/resourceGroups/g/providers/Microsoft.Compute/virtualMachines/w",
        )
        catalog.save_failover(done)
        catalog.save_failover(done)
        later = self._failover(DB, ago(minutes=5), region_failover_id=None, recovery_group=None)
        catalog.save_failover(later)
        assert catalog.failovers(now=NOW, days=1) == [later, done]
        assert catalog.failovers(now=NOW, days=1, vm_key=WEB) == [done]
        assert catalog.failovers(now=ago(minutes=8), days=1) == [done]


class TestAuditLog:
    """Every create/delete the app made, by UTC day, oldest first."""

    def entry(self, at: datetime, vm: str, resource: str) -> AuditEntry:
        return AuditEntry(at=at, action="delete", resource_id=resource, result="ok", vm_key=vm)

    def test_entries_since_a_moment_oldest_first_across_days(self, catalog: TableCatalog) -> None:
        entries = [
            self.entry(ago(days=2), WEB, "old"),
            self.entry(ago(days=1, hours=1), WEB, "yesterday"),
            self.entry(ago(hours=1), DB, "today-db"),
            self.entry(ago(minutes=1), WEB, "today-web"),
        ]
        for entry in reversed(entries):
            catalog.audit(entry)
        assert catalog.audit_entries(since=ago(days=1, hours=2)) == entries[1:]
        assert catalog.audit_entries(since=ago(days=3), vm_key=WEB) == [
            entries[0],
            entries[1],
            entries[3],
        ]

    def test_auditing_the_same_entry_again_keeps_one_row(self, catalog: TableCatalog) -> None:
        entry = self.entry(ago(hours=1), WEB, "snap")
        catalog.audit(entry)
        catalog.audit(entry)
        assert catalog.audit_entries(since=ago(days=1)) == [entry]


class TestClaims:
    """A piece of work is claimed once: the app's answer to sub-orchestrations not deduplicated."""

    STALE = timedelta(days=2)
    WORK = "backup~20260301t020000z-abc"

    def test_the_first_owner_wins_and_a_second_owner_sees_it_held(
        self, catalog: TableCatalog
    ) -> None:
        first = catalog.claim(WEB, self.WORK, "fleet-a", now=NOW, stale_after=self.STALE)
        second = catalog.claim(WEB, self.WORK, "fleet-b", now=NOW, stale_after=self.STALE)

        assert (first.owner, first.generation) == ("fleet-a", 1)
        assert (second.owner, second.generation) == ("fleet-a", 1)

    def test_the_same_owner_claiming_again_gets_the_same_claim(self, catalog: TableCatalog) -> None:
        catalog.claim(WEB, self.WORK, "fleet-a", now=NOW, stale_after=self.STALE)
        again = catalog.claim(WEB, self.WORK, "fleet-a", now=ago(hours=-1), stale_after=self.STALE)

        assert (again.owner, again.generation, again.claimed_at) == ("fleet-a", 1, NOW)

    def test_a_released_claim_is_taken_over_with_the_next_generation(
        self, catalog: TableCatalog
    ) -> None:
        catalog.claim(WEB, self.WORK, "fleet-a", now=NOW, stale_after=self.STALE)
        catalog.release(WEB, self.WORK, "fleet-b")  # not its claim: nothing happens
        held = catalog.claim(WEB, self.WORK, "fleet-c", now=NOW, stale_after=self.STALE)
        catalog.release(WEB, self.WORK, "fleet-a")
        taken = catalog.claim(WEB, self.WORK, "fleet-c", now=NOW, stale_after=self.STALE)

        assert held.owner == "fleet-a"
        assert (taken.owner, taken.generation, taken.released) == ("fleet-c", 2, False)

    def test_a_claim_whose_owner_died_is_taken_over_once_it_is_stale(
        self, catalog: TableCatalog
    ) -> None:
        catalog.claim(WEB, self.WORK, "dead", now=ago(days=3), stale_after=self.STALE)
        taken = catalog.claim(WEB, self.WORK, "alive", now=NOW, stale_after=self.STALE)

        assert (taken.owner, taken.generation) == ("alive", 2)

    def test_racing_owners_end_with_exactly_one_claim(self, catalog: TableCatalog) -> None:
        owners = [f"run-{n}" for n in range(8)]
        with ThreadPoolExecutor(8) as pool:
            claims = list(
                pool.map(
                    lambda owner: catalog.claim(
                        DB, self.WORK, owner, now=NOW, stale_after=self.STALE
                    ),
                    owners,
                )
            )

        assert len({claim.owner for claim in claims}) == 1

    def test_overlapping_fleet_runs_queue_their_pages_on_the_write_hold(
        self, catalog: TableCatalog
    ) -> None:
        """Pages of overlapping runs racing for the write bucket each get a stretch of their
        own, one after another: two runs never pace one bucket together."""
        assert catalog.write_hold() is None
        held = timedelta(seconds=80)
        runs = [f"fleet-{n}" for n in range(8)]
        with ThreadPoolExecutor(len(runs)) as pool:
            starts = sorted(pool.map(lambda run: catalog.hold_writes(run, NOW, held), runs))
        assert starts == [NOW + n * held for n in range(8)]
        assert catalog.writes_held_until() == NOW + 8 * held

    def test_a_runs_next_page_extends_its_hold_and_a_repeat_gets_its_start(
        self, catalog: TableCatalog
    ) -> None:
        """A page of the run holding the bucket starts at once and extends the hold, never
        shortens it; a page queued behind another run asking again (an activity run twice)
        gets the start it got, not a second place in the queue."""
        held = timedelta(seconds=80)
        assert catalog.hold_writes("first", NOW, held) == NOW
        later = NOW + timedelta(seconds=30)
        assert catalog.hold_writes("first", later, timedelta(seconds=10)) == later
        assert catalog.writes_held_until() == NOW + held
        assert catalog.hold_writes("first", later, held) == later
        assert catalog.writes_held_until() == later + held
        queued = catalog.hold_writes("second", later, held)
        assert queued == later + held
        assert catalog.hold_writes("second", later + timedelta(seconds=5), held) == queued
        assert catalog.write_hold() == WriteHold("second", queued, queued + held)
        ended = queued + held  # past every hold: whoever asks has it at once
        assert catalog.hold_writes("first", ended, held) == ended

    def test_racing_reservations_queue_after_the_hold_one_refill_each(
        self, catalog: TableCatalog
    ) -> None:
        """Each reservation gets its own stretch of the bucket's refill (10 writes a second),
        after the fleet run's hold: racing ones never share a second, so what they send
        together never outruns the refill."""
        held = NOW + timedelta(seconds=100)
        catalog.hold_writes("fleet", NOW, held - NOW)
        with ThreadPoolExecutor(8) as pool:
            starts = sorted(pool.map(lambda _: catalog.reserve_writes(20, NOW), range(8)))
        assert starts == [held + timedelta(seconds=2 * n) for n in range(8)]
        later = NOW + timedelta(minutes=10)  # the queue has drained: at once
        assert catalog.reserve_writes(8, later) == later
        assert catalog.reserve_writes(8, later) == later + timedelta(seconds=0.8)


class TestListings:
    """What a fleet run keeps for its later pages and backups: the VM and NICs with each claim,
    the subscription's NICs, and what a DR-test group's restores came from."""

    NIC = NicConfig(
        "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/networkInterfaces/Nic-1"
    )

    def test_a_claim_keeps_the_vm_and_nics_as_listed(self, catalog: TableCatalog) -> None:
        vm = VM(
            id="/subscriptions/s/vm",
            name="web-01",
            resource_group="rg",
            location="eastus",
            disks=(),
        )
        catalog.claim(
            WEB,
            "backup~x",
            "fleet-a",
            now=NOW,
            stale_after=timedelta(days=2),
            vm=vm,
            nics=(self.NIC,),
        )

        claim = catalog.get_claim(WEB, "backup~x")
        assert claim is not None
        assert (claim.vm, claim.nics) == (vm, (self.NIC,))
        assert catalog.get_claim(WEB, "backup~y") is None

    def test_a_new_list_of_nics_forgets_the_nics_not_in_it(self, catalog: TableCatalog) -> None:
        other = dataclasses.replace(self.NIC, id=self.NIC.id.replace("Nic-1", "nic-2"))
        catalog.save_nic_listing(NicListing("run-1", 2, NOW), [self.NIC, other])
        catalog.save_nic_listing(NicListing("run-2", 1, NOW), [self.NIC])

        assert catalog.nic_listing() == NicListing("run-2", 1, NOW)
        assert catalog.listed_nics("run-2", [self.NIC.id, other.id]) == {
            self.NIC.id.lower(): self.NIC
        }
        assert catalog.listed_nics("run-1", [self.NIC.id]) == {}, (
            "another run's list is not this one's"
        )
        assert len(raw_rows(catalog, "nics")) == 2  # the NIC and the mark

    def test_a_groups_restores_are_kept_per_group(self, catalog: TableCatalog) -> None:
        listing = InUseListing("rg-backupdr-drtest-eastus", NOW, ("b-1", "b-2"))
        catalog.save_in_use_listing(listing)

        assert catalog.in_use_listing("RG-backupdr-drtest-eastus") == listing
        assert catalog.in_use_listing("rg-backupdr-drtest-westus2") is None


class TestManualLimit:
    """The hourly limit of manual requests: one row per VM, updated under its ETag."""

    HOUR = timedelta(hours=1)

    def test_racing_requests_admit_exactly_the_limit(self, catalog: TableCatalog) -> None:
        """Sixteen requests at once against a limit of four: reading the count and then
        writing it (the audit-log count it replaced) let all sixteen through."""
        with ThreadPoolExecutor(16) as pool:
            answers = list(
                pool.map(lambda n: catalog.admit(WEB, NOW, window=self.HOUR, limit=4), range(16))
            )
        assert answers.count(None) == 4
        assert {a for a in answers if a is not None} == {NOW + self.HOUR}

    def test_a_request_is_admitted_again_once_the_oldest_leaves_the_window(
        self, catalog: TableCatalog
    ) -> None:
        for minutes in (0, 10):
            assert (
                catalog.admit(WEB, NOW + timedelta(minutes=minutes), window=self.HOUR, limit=2)
                is None
            )
        later = NOW + timedelta(minutes=30)
        assert catalog.admit(WEB, later, window=self.HOUR, limit=2) == NOW + self.HOUR
        assert catalog.admit(DB, later, window=self.HOUR, limit=2) is None  # its own count
        after = NOW + self.HOUR + timedelta(seconds=1)
        assert catalog.admit(WEB, after, window=self.HOUR, limit=2) is None
