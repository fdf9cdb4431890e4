// The isolated network restored VMs join: a VNet that is never peered, one subnet, and an NSG
// that refuses every inbound connection from the internet. Restored VMs get no public IP; the
// guest check goes through Run Command (the VM agent), not through an inbound port.
// main.bicep also deploys it as each DR region's recovery network, which failovers bring VMs up on
// (its own group and address space; peer it to what the recovered VMs need).
param location string
param tags object
param vnetName string
param subnetName string
param addressPrefix string

resource nsg 'Microsoft.Network/networkSecurityGroups@2024-05-01' = {
  name: 'nsg-${vnetName}'
  location: location
  tags: tags
  properties: {
    securityRules: [
      {
        name: 'deny-internet-inbound'
        properties: {
          description: 'Restored copies of production VMs must not be reachable from the internet.'
          priority: 100
          direction: 'Inbound'
          access: 'Deny'
          protocol: '*'
          sourceAddressPrefix: 'Internet'
          sourcePortRange: '*'
          destinationAddressPrefix: '*'
          destinationPortRange: '*'
        }
      }
    ]
  }
}

resource vnet 'Microsoft.Network/virtualNetworks@2024-05-01' = {
  name: vnetName
  location: location
  tags: tags
  properties: {
    addressSpace: { addressPrefixes: [addressPrefix] }
    subnets: [
      {
        name: subnetName
        properties: {
          addressPrefix: addressPrefix
          networkSecurityGroup: { id: nsg.id }
        }
      }
    ]
  }
}
