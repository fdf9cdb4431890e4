"""The simulator's world: subscriptions, resource groups, resources, operations, bill, log.

Resources are kept as the ARM documents clients PUT (ARM echoes what it was given), plus the few
facts the simulator models (when a create completes, change rates, copy progress, boot). Every
read renders the document at the current virtual time. One re-entrant lock guards it all.
"""

from __future__ import annotations

import heapq
import itertools
import math
import random
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from local.armsim.durations import Durations
from local.armsim.errors import ArmError, not_found
from local.armsim.faults import Faults, normalise_region
from local.armsim.protocol import Reply, Request, ResourceId, make_id, page
from local.armsim.skus import SkuRestriction
from local.armsim.throttle import RequestClass, Throttle
from shared.clock import VirtualClock

if TYPE_CHECKING:
    from local.armsim.diskimage import DiskContent

HOURS_PER_MONTH = 730.0  # Azure bills storage per GiB-month of 730 hours
HINT_STEP = 5  # seconds: a varied operation's Retry-After is its expected time left, rounded up


@dataclass(frozen=True)
class RequestRecord:
    """One request as the simulator answered it, for tests and benchmarks to count.

    Blob data-plane requests (local/armsim/blobdata.py) also name the disk or snapshot read and
    the disk bytes served (a Get Blob's body; listings, properties and errors serve none)."""

    method: str
    path: str
    status: int
    kind: RequestClass
    at: datetime
    bytes_out: int = 0
    resource: str = ""


@dataclass
class Group:
    subscription: str
    name: str
    location: str
    tags: dict[str, str] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return f"/subscriptions/{self.subscription}/resourceGroups/{self.name}"


@dataclass
class Resource:
    """A resource's stored document and the modelled facts behind its computed fields."""

    id: str
    type: str
    body: dict[str, Any]
    created_at: datetime
    ready_at: datetime  # its create (or last update) completes at this virtual time
    error: ArmError | None = None  # the create failed (provisioningState Failed)
    deleting: bool = False
    uid: str = ""
    # Disks: GiB written per day, and when the last snapshot of the disk was taken.
    change_gib_per_day: float = 0.0
    last_snapshot_at: datetime | None = None
    # Snapshots: GiB billed (changed since the previous snapshot), and CopyStart progress.
    changed_gib: float = 0.0
    copy_done_at: datetime | None = None
    copy_failed: bool = False
    # CopyStart copies: the source's disk lineage and when the source was taken (copy order).
    copy_family: str = ""
    copy_source_at: datetime | None = None
    # VMs: when the guest is up, and the boot/guest faults.
    boots_at: datetime | None = None
    never_boots: bool = False
    guest_silent: bool = False
    command_until: datetime | None = None  # a Run Command runs in the guest until then
    hyper_v_generation: str | None = None  # VMs: the generation it boots (its OS disk's)
    content: DiskContent | None = None  # disks and snapshots: their bytes (diskimage.py)

    @property
    def ref(self) -> ResourceId:
        return ResourceId.parse(self.id)

    @property
    def disk_lineage(self) -> str:
        """The disk a snapshot belongs to: a copy keeps its source's, a snapshot names its disk."""
        creation = self.properties.get("creationData") or {}
        return self.copy_family or str(creation.get("sourceUniqueId") or self.uid)

    @property
    def name(self) -> str:
        return self.ref.name

    @property
    def location(self) -> str:
        return str(self.body.get("location", ""))

    @property
    def properties(self) -> dict[str, Any]:
        props = self.body.setdefault("properties", {})
        assert isinstance(props, dict)
        return props

    def provisioning_state(self, now: datetime) -> str:
        if self.deleting:
            return "Deleting"
        if now < self.ready_at:
            return "Creating" if self.type.endswith("virtualMachines") else "Updating"
        return "Failed" if self.error is not None else "Succeeded"


