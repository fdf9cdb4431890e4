"""The app's records: VMs and disks as Azure has them, and what the app made of them.

Activities pass these across the durable boundary as plain dicts (`to_dict` / `from_dict`), and the
catalog stores their fields as table columns. Field names keep the seed's SQLite columns
(`replication_jobs`, `verifications`, `dr_tests`) so reports read the same.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from datetime import datetime
from enum import StrEnum
from typing import Any, ClassVar, Final, Self

POLICY_TAG: Final = "backup-policy"  # the VM tag that holds its backup policy


class Tier(StrEnum):
    """Retention tier fixed when a backup is taken."""

    DAILY = "daily"
    WEEKLY = "weekly"
    MONTHLY = "monthly"


class BackupState(StrEnum):
    """creating -> completed | failed; an expired completed backup is soft-deleted (still
    restorable after `undelete`), then purging (its snapshots being deleted), then deleted.
    Only `completed` is restorable."""

    CREATING = "creating"
    COMPLETED = "completed"
    FAILED = "failed"
    SOFT_DELETED = "soft_deleted"
    PURGING = "purging"
    DELETED = "deleted"


class ReplicationStatus(StrEnum):
    """The seed's replication job states; a backup's replication state uses NONE as well."""

    NONE = "none"
    PENDING = "pending"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    FAILED = "failed"


class VerificationState(StrEnum):
    UNVERIFIED = "unverified"
    PASSED = "passed"
    FAILED = "failed"


class JsonRecord:
    """JSON round-trip for the dataclasses below: datetimes as ISO text, enums as values."""

    _hints: ClassVar[dict[type, dict[str, Any]]] = {}

    def to_dict(self) -> dict[str, Any]:
        return {f.name: _encode(getattr(self, f.name)) for f in dataclasses.fields(self)}  # type: ignore[arg-type]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        hints = cls._hints.get(cls)
        if hints is None:
            hints = cls._hints[cls] = typing.get_type_hints(cls)
        names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        return cls(**{k: _decode(hints[k], v) for k, v in data.items() if k in names})


def _encode(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, JsonRecord):
        return value.to_dict()
    if isinstance(value, tuple | list):
        return [_encode(v) for v in value]
    if isinstance(value, dict):
        return {k: _encode(v) for k, v in value.items()}
    return value


def _decode(hint: Any, value: Any) -> Any:
    if value is None:
        return None
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        return _decode(inner[0], value)
    if origin is tuple:
        return tuple(_decode(args[0], v) for v in value)
    if origin is dict:
        return {k: _decode(args[1], v) for k, v in value.items()}
    if hint is datetime:
        return value if isinstance(value, datetime) else datetime.fromisoformat(value)
    if isinstance(hint, type) and issubclass(hint, JsonRecord):
        return value if isinstance(value, hint) else hint.from_dict(value)
    if isinstance(hint, type) and issubclass(hint, StrEnum | float):
        return hint(value)
    return value


def vm_key(resource_group: str, name: str) -> str:
    """A VM's catalog key: unique in the subscription and safe as a table PartitionKey.

    `~` appears in neither resource group nor VM names, so the key is unambiguous.
    """
    return f"{resource_group}~{name}".lower()


@dataclasses.dataclass(frozen=True)
class Disk(JsonRecord):
    """One managed disk of a VM, as Azure reports it."""

    id: str
    name: str
    size_gb: int
    sku: str
    lun: int | None = None  # None for the OS disk
    zone: str | None = None
    caching: str | None = None  # None | ReadOnly | ReadWrite, as the VM attaches it

    @property
    def role(self) -> str:
        """`os` or `lun<N>`: how a backup names this disk (snapshot tag `backup-disk`)."""
        return "os" if self.lun is None else f"lun{self.lun}"


@dataclasses.dataclass(frozen=True)
class VM(JsonRecord):
    """A VM with all its managed disks (OS disk first) and its tags."""

    id: str
    name: str
    resource_group: str
    location: str
    disks: tuple[Disk, ...]
    tags: dict[str, str] = dataclasses.field(default_factory=dict)
    vm_size: str = ""
    os_type: str = "Linux"
    zone: str | None = None
    # Its securityProfile: Standard | TrustedLaunch | ConfidentialVM, and the UEFI settings.
    security_type: str = "Standard"
    secure_boot: bool = False
    vtpm: bool = False
    hyper_v_generation: str | None = None  # V1 | V2 (the instance view's); None: not read
    zones: tuple[str, ...] = ()
    # Why some of its disks cannot be snapshotted (an ephemeral OS disk, an unmanaged VHD), one
    # reason per disk; `disks` leaves those out. Such a VM is never backed up: a backup of
    # fewer disks than the VM has would not restore it.
    not_protectable: tuple[str, ...] = ()
    # Its NICs (primary first), read one by one when it is backed up (`ComputeGateway.get_nic`).
    nic_ids: tuple[str, ...] = ()
    license_type: str | None = None  # Windows_Server, RHEL_BYOS, ... (Azure Hybrid Benefit)
    boot_diagnostics: bool = False
    boot_diagnostics_uri: str | None = None  # None with boot diagnostics on: managed storage
    # Not in Azure any more: rebuilt from its last backup record (`VM.from_backup`), so its
    # backups can still be listed, restored and DR-tested; nothing may back it up or tag it.
    gone: bool = False

    @property
    def key(self) -> str:
        return vm_key(self.resource_group, self.name)

    @property
    def not_protectable_reason(self) -> str:
        """Why the VM cannot be backed up ("" when it can)."""
        return "; ".join(self.not_protectable)

    @classmethod
    def from_backup(cls, backup: Backup) -> VM:
        """The VM as its backup recorded it, for a VM Azure no longer has (`gone`).

        Its disks are the backup's; its tags the recorded ones (an older row without tags still
        carries its recorded policy as the `backup-policy` tag).
        """
        tags = dict(backup.tags)
        if backup.policy is not None:
            tags.setdefault(POLICY_TAG, backup.policy)
        return cls(
            id=backup.vm_id,
            name=backup.vm_name,
            resource_group=backup.source_resource_group,
            location=backup.region,
            disks=tuple(
                Disk(
                    id=ref.source_disk_id,
                    name=ref.source_disk_id.rsplit("/", 1)[-1],
                    size_gb=ref.size_gb,
                    sku=ref.sku,
                    lun=ref.lun,
                    zone=backup.zones[0] if backup.zones else None,
                    caching=ref.caching,
                )
                for ref in backup.snapshots
            ),
            tags=tags,
            vm_size=backup.vm_size,
            os_type=backup.os_type,
            zone=backup.zones[0] if backup.zones else None,
            security_type=backup.security_type,
            secure_boot=backup.secure_boot,
            vtpm=backup.vtpm,
            hyper_v_generation=backup.hyper_v_generation,
            zones=backup.zones,
            nic_ids=tuple(nic.id for nic in backup.nics),
            license_type=backup.license_type,
            boot_diagnostics=backup.boot_diagnostics,
            boot_diagnostics_uri=backup.boot_diagnostics_uri,
            gone=True,
        )


@dataclasses.dataclass(frozen=True)
class NicConfig(JsonRecord):
    """One NIC of a VM as a backup records it: what a restore needs to rebuild its network."""

    id: str
    subnet_id: str | None = None  # the primary IP configuration's subnet
    private_ip_allocation: str = "Dynamic"  # Dynamic | Static
    private_ip_address: str | None = None
    accelerated_networking: bool = False
    primary: bool = True


@dataclasses.dataclass(frozen=True)
class SnapshotRef(JsonRecord):
    """One disk's snapshot inside a backup, and its replica in the DR region."""

    disk_role: str
    source_disk_id: str
    snapshot_id: str
    size_gb: int
    # What a restore needs when the source VM is gone: the disk's LUN (None: OS disk) and SKU.
    lun: int | None = None
    sku: str = "Standard_LRS"
    caching: str | None = None  # as the VM attached it (None: not recorded, Azure's default)
    replica_id: str | None = None
    replica_status: ReplicationStatus = ReplicationStatus.NONE
    # Bytes written to the disk since the previous backup's snapshot of it (Azure's page-range
    # diff); None: not measured (the first backup of the disk, or the diff failed).
    changed_bytes: int | None = None


