"""The blob data plane behind managed-disk SAS URLs: what azure-storage-blob reads a disk with.

beginGetAccess hands out a read SAS URL pointing at the simulator itself, path-style as for an
emulator (`https://127.0.0.1:<port>/<account>/<container>/abcd?<sas>`): azure-storage-blob 12.31
takes the account from the first path segment of an IP or localhost URL
(azure/storage/blob/_shared/base_client.py, StorageAccountHostsMixin; _blob_client_helpers.py,
_from_blob_url), and Azure names a disk's blob `abcd` (the accessSAS of the Disk_BeginGetAccess
example). The query carries Azure's SAS fields (sv, sr, st, se, sp, sig; same example, less its
`sk`, which the SDK drops: _shared/base_client.py parse_query keeps only the SAS fields it knows),
the signature an HMAC of them by a key of the simulator's, so a changed field is refused.

Served, as the Blob REST API defines them (learn.microsoft.com/rest/api/storageservices):
- Get Blob Properties (HEAD) and Get Blob (GET, with `x-ms-range` taking precedence over `Range`,
  206 + Content-Range; "Specifying the range header for Blob service operations"; 416 InvalidRange
  past the end);
- Get Page Ranges (`comp=pagelist`, an optional range) and, with `x-ms-previous-snapshot-url`
  (managed disks, version 2019-07-07 and later), the pages changed since that earlier snapshot,
  updated and cleared; a URL of no snapshot of the same disk answers 409 PreviousSnapshotNotFound
  and a newer one 400 PreviousSnapshotCannotBeNewer ("Blob Storage error codes").
Refusals: a bad signature, a missing or past `se` (virtual clock), or a grant ended by
endGetAccess answer 403 AuthenticationFailed with Azure's XML error body and `x-ms-error-code`
("Common REST API error codes"; the "Signed expiry time [...] must be after signed start time
[...]" detail is the one "Troubleshoot 403 errors in Azure Blob Storage" lists for an expired SAS);
anything but a read, 403 AuthorizationPermissionMismatch ("SAS error codes"). The data plane
authorizes by SAS alone, as Azure's does. Every request is logged with the disk bytes it served.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import urllib.parse
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.utils import format_datetime
from typing import Any
from xml.sax.saxutils import escape

from local.armsim.diskimage import (
    GIB,
    TICK,
    ContentSpec,
    DiskContent,
    DiskFacts,
    Layout,
    LineageError,
    Segment,
    View,
    new_content,
)
from local.armsim.errors import ArmError
from local.armsim.faults import BLOB_READ_KINDS
from local.armsim.protocol import SNAPSHOT_TYPE
from local.armsim.state import Grant, RequestRecord, Resource, World

BLOB = "abcd"
SAS_VERSION = "2018-03-28"
DEFAULT_VERSION = "2026-10-06"  # azure-storage-blob 12.31's X_MS_VERSION, when a client sends none
STREAM_PIECE = 4 * 1024 * 1024
_RANGE = re.compile(r"^bytes=(\d+)-(\d*)$")


def is_blob_path(path: str) -> bool:
    """A data-plane request: its first path segment is a managed-disk account (`md-...`)."""
    return path.startswith("/md-")


# -- content ---------------------------------------------------------------------------------


def content_of(world: World, resource: Resource) -> DiskContent:
    """A disk's or snapshot's content, made now from the defaults if nothing set it (a disk
    seeded or created without a fleet spec): an Empty disk is blank, any other one formatted."""
    if resource.content is None:
        seed = f"{world.seed}:{resource.id.lower()}"
        facts = _facts(world, resource)
        option = (resource.properties.get("creationData") or {}).get("createOption")
        if option == "Empty":
            layout = Layout(seed, facts.size, "none", uuid.UUID(int=0), (), ())
            resource.content = DiskContent(layout, (Segment(seed, resource.created_at, 0.0),))
        else:
            resource.content = new_content(ContentSpec(), facts, seed, resource.created_at)
        if resource.type.lower() == SNAPSHOT_TYPE.lower():
            resource.content = resource.content.frozen(resource.created_at)
    return resource.content


def snapshot_content(world: World, source: Resource) -> DiskContent:
    """What a snapshot of `source` (a disk: frozen now; a snapshot: its own) holds."""
    content = content_of(world, source)
    return content if content.frozen_at is not None else content.frozen(world.now())


def restored_content(world: World, source: Resource, disk_uid: str) -> DiskContent:
    """A disk made from `source`: its content, then the new disk's own writes at the rate of
    the disk the content came from."""
    content = snapshot_content(world, source)
    churn = content.segments[-1].churn_per_day
    return content.continued(f"{world.seed}:{disk_uid}", world.now(), churn)


def _facts(world: World, resource: Resource) -> DiskFacts:
    properties = resource.properties
    os_type = properties.get("osType")
    vm = world.find(str(resource.body.get("managedBy") or "")) if not os_type else None
    if vm is not None:
        os_disk = (vm.properties.get("storageProfile") or {}).get("osDisk") or {}
        os_type = os_disk.get("osType")
    return DiskFacts(
        size=int(properties.get("diskSizeGB") or 0) * GIB,
        os_type=str(os_type or "Linux"),
        generation=str(properties.get("hyperVGeneration") or "V2"),
        os_disk="osType" in properties,
        change_gib_per_day=resource.change_gib_per_day,
    )


# -- grants ----------------------------------------------------------------------------------


def grant(world: World, resource: Resource, base_url: str, seconds: int) -> str:
    """A read SAS URL for `resource`, valid `seconds` of virtual time from now.

    A second grant while one is active adds another URL and leaves the first valid: no public
    source says more than that the disk stays in the ActiveSAS state until access is revoked
    (Storage Explorer's "may still be in an 'Active SAS' state", microsoft/AzureStorageExplorer
    #2128), and endGetAccess then revokes them all.
    """
    container = world.new_uuid().replace("-", "")[:12]
    account = f"md-{resource.uid.replace('-', '')[:12]}"
    now = world.now()
    entry = Grant(container, resource.id, account, now, now + timedelta(seconds=seconds))
    world.grants[container] = entry
    world.exported.setdefault(resource.id.lower(), set()).add(container)
    resource.properties["diskState"] = "ActiveSAS"
    fields = {
        "sv": SAS_VERSION,
        "sr": "b",
        "st": _iso(entry.starts),
        "se": _iso(entry.expires),
        "sp": "r",
    }
    fields["sig"] = _sign(world, f"/{account}/{container}/{BLOB}", fields)
    return f"{base_url}/{account}/{container}/{BLOB}?{urllib.parse.urlencode(fields)}"


def revoke(world: World, resource: Resource) -> None:
    """endGetAccess: every SAS of the resource stops working."""
    for container in world.exported.pop(resource.id.lower(), set()):
        world.grants[container].revoked = True
    if resource.properties.get("diskState") == "ActiveSAS":
        attached = resource.body.get("managedBy")
        resource.properties["diskState"] = "Attached" if attached else "Unattached"


def refuse_while_exported(world: World, resource: Resource, operation: str) -> None:
    """409 while a grant of `resource` is not revoked, expired or not.

    Azure keeps a disk in ActiveSAS until endGetAccess, and a resource group holding one cannot
    be deleted until then (Azure/azure-cli#6927); no source says an expired SAS ends the state,
    so the simulator takes the stricter reading: only endGetAccess does.
    """
    if world.exported.get(resource.id.lower()):
        raise ArmError(
            409,
            "OperationNotAllowed",
            f"{operation} is not allowed on '{resource.name}' while its state is ActiveSAS: "
            "revoke its access (endGetAccess) first.",
        )


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _string_to_sign(path: str, fields: dict[str, str]) -> str:
    names = ("sp", "st", "se", "sv", "sr")
    return "\n".join([*(fields.get(n, "") for n in names), f"/blob{path}"])


def _sign(world: World, path: str, fields: dict[str, str]) -> str:
    key = hashlib.sha256(f"armsim-sas:{world.seed}".encode()).digest()
    digest = hmac.new(key, _string_to_sign(path, fields).encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


# -- serving ---------------------------------------------------------------------------------


@dataclass
class BlobReply:
    """A data-plane answer: status, headers and a body sent in pieces (a whole-disk GET
    streams); `length` is the body's size, `served` the disk bytes in it."""

    status: int
    headers: dict[str, str]
    body: Iterable[bytes]
    length: int
    served: int = 0


class BlobError(Exception):
    def __init__(self, status: int, code: str, message: str, detail: str = "") -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message, self.detail = status, code, message, detail


@dataclass
class _Target:
    resource: Resource
    view: View
    headers: dict[str, str]


def serve(world: World, method: str, target: str, headers: dict[str, str]) -> BlobReply:
    """Answer one data-plane request (headers with lower-case names) and log it."""
    split = urllib.parse.urlsplit(target)
    path = urllib.parse.unquote(split.path)
    query = dict(urllib.parse.parse_qsl(split.query, keep_blank_values=True))
    resource_id = ""
    try:
        with world.lock:
            found = _authorize(world, method, path, query)
            resource_id = found.resource.id
            reply = _answer(world, found, method, query, headers)
    except BlobError as error:
        reply = _error(world, error, method)
    with world.lock:
        request_id = world.new_uuid()
        world.requests.append(
            RequestRecord(
                method, path, reply.status, "read", world.now(), reply.served, resource_id
            )
        )
    reply.headers.update(
        {
            "x-ms-request-id": request_id,
            "x-ms-version": headers.get("x-ms-version", DEFAULT_VERSION),
        }
    )
    if "x-ms-client-request-id" in headers:
        reply.headers["x-ms-client-request-id"] = headers["x-ms-client-request-id"]
    return reply


def _authorize(world: World, method: str, path: str, query: dict[str, str]) -> _Target:
    """The grant a request's SAS names, checked; then its resource and the content to serve."""
    parts = path.strip("/").split("/")
    entry = world.grants.get(parts[1]) if len(parts) == 3 else None
    fields = {k: v for k, v in query.items() if k in {"sp", "st", "se", "sv", "sr"}}
    expected = _sign(world, path, fields)
    if entry is None or not hmac.compare_digest(expected, query.get("sig", "")):
        detail = f"Signature did not match. String to sign used was {_string_to_sign(path, fields)}"
        raise _auth_failed(detail)
    now = world.now()
    expiry = _parse_time(query.get("se", ""))
    if expiry is None:
        raise _auth_failed("Signed expiry time is missing or malformed.")
    if now >= expiry:
        raise _expired(expiry, now)
    if entry.revoked:
        raise _auth_failed("The access grant of this disk was revoked (endGetAccess).")
    resource = world.find(entry.resource_id)
    if resource is None:
        raise BlobError(404, "BlobNotFound", "The specified blob does not exist.")
    if world.faults.take("blob.read", [resource.id, path], resource.location, BLOB_READ_KINDS):
        raise _expired(now, now)
    if method not in {"GET", "HEAD"} or query.get("sp") != "r":
        raise BlobError(
            403,
            "AuthorizationPermissionMismatch",
            "This request is not authorized to perform this operation using this permission.",
        )
    view = content_of(world, resource).view(now)
    return _Target(resource, view, _blob_headers(resource, view))


def _parse_time(text: str) -> datetime | None:
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None


def _auth_failed(detail: str) -> BlobError:
    return BlobError(
        403,
        "AuthenticationFailed",
        "Server failed to authenticate the request. Make sure the value of Authorization header "
        "is formed correctly including the signature.",
        detail,
    )


def _expired(expiry: datetime, now: datetime) -> BlobError:
    return _auth_failed(
        f"Signed expiry time [{format_datetime(expiry, usegmt=True)}] must be after signed "
        f"start time [{format_datetime(now, usegmt=True)}]"
    )


def _blob_headers(resource: Resource, view: View) -> dict[str, str]:
    last = view.content.segments[-1]
    modified = view.content.frozen_at or last.start + TICK * view.ticks[-1]
    state = hashlib.sha256(repr((resource.uid, view.ticks, view.zeroed, view.corrupt)).encode())
    return {
        "Last-Modified": format_datetime(modified, usegmt=True),
        "ETag": f'"0x8D{state.hexdigest()[:13].upper()}"',
        "x-ms-blob-type": "PageBlob",
        "x-ms-blob-sequence-number": "0",
        "x-ms-creation-time": format_datetime(resource.created_at, usegmt=True),
        "x-ms-server-encrypted": "true",
        "x-ms-lease-state": "available",
        "x-ms-lease-status": "unlocked",
        "Accept-Ranges": "bytes",
    }


def _answer(
    world: World, found: _Target, method: str, query: dict[str, str], headers: dict[str, str]
) -> BlobReply:
    size = int(found.resource.properties.get("diskSizeGB") or 0) * GIB
    comp = query.get("comp")
    if comp == "pagelist" and method == "GET":
        return _page_list(world, found, size, headers)
    if comp is not None:
        raise BlobError(
            400,
            "InvalidQueryParameterValue",
            f"Value for one of the query parameters specified in the request URI is invalid: "
            f"comp={comp}",
        )
    out = dict(found.headers, **{"Content-Type": "application/octet-stream"})
    if method == "HEAD":
        out["Content-Length"] = str(size)
        return BlobReply(200, out, [], 0)
    span = _range(headers, size)
    start, end = span or (0, size - 1)
    length = end - start + 1
    if span is not None:
        out["Content-Range"] = f"bytes {start}-{end}/{size}"
    if headers.get("x-ms-range-get-content-md5") == "true" and length <= STREAM_PIECE:
        digest = hashlib.md5(found.view.read(start, length), usedforsecurity=False).digest()
        out["Content-MD5"] = base64.b64encode(digest).decode()
    body = _stream(found.view, start, length)
    return BlobReply(206 if span else 200, out, body, length, served=length)


def _stream(view: View, start: int, length: int) -> Iterator[bytes]:
    """The bytes, made a piece at a time outside the world's lock."""
    for at in range(start, start + length, STREAM_PIECE):
        yield view.read(at, min(STREAM_PIECE, start + length - at))


def _range(headers: dict[str, str], size: int) -> tuple[int, int] | None:
    """The inclusive byte range asked for: x-ms-range over Range, `bytes=a-b` or `bytes=a-`."""
    text = headers.get("x-ms-range") or headers.get("range")
    if not text:
        return None
    match = _RANGE.match(text.strip())
    if match is None:
        raise BlobError(
            400,
            "InvalidHeaderValue",
            "The value for one of the HTTP headers is not in the correct format.",
        )
    start = int(match[1])
    end = int(match[2]) if match[2] else size - 1
    if start >= size or end < start:
        raise BlobError(
            416,
            "InvalidRange",
            "The range specified is invalid for the current size of the resource.",
        )
    return start, min(end, size - 1)


def _page_list(world: World, found: _Target, size: int, headers: dict[str, str]) -> BlobReply:
    previous_url = headers.get("x-ms-previous-snapshot-url")
    if previous_url:
        pages, cleared = _changes(found.view, _previous_view(world, previous_url))
    else:
        pages, cleared = found.view.allocated(), []
    span = _range(headers, size) or (0, size - 1)
    if span[0] % 512 or (span[1] + 1) % 512:
        raise BlobError(416, "InvalidPageRange", "The page range specified is invalid.")
    parts = [_xml_ranges("PageRange", pages, span), _xml_ranges("ClearRange", cleared, span)]
    xml = f'<?xml version="1.0" encoding="utf-8"?><PageList>{"".join(parts)}</PageList>'
    data = xml.encode()
    out = dict(
        found.headers,
        **{"Content-Type": "application/xml", "x-ms-blob-content-length": str(size)},
    )
    return BlobReply(200, out, [data], len(data))


_NOT_FOUND = BlobError(409, "PreviousSnapshotNotFound", "The previous snapshot is not found.")


def _previous_view(world: World, url: str) -> View:
    """The earlier snapshot an `x-ms-previous-snapshot-url` names (through a grant of this
    simulator's that endGetAccess has not ended), as it was frozen."""
    parts = urllib.parse.urlsplit(url).path.strip("/").split("/")
    entry = world.grants.get(parts[1]) if len(parts) == 3 else None
    previous = world.find(entry.resource_id) if entry and not entry.revoked else None
    if previous is None or previous.type.lower() != SNAPSHOT_TYPE.lower():
        raise _NOT_FOUND
    return content_of(world, previous).view(world.now())


def _changes(view: View, previous: View) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    try:
        return view.changed_since(previous)
    except LineageError as error:
        if str(error) != "newer":
            raise _NOT_FOUND from None
        raise BlobError(
            400,
            "PreviousSnapshotCannotBeNewer",
            "The prevsnapshot query parameter value cannot be newer than snapshot query "
            "parameter value.",
        ) from None


def _xml_ranges(tag: str, ranges: list[tuple[int, int]], span: tuple[int, int]) -> str:
    clipped = (
        (max(a, span[0]), min(b, span[1])) for a, b in ranges if b >= span[0] and a <= span[1]
    )
    return "".join(f"<{tag}><Start>{a}</Start><End>{b}</End></{tag}>" for a, b in clipped)


def _error(world: World, error: BlobError, method: str) -> BlobReply:
    """Azure's XML error body (none for HEAD) with the code in `x-ms-error-code`."""
    now = format_datetime(world.now(), usegmt=True)
    detail = (
        f"<AuthenticationErrorDetail>{escape(error.detail)}</AuthenticationErrorDetail>"
        if error.detail
        else ""
    )
    xml = (
        f'<?xml version="1.0" encoding="utf-8"?><Error><Code>{error.code}</Code>'
        f"<Message>{escape(error.message)}\nTime:{now}</Message>{detail}</Error>"
    )
    data = b"" if method == "HEAD" else xml.encode()
    headers = {"x-ms-error-code": error.code, "Content-Type": "application/xml"}
    return BlobReply(error.status, headers, [data], len(data))


def access_seconds(data: dict[str, Any]) -> int:
    """grantAccessData.durationInSeconds, required by Disks - Grant Access (REST), or a 400."""
    seconds = data.get("durationInSeconds")
    if not isinstance(seconds, int) or isinstance(seconds, bool) or seconds <= 0:
        raise ArmError(
            400,
            "InvalidParameter",
            "Required parameter 'grantAccessData.durationInSeconds' must be a positive integer.",
        )
    return seconds
