"""What handlers receive and return, and the two helpers every handler shares (ids, paging)."""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from local.armsim.errors import bad_request

T = TypeVar("T")

VM_TYPE = "Microsoft.Compute/virtualMachines"
DISK_TYPE = "Microsoft.Compute/disks"
SNAPSHOT_TYPE = "Microsoft.Compute/snapshots"
NIC_TYPE = "Microsoft.Network/networkInterfaces"
VNET_TYPE = "Microsoft.Network/virtualNetworks"
NSG_TYPE = "Microsoft.Network/networkSecurityGroups"

_ID = re.compile(
    r"^/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)"
    r"/providers/(?P<ns>[^/]+)/(?P<type>[^/]+)/(?P<name>[^/]+)$",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class ResourceId:
    """A parsed top-level ARM resource id."""

    subscription: str
    resource_group: str
    type: str  # "Microsoft.Compute/disks"
    name: str

    @classmethod
    def parse(cls, text: str) -> ResourceId:
        """Parse an id; Azure's examples sometimes omit the leading slash, so it is optional."""
        match = _ID.match("/" + text.lstrip("/"))
        if match is None:
            raise bad_request(f"'{text}' is not a valid resource id", "LinkedInvalidPropertyId")
        return cls(match["sub"], match["rg"], f"{match['ns']}/{match['type']}", match["name"])

    def __str__(self) -> str:
        return make_id(self.subscription, self.resource_group, self.type, self.name)


def make_id(subscription: str, resource_group: str, type_: str, name: str) -> str:
    return f"/subscriptions/{subscription}/resourceGroups/{resource_group}/providers/{type_}/{name}"


@dataclass
class Request:
    """One ARM call as the handlers see it (JSON body parsed, path unquoted)."""

    method: str
    path: str
    query: dict[str, str]
    body: Any
    base_url: str  # "https://127.0.0.1:PORT", for Location headers and nextLinks
    operation: str = ""

    @property
    def api_version(self) -> str:
        return self.query.get("api-version", "")

    def json_object(self) -> dict[str, Any]:
        """The body as a JSON object, or a clear 400."""
        if not isinstance(self.body, dict):
            raise bad_request("The request body must be a JSON object.", "InvalidRequestContent")
        return self.body


@dataclass
class Reply:
    status: int
    body: Any = None  # JSON-serialisable, or None for an empty body
    headers: dict[str, str] = field(default_factory=dict)


def page(
    request: Request,
    items: Sequence[T],
    page_size: int,
    render: Callable[[T], dict[str, Any]] | None = None,
) -> Reply:
    """One page of a list, with a `nextLink` that keeps the query (api-version included);
    `render` turns only this page's items into JSON (rendering every page's items on every page
    made a listing quadratic in its length)."""
    try:
        start = int(request.query.get("$skiptoken", "0"))
    except ValueError:
        raise bad_request("$skiptoken is not valid.", "InvalidSkipToken") from None
    shown = items[start : start + page_size]
    body: dict[str, Any] = {"value": [render(i) for i in shown] if render else list(shown)}
    if start + page_size < len(items):
        query = {k: v for k, v in request.query.items() if k != "$skiptoken"}
        query["$skiptoken"] = str(start + page_size)
        link = f"{request.base_url}{urllib.parse.quote(request.path)}"
        body["nextLink"] = f"{link}?{urllib.parse.urlencode(query)}"
    return Reply(200, body)