@dataclasses.dataclass(frozen=True)
class Backup(JsonRecord):
    """One backup of a VM: a snapshot of every disk taken for the same scheduled slot."""

    backup_id: str
    vm_key: str
    vm_id: str
    vm_name: str
    region: str
    slot: datetime
    taken_at: datetime
    tier: Tier
    state: BackupState = BackupState.COMPLETED
    snapshots: tuple[SnapshotRef, ...] = ()
    size_gb: int = 0
    manual: bool = False
    # The VM's shape at backup time, so a DR restore works even after the VM itself is gone.
    vm_size: str = ""
    os_type: str = "Linux"
    # ...its security profile, Hyper-V generation and zones (older rows: Standard, unknown, none).
    security_type: str = "Standard"
    secure_boot: bool = False
    vtpm: bool = False
    hyper_v_generation: str | None = None
    zones: tuple[str, ...] = ()
    replica_region: str | None = None
    replication_status: ReplicationStatus = ReplicationStatus.NONE
    verification: VerificationState = VerificationState.UNVERIFIED
    verified_at: datetime | None = None
    # Snapshot tags that matter to retention: created by this app, and held by an operator.
    managed: bool = True
    hold: bool = False
    error_message: str | None = None
    attempts: int = 1  # tries at this slot; a failed slot is retried a bounded number of times
    # The rest of the VM as Azure had it (older rows: unknown), so a restore needs no live VM:
    # its group, tags, policy tag (retention of a VM that is gone), licence, boot diagnostics
    # and NICs (primary first).
    resource_group: str = ""
    tags: dict[str, str] = dataclasses.field(default_factory=dict)
    policy: str | None = None
    license_type: str | None = None
    boot_diagnostics: bool = False
    boot_diagnostics_uri: str | None = None
    nics: tuple[NicConfig, ...] = ()
    # A manual backup is kept until then (`--keep-days`), outside the GFS periods.
    keep_until: datetime | None = None
    # When retention soft-deleted it: purged once the soft-delete window has passed.
    deleted_at: datetime | None = None
    # Why this backup's changes were far outside the VM's habits (ChurnAnomaly): retention then
    # keeps every earlier backup until an operator releases this one.
    anomaly: str | None = None
    anomaly_released: bool = False
    # When the write bucket's refill reserved for its follow-up's writes comes (measure_backup).
    measure_from: datetime | None = None

    @property
    def changed_bytes(self) -> int | None:
        """Bytes written across its disks since the previous backup; None if not measured."""
        measured = [s.changed_bytes for s in self.snapshots if s.changed_bytes is not None]
        return sum(measured) if measured else None

    @property
    def source_resource_group(self) -> str:
        """The backed-up VM's resource group (from its id on rows older than the field)."""
        if self.resource_group:
            return self.resource_group
        parts = self.vm_id.split("/")
        lowered = [part.lower() for part in parts]
        if "resourcegroups" in lowered and lowered.index("resourcegroups") + 1 < len(parts):
            return parts[lowered.index("resourcegroups") + 1]
        return self.vm_key.split("~", 1)[0]

    @property
    def subnet_id(self) -> str | None:
        """The primary NIC's subnet, as recorded (None: not recorded)."""
        primary = next((nic for nic in self.nics if nic.primary), None)
        return primary.subnet_id if primary else None