@dataclass
class Operation:
    """A long-running operation, polled through Location (monitor) or Azure-AsyncOperation."""

    id: str
    subscription: str
    namespace: str
    location: str
    api_version: str
    started: datetime
    done_at: datetime
    error: ArmError | None = None
    result: Callable[[], Any] | None = None  # the final body of a Location poll
    on_done: Callable[[], None] | None = None
    settled: bool = False
    expected_at: datetime | None = None  # a varied operation's expected end, for its hints

    def url(self, base_url: str, monitor: bool) -> str:
        path = (
            f"/subscriptions/{self.subscription}/providers/{self.namespace}"
            f"/locations/{self.location}/operations/{self.id}"
        )
        query = (
            f"monitor=true&api-version={self.api_version}"
            if monitor
            else (f"api-version={self.api_version}")
        )
        return f"{base_url}{path}?{query}"

    def retry_after(self, now: datetime) -> int:
        """Seconds worth waiting: the time left, or for a varied operation its *expected* time
        left rounded up to HINT_STEP (never less): a hint, which is sometimes early."""
        if self.expected_at is None:
            return max(0, math.ceil((self.done_at - now).total_seconds()))
        left = (self.expected_at - now).total_seconds()
        return max(HINT_STEP, HINT_STEP * math.ceil(left / HINT_STEP))


@dataclass
class Grant:
    """A read SAS beginGetAccess handed out; endGetAccess revokes every grant of its resource."""

    container: str  # the SAS URL's container, unique per grant
    resource_id: str
    account: str
    starts: datetime
    expires: datetime
    revoked: bool = False


@dataclass
class BillEntry:
    """GiB a snapshot is billed for over a span: its own changed blocks from its creation, or
    blocks it took over when an older snapshot of its disk was deleted."""

    region: str
    gib: float
    start: datetime
    end: datetime | None = None


Renderer = Callable[["World", Resource], dict[str, Any]]


