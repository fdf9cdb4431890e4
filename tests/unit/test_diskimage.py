"""The synthetic disk images: real on-disk structures where readers look, sparse data, churn.

Offsets and checksums are checked against the specifications local/armsim/diskimage.py cites
(UEFI 2.10 section 5 for GPT, kernel docs for ext4, xfs_format.h, the FAT specification, ...),
computed here independently with zlib and struct.
"""

from __future__ import annotations

import math
import struct
import uuid
import zlib
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from local.armsim.diskimage import (
    BLOCK,
    GIB,
    SECTOR,
    ContentSpec,
    DiskContent,
    DiskFacts,
    LineageError,
    PartitionSpec,
    View,
    new_content,
    parse_spec,
)

T0 = datetime(2026, 1, 5, tzinfo=UTC)
DAY = timedelta(days=1)


def _content(
    spec: ContentSpec | None = None, facts: DiskFacts | None = None, seed: str = "disk-1"
) -> DiskContent:
    return new_content(spec or ContentSpec(), facts or DiskFacts(8 * GIB), seed, T0)


def _entropy(data: bytes) -> float:
    counts = Counter(data)
    return -sum(c / len(data) * math.log2(c / len(data)) for c in counts.values())


def _gpt_header(view: View, lba: int) -> bytes:
    return view.read(lba * SECTOR, 92)


def _crc_ok(header: bytes) -> bool:
    stored: int = struct.unpack_from("<I", header, 16)[0]
    return stored == zlib.crc32(header[:16] + bytes(4) + header[20:92])


def _entries(view: View) -> list[tuple[uuid.UUID, int, int, str]]:
    """(type GUID, first LBA, last LBA, name) of each used GPT entry."""
    array = view.read(2 * SECTOR, 128 * 128)
    found = []
    for index in range(128):
        entry = array[index * 128 : (index + 1) * 128]
        kind = uuid.UUID(bytes_le=entry[:16])
        if kind.int:
            first, last = struct.unpack_from("<QQ", entry, 32)
            name = entry[56:128].decode("utf-16-le").rstrip("\0")
            found.append((kind, first, last, name))
    return found


LINUX_DATA = uuid.UUID("0FC63DAF-8483-4772-8E79-3D69D8477DE4")
EFI = uuid.UUID("C12A7328-F81F-11D2-BA4B-00A0C93EC93B")
MS_DATA = uuid.UUID("EBD0A0A2-B9E5-4433-87C0-68B6B72699C7")
MS_RESERVED = uuid.UUID("E3C9E316-0B5C-4DB8-817D-F92DF00215AE")


class TestGpt:
    """A GPT disk has a protective MBR, two headers with valid CRC32s and 128 x 128-byte entries."""

    def test_protective_mbr_and_primary_header_are_valid(self) -> None:
        view = _content().view(T0)
        mbr = view.read(0, SECTOR)
        assert mbr[510:512] == b"\x55\xaa"
        assert mbr[446 + 4] == 0xEE
        assert struct.unpack_from("<I", mbr, 446 + 8)[0] == 1
        header = _gpt_header(view, 1)
        assert header[:8] == b"EFI PART"
        assert _crc_ok(header)
        entry_lba, count, size, array_crc = struct.unpack_from("<QIII", header, 72)
        assert (entry_lba, count, size) == (2, 128, 128)
        assert array_crc == zlib.crc32(view.read(2 * SECTOR, count * size))

    def test_backup_header_sits_at_the_last_lba_and_points_back(self) -> None:
        content = _content()
        view = content.view(T0)
        last = content.layout.size // SECTOR - 1
        backup = _gpt_header(view, last)
        assert backup[:8] == b"EFI PART"
        assert _crc_ok(backup)
        my_lba, alternate = struct.unpack_from("<QQ", backup, 24)
        assert (my_lba, alternate) == (last, 1)
        entry_lba = struct.unpack_from("<Q", backup, 72)[0]
        assert view.read(entry_lba * SECTOR, 128 * 128) == view.read(2 * SECTOR, 128 * 128)

    @pytest.mark.parametrize(
        ("os_type", "kinds"),
        [("Linux", [EFI, LINUX_DATA]), ("Windows", [EFI, MS_RESERVED, MS_DATA])],
        ids=["linux-gen2", "windows-gen2"],
    )
    def test_gen2_os_disks_get_their_os_partitions(
        self, os_type: str, kinds: list[uuid.UUID]
    ) -> None:
        facts = DiskFacts(30 * GIB, os_type, "V2", os_disk=True)
        entries = _entries(_content(facts=facts).view(T0))
        assert [e[0] for e in entries] == kinds
        assert entries[0][1] == 2048  # 1 MiB aligned

    def test_a_gen1_os_disk_has_an_mbr_partition_table(self) -> None:
        facts = DiskFacts(30 * GIB, "Linux", "V1", os_disk=True)
        mbr = _content(facts=facts).view(T0).read(0, SECTOR)
        boot, kind, start = mbr[446], mbr[446 + 4], struct.unpack_from("<I", mbr, 446 + 8)[0]
        assert (boot, kind, start, mbr[510:512]) == (0x80, 0x83, 2048, b"\x55\xaa")