@dataclasses.dataclass(frozen=True)
class ReplicationJob(JsonRecord):
    """A cross-region copy of one snapshot (the seed's `replication_jobs` row)."""

    id: str
    vm_key: str
    backup_id: str
    disk_role: str
    source_snapshot: str
    target_snapshot: str
    source_region: str
    target_region: str
    status: ReplicationStatus
    started_at: datetime
    completed_at: datetime | None = None
    error_message: str | None = None
    completion_percent: float = 0.0
    # What its reads are placed on (shared.domain.copytime): the GiB it moves (the disk's size
    # for the disk's first copy into the region, else its measured change; None: unknown).
    moves_gib: float | None = None
    first_copy: bool = False
    # Started while its kind had no line: "probing" (read midway to date the line's first
    # samples) or "waiting" (for the probe's line); "" when placed on a known line or unknown.
    probe: str = ""


@dataclasses.dataclass(frozen=True)
class PartitionInfo(JsonRecord):
    """One partition of a test disk, as verification read it."""

    number: int
    type: str
    size_bytes: int
    file_system: str | None = None
    label: str | None = None


@dataclasses.dataclass(frozen=True)
class DiskContent(JsonRecord):
    """What verification read from one test disk, and what it found wrong (in words)."""

    role: str
    table: str  # gpt | mbr | none (a file system on the whole disk) | unreadable
    partitions: tuple[PartitionInfo, ...] = ()
    bytes_read: int = 0
    read_seconds: float = 0.0
    zero_fraction: float = 0.0  # of the 4 KiB blocks sampled
    entropy: float = 0.0  # bits per byte of the sampled blocks that are not all zero
    written_bytes: int = 0
    problems: tuple[str, ...] = ()  # recoverable (a damaged primary GPT read from its backup)
    failures: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class Verification(JsonRecord):
    """A restore of a backup's disks to test disks (the seed's `verifications` row)."""

    id: str
    vm_key: str
    backup_name: str
    vm_name: str
    verified_at: datetime
    success: bool
    disk_readable: bool | None = None
    size_matches: bool | None = None
    test_disk_created: bool | None = None
    test_disk_deleted: bool | None = None
    error_message: str | None = None
    verification_time_seconds: float | None = None
    disks: tuple[DiskContent, ...] = ()


