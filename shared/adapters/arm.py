"""The Compute gateway: `ComputeGateway` on azure-mgmt-compute, -network and -resource.

Creates that take minutes (snapshots, copies, disks, VMs) are only *started* here and answered
with `Accepted`: the workflows wait on durable timers and read the state again, because an
activity that blocks on a create would stall the virtual clock locally and burn a worker in
Azure. Deletes, the NIC, Run Command and tag writes are quick, so they wait on the SDK poller,
paced by Retry-After (the app's poll interval when Azure sends none).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, Final

from azure.core.pipeline import PipelineResponse
from azure.core.polling import LROPoller
from azure.core.rest import HttpResponse
from azure.mgmt.compute import models as compute
from azure.mgmt.core.tools import parse_resource_id, resource_id
from azure.mgmt.network import models as network
from azure.mgmt.resource.resources import models as resources

from shared.adapters.arm_errors import retry_after_seconds, translated
from shared.adapters.credentials import ArmClients, arm_clients
from shared.domain.models import VM, Disk
from shared.errors import NotFoundError, PermanentError
from shared.ports import (
    Accepted,
    GuestCheck,
    ManagedDisk,
    Snapshot,
    TaggedResource,
    VmRuntime,
)
from shared.settings import Settings

POLICY_TAG: Final = "backup-policy"
VM_TYPE: Final = "Microsoft.Compute/virtualMachines"
DISK_TYPE: Final = "Microsoft.Compute/disks"
SNAPSHOT_TYPE: Final = "Microsoft.Compute/snapshots"
NIC_TYPE: Final = "Microsoft.Network/networkInterfaces"
# The order `delete_tagged` deletes in: a VM holds its NIC and disks until it is gone.
DELETE_ORDER: Final = (VM_TYPE, NIC_TYPE, DISK_TYPE)
# Seconds until a started create is worth reading again, when Azure sends no Retry-After.
EXPECTED_SECONDS: Final = {"snapshot": 15.0, "copy": 60.0, "disk": 30.0, "vm": 60.0}
# Run Command per OS: a trivial script whose echo proves the guest agent and shell answered.
GUEST_MARKER: Final = "backupdr-guest-ok"
GUEST_COMMANDS: Final = {"linux": "RunShellScript", "windows": "RunPowerShellScript"}


class ResponseLog:
    """Records the HTTP responses of one SDK call (passed as its `raw_response_hook`).

    The SDK hides status codes and headers the port needs: Retry-After on a create, and a
    DELETE's 204 that says the resource was already gone.
    """

    def __init__(self) -> None:
        self.responses: list[HttpResponse] = []

    def __call__(self, pipeline_response: PipelineResponse[Any, Any]) -> None:
        self.responses.append(pipeline_response.http_response)

    def last(self, method: str) -> HttpResponse | None:
        """The last response to a request with this HTTP method (retries come before it)."""
        matching = [r for r in self.responses if r.request.method == method]
        return matching[-1] if matching else None


class ArmComputeGateway:
    """Azure Resource Manager through the real SDK clients; errors leave as `shared.errors`."""

    def __init__(self, clients: ArmClients, subscription_id: str) -> None:
        self._compute = clients.compute
        self._network = clients.network
        self._resources = clients.resources
        self._subscription = subscription_id

    # --- VMs -------------------------------------------------------------------------------

    def list_vms(self) -> list[VM]:
        """Every VM in the subscription with its managed disks and tags: one paged list."""
        with translated("list VMs"):
            return [_vm(item) for item in self._compute.virtual_machines.list_all()]

    def get_vm(self, resource_group: str, name: str) -> VM:
        """One VM with its disks and tags; NotFoundError when there is none."""
        with translated(f"get VM {resource_group}/{name}"):
            return _vm(self._compute.virtual_machines.get(resource_group, name))

    # --- snapshots -------------------------------------------------------------------------

    def begin_snapshot(
        self, *, name: str, resource_group: str, region: str, disk: Disk, tags: dict[str, str]
    ) -> Accepted:
        """Start an incremental snapshot of `disk`, tagged in the same PUT."""
        body = compute.Snapshot(
            location=region,
            tags=tags,
            properties=compute.SnapshotProperties(
                creation_data=compute.CreationData(
                    create_option="Copy", source_resource_id=disk.id
                ),
                incremental=True,
            ),
        )
        return self._begin(
            "snapshot",
            self._compute_id(resource_group, "snapshots", name),
            lambda **kw: self._compute.snapshots.begin_create_or_update(
                resource_group, name, body, **kw
            ),
        )

    def begin_copy(
        self, *, source_id: str, name: str, resource_group: str, region: str, tags: dict[str, str]
    ) -> Accepted:
        """Start an incremental cross-region copy (CopyStart) of a snapshot into `region`."""
        _locate(source_id, SNAPSHOT_TYPE)
        body = compute.Snapshot(
            location=region,
            tags=tags,
            properties=compute.SnapshotProperties(
                creation_data=compute.CreationData(
                    create_option="CopyStart", source_resource_id=source_id
                ),
                incremental=True,
            ),
        )
        return self._begin(
            "copy",
            self._compute_id(resource_group, "snapshots", name),
            lambda **kw: self._compute.snapshots.begin_create_or_update(
                resource_group, name, body, **kw
            ),
        )

    def get_snapshot(self, snapshot_id: str) -> Snapshot:
        """A snapshot's state, size, tags and copy progress; NotFoundError when it is gone."""
        group, name = _locate(snapshot_id, SNAPSHOT_TYPE)
        with translated(f"get snapshot {group}/{name}"):
            return _snapshot(self._compute.snapshots.get(group, name))

    def list_snapshots(self, resource_group: str | None = None) -> list[Snapshot]:
        """Snapshots in one resource group, or in the whole subscription (one paged list)."""
        snapshots = self._compute.snapshots
        with translated(f"list snapshots in {resource_group or 'the subscription'}"):
            if resource_group:
                return [_snapshot(s) for s in snapshots.list_by_resource_group(resource_group)]
            return [_snapshot(s) for s in snapshots.list()]

    def delete_snapshot(self, snapshot_id: str) -> bool:
        """Delete a snapshot and wait until Azure is done; False when it was already gone."""
        return self._start_delete(snapshot_id, SNAPSHOT_TYPE)()

    # --- disks -----------------------------------------------------------------------------

    def begin_disk_from_snapshot(
        self,
        *,
        name: str,
        resource_group: str,
        region: str,
        snapshot_id: str,
        sku: str,
        zone: str | None,
        tags: dict[str, str],
    ) -> Accepted:
        """Start creating a managed disk from a snapshot."""
        _locate(snapshot_id, SNAPSHOT_TYPE)
        body = compute.Disk(
            location=region,
            tags=tags,
            sku=compute.DiskSku(name=sku),
            zones=[zone] if zone else None,
            properties=compute.DiskProperties(
                creation_data=compute.CreationData(
                    create_option="Copy", source_resource_id=snapshot_id
                ),
            ),
        )
        return self._begin(
            "disk",
            self._compute_id(resource_group, "disks", name),
            lambda **kw: self._compute.disks.begin_create_or_update(
                resource_group, name, body, **kw
            ),
        )

    def get_disk(self, disk_id: str) -> ManagedDisk:
        """A managed disk's state and size; NotFoundError when it is gone."""
        group, name = _locate(disk_id, DISK_TYPE)
        with translated(f"get disk {group}/{name}"):
            return _managed_disk(self._compute.disks.get(group, name))

    def delete_disk(self, disk_id: str) -> bool:
        """Delete a managed disk and wait; False when it was already gone."""
        return self._start_delete(disk_id, DISK_TYPE)()

    # --- DR: network, VM, guest --------------------------------------------------------------

    def create_nic(
        self, *, name: str, resource_group: str, region: str, subnet: str, tags: dict[str, str]
    ) -> str:
        """Create a NIC on `subnet` ("vnet/subnet" in the same group) and return its id."""
        vnet, _, subnet_name = subnet.partition("/")
        if not vnet or not subnet_name or "/" in subnet_name:
            raise PermanentError(f"subnet {subnet!r} is not in the form vnet/subnet")
        subnet_id = resource_id(
            subscription=self._subscription,
            resource_group=resource_group,
            namespace="Microsoft.Network",
            type="virtualNetworks",
            name=vnet,
            child_type_1="subnets",
            child_name_1=subnet_name,
        )
        body = network.NetworkInterface(
            location=region,
            tags=tags,
            properties=network.NetworkInterfacePropertiesFormat(
                ip_configurations=[
                    network.NetworkInterfaceIPConfiguration(
                        name="ipconfig1",
                        properties=network.NetworkInterfaceIPConfigurationPropertiesFormat(
                            subnet=network.Subnet(id=subnet_id),
                            private_ip_allocation_method="Dynamic",
                        ),
                    )
                ]
            ),
        )
        with translated(f"create NIC {resource_group}/{name}"):
            nic = self._network.network_interfaces.begin_create_or_update(
                resource_group, name, body
            ).result()
        return nic.id or self._resource_id(
            resource_group, "Microsoft.Network", "networkInterfaces", name
        )

    def begin_vm_from_disks(
        self,
        *,
        name: str,
        resource_group: str,
        region: str,
        vm_size: str,
        os_type: str,
        os_disk_id: str,
        data_disks: Sequence[tuple[int, str]],
        nic_id: str,
        tags: dict[str, str],
    ) -> Accepted:
        """Start creating a VM with the OS disk attached and (LUN, disk id) data disks attached."""
        _locate(os_disk_id, DISK_TYPE)
        _locate(nic_id, NIC_TYPE)
        for _, disk_id in data_disks:
            _locate(disk_id, DISK_TYPE)
        body = compute.VirtualMachine(
            location=region,
            tags=tags,
            properties=compute.VirtualMachineProperties(
                hardware_profile=compute.HardwareProfile(vm_size=vm_size),
                storage_profile=compute.StorageProfile(
                    os_disk=compute.OSDisk(
                        os_type=os_type,
                        create_option="Attach",
                        managed_disk=compute.ManagedDiskParameters(id=os_disk_id),
                    ),
                    data_disks=[
                        compute.DataDisk(
                            lun=lun,
                            create_option="Attach",
                            managed_disk=compute.ManagedDiskParameters(id=disk_id),
                        )
                        for lun, disk_id in data_disks
                    ],
                ),
                network_profile=compute.NetworkProfile(
                    network_interfaces=[
                        compute.NetworkInterfaceReference(
                            id=nic_id,
                            properties=compute.NetworkInterfaceReferenceProperties(primary=True),
                        )
                    ]
                ),
            ),
        )
        return self._begin(
            "vm",
            self._compute_id(resource_group, "virtualMachines", name),
            lambda **kw: self._compute.virtual_machines.begin_create_or_update(
                resource_group, name, body, **kw
            ),
        )

    def vm_runtime(self, vm_id: str) -> VmRuntime:
        """Provisioning and power state from the VM's instance view."""
        group, name = _locate(vm_id, VM_TYPE)
        with translated(f"read instance view of VM {group}/{name}"):
            view = self._compute.virtual_machines.instance_view(group, name)
        codes = [status.code or "" for status in view.statuses or ()]
        return VmRuntime(
            provisioning_state=_status(codes, "ProvisioningState/"),
            power_state=_status(codes, "PowerState/"),
        )

    def run_guest_check(self, vm_id: str, os_type: str) -> GuestCheck:
        """Run a trivial command in the guest (Run Command) and report whether it answered.

        A command Azure accepted but the guest never ran (its operation failed, as when the
        agent is silent) or ran without echoing the marker is a failed check, not an error;
        a refused request, a missing VM and transient failures raise.
        """
        group, name = _locate(vm_id, VM_TYPE)
        command = GUEST_COMMANDS.get(os_type.lower())
        if command is None:
            raise PermanentError(f"os type {os_type!r} is not Linux or Windows")
        body = compute.RunCommandInput(command_id=command, script=[f"echo {GUEST_MARKER}"])
        operation = f"run guest check on VM {group}/{name}"
        with translated(operation):
            poller = self._compute.virtual_machines.begin_run_command(group, name, body)
        try:
            with translated(operation):
                result = poller.result()
        except NotFoundError:
            raise
        except PermanentError as silent:  # e.g. VMAgentStatusCommunicationError
            return GuestCheck(succeeded=False, output=str(silent))
        output = "\n".join(s.message or "" for s in result.value or () if s.message)
        return GuestCheck(succeeded=GUEST_MARKER in output, output=output[:1000])

    # --- tagged resources ------------------------------------------------------------------

    def list_tagged(self, resource_group: str, tag: str) -> list[TaggedResource]:
        """Resources in a group that carry the tag `tag` (any value).

        Filtered here, not with `$filter=tagName`: ARM leaves tags out of a tag-filtered
        list, and the sweeper needs their values (the expiry).
        """
        with translated(f"list resources in {resource_group}"):
            return [
                TaggedResource(id=item.id or "", type=item.type or "", tags=dict(item.tags or {}))
                for item in self._resources.resources.list_by_resource_group(resource_group)
                if item.tags and tag in item.tags
            ]

    def delete_tagged(self, resource_group: str, tag: str, value: str) -> list[str]:
        """Delete every VM, NIC and disk in the group tagged `tag=value`, in dependency order.

        Each kind's deletes run side by side and all finish before the next kind starts.
        """
        tagged = [r for r in self.list_tagged(resource_group, tag) if r.tags[tag] == value]
        deleted: list[str] = []
        for kind in DELETE_ORDER:
            started = [
                (r.id, self._start_delete(r.id, kind))
                for r in tagged
                if r.type.lower() == kind.lower()
            ]
            deleted += [rid for rid, wait in started if wait()]
        return deleted

    def set_policy_tag(self, vm_id: str, value: str | None) -> None:
        """Merge the `backup-policy` tag onto a VM (None removes it) through the Tags API.

        Removal names the current value: Delete removes name/value pairs, so it needs the value.
        """
        _locate(vm_id, VM_TYPE)
        tags = self._resources.tags
        with translated(f"set {POLICY_TAG} tag on {vm_id}"):
            if value is not None:
                patch = resources.TagsPatchResource(
                    operation="Merge", properties=resources.Tags(tags={POLICY_TAG: value})
                )
            else:
                current = (tags.get_at_scope(vm_id).properties or resources.Tags()).tags or {}
                if POLICY_TAG not in current:
                    return
                patch = resources.TagsPatchResource(
                    operation="Delete",
                    properties=resources.Tags(tags={POLICY_TAG: current[POLICY_TAG]}),
                )
            tags.begin_update_at_scope(vm_id, patch).result()

    # --- helpers ---------------------------------------------------------------------------

    def _begin(self, kind: str, rid: str, start: Callable[..., LROPoller[Any]]) -> Accepted:
        """Send a create's PUT without waiting; say when it is worth reading again."""
        log = ResponseLog()
        with translated(f"start {kind} {rid}"):
            start(polling=False, raw_response_hook=log)
        response = log.last("PUT")
        delay = retry_after_seconds(response.headers) if response is not None else None
        if delay is None:
            delay = 0.0 if _provisioned(response) else EXPECTED_SECONDS[kind]
        return Accepted(resource_id=rid, poll_after_seconds=delay)

    def _start_delete(self, rid: str, kind: str) -> Callable[[], bool]:
        """Send the DELETE of a resource of `kind`; the answer waits for it to finish.

        The wait is True when this delete removed the resource, False when Azure said it was
        already gone (204 or 404), so callers can tell a repeat run from real work.
        """
        group, name = _locate(rid, kind)
        deleters: dict[str, Callable[..., LROPoller[None]]] = {
            VM_TYPE: self._compute.virtual_machines.begin_delete,
            NIC_TYPE: self._network.network_interfaces.begin_delete,
            DISK_TYPE: self._compute.disks.begin_delete,
            SNAPSHOT_TYPE: self._compute.snapshots.begin_delete,
        }
        begin = deleters[kind]
        operation = f"delete {kind.rsplit('/', 1)[-1]} {group}/{name}"
        log = ResponseLog()
        try:
            with translated(operation):
                poller = begin(group, name, raw_response_hook=log)
        except NotFoundError:
            return lambda: False

        def wait() -> bool:
            try:
                with translated(operation):
                    poller.result()
            except NotFoundError:
                return False
            initial = log.last("DELETE")
            return initial is None or initial.status_code != 204

        return wait

    def _compute_id(self, resource_group: str, kind: str, name: str) -> str:
        return self._resource_id(resource_group, "Microsoft.Compute", kind, name)

    def _resource_id(self, resource_group: str, namespace: str, kind: str, name: str) -> str:
        return resource_id(
            subscription=self._subscription,
            resource_group=resource_group,
            namespace=namespace,
            type=kind,
            name=name,
        )


