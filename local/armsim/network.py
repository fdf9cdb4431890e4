"""Microsoft.Network: NICs on an existing subnet, VNets and subnets, network security groups
(PUT 201/200, Succeeded)."""

from __future__ import annotations

import copy
import ipaddress
from typing import Any

from local.armsim.errors import ArmError, bad_request
from local.armsim.faults import normalise_region
from local.armsim.lro import async_headers, delete_reply
from local.armsim.protocol import (
    NIC_TYPE,
    NSG_TYPE,
    VNET_TYPE,
    Reply,
    Request,
    ResourceId,
)
from local.armsim.state import Resource, World

SUBNET_TYPE = "Microsoft.Network/virtualNetworks/subnets"
# The rules Azure puts in every NSG, after the custom ones (priorities 100-4096), as an NSG GET
# lists them (the NetworkSecurityGroupGet example): (name, description, priority, direction,
# access, source, destination).
DEFAULT_SECURITY_RULES = (
    (
        "AllowVnetInBound",
        "Allow inbound traffic from all VMs in VNET",
        65000,
        "Inbound",
        "Allow",
        "VirtualNetwork",
        "VirtualNetwork",
    ),
    (
        "AllowAzureLoadBalancerInBound",
        "Allow inbound traffic from azure load balancer",
        65001,
        "Inbound",
        "Allow",
        "AzureLoadBalancer",
        "*",
    ),
    ("DenyAllInBound", "Deny all inbound traffic", 65500, "Inbound", "Deny", "*", "*"),
    (
        "AllowVnetOutBound",
        "Allow outbound traffic from all VMs to all VMs in VNET",
        65000,
        "Outbound",
        "Allow",
        "VirtualNetwork",
        "VirtualNetwork",
    ),
    (
        "AllowInternetOutBound",
        "Allow outbound traffic from all VMs to Internet",
        65001,
        "Outbound",
        "Allow",
        "*",
        "Internet",
    ),
    ("DenyAllOutBound", "Deny all outbound traffic", 65500, "Outbound", "Deny", "*", "*"),
)
_RULE_VALUES = {
    "direction": ("Inbound", "Outbound"),
    "access": ("Allow", "Deny"),
    "protocol": ("Tcp", "Udp", "Icmp", "Esp", "Ah", "*"),
}


def _ref(args: dict[str, str], type_: str) -> ResourceId:
    return ResourceId(args["sub"], args["rg"], type_, args["name"])


def _subnet(world: World, subnet_id: str) -> tuple[Resource, dict[str, Any]]:
    head, sep, subnet_name = subnet_id.rstrip("/").rpartition("/subnets/")
    vnet = world.find(head) if sep else None
    for subnet in (vnet.properties.get("subnets") or []) if vnet else []:
        if str(subnet.get("name", "")).lower() == subnet_name.lower():
            assert vnet is not None
            return vnet, subnet
    raise bad_request(
        f"Resource {subnet_id} referenced by the network interface was not found.",
        "InvalidResourceReference",
    )


def _prefix(subnet: dict[str, Any]) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    prefix = (subnet.get("properties") or {}).get("addressPrefix") or "10.0.0.0/24"
    return ipaddress.ip_network(prefix, strict=False)


def _holders(world: World, subnet: dict[str, Any], but: str = "") -> dict[str, str]:
    """The private addresses in use in the subnet's VNet's subscription, and the IP
    configuration holding each (those of NIC `but` aside)."""
    return {
        str(config.get("properties", {}).get("privateIPAddress")): str(config.get("id", ""))
        for nic in world.of_type(NIC_TYPE, str(subnet["id"]).split("/")[2])
        if nic.id.lower() != but.lower()
        for config in nic.properties.get("ipConfigurations") or []
        if str(config.get("properties", {}).get("subnet", {}).get("id", "")).lower()
        == str(subnet["id"]).lower()
    }


def _next_address(world: World, subnet: dict[str, Any], but: str = "") -> str:
    """The lowest free address of the subnet (Azure keeps the first four for itself)."""
    used = _holders(world, subnet, but)
    host = _prefix(subnet).network_address + 4
    while str(host) in used:
        host += 1
    return str(host)


