"""The managed-disk blob data plane, read with the real azure-storage-blob client over HTTPS.

beginGetAccess hands out a SAS URL the simulator serves (local/armsim/blobdata.py); the calls
are those of the Blob REST API (Get Blob Properties, Get Blob with x-ms-range, Get Page Ranges
with x-ms-previous-snapshot-url for managed disks) as azure-storage-blob 12.31 makes them. The
bytes are the synthetic images of local/armsim/diskimage.py; GPT checksums are recomputed here
with zlib (UEFI 2.10, section 5.3.2).
"""

from __future__ import annotations

import math
import struct
import uuid
import zlib
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from azure.core.exceptions import ClientAuthenticationError, HttpResponseError
from azure.mgmt.compute.models import Disk, GrantAccessData, Snapshot
from azure.storage.blob import BlobClient, StorageErrorCode

from local.armsim import ArmServer, ArmSimulator, FaultRule
from local.armsim.diskimage import GIB, MIB
from shared.clock import VirtualClock
from tests.integration.test_armsim_sdk import compute

pytestmark = pytest.mark.armsim

SUB = "00000000-0000-0000-0000-000000000001"
APP, BACKUP = "rg-app-eastus", "rg-backups-eastus"
DAY = 86400.0
DATA_CONTENT = {
    "partitions": [{"fs": "xfs", "label": "pgdata"}],
    "used_fraction": 0.4,
    "churn_per_day": 0.05,
}
FLEET = {
    "subscriptions": [
        {
            "id": SUB,
            "resource_groups": [
                {"name": APP, "region": "eastus"},
                {"name": BACKUP, "region": "eastus"},
            ],
            "vms": [
                {
                    "name": "db-01",
                    "resource_group": APP,
                    "data_disks": [{"lun": 0, "size_gb": 16, "content": DATA_CONTENT}],
                },
                {
                    "name": "win-01",
                    "resource_group": APP,
                    "os_type": "Windows",
                    "hyper_v_generation": "V1",
                },
            ],
        }
    ]
}
LINUX_DATA = uuid.UUID("0FC63DAF-8483-4772-8E79-3D69D8477DE4")


@pytest.fixture
def server() -> Iterator[ArmServer]:
    sim = ArmSimulator(clock=VirtualClock(datetime(2026, 1, 5, tzinfo=UTC)), fleet=FLEET)
    with sim.serve() as running:
        yield running


def _disk_id(name: str) -> str:
    return f"/subscriptions/{SUB}/resourceGroups/{APP}/providers/Microsoft.Compute/disks/{name}"


def _grant(server: ArmServer, name: str, seconds: int = 3600, snapshot: bool = False) -> str:
    operations = compute(server).snapshots if snapshot else compute(server).disks
    group = BACKUP if snapshot else APP
    data = GrantAccessData(access="Read", duration_in_seconds=seconds)
    sas = operations.begin_grant_access(group, name, data).result().access_sas
    assert isinstance(sas, str)
    return sas


def _blob(server: ArmServer, sas: str) -> BlobClient:
    return BlobClient.from_blob_url(sas, connection_verify=str(server.ca_path), retry_total=0)


def _read(blob: BlobClient, offset: int, length: int) -> bytes:
    data: bytes = blob.download_blob(offset=offset, length=length).readall()
    return data


def _snapshot(server: ArmServer, name: str, disk: str) -> None:
    body = Snapshot(
        {
            "location": "eastus",
            "properties": {
                "incremental": True,
                "creationData": {"createOption": "Copy", "sourceResourceId": _disk_id(disk)},
            },
        }
    )
    compute(server).snapshots.begin_create_or_update(BACKUP, name, body, polling=False)
    server.sim.clock.advance(server.sim.durations.snapshot_seconds)


def _crc_ok(header: bytes) -> bool:
    stored: int = struct.unpack_from("<I", header, 16)[0]
    return stored == zlib.crc32(header[:16] + bytes(4) + header[20:92])