class World:
    """All simulated state; callers hold `lock` (handlers run under it)."""

    def __init__(
        self, clock: VirtualClock, durations: Durations, page_size: int, seed: int
    ) -> None:
        self.clock = clock
        self.durations = durations
        self.page_size = page_size
        self.lock = threading.RLock()
        self.faults = Faults(seed)
        self.throttle = Throttle()
        self.subscriptions: dict[str, dict[str, str]] = {}  # id (lower) -> subscription tags
        self.subscription_ids: dict[str, str] = {}  # lower -> as written
        self.groups: dict[tuple[str, str], Group] = {}
        self.resources: dict[str, Resource] = {}
        self.removals: dict[str, datetime] = {}  # id (lower) -> when it was last removed
        self.operations: dict[str, Operation] = {}
        # Operations not yet settled, by when they are done: settling must not walk every
        # operation ever started (a year's chaos run starts hundreds of thousands).
        self._unsettled: list[tuple[datetime, int, Operation]] = []
        self._started = itertools.count()
        self.bill_entries: dict[str, list[BillEntry]] = {}  # snapshot id (lower) -> its storage
        self.requests: list[RequestRecord] = []
        self.grants: dict[str, Grant] = {}  # container -> the SAS grant it serves
        # resource id (lower) -> the containers of its grants endGetAccess has not revoked: what
        # revokes and the ActiveSAS check read, so their cost does not grow with every grant ever.
        self.exported: dict[str, set[str]] = {}
        self.renderers: dict[str, Renderer] = {}
        # (subscription, size, region), lower case -> what the subscription may not have there.
        self.sku_restrictions: dict[tuple[str, str, str], SkuRestriction] = {}
        self.seed = seed
        self._random = random.Random(seed)

    # -- time and ids -------------------------------------------------------------------------
    def now(self) -> datetime:
        return self.clock.now()

    def later(self, seconds: float) -> datetime:
        return self.now() + timedelta(seconds=seconds)

    def new_uuid(self) -> str:
        return str(uuid.UUID(int=self._random.getrandbits(128), version=4))

    def varied(self, seconds: float, key: str) -> float:
        """`seconds` give or take `durations.jitter` of it, drawn from (seed, key, now).

        Keyed rather than drawn in sequence, so the time of one operation does not depend on
        the order in which concurrent activities happened to send theirs.
        """
        draw = random.Random(f"{self.seed}:{key}:{self.now().isoformat()}").random()
        return seconds * (1.0 + self.durations.jitter * (2.0 * draw - 1.0))

    # -- subscriptions and groups -------------------------------------------------------------
    def add_subscription(self, subscription: str) -> None:
        self.subscription_ids.setdefault(subscription.lower(), subscription)
        self.subscriptions.setdefault(subscription.lower(), {})

    def require_subscription(self, subscription: str) -> None:
        if subscription.lower() not in self.subscriptions:
            raise ArmError(
                404,
                "SubscriptionNotFound",
                f"The subscription '{subscription}' could not be found.",
            )

    def add_group(
        self, subscription: str, name: str, location: str, tags: dict[str, str] | None = None
    ) -> Group:
        self.add_subscription(subscription)
        key = (subscription.lower(), name.lower())
        group = self.groups.get(key)
        if group is None:
            group = self.groups[key] = Group(subscription, name, normalise_region(location))
        if tags is not None:
            group.tags = dict(tags)
        return group

    def group(self, subscription: str, name: str) -> Group:
        self.require_subscription(subscription)
        group = self.groups.get((subscription.lower(), name.lower()))
        if group is None:
            raise ArmError(
                404, "ResourceGroupNotFound", f"Resource group '{name}' could not be found."
            )
        return group

    def sku_restriction(self, subscription: str, size: str, region: str) -> SkuRestriction | None:
        """The restriction on a VM size for this subscription in a region, if any."""
        key = (subscription.lower(), size.lower(), normalise_region(region))
        return self.sku_restrictions.get(key)

    # -- resources ----------------------------------------------------------------------------
    def find(self, resource_id: str) -> Resource | None:
        return self.resources.get(_key(resource_id))

    def get(self, ref: ResourceId) -> Resource:
        """The resource, or Azure's 404 (group first, as ARM checks it first)."""
        self.group(ref.subscription, ref.resource_group)
        resource = self.find(str(ref))
        if resource is None:
            raise not_found(ref.type, ref.name, ref.resource_group)
        return resource

    def put(self, resource: Resource) -> Resource:
        self.resources[_key(resource.id)] = resource
        return resource

    def remove(self, resource_id: str) -> None:
        resource = self.resources.pop(_key(resource_id), None)
        if resource is not None:
            self.removals[_key(resource_id)] = self.now()
        held = [e for e in self.bill_entries.get(_key(resource_id), []) if e.end is None]
        for entry in held:
            entry.end = self.now()
        if resource is not None and held and resource.properties.get("incremental"):
            self._pass_on(resource, sum(entry.gib for entry in held))

    def _pass_on(self, deleted: Resource, gib: float) -> None:
        """Bill a deleted incremental snapshot's blocks to the next snapshot of its disk in its
        region, up to that snapshot's disk size. Each incremental snapshot restores the whole
        disk, yet stores only the blocks changed since the one before and is billed for that
        used size (learn.microsoft.com/azure/virtual-machines/disks-incremental-snapshots), so
        the blocks a deleted one held stay stored for the next; the newest one's go with it."""
        later = [
            r
            for r in self.resources.values()
            if r.type == deleted.type
            and r.disk_lineage == deleted.disk_lineage
            and r.location == deleted.location
            and r.created_at > deleted.created_at
            and _key(r.id) in self.bill_entries
        ]
        if not later:
            return
        heir = min(later, key=lambda r: r.created_at)
        entries = self.bill_entries[_key(heir.id)]
        held = sum(e.gib for e in entries if e.end is None)
        room = float(heir.properties.get("diskSizeGB") or 0) - held
        if room > 0:
            entries.append(BillEntry(heir.location, min(gib, room), self.now()))

    def removed_at(self, resource_id: str) -> datetime | None:
        """When a resource of this id was last removed (a copy fails if its source goes)."""
        return self.removals.get(_key(resource_id))

    def new_resource(
        self, ref: ResourceId, body: dict[str, Any], seconds: float, **facts: Any
    ) -> Resource:
        """A resource created now whose create completes after `seconds` of virtual time."""
        group = self.group(ref.subscription, ref.resource_group)
        now = self.now()
        body = dict(body)
        body["location"] = normalise_region(str(body.get("location") or group.location))
        canonical = make_id(group.subscription, group.name, ref.type, ref.name)
        resource = Resource(
            canonical,
            ref.type,
            body,
            now,
            now + timedelta(seconds=seconds),
            uid=self.new_uuid(),
            **facts,
        )
        return self.put(resource)

    def list_reply(self, type_: str, request: Request, args: dict[str, str]) -> Reply:
        """A List (in the route's group `rg`, if it names one) or ListAll of one resource type:
        a page of it, with a nextLink to the next."""
        self.require_subscription(args["sub"])
        if "rg" in args:
            self.group(args["sub"], args["rg"])
        found = self.of_type(type_, args["sub"], args.get("rg"))
        return page(request, found, self.page_size, self.render)

    def of_type(
        self, type_: str, subscription: str, resource_group: str | None = None
    ) -> list[Resource]:
        """Resources of a type in a subscription (or one group), sorted by id for stable paging."""
        prefix = f"/subscriptions/{subscription}/".lower()
        if resource_group is not None:
            prefix += f"resourcegroups/{resource_group}/".lower()
        found = [
            r
            for key, r in self.resources.items()
            if key.startswith(prefix) and r.type.lower() == type_.lower()
        ]
        return sorted(found, key=lambda r: r.id.lower())

    def render(self, resource: Resource) -> dict[str, Any]:
        renderer = self.renderers.get(resource.type.lower(), render_plain)
        return renderer(self, resource)

    # -- long-running operations --------------------------------------------------------------
    def start_operation(
        self,
        subscription: str,
        namespace: str,
        location: str,
        api_version: str,
        seconds: float,
        *,
        result: Callable[[], Any] | None = None,
        on_done: Callable[[], None] | None = None,
        error: ArmError | None = None,
        expected_seconds: float | None = None,
    ) -> Operation:
        """An operation done after `seconds`; `expected_seconds` (a varied one's undisturbed
        duration) is what its Retry-After hints at."""
        now = self.now()
        expected = None if expected_seconds is None else now + timedelta(seconds=expected_seconds)
        operation = Operation(
            self.new_uuid(),
            subscription,
            namespace,
            normalise_region(location) or "global",
            api_version,
            now,
            now + timedelta(seconds=seconds),
            error,
            result,
            on_done,
            expected_at=expected,
        )
        self.operations[operation.id] = operation
        heapq.heappush(self._unsettled, (operation.done_at, next(self._started), operation))
        return operation

    def settle(self) -> None:
        """Apply the side effects of operations whose time has come (deletes, detaches)."""
        now = self.now()
        while self._unsettled and self._unsettled[0][0] <= now:
            operation = heapq.heappop(self._unsettled)[2]
            operation.settled = True
            if operation.on_done is not None:
                operation.on_done()

    # -- bill ---------------------------------------------------------------------------------
    def bill_snapshot(self, resource: Resource) -> None:
        self.bill_entries[_key(resource.id)] = [
            BillEntry(resource.location, resource.changed_gib, resource.created_at)
        ]

    def bill(self) -> dict[str, float]:
        """GiB-months stored per region up to now (each snapshot billed for its changed GiB)."""
        now = self.now()
        totals: dict[str, float] = {}
        for entry in (e for entries in self.bill_entries.values() for e in entries):
            seconds = ((entry.end or now) - entry.start).total_seconds()
            months = seconds / 3600.0 / HOURS_PER_MONTH
            totals[entry.region] = totals.get(entry.region, 0.0) + entry.gib * months
        return totals


def render_plain(world: World, resource: Resource) -> dict[str, Any]:
    """The stored document with ARM's envelope fields and provisioningState."""
    body = dict(resource.body)
    body["id"] = resource.id
    body["name"] = resource.name
    body["type"] = resource.type
    properties = dict(body.get("properties") or {})
    properties["provisioningState"] = resource.provisioning_state(world.now())
    body["properties"] = properties
    return body


def _key(resource_id: str) -> str:
    return "/" + resource_id.strip("/").lower()