FS_AT: dict[str, tuple[int, bytes]] = {
    "ext4": (1024 + 0x38, b"\x53\xef"),
    "xfs": (0, b"XFSB"),
    "btrfs": (65536 + 0x40, b"_BHRfS_M"),
    "ntfs": (3, b"NTFS    "),
    "vfat": (82, b"FAT32   "),
    "swap": (4086, b"SWAPSPACE2"),
    "lvm": (512, b"LABELONE"),
    "luks": (0, b"LUKS\xba\xbe"),
    "bitlocker": (3, b"-FVE-FS-"),
}
LABEL_AT = {"ext4": (1024 + 120, 16), "xfs": (108, 12), "btrfs": (65536 + 0x12B, 256)}


@pytest.mark.parametrize("fs", sorted(FS_AT))
def test_each_file_system_shows_its_signature_at_its_real_offset(fs: str) -> None:
    spec = ContentSpec(partitions=(PartitionSpec("vfat", 1, "EFI"), PartitionSpec(fs, None, "v1")))
    content = _content(spec)
    view = content.view(T0)
    start = content.layout.partitions[1].start
    offset, magic = FS_AT[fs]
    assert view.read(start + offset, len(magic)) == magic
    if fs in LABEL_AT:
        at, size = LABEL_AT[fs]
        assert view.read(start + at, size).rstrip(b"\0") == b"v1"
    if fs in {"ntfs", "bitlocker"}:
        assert view.read(start + 510, 2) == b"\x55\xaa"


def test_a_fat32_label_sits_at_71() -> None:
    content = _content(ContentSpec(partitions=(PartitionSpec("vfat", None, "efi"),)))
    start = content.layout.partitions[0].start
    assert content.view(T0).read(start + 71, 11) == b"EFI        "


class TestData:
    """Used blocks hold plausible data; the rest is zero and outside the page ranges."""

    def test_the_disk_is_sparse_and_its_page_ranges_are_what_is_not_zero(self) -> None:
        content = _content(ContentSpec(used_fraction=0.25))
        view = content.view(T0)
        ranges = view.allocated()
        allocated = sum(b - a + 1 for a, b in ranges)
        assert 0.2 < allocated / content.layout.size < 0.3
        gap = ranges[0][1] + 1
        assert view.read(gap, BLOCK) == bytes(BLOCK)
        assert view.read(ranges[1][0], BLOCK) != bytes(BLOCK)

    def test_plausible_data_has_moderate_entropy_and_encrypted_volumes_high(self) -> None:
        plain = _content(ContentSpec(partitions=(PartitionSpec("ext4"),)))
        sealed = _content(ContentSpec(partitions=(PartitionSpec("luks"),)))
        for content, low, high in ((plain, 4.0, 6.0), (sealed, 7.9, 8.0)):
            extent = content.layout.extents[0]
            data = content.view(T0).read(extent.first_block * BLOCK, BLOCK)
            assert low <= _entropy(data) <= high

    def test_the_same_seed_makes_the_same_bytes(self) -> None:
        offset = _content().layout.extents[1].first_block * BLOCK
        assert _content().view(T0).read(offset, 4096) == _content().view(T0).read(offset, 4096)
        assert _content(seed="other").view(T0).read(offset, 4096) != _content().view(T0).read(
            offset, 4096
        )


