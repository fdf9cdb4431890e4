// The Function App on a Flex Consumption plan (Linux, Python 3.11), running as the user-assigned
// identity. Every connection is identity-based: AzureWebJobsStorage by account name, the
// deployment package by identity, Application Insights with Entra auth. No keys, no secrets.
param name string
param planName string
param location string
param tags object
param identityId string
param identityClientId string
param storageAccountName string
param deploymentContainerName string
param applicationInsightsName string
@description('The app settings shared/settings.py reads.')
param appSettings object
@minValue(1)
param maximumInstanceCount int = 40
param instanceMemoryMB int = 2048

resource account 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource applicationInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

var platformSettings = {
  AzureWebJobsStorage__accountName: account.name
  AzureWebJobsStorage__credential: 'managedidentity'
  AzureWebJobsStorage__clientId: identityClientId
  // The connection string only says where to send; with local auth off, ingestion needs Entra.
  APPLICATIONINSIGHTS_CONNECTION_STRING: applicationInsights.properties.ConnectionString
  APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'ClientId=${identityClientId};Authorization=AAD'
}

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  name: planName
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    name: 'FC1'
    tier: 'FlexConsumption'
  }
  #checkov:skip=CKV_AZURE_225:Zone-redundant Flex Consumption exists only in some regions; a timer-driven app loses nothing in a zone outage (durable state is in storage, the next run catches up)
  properties: {
    reserved: true
  }
}

resource site 'Microsoft.Web/sites@2024-04-01' = {
  #checkov:skip=CKV_AZURE_222:The manual-backup and DR-test HTTP API must be reachable; it takes function keys over HTTPS only, and this template has no private network for callers
  #checkov:skip=CKV_AZURE_212:Flex Consumption scales from zero per trigger; there are no standing instances to fail over between
  #checkov:skip=CKV_AZURE_213:Flex Consumption has no App Service health check; the host's own liveness and the alerts on missed backup windows cover it
  #checkov:skip=CKV_AZURE_17:Client certificates do not fit the FUNCTION-key HTTP API and the timer triggers; callers authenticate with function keys over HTTPS
  name: name
  location: location
  tags: union(tags, { 'azd-service-name': 'api' })
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: { '${identityId}': {} }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    siteConfig: {
      minTlsVersion: '1.2'
      scmMinTlsVersion: '1.2'
      ftpsState: 'Disabled'
      http20Enabled: true
      appSettings: [for setting in items(union(appSettings, platformSettings)): {
        name: setting.key
        value: setting.value
      }]
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${account.properties.primaryEndpoints.blob}${deploymentContainerName}'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identityId
          }
        }
      }
      scaleAndConcurrency: {
        maximumInstanceCount: maximumInstanceCount
        instanceMemoryMB: instanceMemoryMB
      }
      runtime: {
        name: 'python'
        version: '3.11'
      }
    }
  }
}

// Publishing with a user name and password stays off: azd deploys with Entra ID.
resource ftpCredentials 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: site
  name: 'ftp'
  properties: { allow: false }
}

resource scmCredentials 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: site
  name: 'scm'
  properties: { allow: false }
}

output name string = site.name
