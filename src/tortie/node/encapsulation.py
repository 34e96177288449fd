"""The agent's encapsulation parts (reconciler parts, ``tortie.node.reconciler``):

- ``TunnelAddressPart``: this node's tunnel addresses and VTEP MACs follow its pools
  (``tortie.node.tunnel.ensure_tunnel_addresses``), at start and whenever a pool's
  ``vxlanMode``/``ipipMode`` or the Node changes.  An IPIP pool on a kernel without
  ``ipip`` is refused in one line (at start it stops the agent; later it is logged and
  nothing else is held up).
- ``MtuPart``: the pod MTU (host MTU minus the largest enabled overhead, or
  ``FELIX_VETHMTU``) published in the run directory, where the CNI plugins read it.
- ``VxlanPart``: ``vxlan.calico`` / ``vxlan-v6.calico``, their neighbours, FDB entries and
  routes (``tortie.node.vxlan.desired`` applied by ``tortie.dataplane.vxlan``); a kernel
  part, re-applied on every dataplane resync so hand edits are put back.
"""

from __future__ import annotations

import os

from tortie.datastore import keys
from tortie.node.mtu import pod_mtu, publish_mtu
from tortie.node.tunnel import (
    IPIP,
    check_ipip_supported,
    ensure_tunnel_addresses,
    kernel_has_ipip,
    tunnel_settings,
)
from tortie.node.vxlan import NEVER, VxlanSettings, VxlanState, desired, from_node, from_pool
from tortie.rundir import RunDir

TYPE_CHECKING = False
if TYPE_CHECKING:
    import logging
    from collections.abc import Callable

    from tortie.datastore.base import KV, Datastore
    from tortie.model.node import Node
    from tortie.node.cache import ClusterView
    from tortie.node.hostprep import VxlanApplier
    from tortie.node.startup import StartupResult

SYS_NET = "/sys/class/net"


def host_links(sys_net: str = SYS_NET) -> list[tuple[str, int]]:
    """(interface, MTU) of this host's (namespace's) interfaces."""
    out: list[tuple[str, int]] = []
    try:
        names = os.listdir(sys_net)
    except OSError:
        return out
    for name in names:
        try:
            with open(os.path.join(sys_net, name, "mtu"), encoding="ascii") as fh:
                out.append((name, int(fh.read().strip())))
        except (OSError, ValueError):
            continue
    return out


def tunnel_fields(node: Node) -> tuple[str | None, ...]:
    """The Node fields the tunnel-address part writes."""
    return (
        node.ipv4_ipip_tunnel_addr,
        node.ipv4_vxlan_tunnel_addr,
        node.ipv6_vxlan_tunnel_addr,
        node.vxlan_tunnel_mac,
        node.vxlan_tunnel_mac_v6,
    )


class TunnelAddressPart:
    name = "tunnel addresses"
    kernel = False

    def __init__(
        self,
        store: Datastore,
        backend: str,
        log: logging.Logger,
        echo: Callable[[KV], None] | None = None,
    ) -> None:
        self.store = store
        self.backend = backend
        self.log = log
        # Hands the Node this part wrote to the agent's cache at once, so the parts after
        # it (VXLAN) see the new tunnel address in the same pass: a node must not announce
        # its VTEP before its own device exists.
        self.echo = echo

    def desired(self, view: ClusterView, me: StartupResult) -> object:
        node = view.node(me.node_name)
        if node is None:
            return None
        return (tunnel_settings(node, view.pools, self.backend), *tunnel_fields(node))

    def apply(self, desired: object) -> bool:
        if desired is None:
            return True
        assert isinstance(desired, tuple)
        settings = desired[0]
        check_ipip_supported(settings, not settings.enabled(IPIP) or kernel_has_ipip())
        before = desired[1:]
        node = ensure_tunnel_addresses(self.store, settings.node, self.backend, self.log)
        if self.echo is not None and tunnel_fields(node) != before:
            kv = self.store.get(keys.resource_key("nodes", settings.node))
            if kv is not None:
                self.echo(kv)
        return True


class MtuPart:
    name = "pod MTU"
    kernel = False

    def __init__(
        self,
        run_dir: RunDir,
        backend: str,
        host_mtu: int,
        override: int | None,
        log: logging.Logger,
    ) -> None:
        self.run_dir = run_dir
        self.backend = backend
        self.host_mtu = host_mtu
        self.override = override
        self.log = log

    def desired(self, view: ClusterView, me: StartupResult) -> object:
        node = view.node(me.node_name)
        if node is None:
            return None
        return pod_mtu(
            self.host_mtu, tunnel_settings(node, view.pools, self.backend), self.override
        )

    def apply(self, desired: object) -> bool:
        if isinstance(desired, int) and publish_mtu(self.run_dir, desired):
            self.log.info(
                "pod MTU %d (host %d), published in %s", desired, self.host_mtu, self.run_dir.mtu
            )
        return True


class VxlanPart:
    name = "VXLAN"
    kernel = True

    def __init__(
        self,
        dataplane: VxlanApplier,
        settings: VxlanSettings,
        backend: str,
        log: logging.Logger,
    ) -> None:
        self.dataplane = dataplane
        self.settings = settings
        self.backend = backend
        self.log = log
        self._said: frozenset[str] = frozenset()
        self._conflicts: frozenset[str] = frozenset()

    def desired(self, view: ClusterView, me: StartupResult) -> object:
        nodes = [
            from_node(n, view.blocks_of(n.name, 4) + view.blocks_of(n.name, 6)) for n in view.nodes
        ]
        local = next((n for n in nodes if n.name == me.node_name), None)
        if local is None:
            return VxlanState()
        said = set()
        if self.backend == "vxlan":
            for pool in view.pools:
                if pool.vxlan_mode == NEVER and not pool.disabled:
                    said.add(
                        f"IPPool {pool.name} has vxlanMode Never but "
                        "CALICO_NETWORKING_BACKEND=vxlan runs no BGP: its pods are not "
                        "routed between nodes; set vxlanMode: Always or CrossSubnet"
                    )
        for line in sorted(said - self._said):
            self.log.warning("%s", line)
        self._said = frozenset(said)
        return desired(local, nodes, [from_pool(p) for p in view.pools], self.settings)

    def apply(self, desired: object) -> bool:
        assert isinstance(desired, VxlanState)
        result = self.dataplane.apply(desired)
        if result.writes:
            fams = [f for f in desired.families() if f.device is not None]
            self.log.info(
                "VXLAN: %d kernel changes; %s",
                result.writes,
                "; ".join(
                    f"{f.device_name}: {len(f.fdb)} remote VTEPs, {len(f.routes)} routes"
                    for f in fams
                )
                or "no VXLAN pools: devices removed",
            )
        conflicts = frozenset(result.conflicts)
        for dst in sorted(conflicts - self._conflicts):
            self.log.info("VXLAN: route %s is held by another protocol; kept for now", dst)
        self._conflicts = conflicts
        return True