class TestChurn:
    """A disk rewrites churn_per_day of its used blocks a day; a snapshot keeps its moment."""

    def test_a_day_apart_about_the_churn_of_the_used_blocks_changed(self) -> None:
        content = _content(ContentSpec(churn_per_day=0.05))
        first = content.frozen(T0 + DAY)
        second = content.frozen(T0 + 2 * DAY)
        changed, cleared = second.view(T0 + 3 * DAY).changed_since(first.view(T0 + 3 * DAY))
        changed_blocks = sum(b - a + 1 for a, b in changed) // BLOCK
        # Hours of a day may rewrite a block twice: a little under the churn, never over.
        assert 0.95 * 0.05 * content.layout.used_blocks <= changed_blocks
        assert changed_blocks <= 0.05 * content.layout.used_blocks + 1
        assert cleared == []

    def test_a_snapshot_does_not_change_when_the_disk_does(self) -> None:
        content = _content(ContentSpec(churn_per_day=0.5))
        snapshot = content.frozen(T0 + DAY)
        extent = content.layout.extents[0]
        start, size = extent.first_block * BLOCK, 16 * BLOCK
        later = T0 + 5 * DAY
        assert snapshot.view(later).read(start, size) == content.view(T0 + DAY).read(start, size)
        assert content.view(later).read(start, size) != snapshot.view(later).read(start, size)

    def test_a_disk_restored_from_a_snapshot_starts_with_its_bytes(self) -> None:
        snapshot = _content(ContentSpec(churn_per_day=0.5)).frozen(T0 + DAY)
        restored = snapshot.continued("disk-2", T0 + 2 * DAY, 0.5)
        offset = snapshot.layout.extents[2].first_block * BLOCK
        expected = snapshot.view(T0 + 2 * DAY).read(offset, 8 * BLOCK)
        assert restored.view(T0 + 2 * DAY).read(offset, 8 * BLOCK) == expected

    def test_a_diff_against_another_disk_or_a_newer_snapshot_is_refused(self) -> None:
        mine = _content().frozen(T0 + DAY)
        theirs = _content(seed="other").frozen(T0 + DAY)
        at = T0 + 2 * DAY
        with pytest.raises(LineageError, match="not-found"):
            mine.view(at).changed_since(theirs.view(at))
        with pytest.raises(LineageError, match="newer"):
            mine.view(at).changed_since(_content().frozen(T0 + 2 * DAY).view(at))


class TestContentFaults:
    """zeroed, encrypted and corrupt-gpt strike from their moment on, and snapshots keep them."""

    def test_a_zeroed_disk_reads_zero_and_has_no_page_ranges(self) -> None:
        before = _content().frozen(T0 + DAY)
        content = _content().with_fault("zeroed", T0 + 2 * DAY)
        view = content.view(T0 + 3 * DAY)
        assert view.read(0, 4 * BLOCK) == bytes(4 * BLOCK)
        assert view.allocated() == []
        changed, cleared = view.changed_since(before.view(T0 + 3 * DAY))
        assert changed == []
        assert cleared == before.view(T0).allocated()
        assert content.view(T0 + DAY).allocated() != []

    def test_an_encrypted_disk_turns_to_random_bytes_over_a_day(self) -> None:
        content = _content(ContentSpec(churn_per_day=0.02)).with_fault("encrypted", T0 + DAY)
        before = content.frozen(T0 + DAY)
        after = content.frozen(T0 + 2 * DAY + timedelta(hours=1))
        extent = content.layout.extents[-1]
        block = (extent.first_block + extent.count - 1) * BLOCK
        assert _entropy(before.view(T0).read(block, BLOCK)) < 6
        assert _entropy(after.view(T0 + 3 * DAY).read(block, BLOCK)) > 7.9
        assert content.view(T0 + 3 * DAY).read(SECTOR, 8) == b"EFI PART"
        later = T0 + 3 * DAY
        changed, _ = after.view(later).changed_since(before.view(later))
        changed_blocks = sum(b - a + 1 for a, b in changed) // BLOCK
        assert changed_blocks == content.layout.used_blocks

    def test_corrupt_gpt_breaks_both_header_crcs(self) -> None:
        content = _content().with_fault("corrupt-gpt", T0 + DAY)
        last = content.layout.size // SECTOR - 1
        assert _crc_ok(_gpt_header(content.view(T0), 1))
        broken = content.view(T0 + DAY)
        assert not _crc_ok(_gpt_header(broken, 1))
        assert not _crc_ok(_gpt_header(broken, last))

    def test_a_snapshot_taken_before_a_fault_strikes_is_spared(self) -> None:
        content = _content().with_fault("zeroed", T0 + 2 * DAY)
        snapshot = content.frozen(T0 + DAY)
        assert snapshot.view(T0 + 5 * DAY).allocated() != []


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"table": "apm"}, "table"),
        ({"partitions": [{"fs": "zfs"}]}, "fs"),
        ({"partitions": []}, "at least one"),
        ({"used_fraction": 1.5}, "used_fraction"),
        ({"fault": {"kind": "melted"}}, "fault kind"),
        ({"colour": "blue"}, "unknown keys"),
    ],
    ids=["table", "fs", "no-partitions", "fraction", "fault", "unknown-key"],
)
def test_a_bad_content_spec_is_refused_with_what_is_wrong(
    spec: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        parse_spec(spec)


def test_partitions_that_do_not_fit_are_refused() -> None:
    spec = parse_spec({"partitions": [{"fs": "ext4", "size_gib": 9}]})
    with pytest.raises(ValueError, match="do not fit"):
        _content(spec)