def _check_static(
    world: World, subnet: dict[str, Any], config: dict[str, Any], nic_id: str
) -> None:
    """Refuse a static private address as Microsoft.Network does (400): missing, outside the
    subnet, in its reserved range (the first four and the last address), or held by another
    NIC's IP configuration."""
    props = config["properties"]
    address = props.get("privateIPAddress")
    if not address:
        raise bad_request(
            "Private IP address is required when privateIPAllocationMethod is Static in IP "
            f"configuration {config['id']}.",
            "PrivateIPAddressMissing",
        )
    network = _prefix(subnet)
    try:
        ip = ipaddress.ip_address(str(address))
    except ValueError:
        raise bad_request(
            f"IP address {address} in IP configuration {config['id']} is not valid.",
            "InvalidPrivateIPAddressFormat",
        ) from None
    if ip not in network:
        raise bad_request(
            f"Private static IP address {address} does not belong to the range of subnet prefix "
            f"{network}.",
            "PrivateIPAddressNotInSubnet",
        )
    if int(ip) - int(network.network_address) < 4 or ip == network.broadcast_address:
        raise bad_request(
            f"Private static IP address {address} falls within reserved IP range of subnet "
            f"prefix {network}.",
            "PrivateIPAddressInReservedRange",
        )
    holder = _holders(world, subnet, but=nic_id).get(str(ip))
    if holder:
        owner = holder.split("/ipConfigurations/")[0]
        raise bad_request(
            f"IP configuration {config['id']} is using the private IP address {address} which "
            f"is already allocated to resource {owner}.",
            "PrivateIPAddressIsAllocated",
        )


def seeded_nic(
    world: World,
    nic_id: str,
    subnet_id: str,
    *,
    location: str,
    vm_id: str,
    accelerated_networking: bool = False,
    private_ip: str | None = None,
) -> dict[str, Any]:
    """The document of a NIC a seeded VM was created with, as a NIC GET shows one (the
    NetworkInterfaces_CreateOrUpdate example's 200 body): one primary IPv4 configuration on an
    existing subnet, Dynamic on the next free address or Static on `private_ip`, attached to
    the VM."""
    _, subnet = _subnet(world, subnet_id)
    config: dict[str, Any] = {"id": f"{nic_id}/ipConfigurations/ipconfig1", "properties": {}}
    if private_ip is not None:
        config["properties"]["privateIPAddress"] = private_ip
        try:
            _check_static(world, subnet, config, nic_id)
        except ArmError as error:
            raise ValueError(error.message) from None
    return {
        "location": location,
        "properties": {
            "ipConfigurations": [
                {
                    "name": "ipconfig1",
                    "id": f"{nic_id}/ipConfigurations/ipconfig1",
                    "type": "Microsoft.Network/networkInterfaces/ipConfigurations",
                    "properties": {
                        "primary": True,
                        "privateIPAddress": private_ip or _next_address(world, subnet),
                        "privateIPAddressVersion": "IPv4",
                        "privateIPAllocationMethod": "Static" if private_ip else "Dynamic",
                        "subnet": {"id": str(subnet["id"])},
                    },
                }
            ],
            "dnsSettings": {"dnsServers": [], "appliedDnsServers": []},
            "enableAcceleratedNetworking": accelerated_networking,
            "enableIPForwarding": False,
            "vnetEncryptionSupported": False,
            "primary": True,
            "virtualMachine": {"id": vm_id},
        },
    }


