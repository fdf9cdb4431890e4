// The app's user-assigned identity: it outlives the Function App, so role assignments survive a
// redeploy, and it is the only principal that holds backupdr's rights.
param name string
param location string
param tags object

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: name
  location: location
  tags: tags
}

output id string = identity.id
output principalId string = identity.properties.principalId
output clientId string = identity.properties.clientId
