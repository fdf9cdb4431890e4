"""Synthetic managed-disk contents: sparse images with real partition tables and file systems.

A disk is never materialised. Its bytes are a function of its layout (partition table and file
system signatures, where a reader looks for them) and its write history: data blocks hold seeded
pseudo-random "plausible data" (32 symbols, 5 bits of entropy a byte; uniform random bytes inside
LUKS and BitLocker volumes and on an encrypted disk), every other byte is zero and outside the page
ranges. History is a chain of segments, one per disk the content lived on: a fleet disk has one,
a disk restored from a snapshot adds its own. Each hour of a segment rewrites `churn_per_day / 24`
of the used blocks (a seeded sample), so a block's bytes follow from (seed, block, last write) and
a snapshot is the chain frozen at its creation.

Fleet files may describe a disk's content (the `content` key of a disk spec, every key optional):
    {"table": "gpt" | "mbr",
     "partitions": [{"fs": "ext4" | "xfs" | "btrfs" | "ntfs" | "vfat" | "swap" | "lvm" | "luks" |
                     "bitlocker" | "msr", "size_gib": N (the last may omit it: the rest),
                     "label": "..."}],
     "used_fraction": 0.3, "churn_per_day": 0.02,
     "fault": {"kind": "zeroed" | "encrypted" | "corrupt-gpt", "since_day": 0}}
Defaults follow the VM: a Linux gen2 OS disk is GPT with an EFI vfat partition and an ext4 root
(xfs on some VMs), Windows gen2 GPT with EFI, MSR and NTFS, gen1 OS disks MBR, data disks GPT
with one ext4/xfs (Linux) or NTFS (Windows) partition. Churn defaults to the disk's
change_gib_per_day over its used GiB, so the bill and the page-range diffs tell one story.

Content faults (local/armsim/faults.py lists them with the rule kinds): `zeroed` (from `since` on
every byte reads zero, no page ranges), `encrypted` (from `since` every used block is rewritten
with uniform random bytes over a day, front to back, and later writes are random too) and
`corrupt-gpt` (from `since` both GPT headers carry a wrong CRC32; on an MBR disk the 0x55AA boot
signature is gone).
"""

from __future__ import annotations

import bisect
import math
import random
import struct
import uuid
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from functools import cached_property, lru_cache
from typing import Any

SECTOR = 512
BLOCK = 1024 * 1024  # the unit of allocation, rewrite and page ranges
RUN_BLOCKS = 16  # blocks an extent of churn rewrites together
CHUNK = 64 * 1024  # the unit of generation: a read makes only the chunks it touches
MIB = 1024 * 1024
GIB = 1024**3
TICK = timedelta(hours=1)
TICKS_PER_DAY = 24
DEFAULT_USED_FRACTION = 0.3
FAULT_KINDS = ("zeroed", "encrypted", "corrupt-gpt")

# ----------------------------------------------------------------------------------------------
# On-disk layouts, all in one place. Sources:
# - UEFI Specification 2.10, section 5 "GUID Partition Table (GPT) Disk Layout": the protective
#   MBR (5.2.3, OSType 0xEE, StartingLBA 1), the GPT header (Table 5-5, 92 bytes, CRC32 over the
#   header with its CRC field zero, and over the partition entry array), 128 entries of 128 bytes
#   (Table 5-6, mixed-endian GUIDs), the backup header at the last LBA with its entries before it;
#   type GUIDs from Table 5-7 and the Discoverable Partitions Specification (uapi-group.org).
# - MBR partition records (boot flag, CHS, type, LBA start, sectors; 0x55AA at 510): Microsoft,
#   "Master Boot Record" in the Windows Server disk docs; types 0x83 Linux, 0x07 NTFS, 0x0C FAT32
#   LBA, 0x82 swap, 0x8E LVM.
# - ext4 superblock at 1024 (kernel Documentation/filesystems/ext4/super.rst): s_blocks_count_lo
#   0x4, s_log_block_size 0x18, s_magic 0xEF53 at 0x38, s_rev_level 0x4C, s_inode_size 0x58,
#   s_uuid 0x68, s_volume_name 0x78.
# - XFS superblock at 0, big-endian (fs/xfs/libxfs/xfs_format.h, struct xfs_dsb): "XFSB",
#   sb_blocksize 4, sb_dblocks 8, sb_uuid 32, sb_fname (12 bytes) 108.
# - Btrfs superblock at 64 KiB (btrfs.readthedocs.io, "On-disk format"): fsid 0x20, bytenr 0x30,
#   magic "_BHRfS_M" 0x40, total_bytes 0x70, sectorsize 0x90, nodesize 0x94, label 0x12B.
# - NTFS boot sector (Microsoft, "NTFS overview" / BPB layout): "NTFS    " at 3, bytes per sector
#   0x0B, sectors per cluster 0x0D, total sectors 0x28, $MFT cluster 0x30, serial 0x48, 0x55AA.
# - FAT32 boot sector and FSInfo (Microsoft FAT specification, fatgen103): BPB at 0x0B, BS_VolID
#   0x43, BS_VolLab 0x47, BS_FilSysType "FAT32   " 0x52, FSInfo "RRaA"/"rrAa" in sector 1.
# - Linux swap (include/linux/swap.h, union swap_header): version, last_page, uuid 1036, label
#   1052, and "SWAPSPACE2" in the last 10 bytes of the 4 KiB page.
# - LVM2 physical volume label in sector 1 (lvm2 lib/label/label.h, lib/format_text/layout.h):
#   "LABELONE", sector, CRC (lvm's crc32 from 0xf597a6cf over bytes 20..511), offset 32,
#   "LVM2 001", then the PV header (32-character uuid, device size).
# - LUKS2 binary header (cryptsetup docs/on-disk-format-luks2.pdf): "LUKS\xba\xbe", version 2,
#   header size, label at 24, checksum algorithm 72, uuid 168; the second header at 16 KiB
#   ("SKUL\xba\xbe").
# - BitLocker volume header (libbde documentation, "BitLocker Drive Encryption (BDE) format"):
#   "-FVE-FS-" as the OEM id at 3 and 0x55AA at 510.
# Checksums this model does not compute: Btrfs and LUKS2 header checksums, ext4 metadata_csum.
# ----------------------------------------------------------------------------------------------

