// backupdr's custom roles. Built-in roles are too wide (Reader reads everything, Disk Snapshot
// Contributor and Virtual Machine Contributor write anywhere they are assigned), so each role
// lists exactly the operations the ComputeGateway adapter performs. Only the reader is assigned
// at subscription scope; the two writers are assigned per resource group by rbac-group.bicep.
targetScope = 'subscription'

param environmentName string
param principalId string

resource fleetReader 'Microsoft.Authorization/roleDefinitions@2022-04-01' = {
  name: guid(subscription().id, environmentName, 'backupdr-fleet-reader')
  properties: {
    roleName: 'backupdr fleet reader (${environmentName})'
    description: 'List VMs, disks and snapshots across the subscription, and poll the long-running operations the app started.'
    type: 'CustomRole'
    assignableScopes: [subscription().id]
    permissions: [
      {
        actions: [
          'Microsoft.Compute/virtualMachines/read'
          'Microsoft.Compute/disks/read'
          'Microsoft.Compute/snapshots/read'
          'Microsoft.Compute/locations/DiskOperations/read'
          'Microsoft.Compute/locations/operations/read'
          'Microsoft.Network/locations/operations/read'
          'Microsoft.Network/locations/operationResults/read'
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
    description: 'Create, copy (CopyStart) and delete snapshots in a backupdr backup resource group.'
    type: 'CustomRole'
    assignableScopes: [subscription().id]
    permissions: [
      {
        actions: [
          'Microsoft.Compute/snapshots/read'
          'Microsoft.Compute/snapshots/write'
          'Microsoft.Compute/snapshots/delete'
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
          'Microsoft.Compute/disks/read'
          'Microsoft.Compute/disks/write'
          'Microsoft.Compute/disks/delete'
          'Microsoft.Compute/virtualMachines/read'
          'Microsoft.Compute/virtualMachines/write'
          'Microsoft.Compute/virtualMachines/delete'
          'Microsoft.Compute/virtualMachines/instanceView/read'
          'Microsoft.Compute/virtualMachines/runCommand/action'
          'Microsoft.Network/networkInterfaces/read'
          'Microsoft.Network/networkInterfaces/write'
          'Microsoft.Network/networkInterfaces/delete'
          'Microsoft.Network/networkInterfaces/join/action'
          'Microsoft.Network/virtualNetworks/read'
          'Microsoft.Network/virtualNetworks/subnets/read'
          'Microsoft.Network/virtualNetworks/subnets/join/action'
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

output snapshotWriterRoleId string = snapshotWriter.id
output drTestOperatorRoleId string = drTestOperator.id
