// backupdr: one deployment per subscription (`azd up`). Creates the app's resource group (Function
// App, storage, monitoring), a backup group per region for snapshots and replicas, a DR-test group
// per region with an isolated network, a recovery group per DR region with the network failovers
// bring VMs up on, the app's least-privilege roles, the workbook and alerts.
targetScope = 'subscription'

@minLength(1)
@maxLength(64)
@description('azd environment name; seeds the resource token that makes names unique.')
param environmentName string

@minLength(1)
@description('Region of the app resource group and the Flex Consumption Function App.')
@metadata({ azd: { type: 'location' } })
param location string

@minLength(1)
@description('Regions whose VMs are backed up: each gets rg-backups-{region} and a DR-test group (verification disks).')
param backupRegions array

@minLength(1)
@description('Replication targets where DR tests run: each gets rg-backups-{region} (replicas) and rg-backupdr-drtest-{region}.')
param drTestRegions array

@description('Resource id of an action group the alerts notify; empty means alerts fire without notifying.')
param actionGroupId string = ''

@minValue(60)
@description('Recovery time target in seconds, used by the DR alert when a test carries no target of its own.')
param rtoTargetSeconds int = 3600

@minValue(60)
@description('Replication lag beyond which the replication alert fires, in seconds.')
param replicationLagTargetSeconds int = 14400

@description('Address space of each isolated DR-test VNet (never peered, so it may repeat across regions).')
param drTestAddressPrefix string = '10.250.0.0/24'

@description('Address space of each recovery VNet, where a failover brings VMs up (peer it or change it to fit your network).')
param recoveryAddressPrefix string = '10.251.0.0/24'

@description('Timer schedules (NCRONTAB, six fields, UTC).')
param fleetBackupSchedule string = '0 */15 * * * *'
param replicateSchedule string = '0 7,37 * * * *'
param verifySchedule string = '0 20 */6 * * *'
param drTestSchedule string = '0 0 3 * * *'
param sweeperSchedule string = '0 45 * * * *'
param purgeSchedule string = '0 30 4 * * *'

@minValue(1)
@description('Days a finished workflow instance stays in the task hub before the purge timer deletes it.')
param historyRetentionDays int = 30

@description('Days an expired backup stays restorable (soft-deleted) before it is purged; a shortened retention policy also waits this long.')
@minValue(1)
param softDeleteDays int = 14

@minValue(1)
@description('Manual backups allowed per VM per hour.')
param manualLimitPerHour int = 4

var resourceToken = toLower(uniqueString(subscription().id, environmentName, location))
var tags = { 'azd-env-name': environmentName }
// {region} is filled in by the app (shared/settings.py); the same templates name the groups here.
var backupGroupTemplate = 'rg-backups-{region}'
var drTestGroupTemplate = 'rg-backupdr-drtest-{region}'
var drTestVnetName = 'vnet-backupdr-drtest'
var drTestSubnetName = 'snet-restore'
var recoveryGroupTemplate = 'rg-backupdr-recovery-{region}'
var recoveryVnetName = 'vnet-backupdr-recovery'
var recoverySubnetName = 'snet-recovery'
// Every region in either list gets both groups: replicas land in the target's backup group,
// verification disks in the source region's DR-test group, DR tests in the target's.
var groupRegions = union(backupRegions, drTestRegions)

resource appGroup 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: 'rg-${environmentName}'
  location: location
  tags: tags
}

resource backupGroups 'Microsoft.Resources/resourceGroups@2024-03-01' = [
  for region in groupRegions: {
    name: replace(backupGroupTemplate, '{region}', region)
    location: region
    tags: union(tags, { 'managed-by': 'backupdr' })
  }
]

resource drTestGroups 'Microsoft.Resources/resourceGroups@2024-03-01' = [
  for region in groupRegions: {
    name: replace(drTestGroupTemplate, '{region}', region)
    location: region
    tags: union(tags, { 'managed-by': 'backupdr' })
  }
]

// A failover restores VMs into their DR region: only the DR regions get a recovery group.
resource recoveryGroups 'Microsoft.Resources/resourceGroups@2024-03-01' = [
  for region in drTestRegions: {
    name: replace(recoveryGroupTemplate, '{region}', region)
    location: region
    tags: union(tags, { 'managed-by': 'backupdr' })
  }
]

module identity 'app/identity.bicep' = {
  name: 'identity'
  scope: appGroup
  params: {
    name: 'id-backupdr-${resourceToken}'
    location: location
    tags: tags
  }
}

module monitoring 'app/monitoring.bicep' = {
  name: 'monitoring'
  scope: appGroup
  params: {
    logAnalyticsName: 'log-backupdr-${resourceToken}'
    applicationInsightsName: 'appi-backupdr-${resourceToken}'
    location: location
    tags: tags
  }
}

module storage 'app/storage.bicep' = {
  name: 'storage'
  scope: appGroup
  params: {
    name: 'stbackupdr${resourceToken}'
    location: location
    tags: tags
    deploymentContainerName: 'app-package-${resourceToken}'
  }
}

module dataRoles 'app/rbac-data.bicep' = {
  name: 'data-roles'
  scope: appGroup
  params: {
    principalId: identity.outputs.principalId
    storageAccountName: storage.outputs.name
    applicationInsightsName: monitoring.outputs.applicationInsightsName
  }
}

module roles 'app/roles.bicep' = {
  name: 'backupdr-roles-${resourceToken}'
  params: {
    environmentName: environmentName
    principalId: identity.outputs.principalId
  }
}

