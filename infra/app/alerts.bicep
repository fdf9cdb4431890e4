// Scheduled-query alert rules over the app's customEvents (see shared/adapters/telemetry.py for
// the event and field names; tests/unit/test_infra_telemetry_names.py holds the queries to them).
// Each rule splits by VM, so one alert names one VM.
param location string
param tags object
param applicationInsightsName string
@description('Action group to notify; empty: alerts fire in the portal only.')
param actionGroupId string
param rtoTargetSeconds int
param replicationLagTargetSeconds int

resource applicationInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

var replicationQuery = loadTextContent('../monitor/alerts/replication-failed-or-lagging.kql')
var drTestQuery = loadTextContent('../monitor/alerts/drtest-failed-or-slow.kql')

var rules = [
  {
    name: 'backupdr-backup-window-missed'
    description: 'A protected VM missed its backup window (RPO beyond its policy) or has an invalid backup-policy tag.'
    severity: 1
    frequency: 'PT15M'
    window: 'PT30M'
    query: loadTextContent('../monitor/alerts/backup-window-missed.kql')
  }
  {
    name: 'backupdr-backup-failed'
    description: 'A backup of a VM failed: its snapshots could not be taken, or the VM could not be read.'
    severity: 2
    frequency: 'PT15M'
    window: 'PT15M'
    query: loadTextContent('../monitor/alerts/backup-failed.kql')
  }
  {
    name: 'backupdr-replication-failed-or-lagging'
    description: 'A cross-region copy failed or completed beyond the replication lag target.'
    severity: 2
    frequency: 'PT15M'
    window: 'PT15M'
    query: replace(replicationQuery, '__REPLICATION_LAG_TARGET_SECONDS__', string(replicationLagTargetSeconds))
  }
  {
    name: 'backupdr-verification-failed'
    description: 'A backup failed verification: its test disk did not restore healthy at the snapshot size.'
    severity: 2
    frequency: 'PT1H'
    window: 'PT1H'
    query: loadTextContent('../monitor/alerts/verification-failed.kql')
  }
  {
    name: 'backupdr-churn-anomaly'
    description: 'A backup changed far more than its VM usually does, or its data reads as random (ransomware pattern); earlier backups are held.'
    severity: 1
    frequency: 'PT15M'
    window: 'PT15M'
    query: loadTextContent('../monitor/alerts/churn-anomaly.kql')
  }
  {
    name: 'backupdr-retention-failed'
    description: 'Retention could not run for a VM: its expired backups are not pruned until it does.'
    severity: 2
    frequency: 'PT1H'
    window: 'PT1H'
    query: loadTextContent('../monitor/alerts/retention-failed.kql')
  }
  {
    name: 'backupdr-drtest-failed-or-slow'
    description: 'A DR test failed or its RTO exceeded the target.'
    severity: 1
    frequency: 'PT1H'
    window: 'PT1H'
    query: replace(drTestQuery, '__RTO_TARGET_SECONDS__', string(rtoTargetSeconds))
  }
]

resource alertRules 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = [
  for rule in rules: {
    name: rule.name
    location: location
    tags: tags
    properties: {
      displayName: rule.name
      description: rule.description
      severity: rule.severity
      enabled: true
      scopes: [applicationInsights.id]
      evaluationFrequency: rule.frequency
      windowSize: rule.window
      autoMitigate: true
      criteria: {
        allOf: [
          {
            query: rule.query
            timeAggregation: 'Count'
            operator: 'GreaterThan'
            threshold: 0
            dimensions: [
              {
                name: 'vm'
                operator: 'Include'
                values: ['*']
              }
            ]
            failingPeriods: {
              numberOfEvaluationPeriods: 1
              minFailingPeriodsToAlert: 1
            }
          }
        ]
      }
      actions: {
        actionGroups: empty(actionGroupId) ? [] : [actionGroupId]
      }
    }
  }
]
