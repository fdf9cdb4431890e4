"""What is on a disk: its partition table, each partition's file system, and how its data looks.

Verification reads a restored test disk through `read(offset, length)` and proves the data is
there: a partition table (GPT with both CRC32s and its backup header, or MBR), a known file
system where the OS lives, and sampled blocks that are neither all zeros nor uniformly random.
Only what is needed is read: the first 34 sectors, the last one, each partition's first 68 KiB,
and a bounded sample spread over the blocks Azure reports as written (its page ranges).

Layouts: UEFI 2.10 section 5 (GPT header, entries, protective MBR); the kernel's ext4 on-disk
superblock (docs.kernel.org/filesystems/ext4/super.html), XFS (xfs_format.h: `XFSB`, `sb_fname`),
Btrfs (btrfs.readthedocs.io "On-disk format": superblock at 64 KiB), NTFS and FAT boot sectors
(the OEM id at 3; FAT32's type at 82), Linux swap (`SWAPSPACE2` at the end of the first page,
label at 1052), LVM2 (`LABELONE` in one of the first four sectors), LUKS (`LUKS\\xba\\xbe`) and
BitLocker (`-FVE-FS-` at 3).
"""

from __future__ import annotations

import math
import struct
import uuid
import zlib
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

SECTOR = 512
GPT_SIGNATURE = b"EFI PART"
HEAD_BYTES = 34 * SECTOR  # protective MBR, GPT header, 128 entries of 128 bytes
PARTITION_HEAD_BYTES = 0x10000 + 0x1000  # reaches Btrfs' superblock at 64 KiB
SAMPLE_CHUNK = 64 * 1024
ZERO_BLOCK = 4096
RANDOM_ENTROPY = 7.9  # bits per byte: encrypted or compressed-random data

Reader = Callable[[int, int], bytes]
Range = tuple[int, int]  # [start, end) in bytes

# Partition type GUIDs (UEFI spec, the Discoverable Partitions Specification, Microsoft docs).
GPT_TYPES = {
    uuid.UUID("c12a7328-f81f-11d2-ba4b-00a0c93ec93b"): "EFI system",
    uuid.UUID("21686148-6449-6e6f-744e-656564454649"): "BIOS boot",
    uuid.UUID("0fc63daf-8483-4772-8e79-3d69d8477de4"): "Linux data",
    uuid.UUID("4f68bce3-e8cd-4db1-96e7-fbcaf984b709"): "Linux root (x86-64)",
    uuid.UUID("0657fd6d-a4ab-43c4-84e5-0933c84b4f4f"): "Linux swap",
    uuid.UUID("e6d6d379-f507-44c2-a23c-238f2a3df928"): "Linux LVM",
    uuid.UUID("ebd0a0a2-b9e5-4433-87c0-68b6b72699c7"): "Microsoft basic data",
    uuid.UUID("e3c9e316-0b5c-4db8-817d-f92df00215ae"): "Microsoft reserved",
    uuid.UUID("de94bba4-06d1-4d40-a16a-bfd50179d6ac"): "Windows recovery",
}
MBR_TYPES = {
    0x07: "NTFS/exFAT",
    0x0B: "FAT32",
    0x0C: "FAT32 (LBA)",
    0x82: "Linux swap",
    0x83: "Linux",
    0x8E: "Linux LVM",
    0xEF: "EFI system",
}


@dataclass(frozen=True)
class Partition:
    number: int
    type: str
    start: int  # bytes
    size: int  # bytes
    file_system: str | None = None
    label: str | None = None

    @property
    def end(self) -> int:
        return self.start + self.size


@dataclass(frozen=True)
class DiskLayout:
    """What a disk's first and last sectors say about it."""

    table: str  # gpt | mbr | none (a file system on the whole disk) | unreadable
    partitions: tuple[Partition, ...]
    problems: tuple[str, ...] = ()  # what was wrong but recoverable, in words


@dataclass(frozen=True)
class ContentSample:
    """Blocks read across the written ranges: how much is zero, how random the rest looks."""

    bytes_read: int
    zero_fraction: float  # of 4 KiB blocks
    entropy: float  # bits per byte over the blocks that are not all zero
    written_bytes: int  # what Azure reports as written (page ranges)


@dataclass(frozen=True)
class DiskInspection:
    layout: DiskLayout
    sample: ContentSample
    bytes_read: int
    failures: tuple[str, ...] = field(default=())  # why the disk cannot be trusted, in words

    @property
    def readable(self) -> bool:
        return not self.failures