module backupGroupRoles 'app/rbac-group.bicep' = [
  for (region, i) in groupRegions: {
    name: 'backup-group-role-${region}'
    scope: backupGroups[i]
    params: {
      principalId: identity.outputs.principalId
      roleDefinitionId: roles.outputs.snapshotWriterRoleId
    }
  }
]

module drTestGroupRoles 'app/rbac-group.bicep' = [
  for (region, i) in groupRegions: {
    name: 'drtest-group-role-${region}'
    scope: drTestGroups[i]
    params: {
      principalId: identity.outputs.principalId
      roleDefinitionId: roles.outputs.drTestOperatorRoleId
    }
  }
]

module drTestNetworks 'app/drtest-network.bicep' = [
  for (region, i) in groupRegions: {
    name: 'drtest-network-${region}'
    scope: drTestGroups[i]
    params: {
      location: region
      tags: union(tags, { 'managed-by': 'backupdr' })
      vnetName: drTestVnetName
      subnetName: drTestSubnetName
      addressPrefix: drTestAddressPrefix
      isolated: true // a DR test's clone of a production VM must not reach production
    }
  }
]

module recoveryGroupRoles 'app/rbac-group.bicep' = [
  for (region, i) in drTestRegions: {
    name: 'recovery-group-role-${region}'
    scope: recoveryGroups[i]
    params: {
      principalId: identity.outputs.principalId
      roleDefinitionId: roles.outputs.recoveryOperatorRoleId
    }
  }
]

module recoveryNetworks 'app/drtest-network.bicep' = [
  for (region, i) in drTestRegions: {
    name: 'recovery-network-${region}'
    scope: recoveryGroups[i]
    params: {
      location: region
      tags: union(tags, { 'managed-by': 'backupdr' })
      vnetName: recoveryVnetName
      subnetName: recoverySubnetName
      addressPrefix: recoveryAddressPrefix
      isolated: false // failovers bring production VMs up here for good
    }
  }
]

module function 'app/function.bicep' = {
  name: 'function'
  scope: appGroup
  dependsOn: [dataRoles]
  params: {
    name: 'func-backupdr-${resourceToken}'
    planName: 'plan-backupdr-${resourceToken}'
    location: location
    tags: tags
    identityId: identity.outputs.id
    identityClientId: identity.outputs.clientId
    storageAccountName: storage.outputs.name
    deploymentContainerName: storage.outputs.deploymentContainerName
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    appSettings: {
      AZURE_SUBSCRIPTION_ID: subscription().subscriptionId
      AZURE_CLIENT_ID: identity.outputs.clientId
      BACKUPDR_CREDENTIAL: 'managed-identity'
      BACKUPDR_TABLES_ACCOUNT_URL: storage.outputs.tableEndpoint
      BACKUPDR_BACKUP_RESOURCE_GROUP: backupGroupTemplate
      BACKUPDR_DRTEST_RESOURCE_GROUP: drTestGroupTemplate
      BACKUPDR_DRTEST_SUBNET: '${drTestVnetName}/${drTestSubnetName}'
      BACKUPDR_RECOVERY_RESOURCE_GROUP: recoveryGroupTemplate
      BACKUPDR_RECOVERY_SUBNET: '${recoveryVnetName}/${recoverySubnetName}'
      BACKUPDR_TASK_HUB: 'backupdr'
      BACKUPDR_FLEET_BACKUP_SCHEDULE: fleetBackupSchedule
      BACKUPDR_REPLICATE_SCHEDULE: replicateSchedule
      BACKUPDR_VERIFY_SCHEDULE: verifySchedule
      BACKUPDR_DRTEST_SCHEDULE: drTestSchedule
      BACKUPDR_SWEEPER_SCHEDULE: sweeperSchedule
      BACKUPDR_PURGE_SCHEDULE: purgeSchedule
      BACKUPDR_HISTORY_RETENTION_DAYS: string(historyRetentionDays)
      BACKUPDR_SOFT_DELETE_DAYS: string(softDeleteDays)
      // The regions this deployment made groups in: a policy naming another is misconfigured.
      BACKUPDR_BACKUP_REGIONS: join(backupRegions, ',')
      BACKUPDR_DR_REGIONS: join(drTestRegions, ',')
      BACKUPDR_MANUAL_LIMIT_PER_HOUR: string(manualLimitPerHour)
      BACKUPDR_RTO_TARGET_SECONDS: string(rtoTargetSeconds)
      BACKUPDR_REPLICATION_LAG_TARGET_SECONDS: string(replicationLagTargetSeconds)
    }
  }
}

module alerts 'app/alerts.bicep' = {
  name: 'alerts'
  scope: appGroup
  params: {
    location: location
    tags: tags
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    actionGroupId: actionGroupId
    rtoTargetSeconds: rtoTargetSeconds
    replicationLagTargetSeconds: replicationLagTargetSeconds
  }
}

module workbook 'app/workbook.bicep' = {
  name: 'workbook'
  scope: appGroup
  params: {
    location: location
    tags: tags
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    nameSeed: resourceToken
  }
}

output AZURE_LOCATION string = location
output AZURE_TENANT_ID string = tenant().tenantId
output AZURE_RESOURCE_GROUP string = appGroup.name
output AZURE_FUNCTION_NAME string = function.outputs.name
output SERVICE_API_NAME string = function.outputs.name
output BACKUPDR_TABLES_ACCOUNT_URL string = storage.outputs.tableEndpoint
output APPLICATIONINSIGHTS_NAME string = monitoring.outputs.applicationInsightsName