def put_nic(world: World, request: Request, args: dict[str, str]) -> Reply:
    ref = _ref(args, NIC_TYPE)
    body = copy.deepcopy(request.json_object())
    existing = world.find(str(ref))
    group = world.group(ref.subscription, ref.resource_group)
    nic_id = str(ResourceId(group.subscription, group.name, NIC_TYPE, ref.name))
    configs = (body.get("properties") or {}).get("ipConfigurations") or []
    if not configs:
        raise bad_request("A network interface needs at least one IP configuration.")
    for index, config in enumerate(configs):
        if not config.get("name"):
            raise bad_request("Each IP configuration needs a name.")
        props = config.setdefault("properties", {})
        if index and "subnet" not in props:  # a secondary configuration shares the primary's
            props["subnet"] = dict(configs[0]["properties"]["subnet"])
        subnet_id = str((props.get("subnet") or {}).get("id", ""))
        _, subnet = _subnet(world, subnet_id)
        config["id"] = f"{nic_id}/ipConfigurations/{config['name']}"
        config.setdefault("type", "Microsoft.Network/networkInterfaces/ipConfigurations")
        props.setdefault("privateIPAllocationMethod", "Dynamic")
        props.setdefault("privateIPAddressVersion", "IPv4")
        props.setdefault("primary", index == 0)
        if str(props["privateIPAllocationMethod"]).lower() == "static":
            props["privateIPAllocationMethod"] = "Static"
            _check_static(world, subnet, config, nic_id)
        else:
            # Dynamic: the free address it names or has (a repeated PUT keeps it), else the
            # next free one.
            props["privateIPAllocationMethod"] = "Dynamic"
            given = props.get("privateIPAddress") or _address_of(
                existing, str(config["name"]), subnet_id
            )
            if not given or str(given) in _holders(world, subnet, but=nic_id):
                given = _next_address(world, subnet, but=nic_id)
            props["privateIPAddress"] = str(given)
    properties = body.setdefault("properties", {})
    properties.setdefault("dnsSettings", {}).setdefault("dnsServers", [])
    properties["dnsSettings"].setdefault("appliedDnsServers", [])
    properties.setdefault("enableIPForwarding", False)
    properties.setdefault("enableAcceleratedNetworking", False)
    properties.setdefault("vnetEncryptionSupported", False)
    if existing is not None:  # the same NIC: its create goes on, or it is done
        if "virtualMachine" in existing.properties:
            properties["virtualMachine"] = existing.properties["virtualMachine"]
        existing.body = body
        existing.body["location"] = existing.location or normalise_region(group.location)
        nic, status = existing, 200
        expected = None
        seconds = max(0.0, (existing.ready_at - world.now()).total_seconds())
    else:
        expected = world.durations.nic_seconds
        seconds = world.varied(expected, f"nic:{nic_id.lower()}")
        nic, status = world.new_resource(ref, body, seconds), 201
    operation = world.start_operation(
        ref.subscription,
        "Microsoft.Network",
        nic.location,
        request.api_version,
        seconds,
        expected_seconds=expected,
    )
    return Reply(status, world.render(nic), async_headers(request, world, operation))


def _address_of(nic: Resource | None, config_name: str, subnet_id: str) -> str | None:
    """The private address the NIC's IP configuration of that name has on that subnet."""
    for config in (nic.properties.get("ipConfigurations") or []) if nic else []:
        props = config.get("properties") or {}
        if (
            str(config.get("name", "")).lower() == config_name.lower()
            and str((props.get("subnet") or {}).get("id", "")).lower() == subnet_id.lower()
        ):
            return str(props.get("privateIPAddress") or "") or None
    return None


def render_network(world: World, resource: Resource) -> dict[str, Any]:
    """The document with provisioningState on it and on its sub-resources."""
    body = copy.deepcopy(resource.body)
    body.update(id=resource.id, name=resource.name, type=resource.type)
    properties = body.setdefault("properties", {})
    state = resource.provisioning_state(world.now())
    properties["provisioningState"] = state
    for child in [*properties.get("ipConfigurations", []), *properties.get("subnets", [])]:
        child.setdefault("properties", {})["provisioningState"] = state
    return body


def list_nics(world: World, request: Request, args: dict[str, str]) -> Reply:
    """NetworkInterfaces_ListAll (or List in a group): a page of NICs with a nextLink."""
    return world.list_reply(NIC_TYPE, request, args)


def get_network(type_: str) -> Any:
    def handler(world: World, request: Request, args: dict[str, str]) -> Reply:
        return Reply(200, world.render(world.get(_ref(args, type_))))

    return handler


def delete_nic(world: World, request: Request, args: dict[str, str]) -> Reply:
    ref = _ref(args, NIC_TYPE)
    world.group(ref.subscription, ref.resource_group)
    nic = world.find(str(ref))
    if nic is not None and nic.properties.get("virtualMachine"):
        owner = nic.properties["virtualMachine"].get("id")
        raise bad_request(f"Network interface {nic.id} is used by existing VM {owner}.", "NicInUse")
    return delete_reply(
        request, world, nic, "Microsoft.Network", world.durations.nic_delete_seconds
    )