def gateway_from_settings(settings: Settings) -> ArmComputeGateway:
    """The gateway on clients built from settings (the composition root calls this)."""
    return ArmComputeGateway(arm_clients(settings), settings.subscription_id)


# --- SDK models to records -------------------------------------------------------------------


def _locate(rid: str, expected_type: str) -> tuple[str, str]:
    """(resource group, name) of a resource id of the expected type; bad input fails clearly."""
    parts = parse_resource_id(rid)
    found = f"{parts.get('namespace', '')}/{parts.get('type', '')}"
    if not parts.get("resource_group") or found.lower() != expected_type.lower():
        raise PermanentError(f"{rid!r} is not a {expected_type} resource id")
    return str(parts["resource_group"]), str(parts["name"])


def _group_of(rid: str | None) -> str:
    return str(parse_resource_id(rid or "").get("resource_group", ""))


def _vm(item: compute.VirtualMachine) -> VM:
    props = item.properties or compute.VirtualMachineProperties()
    storage = props.storage_profile or compute.StorageProfile()
    zone = item.zones[0] if item.zones else None
    os_disk = storage.os_disk
    disks = [_disk(os_disk, None, zone)] if os_disk is not None else []
    disks += [_disk(d, d.lun, zone) for d in sorted(storage.data_disks or (), key=lambda d: d.lun)]
    hardware = props.hardware_profile or compute.HardwareProfile()
    return VM(
        id=item.id or "",
        name=item.name or "",
        resource_group=_group_of(item.id),
        location=item.location,
        disks=tuple(d for d in disks if d is not None),
        tags=dict(item.tags or {}),
        vm_size=_text(hardware.vm_size) or "",
        os_type=(_text(os_disk.os_type) if os_disk is not None else None) or "Linux",
        zone=zone,
    )


