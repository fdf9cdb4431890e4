// backupdr's custom roles. Built-in roles are too wide (Reader reads everything, Disk Snapshot
// Contributor and Virtual Machine Contributor write anywhere they are assigned), so each role
// lists exactly the operations the ComputeGateway adapter performs and the linked actions Azure
// checks on the resources those operations name. The reader and the snapshot source are assigned
// at subscription scope; the three writers per resource group by rbac-group.bicep.
targetScope = 'subscription'

param environmentName string
param principalId string

resource fleetReader 'Microsoft.Authorization/roleDefinitions@2022-04-01' = {
  name: guid(subscription().id, environmentName, 'backupdr-fleet-reader')
  properties: {
    roleName: 'backupdr fleet reader (${environmentName})'
    description: 'List VMs, read their NICs, list snapshots and the VM sizes offered across the subscription, and poll the long-running operations the app started.'
    type: 'CustomRole'
    assignableScopes: [subscription().id]
    permissions: [
      {
        actions: [
          'Microsoft.Compute/virtualMachines/read'
          // each backup records the VM's NICs (subnet, private IP allocation, accelerated
          // networking), so a VM that is gone can be rebuilt on its network
          'Microsoft.Network/networkInterfaces/read'
          // the fleet status lists every snapshot in the subscription, to find unknown ones
          'Microsoft.Compute/snapshots/read'
          // the DR test's pre-flight: is the VM size offered to us in the test region (Resource SKUs)
          'Microsoft.Compute/skus/read'
          // polls: Run Command (operations) and snapshot deletes (DiskRP answers DiskOperations)
          'Microsoft.Compute/locations/operations/read'
          'Microsoft.Compute/locations/DiskOperations/read'
        ]
        notActions: []
        dataActions: []
        notDataActions: []
      }
    ]
  }
}

// Azure authorizes a snapshot of a disk as a read-access grant on that disk (linked access
// check on the snapshot's creationData.sourceResourceId), and the VMs' disks may be in any group.
resource snapshotSource 'Microsoft.Authorization/roleDefinitions@2022-04-01' = {
  name: guid(subscription().id, environmentName, 'backupdr-snapshot-source')
  properties: {
    roleName: 'backupdr snapshot source (${environmentName})'
    description: 'Take incremental snapshots of the managed disks of VMs anywhere in the subscription (the linked disks/beginGetAccess/action).'
    type: 'CustomRole'
    assignableScopes: [subscription().id]
    permissions: [
      {
        actions: [
          'Microsoft.Compute/disks/beginGetAccess/action'
        ]
        notActions: []
        dataActions: []
        notDataActions: []
      }
    ]
  }
}

resource snapshotWriter 'Microsoft.Authorization/roleDefinitions@2022-04-01' = {
  name: guid(subscription().id, environmentName, 'backupdr-snapshot-writer')
  properties: {
    roleName: 'backupdr snapshot writer (${environmentName})'
    description: 'Create, copy (CopyStart) and delete snapshots in a backupdr backup resource group, and use them as the source of copies and restored disks.'
    type: 'CustomRole'
    assignableScopes: [subscription().id]
    permissions: [
      {
        actions: [
          'Microsoft.Compute/snapshots/write'
          'Microsoft.Compute/snapshots/delete'
          // linked: a copy (CopyStart) or a restored disk reads its source snapshot, which is here;
          // and a backup's change since the previous one is a page-range diff through read SASes
          'Microsoft.Compute/snapshots/beginGetAccess/action'
          'Microsoft.Compute/snapshots/endGetAccess/action'
        ]
        notActions: []
        dataActions: []
        notDataActions: []
      }
    ]
  }
}

