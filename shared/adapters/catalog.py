"""The backup catalog on Azure Table Storage (the BackupCatalog port), and its factory.

Tables and keys (DESIGN.md "State"; keys escaped by `entities.table_key`):

| table           | PartitionKey | RowKey                                        |
| backups         | vm_key       | backup_id                                     |
| replicationjobs | vm_key       | job id (deterministic: backup id + disk role) |
| verifications   | vm_key       | inverted verified_at + id (newest first)      |
| drtests         | vm_key       | inverted started_at + id (newest first)       |
| failovers       | vm_key       | inverted started_at + id (newest first)       |
| auditlog        | UTC day      | time + short hash of the entry (sortable)     |
| claims          | vm_key       | the work claimed (e.g. backup~<backup id>),   |
|                 |              | or "manual-requests" (the hourly limit)       |
| retention       | vm_key       | "state": what retention remembers of the VM   |
| latestbackups   | "*"          | vm_key: summary of its newest completed       |
|                 |              | backup (or none); "~built": index is whole    |
| boottimes       | resource     | "~bounds": what the group's boots took;       |
|                 | group        | a VM's name: when it was last seen starting   |

A VM's backups are few, so they are read whole and ordered newest first here; verifications
and DR tests grow without bound, so their RowKeys invert time and one partition already reads
newest first. Rows from several partitions are merged and ordered here.

Writes replace whole rows on deterministic keys, so a retried step rewrites the same row and a
field set back to None loses its column. Every filter is built with `parameters=`, never by
formatting a value into the text. SDK errors leave as the errors in `shared/errors.py`.

`latestbackups` is an index kept on the write path so that a fleet run reads one row per VM
(in one of 256 partitions by a hash of its key), not every completed backup ever taken. After
every backup write, one step reads the VM's index row, then the backup rows it needs, then writes
the row back under the ETag read, even unchanged: a step racing with older reads then fails its
write and starts over, so the step that lands last read the newest rows. A VM with no row yet is
computed from its whole partition; a catalog written before the index is indexed once from a full
scan, then marked built.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import re
import threading
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from azure.core import MatchConditions
from azure.core.exceptions import (
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.data.tables import TableClient, TableEntity, TableServiceClient, UpdateMode

from shared.adapters import telemetry
from shared.adapters.credentials import credential_from_settings
from shared.adapters.entities import from_entity, table_key, to_entity
from shared.domain import pacing
from shared.domain.boot import BootBounds
from shared.domain.copytime import SAMPLES, CopySample
from shared.domain.models import (
    VM,
    AuditEntry,
    Backup,
    BackupState,
    Claim,
    DrTest,
    Failover,
    GivenGroups,
    InUseListing,
    JsonRecord,
    ListedNic,
    NicConfig,
    NicListing,
    ReplicationJob,
    ReplicationStatus,
    RetentionState,
    Verification,
    VerificationState,
    WriteHold,
)
from shared.errors import NotFoundError, PermanentError, ThrottledError, TransientError
from shared.ports import DrSuccessRate, VerificationSummary
from shared.settings import Settings, SettingsError

R = TypeVar("R", bound=JsonRecord)

BACKUPS = "backups"
REPLICATION_JOBS = "replicationjobs"
VERIFICATIONS = "verifications"
DR_TESTS = "drtests"
FAILOVERS = "failovers"
AUDIT_LOG = "auditlog"
CLAIMS = "claims"
MANUAL_REQUESTS = "manual-requests"  # the claims row counting a VM's manual requests
# The claims row saying until when a fleet run spends the write bucket on snapshots (a vm_key
# is never "fleet": it always holds a "~").
WRITES_HELD = ("fleet", "writes")
WRITES_RESERVED = ("fleet", "reserved")
RETENTION = "retention"
RETENTION_ROW = "state"
IN_USE_PK = "groups"  # the in-use table's one partition: a row per resource group ...
GIVEN_GROUPS = "~given"  # ... and the groups DR tests were given (a group's name has no "~")
NICS_PK = "nic"  # the nics table: a row per NIC (row key: its id in lower case) ...
NICS_MARK_PK, NICS_MARK_ROW = "listing", "last"  # ... and the mark of the run that listed them
LATEST_BACKUPS = "latestbackups"
BOOT_TIMES = "boottimes"
COPY_TIMES = "copytimes"
IN_USE = "inuse"
NICS = "nics"
BOOT_BOUNDS = "~bounds"  # the group's row in boottimes (a VM's name never starts with "~")
# The index row saying every VM is indexed (a vm_key is never "~..."), in the index's first
# partition. Its rows were all in FLEET, marked "~built", before; they are spread since
# (`_index_partition`), so such a catalog is indexed again, once, and its old partition left
# unread.
INDEX_BUILT = "~built-256"
# Every table, as infra/app/storage.bicep creates them: the app holds data rights only.
TABLES = (
    BACKUPS,
    REPLICATION_JOBS,
    VERIFICATIONS,
    DR_TESTS,
    FAILOVERS,
    AUDIT_LOG,
    CLAIMS,
    RETENTION,
    LATEST_BACKUPS,
    BOOT_TIMES,
    COPY_TIMES,
    IN_USE,
    NICS,
)

FLEET = "*"
# What a fleet run needs of each VM's newest backup; the snapshot list is the bulk of a row.
SUMMARY_COLUMNS = [
    "backup_id",
    "vm_key",
    "vm_id",
    "vm_name",
    "region",
    "slot",
    "taken_at",
    "tier",
    "state",
    "manual",
    "replica_region",
    "replication_status",
    "verification",
    "verified_at",
    "size_gb",
]
_SUMMARY = frozenset(SUMMARY_COLUMNS)
_INDEX_PARTITIONS = (FLEET + "00", FLEET + "ff")  # the first and the last
# A table transaction holds at most 100 operations, all in one partition.
BATCH_LIMIT = 100
# Attempts of one update_backup before it gives up on a row that keeps changing under it.
UPDATE_ATTEMPTS = 10

# `UseDevelopmentStorage=true` is the storage emulator's documented shorthand; the tables SDK
# does not expand it, so it is expanded here to Azurite's well-known public development account.
DEVELOPMENT_STORAGE = "UseDevelopmentStorage=true"
AZURITE_TABLES = (
    "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
    "AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/"
    "KBHBeksoGMGw==;TableEndpoint=http://127.0.0.1:10002/devstoreaccount1;"
)

_PREFIX = re.compile(r"^([A-Za-z][A-Za-z0-9]{0,40})?\Z")
# Inverted times count down from here in microseconds, zero-padded so text order is time order.
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_INVERT_FROM = 10**19 - 1

# Tables this process has already made sure exist, by (account URL, table name).
_ensured: set[tuple[str, str]] = set()
_ensured_lock = threading.Lock()


def catalog_from_settings(settings: Settings) -> TableCatalog:
    """The catalog the settings point at: a connection string, else an account URL + identity.

    Locally `UseDevelopmentStorage=true` (or Azurite's full string); in Azure the storage
    account's table URL with the app's credential (the managed identity), no stored key.
    Table names carry `settings.table_prefix`.
    """
    if settings.tables_connection:
        connection = settings.tables_connection.strip()
        if connection.rstrip(";").lower() == DEVELOPMENT_STORAGE.lower():
            connection = AZURITE_TABLES
        try:
            service = TableServiceClient.from_connection_string(connection)
        except ValueError as error:
            raise SettingsError(f"BACKUPDR_TABLES_CONNECTION is not usable: {error}") from None
    elif settings.tables_account_url:
        service = TableServiceClient(
            endpoint=settings.tables_account_url, credential=credential_from_settings(settings)
        )
    else:
        raise SettingsError(
            "no Table Storage configured: set BACKUPDR_TABLES_CONNECTION or "
            "BACKUPDR_TABLES_ACCOUNT_URL"
        )
    try:
        return TableCatalog(service, prefix=settings.table_prefix)
    except ValueError as error:
        raise SettingsError(f"BACKUPDR_TABLE_PREFIX: {error}") from None


class TableCatalog:
    """BackupCatalog on Azure Table Storage (Azurite locally).

    `prefix` namespaces the table names (`t1backups`, ...), so tests and side-by-side
    installations never see each other's rows. Tables are created on first use, once per process.
    """

    def __init__(self, service: TableServiceClient, *, prefix: str = "") -> None:
        if not _PREFIX.match(prefix):
            raise ValueError(f"table prefix {prefix!r} must be a letter then letters or digits")
        self.service = service
        self._prefix = prefix

    # -- backups ------------------------------------------------------------------------------

    def save_backup(self, backup: Backup) -> None:
        """Upsert a backup on its deterministic key (a retried step rewrites the same row)."""
        self._upsert(BACKUPS, to_entity(backup, backup.vm_key, backup.backup_id))
        self._index_backup(backup.vm_key, backup.backup_id)

    def get_backup(self, vm_key: str, backup_id: str) -> Backup | None:
        entity = self._get(BACKUPS, vm_key, backup_id)
        return None if entity is None else from_entity(Backup, entity)

    def find_backup(self, backup_id: str) -> Backup | None:
        """A backup by id alone (ids are unique across VMs): one query across partitions."""
        found = self._query(Backup, BACKUPS, "RowKey eq @id", id=table_key(backup_id))
        return found[0] if found else None

    def list_backups(
        self, vm_key: str, *, include_deleted: bool = False, since: datetime | None = None
    ) -> list[Backup]:
        """A VM's backups, newest first (by taken_at, then id). Purged rows stay as history, so
        a caller that needs only recent ones says `since`: the server filters, and a year of
        backups is not read to find this month's."""
        clauses = ["PartitionKey eq @vm"]
        parameters: dict[str, Any] = {"vm": table_key(vm_key)}
        if not include_deleted:
            clauses.append("state ne @deleted")
            parameters["deleted"] = BackupState.DELETED.value
        if since is not None:
            clauses.append("taken_at ge @since")
            parameters["since"] = _aware(since, "since").astimezone(UTC)
        backups = self._query(Backup, BACKUPS, " and ".join(clauses), **parameters)
        return sorted(backups, key=_backup_age, reverse=True)

    def update_backup(
        self,
        vm_key: str,
        backup_id: str,
        merge: Callable[[Backup], dict[str, object]] | None = None,
        /,
        **changes: object,
    ) -> Backup:
        """Change some fields of a backup under ETag concurrency, retrying on a lost race.

        Each attempt reads the row and its ETag, applies `changes` (and what `merge` makes of
        the row as read) and replaces the row only if nobody wrote it in between (412
        otherwise), so two writers changing different fields, or different parts of one
        (`merge`), both keep their change. Values may be given as the record holds them or as
        their JSON form (enum text, ISO datetimes, snapshot dicts).
        """
        unknown = sorted(set(changes) - set(Backup.__dataclass_fields__))
        if unknown:
            raise ValueError(f"update_backup: Backup has no field {', '.join(unknown)}")
        table = self._table(BACKUPS)
        for _ in range(UPDATE_ATTEMPTS):
            entity = self._get(BACKUPS, vm_key, backup_id)
            if entity is None:
                raise NotFoundError(f"backup {backup_id} of {vm_key} is not in the catalog")
            before = from_entity(Backup, entity)
            current = before.to_dict()
            current.update(_json_form({**changes, **(merge(before) if merge else {})}))
            updated = Backup.from_dict(current)
            try:
                with _azure_errors("update backup"):
                    table.update_entity(
                        to_entity(updated, vm_key, backup_id),
                        mode=UpdateMode.REPLACE,
                        etag=entity.metadata["etag"],
                        match_condition=MatchConditions.IfNotModified,
                    )
            except ResourceModifiedError:
                continue
            if BackupState.COMPLETED in (before.state, updated.state):  # else not indexed
                self._index_backup(vm_key, backup_id)
            return updated
        raise TransientError(
            f"backup {backup_id} of {vm_key} changed under {UPDATE_ATTEMPTS} updates in a row"
        )

    def latest_backups(self, vm_keys: Iterable[str] | None = None) -> dict[str, Backup]:
        """The newest completed backup of every VM, or of `vm_keys`, without its snapshot list.

        Read from the index, whatever the history: all of it (one query), or one row per
        VM asked for, so a fleet run that asks for each page's VMs reads each VM's row once
        however many pages the fleet has. A catalog from before the index is indexed first
        (once)."""
        if vm_keys is None:
            rows = self._index_rows()
            if INDEX_BUILT not in rows:
                self._build_index(rows)
                rows = self._index_rows()
            found = list(rows.values())
        else:
            if self._get(LATEST_BACKUPS, _INDEX_PARTITIONS[0], INDEX_BUILT) is None:
                self._build_index(self._index_rows())
            read = (self._get(LATEST_BACKUPS, _index_partition(k), k) for k in set(vm_keys))
            found = [row for row in read if row is not None]
        indexed = [from_entity(Backup, row) for row in found if "backup_id" in row]
        return {backup.vm_key: backup for backup in sorted(indexed, key=lambda b: b.vm_key)}

    def boot_times(self, group: str, vm_name: str) -> tuple[BootBounds | None, float | None]:
        """(What the group's boots took, how many seconds after its provisioning the VM was
        last seen starting), each None when not known."""
        client = self._table(BOOT_TIMES)
        with _azure_errors(f"query {BOOT_TIMES}"):
            rows = {
                row["RowKey"]: row
                for row in client.query_entities(
                    "PartitionKey eq @group and (RowKey eq @bounds or RowKey eq @vm )",
                    parameters={
                        "group": table_key(group.lower()),
                        "bounds": BOOT_BOUNDS,
                        "vm": table_key(vm_name.lower()),
                    },
                )
            }
        bounds = rows.get(BOOT_BOUNDS)
        starting = rows.get(table_key(vm_name.lower()))
        return (
            None if bounds is None else BootBounds(float(bounds["lower"]), float(bounds["upper"])),
            None if starting is None else float(starting["seconds"]),
        )

    def note_starting(self, group: str, vm_name: str, seconds: float) -> None:
        """The VM was seen starting `seconds` after its provisioning (later reads overwrite)."""
        self._upsert(BOOT_TIMES, {**_boot_key(group, vm_name), "seconds": float(seconds)})

    def note_booted(self, group: str, vm_name: str, bounds: BootBounds | None) -> None:
        """The VM was seen running: the group's boots now took `bounds` (None: unchanged), and
        what was noted while it started is let go."""
        if bounds is not None:
            row = {"lower": float(bounds.lower), "upper": float(bounds.upper)}
            self._upsert(BOOT_TIMES, {**_boot_key(group, BOOT_BOUNDS), **row})
        key = _boot_key(group, vm_name)
        with _azure_errors(f"clear a VM's row in {BOOT_TIMES}"):
            self._table(BOOT_TIMES).delete_entity(key["PartitionKey"], key["RowKey"])

    def copy_samples(self, source: str, target: str) -> list[CopySample]:
        """What copies from `source` into `target` took, oldest first (the last SAMPLES of first
        copies and of later ones; a row from before `first` was kept holds later ones)."""
        row = self._get(COPY_TIMES, target.lower(), source.lower())
        kept = json.loads(row["samples"]) if row is not None else []
        return [CopySample(float(s[0]), float(s[1]), len(s) > 2 and bool(s[2])) for s in kept]

    def note_copy(self, source: str, target: str, sample: CopySample) -> None:
        """Add a copy's duration to the pair's samples. Two copies noting at once may lose one
        sample (last write wins): a sample is a hint, and the next copy brings another."""
        samples = [*self.copy_samples(source, target), sample]
        firsts = [s for s in samples if s.first]
        later = [s for s in samples if not s.first]
        kept = firsts[-SAMPLES:] + later[-SAMPLES:]
        self._upsert(
            COPY_TIMES,
            {
                "PartitionKey": table_key(target.lower()),
                "RowKey": table_key(source.lower()),
                "samples": json.dumps([[s.gib, s.seconds, s.first] for s in kept]),
            },
        )

    def _index_rows(self) -> dict[str, TableEntity]:
        """The index by RowKey, in one query of its partitions: VMs' rows and the "built"
        mark."""
        client = self._table(LATEST_BACKUPS)
        first, last = map(table_key, _INDEX_PARTITIONS)
        with _azure_errors(f"query {LATEST_BACKUPS}"):
            rows = client.query_entities(
                "PartitionKey ge @first and PartitionKey le @last",
                parameters={"first": first, "last": last},
            )
            return {row["RowKey"]: row for row in rows}

    def _build_index(self, rows: dict[str, TableEntity]) -> None:
        """Index the VMs that have no row yet from one full scan, then mark the index built.

        The scan is read after `rows`, and a row is only created where there was none, so a
        writer's step that got there first (it read later rows) is kept; runs twice harmlessly."""
        client = self._table(LATEST_BACKUPS)
        for vm_key, backup in self._scan_latest_backups().items():
            if table_key(vm_key) not in rows:
                with contextlib.suppress(ResourceExistsError), _azure_errors("build index"):
                    client.create_entity(_index_entity(vm_key, backup))
        marked = {"PartitionKey": table_key(_INDEX_PARTITIONS[0]), "RowKey": INDEX_BUILT}
        self._upsert(LATEST_BACKUPS, marked)

    def _scan_latest_backups(self) -> dict[str, Backup]:
        """The newest completed backup of every VM from every completed row (a full scan)."""
        latest: dict[str, Backup] = {}
        completed = BackupState.COMPLETED.value
        rows = self._query(
            Backup, BACKUPS, "state eq @state", select=SUMMARY_COLUMNS, state=completed
        )
        for backup in rows:
            known = latest.get(backup.vm_key)
            if known is None or _backup_age(backup) > _backup_age(known):
                latest[backup.vm_key] = backup
        return latest

    def _index_backup(self, vm_key: str, backup_id: str) -> None:
        """Bring the VM's index row up to date after a write of one of its backups.

        Read the row, then the backups, then write under the ETag read (see the module notes);
        a lost race reads everything again."""
        for _ in range(UPDATE_ATTEMPTS):
            seen = self._get(LATEST_BACKUPS, _index_partition(vm_key), vm_key)
            row = self._next_index_row(vm_key, backup_id, seen)
            if self._write_unless_changed(LATEST_BACKUPS, seen, row):
                return
        raise TransientError(f"index of {vm_key} changed under {UPDATE_ATTEMPTS} tries")

    def _next_index_row(
        self, vm_key: str, backup_id: str, seen: TableEntity | None
    ) -> dict[str, Any]:
        """The VM's index row once `backup_id` is as it is now, given the row as read (`seen`).

        The written backup replaces the indexed one when completed and at least as new; when
        the indexed one stops being completed (or gets older), the partition decides again."""
        if seen is None:  # not indexed yet, maybe written before the index: ask the partition
            return _index_entity(vm_key, self._newest_completed(vm_key))
        indexed = from_entity(Backup, seen) if "backup_id" in seen else None
        entity = self._get(BACKUPS, vm_key, backup_id, select=SUMMARY_COLUMNS)
        written = None if entity is None else from_entity(Backup, entity)
        if (
            written is not None
            and written.state is BackupState.COMPLETED
            and (indexed is None or _backup_age(written) >= _backup_age(indexed))
        ):
            return _index_entity(vm_key, written)
        if indexed is not None and indexed.backup_id == backup_id:
            return _index_entity(vm_key, self._newest_completed(vm_key))
        return dict(seen)  # unchanged, but still written: see _index_backup

    def _newest_completed(self, vm_key: str) -> Backup | None:
        """The VM's newest completed backup (summary columns), from its own partition."""
        backups = self._query(
            Backup,
            BACKUPS,
            "PartitionKey eq @vm and state eq @state",
            select=SUMMARY_COLUMNS,
            vm=table_key(vm_key),
            state=BackupState.COMPLETED.value,
        )
        return max(backups, key=_backup_age, default=None)

    def backups_needing_replication(self) -> list[Backup]:
        """Completed backups with a target region whose replica is missing or failed, oldest first.

        Oldest first because Azure copies a disk's incremental snapshots in creation order.
        """
        backups = self._query(
            Backup,
            BACKUPS,
            "state eq @state and ( replication_status eq @none or replication_status eq @failed )",
            state=BackupState.COMPLETED.value,
            none=ReplicationStatus.NONE.value,
            failed=ReplicationStatus.FAILED.value,
        )
        return sorted((b for b in backups if b.replica_region), key=_backup_age)

    def unverified_backups(self) -> list[Backup]:
        """Completed backups never verified, oldest first."""
        backups = self._query(
            Backup,
            BACKUPS,
            "state eq @state and verification eq @unverified",
            state=BackupState.COMPLETED.value,
            unverified=VerificationState.UNVERIFIED.value,
        )
        return sorted(backups, key=_backup_age)

    # -- replication jobs ---------------------------------------------------------------------

    def save_replication_job(self, job: ReplicationJob) -> None:
        self._upsert(REPLICATION_JOBS, _job_entity(job))

    def save_replication_jobs(self, jobs: Iterable[ReplicationJob]) -> None:
        """Upsert many jobs in batch transactions (one per partition and 100 rows).

        A batch is all-or-nothing, so a backup's jobs (one partition) appear together.
        """
        self._upsert_many(REPLICATION_JOBS, [_job_entity(job) for job in jobs])

    def get_replication_job(self, vm_key: str, job_id: str) -> ReplicationJob | None:
        entity = self._get(REPLICATION_JOBS, vm_key, job_id)
        return None if entity is None else from_entity(ReplicationJob, entity)

    def copies_in_progress(self, target_region: str, *, claimed_since: datetime) -> int:
        """Copy slots taken in `target_region` (Azure allows 100): jobs copying, and jobs
        pending since `claimed_since` (a start that has claimed its slots and is about to
        copy, or to let them go)."""
        rows = self._table(REPLICATION_JOBS).query_entities(
            # The SDK substitutes `@name` up to the next space: no bracket right after one.
            "target_region eq @region and (status eq @copying or "
            "(status eq @pending and started_at ge @since ) )",
            parameters={
                "region": target_region,
                "copying": ReplicationStatus.IN_PROGRESS.value,
                "pending": ReplicationStatus.PENDING.value,
                "since": _aware(claimed_since, "claimed_since").astimezone(UTC),
            },
            select=["RowKey"],
        )
        with _azure_errors(f"query {REPLICATION_JOBS}"):
            return sum(1 for _ in rows)

    def delete_replication_jobs(self, jobs: Iterable[ReplicationJob]) -> None:
        """Delete jobs that never started a copy (a start that let its claimed slots go)."""
        client = self._table(REPLICATION_JOBS)
        for job in jobs:
            with _azure_errors(f"let a claimed job go in {REPLICATION_JOBS}"):
                client.delete_entity(table_key(job.vm_key), table_key(job.id))

    def list_replication_jobs(
        self,
        *,
        status: ReplicationStatus | None = None,
        vm_key: str | None = None,
        backup_id: str | None = None,
    ) -> list[ReplicationJob]:
        """Replication jobs, optionally of one status, VM and backup, newest started first."""
        clauses: list[str] = []
        parameters: dict[str, Any] = {}
        if status is not None:
            clauses.append("status eq @status")
            parameters["status"] = ReplicationStatus(status).value
        if vm_key is not None:
            clauses.append("PartitionKey eq @vm")
            parameters["vm"] = table_key(vm_key)
        if backup_id is not None:
            clauses.append("backup_id eq @backup")
            parameters["backup"] = backup_id
        jobs = self._query(ReplicationJob, REPLICATION_JOBS, " and ".join(clauses), **parameters)
        return sorted(jobs, key=lambda j: (j.started_at, j.id), reverse=True)

    # -- verifications ------------------------------------------------------------------------

    def save_verification(self, verification: Verification) -> None:
        """One row per verification id (one per backup): a retried verification replaces the
        earlier row (written first, then the old one goes, so a stop between loses neither),
        and counts are of backups verified, not of runs."""
        row = _inverted(verification.verified_at) + "_" + verification.id
        entity = to_entity(verification, verification.vm_key, row)
        self._upsert(VERIFICATIONS, entity)
        client = self._table(VERIFICATIONS)
        with _azure_errors(f"replace {VERIFICATIONS}"):
            earlier = client.query_entities(
                "PartitionKey eq @vm and id eq @id",
                parameters={"vm": entity["PartitionKey"], "id": verification.id},
                select=["PartitionKey", "RowKey"],
            )
            for old in [e for e in earlier if e["RowKey"] != entity["RowKey"]]:
                client.delete_entity(old["PartitionKey"], old["RowKey"])

    def verifications(self, vm_key: str, *, now: datetime, days: int) -> list[Verification]:
        """A VM's verifications of the last `days` up to `now`, newest first."""
        rows = self._window(Verification, VERIFICATIONS, "verified_at", now, days, vm_key)
        return sorted(rows, key=lambda v: (v.verified_at, v.id), reverse=True)

    def verification_report(
        self, *, now: datetime, days: int, vm_key: str | None = None
    ) -> list[VerificationSummary]:
        """Per VM over the last `days` up to `now`, by vm_key: total, passed, the failed rows
        (newest first) and the time of the newest verification whatever its result.

        A VM asked for by `vm_key` gets a summary even with no verifications (total 0).
        """
        rows = self._window(Verification, VERIFICATIONS, "verified_at", now, days, vm_key)
        by_vm: dict[str, list[Verification]] = defaultdict(list)
        for row in sorted(rows, key=lambda v: (v.verified_at, v.id), reverse=True):
            by_vm[row.vm_key].append(row)
        if vm_key is not None:
            by_vm.setdefault(vm_key, [])
        return [
            VerificationSummary(
                vm_key=key,
                total=len(runs),
                passed=sum(run.success for run in runs),
                failures=tuple(run for run in runs if not run.success),
                last_verified=runs[0].verified_at if runs else None,
            )
            for key, runs in sorted(by_vm.items())
        ]

    # -- DR tests -----------------------------------------------------------------------------

    def save_dr_test(self, test: DrTest) -> None:
        row = _inverted(test.started_at) + "_" + test.id
        self._upsert(DR_TESTS, to_entity(test, test.vm_key, row))

    def dr_history(self, vm_key: str, *, now: datetime, days: int) -> list[DrTest]:
        """A VM's DR tests started in the last `days` up to `now`, newest first."""
        tests = self._window(DrTest, DR_TESTS, "started_at", now, days, vm_key)
        return sorted(tests, key=lambda t: (t.started_at, t.id), reverse=True)

    def dr_success_rates(
        self, *, now: datetime, days: int, vm_key: str | None = None
    ) -> list[DrSuccessRate]:
        """DR success per VM (by vm_key) over the last `days`, then the fleet as vm_key "*".

        Only finished tests count (success is not None): a test still running is neither a
        success nor a failure. last_rto_seconds is the RTO of the newest finished test, so it is
        None when that test never recovered. A VM asked for by `vm_key` always gets a row.
        """
        tests = self._window(DrTest, DR_TESTS, "started_at", now, days, vm_key)
        finished = sorted(
            (t for t in tests if t.success is not None), key=lambda t: (t.started_at, t.id)
        )
        by_vm: dict[str, list[DrTest]] = defaultdict(list)
        for test in finished:
            by_vm[test.vm_key].append(test)
        if vm_key is not None:
            by_vm.setdefault(vm_key, [])
        return [_success_rate(key, runs) for key, runs in sorted(by_vm.items())] + [
            _success_rate(FLEET, finished)
        ]

    # -- failovers -----------------------------------------------------------------------------

    def save_failover(self, failover: Failover) -> None:
        row = _inverted(failover.started_at) + "_" + failover.id
        self._upsert(FAILOVERS, to_entity(failover, failover.vm_key, row))

    def failovers(self, *, now: datetime, days: int, vm_key: str | None = None) -> list[Failover]:
        """Failovers started in the last `days` up to `now`, of one VM or all, newest first."""
        found = self._window(Failover, FAILOVERS, "started_at", now, days, vm_key)
        return sorted(found, key=lambda f: (f.started_at, f.id), reverse=True)

    def rto_percentiles(
        self,
        *,
        now: datetime,
        days: int,
        vm_key: str | None = None,
        percentiles: Sequence[int] = (50, 90, 99),
    ) -> dict[int, float]:
        """RTO percentiles (seconds) of successful DR tests over the last `days`, nearest-rank.

        Nearest rank: the p-th percentile of n sorted values is the ceil(p/100 * n)-th, always a
        measured RTO, never an interpolated one. Empty when no successful test has an RTO.
        """
        bad = [p for p in percentiles if not 0 < p <= 100]
        if bad:
            raise ValueError(f"percentiles must be in 1..100, got {bad}")
        tests = self._window(DrTest, DR_TESTS, "started_at", now, days, vm_key)
        rtos = sorted(t.rto_seconds for t in tests if t.success and t.rto_seconds is not None)
        if not rtos:
            return {}
        return {p: rtos[-(-p * len(rtos) // 100) - 1] for p in percentiles}

    # -- audit log ----------------------------------------------------------------------------

    # -- claims -------------------------------------------------------------------------------

    def claim(
        self,
        vm_key: str,
        work: str,
        owner: str,
        *,
        now: datetime,
        stale_after: timedelta,
        vm: VM | None = None,
        nics: tuple[NicConfig, ...] | None = None,
    ) -> Claim:
        """Insert-if-absent, else take over a released or stale claim under its ETag."""
        for _ in range(UPDATE_ATTEMPTS):
            entity = self._get(CLAIMS, vm_key, work)
            if entity is None:
                claim = Claim(vm_key, work, owner, 1, now, vm=vm, nics=nics)
            else:
                held = from_entity(Claim, entity)
                stale = held.released or now - held.claimed_at > stale_after
                if held.owner == owner or not stale:
                    return held
                claim = Claim(vm_key, work, owner, held.generation + 1, now, vm=vm, nics=nics)
            if self._write_unless_changed(CLAIMS, entity, to_entity(claim, vm_key, work)):
                return claim
        raise TransientError(f"claim {work} of {vm_key} changed under {UPDATE_ATTEMPTS} tries")

    def get_claim(self, vm_key: str, work: str) -> Claim | None:
        entity = self._get(CLAIMS, vm_key, work)
        return None if entity is None else from_entity(Claim, entity)

    def hold_writes(self, owner: str, now: datetime, held: timedelta) -> datetime:
        """When `owner`'s page may send its snapshots, holding the write bucket for `held` from
        then: at once, unless another run's page holds it, then when that hold ends. One row
        for the subscription, written under its ETag, so the pages of overlapping runs queue
        instead of pacing one bucket together. A later page of the same run extends its hold
        (never shortens it); a page asking again gets the start it got."""
        for _ in range(UPDATE_ATTEMPTS):
            seen = self._get(CLAIMS, *WRITES_HELD)
            hold = None if seen is None else _write_hold(seen)
            if hold is None or hold.until <= now:
                start, until = now, now + held
            elif hold.owner == owner:
                start = max(now, hold.start)
                until = max(hold.until, start + held)
            else:
                start, until = hold.until, hold.until + held
            if hold == WriteHold(owner, start, until):
                return start
            row = {
                "PartitionKey": table_key(WRITES_HELD[0]),
                "RowKey": table_key(WRITES_HELD[1]),
                "owner": owner,
                "from": start.isoformat(),
                "until": until.isoformat(),
            }
            if self._write_unless_changed(CLAIMS, seen, row):
                return start
        raise TransientError(f"the write hold changed under {UPDATE_ATTEMPTS} tries")

    def write_hold(self) -> WriteHold | None:
        entity = self._get(CLAIMS, *WRITES_HELD)
        return None if entity is None else _write_hold(entity)

    def writes_held_until(self) -> datetime | None:
        hold = self.write_hold()
        return None if hold is None else hold.until

    def reserve_writes(self, writes: int, now: datetime) -> datetime:
        """The write bucket's refill for `writes`, after the fleet run's hold and after every
        earlier reservation: one row for the subscription, moved on under its ETag, so that
        racing reservations queue instead of sharing a second."""
        held = self.writes_held_until()
        for _ in range(UPDATE_ATTEMPTS):
            seen = self._get(CLAIMS, *WRITES_RESERVED)
            queued = None if seen is None else datetime.fromisoformat(seen["until"])
            start = max(now, held or now, queued or now)
            row = {
                "PartitionKey": table_key(WRITES_RESERVED[0]),
                "RowKey": table_key(WRITES_RESERVED[1]),
                "until": (start + pacing.refill_time(writes)).isoformat(),
            }
            if self._write_unless_changed(CLAIMS, seen, row):
                return start
        raise TransientError(f"the write reservations changed under {UPDATE_ATTEMPTS} tries")

    def admit(
        self, vm_key: str, now: datetime, *, window: timedelta, limit: int
    ) -> datetime | None:
        """Count a manual request against the VM's limit, every manual route together, in one
        row written under its ETag, so concurrent requests cannot all read "3 of 4" and all
        pass. None when admitted; else when the oldest counted request leaves the window."""
        for _ in range(UPDATE_ATTEMPTS):
            entity = self._get(CLAIMS, vm_key, MANUAL_REQUESTS)
            counted = [] if entity is None else json.loads(entity["times"])
            recent = sorted(t for t in map(datetime.fromisoformat, counted) if t > now - window)
            if len(recent) >= limit:
                return recent[0] + window
            row = {
                "PartitionKey": table_key(vm_key),
                "RowKey": table_key(MANUAL_REQUESTS),
                "times": json.dumps([t.isoformat() for t in [*recent, now]]),
            }
            if self._write_unless_changed(CLAIMS, entity, row):
                return None
        raise TransientError(f"manual requests of {vm_key} changed under {UPDATE_ATTEMPTS} tries")

    def _write_unless_changed(
        self, table: str, seen: TableEntity | None, row: dict[str, Any]
    ) -> bool:
        """Write `row` only if it is still as it was read (`seen`; None: absent), under its
        ETag; False when another writer got there first (read again and decide again)."""
        client = self._table(table)
        try:
            with _azure_errors(f"write {table}"):
                if seen is None:
                    client.create_entity(row)
                else:
                    client.update_entity(
                        row,
                        mode=UpdateMode.REPLACE,
                        etag=seen.metadata["etag"],
                        match_condition=MatchConditions.IfNotModified,
                    )
        except (ResourceExistsError, ResourceModifiedError):
            return False
        return True

    def release(self, vm_key: str, work: str, owner: str) -> None:
        entity = self._get(CLAIMS, vm_key, work)
        if entity is None:
            return
        held = from_entity(Claim, entity)
        if held.owner != owner or held.released:
            return
        with contextlib.suppress(ResourceModifiedError), _azure_errors("release claim"):
            self._table(CLAIMS).update_entity(
                to_entity(dataclasses.replace(held, released=True), vm_key, work),
                mode=UpdateMode.REPLACE,
                etag=entity.metadata["etag"],
                match_condition=MatchConditions.IfNotModified,
            )

    def nic_listing(self) -> NicListing | None:
        entity = self._get(NICS, NICS_MARK_PK, NICS_MARK_ROW)
        return None if entity is None else from_entity(NicListing, entity)

    def save_nic_listing(self, listing: NicListing, nics: Sequence[NicConfig]) -> None:
        """The NICs first, then the mark that names the run: a run that stops between them
        lists again. Rows of NICs no longer listed (deleted ones) are removed."""
        self._upsert_many(
            NICS, [to_entity(ListedNic(listing.run, nic), NICS_PK, nic.id.lower()) for nic in nics]
        )
        client = self._table(NICS)
        with _azure_errors(f"prune {NICS}"):
            gone = client.query_entities(
                "PartitionKey eq @pk and run ne @run",
                parameters={"pk": NICS_PK, "run": listing.run},
                select=["PartitionKey", "RowKey"],
            )
            for key in list(gone):
                client.delete_entity(key["PartitionKey"], key["RowKey"])
        self._upsert(NICS, to_entity(listing, NICS_MARK_PK, NICS_MARK_ROW))

    def listed_nics(self, run: str, nic_ids: Iterable[str]) -> dict[str, NicConfig]:
        found = {}
        for nic_id in {n.lower() for n in nic_ids}:
            entity = self._get(NICS, NICS_PK, nic_id)
            row = None if entity is None else from_entity(ListedNic, entity)
            if row is not None and row.run == run:
                found[nic_id] = row.nic
        return found

    def in_use_listing(self, group: str) -> InUseListing | None:
        entity = self._get(IN_USE, IN_USE_PK, group.lower())
        return None if entity is None else from_entity(InUseListing, entity)

    def save_in_use_listing(self, listing: InUseListing) -> None:
        self._upsert(IN_USE, to_entity(listing, IN_USE_PK, listing.group.lower()))

    def given_groups(self) -> GivenGroups | None:
        entity = self._get(IN_USE, IN_USE_PK, GIVEN_GROUPS)
        return None if entity is None else from_entity(GivenGroups, entity)

    def save_given_groups(self, listing: GivenGroups) -> None:
        self._upsert(IN_USE, to_entity(listing, IN_USE_PK, GIVEN_GROUPS))

    def get_retention_state(self, vm_key: str) -> RetentionState | None:
        entity = self._get(RETENTION, vm_key, RETENTION_ROW)
        return None if entity is None else from_entity(RetentionState, entity)

    def save_retention_state(self, state: RetentionState) -> None:
        self._upsert(RETENTION, to_entity(state, state.vm_key, RETENTION_ROW))

    def audit(self, entry: AuditEntry) -> None:
        """Append one entry to the audit log, and send it to Application Insights as
        `AuditRecorded`, where the app's identity can add but not rewrite.

        The row key is the time plus a hash of the entry, so a retried step that audits the
        same thing rewrites its row instead of adding a second one. The partition is the day
        and the hash's first two digits: a day's entries spread over 256 partitions (each
        write lands in a small one; `audit_entries` reads from a day on, whichever digits),
        where one per day took every write of the day.
        """
        at = _aware(entry.at, "at").astimezone(UTC)
        fields = entry.to_dict()
        digest = hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()
        row = at.strftime("%Y%m%dT%H%M%S%fZ") + "_" + digest[:12]
        part = at.strftime("%Y-%m-%d") + "~" + digest[:2]
        self._upsert(AUDIT_LOG, to_entity(entry, part, row))
        fields |= {"at": at.isoformat(), "vm": fields.pop("vm_key")}
        telemetry.emit("AuditRecorded", **fields)

    def audit_entries(self, *, since: datetime, vm_key: str | None = None) -> list[AuditEntry]:
        """Audit entries at or after `since`, oldest first."""
        since = _aware(since, "since").astimezone(UTC)
        clauses = ["PartitionKey ge @day and at ge @since"]
        parameters: dict[str, Any] = {"day": since.strftime("%Y-%m-%d"), "since": since}
        if vm_key is not None:
            clauses.append("vm_key eq @vm")
            parameters["vm"] = vm_key
        entries = self._query(AuditEntry, AUDIT_LOG, " and ".join(clauses), **parameters)
        return sorted(entries, key=lambda e: (e.at, e.action, e.resource_id))

    # -- Table Storage ------------------------------------------------------------------------

    def table_name(self, name: str) -> str:
        """The name in Table Storage of one of the catalog's tables (`backups`, ...)."""
        return self._prefix + name

    def _table(self, name: str) -> TableClient:
        """The table client, creating the table the first time this process uses it."""
        table = self.service.get_table_client(self.table_name(name))
        ensured = (self.service.url, table.table_name)
        if ensured not in _ensured:
            with _ensured_lock, _azure_errors("create table"):
                if ensured not in _ensured:
                    self.service.create_table_if_not_exists(table.table_name)
                    _ensured.add(ensured)
        return table

    def _upsert(self, table: str, entity: dict[str, Any]) -> None:
        with _azure_errors(f"write {table}"):
            self._table(table).upsert_entity(entity, mode=UpdateMode.REPLACE)

    def _upsert_many(self, table: str, entities: Sequence[dict[str, Any]]) -> None:
        partitions: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
        for entity in entities:  # a transaction may touch a row once: the last write wins
            partitions[entity["PartitionKey"]][entity["RowKey"]] = entity
        client = self._table(table)
        for rows in partitions.values():
            batch = list(rows.values())
            for start in range(0, len(batch), BATCH_LIMIT):
                operations = [
                    ("upsert", entity, {"mode": UpdateMode.REPLACE})
                    for entity in batch[start : start + BATCH_LIMIT]
                ]
                with _azure_errors(f"write {table}"):
                    client.submit_transaction(operations)

    def _get(
        self, table: str, partition: str, row: str, *, select: list[str] | None = None
    ) -> TableEntity | None:
        """The entity (with its ETag in .metadata; only the `select` columns if given), or None."""
        try:
            with _azure_errors(f"read {table}"):
                return self._table(table).get_entity(
                    table_key(partition), table_key(row), select=select
                )
        except NotFoundError:
            return None

    def _query(
        self,
        cls: type[R],
        table: str,
        query: str,
        *,
        select: list[str] | None = None,
        **parameters: Any,
    ) -> list[R]:
        """Every row matching `query` (all pages), with values only ever passed as parameters;
        `select` limits the columns read (the rest take their defaults)."""
        client = self._table(table)
        with _azure_errors(f"query {table}"):
            pages = (
                client.query_entities(query, parameters=parameters, select=select)
                if query
                else client.list_entities(select=select)
            )
            return [from_entity(cls, entity) for entity in pages]

    def _window(
        self,
        cls: type[R],
        table: str,
        column: str,
        now: datetime,
        days: int,
        vm_key: str | None,
    ) -> list[R]:
        """Rows whose `column` lies in (now - days, now], of one VM or of all."""
        if isinstance(days, bool) or not isinstance(days, int) or days < 1:
            raise ValueError(f"days must be a whole number of at least 1, got {days!r}")
        now = _aware(now, "now")
        query = f"{column} gt @since and {column} le @now"  # column names are ours, not input
        parameters: dict[str, Any] = {"since": now - timedelta(days=days), "now": now}
        if vm_key is not None:
            query += " and PartitionKey eq @vm"
            parameters["vm"] = table_key(vm_key)
        return self._query(cls, table, query, **parameters)


def _index_entity(vm_key: str, backup: Backup | None) -> dict[str, Any]:
    """A VM's index row: the summary columns of its newest completed backup, or keys only."""
    entity = {} if backup is None else to_entity(backup, FLEET, vm_key)
    summary = {name: v for name, v in entity.items() if name.partition("__")[0] in _SUMMARY}
    return {
        "PartitionKey": table_key(_index_partition(vm_key)),
        "RowKey": table_key(vm_key),
        **summary,
    }


def _index_partition(vm_key: str) -> str:
    """The VM's index partition, one of 256 by a hash of its key: a point read or write costs
    what its partition holds in Azurite (it scans the partition for the RowKey), and no one
    partition takes every VM's index writes in Azure."""
    return FLEET + hashlib.sha256(vm_key.encode()).hexdigest()[:2]


def _write_hold(entity: TableEntity) -> WriteHold:
    """The hold row; one written before holds named their run has no owner (another run's)."""
    until = datetime.fromisoformat(entity["until"])
    start = datetime.fromisoformat(entity["from"]) if "from" in entity else until
    return WriteHold(entity.get("owner", ""), start, until)


def _boot_key(group: str, row: str) -> dict[str, str]:
    return {"PartitionKey": table_key(group.lower()), "RowKey": table_key(row.lower())}


def _job_entity(job: ReplicationJob) -> dict[str, Any]:
    return to_entity(job, job.vm_key, job.id)


def _backup_age(backup: Backup) -> tuple[datetime, str]:
    return backup.taken_at, backup.backup_id


def _success_rate(key: str, runs: Sequence[DrTest]) -> DrSuccessRate:
    """Counts over finished tests given oldest first."""
    return DrSuccessRate(
        vm_key=key,
        total=len(runs),
        succeeded=sum(bool(t.success) for t in runs),
        last_rto_seconds=runs[-1].rto_seconds if runs else None,
    )


def _inverted(moment: datetime) -> str:
    """Row-key text that sorts newer moments first (19 digits of microseconds to go)."""
    micros = (_aware(moment, "time").astimezone(UTC) - _EPOCH) // _MICROSECOND
    return f"{_INVERT_FROM - micros:019d}"


def _aware(moment: datetime, name: str) -> datetime:
    if moment.tzinfo is None:
        raise ValueError(f"{name} must be timezone-aware (UTC), got {moment.isoformat()}")
    return moment


def _json_form(changes: dict[str, object]) -> dict[str, Any]:
    """Changes in the form `Backup.to_dict` gives, so `from_dict` rebuilds enums and records."""
    return {name: _jsonable(value) for name, value in changes.items()}


def _jsonable(value: object) -> object:
    if isinstance(value, JsonRecord):
        return value.to_dict()
    if isinstance(value, tuple | list):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, datetime):
        return value.isoformat()
    return value


@contextlib.contextmanager
def _azure_errors(what: str) -> Iterator[None]:
    """Translate the SDK's exceptions into the port's errors, keeping 412 (ETag) and 409
    (insert of an existing row) for the callers that race on them."""
    try:
        yield
    except (ResourceModifiedError, ResourceExistsError):
        raise
    except ResourceNotFoundError as error:
        raise NotFoundError(f"{what}: {_reason(error)}") from None
    except HttpResponseError as error:
        status = error.status_code or 0
        if status == 429:
            retry_after = getattr(error.response, "headers", {}).get("Retry-After")
            raise ThrottledError(
                f"{what}: {_reason(error)}", float(retry_after) if retry_after else None
            ) from None
        if status in (408, 500, 502, 503, 504):
            raise TransientError(f"{what}: {_reason(error)}") from None
        raise PermanentError(f"{what}: {_reason(error)}") from None
    except (ServiceRequestError, ServiceResponseError) as error:
        raise TransientError(f"{what}: {type(error).__name__}: {error}") from None


def _reason(error: HttpResponseError) -> str:
    """Status and the first line of the service's message (the rest repeats request details)."""
    message = (error.message or str(error)).strip().splitlines()
    return f"{error.status_code} {message[0] if message else type(error).__name__}"