def read_layout(read: Reader, size: int) -> DiskLayout:
    """The partition table at the disk's start (and GPT's backup at its end), then each
    partition's file system from its first blocks."""
    head = read(0, min(HEAD_BYTES, size))
    if len(head) >= 2 * SECTOR and head[SECTOR : SECTOR + 8] == GPT_SIGNATURE:
        layout = _gpt(read, head, size)
    elif head[510:512] == b"\x55\xaa" and _mbr_entries(head):
        entries = _mbr_entries(head)
        if any(kind == 0xEE for kind, _, _ in entries):
            return DiskLayout("unreadable", (), ("protective MBR without a valid GPT header",))
        layout = DiskLayout(
            "mbr",
            tuple(
                Partition(n, MBR_TYPES.get(kind, f"0x{kind:02x}"), lba * SECTOR, count * SECTOR)
                for n, (kind, lba, count) in enumerate(entries, start=1)
            ),
        )
    else:
        whole = identify(read(0, min(PARTITION_HEAD_BYTES, size)))
        if whole is None:
            return DiskLayout("unreadable", (), ("no GPT, MBR or file system signature",))
        return DiskLayout("none", (Partition(0, "whole disk", 0, size, *whole),))
    named = tuple(_with_file_system(read, p) if p.end <= size else p for p in layout.partitions)
    beyond = [f"partition {p.number} ends past the disk" for p in named if p.end > size]
    return DiskLayout(layout.table, named, layout.problems + tuple(beyond))


def _gpt(read: Reader, head: bytes, size: int) -> DiskLayout:
    primary = _gpt_header(head[SECTOR : 2 * SECTOR])
    backup_sector = read(size - SECTOR, SECTOR) if size >= 2 * SECTOR else b""
    backup = _gpt_header(backup_sector)
    problems: list[str] = []
    if primary is None:
        problems.append("primary GPT header CRC32 is wrong")
    if backup is None:
        problems.append("backup GPT header (last sector) is missing or its CRC32 is wrong")
    header = primary or backup
    if header is None:
        return DiskLayout("unreadable", (), tuple(problems))
    entries_at, count, entry_size, entries_crc = header
    length = count * entry_size
    if entries_at == 2 and len(head) >= 2 * SECTOR + length:
        entries = head[2 * SECTOR : 2 * SECTOR + length]
    else:
        entries = read(entries_at * SECTOR, length)
    if zlib.crc32(entries) != entries_crc:
        return DiskLayout("unreadable", (), (*problems, "GPT partition entries CRC32 is wrong"))
    partitions = []
    for n in range(count):
        entry = entries[n * entry_size : (n + 1) * entry_size]
        type_guid = uuid.UUID(bytes_le=entry[:16])
        if type_guid.int == 0:
            continue
        first, last = struct.unpack_from("<QQ", entry, 32)
        kind = GPT_TYPES.get(type_guid, str(type_guid))
        partitions.append(Partition(n + 1, kind, first * SECTOR, (last - first + 1) * SECTOR))
    return DiskLayout("gpt", tuple(partitions), tuple(problems))


def _gpt_header(sector: bytes) -> tuple[int, int, int, int] | None:
    """(entries LBA, entry count, entry size, entries CRC32) of a header whose CRC32 holds."""
    if len(sector) < 92 or sector[:8] != GPT_SIGNATURE:
        return None
    header_size, header_crc = struct.unpack_from("<II", sector, 12)
    if not 92 <= header_size <= len(sector):
        return None
    zeroed = sector[:16] + b"\0\0\0\0" + sector[20:header_size]
    if zlib.crc32(zeroed) != header_crc:
        return None
    entries_at = struct.unpack_from("<Q", sector, 72)[0]
    count, entry_size, entries_crc = struct.unpack_from("<III", sector, 80)
    if entry_size < 128 or count > 1024:
        return None
    return entries_at, count, entry_size, entries_crc


def _mbr_entries(head: bytes) -> list[tuple[int, int, int]]:
    """(type, first LBA, sectors) of each used primary entry."""
    found = []
    for n in range(4):
        entry = head[446 + 16 * n : 446 + 16 * (n + 1)]
        kind = entry[4]
        lba, count = struct.unpack_from("<II", entry, 8)
        if kind and count:
            found.append((kind, lba, count))
    return found


def _with_file_system(read: Reader, partition: Partition) -> Partition:
    found = identify(read(partition.start, min(PARTITION_HEAD_BYTES, partition.size)))
    if found is None:
        return partition
    file_system, label = found
    return Partition(
        partition.number, partition.type, partition.start, partition.size, file_system, label
    )


