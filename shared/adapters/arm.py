"""The Compute gateway: `ComputeGateway` on azure-mgmt-compute, -network and -resource.

Operations that take Azure seconds to minutes (snapshots, copies, disks, NICs, VMs, their
deletes, Run Command) are only *started* here and answered with a hint of when to look again:
the workflows wait on durable timers and read the state again. An activity that blocks on a
poller stalls the virtual clock locally, and in Azure one that outlives host.json's
functionTimeout is killed with its worker. Only snapshot deletes (retention) and tag writes (the
CLI), quick in Azure, wait on the SDK poller, paced by Retry-After.
"""

from __future__ import annotations

import dataclasses
import re
import urllib.parse
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, Final, cast

from azure.core.exceptions import AzureError, HttpResponseError
from azure.core.paging import PageIterator
from azure.core.pipeline import PipelineResponse
from azure.core.pipeline.transport import HttpTransport
from azure.core.polling import LROPoller
from azure.core.rest import HttpRequest, HttpResponse
from azure.mgmt.compute import models as compute
from azure.mgmt.core.exceptions import ARMErrorFormat
from azure.mgmt.core.tools import parse_resource_id, resource_id
from azure.mgmt.network import models as network
from azure.mgmt.resource.resources import models as resources

from shared.adapters.arm_errors import retry_after_seconds, translate, translated
from shared.adapters.credentials import ArmClients, arm_clients, principal_of
from shared.adapters.disk_reader import SasDisk
from shared.domain.isolation import SecurityRule, SubnetEgress, isolation_problem
from shared.domain.models import VM, Disk, NicConfig
from shared.errors import BusyError, NotFoundError, PermanentError, TransientError, sanitise
from shared.ports import (
    Accepted,
    CommandRun,
    DiskData,
    GuestCheck,
    ManagedDisk,
    Snapshot,
    TaggedResource,
    VmRuntime,
    VmSizeOffer,
)
from shared.settings import Settings