GPT_ENTRIES = 128
GPT_ENTRY_SIZE = 128
GPT_ENTRY_SECTORS = GPT_ENTRIES * GPT_ENTRY_SIZE // SECTOR  # 32

_EFI = uuid.UUID("C12A7328-F81F-11D2-BA4B-00A0C93EC93B")
_MS_BASIC_DATA = uuid.UUID("EBD0A0A2-B9E5-4433-87C0-68B6B72699C7")
_MS_RESERVED = uuid.UUID("E3C9E316-0B5C-4DB8-817D-F92DF00215AE")
_LINUX_DATA = uuid.UUID("0FC63DAF-8483-4772-8E79-3D69D8477DE4")
_LINUX_SWAP = uuid.UUID("0657FD6D-A4AB-43C4-84E5-0933C84B4F4F")
_LINUX_LVM = uuid.UUID("E6D6D379-F507-44C2-A23C-238F2A3DF928")
_LINUX_LUKS = uuid.UUID("CA7D7CCB-63ED-4C53-861C-1742536059CC")


@dataclass(frozen=True)
class FileSystem:
    """A partition kind: its GPT type GUID, MBR type byte, whether it holds data, and how."""

    gpt_type: uuid.UUID
    mbr_type: int
    holds_data: bool = True
    ciphertext: bool = False  # its data blocks are uniform random bytes (an encrypted volume)


FILE_SYSTEMS: dict[str, FileSystem] = {
    "ext4": FileSystem(_LINUX_DATA, 0x83),
    "xfs": FileSystem(_LINUX_DATA, 0x83),
    "btrfs": FileSystem(_LINUX_DATA, 0x83),
    "ntfs": FileSystem(_MS_BASIC_DATA, 0x07),
    "vfat": FileSystem(_EFI, 0x0C),
    "swap": FileSystem(_LINUX_SWAP, 0x82, holds_data=False),
    "lvm": FileSystem(_LINUX_LVM, 0x8E),
    "luks": FileSystem(_LINUX_LUKS, 0x83, ciphertext=True),
    "bitlocker": FileSystem(_MS_BASIC_DATA, 0x07, ciphertext=True),
    "msr": FileSystem(_MS_RESERVED, 0x00, holds_data=False),
}

Patch = tuple[int, bytes]  # (offset, bytes) relative to a partition or the disk


def _label(text: str, size: int, encoding: str = "ascii", pad: bytes = b"\0") -> bytes:
    raw = text.encode(encoding, errors="replace")[:size]
    return raw + pad * (size - len(raw))


