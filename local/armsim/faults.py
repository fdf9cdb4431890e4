"""Injected failures: rules matched by operation, resource path and region.

Operation names (`FaultRule.operation`, an fnmatch pattern such as "snapshots.*" or "*"):
vms.list, vms.get, vms.create, vms.update, vms.delete, vms.instance_view, runcommand,
disks.get, disks.create, disks.delete, disks.access, snapshots.list, snapshots.get,
snapshots.create (createOption Copy), snapshots.copy (createOption CopyStart), snapshots.update,
snapshots.delete, snapshots.access, nics.list, nics.get, nics.create, nics.delete, vnets.get,
vnets.create, vnets.delete, subnets.get, nsgs.get, nsgs.create, nsgs.delete, groups.get,
groups.list, groups.create, resources.list, resources.get, resources.delete, tags.get,
tags.update, skus.list, operations.get (LRO polls), and blob.read (a read through a disk's or
snapshot's SAS URL, local/armsim/blobdata.py; its paths are the resource id and the blob path).

Kinds and where they act:
- 5xx: the request answers 500 InternalServerError.
- 429: the request answers 429 TooManyRequests with Retry-After (`retry_after`).
- region-outage: any request for a resource in `region` answers 503 ServiceUnavailable.
- sku-not-available / quota-exceeded (VM creates only): the VM PUT answers 409 SkuNotAvailable /
  QuotaExceeded, with Azure's messages (local/armsim/vms.py).
- allocation-failed / zonal-allocation-failed (VM creates only; the zonal one for a VM in a
  zone): the VM PUT is accepted, then its operation fails with AllocationFailed /
  ZonalAllocationFailed; the VM ends provisioningState Failed and its instance view shows
  `ProvisioningState/failed/<code>` with the message.
- fail-operation: a create/delete/Run Command is accepted, then its long-running operation fails
  (provisioningState Failed; the operation reports the error).
- copy-fails: a CopyStart stops half way with copyCompletionError.
- never-boots / guest-silent: a VM create whose VM, disks or their source snapshots match
  `resource` never reaches PowerState/running / never answers Run Command.
- sas-expires (blob.read only): the read answers 403 AuthenticationFailed as a SAS past its
  expiry does ("Signed expiry time [...] must be after signed start time [...]"); with `count`,
  the next N reads, e.g. a SAS that expires in the middle of a verification.

Content faults change what a disk's bytes are rather than how a request is answered; they are set
per disk in the fleet file (`content.fault`) or at run time (ArmSimulator.set_content_fault) and
reach every snapshot taken after they strike (local/armsim/diskimage.py):
- zeroed: from `since` on every byte reads zero and the disk has no page ranges;
- encrypted: from `since` every used block is rewritten with uniform random bytes over a day
  (entropy about 8 bits a byte; page-range diffs show the whole disk changing), later writes too;
- corrupt-gpt: from `since` the primary and backup GPT headers carry a wrong CRC32 (on an MBR
  disk, the boot signature 0x55AA is gone).
"""

from __future__ import annotations

import fnmatch
import random
import threading
from dataclasses import dataclass

IMMEDIATE_KINDS = frozenset({"5xx", "429", "region-outage"})
DEFERRED_KINDS = frozenset({"fail-operation", "copy-fails", "never-boots", "guest-silent"})
# Capacity faults: only a VM create can meet them (the VM PUT handler takes them).
VM_CREATE_KINDS = frozenset(
    {"sku-not-available", "quota-exceeded", "allocation-failed", "zonal-allocation-failed"}
)
# Data-plane faults: only a blob read can meet them (local/armsim/blobdata.py takes them).
BLOB_READ_KINDS = frozenset({"sas-expires"})
KINDS = IMMEDIATE_KINDS | DEFERRED_KINDS | VM_CREATE_KINDS | BLOB_READ_KINDS


@dataclass
class FaultRule:
    """Fail `operation` on resources whose path matches `resource` (fnmatch, case-insensitive).

    `count` firings (None: every time) or, with `probability`, a seeded coin per match.
    """

    operation: str = "*"
    resource: str = "*"
    kind: str = "5xx"
    count: int | None = None
    probability: float | None = None
    region: str | None = None
    retry_after: int = 1  # seconds, for kind 429

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; one of {', '.join(sorted(KINDS))}")
        if self.probability is not None and not 0.0 <= self.probability <= 1.0:
            raise ValueError("fault probability must be between 0 and 1")
        if self.count is not None and self.count < 0:
            raise ValueError("fault count must be >= 0")
        if self.kind == "region-outage" and not self.region:
            raise ValueError("a region-outage fault needs a region")
        if self.kind in VM_CREATE_KINDS and not fnmatch.fnmatchcase("vms.create", self.operation):
            raise ValueError(
                f"a {self.kind} fault acts on VM creates: its operation must match vms.create"
            )
        if self.kind in BLOB_READ_KINDS and not fnmatch.fnmatchcase("blob.read", self.operation):
            raise ValueError(
                f"a {self.kind} fault acts on blob reads: its operation must match blob.read"
            )
        if self.region:
            self.region = normalise_region(self.region)

    def matches(self, operation: str, paths: list[str], region: str | None) -> bool:
        if self.count == 0 or not fnmatch.fnmatchcase(operation, self.operation):
            return False
        if self.region and self.region != region:
            return False
        pattern = self.resource.lower()
        return any(fnmatch.fnmatchcase(path.lower(), pattern) for path in paths)


def normalise_region(region: str) -> str:
    """Azure accepts "West US" and "westus" alike; the simulator keeps the short form."""
    return region.replace(" ", "").lower()


class Faults:
    """The active rules; thread-safe, with a seeded RNG so probabilistic runs repeat."""

    def __init__(self, seed: int = 0) -> None:
        self._rules: list[FaultRule] = []
        self._random = random.Random(seed)
        self._lock = threading.Lock()

    def add(self, rule: FaultRule) -> None:
        with self._lock:
            self._rules.append(rule)

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()

    def rules(self) -> list[FaultRule]:
        with self._lock:
            return list(self._rules)

    def take(
        self, operation: str, paths: list[str], region: str | None, kinds: frozenset[str]
    ) -> FaultRule | None:
        """The first rule of `kinds` that fires for this request, spending one of its count."""
        with self._lock:
            for rule in self._rules:
                if rule.kind not in kinds or not rule.matches(operation, paths, region):
                    continue
                if rule.probability is not None and self._random.random() >= rule.probability:
                    continue
                if rule.count is not None:
                    rule.count -= 1
                return rule
            return None
