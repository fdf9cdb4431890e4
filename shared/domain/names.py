"""Deterministic names for everything the app creates, so a retried step PUTs the same resource.

Azure snapshot and disk names: 1..80 characters of letters, digits, `_`, `.` and `-`, starting with
a letter or digit and ending with a letter, digit or `_`; VM names at most 64. Names here are
lowercase (Azure names are case-insensitive), carry a short hash of the VM key (two VMs of the same
name in different resource groups must not collide), and when a free-text part has to be cut or
cleaned, a hash of the original is appended so distinct inputs stay distinct.
"""

from __future__ import annotations

import hashlib
import re
from datetime import datetime

from shared.domain.schedule import require_utc

NAME_LIMIT = 80  # snapshots, disks, NICs
VM_NAME_LIMIT = 64
HASH_LENGTH = 10  # hex digits: 40 bits, collision-free in practice for a subscription's VMs

REGION_PATTERN = re.compile(r"[a-z][a-z0-9]{2,31}")
_DISK_ROLE = re.compile(r"os|lun[0-9]{1,3}")
_KIND = re.compile(r"[a-z](?:[a-z0-9_-]{0,38}[a-z0-9])?")
_TEST_ID = re.compile(r"[a-z0-9][a-z0-9-]{0,38}[a-z0-9]")
_INVALID = re.compile(r"[^a-z0-9_.-]+")
DR_KINDS = ("vm", "nic", "disk")


def short_hash(text: str) -> str:
    """A stable short hex digest of `text` (not a secret: only to tell names apart)."""
    return hashlib.sha256(text.encode()).hexdigest()[:HASH_LENGTH]


def _stamp(moment: datetime, what: str) -> str:
    """`20261129t020000z`: UTC time that sorts as a string."""
    return require_utc(moment, what).strftime("%Y%m%dt%H%M%Sz")


def _fit(head: str, tail: str, limit: int = NAME_LIMIT) -> str:
    """`head-tail` within `limit`; `head` (free text) is cleaned, and cut with a hash if needed.

    `tail` is built here from validated parts and always ends with a letter or digit.
    """
    original = head
    head = _INVALID.sub("-", head.lower()).strip("-._")
    room = limit - len(tail) - 1
    if head == original.lower() and 0 < len(head) <= room:
        return f"{head}-{tail}"
    digest = short_hash(original.lower())
    cut = head[: room - HASH_LENGTH - 1].rstrip("-._")
    return f"{cut}-{digest}-{tail}" if cut else f"{digest}-{tail}"


def _require(pattern: re.Pattern[str], value: str, what: str, expected: str) -> str:
    if not pattern.fullmatch(value):
        raise ValueError(f"{what}={value!r}: must be {expected}")
    return value


def _role(disk_role: str) -> str:
    return _require(_DISK_ROLE, disk_role, "disk_role", "'os' or 'lun<N>'")


def _vm_key_hash(vm_key: str) -> str:
    if not vm_key:
        raise ValueError("vm_key='': must not be empty")
    return short_hash(vm_key.lower())


def backup_id(vm_key: str, slot: datetime, manual: bool = False) -> str:
    """`20261129t020000z-<vm hash>[-m]`: sorts by time, unique across VMs, `-m` for manual runs."""
    marker = "-m" if manual else ""
    return f"{_stamp(slot, 'slot')}-{_vm_key_hash(vm_key)}{marker}"


def snapshot_name(
    vm_name: str, vm_key: str, disk_role: str, slot: datetime, manual: bool = False
) -> str:
    """`<vm>-<disk role>-<backup id>`: one snapshot per disk per backup."""
    return _fit(vm_name, f"{_role(disk_role)}-{backup_id(vm_key, slot, manual)}")


def replica_name(snapshot_name: str, region: str) -> str:
    """The cross-region copy of a snapshot: `<snapshot>-<target region>`."""
    return _fit(snapshot_name, _require(REGION_PATTERN, region, "region", "an Azure region name"))


def verify_disk_name(snapshot_name: str) -> str:
    """The throwaway disk a verification restores a snapshot to."""
    return _fit(snapshot_name, "verify")


def dr_test_id(vm_key: str, started: datetime) -> str:
    """`dr-<vm hash>-20261129t020000z`: one DR test of a VM started at a given time; also the
    test's durable instance id, so `orchestration_prefix("dr", vm_key)` finds a running test."""
    return orchestration_id("dr", vm_key, started)


def dr_resource_name(kind: str, vm_name: str, test_id: str, disk_role: str | None = None) -> str:
    """`<vm>-<test id>[-nic|-<disk role>]`: what a DR test creates in the DR-test resource group."""
    if kind not in DR_KINDS:
        raise ValueError(f"kind={kind!r}: must be one of {', '.join(DR_KINDS)}")
    if kind == "disk" and disk_role is None:
        raise ValueError("kind='disk' needs a disk_role ('os' or 'lun<N>')")
    if kind != "disk" and disk_role is not None:
        raise ValueError(f"disk_role={disk_role!r}: only for kind 'disk', not {kind!r}")
    test = _require(_TEST_ID, test_id, "test_id", "2..40 lowercase letters, digits and '-'")
    if kind == "vm":
        return _fit(vm_name, test, VM_NAME_LIMIT)
    suffix = "nic" if disk_role is None else _role(disk_role)
    return _fit(vm_name, f"{test}-{suffix}")


def backup_claim(backup_id: str) -> str:
    """The work a slot's backup is claimed under (see BackupCatalog.claim)."""
    return f"backup~{backup_id}"


def replication_claim(backup_id: str) -> str:
    """The work a backup's replication is claimed under."""
    return f"replicate~{backup_id}"


def copy_probe_claim(source: str, target: str, first: bool) -> str:
    """The work one copy claims to probe how long copies between two regions take."""
    return f"copy-probe~{source.lower()}~{target.lower()}~{'first' if first else 'changes'}"


def backup_instance_id(vm_key: str, slot: datetime, generation: int) -> str:
    """A scheduled backup's instance id: per (VM, slot, claim generation), so a retry of the
    slot (a later claim) is a new instance and never replaces a running one."""
    return f"{orchestration_id('backup', vm_key, slot)}-g{generation}"


def orchestration_prefix(kind: str, vm_key: str) -> str:
    """`<kind>-<vm hash>-`: what every durable instance id of one kind for one VM starts with."""
    _require(_KIND, kind, "kind", "lowercase letters, digits, '_' and '-' (like vm_backup)")
    return f"{kind}-{_vm_key_hash(vm_key)}-"


def orchestration_id(kind: str, vm_key: str, slot: datetime) -> str:
    """`<kind>-<vm hash>-<slot>`: a durable instance id, so a VM gets one workflow of a kind per
    slot (scheduled backups add their claim generation: see backup_instance_id)."""
    return orchestration_prefix(kind, vm_key) + _stamp(slot, "slot")
