// One storage account for the Durable task hub (blobs, queues, tables), the Flex Consumption
// deployment package, and the app's catalog tables. Shared-key access is off: every caller signs
// in with Entra ID, so no connection string or key exists to leak.
param name string
param location string
param tags object
param deploymentContainerName string

// The catalog tables (shared/adapters/catalog.py TABLES); created here so the app needs data
// rights only.
var catalogTables = ['backups', 'replicationjobs', 'verifications', 'drtests', 'failovers', 'auditlog', 'claims', 'retention', 'latestbackups', 'boottimes', 'copytimes', 'inuse', 'nics']

resource account 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  #checkov:skip=CKV_AZURE_35:Flex Consumption without VNet integration reaches its storage over the public endpoint; access is Entra-only (shared keys off)
  #checkov:skip=CKV_AZURE_59:Same reason as CKV_AZURE_35: the Function App has no private network path in this template
  #checkov:skip=CKV_AZURE_206:The account holds the task hub and the catalog, which the app rebuilds from Azure; snapshots (the backups) live in Compute, not here
  name: name
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: { name: 'Standard_LRS' }
  properties: {
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    allowBlobPublicAccess: false
    allowSharedKeyAccess: false
    defaultToOAuthAuthentication: true
    allowCrossTenantReplication: false
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      defaultAction: 'Allow'
      bypass: 'AzureServices'
    }
    encryption: {
      keySource: 'Microsoft.Storage'
      requireInfrastructureEncryption: true
      services: {
        blob: { enabled: true }
        file: { enabled: true }
        queue: { enabled: true, keyType: 'Account' }
        table: { enabled: true, keyType: 'Account' }
      }
    }
  }
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: account
  name: 'default'
  properties: {
    deleteRetentionPolicy: { enabled: true, days: 7 }
    containerDeleteRetentionPolicy: { enabled: true, days: 7 }
  }
}

resource deploymentContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: deploymentContainerName
  properties: { publicAccess: 'None' }
}

resource tableService 'Microsoft.Storage/storageAccounts/tableServices@2023-05-01' = {
  parent: account
  name: 'default'
}

resource tables 'Microsoft.Storage/storageAccounts/tableServices/tables@2023-05-01' = [
  for table in catalogTables: {
    parent: tableService
    name: table
  }
]

output name string = account.name
output deploymentContainerName string = deploymentContainer.name
output blobEndpoint string = account.properties.primaryEndpoints.blob
output tableEndpoint string = 'https://${account.name}.table.${environment().suffixes.storage}'
