"""The host side of the seed's "Kubernetes IPv6 host requirements" and Felix's
``FELIX_IPFORWARDING``: forwarding on, a global IPv6 address, a default IPv6 route.

Everything here acts on the agent's own network namespace only.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tortie.dataplane import sysctl
from tortie.node.hostaddrs import HostAddress, has_default_route, host_addresses

TYPE_CHECKING = False
if TYPE_CHECKING:
    import logging
    from typing import Protocol

    from tortie.dataplane.vxlan import ApplyResult
    from tortie.node.vxlan import VxlanState

    class VxlanApplier(Protocol):
        def apply(self, state: VxlanState) -> ApplyResult: ...

    class NatApplier(Protocol):
        def apply(self, text: str, force: bool = False) -> bool: ...


@dataclass
class Host:
    """The running host: what startup reads and the one thing it writes (forwarding)."""

    def addresses(self) -> list[HostAddress]:
        return host_addresses()

    def has_default_route(self, version: int) -> bool:
        return has_default_route(version)

    def forwarding(self, version: int) -> str | None:
        return sysctl.read("ipv4/ip_forward" if version == 4 else "ipv6/conf/all/forwarding")

    def enable_forwarding(self, version: int) -> None:
        sysctl.write("ipv4/ip_forward" if version == 4 else "ipv6/conf/all/forwarding", "1")

    def links(self) -> list[tuple[str, int]]:
        """(interface, MTU) of the host's interfaces."""
        from tortie.node.encapsulation import host_links

        return host_links()

    def vxlan(self) -> VxlanApplier:
        """What programs the VXLAN devices, neighbours and routes of this host."""
        from tortie.dataplane.vxlan import VxlanDataplane

        return VxlanDataplane()

    def nat(self) -> NatApplier:
        """What programs tortie's natOutgoing tables on this host (``nft``)."""
        from tortie.dataplane.nat import NatTables

        return NatTables()


@dataclass
class RecordingVxlan:
    """A VXLAN dataplane for unit tests: keeps every state it is asked to apply."""

    states: list[VxlanState] = field(default_factory=list)

    def apply(self, state: VxlanState) -> ApplyResult:
        from tortie.dataplane.vxlan import ApplyResult

        self.states.append(state)
        return ApplyResult()


@dataclass
class RecordingNat:
    """natOutgoing tables for unit tests: keeps every script it is asked to apply."""

    scripts: list[str] = field(default_factory=list)

    def apply(self, text: str, force: bool = False) -> bool:
        changed = not self.scripts or self.scripts[-1] != text
        self.scripts.append(text)
        return changed


@dataclass
class FakeHost(Host):
    """A host for unit tests: given addresses and routes, forwarding recorded."""

    given: list[HostAddress] = field(default_factory=list)
    default_routes: set[int] = field(default_factory=set)
    enabled: dict[int, str] = field(default_factory=dict)
    mtus: list[tuple[str, int]] = field(default_factory=lambda: [("eth0", 1500)])
    recorded_vxlan: RecordingVxlan = field(default_factory=RecordingVxlan)
    recorded_nat: RecordingNat = field(default_factory=RecordingNat)

    def addresses(self) -> list[HostAddress]:
        return list(self.given)

    def has_default_route(self, version: int) -> bool:
        return version in self.default_routes

    def forwarding(self, version: int) -> str | None:
        return self.enabled.get(version, "0")

    def enable_forwarding(self, version: int) -> None:
        self.enabled[version] = "1"

    def links(self) -> list[tuple[str, int]]:
        return list(self.mtus)

    def vxlan(self) -> VxlanApplier:
        return self.recorded_vxlan

    def nat(self) -> NatApplier:
        return self.recorded_nat


def prepare(
    host: Host, ip_forwarding: bool, ipv4: bool, ipv6: bool, log: logging.Logger
) -> list[str]:
    """Turn forwarding on as Felix does and check the IPv6 prerequisites; returns the
    warnings (also logged)."""
    warnings = []
    if ip_forwarding:
        for version, wanted in ((4, True), (6, ipv6)):
            if not wanted or host.forwarding(version) == "1":
                continue
            host.enable_forwarding(version)
            name = "net.ipv4.ip_forward" if version == 4 else "net.ipv6.conf.all.forwarding"
            log.info("enabled %s=1 (FELIX_IPFORWARDING=Enabled)", name)
    elif ipv4 or ipv6:
        for version in (4, 6) if ipv6 else (4,):
            if host.forwarding(version) != "1":
                warnings.append(
                    f"IPv{version} forwarding is off and FELIX_IPFORWARDING=Disabled: pods "
                    "cannot reach other hosts; enable forwarding or unset FELIX_IPFORWARDING"
                )
    if ipv6 and not host.has_default_route(6):
        warnings.append(
            "no default IPv6 route on this host: pods still reach pods on other nodes "
            "(tortie routes them), but not IPv6 destinations outside the cluster; add one "
            "if they need to"
        )
    for w in warnings:
        log.warning("%s", w)
    return warnings
