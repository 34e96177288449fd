"""What the main plugin needs from whatever wires pods: the interface both
``tortie.dataplane.pod`` (``ip -batch``, the plugin's own process) and
``tortie.dataplane.netlink_pod`` (pyroute2, the node service) provide as modules.

Imported for type checking only (``tortie.cni.edge`` keeps ``typing`` out of the plugin
process's start-up)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from tortie.dataplane.spec import PodInterfaces, PodNetwork


class PodDataplane(Protocol):
    def setup_pod(self, net: PodNetwork) -> PodInterfaces:
        """Create the pod's veth pair, addresses and routes; the interfaces made."""
        ...

    def teardown_pod(self, host_ifname: str, addresses: Sequence[str], netns: str | None) -> None:
        """Remove the pod's veth and host routes (idempotent)."""
        ...