POLICY_TAG: Final = "backup-policy"
VM_TYPE: Final = "Microsoft.Compute/virtualMachines"
DISK_TYPE: Final = "Microsoft.Compute/disks"
SNAPSHOT_TYPE: Final = "Microsoft.Compute/snapshots"
NIC_TYPE: Final = "Microsoft.Network/networkInterfaces"
ACCESS_POLL_SECONDS: Final = 2  # a read SAS is granted in seconds
REMAINING_WRITES: Final = "x-ms-ratelimit-remaining-subscription-writes"
# Seconds until a started operation is worth reading again, when Azure sends no Retry-After.
EXPECTED_SECONDS: Final = {
    "snapshot": 15.0,
    "copy": 60.0,
    "disk": 30.0,
    "vm": 60.0,
    "nic": 10.0,
    "run command": 30.0,
}
# The same for deletes, by the type deleted.
DELETE_SECONDS: Final = {VM_TYPE: 60.0, NIC_TYPE: 10.0, DISK_TYPE: 15.0}
# VM security types (securityProfile.securityType) the gateway creates VMs with.
SECURITY_TYPES: Final = ("Standard", "TrustedLaunch", "ConfidentialVM")
# A region name as the Resource SKUs filter takes it ("westus2"); nothing else goes in a filter.
_REGION: Final = re.compile(r"[A-Za-z0-9]{2,40}")
# Run Command per OS: a trivial script whose echo proves the guest agent and shell answered.
GUEST_MARKER: Final = "backupdr-guest-ok"
GUEST_COMMANDS: Final = {"linux": "RunShellScript", "windows": "RunPowerShellScript"}
# How Compute refuses a Run Command while another runs (409 Conflict; azure-cli#19137).
_RUN_COMMAND_BUSY: Final = "run command extension execution is in progress"
# Where Compute leaves an operation's result (a Run Command's Location), in our subscription.
_OPERATION_PATH: Final = (
    r"/subscriptions/{}/providers/Microsoft\.Compute/locations/[^/]+/operations/[^/]+"
)


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
        self._credential, self._scope = clients.credential, clients.scope
        self._ca_bundle = clients.ca_bundle
        self._subscription = subscription_id
        self._principal: str | None = None

    def principal(self) -> str:
        """Who ARM sees this gateway as, from its token's claims (read once: a credential
        stands for one identity however often its token is renewed)."""
        if self._principal is None:
            with translated("get a token for Azure Resource Manager"):
                token = self._credential.get_token(self._scope).token
            self._principal = principal_of(token)
        return self._principal

    # --- VMs -------------------------------------------------------------------------------

    def list_vms(self) -> list[VM]:
        """Every VM in the subscription with its managed disks and tags: one paged list."""
        with translated("list VMs"):
            return [_vm(item) for item in self._compute.virtual_machines.list_all()]

    def list_vms_page(self, page: str | None) -> tuple[list[VM], str | None]:
        """One page of the subscription's VMs (`page` None: the first) and the next page's
        token (None after the last): a fleet run reads the list a page at a time."""
        with translated("list VMs"):
            # by_page is declared an Iterator; its PageIterator also holds the next page's token.
            pages = cast(
                "PageIterator[compute.VirtualMachine]",
                self._compute.virtual_machines.list_all().by_page(continuation_token=page),
            )
            vms = [_vm(item) for item in next(pages)]
            return vms, pages.continuation_token

    def get_vm(self, resource_group: str, name: str) -> VM:
        """One VM with its disks and tags, and its Hyper-V generation from the instance view
        expanded into the same GET (the VM model has no generation of its own; the expand needs
        no right beyond virtualMachines/read); NotFoundError when there is none."""
        with translated(f"get VM {resource_group}/{name}"):
            vm = self._compute.virtual_machines.get(resource_group, name, expand="instanceView")
            return _vm(vm)

    def list_nics_page(self, page: str | None) -> tuple[list[NicConfig], str | None]:
        """One page of the subscription's NICs (networkInterfaces/read) and the next token."""
        with translated("list NICs"):
            pages = cast(
                "PageIterator[network.NetworkInterface]",
                self._network.network_interfaces.list_all().by_page(continuation_token=page),
            )
            return [_nic(item) for item in next(pages)], pages.continuation_token

    def get_nic(self, nic_id: str) -> NicConfig:
        """A VM's NIC as a backup records it (networkInterfaces/read); NotFoundError if gone."""
        group, name = _locate(nic_id, NIC_TYPE)
        with translated(f"get NIC {group}/{name}"):
            return _nic(self._network.network_interfaces.get(group, name))

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
        """Delete a snapshot and wait until Azure is done; False when it was already gone.

        Waited on here: retention deletes inside its activity, and a snapshot delete is quick.
        """
        group, name = _locate(snapshot_id, SNAPSHOT_TYPE)
        log = ResponseLog()

        def delete() -> None:
            with translated(f"delete snapshot {group}/{name}"):
                self._compute.snapshots.begin_delete(group, name, raw_response_hook=log).result()

        try:
            self._revoking_if_refused(snapshot_id, delete)
        except NotFoundError:
            return False
        return not _already_gone(log)

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

    @contextmanager
    def read_access(self, resource_id: str, seconds: int) -> Iterator[DiskData]:
        """Read access through a SAS (beginGetAccess), always revoked (endGetAccess) after.

        Waited on here: the SAS is a credential, so it must never leave this activity for the
        orchestration's history; Azure grants access in seconds."""
        operations, group, name = self._access_operations(resource_id)
        grant = compute.GrantAccessData(access="Read", duration_in_seconds=seconds)
        with translated(f"grant read access to {group}/{name}"):
            access = operations.begin_grant_access(
                group, name, grant, polling_interval=ACCESS_POLL_SECONDS
            ).result()
        try:
            yield SasDisk(access.access_sas, self._ca_bundle)
        finally:
            self._revoke_access(resource_id)

    def _revoke_access(self, resource_id: str) -> None:
        """endGetAccess, waited on; Azure accepts it when no access is granted, so it converges."""
        operations, group, name = self._access_operations(resource_id)
        with translated(f"revoke read access to {group}/{name}"):
            operations.begin_revoke_access(
                group, name, polling_interval=ACCESS_POLL_SECONDS
            ).result()

    def _revoking_if_refused(self, resource_id: str, delete: Callable[[], None]) -> None:
        """Delete, and once more after endGetAccess if Azure refused (OperationNotAllowed).

        A worker killed between beginGetAccess and endGetAccess leaves the disk or snapshot in
        the ActiveSAS state, which Azure does not delete until access is revoked
        (Azure/azure-cli#6927; the simulator refuses likewise)."""
        try:
            delete()
        except PermanentError as error:
            if "OperationNotAllowed" not in str(error):
                raise
            self._revoke_access(resource_id)
            delete()

    def _access_operations(self, resource_id: str) -> tuple[Any, str, str]:
        """The disks' or the snapshots' operations for a disk or snapshot id."""
        if "/providers/microsoft.compute/snapshots/" in resource_id.lower():
            return (self._compute.snapshots, *_locate(resource_id, SNAPSHOT_TYPE))
        return (self._compute.disks, *_locate(resource_id, DISK_TYPE))

    # --- DR: network, VM, guest --------------------------------------------------------------

    def begin_nic(
        self,
        *,
        name: str,
        resource_group: str,
        region: str,
        subnet: str,
        tags: dict[str, str],
        accelerated_networking: bool = False,
        private_ip_address: str | None = None,
    ) -> Accepted:
        """Start creating a NIC on `subnet` ("vnet/subnet" in the same group, or a subnet's
        full resource id): with `private_ip_address`, Static on that address (Azure refuses one
        that is taken, outside the subnet or reserved: AddressUnavailableError), else Dynamic."""
        subnet_id = self._subnet_id(resource_group, subnet)
        body = network.NetworkInterface(
            location=region,
            tags=tags,
            properties=network.NetworkInterfacePropertiesFormat(
                enable_accelerated_networking=accelerated_networking,
                ip_configurations=[
                    network.NetworkInterfaceIPConfiguration(
                        name="ipconfig1",
                        properties=network.NetworkInterfaceIPConfigurationPropertiesFormat(
                            subnet=network.Subnet(id=subnet_id),
                            private_ip_allocation_method="Static"
                            if private_ip_address
                            else "Dynamic",
                            private_ip_address=private_ip_address or None,
                            primary=True,
                        ),
                    )
                ],
            ),
        )
        return self._begin(
            "nic",
            self._resource_id(resource_group, "Microsoft.Network", "networkInterfaces", name),
            lambda **kw: self._network.network_interfaces.begin_create_or_update(
                resource_group, name, body, **kw
            ),
        )

    def nic_state(self, nic_id: str) -> str:
        """A NIC's provisioning state (Updating | Succeeded | Failed); NotFoundError if gone."""
        group, name = _locate(nic_id, NIC_TYPE)
        with translated(f"get NIC {group}/{name}"):
            nic = self._network.network_interfaces.get(group, name)
        props = nic.properties or network.NetworkInterfacePropertiesFormat()
        return _text(props.provisioning_state) or ""

    def list_groups(self) -> list[tuple[str, str]]:
        """Every resource group of the subscription, as (name, region): one paged list."""
        with translated("list resource groups"):
            return [
                (group.name or "", group.location)
                for group in self._resources.resource_groups.list()
            ]

    def group_exists(self, resource_group: str) -> bool:
        """Whether the subscription has a resource group of this name (one HEAD)."""
        with translated(f"check resource group {resource_group}"):
            return bool(self._resources.resource_groups.check_existence(resource_group))

    def subnet_region(self, subnet_id: str) -> str | None:
        """The region of the VNet holding this subnet; None when the VNet or subnet is missing."""
        try:
            vnet, _ = self._subnet(subnet_id)
        except NotFoundError:
            return None
        return vnet.location or ""

    def _subnet(self, subnet_id: str) -> tuple[network.VirtualNetwork, network.Subnet]:
        """A subnet and its VNet, from one GET of the VNet; NotFoundError when either is gone."""
        parts = parse_resource_id(subnet_id)
        group, vnet_name, subnet_name = (
            str(parts.get(key) or "") for key in ("resource_group", "name", "child_name_1")
        )
        if not (group and vnet_name and subnet_name) or parts.get("child_type_1") != "subnets":
            raise PermanentError(f"{subnet_id!r} is not a subnet's resource id")
        with translated(f"get VNet {group}/{vnet_name}"):
            vnet = self._network.virtual_networks.get(group, vnet_name)
        props = vnet.properties or network.VirtualNetworkPropertiesFormat()
        for subnet in props.subnets or []:
            if (subnet.name or "").lower() == subnet_name.lower():
                return vnet, subnet
        raise NotFoundError(f"VNet {group}/{vnet_name} has no subnet {subnet_name}")

    def subnet_isolation(self, subnet_id: str) -> str | None:
        """Why a VM on this subnet could reach more than the platform (None: isolated), as
        `isolation_problem` decides it on the subnet's defaultOutboundAccess and NSG rules."""
        _, subnet = self._subnet(subnet_id)
        settings = subnet.properties or network.SubnetPropertiesFormat()
        nsg = settings.network_security_group
        if nsg is None or not nsg.id:
            return isolation_problem(SubnetEgress(settings.default_outbound_access, None))
        nsg_group, nsg_name = _locate(nsg.id, "Microsoft.Network/networkSecurityGroups")
        with translated(f"get NSG {nsg_group}/{nsg_name}"):
            found = self._network.network_security_groups.get(nsg_group, nsg_name)
        rules = found.properties or network.NetworkSecurityGroupPropertiesFormat()
        every = [*(rules.security_rules or []), *(rules.default_security_rules or [])]
        egress = SubnetEgress(
            settings.default_outbound_access,
            nsg_name,
            [_security_rule(rule.name or "", rule.properties) for rule in every if rule.properties],
        )
        return isolation_problem(egress)

    def _subnet_id(self, resource_group: str, subnet: str) -> str:
        """A subnet's full id from "vnet/subnet" in `resource_group` (a full id is kept)."""
        if subnet.startswith("/"):
            return subnet
        vnet, _, subnet_name = subnet.partition("/")
        if not vnet or not subnet_name or "/" in subnet_name:
            raise PermanentError(f"subnet {subnet!r} is not in the form vnet/subnet")
        return resource_id(
            subscription=self._subscription,
            resource_group=resource_group,
            namespace="Microsoft.Network",
            type="virtualNetworks",
            name=vnet,
            child_type_1="subnets",
            child_name_1=subnet_name,
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
        security_type: str = "Standard",
        secure_boot: bool = False,
        vtpm: bool = False,
        zone: str | None = None,
        caching: Mapping[str, str] | None = None,
        license_type: str | None = None,
        boot_diagnostics: bool = False,
        boot_diagnostics_uri: str | None = None,
    ) -> Accepted:
        """Start creating a VM with the OS disk attached and (LUN, disk id) data disks attached.

        `license_type` goes on as given (None: none); boot diagnostics on in managed storage, or
        in the storage account of `boot_diagnostics_uri`.

        The security type is always sent, Standard included: from API 2025-11-01 Azure may
        otherwise pick Trusted Launch for a new VM, and the OS disk's type must match the VM's
        ("Security type of VM is not compatible with the security type of attached OS Disk",
        Azure/azure-sdk-for-python#30479). A Confidential VM's OS disk names its encryption
        (VMGuestStateOnly: the disk keeps its VM guest state encrypted with a platform key).
        """
        _locate(os_disk_id, DISK_TYPE)
        _locate(nic_id, NIC_TYPE)
        for _, disk_id in data_disks:
            _locate(disk_id, DISK_TYPE)
        if security_type not in SECURITY_TYPES:
            raise PermanentError(f"security type {security_type!r} is not one of {SECURITY_TYPES}")
        roles = dict(caching or {})
        confidential = security_type == "ConfidentialVM"
        body = compute.VirtualMachine(
            location=region,
            tags=tags,
            zones=[zone] if zone else None,
            properties=compute.VirtualMachineProperties(
                hardware_profile=compute.HardwareProfile(vm_size=vm_size),
                license_type=license_type or None,
                diagnostics_profile=compute.DiagnosticsProfile(
                    boot_diagnostics=compute.BootDiagnostics(
                        enabled=True, storage_uri=boot_diagnostics_uri or None
                    )
                )
                if boot_diagnostics
                else None,
                security_profile=compute.SecurityProfile(
                    security_type=security_type,
                    uefi_settings=None
                    if security_type == "Standard"
                    else compute.UefiSettings(secure_boot_enabled=secure_boot, v_tpm_enabled=vtpm),
                ),
                storage_profile=compute.StorageProfile(
                    os_disk=compute.OSDisk(
                        os_type=os_type,
                        create_option="Attach",
                        caching=roles.get("os"),
                        managed_disk=compute.ManagedDiskParameters(
                            id=os_disk_id,
                            security_profile=compute.VMDiskSecurityProfile(
                                security_encryption_type="VMGuestStateOnly"
                            )
                            if confidential
                            else None,
                        ),
                    ),
                    data_disks=[
                        compute.DataDisk(
                            lun=lun,
                            create_option="Attach",
                            caching=roles.get(f"lun{lun}"),
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
        """Provisioning and power state from the VM's instance view.

        A failed VM shows `ProvisioningState/failed/<Code>` (level Error) with the error's
        message, e.g. ProvisioningState/failed/AllocationFailed: any of them reads as
        provisioning state "failed" with error "<Code>: <message>", so the workflows stop
        waiting at the first failed read. A succeeded one's `time` dates the provisioning's end
        (the boot is timed from it).
        """
        group, name = _locate(vm_id, VM_TYPE)
        with translated(f"read instance view of VM {group}/{name}"):
            view = self._compute.virtual_machines.instance_view(group, name)
        statuses = list(view.statuses or ())
        codes = [status.code or "" for status in statuses]
        state = _status(codes, "ProvisioningState/")
        error = None
        if state == "failed":
            failed = next(
                s for s in statuses if (s.code or "").lower().startswith("provisioningstate/failed")
            )
            code = (failed.code or "").split("/", 2)[2:] or ["ProvisioningFailed"]
            error = sanitise(f"{code[0]}: {failed.message or failed.display_status or 'failed'}")
        provisioned = next(
            (s.time for s in statuses if (s.code or "").lower() == "provisioningstate/succeeded"),
            None,
        )
        return VmRuntime(
            provisioning_state=state,
            power_state=_status(codes, "PowerState/"),
            error=error,
            provisioned_at=provisioned,
        )

    def vm_size_offer(self, region: str, vm_size: str) -> VmSizeOffer | None:
        """The size as `resource_skus.list(filter="location eq '<region>'")` lists it; None
        when the region's list has no such VM size. Every restriction is read: the list also
        names sizes this subscription may not use (a Location or Zone restriction)."""
        if not _REGION.fullmatch(region):
            raise PermanentError(f"region {region!r} is not a region name")
        with translated(f"list the VM sizes offered in {region}"):
            for sku in self._compute.resource_skus.list(filter=f"location eq '{region}'"):
                if (sku.resource_type or "").lower() == "virtualmachines" and (
                    sku.name or ""
                ).lower() == vm_size.lower():
                    return _size_offer(sku, region)
        return None

    def begin_guest_check(self, vm_id: str, os_type: str) -> GuestCheck | CommandRun:
        """POST a trivial Run Command without waiting: its answer (a 200), or the run to read.

        Another command still running in the guest raises BusyError (Azure's 409, which a
        redelivered start meets while the first one runs); a refused request (the VM is not
        running), a missing VM and transient failures raise their own errors.
        """
        group, name = _locate(vm_id, VM_TYPE)
        command = GUEST_COMMANDS.get(os_type.lower())
        if command is None:
            raise PermanentError(f"os type {os_type!r} is not Linux or Windows")
        body = compute.RunCommandInput(command_id=command, script=[f"echo {GUEST_MARKER}"])
        log = ResponseLog()
        operation = f"start guest check on VM {group}/{name}"
        try:
            self._compute.virtual_machines.begin_run_command(
                group, name, body, polling=False, raw_response_hook=log
            )
        except HttpResponseError as error:
            if error.status_code == 409 and _RUN_COMMAND_BUSY in str(error.message).lower():
                raise BusyError(f"{operation}: another Run Command still runs") from None
            raise translate(error, operation) from None
        except AzureError as error:
            raise translate(error, operation) from None
        response = log.last("POST")
        if response is None:
            raise PermanentError(f"Azure did not answer the guest check on VM {group}/{name}")
        if response.status_code == 200:
            return _guest_check(response.json())
        location = response.headers.get("Location")
        if not location:
            raise PermanentError(f"Azure gave no Location for the guest check on VM {name}")
        run = CommandRun(vm_id=vm_id, result_url=location, poll_after_seconds=0.0)
        return _hinted(run, response)

    def read_guest_check(self, run: CommandRun) -> GuestCheck | CommandRun:
        """Read the run's Location, as the SDK poller's final GET does for this POST.

        Azure answers 202 while the command runs, 200 with its RunCommandResult, or the
        operation's error: a command the guest never ran (VMAgentStatusCommunicationError, an
        operation that failed) is a failed check; a missing operation and transient failures
        raise. The request goes through the Compute client's pipeline (auth, retries), to the
        configured endpoint only: just the path and query of the stored URL are sent.
        """
        group, name = _locate(run.vm_id, VM_TYPE)
        operation = f"read guest check on VM {group}/{name}"
        request = HttpRequest("GET", self._operation_path(run.result_url))
        with translated(operation):
            response = self._compute.send_request(request)
        if response.status_code == 202:
            return _hinted(run, response)
        if response.status_code == 200:
            return _guest_check(response.json())
        error = translate(
            HttpResponseError(response=response, error_format=ARMErrorFormat), operation
        )
        if isinstance(error, NotFoundError | TransientError):
            raise error
        return GuestCheck(succeeded=False, output=str(error))  # e.g. the agent never answered

    # --- tagged resources ------------------------------------------------------------------

    def list_tagged(self, resource_group: str, *tags: str) -> list[TaggedResource]:
        """Resources in a group that carry any of `tags` (any value).

        Filtered here, not with `$filter=tagName`: ARM leaves tags out of a tag-filtered
        list, and the sweeper needs their values (the expiry).
        """
        with translated(f"list resources in {resource_group}"):
            return [
                TaggedResource(id=item.id or "", type=item.type or "", tags=dict(item.tags or {}))
                for item in self._resources.resources.list_by_resource_group(resource_group)
                if item.tags and any(tag in item.tags for tag in tags)
            ]

    def begin_delete(self, resource_id: str) -> Accepted | None:
        """Send the DELETE of a VM, NIC or disk without waiting; None when Azure said it was
        already gone (204 or 404), so a repeat after success converges."""
        kind = _deletable_type(resource_id)
        group, name = _locate(resource_id, kind)
        deleters: dict[str, Callable[..., LROPoller[None]]] = {
            VM_TYPE: self._compute.virtual_machines.begin_delete,
            NIC_TYPE: self._network.network_interfaces.begin_delete,
            DISK_TYPE: self._compute.disks.begin_delete,
        }
        log = ResponseLog()

        def delete() -> None:
            with translated(f"delete {kind.rsplit('/', 1)[-1]} {group}/{name}"):
                deleters[kind](group, name, polling=False, raw_response_hook=log)

        try:
            if kind == DISK_TYPE:
                self._revoking_if_refused(resource_id, delete)
            else:
                delete()
        except NotFoundError:
            return None
        response = log.last("DELETE")
        if response is None or response.status_code == 200:  # done at once
            return Accepted(resource_id=resource_id, poll_after_seconds=0.0)
        if response.status_code == 204:
            return None
        delay = retry_after_seconds(response.headers)
        return Accepted(resource_id, DELETE_SECONDS[kind] if delay is None else delay)

    def tag_snapshot(self, snapshot_id: str, tags: Mapping[str, str | None]) -> None:
        """Merge tags onto a snapshot (a None value removes that tag), keeping its others.

        A snapshot PATCH (snapshots/write, which whoever manages backups holds) replaces the
        whole tag map, so the current tags are read first; a repeat converges.
        """
        group, name = _locate(snapshot_id, SNAPSHOT_TYPE)
        snapshots = self._compute.snapshots
        with translated(f"tag snapshot {group}/{name}"):
            current = dict(snapshots.get(group, name).tags or {})
            merged = {k: v for k, v in {**current, **tags}.items() if v is not None}
            if merged == current:
                return
            update = compute.SnapshotUpdate(tags=merged)
            snapshots.begin_update(group, name, update).result()

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
        remaining = _remaining_writes(response)
        if _provisioned(response):  # Microsoft.Network sends Retry-After even on a done 200
            return Accepted(resource_id=rid, poll_after_seconds=0.0, writes_remaining=remaining)
        delay = retry_after_seconds(response.headers) if response is not None else None
        return Accepted(
            resource_id=rid,
            poll_after_seconds=delay or EXPECTED_SECONDS[kind],
            writes_remaining=remaining,
        )

    def _operation_path(self, url: str) -> str:
        """The path and query of a Compute operation URL in this subscription, or a clear error.

        Sending only these keeps the bearer token on the configured endpoint, whatever the
        stored URL names.
        """
        parts = urllib.parse.urlsplit(url)
        pattern = _OPERATION_PATH.format(re.escape(self._subscription))
        if not re.fullmatch(pattern, parts.path, re.IGNORECASE):
            raise PermanentError("the guest check's result URL is not a Compute operation here")
        return f"{parts.path}?{parts.query}" if parts.query else parts.path

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


def _remaining_writes(response: HttpResponse | None) -> int | None:
    """ARM's count of write tokens left in the subscription's bucket, when it sent one."""
    value = None if response is None else response.headers.get(REMAINING_WRITES)
    return int(value) if value is not None and value.isdigit() else None


def gateway_from_settings(
    settings: Settings, transport: Callable[..., HttpTransport[Any, Any]] | None = None
) -> ArmComputeGateway:
    """The gateway on clients built from settings (the composition root calls this; the local
    stack passes its own `transport`)."""
    return ArmComputeGateway(arm_clients(settings, transport=transport), settings.subscription_id)


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
    entries: list[tuple[compute.OSDisk | compute.DataDisk, int | None]] = (
        [(os_disk, None)] if os_disk is not None else []
    )
    entries += [(d, d.lun) for d in sorted(storage.data_disks or (), key=lambda d: d.lun)]
    disks = [_disk(entry, lun, zone) for entry, lun in entries]
    hardware = props.hardware_profile or compute.HardwareProfile()
    return VM(
        id=item.id or "",
        name=item.name or "",
        resource_group=_group_of(item.id),
        location=item.location,
        disks=tuple(d for d in disks if isinstance(d, Disk)),
        tags=dict(item.tags or {}),
        vm_size=_text(hardware.vm_size) or "",
        os_type=(_text(os_disk.os_type) if os_disk is not None else None) or "Linux",
        zone=zone,
        not_protectable=tuple(d for d in disks if isinstance(d, str)),
        **_security(props),
        zones=tuple(item.zones or ()),
        nic_ids=_nic_ids(props),
        license_type=props.license_type or None,
        **_boot_diagnostics(props),
    )


def _nic_ids(props: compute.VirtualMachineProperties) -> tuple[str, ...]:
    """The VM's NIC ids, the primary first (a VM with one NIC need not mark it primary)."""
    profile = props.network_profile or compute.NetworkProfile()
    refs = [ref for ref in profile.network_interfaces or () if ref.id]
    primary = [ref for ref in refs if ref.properties is not None and ref.properties.primary]
    return tuple(dict.fromkeys(str(ref.id) for ref in [*primary, *refs]))


def _boot_diagnostics(props: compute.VirtualMachineProperties) -> dict[str, Any]:
    """Boot diagnostics on or off, and its storage account URI (none: managed storage)."""
    profile = props.diagnostics_profile or compute.DiagnosticsProfile()
    boot = profile.boot_diagnostics or compute.BootDiagnostics()
    return {
        "boot_diagnostics": bool(boot.enabled),
        "boot_diagnostics_uri": boot.storage_uri or None,
    }


def _security_rule(name: str, props: network.SecurityRulePropertiesFormat) -> SecurityRule:
    """An NSG rule as the isolation decision reads it: each address and port field, the
    single one and the list (and application security groups) taken together."""

    def values(
        one: str | None,
        many: list[str] | None,
        groups: list[network.ApplicationSecurityGroup] | None = None,
    ) -> tuple[str, ...]:
        found = [one, *(many or []), *(group.id for group in groups or [])]
        return tuple(str(value) for value in found if value)

    return SecurityRule(
        name=name,
        priority=int(props.priority),
        direction=_text(props.direction) or "",
        access=_text(props.access) or "",
        protocol=_text(props.protocol) or "",
        sources=values(
            props.source_address_prefix,
            props.source_address_prefixes,
            props.source_application_security_groups,
        ),
        source_ports=values(props.source_port_range, props.source_port_ranges),
        destinations=values(
            props.destination_address_prefix,
            props.destination_address_prefixes,
            props.destination_application_security_groups,
        ),
        destination_ports=values(props.destination_port_range, props.destination_port_ranges),
    )


def _nic(item: network.NetworkInterface) -> NicConfig:
    """A NIC's primary IP configuration (else its first) and accelerated networking."""
    props = item.properties or network.NetworkInterfacePropertiesFormat()
    configs = [
        config.properties or network.NetworkInterfaceIPConfigurationPropertiesFormat()
        for config in props.ip_configurations or ()
    ]
    primary = next((c for c in configs if c.primary), configs[0] if configs else None)
    subnet = primary.subnet if primary is not None else None
    return NicConfig(
        id=item.id or "",
        subnet_id=subnet.id if subnet is not None and subnet.id else None,
        private_ip_allocation=(
            _text(primary.private_ip_allocation_method) if primary is not None else None
        )
        or "Dynamic",
        private_ip_address=primary.private_ip_address if primary is not None else None,
        accelerated_networking=bool(props.enable_accelerated_networking),
        primary=props.primary is not False,
    )


def _security(props: compute.VirtualMachineProperties) -> dict[str, Any]:
    """A VM's security profile and Hyper-V generation, as `VM` fields.

    Compute answers securityType "Standard" from API 2025-11-01 on, and nothing before: both
    read as Standard. The generation is the instance view's (a GET with $expand=instanceView),
    else V2 for Trusted Launch and Confidential VMs, which boot nothing else; unknown otherwise.
    """
    profile = props.security_profile or compute.SecurityProfile()
    uefi = profile.uefi_settings or compute.UefiSettings()
    security = _text(profile.security_type) or "Standard"
    view = props.instance_view
    generation = _text(view.hyper_v_generation) if view is not None else None
    if generation is None and security in ("TrustedLaunch", "ConfidentialVM"):
        generation = "V2"
    return {
        "security_type": security,
        "secure_boot": bool(uefi.secure_boot_enabled),
        "vtpm": bool(uefi.v_tpm_enabled),
        "hyper_v_generation": generation,
    }


def _disk(
    source: compute.OSDisk | compute.DataDisk, lun: int | None, zone: str | None
) -> Disk | str:
    """A VM's managed disk from its storage profile, or why Azure cannot snapshot it.

    An ephemeral OS disk (`diffDiskSettings`) lives on the host: the VM lists a managed disk id
    for it, but no disk answers there and a snapshot of it is refused (learn.microsoft.com/
    azure/virtual-machines/ephemeral-os-disks: no disk snapshots, no Azure Backup). An unmanaged
    disk is a VHD page blob (`vhd.uri`, no managed disk): snapshots copy managed disks only.
    """
    where = "OS disk" if lun is None else f"disk lun {lun}"
    if isinstance(source, compute.OSDisk) and source.diff_disk_settings is not None:
        return "ephemeral OS disk: Azure cannot snapshot it"
    managed = source.managed_disk
    if managed is None or not managed.id:
        return f"unmanaged (VHD) {where}: Azure snapshots managed disks only"
    return Disk(
        id=managed.id,
        name=source.name or str(parse_resource_id(managed.id).get("name", "")),
        size_gb=source.disk_size_gb or 0,
        sku=_text(managed.storage_account_type) or "",
        lun=lun,
        zone=zone,
        caching=_text(source.caching),
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
        hyper_v_generation=_text(props.hyper_v_generation),
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
    """The lower-case state after `prefix` in instance-view status codes ("unknown" if none);
    `ProvisioningState/failed/<Code>` is "failed"."""
    return next(
        (c[len(prefix) :].split("/")[0].lower() for c in codes if c.startswith(prefix)), "unknown"
    )


def _size_offer(sku: compute.ResourceSku, region: str) -> VmSizeOffer:
    """A Resource SKUs entry as the DR test's pre-flight reads it.

    Restrictions (ResourceSkuRestrictions): type Location means the subscription cannot have the
    size in the listed locations; type Zone, not in `restrictionInfo.zones` there. Capabilities
    come as strings: HyperVGenerations "V1,V2", TrustedLaunchDisabled "True",
    ConfidentialComputingType "SNP".
    """
    here = region.lower()
    zones = [
        zone
        for info in sku.location_info or ()
        if (info.location or "").lower() == here
        for zone in info.zones or ()
    ]
    location_reason = None
    zone_reason = None
    restricted: list[str] = []
    for restriction in sku.restrictions or ():
        info = restriction.restriction_info
        places = [v.lower() for v in restriction.values_property or ()] + [
            v.lower() for v in (info.locations if info is not None else None) or ()
        ]
        if here not in places:
            continue
        reason = _text(restriction.reason_code) or "restricted"
        if _text(restriction.type) == "Location":
            location_reason = reason
        elif _text(restriction.type) == "Zone":
            zone_reason = reason
            restricted += list((info.zones if info is not None else None) or ())
    capabilities = {c.name or "": c.value or "" for c in sku.capabilities or ()}
    generations = capabilities.get("HyperVGenerations", "")
    return VmSizeOffer(
        name=sku.name or "",
        region=region,
        zones=tuple(sorted(set(zones))),
        location_restriction=location_reason,
        restricted_zones=tuple(sorted(set(restricted))),
        zone_restriction=zone_reason,
        hyper_v_generations=tuple(g.strip() for g in generations.split(",") if g.strip()),
        trusted_launch=capabilities.get("TrustedLaunchDisabled", "False").lower() != "true",
        confidential=bool(capabilities.get("ConfidentialComputingType")),
    )


def _deletable_type(rid: str) -> str:
    """The type of a VM, NIC or disk id (those `begin_delete` deletes); bad input fails clearly."""
    parts = parse_resource_id(rid)
    found = f"{parts.get('namespace', '')}/{parts.get('type', '')}".lower()
    kind = next((t for t in DELETE_SECONDS if t.lower() == found), None)
    if kind is None:
        raise PermanentError(f"{rid!r} is not a VM, NIC or disk resource id")
    return kind


def _already_gone(log: ResponseLog) -> bool:
    """Whether a DELETE was answered 204: Azure had nothing to delete."""
    initial = log.last("DELETE")
    return initial is not None and initial.status_code == 204


def _hinted(run: CommandRun, response: HttpResponse) -> CommandRun:
    """The run, to be read again after Azure's Retry-After (or the expected time)."""
    delay = retry_after_seconds(response.headers)
    return dataclasses.replace(
        run, poll_after_seconds=EXPECTED_SECONDS["run command"] if delay is None else delay
    )


def _guest_check(body: Any) -> GuestCheck:
    """The verdict on a finished Run Command: did the guest echo the marker on stdout?"""
    result = compute.RunCommandResult(body)
    stdout, stderr = _streams(result.value or ())
    answered = any(line.strip() == GUEST_MARKER for line in stdout.splitlines())
    output = "\n".join(text for text in (stdout.strip(), stderr.strip()) if text)
    return GuestCheck(succeeded=answered, output=output[:1000])


def _streams(statuses: Iterable[compute.InstanceViewStatus]) -> tuple[str, str]:
    """(stdout, stderr) of a Run Command result, in either of the shapes Azure answers.

    Windows (RunPowerShellScript) gives one status per stream, `ComponentStatus/StdOut/succeeded`
    and `ComponentStatus/StdErr/succeeded` (the official example VirtualMachineRunCommand.json).
    Linux (RunShellScript) gives one `ProvisioningState/succeeded` status whose message holds
    both: "Enable succeeded: \n[stdout]\n...\n[stderr]\n..." (azure-cli issues #32286, #25948).
    """
    out: list[str] = []
    err: list[str] = []
    for status in statuses:
        code, message = (status.code or "").lower(), status.message or ""
        if code.startswith("componentstatus/stdout/"):
            out.append(message)
        elif code.startswith("componentstatus/stderr/"):
            err.append(message)
        elif "[stdout]\n" in message:
            streams = message.partition("[stdout]\n")[2]
            text, _, error = streams.partition("\n[stderr]\n")
            out.append(text)
            err.append(error)
        else:
            err.append(message)
    return "\n".join(out), "\n".join(err)


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