def _disk(
    source: compute.OSDisk | compute.DataDisk, lun: int | None, zone: str | None
) -> Disk | None:
    """A VM's managed disk from its storage profile; None for an unmanaged (VHD) disk."""
    managed = source.managed_disk
    if managed is None or not managed.id:
        return None
    return Disk(
        id=managed.id,
        name=source.name or str(parse_resource_id(managed.id).get("name", "")),
        size_gb=source.disk_size_gb or 0,
        sku=_text(managed.storage_account_type) or "",
        lun=lun,
        zone=zone,
    )


def _snapshot(item: compute.Snapshot) -> Snapshot:
    props = item.properties or compute.SnapshotProperties({})
    error = props.copy_completion_error
    return Snapshot(
        id=item.id or "",
        name=item.name or "",
        resource_group=_group_of(item.id),
        location=item.location,
        source_id=_source_of(props.creation_data) or "",
        size_gb=props.disk_size_gb or 0,
        provisioning_state=props.provisioning_state or "",
        incremental=bool(props.incremental),
        tags=dict(item.tags or {}),
        created_at=props.time_created,
        completion_percent=props.completion_percent,
        copy_error=f"{_text(error.error_code)}: {error.error_message}" if error else None,
        access_state=_text(props.snapshot_access_state),
    )


