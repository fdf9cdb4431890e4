"""The catalog holds under load and attack: paging, racing writers, hostile keys (Azurite)."""

from __future__ import annotations

import dataclasses
import threading
import uuid
from datetime import timedelta
from typing import Any, ClassVar

import pytest
from azure.data.tables import TableServiceClient
from azure.identity import ManagedIdentityCredential

from local.azurite import Azurite, free_port
from shared.adapters.catalog import TableCatalog, catalog_from_settings
from shared.adapters.entities import table_key
from shared.domain.models import AuditEntry, ReplicationStatus, Tier, VerificationState, vm_key
from shared.errors import TransientError
from shared.settings import Settings, SettingsError
from tests.integration.test_catalog import NOW, backup, dr_test, job, verification

pytestmark = pytest.mark.azurite

WEB = vm_key("rg-app", "web-01")
EVIL = "rg-app~x' or PartitionKey ne '"  # not lowercased: the filter's own casing


@pytest.fixture
def catalog(azurite: Azurite) -> TableCatalog:
    """A catalog on tables of its own, so no test sees another's rows."""
    service = TableServiceClient.from_connection_string(azurite.connection_string)
    return TableCatalog(service, prefix="t" + uuid.uuid4().hex[:12])


class TestPaging:
    """Table Storage answers at most 1,000 rows a page; the catalog follows continuations."""

    ROWS = 1_050

    def test_a_query_returns_every_row_past_the_first_page(self, catalog: TableCatalog) -> None:
        started = NOW - timedelta(days=1)
        jobs = [
            job(WEB, f"b{n:05d}", "os", ReplicationStatus.PENDING, started + timedelta(seconds=n))
            for n in range(self.ROWS)
        ]
        catalog.save_replication_jobs(jobs)  # eleven batch transactions of <= 100 rows
        one_vm = catalog.list_replication_jobs(vm_key=WEB)
        fleet = catalog.list_replication_jobs(status=ReplicationStatus.PENDING)
        assert len(one_vm) == len(fleet) == self.ROWS
        assert one_vm == sorted(jobs, key=lambda j: j.started_at, reverse=True)

    def test_a_batch_writes_each_row_once_when_it_repeats(self, catalog: TableCatalog) -> None:
        pending = job(WEB, "b1", "os", ReplicationStatus.PENDING, NOW)
        done = job(WEB, "b1", "os", ReplicationStatus.COMPLETED, NOW)
        catalog.save_replication_jobs([pending, done])  # one transaction may touch a row once
        assert catalog.list_replication_jobs() == [done]


class TestConcurrentWriters:
    """update_backup keeps both writers' changes when they race on one row."""

    # Each field is written once, so any lost update still shows in the final row.
    CHANGES: ClassVar[tuple[dict[str, Any], dict[str, Any]]] = (
        {
            "size_gb": 512,
            "manual": True,
            "hold": True,
            "replica_region": "northeurope",
            "error_message": "lun2 skipped",
            "vm_name": "web-01-renamed",
        },
        {
            "verification": VerificationState.PASSED,
            "verified_at": NOW,
            "replication_status": ReplicationStatus.COMPLETED,
            "managed": False,
            "tier": Tier.MONTHLY,
            "region": "eastus2",
        },
    )

    def test_two_threads_changing_different_fields_both_win(self, catalog: TableCatalog) -> None:
        original = backup(WEB, NOW - timedelta(hours=1))
        catalog.save_backup(original)
        start = threading.Barrier(len(self.CHANGES))
        failures: list[BaseException] = []

        def writer(changes: dict[str, Any]) -> None:
            try:
                start.wait()
                for field, value in changes.items():
                    catalog.update_backup(WEB, original.backup_id, **{field: value})
            except BaseException as error:  # surfaced by the assertion below
                failures.append(error)

        threads = [threading.Thread(target=writer, args=(c,)) for c in self.CHANGES]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert failures == []
        both = {**self.CHANGES[0], **self.CHANGES[1]}
        assert catalog.get_backup(WEB, original.backup_id) == dataclasses.replace(original, **both)


class TestHostileKeys:
    """A VM name built to widen a filter only ever matches its own rows."""

    @pytest.fixture
    def seeded(self, catalog: TableCatalog) -> TableCatalog:
        for vm in (WEB, EVIL):
            catalog.save_backup(backup(vm, NOW - timedelta(hours=1)))
            catalog.save_replication_job(job(vm, "b1", "os", ReplicationStatus.FAILED, NOW))
            catalog.save_verification(verification(vm, NOW - timedelta(hours=1), success=False))
            catalog.save_dr_test(dr_test(vm, NOW - timedelta(hours=1), success=True, rto=60.0))
            catalog.audit(
                AuditEntry(at=NOW, action="create", resource_id=vm, result="ok", vm_key=vm)
            )
        return catalog

    def test_every_query_for_the_hostile_vm_returns_only_its_rows(
        self, seeded: TableCatalog
    ) -> None:
        answers: list[list[str | None]] = [
            [b.vm_key for b in seeded.list_backups(EVIL, include_deleted=True)],
            [j.vm_key for j in seeded.list_replication_jobs(vm_key=EVIL)],
            [s.vm_key for s in seeded.verification_report(now=NOW, days=1, vm_key=EVIL)],
            [t.vm_key for t in seeded.dr_history(EVIL, now=NOW, days=1)],
            [r.vm_key for r in seeded.dr_success_rates(now=NOW, days=1, vm_key=EVIL)[:-1]],
            [e.vm_key for e in seeded.audit_entries(since=NOW - timedelta(days=1), vm_key=EVIL)],
        ]
        assert answers == [[EVIL]] * len(answers)
        assert seeded.dr_success_rates(now=NOW, days=1, vm_key=EVIL)[-1].total == 1
        assert seeded.rto_percentiles(now=NOW, days=1, vm_key=EVIL, percentiles=[100]) == {
            100: 60.0
        }

    @pytest.mark.parametrize(
        "hostile",
        ["x' or PartitionKey ne '", "' or RowKey ne '", "x' or 1 eq 1 or RowKey eq '"],
        ids=["partition", "row", "always-true"],
    )
    def test_hostile_ids_find_nothing(self, seeded: TableCatalog, hostile: str) -> None:
        assert seeded.find_backup(hostile) is None
        assert seeded.get_backup(hostile, hostile) is None
        assert seeded.list_backups(hostile) == []
        assert seeded.list_replication_jobs(vm_key=hostile) == []