def _ext4(size: int, label: str, fs_uuid: uuid.UUID, start_lba: int) -> list[Patch]:
    sb = bytearray(1024)
    blocks = size // 4096
    struct.pack_into("<II", sb, 0x0, blocks // 4, blocks)
    struct.pack_into("<I", sb, 0x18, 2)  # 1024 << 2 = 4 KiB blocks
    struct.pack_into("<HH", sb, 0x38, 0xEF53, 1)  # magic, state clean
    struct.pack_into("<I", sb, 0x4C, 1)  # dynamic revision
    struct.pack_into("<H", sb, 0x58, 256)
    # compat has_journal; incompat filetype, extents, 64bit, flex_bg (mkfs.ext4's defaults)
    struct.pack_into("<II", sb, 0x5C, 0x4, 0x2 | 0x40 | 0x80 | 0x200)
    sb[0x68:0x78] = fs_uuid.bytes
    sb[0x78:0x88] = _label(label, 16)
    return [(1024, bytes(sb))]


def _xfs(size: int, label: str, fs_uuid: uuid.UUID, start_lba: int) -> list[Patch]:
    sb = bytearray(512)
    struct.pack_into(">4sIQ", sb, 0, b"XFSB", 4096, size // 4096)
    sb[32:48] = fs_uuid.bytes
    sb[108:120] = _label(label, 12)
    return [(0, bytes(sb))]


def _btrfs(size: int, label: str, fs_uuid: uuid.UUID, start_lba: int) -> list[Patch]:
    sb = bytearray(4096)
    sb[0x20:0x30] = fs_uuid.bytes
    struct.pack_into("<Q8s", sb, 0x30, 65536, b"")
    sb[0x40:0x48] = b"_BHRfS_M"
    struct.pack_into("<Q", sb, 0x70, size)
    struct.pack_into("<II", sb, 0x90, 4096, 16384)
    sb[0x12B:0x22B] = _label(label, 256)
    return [(65536, bytes(sb))]


def _boot_sector(jump: bytes, oem: bytes) -> bytearray:
    sector = bytearray(SECTOR)
    sector[0:3] = jump
    sector[3:11] = oem
    struct.pack_into("<HB", sector, 0x0B, SECTOR, 8)
    sector[0x15] = 0xF8
    sector[510:512] = b"\x55\xaa"
    return sector


def _ntfs(size: int, label: str, fs_uuid: uuid.UUID, start_lba: int) -> list[Patch]:
    sector = _boot_sector(b"\xeb\x52\x90", b"NTFS    ")
    struct.pack_into("<I", sector, 0x1C, start_lba)
    struct.pack_into("<QQQ", sector, 0x28, size // SECTOR - 1, 786432, 2)
    sector[0x40] = 0xF6  # an MFT record is 2**10 bytes
    struct.pack_into("<Q", sector, 0x48, fs_uuid.int & (2**64 - 1))
    return [(0, bytes(sector))]


def _vfat(size: int, label: str, fs_uuid: uuid.UUID, start_lba: int) -> list[Patch]:
    sector = _boot_sector(b"\xeb\x58\x90", b"MSDOS5.0")
    total = size // SECTOR
    struct.pack_into("<HB", sector, 0x0E, 32, 2)  # reserved sectors, FATs
    struct.pack_into("<HHII", sector, 0x18, 63, 255, start_lba, total)
    struct.pack_into("<IHHIHH", sector, 0x24, max(1, total // 1024), 0, 0, 2, 1, 6)
    struct.pack_into("<BBBI", sector, 0x40, 0x80, 0, 0x29, fs_uuid.int & 0xFFFFFFFF)
    sector[0x47:0x52] = _label(label.upper() or "NO NAME", 11, pad=b" ")
    sector[0x52:0x5A] = b"FAT32   "
    info = bytearray(SECTOR)
    info[0:4], info[484:488] = b"RRaA", b"rrAa"
    struct.pack_into("<II", info, 488, 0xFFFFFFFF, 0xFFFFFFFF)
    info[508:512] = b"\x00\x00\x55\xaa"
    return [(0, bytes(sector)), (SECTOR, bytes(info))]


def _swap(size: int, label: str, fs_uuid: uuid.UUID, start_lba: int) -> list[Patch]:
    page = bytearray(4096)
    struct.pack_into("<III", page, 1024, 1, size // 4096 - 1, 0)
    page[1036:1052] = fs_uuid.bytes
    page[1052:1068] = _label(label, 16)
    page[4086:4096] = b"SWAPSPACE2"
    return [(0, bytes(page))]


def _lvm_crc(data: bytes) -> int:
    """lvm2's calc_crc: the zlib CRC-32 polynomial from 0xf597a6cf, without the final xor."""
    return ~zlib.crc32(data, ~0xF597A6CF & 0xFFFFFFFF) & 0xFFFFFFFF


def _lvm(size: int, label: str, fs_uuid: uuid.UUID, start_lba: int) -> list[Patch]:
    sector = bytearray(SECTOR)
    sector[0:8] = b"LABELONE"
    struct.pack_into("<Q", sector, 8, 1)
    struct.pack_into("<I8s", sector, 20, 32, b"LVM2 001")
    sector[32:64] = fs_uuid.hex.encode()
    struct.pack_into("<Q", sector, 64, size)
    struct.pack_into("<I", sector, 16, _lvm_crc(bytes(sector[20:])))
    return [(SECTOR, bytes(sector))]


def _luks(size: int, label: str, fs_uuid: uuid.UUID, start_lba: int) -> list[Patch]:
    def header(magic: bytes, offset: int) -> bytes:
        data = bytearray(SECTOR)
        struct.pack_into(">6sHQQ", data, 0, magic, 2, 16384, 1)
        data[24:72] = _label(label, 48)
        data[72:104] = _label("sha256", 32)
        data[168:208] = _label(str(fs_uuid), 40)
        struct.pack_into(">Q", data, 256, offset)
        return bytes(data)

    return [(0, header(b"LUKS\xba\xbe", 0)), (16384, header(b"SKUL\xba\xbe", 16384))]


def _bitlocker(size: int, label: str, fs_uuid: uuid.UUID, start_lba: int) -> list[Patch]:
    sector = _boot_sector(b"\xeb\x58\x90", b"-FVE-FS-")
    struct.pack_into("<I", sector, 0x1C, start_lba)
    return [(0, bytes(sector))]


def _nothing(size: int, label: str, fs_uuid: uuid.UUID, start_lba: int) -> list[Patch]:
    return []


_SIGNATURES = {
    "ext4": _ext4,
    "xfs": _xfs,
    "btrfs": _btrfs,
    "ntfs": _ntfs,
    "vfat": _vfat,
    "swap": _swap,
    "lvm": _lvm,
    "luks": _luks,
    "bitlocker": _bitlocker,
    "msr": _nothing,
}


def _gpt_entries(partitions: Iterable[Partition]) -> bytes:
    array = bytearray(GPT_ENTRIES * GPT_ENTRY_SIZE)
    for index, part in enumerate(partitions):
        entry = struct.pack(
            "<16s16sQQQ72s",
            FILE_SYSTEMS[part.fs].gpt_type.bytes_le,
            part.uuid.bytes_le,
            part.start // SECTOR,
            (part.start + part.size) // SECTOR - 1,
            0,
            _label(part.label, 72, "utf-16-le"),
        )
        array[index * GPT_ENTRY_SIZE : (index + 1) * GPT_ENTRY_SIZE] = entry
    return bytes(array)


def _gpt_header(sectors: int, disk_guid: uuid.UUID, entries: bytes, backup: bool) -> bytes:
    """The GPT header (UEFI 2.10 Table 5-5) with its CRC32, padded to a sector."""
    mine, other = (sectors - 1, 1) if backup else (1, sectors - 1)
    entry_lba = sectors - 1 - GPT_ENTRY_SECTORS if backup else 2
    first, last = 2 + GPT_ENTRY_SECTORS, sectors - 2 - GPT_ENTRY_SECTORS
    fields = (b"EFI PART", 0x00010000, 92, 0, 0, mine, other, first, last)
    header = bytearray(
        struct.pack(
            "<8sIIIIQQQQ16sQIII",
            *fields,
            disk_guid.bytes_le,
            entry_lba,
            GPT_ENTRIES,
            GPT_ENTRY_SIZE,
            zlib.crc32(entries),
        )
    )
    struct.pack_into("<I", header, 16, zlib.crc32(header))
    return bytes(header) + bytes(SECTOR - len(header))


def _mbr_record(active: bool, kind: int, start_lba: int, sectors: int) -> bytes:
    # CHS fields hold 0xFE 0xFF 0xFF: "use the LBA fields" on disks past 8 GiB.
    chs = b"\xfe\xff\xff"
    return struct.pack("<B3sB3sII", 0x80 if active else 0, chs, kind, chs, start_lba, sectors)


def _protective_mbr(sectors: int) -> bytes:
    mbr = bytearray(SECTOR)
    record = struct.pack("<B3sB3sII", 0, b"\x00\x02\x00", 0xEE, b"\xff\xff\xff", 1, 0)
    mbr[446:462] = record
    struct.pack_into("<I", mbr, 458, min(sectors - 1, 0xFFFFFFFF))
    mbr[510:512] = b"\x55\xaa"
    return bytes(mbr)


def _legacy_mbr(partitions: Iterable[Partition], signature: int) -> bytes:
    mbr = bytearray(SECTOR)
    struct.pack_into("<I", mbr, 440, signature)
    for index, part in enumerate(partitions):
        record = _mbr_record(
            index == 0, FILE_SYSTEMS[part.fs].mbr_type, part.start // SECTOR, part.size // SECTOR
        )
        mbr[446 + 16 * index : 462 + 16 * index] = record
    mbr[510:512] = b"\x55\xaa"
    return bytes(mbr)


# ----------------------------------------------------------------------------------------------
# What a fleet file says, and the layout it makes.
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PartitionSpec:
    fs: str
    size_gib: float | None = None  # None: the rest of the disk (the last partition only)
    label: str = ""


@dataclass(frozen=True)
class ContentSpec:
    """A disk's `content` in a fleet file; None means "the default for this disk"."""

    table: str | None = None
    partitions: tuple[PartitionSpec, ...] | None = None
    used_fraction: float | None = None
    churn_per_day: float | None = None
    fault: str | None = None
    fault_since_day: float = 0.0


_SPEC_KEYS = {"table", "partitions", "used_fraction", "churn_per_day", "fault"}


def parse_spec(data: Any) -> ContentSpec:
    """A fleet file's `content` object, or ValueError saying what is wrong."""
    if not isinstance(data, Mapping):
        raise ValueError("'content' must be an object")
    unknown = set(data) - _SPEC_KEYS
    if unknown:
        raise ValueError(f"'content' has unknown keys {', '.join(sorted(unknown))}")
    table = data.get("table")
    if table not in (None, "gpt", "mbr"):
        raise ValueError("content 'table' must be gpt or mbr")
    partitions = None
    if "partitions" in data:
        partitions = tuple(_partition_spec(p) for p in data["partitions"] or [])
        if not partitions:
            raise ValueError("content 'partitions' must list at least one partition")
    used = _fraction(data, "used_fraction", 1.0)
    churn = _fraction(data, "churn_per_day", 1.0)
    fault, since = _fault_spec(data.get("fault"))
    return ContentSpec(table, partitions, used, churn, fault, since)


def _partition_spec(data: Any) -> PartitionSpec:
    if not isinstance(data, Mapping) or set(data) - {"fs", "size_gib", "label"}:
        raise ValueError("a content partition is {fs, size_gib?, label?}")
    fs = data.get("fs")
    if fs not in FILE_SYSTEMS:
        raise ValueError(f"partition fs {fs!r} is not one of {', '.join(FILE_SYSTEMS)}")
    size = data.get("size_gib")
    if size is not None and (not isinstance(size, int | float) or size <= 0):
        raise ValueError("partition 'size_gib' must be a positive number")
    return PartitionSpec(str(fs), None if size is None else float(size), str(data.get("label", "")))


def _fraction(data: Mapping[str, Any], key: str, most: float) -> float | None:
    value = data.get(key)
    if value is not None and (not isinstance(value, int | float) or not 0 <= value <= most):
        raise ValueError(f"content '{key}' must be a number from 0 to {most}")
    return None if value is None else float(value)


def _fault_spec(data: Any) -> tuple[str | None, float]:
    if data is None:
        return None, 0.0
    if not isinstance(data, Mapping) or set(data) - {"kind", "since_day"}:
        raise ValueError("content 'fault' is {kind, since_day?}")
    if data.get("kind") not in FAULT_KINDS:
        raise ValueError(f"content fault kind must be one of {', '.join(FAULT_KINDS)}")
    since = data.get("since_day", 0)
    if not isinstance(since, int | float) or since < 0:
        raise ValueError("content fault 'since_day' must be a number >= 0")
    return str(data["kind"]), float(since)


@dataclass(frozen=True)
class DiskFacts:
    """What the defaults depend on: the disk's size, its VM's OS and generation, its role."""

    size: int  # bytes
    os_type: str = "Linux"
    generation: str = "V2"
    os_disk: bool = False
    change_gib_per_day: float = 0.0


@dataclass(frozen=True)
class Partition:
    fs: str
    start: int  # bytes, MiB-aligned
    size: int
    label: str
    uuid: uuid.UUID


@dataclass(frozen=True)
class Extent:
    """A run of used (allocated) data blocks inside a partition."""

    first_block: int
    count: int
    first_used: int  # index of its first block among all used blocks
    ciphertext: bool


@dataclass(frozen=True)
class Layout:
    """The disk's partition table, partitions and used blocks, fixed when the disk is made."""

    seed: str
    size: int
    table: str
    disk_guid: uuid.UUID
    partitions: tuple[Partition, ...]
    extents: tuple[Extent, ...]

    @property
    def used_blocks(self) -> int:
        return sum(e.count for e in self.extents)

    @cached_property
    def _starts(self) -> list[int]:
        return [e.first_block for e in self.extents]

    def used_index(self, block: int) -> tuple[int, Extent] | None:
        """Where a block stands among the used blocks, or None if it is not one."""
        at = bisect.bisect_right(self._starts, block) - 1
        if at < 0:
            return None
        extent = self.extents[at]
        offset = block - extent.first_block
        return (extent.first_used + offset, extent) if offset < extent.count else None

    @cached_property
    def _firsts(self) -> list[int]:
        return [e.first_used for e in self.extents]

    def block_of(self, used: int) -> int:
        at = bisect.bisect_right(self._firsts, used) - 1
        extent = self.extents[at]
        return extent.first_block + used - extent.first_used

    def metadata(self, corrupt: bool) -> dict[int, list[Patch]]:
        """The partition table and file system structures, by chunk: (offset in chunk, bytes)."""
        return self._corrupt_metadata if corrupt else self._metadata

    @cached_property
    def _metadata(self) -> dict[int, list[Patch]]:
        return _by_chunk(self._table_patches(corrupt=False) + self._fs_patches())

    @cached_property
    def _corrupt_metadata(self) -> dict[int, list[Patch]]:
        return _by_chunk(self._table_patches(corrupt=True) + self._fs_patches())

    @cached_property
    def metadata_blocks(self) -> frozenset[int]:
        return frozenset(chunk * CHUNK // BLOCK for chunk in self._metadata)

    @cached_property
    def allocated(self) -> list[tuple[int, int]]:
        """The allocated byte ranges: metadata blocks and used extents."""
        runs = [(e.first_block, e.first_block + e.count - 1) for e in self.extents]
        runs += [(b, b) for b in self.metadata_blocks]
        return merge_ranges((a * BLOCK, (b + 1) * BLOCK - 1) for a, b in runs)

    @cached_property
    def table_blocks(self) -> frozenset[int]:
        """The blocks a corrupt-gpt fault changes (both GPT headers, or the MBR)."""
        return frozenset(off // BLOCK for off, _ in self._table_patches(corrupt=False)[:2])

    def _table_patches(self, corrupt: bool) -> list[Patch]:
        sectors = self.size // SECTOR
        if self.table == "mbr":
            mbr = _legacy_mbr(self.partitions, self.disk_guid.int & 0xFFFFFFFF)
            return [(0, mbr[:510] + (b"\0\0" if corrupt else mbr[510:]))]
        entries = _gpt_entries(self.partitions)
        primary = _gpt_header(sectors, self.disk_guid, entries, backup=False)
        backup = _gpt_header(sectors, self.disk_guid, entries, backup=True)
        if corrupt:
            primary, backup = _bad_crc(primary), _bad_crc(backup)
        last = (sectors - 1) * SECTOR
        return [
            (SECTOR, primary),
            (last, backup),
            (0, _protective_mbr(sectors)),
            (2 * SECTOR, entries),
            (last - len(entries), entries),
        ]

    def _fs_patches(self) -> list[Patch]:
        patches: list[Patch] = []
        for part in self.partitions:
            made = _SIGNATURES[part.fs](part.size, part.label, part.uuid, part.start // SECTOR)
            patches.extend((part.start + offset, data) for offset, data in made)
        return patches


def _bad_crc(header: bytes) -> bytes:
    crc = struct.unpack_from("<I", header, 16)[0] ^ 0xFFFFFFFF
    return header[:16] + struct.pack("<I", crc) + header[20:]


def _by_chunk(patches: list[Patch]) -> dict[int, list[Patch]]:
    found: dict[int, list[Patch]] = {}
    for offset, data in patches:
        at = 0
        while at < len(data):
            chunk, inside = divmod(offset + at, CHUNK)
            piece = data[at : at + CHUNK - inside]
            found.setdefault(chunk, []).append((inside, piece))
            at += len(piece)
    return found


def _default_partitions(facts: DiskFacts, table: str, linux_fs: str) -> tuple[PartitionSpec, ...]:
    windows = facts.os_type == "Windows"
    if not facts.os_disk:
        return (
            PartitionSpec("ntfs" if windows else linux_fs, None, "Data" if windows else "data"),
        )
    if table == "mbr":
        if windows:
            return (PartitionSpec("ntfs", 0.5, "System Reserved"), PartitionSpec("ntfs"))
        return (PartitionSpec(linux_fs, None, "cloudimg-rootfs"),)
    if windows:
        return (
            PartitionSpec("vfat", 0.1, "SYSTEM"),
            PartitionSpec("msr", 16 / 1024, "Microsoft reserved partition"),
            PartitionSpec("ntfs", None, "Basic data partition"),
        )
    root = "root" if linux_fs == "xfs" else "cloudimg-rootfs"
    return (PartitionSpec("vfat", 0.5, "UEFI"), PartitionSpec(linux_fs, None, root))


def make_layout(spec: ContentSpec, facts: DiskFacts, seed: str) -> Layout:
    """The layout a spec (with the VM's defaults) gives a disk, or ValueError if it cannot fit."""
    draw = random.Random(f"layout:{seed}")
    table = spec.table or ("mbr" if facts.os_disk and facts.generation == "V1" else "gpt")
    if table == "mbr" and facts.size > 2 * 1024 * GIB:
        raise ValueError("an MBR partition table addresses at most 2 TiB")
    linux_fs = "xfs" if draw.random() < 0.25 else "ext4"
    specs = spec.partitions or _default_partitions(facts, table, linux_fs)
    if table == "mbr" and len(specs) > 4:
        raise ValueError("an MBR partition table holds at most 4 partitions")
    end = facts.size - MIB  # the last MiB holds the backup GPT
    start, partitions = MIB, []
    for index, part in enumerate(specs):
        if part.size_gib is None and index != len(specs) - 1:
            raise ValueError("only the last partition may omit 'size_gib'")
        size = end - start if part.size_gib is None else math.ceil(part.size_gib * GIB / MIB) * MIB
        if size < 2 * MIB or start + size > end:
            raise ValueError(f"the partitions do not fit a {facts.size // GIB} GiB disk")
        guid = uuid.UUID(int=draw.getrandbits(128), version=4)
        partitions.append(Partition(part.fs, start, size, part.label, guid))
        start += size
    used = DEFAULT_USED_FRACTION if spec.used_fraction is None else spec.used_fraction
    return Layout(
        seed,
        facts.size,
        table,
        uuid.UUID(int=draw.getrandbits(128), version=4),
        tuple(partitions),
        _extents(partitions, used),
    )


def _extents(partitions: list[Partition], used_fraction: float) -> tuple[Extent, ...]:
    """Each data partition's used blocks, in four runs spread over it (its first and last block,
    which hold file system structures, stay out)."""
    extents: list[Extent] = []
    used_so_far = 0
    for part in partitions:
        kind = FILE_SYSTEMS[part.fs]
        if not kind.holds_data:
            continue
        first, inner = part.start // BLOCK + 1, part.size // BLOCK - 2
        used = round(inner * used_fraction)
        for run in range(4):
            count = used // 4 if run < 3 else used - 3 * (used // 4)
            if count:
                start = first + run * (inner // 4)
                extents.append(Extent(start, count, used_so_far, kind.ciphertext))
                used_so_far += count
    return tuple(extents)


# ----------------------------------------------------------------------------------------------
# Content over time.
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ContentFault:
    kind: str  # one of FAULT_KINDS
    since: datetime


@dataclass(frozen=True)
class Segment:
    """The writes a disk made over its life (until `end`, for a snapshot's frozen copy)."""

    seed: str
    start: datetime
    churn_per_day: float  # fraction of the used blocks rewritten a day
    end: datetime | None = None
    faults: tuple[ContentFault, ...] = ()

    def ticks(self, at: datetime) -> int:
        """Whole hours of writes done by `at`."""
        until = min(at, self.end) if self.end is not None else at
        return max(0, int((until - self.start) / TICK))

    def fault(self, kind: str, at: datetime) -> ContentFault | None:
        """The earliest fault of `kind` that has struck by `at` (and before a freeze)."""
        until = min(at, self.end) if self.end is not None else at
        struck = [f for f in self.faults if f.kind == kind and f.since <= until]
        return min(struck, key=lambda f: f.since, default=None)


@dataclass(frozen=True)
class DiskContent:
    """A disk's or snapshot's bytes: its layout and its chain of write segments."""

    layout: Layout
    segments: tuple[Segment, ...]

    @property
    def frozen_at(self) -> datetime | None:
        return self.segments[-1].end

    def frozen(self, at: datetime) -> DiskContent:
        """The content as a snapshot taken at `at` keeps it."""
        last = self.segments[-1]
        faults = tuple(f for f in last.faults if f.since < at)
        return replace(self, segments=(*self.segments[:-1], replace(last, end=at, faults=faults)))

    def continued(self, seed: str, at: datetime, churn_per_day: float) -> DiskContent:
        """The content of a disk made at `at` from this (frozen) content."""
        return replace(self, segments=(*self.segments, Segment(seed, at, churn_per_day)))

    def with_fault(self, kind: str, since: datetime) -> DiskContent:
        if kind not in FAULT_KINDS:
            raise ValueError(f"content fault kind must be one of {', '.join(FAULT_KINDS)}")
        last = self.segments[-1]
        fault = ContentFault(kind, since)
        return replace(
            self, segments=(*self.segments[:-1], replace(last, faults=(*last.faults, fault)))
        )

    def view(self, at: datetime) -> View:
        """The bytes at `at` (a snapshot's are those of its freeze)."""
        frozen = self.frozen_at
        return _view(self, at if frozen is None else min(at, frozen))


def new_content(spec: ContentSpec, facts: DiskFacts, seed: str, created: datetime) -> DiskContent:
    """A fleet disk's content: the layout, one segment of writes, and the fleet file's fault."""
    layout = make_layout(spec, facts, seed)
    churn = spec.churn_per_day
    if churn is None:
        used_gib = layout.used_blocks * BLOCK / GIB
        churn = min(1.0, facts.change_gib_per_day / used_gib) if used_gib else 0.0
    content = DiskContent(layout, (Segment(seed, created, churn),))
    if spec.fault is not None:
        content = content.with_fault(spec.fault, created + timedelta(days=spec.fault_since_day))
    return content


@lru_cache(maxsize=4096)
def _rewritten(seed: str, tick: int, used: int, churn_per_day: float) -> tuple[int, ...]:
    """The used blocks an hour of a segment rewrites, exactly the churn over time
    (floor((k+1) r) - floor(k r) blocks in hour k), none twice in one day of the segment."""
    rate = churn_per_day * used / TICKS_PER_DAY
    day_first = math.floor(tick // TICKS_PER_DAY * TICKS_PER_DAY * rate)
    first, last = math.floor(tick * rate) - day_first, math.floor((tick + 1) * rate) - day_first
    return _day_rewrites(seed, tick // TICKS_PER_DAY, used, churn_per_day)[first:last]


@lru_cache(maxsize=1024)
def _day_rewrites(seed: str, day: int, used: int, churn_per_day: float) -> tuple[int, ...]:
    """A day's rewritten blocks in the order its hours write them: runs of RUN_BLOCKS neighbours
    at seeded places, as file systems write extents rather than scattered blocks."""
    rate = churn_per_day * used / TICKS_PER_DAY
    ticks = day * TICKS_PER_DAY
    count = min(used, math.floor((ticks + TICKS_PER_DAY) * rate) - math.floor(ticks * rate))
    runs = math.ceil(used / RUN_BLOCKS)
    picked = random.Random(f"{seed}:{day}").sample(range(runs), min(runs, count // RUN_BLOCKS + 2))
    blocks = (b for run in picked for b in range(run * RUN_BLOCKS, (run + 1) * RUN_BLOCKS))
    return tuple(b for b in blocks if b < used)[:count]


Write = tuple[int, int, int]  # (segment, hour, 0 churn | 1 encryption): later compares greater


@dataclass
class _Encryption:
    segment: int
    first_tick: int  # the hour the encryption began
    ticks: int  # hours of writes the segment has done by the view's time


@dataclass
class View:
    """A disk's bytes at one moment: what reads and page-range listings answer."""

    content: DiskContent
    at: datetime
    ticks: tuple[int, ...] = field(init=False)

    def __post_init__(self) -> None:
        self.ticks = tuple(s.ticks(self.at) for s in self.content.segments)

    @property
    def layout(self) -> Layout:
        return self.content.layout

    @cached_property
    def zeroed(self) -> bool:
        return any(s.fault("zeroed", self.at) for s in self.content.segments)

    @cached_property
    def corrupt(self) -> bool:
        return any(s.fault("corrupt-gpt", self.at) for s in self.content.segments)

    @cached_property
    def encryptions(self) -> list[_Encryption]:
        found = []
        for index, segment in enumerate(self.content.segments):
            fault = segment.fault("encrypted", self.at)
            if fault is not None:
                first = max(0, math.ceil((fault.since - segment.start) / TICK))
                found.append(_Encryption(index, first, self.ticks[index]))
        return found

    @cached_property
    def _churned(self) -> dict[int, Write]:
        """The last churn write of every rewritten used block (a few hours per segment each)."""
        last: dict[int, Write] = {}
        used = self.layout.used_blocks
        for index, segment in enumerate(self.content.segments):
            for tick in range(self.ticks[index]):
                for block in _rewritten(segment.seed, tick, used, segment.churn_per_day):
                    last[block] = (index, tick, 0)
        return last

    def _encrypted_at(self, used: int, encryption: _Encryption) -> Write | None:
        tick = encryption.first_tick + used * TICKS_PER_DAY // max(1, self.layout.used_blocks)
        return (encryption.segment, tick, 1) if tick < encryption.ticks else None

    def last_write(self, used: int) -> Write | None:
        writes = [self._churned.get(used)]
        writes += [self._encrypted_at(used, e) for e in self.encryptions]
        return max((w for w in writes if w is not None), default=None)

    def _random_write(self, write: Write) -> bool:
        segment, tick, kind = write
        return kind == 1 or any(
            e.segment == segment and tick >= e.first_tick for e in self.encryptions
        )

    def read(self, offset: int, length: int) -> bytes:
        """`length` bytes from `offset` (within the disk; past the layout reads zero)."""
        if self.zeroed or length <= 0:
            return bytes(max(0, length))
        first, last = offset // CHUNK, (offset + length - 1) // CHUNK
        data = b"".join(self._chunk(c) for c in range(first, last + 1))
        start = offset - first * CHUNK
        return data[start : start + length]

    def _chunk(self, chunk: int) -> bytes:
        found = self.layout.used_index(chunk * CHUNK // BLOCK)
        if found is None:
            data = bytearray(CHUNK)
        else:
            used, extent = found
            write = self.last_write(used)
            name = "base" if write is None else f"{self.content.segments[write[0]].seed}:{write}"
            raw = random.Random(f"{self.layout.seed}:{name}:{chunk}").randbytes(CHUNK)
            ciphertext = extent.ciphertext or (write is not None and self._random_write(write))
            data = bytearray(raw if ciphertext else raw.translate(_PLAUSIBLE))
        for inside, piece in self.layout.metadata(self.corrupt).get(chunk, ()):
            data[inside : inside + len(piece)] = piece
        return bytes(data)

    def allocated(self) -> list[tuple[int, int]]:
        """The page ranges: (first byte, last byte) of every allocated run of blocks."""
        return [] if self.zeroed else self.layout.allocated

    def changed_since(self, earlier: View) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
        """Page ranges written and cleared since `earlier`, a view of the same disk lineage.

        Raises LineageError when `earlier` is of another disk, or newer than this view."""
        mine, theirs = self.content.segments, earlier.content.segments
        if (
            self.layout != earlier.layout
            or len(mine) != len(theirs)
            or mine[:-1] != theirs[:-1]
            or (mine[-1].seed, mine[-1].start) != (theirs[-1].seed, theirs[-1].start)
        ):
            raise LineageError("not-found")
        if earlier.at > self.at:
            raise LineageError("newer")
        if self.zeroed:
            return [], [] if earlier.zeroed else earlier.allocated()
        last = len(mine) - 1
        used = self.layout.used_blocks
        changed: set[int] = set()
        for tick in range(earlier.ticks[last], self.ticks[last]):
            changed.update(_rewritten(mine[last].seed, tick, used, mine[last].churn_per_day))
        if self.encryptions:
            changed.update(u for u in range(used) if self.last_write(u) != earlier.last_write(u))
        blocks = {self.layout.block_of(u) for u in changed}
        if self.corrupt != earlier.corrupt:
            blocks |= self.layout.table_blocks
        return block_ranges(blocks), []


class LineageError(ValueError):
    """A page-range diff against a snapshot of another disk ("not-found") or a newer one."""


@lru_cache(maxsize=64)
def _view(content: DiskContent, at: datetime) -> View:
    return View(content, at)


def block_ranges(blocks: Iterable[int]) -> list[tuple[int, int]]:
    """Blocks as merged (first byte, last byte) ranges."""
    return merge_ranges((b * BLOCK, (b + 1) * BLOCK - 1) for b in blocks)


def merge_ranges(ranges: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """Inclusive byte ranges, sorted, with touching and overlapping ones merged."""
    merged: list[tuple[int, int]] = []
    for first, last in sorted(ranges):
        if merged and first <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(last, merged[-1][1]))
        else:
            merged.append((first, last))
    return merged


# Plausible data: every byte mapped onto 32 symbols (mostly text, some binary), 5 bits a byte.
_SYMBOLS = b" etaoinsrhldcumfpgwybvkxjqz\n\0\x01\xff."
_PLAUSIBLE = bytes(_SYMBOLS[b % 32] for b in range(256))