def _entropy(data: bytes) -> float:
    return -sum(c / len(data) * math.log2(c / len(data)) for c in Counter(data).values())


def _refusal(call: Any) -> tuple[int, str]:
    with pytest.raises(HttpResponseError) as raised:
        call()
    code = getattr(raised.value, "error_code", None)  # a StorageErrorCode when the SDK knows it
    return raised.value.status_code or 0, str(getattr(code, "value", code))


def _ranges(blob: BlobClient) -> list[tuple[int, int]]:
    """The blob's page ranges as (first byte, last byte)."""
    return [(r.start or 0, r.end or 0) for r in blob.list_page_ranges()]


def _total(ranges: list[dict[str, int]]) -> int:
    return sum(r["end"] - r["start"] + 1 for r in ranges)


class TestReadingADisk:
    """A disk read through its SAS shows a valid partition table and its file systems."""

    def test_properties_describe_the_disk_as_a_page_blob(self, server: ArmServer) -> None:
        properties = _blob(server, _grant(server, "db-01-osdisk")).get_blob_properties()
        assert properties.size == 30 * GIB
        assert properties.blob_type == "PageBlob"
        assert properties.etag

    def test_ranged_reads_show_a_gpt_with_valid_crcs_and_its_backup(
        self, server: ArmServer
    ) -> None:
        blob = _blob(server, _grant(server, "db-01-osdisk"))
        head = _read(blob, 0, 34 * 512)
        assert head[510:512] == b"\x55\xaa"
        assert head[446 + 4] == 0xEE
        header = head[512:1024]
        assert header[:8] == b"EFI PART"
        assert _crc_ok(header)
        array_crc = struct.unpack_from("<I", header, 88)[0]
        assert array_crc == zlib.crc32(head[1024 : 1024 + 128 * 128])
        backup = _read(blob, 30 * GIB - 512, 512)
        assert backup[:8] == b"EFI PART"
        assert _crc_ok(backup)
        root = head[1024 + 128 : 1024 + 256]
        assert uuid.UUID(bytes_le=root[:16]) == LINUX_DATA
        first_lba = struct.unpack_from("<Q", root, 32)[0]
        superblock = _read(blob, first_lba * 512, 64 * 1024)
        assert superblock[1024 + 56 : 1024 + 58] == b"\x53\xef" or superblock[:4] == b"XFSB"

    def test_the_fleet_files_content_is_what_the_data_disk_holds(self, server: ArmServer) -> None:
        blob = _blob(server, _grant(server, "db-01-data0"))
        assert _read(blob, MIB, 4) == b"XFSB"
        assert _read(blob, MIB + 108, 12).rstrip(b"\0") == b"pgdata"

    def test_a_gen1_windows_disk_has_an_mbr_with_ntfs(self, server: ArmServer) -> None:
        blob = _blob(server, _grant(server, "win-01-osdisk"))
        mbr = _read(blob, 0, 512)
        assert (mbr[446 + 4], mbr[510:512]) == (0x07, b"\x55\xaa")
        assert _read(blob, MIB + 3, 8) == b"NTFS    "

    def test_page_ranges_are_sparse_and_data_in_them_is_plausible(self, server: ArmServer) -> None:
        blob = _blob(server, _grant(server, "db-01-data0"))
        ranges = _ranges(blob)
        allocated = sum(last - first + 1 for first, last in ranges)
        assert 0.35 < allocated / (16 * GIB) < 0.45
        assert _read(blob, ranges[0][1] + 1, 65536) == bytes(65536)
        sample = _read(blob, ranges[1][0], 65536)
        assert 4.0 <= _entropy(sample) <= 6.0

    def test_the_request_log_counts_the_bytes_each_disk_served(self, server: ArmServer) -> None:
        blob = _blob(server, _grant(server, "db-01-data0"))
        _read(blob, 0, 4096)
        _read(blob, 5 * MIB, 65536)
        blob.get_blob_properties()
        served = sum(r.bytes_out for r in server.sim.requests if r.resource.endswith("-data0"))
        assert served == 4096 + 65536