resource drTestOperator 'Microsoft.Authorization/roleDefinitions@2022-04-01' = {
  name: guid(subscription().id, environmentName, 'backupdr-drtest-operator')
  properties: {
    roleName: 'backupdr DR-test operator (${environmentName})'
    description: 'Restore disks, create a NIC and a VM, run the guest check and clean up, in a backupdr DR-test resource group.'
    type: 'CustomRole'
    assignableScopes: [subscription().id]
    permissions: [
      {
        actions: [
          'Microsoft.Resources/subscriptions/resourceGroups/read' // restore pre-flight: the group exists
          'Microsoft.Network/virtualNetworks/read' // restore pre-flight: the subnet and its region
          // restore pre-flight: a DR test's subnet is isolated (its NSG's outbound rules)
          'Microsoft.Network/networkSecurityGroups/read'
          'Microsoft.Compute/disks/read'
          'Microsoft.Compute/disks/write' // also linked: the VM attaches the restored disks
          'Microsoft.Compute/disks/delete'
          // verification reads a test disk through a read SAS (its beginGetAccess: the snapshot
          // source role, at subscription scope); the SAS is revoked here
          'Microsoft.Compute/disks/endGetAccess/action'
          'Microsoft.Compute/virtualMachines/write'
          'Microsoft.Compute/virtualMachines/delete'
          'Microsoft.Compute/virtualMachines/instanceView/read'
          'Microsoft.Compute/virtualMachines/runCommand/action'
          // (reading the NIC: the fleet reader, at subscription scope)
          'Microsoft.Network/networkInterfaces/write'
          'Microsoft.Network/networkInterfaces/delete'
          'Microsoft.Network/networkInterfaces/join/action' // linked: the VM's NIC
          'Microsoft.Network/virtualNetworks/subnets/join/action' // linked: the NIC's subnet
          'Microsoft.Resources/subscriptions/resourceGroups/resources/read'
        ]
        notActions: []
        dataActions: []
        notDataActions: []
      }
    ]
  }
}

// A failover restores VMs for good into a recovery group: the DR-test operator's rights there,
// and the two reads of the restore's pre-flight (the group exists, the subnet is in the region).
resource recoveryOperator 'Microsoft.Authorization/roleDefinitions@2022-04-01' = {
  name: guid(subscription().id, environmentName, 'backupdr-recovery-operator')
  properties: {
    roleName: 'backupdr recovery operator (${environmentName})'
    description: 'Fail VMs over: restore disks, create a NIC and a VM, run the guest check and, after a failure, clean up, in a backupdr recovery resource group.'
    type: 'CustomRole'
    assignableScopes: [subscription().id]
    permissions: [
      {
        actions: [
          'Microsoft.Resources/subscriptions/resourceGroups/read' // pre-flight: the group exists
          'Microsoft.Network/virtualNetworks/read' // pre-flight: the subnet and its region
          'Microsoft.Compute/disks/read'
          'Microsoft.Compute/disks/write' // also linked: the VM attaches the restored disks
          'Microsoft.Compute/disks/delete'
          'Microsoft.Compute/virtualMachines/write'
          'Microsoft.Compute/virtualMachines/delete'
          'Microsoft.Compute/virtualMachines/instanceView/read'
          'Microsoft.Compute/virtualMachines/runCommand/action'
          // (reading the NIC: the fleet reader, at subscription scope)
          'Microsoft.Network/networkInterfaces/write'
          'Microsoft.Network/networkInterfaces/delete'
          'Microsoft.Network/networkInterfaces/join/action' // linked: the VM's NIC
          'Microsoft.Network/virtualNetworks/subnets/join/action' // linked: the NIC's subnet
          'Microsoft.Resources/subscriptions/resourceGroups/resources/read'
        ]
        notActions: []
        dataActions: []
        notDataActions: []
      }
    ]
  }
}

resource fleetReaderAssignment 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(subscription().id, principalId, fleetReader.id)
  properties: {
    roleDefinitionId: fleetReader.id
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

resource snapshotSourceAssignment 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(subscription().id, principalId, snapshotSource.id)
  properties: {
    roleDefinitionId: snapshotSource.id
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

output snapshotWriterRoleId string = snapshotWriter.id
output drTestOperatorRoleId string = drTestOperator.id
output recoveryOperatorRoleId string = recoveryOperator.id