def put_vnet(world: World, request: Request, args: dict[str, str]) -> Reply:
    ref = _ref(args, VNET_TYPE)
    body = copy.deepcopy(request.json_object())
    group = world.group(ref.subscription, ref.resource_group)
    vnet_id = str(ResourceId(group.subscription, group.name, VNET_TYPE, ref.name))
    properties = body.setdefault("properties", {})
    for subnet in properties.setdefault("subnets", []):
        if not subnet.get("name"):
            raise bad_request("Each subnet needs a name.")
        subnet["id"] = f"{vnet_id}/subnets/{subnet['name']}"
        subnet.setdefault("type", SUBNET_TYPE)
        nsg = (subnet.setdefault("properties", {}).get("networkSecurityGroup") or {}).get("id")
        if nsg and world.find(str(nsg)) is None:
            raise bad_request(
                f"Resource {nsg} referenced by resource {subnet['id']} was not found.",
                "InvalidResourceReference",
            )
    properties.setdefault("virtualNetworkPeerings", [])
    return _create_or_replace(world, request, ref, body)


def delete_vnet(world: World, request: Request, args: dict[str, str]) -> Reply:
    ref = _ref(args, VNET_TYPE)
    world.group(ref.subscription, ref.resource_group)
    vnet = world.find(str(ref))
    if vnet is not None:
        prefix = vnet.id.lower() + "/subnets/"
        for nic in world.of_type(NIC_TYPE, ref.subscription):
            for config in nic.properties.get("ipConfigurations") or []:
                subnet_id = str((config.get("properties") or {}).get("subnet", {}).get("id", ""))
                if subnet_id.lower().startswith(prefix):
                    raise bad_request(
                        f"Subnet {subnet_id} is in use by {nic.id} and cannot be deleted.",
                        "InUseSubnetCannotBeDeleted",
                    )
    return delete_reply(request, world, vnet, "Microsoft.Network", world.durations.vnet_seconds)


def get_subnet(world: World, request: Request, args: dict[str, str]) -> Reply:
    vnet = world.get(_ref(args, VNET_TYPE))
    for subnet in vnet.properties.get("subnets") or []:
        if str(subnet.get("name", "")).lower() == args["subnet"].lower():
            body = copy.deepcopy(subnet)
            body.setdefault("properties", {})["provisioningState"] = "Succeeded"
            prefix = f"{vnet.id}/subnets/{subnet['name']}".lower()
            body["properties"]["ipConfigurations"] = [
                {"id": config["id"]}
                for nic in world.of_type(NIC_TYPE, args["sub"])
                for config in nic.properties.get("ipConfigurations") or []
                if str(config.get("properties", {}).get("subnet", {}).get("id", "")).lower()
                == prefix
            ]
            return Reply(200, body)
    raise ArmError(404, "NotFound", f"Resource {vnet.id}/subnets/{args['subnet']} not found.")


def put_nsg(world: World, request: Request, args: dict[str, str]) -> Reply:
    """Create or replace an NSG's custom rules, refused as Microsoft.Network refuses them."""
    ref = _ref(args, NSG_TYPE)
    body = copy.deepcopy(request.json_object())
    world.group(ref.subscription, ref.resource_group)
    rules = body.setdefault("properties", {}).setdefault("securityRules", [])
    _check_rules(rules)
    return _create_or_replace(world, request, ref, body)


def _create_or_replace(
    world: World, request: Request, ref: ResourceId, body: dict[str, Any]
) -> Reply:
    """A Network PUT's answer: 201 for a new resource, 200 for a replaced one, with the
    operation to poll for either. A PUT replaces the whole resource, so it names its location
    (400 LocationRequired), and a resource stays in its region (400 InvalidResourceLocation)."""
    location = body.get("location")
    if not location:
        raise bad_request(
            "The location property is required for this definition.", "LocationRequired"
        )
    existing = world.find(str(ref))
    seconds = world.durations.vnet_seconds
    if existing is not None:
        if normalise_region(str(location)) != normalise_region(existing.location):
            raise bad_request(
                f"The resource '{ref.name}' already exists in location '{existing.location}' in "
                f"resource group '{ref.resource_group}'. A resource with the same name cannot be "
                f"created in location '{location}'. Please select a new resource name.",
                "InvalidResourceLocation",
            )
        existing.body = body
        resource, status = existing, 200
    else:
        resource, status = world.new_resource(ref, body, seconds), 201
    operation = world.start_operation(
        ref.subscription, "Microsoft.Network", resource.location, request.api_version, seconds
    )
    return Reply(status, world.render(resource), async_headers(request, world, operation))