class TestChangesBetweenSnapshots:
    """The page-range diff of two snapshots a day apart is the disk's churn."""

    def test_a_day_of_churn_shows_in_the_diff(self, server: ArmServer) -> None:
        _snapshot(server, "s1", "db-01-data0")
        server.sim.clock.advance(DAY)
        _snapshot(server, "s2", "db-01-data0")
        first = _grant(server, "s1", snapshot=True)
        second = _blob(server, _grant(server, "s2", snapshot=True))
        changed, cleared = second.get_page_range_diff_for_managed_disk(first)
        used = 0.4 * (16 * GIB - 2 * MIB)
        assert 0.9 * 0.05 * used <= _total(changed) <= 0.05 * used + MIB
        assert cleared == []

    def test_a_snapshot_of_another_disk_or_a_newer_one_is_refused(self, server: ArmServer) -> None:
        _snapshot(server, "s1", "db-01-data0")
        _snapshot(server, "other", "db-01-osdisk")
        server.sim.clock.advance(DAY)
        _snapshot(server, "s2", "db-01-data0")
        first = _blob(server, _grant(server, "s1", snapshot=True))
        other = _grant(server, "other", snapshot=True)
        second = _grant(server, "s2", snapshot=True)
        assert _refusal(lambda: first.get_page_range_diff_for_managed_disk(other)) == (
            409,
            "PreviousSnapshotNotFound",
        )
        assert _refusal(lambda: first.get_page_range_diff_for_managed_disk(second)) == (
            400,
            "PreviousSnapshotCannotBeNewer",
        )


class TestTheSas:
    """The data plane takes a SAS only while it is valid, as Azure's does."""

    def test_end_get_access_revokes_the_sas(self, server: ArmServer) -> None:
        blob = _blob(server, _grant(server, "db-01-data0"))
        compute(server).disks.begin_revoke_access(APP, "db-01-data0").result()
        with pytest.raises(ClientAuthenticationError) as raised:
            blob.get_blob_properties()
        assert getattr(raised.value, "error_code", None) == StorageErrorCode.AUTHENTICATION_FAILED

    def test_an_exported_snapshot_is_not_deleted_until_access_is_revoked(
        self, server: ArmServer
    ) -> None:
        _snapshot(server, "s1", "db-01-data0")
        snapshots = compute(server).snapshots
        _grant(server, "s1", seconds=600, snapshot=True)
        assert snapshots.get(BACKUP, "s1").disk_state == "ActiveSAS"
        server.sim.clock.advance(3600)  # expiry does not end ActiveSAS: only endGetAccess does
        with pytest.raises(HttpResponseError) as refused:
            snapshots.begin_delete(BACKUP, "s1", polling=False)
        error = refused.value.error
        assert (refused.value.status_code, error and error.code) == (409, "OperationNotAllowed")
        snapshots.begin_revoke_access(BACKUP, "s1").result()
        assert snapshots.get(BACKUP, "s1").disk_state == "Unattached"
        snapshots.begin_delete(BACKUP, "s1", polling=False)
        server.sim.clock.advance(server.sim.durations.snapshot_delete_seconds)
        assert [s.name for s in snapshots.list_by_resource_group(BACKUP)] == []

    def test_a_sas_past_its_expiry_is_refused(self, server: ArmServer) -> None:
        blob = _blob(server, _grant(server, "db-01-data0", seconds=600))
        _read(blob, 0, 512)
        server.sim.clock.advance(601)
        assert _refusal(lambda: _read(blob, 0, 512)) == (403, "AuthenticationFailed")

    def test_a_tampered_signature_is_refused(self, server: ArmServer) -> None:
        sas = _grant(server, "db-01-data0").replace("sp=r", "sp=rw")
        assert _refusal(lambda: _blob(server, sas).get_blob_properties()) == (
            403,
            "AuthenticationFailed",
        )

    def test_a_sas_that_expires_mid_read_refuses_the_next_reads(self, server: ArmServer) -> None:
        blob = _blob(server, _grant(server, "db-01-data0"))
        server.sim.add_fault(FaultRule(operation="blob.read", kind="sas-expires", count=1))
        assert _refusal(lambda: _read(blob, 0, 512)) == (403, "AuthenticationFailed")
        assert _read(blob, MIB, 4) == b"XFSB"

    def test_a_grant_needs_its_duration(self, server: ArmServer) -> None:
        disks = compute(server).disks
        data = GrantAccessData(access="Read", duration_in_seconds=0)
        with pytest.raises(HttpResponseError) as raised:
            disks.begin_grant_access(APP, "db-01-data0", data).result()
        assert raised.value.status_code == 400