def identify(head: bytes) -> tuple[str, str | None] | None:
    """(file system, label) from a partition's first blocks, or None when nothing is known."""
    if head[:6] == b"LUKS\xba\xbe":
        return "LUKS", _text(head[24:72]) or None
    if head[3:11] == b"-FVE-FS-":
        return "BitLocker", None
    if head[3:11] == b"NTFS    ":
        return "NTFS", None
    if head[:4] == b"XFSB":
        return "XFS", _text(head[108:120]) or None
    if head[1080:1082] == b"\x53\xef":
        return _ext_kind(head), _text(head[1144:1160]) or None
    if head[0x10040:0x10048] == b"_BHRfS_M":
        return "Btrfs", _text(head[0x1012B:0x1022B]) or None
    if head[82:87] == b"FAT32":
        return "FAT32", _text(head[71:82]) or None
    if head[54:58] == b"FAT1":
        return "FAT", _text(head[43:54]) or None
    if head[4086:4096] == b"SWAPSPACE2":
        return "swap", _text(head[1052:1068]) or None
    if any(head[s : s + 8] == b"LABELONE" for s in range(0, 4 * SECTOR, SECTOR)):
        return "LVM2 PV", None
    return None


def _ext_kind(head: bytes) -> str:
    """ext4 when its superblock names ext4-only features (extents, 64bit, flex_bg)."""
    compat, incompat = struct.unpack_from("<II", head, 1024 + 92)
    if incompat & (0x40 | 0x80 | 0x200):
        return "ext4"
    return "ext3" if compat & 0x4 else "ext2"


def _text(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode("utf-8", "replace").strip()


def sample_content(read: Reader, written: Sequence[Range], budget: int, size: int) -> ContentSample:
    """Up to `budget` bytes in SAMPLE_CHUNK pieces spread evenly over the written ranges (over
    the whole disk when nothing is written: a zeroed disk then reads as zeros)."""
    ranges = [r for r in written if r[1] > r[0]] or [(0, size)]
    total = sum(end - start for start, end in ranges)
    chunk = min(SAMPLE_CHUNK, budget)
    pieces = max(1, min(budget // max(chunk, 1), math.ceil(total / max(chunk, 1))))
    counts: Counter[int] = Counter()
    zero_blocks = blocks = read_bytes = 0
    for offset in _spread(ranges, total, pieces, chunk):
        data = read(offset, chunk)
        read_bytes += len(data)
        for at in range(0, len(data), ZERO_BLOCK):
            block = data[at : at + ZERO_BLOCK]
            blocks += 1
            if any(block):
                counts.update(block)
            else:
                zero_blocks += 1
    return ContentSample(
        bytes_read=read_bytes,
        zero_fraction=zero_blocks / blocks if blocks else 1.0,
        entropy=_entropy(counts, counts.total()),
        written_bytes=sum(end - start for start, end in written),
    )


def _spread(ranges: Sequence[Range], total: int, pieces: int, chunk: int) -> list[int]:
    """Offsets of `pieces` chunks at even steps through the concatenated ranges."""
    step = total / pieces
    offsets = []
    for n in range(pieces):
        want = int(n * step)
        for start, end in ranges:
            if want < end - start:
                offsets.append(min(start + want, max(start, end - chunk)))
                break
            want -= end - start
    return offsets


def _entropy(counts: Counter[int], n: int) -> float:
    if not n:
        return 0.0
    return -sum(c / n * math.log2(c / n) for c in counts.values())


def failures(layout: DiskLayout, sample: ContentSample, os_disk: bool) -> tuple[str, ...]:
    """Why a disk's content cannot be trusted, in words; empty when it can."""
    found: list[str] = []
    if layout.table == "unreadable":
        found.append("no readable partition table: " + "; ".join(layout.problems))
    elif os_disk:
        largest = max(layout.partitions, key=lambda p: p.size, default=None)
        if largest is None:
            found.append("the partition table lists no partition")
        elif largest.file_system is None:
            found.append(f"OS partition {largest.number} ({largest.type}) has no known file system")
    if sample.zero_fraction >= 1.0:
        found.append("every block sampled is zero: the disk holds no data")
    return tuple(found)


def inspect(
    read: Reader, size: int, written: Sequence[Range], budget: int, os_disk: bool
) -> DiskInspection:
    """Layout, sample and verdict for one disk; `bytes_read` counts every byte fetched."""
    counted = _Counting(read)
    layout = read_layout(counted, size)
    sample = sample_content(counted, written, budget, size)
    return DiskInspection(layout, sample, counted.total, failures(layout, sample, os_disk))


class _Counting:
    def __init__(self, read: Reader) -> None:
        self.read = read
        self.total = 0

    def __call__(self, offset: int, length: int) -> bytes:
        data = self.read(offset, length)
        self.total += len(data)
        return data
