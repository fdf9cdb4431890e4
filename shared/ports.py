"""The ports: what activities need from Azure and from the catalog, named by intention.

Activities see only these protocols and the records they return; the adapters in
`shared/adapters/` implement them on the azure-mgmt SDKs and on azure-data-tables.
Methods raise the errors in `shared/errors.py`, never SDK exceptions.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import datetime, timedelta
from typing import Protocol

from shared.domain.boot import BootBounds
from shared.domain.copytime import CopySample
from shared.domain.models import (
    VM,
    AuditEntry,
    Backup,
    Claim,
    Disk,
    DrTest,
    Failover,
    GivenGroups,
    InUseListing,
    JsonRecord,
    NicConfig,
    NicListing,
    ReplicationJob,
    ReplicationStatus,
    RetentionState,
    Verification,
    WriteHold,
)


@dataclasses.dataclass(frozen=True)
class Accepted(JsonRecord):
    """A create Azure accepted that may still be running: read it again after the delay.

    The delay comes from Azure's Retry-After when it sends one, else from the operation's
    expected duration; orchestrators wait it out on a durable timer.
    """

    resource_id: str
    poll_after_seconds: float
    writes_remaining: int | None = None  # x-ms-ratelimit-remaining-subscription-writes


@dataclasses.dataclass(frozen=True)
class Snapshot(JsonRecord):
    """A snapshot as Azure reports it (a backup's disk snapshot or its cross-region replica)."""

    id: str
    name: str
    resource_group: str
    location: str
    source_id: str  # the disk (backup) or snapshot (replica) it was made from
    size_gb: int
    provisioning_state: str  # Updating | Succeeded | Failed
    incremental: bool
    tags: dict[str, str] = dataclasses.field(default_factory=dict)
    created_at: datetime | None = None
    # CopyStart replicas: usable only at 100; copy_error set when Azure gave up.
    completion_percent: float | None = None
    copy_error: str | None = None
    access_state: str | None = None  # snapshotAccessState
    hyper_v_generation: str | None = None  # an OS disk's, which its snapshots inherit


@dataclasses.dataclass(frozen=True)
class ManagedDisk(JsonRecord):
    """A managed disk the app created from a snapshot (verification or DR restore)."""

    id: str
    name: str
    resource_group: str
    location: str
    size_gb: int
    sku: str
    provisioning_state: str
    disk_state: str  # Unattached | Attached | Reserved | ...
    source_id: str | None = None
    tags: dict[str, str] = dataclasses.field(default_factory=dict)
    zone: str | None = None


@dataclasses.dataclass(frozen=True)
class VmRuntime(JsonRecord):
    """A VM's provisioning and power state from its instance view."""

    provisioning_state: str  # creating | succeeded | failed | ...
    power_state: str  # starting | running | stopped | deallocated | unknown
    # A failed VM's reason, "<Code>: <message>" (ProvisioningState/failed/<Code>); else None.
    error: str | None = None
    # When Azure says provisioning ended (the ProvisioningState status's `time`), if it says.
    provisioned_at: datetime | None = None


@dataclasses.dataclass(frozen=True)
class VmSizeOffer(JsonRecord):
    """A VM size as the Resource SKUs list offers it to this subscription in one region."""

    name: str
    region: str
    zones: tuple[str, ...] = ()  # the zones it is offered in there
    location_restriction: str | None = None  # reasonCode of a Location restriction
    restricted_zones: tuple[str, ...] = ()  # zones under a Zone restriction...
    zone_restriction: str | None = None  # ...and its reasonCode
    hyper_v_generations: tuple[str, ...] = ()  # V1, V2: the generations it boots
    trusted_launch: bool = True
    confidential: bool = False

    def unavailable(self, zone: str | None = None) -> str | None:
        """Why a VM of this size cannot be had here (in `zone`, if given); None if it can.

        A Location restriction makes the size unusable in the region; a Zone restriction alone
        leaves it usable by a regional VM, not by one in a restricted zone.
        """
        if self.location_restriction:
            return self.location_restriction
        if zone is not None and zone in self.restricted_zones:
            return f"{self.zone_restriction or 'restricted'} in zone {zone}"
        if zone is not None and zone not in self.zones:
            return f"not offered in zone {zone}"
        return None

    def cannot_run(self, security_type: str, hyper_v_generation: str | None) -> str | None:
        """Why this size cannot boot a VM of that security type and generation; None if it can."""
        generations = self.hyper_v_generations
        if hyper_v_generation and generations and hyper_v_generation not in generations:
            return f"it cannot boot Hypervisor Generation {hyper_v_generation}"
        if security_type == "TrustedLaunch" and not self.trusted_launch:
            return "it does not support Trusted Launch"
        if security_type == "ConfidentialVM" and not self.confidential:
            return "it does not run Confidential VMs"
        return None


@dataclasses.dataclass(frozen=True)
class GuestCheck(JsonRecord):
    """What Run Command said from inside the guest, once it finished."""

    succeeded: bool
    output: str


@dataclasses.dataclass(frozen=True)
class CommandRun(JsonRecord):
    """A Run Command Azure accepted and still runs: read its result again after the delay.

    `result_url` is the operation's Location, where Azure leaves the result; it names an
    operation and carries no secret, so it may sit in the durable history.
    """

    vm_id: str
    result_url: str
    poll_after_seconds: float


@dataclasses.dataclass(frozen=True)
class TaggedResource(JsonRecord):
    id: str
    type: str
    tags: dict[str, str] = dataclasses.field(default_factory=dict)


class DiskData(Protocol):
    """A disk's or snapshot's bytes, through the read access ARM grants (the blob data plane)."""

    def size(self) -> int:
        """Its size in bytes."""
        ...

    def read(self, offset: int, length: int) -> bytes:
        """`length` bytes from `offset`."""
        ...

    def written(self) -> list[tuple[int, int]]:
        """The [start, end) byte ranges ever written: Azure stores nothing else."""
        ...

    def changed_since(self, previous: DiskData) -> int:
        """Bytes written since `previous`, an earlier snapshot of the same disk."""
        ...


class ComputeGateway(Protocol):
    """Azure Resource Manager as the workflows need it (Compute, Network, Resources)."""

    def principal(self) -> str:
        """Who ARM sees this gateway's calls as ("user NAME (object id ID)", "app APPID
        (object id ID)"): the identity the audit log records."""
        ...

    def list_vms(self) -> list[VM]:
        """Every VM in the subscription with its managed disks and tags: one paged list."""
        ...

    def list_vms_page(self, page: str | None) -> tuple[list[VM], str | None]:
        """One page of VMs from `page` (None: the first) and the next page's token, or None."""
        ...

    def list_nics_page(self, page: str | None) -> tuple[list[NicConfig], str | None]:
        """One page of the subscription's NICs, as `get_nic` reads each, and the next token."""
        ...

    def get_vm(self, resource_group: str, name: str) -> VM:
        """One VM with its disks and tags, and its Hyper-V generation (from its instance view,
        read in the same GET); NotFoundError when there is none."""
        ...

    def get_nic(self, nic_id: str) -> NicConfig:
        """A VM's NIC as a backup records it (its primary IP configuration's subnet, private IP
        allocation, accelerated networking); NotFoundError when it is gone."""
        ...

    def begin_snapshot(
        self, *, name: str, resource_group: str, region: str, disk: Disk, tags: dict[str, str]
    ) -> Accepted:
        """Start an incremental snapshot of `disk`, tagged in the same PUT.

        The name is deterministic, so a retry PUTs the same snapshot and never makes a second.
        """
        ...

    def get_snapshot(self, snapshot_id: str) -> Snapshot:
        """A snapshot's state, size, tags and copy progress; NotFoundError when it is gone."""
        ...

    def list_snapshots(self, resource_group: str | None = None) -> list[Snapshot]:
        """Snapshots in one resource group, or in the whole subscription (one paged list)."""
        ...

    def delete_snapshot(self, snapshot_id: str) -> bool:
        """Delete a snapshot and wait until Azure is done; False when it was already gone.

        The one delete waited on inside the call: a snapshot delete is quick in Azure.
        """
        ...

    def begin_copy(
        self, *, source_id: str, name: str, resource_group: str, region: str, tags: dict[str, str]
    ) -> Accepted:
        """Start an incremental cross-region copy (CopyStart) of a snapshot into `region`.

        Progress shows on `get_snapshot(...).completion_percent`; usable at 100.
        """
        ...

    def begin_disk_from_snapshot(
        self,
        *,
        name: str,
        resource_group: str,
        region: str,
        snapshot_id: str,
        sku: str,
        zone: str | None,
        tags: dict[str, str],
    ) -> Accepted:
        """Start creating a managed disk from a snapshot."""
        ...

    def get_disk(self, disk_id: str) -> ManagedDisk:
        """A managed disk's state and size; NotFoundError when it is gone."""
        ...

    def read_access(self, resource_id: str, seconds: int) -> AbstractContextManager[DiskData]:
        """Read access to a disk's or snapshot's bytes (beginGetAccess) for at most `seconds`,
        revoked (endGetAccess) on leaving, even after a failure."""
        ...

    def begin_delete(self, resource_id: str) -> Accepted | None:
        """Start deleting a VM, NIC or disk; None when Azure said it was already gone.

        The resource stays listed (deleting) until Azure is done: read it again after the delay.
        A VM holds its NIC and disks until it is gone, so delete those only after it.
        """
        ...

    def begin_nic(
        self,
        *,
        name: str,
        resource_group: str,
        region: str,
        subnet: str,
        tags: dict[str, str],
        accelerated_networking: bool = False,
        private_ip_address: str | None = None,
    ) -> Accepted:
        """Start creating a NIC on `subnet` ("vnet/subnet" in the same group, or a subnet's
        full resource id), with accelerated networking as asked, its one IP configuration
        Static on `private_ip_address` when given, else Dynamic. A static address Azure refuses
        (taken by another NIC, outside the subnet, reserved) raises AddressUnavailableError
        and creates nothing.

        The name is deterministic: a retry PUTs the same NIC.
        """
        ...

    def nic_state(self, nic_id: str) -> str:
        """A NIC's provisioning state (Updating | Succeeded | Failed); NotFoundError if gone."""
        ...

    def list_groups(self) -> list[tuple[str, str]]:
        """Every resource group of the subscription, as (name, region)."""
        ...

    def group_exists(self, resource_group: str) -> bool:
        """Whether the subscription has a resource group of this name (one HEAD)."""
        ...

    def subnet_region(self, subnet_id: str) -> str | None:
        """The region of the VNet holding this subnet (a subnet's full resource id); None when
        the VNet or the subnet does not exist (one GET of the VNet)."""
        ...

    def subnet_isolation(self, subnet_id: str) -> str | None:
        """Why a VM on this subnet could reach more than the platform, as
        `shared.domain.isolation` decides it on the subnet's defaultOutboundAccess and its NSG's
        rules; None when it is isolated. One GET of the VNet, one of the NSG; NotFoundError
        when the VNet or the subnet does not exist."""
        ...

    def begin_vm_from_disks(
        self,
        *,
        name: str,
        resource_group: str,
        region: str,
        vm_size: str,
        os_type: str,
        os_disk_id: str,
        data_disks: Sequence[tuple[int, str]],
        nic_id: str,
        tags: dict[str, str],
        security_type: str = "Standard",
        secure_boot: bool = False,
        vtpm: bool = False,
        zone: str | None = None,
        caching: Mapping[str, str] | None = None,
        license_type: str | None = None,
        boot_diagnostics: bool = False,
        boot_diagnostics_uri: str | None = None,
    ) -> Accepted:
        """Start creating a VM with the OS disk attached and (LUN, disk id) data disks attached.

        `security_type` (Standard, TrustedLaunch, ConfidentialVM; UEFI `secure_boot` and `vtpm`
        for the latter two) must be the OS disk's: a disk made from a snapshot keeps its source's
        security type and Hyper-V generation. `zone` must be the disks' zone (None: regional);
        `caching` maps disk roles ("os", "lun0", ...) to their host caching (Azure's default for
        a role not named). `license_type` (Azure Hybrid Benefit: Windows_Server, RHEL_BYOS, ...)
        and boot diagnostics (on: managed storage, or the account of `boot_diagnostics_uri`).
        """
        ...

    def vm_runtime(self, vm_id: str) -> VmRuntime:
        """Provisioning and power state from the VM's instance view; a failed VM carries its
        reason (any `ProvisioningState/failed/<Code>`), so callers stop waiting at once."""
        ...

    def vm_size_offer(self, region: str, vm_size: str) -> VmSizeOffer | None:
        """How the Resource SKUs list offers `vm_size` to this subscription in `region`
        (restrictions, zones, generations, security types); None when it does not list it."""
        ...

    def begin_guest_check(self, vm_id: str, os_type: str) -> GuestCheck | CommandRun:
        """Start a trivial command in the guest (Run Command): its answer, or the run to read.

        Sending it again after it finished runs the same harmless echo once more; Azure
        refuses a second one while the first still runs.
        """
        ...

    def read_guest_check(self, run: CommandRun) -> GuestCheck | CommandRun:
        """The guest's answer once the command finished, else the run with Azure's new hint.

        A command Azure accepted but the guest never ran is a failed check, not an error.
        """
        ...

    def list_tagged(self, resource_group: str, *tags: str) -> list[TaggedResource]:
        """Resources in a group that carry any of `tags` (any value): one list of the group."""
        ...

    def set_policy_tag(self, vm_id: str, value: str | None) -> None:
        """Merge the `backup-policy` tag onto a VM (None removes it) through the Tags API."""
        ...

    def tag_snapshot(self, snapshot_id: str, tags: Mapping[str, str | None]) -> None:
        """Merge tags onto a snapshot (a None value removes that tag), keeping its others."""
        ...


@dataclasses.dataclass(frozen=True)
class VerificationSummary(JsonRecord):
    """Verification results of one VM over a window."""

    vm_key: str
    total: int
    passed: int
    failures: tuple[Verification, ...]
    last_verified: datetime | None

    @property
    def success_rate(self) -> float | None:
        return None if self.total == 0 else self.passed / self.total


@dataclasses.dataclass(frozen=True)
class DrSuccessRate(JsonRecord):
    """DR tests of one VM (or the fleet, vm_key "*") over a window."""

    vm_key: str
    total: int
    succeeded: int
    last_rto_seconds: float | None = None

    @property
    def rate(self) -> float | None:
        return None if self.total == 0 else self.succeeded / self.total


class BackupCatalog(Protocol):
    """The app's records in Table Storage: backups, copy jobs, verifications, DR tests, audit."""

    def save_backup(self, backup: Backup) -> None:
        """Upsert a backup on its deterministic key (a retried step rewrites the same row)."""
        ...

    def get_backup(self, vm_key: str, backup_id: str) -> Backup | None: ...

    def find_backup(self, backup_id: str) -> Backup | None:
        """A backup by id alone (ids are unique across VMs), for commands given only the id."""
        ...

    def list_backups(
        self, vm_key: str, *, include_deleted: bool = False, since: datetime | None = None
    ) -> list[Backup]:
        """A VM's backups (taken at or after `since`, if given), newest first."""
        ...

    def update_backup(
        self,
        vm_key: str,
        backup_id: str,
        merge: Callable[[Backup], dict[str, object]] | None = None,
        /,
        **changes: object,
    ) -> Backup:
        """Change some fields of a backup under ETag concurrency, retrying on a lost race;
        `merge` makes changes from the row as each attempt reads it."""
        ...

    def latest_backups(self, vm_keys: Iterable[str] | None = None) -> dict[str, Backup]:
        """The newest completed backup of every VM (their RPO), or of `vm_keys` only."""
        ...

    def boot_times(self, group: str, vm_name: str) -> tuple[BootBounds | None, float | None]:
        """(What the group's boots took, when after its provisioning the VM was last seen
        starting)."""
        ...

    def note_starting(self, group: str, vm_name: str, seconds: float) -> None:
        """The VM was seen starting `seconds` after its provisioning."""
        ...

    def note_booted(self, group: str, vm_name: str, bounds: BootBounds | None) -> None:
        """The VM was seen running: what the group's boots took (None: unchanged)."""
        ...

    def copy_samples(self, source: str, target: str) -> list[CopySample]:
        """What recent copies from region `source` into `target` took, oldest first."""
        ...

    def note_copy(self, source: str, target: str, sample: CopySample) -> None:
        """Add what a copy from `source` into `target` took to the pair's samples."""
        ...

    def backups_needing_replication(self) -> list[Backup]:
        """Completed backups with a target region whose replica is missing or failed."""
        ...

    def unverified_backups(self) -> list[Backup]:
        """Completed backups never verified, oldest first."""
        ...

    def save_replication_job(self, job: ReplicationJob) -> None: ...

    def save_replication_jobs(self, jobs: Iterable[ReplicationJob]) -> None:
        """Upsert several jobs in batch transactions (a backup's jobs share a partition)."""
        ...

    def get_replication_job(self, vm_key: str, job_id: str) -> ReplicationJob | None: ...

    def copies_in_progress(self, target_region: str, *, claimed_since: datetime) -> int:
        """Copy slots taken in a region (Azure allows 100 per subscription): jobs copying, and
        jobs pending since `claimed_since`."""
        ...

    def delete_replication_jobs(self, jobs: Iterable[ReplicationJob]) -> None:
        """Delete jobs that never started a copy."""
        ...

    def list_replication_jobs(
        self,
        *,
        status: ReplicationStatus | None = None,
        vm_key: str | None = None,
        backup_id: str | None = None,
    ) -> list[ReplicationJob]:
        """Replication jobs, optionally of one status, VM and backup, newest started first."""
        ...

    def save_verification(self, verification: Verification) -> None: ...

    def verifications(self, vm_key: str, *, now: datetime, days: int) -> list[Verification]:
        """A VM's verifications over the last `days`, newest first."""
        ...

    def verification_report(
        self, *, now: datetime, days: int, vm_key: str | None = None
    ) -> list[VerificationSummary]:
        """Per VM over the last `days`: total, passed, failures and the last verification."""
        ...

    def save_dr_test(self, test: DrTest) -> None: ...

    def dr_history(self, vm_key: str, *, now: datetime, days: int) -> list[DrTest]:
        """A VM's DR tests over the last `days`, newest first."""
        ...

    def dr_success_rates(
        self, *, now: datetime, days: int, vm_key: str | None = None
    ) -> list[DrSuccessRate]:
        """DR success per VM over the last `days`, and the fleet as vm_key "*" (last)."""
        ...

    def save_failover(self, failover: Failover) -> None:
        """Upsert a VM's failover row (keyed by its start and id: a repeat rewrites it)."""
        ...

    def failovers(self, *, now: datetime, days: int, vm_key: str | None = None) -> list[Failover]:
        """Failovers started in the last `days` up to `now`, of one VM or all, newest first."""
        ...

    def rto_percentiles(
        self,
        *,
        now: datetime,
        days: int,
        vm_key: str | None = None,
        percentiles: Sequence[int] = (50, 90, 99),
    ) -> dict[int, float]:
        """RTO percentiles (seconds) of successful DR tests over the last `days`."""
        ...

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
        """Take `work` for `owner` unless someone else holds it; the claim as it now stands
        (ours when `.owner == owner`). Released claims, and claims older than `stale_after`
        (their owner died), are taken over with the next generation; taking it again as the
        same owner returns the same claim (a retried step). `vm` and `nics` go with a new
        claim."""
        ...

    def get_claim(self, vm_key: str, work: str) -> Claim | None:
        """The claim on `work` as it stands (None when nobody ever took it)."""
        ...

    def hold_writes(self, owner: str, now: datetime, held: timedelta) -> datetime:
        """When the fleet run `owner`'s page may spend the subscription's write bucket on
        snapshots, for `held` from then: after any other run's hold (extends the run's own,
        never shortens it)."""
        ...

    def write_hold(self) -> WriteHold | None:
        """Which run holds the write bucket, from when until when (None: never held)."""
        ...

    def writes_held_until(self) -> datetime | None:
        """Until when a fleet run holds the write bucket (None: never held)."""
        ...

    def reserve_writes(self, writes: int, now: datetime) -> datetime:
        """When `writes` may be sent: after the fleet run's hold and every earlier
        reservation, which then ends `writes` refills later."""
        ...

    def admit(
        self, vm_key: str, now: datetime, *, window: timedelta, limit: int
    ) -> datetime | None:
        """Count a manual request against the VM's `limit` per `window`, atomically; None when
        admitted, else when the next one would be."""
        ...

    def release(self, vm_key: str, work: str, owner: str) -> None:
        """Let go of a claim `owner` holds (nothing if it holds none)."""
        ...

    def nic_listing(self) -> NicListing | None:
        """The last list of the subscription's NICs kept (None: none yet)."""
        ...

    def save_nic_listing(self, listing: NicListing, nics: Sequence[NicConfig]) -> None:
        """Keep a fleet run's list of NICs (the NICs not in it are forgotten)."""
        ...

    def listed_nics(self, run: str, nic_ids: Iterable[str]) -> dict[str, NicConfig]:
        """Those of `nic_ids` the run `run` listed, by id (lower case)."""
        ...

    def in_use_listing(self, group: str) -> InUseListing | None:
        """The last listing of what the restores in `group` came from (None: never listed)."""
        ...

    def save_in_use_listing(self, listing: InUseListing) -> None: ...

    def given_groups(self) -> GivenGroups | None:
        """The last listing of the groups DR tests were given (None: never listed)."""
        ...

    def save_given_groups(self, listing: GivenGroups) -> None: ...

    def get_retention_state(self, vm_key: str) -> RetentionState | None:
        """What retention remembers of the VM (None before its first run)."""
        ...

    def save_retention_state(self, state: RetentionState) -> None: ...

    def audit(self, entry: AuditEntry) -> None:
        """Append one create/delete to the audit log."""
        ...

    def audit_entries(self, *, since: datetime, vm_key: str | None = None) -> list[AuditEntry]:
        """Audit entries since a moment, oldest first."""
        ...
