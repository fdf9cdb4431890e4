"""Whether a subnet is isolated enough to boot a DR test's copy of a production VM on.

The copy has the production VM's configuration and credentials: on a network that lets it out,
it could write to production queues, databases and APIs as the VM it copies. So its subnet must
give no default outbound access, and its NSG's outbound rules, taken by priority (custom and
default alike, as Azure evaluates them), must deny everything before they allow anything but
WireServer, 168.63.129.16: the VM agent and Run Command (the DR test's guest check) talk to the
platform there (learn.microsoft.com/azure/virtual-network/what-is-ip-address-168-63-129-16),
which infra/app/drtest-network.bicep allows and Azure does not subject to NSG rules anyway.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

ANY = "*"
WIRESERVER = frozenset({"168.63.129.16", "168.63.129.16/32"})


@dataclass(frozen=True)
class SecurityRule:
    """One NSG rule as Azure reports it, custom or default."""

    name: str
    priority: int
    direction: str  # Inbound | Outbound
    access: str  # Allow | Deny
    protocol: str  # Tcp, Udp, Icmp, Esp, Ah or *
    sources: tuple[str, ...]  # address prefixes, service tags or application security groups
    source_ports: tuple[str, ...]
    destinations: tuple[str, ...]
    destination_ports: tuple[str, ...]

    @property
    def outbound(self) -> bool:
        return self.direction.lower() == "outbound"

    @property
    def denies_everything(self) -> bool:
        """A Deny of every protocol from anywhere to anywhere on every port."""
        return self.access.lower() == "deny" and all(
            fields == (ANY,)
            for fields in (
                (self.protocol,),
                self.sources,
                self.source_ports,
                self.destinations,
                self.destination_ports,
            )
        )

    @property
    def lets_out(self) -> bool:
        """An Allow to anything but WireServer (a rule naming no destination counts, too)."""
        return self.access.lower() == "allow" and not (
            self.destinations and set(self.destinations) <= WIRESERVER
        )


@dataclass(frozen=True)
class SubnetEgress:
    """What governs traffic leaving a subnet."""

    default_outbound_access: bool | None  # None: not set, which Azure has long taken as on
    nsg: str | None  # the name of the subnet's NSG, None when it has none
    rules: Sequence[SecurityRule] = ()  # the NSG's rules, custom and default


def isolation_problem(subnet: SubnetEgress) -> str | None:
    """Why a VM on the subnet could reach more than the platform; None when it cannot."""
    if subnet.default_outbound_access is not False:
        setting = "not set" if subnet.default_outbound_access is None else "true"
        return f"it has default outbound access (defaultOutboundAccess {setting}, not false)"
    if subnet.nsg is None:
        return "it has no network security group to deny outbound traffic"
    for rule in sorted((r for r in subnet.rules if r.outbound), key=lambda r: r.priority):
        if rule.denies_everything:
            return None
        if rule.lets_out:
            to = ", ".join(rule.destinations) or "no destination named"
            return (
                f"rule {rule.name} (priority {rule.priority}) of NSG {subnet.nsg} allows outbound "
                f"traffic to {to} before any rule denies all of it"
            )
    return f"no outbound rule of NSG {subnet.nsg} denies all traffic"
