"""A managed disk's or snapshot's bytes, read through the SAS URL `beginGetAccess` grants.

The blob data plane as azure-storage-blob speaks it: ranged GETs, page ranges (what was ever
written) and the managed-disk page-range diff against an earlier snapshot of the same disk
(learn.microsoft.com/azure/virtual-machines/disks-incremental-snapshots, "differential
capability"; Get Page Ranges with `x-ms-previous-snapshot-url`). The SAS URL is a credential:
no error raised from here carries it, or any part of its query string.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from azure.core.exceptions import AzureError
from azure.storage.blob import BlobClient

from shared.domain.disk_layout import Range
from shared.errors import TransientError
from shared.ports import DiskData

READ_TIMEOUT_SECONDS = 60


class DiskReadError(TransientError):
    """A read through a SAS failed (expired, revoked, refused, or the network); no URL inside."""


@contextmanager
def _scrubbed(what: str, sas_url: str) -> Iterator[None]:
    try:
        yield
    except (AzureError, OSError, ValueError) as error:
        message = str(error).replace(sas_url, "<SAS URL>")  # BackupDrError sanitises the rest
        raise DiskReadError(f"{what}: {type(error).__name__}: {message}") from None


class SasDisk:
    """One disk's data plane through its read SAS."""

    def __init__(self, sas_url: str, ca_bundle: str | None) -> None:
        self._url = sas_url
        options: dict[str, Any] = {"connection_verify": ca_bundle} if ca_bundle else {}
        self._blob = BlobClient.from_blob_url(
            sas_url,
            read_timeout=READ_TIMEOUT_SECONDS,
            max_single_get_size=64 * 1024 * 1024,
            **options,
        )

    def size(self) -> int:
        with _scrubbed("read the disk's size", self._url):
            return int(self._blob.get_blob_properties().size)

    def read(self, offset: int, length: int) -> bytes:
        with _scrubbed(f"read {length} bytes at {offset}", self._url):
            return self._blob.download_blob(offset=offset, length=length).readall()

    def written(self) -> list[Range]:
        """The ranges ever written ([start, end) in bytes): Azure stores nothing else."""
        with _scrubbed("list the disk's page ranges", self._url):
            return [
                (int(r.start or 0), int(r.end or 0) + 1)
                for r in self._blob.list_page_ranges()
                if not r.cleared
            ]

    def changed_since(self, previous: DiskData) -> int:
        """Bytes written since `previous`, an earlier snapshot of the same disk."""
        if not isinstance(previous, SasDisk):
            raise TypeError("a page-range diff needs the previous snapshot's SAS")
        with _scrubbed("diff the page ranges against the previous snapshot", self._url):
            changed, _cleared = self._blob.get_page_range_diff_for_managed_disk(previous._url)
        return sum(int(r["end"]) - int(r["start"]) + 1 for r in changed)
