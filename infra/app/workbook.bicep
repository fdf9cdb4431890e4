// The "backupdr fleet health" workbook, pinned to the app's Application Insights so its queries
// run there. Its queries live in infra/monitor/fleet-health.workbook.json.
param location string
param tags object
param applicationInsightsName string
param nameSeed string

resource applicationInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

resource workbook 'Microsoft.Insights/workbooks@2023-06-01' = {
  name: guid(resourceGroup().id, nameSeed, 'backupdr-fleet-health')
  location: location
  tags: tags
  kind: 'shared'
  properties: {
    displayName: 'backupdr fleet health'
    category: 'workbook'
    sourceId: applicationInsights.id
    serializedData: loadTextContent('../monitor/fleet-health.workbook.json')
  }
}