class TestContentFaults:
    """Content faults set at run time show in what the disk and later snapshots read."""

    def test_a_zeroed_disk_reads_zero_with_no_page_ranges(self, server: ArmServer) -> None:
        server.sim.set_content_fault(_disk_id("db-01-data0"), "zeroed")
        blob = _blob(server, _grant(server, "db-01-data0"))
        assert _ranges(blob) == []
        assert _read(blob, 0, 2 * MIB) == bytes(2 * MIB)

    def test_an_encrypted_disk_reads_random_bytes_a_day_later(self, server: ArmServer) -> None:
        struck = server.sim.set_content_fault("db-01", "encrypted")
        assert len(struck) == 2
        server.sim.clock.advance(DAY + 3600)
        _snapshot(server, "after", "db-01-data0")
        blob = _blob(server, _grant(server, "after", snapshot=True))
        ranges = _ranges(blob)
        assert _entropy(_read(blob, ranges[-2][0], 65536)) > 7.9  # [-1]: the backup GPT
        assert _read(blob, MIB, 4) == b"XFSB"

    def test_a_corrupt_gpt_fails_both_header_crcs(self, server: ArmServer) -> None:
        server.sim.set_content_fault(_disk_id("db-01-osdisk"), "corrupt-gpt")
        blob = _blob(server, _grant(server, "db-01-osdisk"))
        assert not _crc_ok(_read(blob, 512, 512))
        assert not _crc_ok(_read(blob, 30 * GIB - 512, 512))

    def test_a_fleet_file_fault_is_refused_when_unknown(self) -> None:
        fleet = {
            "subscriptions": [
                {
                    **FLEET["subscriptions"][0],
                    "vms": [
                        {
                            "name": "x",
                            "resource_group": APP,
                            "os_disk": {"content": {"fault": {"kind": "melted"}}},
                        }
                    ],
                }
            ]
        }
        with pytest.raises(ValueError, match="fault kind"):
            ArmSimulator(fleet=fleet)


def test_a_disk_restored_from_a_snapshot_reads_as_the_snapshot(server: ArmServer) -> None:
    _snapshot(server, "s1", "db-01-data0")
    server.sim.clock.advance(DAY)
    source = (
        f"/subscriptions/{SUB}/resourceGroups/{BACKUP}/providers/Microsoft.Compute/snapshots/s1"
    )
    body = Disk(
        {
            "location": "eastus",
            "properties": {"creationData": {"createOption": "Copy", "sourceResourceId": source}},
        }
    )
    compute(server).disks.begin_create_or_update(BACKUP, "test-disk", body, polling=False)
    server.sim.clock.advance(server.sim.durations.disk_seconds)
    snapshot = _blob(server, _grant(server, "s1", snapshot=True))
    data = compute(server).disks
    sas = data.begin_grant_access(
        BACKUP, "test-disk", GrantAccessData(access="Read", duration_in_seconds=600)
    ).result()
    restored = _blob(server, str(sas.access_sas))
    offset = _ranges(snapshot)[1][0]
    assert _read(restored, offset, 65536) == _read(snapshot, offset, 65536)
