"""A local HTTPS stand-in for Azure Resource Manager that the unmodified azure-mgmt clients use.

    sim = ArmSimulator(clock=VirtualClock(start), fleet="local/fleets/tiny.json")
    with sim.serve() as server:      # server.url, server.ca_path (trust it: connection_verify)
        ...
    sim.clock.advance(60)            # creates complete on the virtual clock
    sim.add_fault(FaultRule(operation="snapshots.create", resource="*web-01*", count=2))

Served (api-versions exactly as the pinned SDKs send; others get 400 InvalidApiVersionParameter):
VMs list/get/PUT/PATCH/DELETE, instance view, Run Command; the Resource SKUs list; disks and
snapshots get/list/PUT/PATCH/DELETE and grant/revoke access; NICs, VNets, subnets, network
security groups (with Azure's default rules); resource groups; resources by tag; the Tags API.
Fault operation names and kinds are listed in `local.armsim.faults`. Admin endpoints: POST
/_admin/clock/advance {"seconds": N}, GET /_admin/clock, GET /_admin/bill, GET /_admin/requests,
POST /_admin/faults {FaultRule fields}.

Fleet file (JSON):

    {"subscriptions": [{
        "id": "00000000-0000-0000-0000-000000000001",
        "resource_groups": [
            {"name": "rg-app-eastus", "region": "eastus", "tags": {}},
            {"name": "rg-backups-eastus", "region": "eastus"},
            {"name": "rg-backupdr-drtest-westus2", "region": "westus2",
             "vnets": [{"name": "vnet-backupdr-drtest", "address_prefix": "10.90.0.0/16",
                        "subnets": [{"name": "snet-restore", "address_prefix": "10.90.1.0/24",
                                     "isolated": true}]}]}
        ],
        "vms": [
            {"name": "web-01", "resource_group": "rg-app-eastus", "size": "Standard_D2s_v5",
             "os_type": "Linux", "zone": "1", "tags": {"backup-policy": "daily=7"},
             "os_disk": {"size_gb": 30, "sku": "Premium_LRS", "change_gib_per_day": 0.5},
             "data_disks": [{"lun": 0, "size_gb": 128, "sku": "Premium_LRS",
                             "change_gib_per_day": 4.0}]}
        ]}]}

A subnet with "isolated" is infra's DR-test network module (infra/app/drtest-network.bicep)
deployed with `isolated` true (a DR-test network) or false (a recovery network): its NSG (made
in its group) and its properties (defaultOutboundAccess) are evaluated from the Bicep; a subnet
without it has no NSG. VNets and subnets take no other keys.
A VM takes its group's region unless it names its own "region"; "zone", "tags" and "data_disks" are
optional, and so are "security_type" (Standard, TrustedLaunch, ConfidentialVM; with "secure_boot"
and "vtpm", default true) and "hyper_v_generation" (V1, V2: the default). A subscription's
"sku_restrictions": [{"size", "region", "zones"?, "reason"?}] make a VM size unavailable to it in
a region (or in some zones), as the Resource SKUs list and VM creates then show; sizes are those of
`local.armsim.skus`. Each VM gets disks `{vm}-osdisk` / `{vm}-data{lun}` and a NIC `{vm}-nic` in
its group, on "subnet" ("vnet/subnet" of its group, or a subnet id; it must exist): by default the
group's first subnet, or in a group with no VNet the portal's `{group}-vnet`/`default`
(10.0.0.0/24), which is then made. Optional "accelerated_networking" (the NIC's), "private_ip"
(a Static address in the subnet; default Dynamic, the next free one), "license_type" and
"boot_diagnostics" (true: on, managed storage; or the storage account's blob URI) show on the NIC
and VM as Azure has them. A NIC PUT with a Static address is refused as Microsoft.Network refuses
it (400 PrivateIPAddressMissing, PrivateIPAddressNotInSubnet, PrivateIPAddressInReservedRange,
PrivateIPAddressIsAllocated); a VM whose NIC has accelerated networking on a size whose SKU
capabilities lack it, 400 VMSizeIsNotPermittedToEnableAcceleratedNetworking.
Incremental snapshots are billed for min(size, change_gib_per_day x days since the disk's previous
snapshot); a disk's first snapshot is billed at its full size. A deleted incremental snapshot's
blocks are billed to the next snapshot of its disk in its region from then on (up to the disk's
size), so deleting old backups saves only what no later one needs.

Disk specs ("os_disk", each of "data_disks") take "size_gb", "sku", "change_gib_per_day",
"caching" (None, ReadOnly, ReadWrite; default ReadWrite on the OS disk, None on data disks),
"content" (the synthetic image its read SAS serves: table, partitions, used_fraction,
churn_per_day and a fault; local/armsim/diskimage.py has the schema and the defaults) and, on
data disks, "lun"; other keys are refused. Two kinds of disk Azure cannot snapshot:
- "ephemeral": true (OS disk only, optional "placement": CacheDisk (default), ResourceDisk or
  NvmeDisk): the VM shows `diffDiskSettings: {"option": "Local", "placement": ...}`, caching
  ReadOnly and a `managedDisk` id with no disk behind it (GET answers 404), so a snapshot of it is
  refused with 404 NotFound, as DiskRP refuses a missing source.
- "unmanaged": true (every disk of the VM, since Azure mixes no VHDs with managed disks): the VM
  shows `vhd: {"uri": "https://<account>.blob.core.windows.net/vhds/<disk>.vhd"}` and no
  `managedDisk`; there is no disk resource to copy.
"""

from local.armsim.durations import Durations
from local.armsim.faults import FaultRule
from local.armsim.fleet import FleetError, load_fleet
from local.armsim.server import ArmServer
from local.armsim.simulator import ArmSimulator
from local.armsim.state import RequestRecord

__all__ = [
    "ArmServer",
    "ArmSimulator",
    "Durations",
    "FaultRule",
    "FleetError",
    "RequestRecord",
    "load_fleet",
]
