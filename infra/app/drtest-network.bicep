// The network restored VMs join: a VNet that is never peered, one subnet, and an NSG that refuses
// every inbound connection from the internet. Restored VMs get no public IP; the guest check goes
// through Run Command (the VM agent), not through an inbound port.
// Deployed `isolated` as each region's DR-test network: a DR test boots a copy of a production VM
// (its configuration, its credentials), which must not reach production endpoints while it runs.
// So the subnet has no default outbound access and the NSG denies all outbound traffic but the
// VM agent's to the platform (isolationRules); the app refuses to restore a DR test onto a subnet
// that is not isolated this way (shared/domain/isolation.py).
// main.bicep also deploys it, not isolated, as each DR region's recovery network, which failovers
// bring VMs up on for good (its own group and address space; peer it to what the VMs need).
param location string
param tags object
param vnetName string
param subnetName string
param addressPrefix string
@description('A DR-test network: no default outbound access; outbound traffic denied but to the VM agent endpoint.')
param isolated bool

var inboundRules = [
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

// The VM agent and Run Command talk to the platform at WireServer, 168.63.129.16: the agent
// needs TCP 80 and 32526, and with a supported agent extension packages (Run Command is one) and
// their status go through its HostGAPlugin, no Azure Storage needed: "Ports 80, 443, and 32526
// are required" (learn.microsoft.com/azure/virtual-machines/extensions/features-linux and
// features-windows, "Network access"). That traffic "isn't subject to the configured network
// security groups" (learn.microsoft.com/azure/virtual-network/what-is-ip-address-168-63-129-16),
// nor are DHCP, DNS and IMDS (168.63.129.16, 169.254.169.254: learn.microsoft.com/azure/
// virtual-network/network-security-groups-overview, "Azure platform considerations"); the Allow
// states what the guest check needs, and keeps it working should NSG rules ever apply to it.
// Everything else leaving the subnet, the VNet included, is denied.
var isolationRules = [
  {
    name: 'allow-vm-agent-outbound'
    properties: {
      description: 'The VM agent and Run Command (the guest check) reach WireServer, 168.63.129.16.'
      priority: 100
      direction: 'Outbound'
      access: 'Allow'
      protocol: 'Tcp'
      sourceAddressPrefix: '*'
      sourcePortRange: '*'
      destinationAddressPrefix: '168.63.129.16'
      destinationPortRanges: ['80', '443', '32526']
    }
  }
  {
    name: 'deny-all-outbound'
    properties: {
      description: 'A copy of a production VM must not reach production endpoints while it runs.'
      priority: 4096
      direction: 'Outbound'
      access: 'Deny'
      protocol: '*'
      sourceAddressPrefix: '*'
      sourcePortRange: '*'
      destinationAddressPrefix: '*'
      destinationPortRange: '*'
    }
  }
]

resource nsg 'Microsoft.Network/networkSecurityGroups@2024-05-01' = {
  name: 'nsg-${vnetName}'
  location: location
  tags: tags
  properties: {
    securityRules: isolated ? concat(inboundRules, isolationRules) : inboundRules
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
          // Isolated: no implicit public address to reach the internet through (the VMs get no
          // public IP either); a recovery network keeps it for the production VMs it runs.
          defaultOutboundAccess: !isolated
        }
      }
    ]
  }
}