@dataclasses.dataclass(frozen=True)
class DrTest(JsonRecord):
    """A restore of a VM in its DR region (the seed's `dr_tests` row, plus phases and target)."""

    id: str
    vm_key: str
    vm_name: str
    backup_name: str
    test_region: str
    started_at: datetime
    completed_at: datetime | None = None
    success: bool | None = None
    restore_succeeded: bool | None = None
    boot_succeeded: bool | None = None
    connectivity_succeeded: bool | None = None
    cleanup_succeeded: bool | None = None
    rto_seconds: float | None = None
    error_message: str | None = None
    # Seconds spent in each phase, in order: restore, create_vm, boot, guest_check, cleanup.
    phase_seconds: dict[str, float] = dataclasses.field(default_factory=dict)
    rto_target_seconds: float | None = None


@dataclasses.dataclass(frozen=True)
class Failover(JsonRecord):
    """One VM brought up for good in its DR region from a backup's replica (a `failovers` row);
    `region_failover_id` names the region failover it was part of, if any."""

    id: str
    vm_key: str
    vm_name: str
    backup_id: str
    source_region: str
    target_region: str
    resource_group: str  # the recovery group it was restored into
    started_at: datetime
    region_failover_id: str | None = None
    completed_at: datetime | None = None
    state: str = "running"  # running | completed | failed | rejected
    error: str | None = None
    vm_id: str | None = None  # the VM it created (left running)
    new_vm_name: str | None = None
    recovery_group: int | None = None  # the `backup-recovery-group` it was failed over in
    rto_seconds: float | None = None
    # Seconds spent in each phase, in order: restore, create_vm, boot, guest_check.
    phase_seconds: dict[str, float] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class AuditEntry(JsonRecord):
    """One create or delete the app asked Azure for, and how it ended."""

    at: datetime
    action: str  # create | delete | tag | request
    resource_id: str
    result: str  # ok | failed | not-found
    vm_key: str | None = None
    operation: str | None = None  # the workflow step, e.g. "snapshot", "verify", "dr_test"
    identity: str | None = None
    detail: str | None = None


@dataclasses.dataclass(frozen=True)
class Claim(JsonRecord):
    """Who is doing a piece of work (a slot's backup, a backup's replication), so overlapping
    runs start it once: Durable on Azure Storage deduplicates client starts, never
    sub-orchestrations, so the app decides from the catalog, not the engine."""

    vm_key: str
    work: str  # e.g. "backup~<backup id>", "replicate~<backup id>"
    owner: str  # the orchestration instance that took it
    generation: int  # how many times it has been taken: part of the worker's instance id
    claimed_at: datetime
    released: bool = False
    # A backup's: the VM as its fleet run listed it, and its NICs (primary first) when the run's
    # list of NICs had them all (None: the backup reads them), so a run reads each once.
    vm: VM | None = None
    nics: tuple[NicConfig, ...] | None = None


@dataclasses.dataclass(frozen=True)
class WriteHold:
    """A fleet run's page has the subscription's write bucket for its snapshots from `start`
    until `until`; `owner` is the run (an older row names none)."""

    owner: str
    start: datetime
    until: datetime


@dataclasses.dataclass(frozen=True)
class NicListing(JsonRecord):
    """The last list of the subscription's NICs a fleet run (`run`) kept in the catalog, and how
    many pages it took (a later run with fewer NICs to read than that reads them one by one)."""

    run: str
    pages: int
    listed_at: datetime


@dataclasses.dataclass(frozen=True)
class ListedNic(JsonRecord):
    """One NIC as the fleet run `run` listed it."""

    run: str
    nic: NicConfig


@dataclasses.dataclass(frozen=True)
class InUseListing(JsonRecord):
    """Which backups the restores in a resource group came from (their `backup-source` tags),
    as listed at `listed_at`: retention reuses a fresh listing instead of listing per VM."""

    group: str
    listed_at: datetime
    sources: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class GivenGroups(JsonRecord):
    """The resource groups DR tests were given besides the configured ones, as the audit log
    named them at `listed_at`: retention reuses a fresh listing instead of reading the log
    per VM."""

    listed_at: datetime
    groups: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class PolicyChange(JsonRecord):
    """A policy that was a VM's until `until` (its tag text, as `format_policy` writes it)."""

    policy: str
    until: datetime


@dataclasses.dataclass(frozen=True)
class RetentionState(JsonRecord):
    """What retention remembers of a VM between runs (a `retention` row): the policy it last
    read and those it replaced within the window (a shortened policy waits that long), and its
    last run that applied a plan (what new backups and policy changes the breaker expects)."""

    vm_key: str
    policy: str | None = None
    superseded: tuple[PolicyChange, ...] = ()
    applied_at: datetime | None = None
    applied_policy: str | None = None  # the effective policy that run applied
    halted: str | None = None  # why the last run deleted nothing, if it did not
