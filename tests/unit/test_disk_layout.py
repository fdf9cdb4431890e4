"""Reading a disk's layout and content from raw bytes, as verification does through a SAS.

The images are built here byte by byte from the UEFI spec and the file systems' on-disk formats,
apart from the simulator's generator, so the two check each other.
"""

from __future__ import annotations

import random
import struct
import uuid
import zlib

import pytest

from local.armsim import diskimage
from shared.domain.disk_layout import SECTOR, failures, identify, inspect, read_layout

MIB = 1024 * 1024
LINUX = uuid.UUID("0fc63daf-8483-4772-8e79-3d69d8477de4")
EFI = uuid.UUID("c12a7328-f81f-11d2-ba4b-00a0c93ec93b")


class Image:
    """A sparse disk: written extents over zeros."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.extents: dict[int, bytes] = {}

    def write(self, offset: int, data: bytes) -> None:
        self.extents[offset] = data

    def read(self, offset: int, length: int) -> bytes:
        out = bytearray(length)
        for start, data in self.extents.items():
            lo, hi = max(start, offset), min(start + len(data), offset + length)
            if lo < hi:
                out[lo - offset : hi - offset] = data[lo - start : hi - start]
        return bytes(out)


def gpt(size: int, partitions: list[tuple[uuid.UUID, int, int]], corrupt: bool = False) -> Image:
    """Protective MBR, primary and backup GPT with their CRC32s (UEFI 2.10, 5.3)."""
    image = Image(size)
    last_lba = size // SECTOR - 1
    mbr = bytearray(SECTOR)
    mbr[446 + 4] = 0xEE
    struct.pack_into("<II", mbr, 446 + 8, 1, min(last_lba, 0xFFFFFFFF))
    mbr[510:512] = b"\x55\xaa"
    image.write(0, bytes(mbr))
    entries = bytearray(128 * 128)
    for n, (kind, first, last) in enumerate(partitions):
        struct.pack_into(
            "<16s16sQQ", entries, n * 128, kind.bytes_le, uuid.uuid4().bytes_le, first, last
        )
    for my_lba, other, entries_lba in ((1, last_lba, 2), (last_lba, 1, last_lba - 32)):
        header = bytearray(92)
        header[:8] = b"EFI PART"
        struct.pack_into("<IIII", header, 8, 0x00010000, 92, 0, 0)
        struct.pack_into("<QQQQ", header, 24, my_lba, other, 34, last_lba - 33)
        header[56:72] = uuid.uuid4().bytes_le
        struct.pack_into("<QIII", header, 72, entries_lba, 128, 128, zlib.crc32(entries))
        crc = zlib.crc32(header) ^ (0xFFFFFFFF if corrupt else 0)
        struct.pack_into("<I", header, 16, crc)
        image.write(my_lba * SECTOR, bytes(header))
        image.write(entries_lba * SECTOR, bytes(entries))
    return image


def ext4(label: str) -> bytes:
    block = bytearray(2048)
    struct.pack_into("<H", block, 1024 + 56, 0xEF53)
    struct.pack_into("<II", block, 1024 + 92, 0x4, 0x40 | 0x200)  # has_journal; extents, flex_bg
    block[1024 + 120 : 1024 + 120 + len(label)] = label.encode()
    return bytes(block)


def fat32(label: str) -> bytes:
    boot = bytearray(SECTOR)
    boot[3:11] = b"mkfs.fat"
    boot[71:82] = label.encode().ljust(11)
    boot[82:90] = b"FAT32   "
    return bytes(boot)


def plausible(n: int, seed: int = 1) -> bytes:
    """Data of moderate entropy (64 symbols: 6 bits a byte), as files on a disk are."""
    return bytes(b & 0x3F | 0x40 for b in random.Random(seed).randbytes(n))


def linux_disk(size: int = 64 * MIB) -> Image:
    image = gpt(size, [(EFI, 2048, 4095), (LINUX, 4096, size // SECTOR - 34)])
    image.write(2048 * SECTOR, fat32("EFI"))
    image.write(4096 * SECTOR, ext4("cloudimg-rootfs"))
    image.write(8 * MIB, plausible(MIB))
    return image


WRITTEN = [(0, 64 * 1024), (8 * MIB, 9 * MIB)]


def test_a_gpt_disk_reads_as_its_partitions_with_their_file_systems_and_labels() -> None:
    image = linux_disk()
    layout = read_layout(image.read, image.size)
    assert layout.table == "gpt"
    assert layout.problems == ()
    assert [(p.type, p.file_system, p.label) for p in layout.partitions] == [
        ("EFI system", "FAT32", "EFI"),
        ("Linux data", "ext4", "cloudimg-rootfs"),
    ]


def test_a_healthy_disk_passes_and_reads_only_metadata_and_the_budget() -> None:
    image = linux_disk()
    found = inspect(image.read, image.size, WRITTEN, budget=256 * 1024, os_disk=True)
    assert found.readable, found.failures
    assert 5.5 < found.sample.entropy < 6.5
    metadata = 34 * SECTOR + SECTOR + 2 * (0x11000)
    assert found.bytes_read <= 256 * 1024 + metadata


def test_a_corrupted_primary_gpt_is_read_from_its_backup_and_said() -> None:
    image = linux_disk()
    header = bytearray(image.read(SECTOR, SECTOR))
    header[40] ^= 0xFF  # a flipped byte under the header's CRC32
    image.write(SECTOR, bytes(header))
    layout = read_layout(image.read, image.size)
    assert layout.table == "gpt"
    assert layout.problems == ("primary GPT header CRC32 is wrong",)
    assert len(layout.partitions) == 2


def test_both_gpt_headers_corrupted_fail_with_the_reason() -> None:
    image = gpt(64 * MIB, [(LINUX, 2048, 4095)], corrupt=True)
    found = inspect(image.read, image.size, WRITTEN, budget=64 * 1024, os_disk=True)
    assert found.layout.table == "unreadable"
    assert "primary GPT header CRC32 is wrong" in found.failures[0]
    assert "backup GPT header" in found.failures[0]


def test_a_zeroed_disk_fails_as_holding_no_data() -> None:
    image = Image(64 * MIB)
    found = inspect(image.read, image.size, [], budget=128 * 1024, os_disk=False)
    assert found.sample.zero_fraction == 1.0
    assert "every block sampled is zero: the disk holds no data" in found.failures


def test_an_os_partition_without_a_file_system_fails() -> None:
    image = gpt(64 * MIB, [(EFI, 2048, 4095), (LINUX, 4096, 131_000)])
    image.write(2048 * SECTOR, fat32("EFI"))
    image.write(8 * MIB, plausible(MIB))
    found = inspect(image.read, image.size, WRITTEN, budget=64 * 1024, os_disk=True)
    assert found.failures == ("OS partition 2 (Linux data) has no known file system",)


def test_encrypted_data_reads_as_random() -> None:
    image = linux_disk()
    image.write(8 * MIB, random.Random(2).randbytes(MIB))
    found = inspect(image.read, image.size, WRITTEN, budget=512 * 1024, os_disk=True)
    assert found.sample.entropy > 7.9


def test_an_mbr_disk_lists_its_primary_partitions() -> None:
    image = Image(64 * MIB)
    mbr = bytearray(SECTOR)
    mbr[446 + 4] = 0x83
    struct.pack_into("<II", mbr, 446 + 8, 2048, 100_000)
    mbr[510:512] = b"\x55\xaa"
    image.write(0, bytes(mbr))
    image.write(2048 * SECTOR, ext4("root"))
    layout = read_layout(image.read, image.size)
    assert layout.table == "mbr"
    assert [(p.type, p.file_system, p.start) for p in layout.partitions] == [
        ("Linux", "ext4", 2048 * SECTOR)
    ]


@pytest.mark.parametrize(
    ("offset", "signature", "expected"),
    [
        (0, b"XFSB", "XFS"),
        (3, b"NTFS    ", "NTFS"),
        (0x10040, b"_BHRfS_M", "Btrfs"),
        (4086, b"SWAPSPACE2", "swap"),
        (SECTOR, b"LABELONE", "LVM2 PV"),
        (0, b"LUKS\xba\xbe", "LUKS"),
        (3, b"-FVE-FS-", "BitLocker"),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_file_systems_are_known_by_their_signature_at_its_offset(
    offset: int, signature: bytes, expected: str
) -> None:
    head = bytearray(0x11000)
    head[offset : offset + len(signature)] = signature
    found = identify(bytes(head))
    assert found is not None
    assert found[0] == expected
    assert identify(bytes(0x11000)) is None


def test_a_data_disk_needs_no_os_partition_but_an_unreadable_table_still_fails() -> None:
    image = Image(64 * MIB)
    image.write(8 * MIB, plausible(MIB))
    layout = read_layout(image.read, image.size)
    found = inspect(image.read, image.size, WRITTEN, budget=64 * 1024, os_disk=False)
    assert layout.table == "unreadable"
    assert found.failures == failures(layout, found.sample, os_disk=False)
    assert found.failures[0].startswith("no readable partition table")


EXPECTED_FROM_SIMULATOR = {
    "ext4": "ext4",
    "xfs": "XFS",
    "btrfs": "Btrfs",
    "ntfs": "NTFS",
    "vfat": "FAT32",
    "swap": "swap",
    "lvm": "LVM2 PV",
    "luks": "LUKS",
    "bitlocker": "BitLocker",
}


@pytest.mark.parametrize(("kind", "expected"), sorted(EXPECTED_FROM_SIMULATOR.items()))
def test_every_file_system_the_simulator_writes_is_read_as_what_it_is(
    kind: str, expected: str
) -> None:
    """The simulator's images (local/armsim/diskimage.py) were written apart from this reader:
    each signature it writes must read back as the same file system, labels included."""
    head = bytearray(0x11000)
    for offset, data in diskimage._SIGNATURES[kind](1 << 30, "lbl", uuid.uuid4(), 2048):
        if offset < len(head):
            head[offset : offset + len(data)] = data[: len(head) - offset]
    found = identify(bytes(head))
    assert found is not None
    assert found[0] == expected