class TestKeyEscaping:
    """Any text makes a legal key; names Azure allows stay readable."""

    @pytest.mark.parametrize(
        "key",
        ["rg/app~web", "rg\\app~web", "rg#app~w?b", "rg%20app~web", "rg\tapp~web\x7f", "rg~wéb-ü"],
        ids=["slash", "backslash", "hash and question", "percent", "control", "unicode"],
    )
    def test_a_vm_key_with_characters_tables_forbid_round_trips(
        self, catalog: TableCatalog, key: str
    ) -> None:
        record = backup(key, NOW, backup_id=f"{key}/b1")
        catalog.save_backup(record)
        assert catalog.get_backup(key, record.backup_id) == record
        assert catalog.list_backups(key) == [record]
        assert catalog.find_backup(record.backup_id) == record

    def test_azure_names_are_kept_and_escapes_never_collide(self) -> None:
        assert table_key("rg-app.prod_(1)~web-01") == "rg-app.prod_(1)~web-01"
        assert table_key("a/b") == "a!2Fb"
        assert table_key("a!2Fb") == "a!212Fb"


class TestFactory:
    """catalog_from_settings picks the connection the settings name, or says what is missing."""

    def test_a_connection_string_reaches_the_tables(self, azurite: Azurite) -> None:
        settings = Settings(subscription_id="s", tables_connection=azurite.connection_string)
        catalog = catalog_from_settings(settings)
        record = backup(f"rg~vm-{uuid.uuid4().hex[:8]}", NOW)
        catalog.save_backup(record)
        assert catalog.find_backup(record.backup_id) == record

    def test_development_storage_means_azurite_on_its_well_known_port(self) -> None:
        catalog = catalog_from_settings(Settings(subscription_id="s"))
        assert catalog.service.url.startswith("http://127.0.0.1:10002/devstoreaccount1")

    def test_an_account_url_uses_the_managed_identity(self) -> None:
        settings = Settings(
            subscription_id="s",
            credential="managed-identity",
            managed_identity_client_id="00000000-0000-0000-0000-000000000001",
            tables_connection=None,
            tables_account_url="https://stbackupdr.table.core.windows.net",
        )
        catalog = catalog_from_settings(settings)
        assert catalog.service.url.startswith("https://stbackupdr.table.core.windows.net")
        assert isinstance(catalog.service.credential, ManagedIdentityCredential)

    def test_no_table_setting_is_a_clear_error(self) -> None:
        settings = Settings(subscription_id="s", tables_connection=None)
        with pytest.raises(SettingsError, match="set BACKUPDR_TABLES_CONNECTION or BACKUPDR"):
            catalog_from_settings(settings)

    def test_the_table_prefix_setting_names_the_tables(self) -> None:
        catalog = catalog_from_settings(Settings(subscription_id="s", table_prefix="e2e7"))
        assert catalog.table_name("backups") == "e2e7backups"

    @pytest.mark.parametrize("prefix", ["1abc", "a-b", "x" * 42], ids=["digit", "dash", "long"])
    def test_a_table_prefix_that_would_make_a_bad_table_name_is_refused(self, prefix: str) -> None:
        with pytest.raises(SettingsError, match="must be a letter then letters or digits"):
            catalog_from_settings(Settings(subscription_id="s", table_prefix=prefix))


class TestTablesAndErrors:
    """Tables appear on first use; an unreachable service is a transient error, not an SDK one."""

    def test_reading_a_new_catalog_creates_its_tables_and_finds_nothing(
        self, catalog: TableCatalog
    ) -> None:
        assert catalog.unverified_backups() == []
        assert catalog.latest_backups() == {}
        names = {t.name for t in catalog.service.list_tables()}
        assert catalog.table_name("backups") in names

    def test_an_unreachable_table_service_raises_transient_error(self) -> None:
        port = free_port()
        connection = Azurite(port=port).connection_string
        service = TableServiceClient.from_connection_string(connection, retry_total=0)
        catalog = TableCatalog(service, prefix="unreachable")
        with pytest.raises(TransientError, match="create table"):
            catalog.save_backup(backup(WEB, NOW))