def _check_rules(rules: Any) -> None:
    """400 for a rule Azure would not take: no name, a value outside its enumeration, a
    priority outside 100-4096 (SecurityRuleInvalidPriority), or the priority and direction of
    another rule (SecurityRuleConflict)."""
    if not isinstance(rules, list):
        raise bad_request("securityRules must be a list of security rules.")
    taken: dict[tuple[int, str], str] = {}
    for rule in rules:
        props = rule.get("properties") if isinstance(rule, dict) else None
        if not isinstance(props, dict) or not rule.get("name"):
            raise bad_request("Each security rule needs a name and properties.")
        for field, allowed in _RULE_VALUES.items():
            if str(props.get(field, "")).lower() not in {a.lower() for a in allowed}:
                raise bad_request(
                    f"Security rule {rule['name']}: {field} must be one of {', '.join(allowed)}."
                )
        priority = props.get("priority")
        if not isinstance(priority, int) or not 100 <= priority <= 4096:
            raise bad_request(
                f"Security rule has invalid Priority. Value provided: {priority} Allowed range "
                "100-4096.",
                "SecurityRuleInvalidPriority",
            )
        other = taken.setdefault((priority, str(props["direction"]).lower()), rule["name"])
        if other != rule["name"]:
            raise bad_request(
                f"Security rule {other} conflicts with rule {rule['name']}. Rules cannot have "
                "the same Priority and Direction. To learn more, see aka.ms/nsgrules.",
                "SecurityRuleConflict",
            )


def render_nsg(world: World, resource: Resource) -> dict[str, Any]:
    """An NSG as GET shows it: its rules with their ids, Azure's default rules, and the
    subnets it is associated with."""
    body = copy.deepcopy(resource.body)
    body.update(id=resource.id, name=resource.name, type=resource.type)
    properties = body.setdefault("properties", {})
    state = resource.provisioning_state(world.now())
    properties["provisioningState"] = state
    properties["securityRules"] = [
        _rule(resource.id, "securityRules", rule["name"], rule["properties"], state)
        for rule in properties.get("securityRules") or []
    ]
    properties["defaultSecurityRules"] = [
        _rule(
            resource.id,
            "defaultSecurityRules",
            name,
            {
                "description": description,
                "protocol": "*",
                "sourcePortRange": "*",
                "destinationPortRange": "*",
                "sourceAddressPrefix": source,
                "destinationAddressPrefix": destination,
                "access": access,
                "priority": priority,
                "direction": direction,
            },
            state,
        )
        for name, description, priority, direction, access, source, destination in (
            DEFAULT_SECURITY_RULES
        )
    ]
    subnets = _nsg_subnets(world, resource.id)
    if subnets:
        properties["subnets"] = [{"id": subnet_id} for subnet_id in subnets]
    return body


def _rule(
    nsg_id: str, kind: str, name: str, properties: dict[str, Any], state: str
) -> dict[str, Any]:
    return {
        "name": name,
        "id": f"{nsg_id}/{kind}/{name}",
        "type": f"{NSG_TYPE}/{kind}",
        "properties": {**properties, "provisioningState": state},
    }


def _nsg_subnets(world: World, nsg_id: str) -> list[str]:
    """The ids of the subnets whose properties name this NSG."""
    return [
        str(subnet["id"])
        for vnet in world.of_type(VNET_TYPE, nsg_id.split("/")[2])
        for subnet in vnet.properties.get("subnets") or []
        if str(
            ((subnet.get("properties") or {}).get("networkSecurityGroup") or {}).get("id", "")
        ).lower()
        == nsg_id.lower()
    ]


def delete_nsg(world: World, request: Request, args: dict[str, str]) -> Reply:
    ref = _ref(args, NSG_TYPE)
    world.group(ref.subscription, ref.resource_group)
    nsg = world.find(str(ref))
    users = _nsg_subnets(world, nsg.id) if nsg is not None else []
    if nsg is not None and users:
        raise bad_request(
            f"Network security group {nsg.id} cannot be deleted because it is in use by the "
            f"following resources: {', '.join(users)}. In order to delete the Network security "
            "group, remove the association with the resource(s).",
            "InUseNetworkSecurityGroupCannotBeDeleted",
        )
    return delete_reply(request, world, nsg, "Microsoft.Network", world.durations.vnet_seconds)