def _managed_disk(item: compute.Disk) -> ManagedDisk:
    props = item.properties or compute.DiskProperties({})
    return ManagedDisk(
        id=item.id or "",
        name=item.name or "",
        resource_group=_group_of(item.id),
        location=item.location,
        size_gb=props.disk_size_gb or 0,
        sku=(_text(item.sku.name) if item.sku is not None else None) or "",
        provisioning_state=props.provisioning_state or "",
        disk_state=_text(props.disk_state) or "",
        source_id=_source_of(props.creation_data),
        tags=dict(item.tags or {}),
        zone=item.zones[0] if item.zones else None,
    )


def _source_of(creation: compute.CreationData | None) -> str | None:
    """The resource a disk or snapshot was made from (creationData is absent in odd answers)."""
    return creation.source_resource_id if creation is not None else None


def _text(value: object | None) -> str | None:
    """An SDK enum or string as plain text (enums are `str` subclasses with a `.value`)."""
    if value is None:
        return None
    return str(getattr(value, "value", value))


def _status(codes: Iterable[str], prefix: str) -> str:
    """The lower-case state after `prefix` in instance-view status codes ("unknown" if none)."""
    return next((c[len(prefix) :].lower() for c in codes if c.startswith(prefix)), "unknown")


def _provisioned(response: HttpResponse | None) -> bool:
    """Whether a create's answer already shows it finished (a retried PUT of a done resource)."""
    if response is None or response.status_code not in (200, 201):
        return False
    try:
        body = response.json()
    except ValueError:
        return False
    state = (body.get("properties") or {}).get("provisioningState", "")
    return isinstance(state, str) and state.lower() == "succeeded"
