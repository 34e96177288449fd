"""Encapsulation across a rollout: an IPv6 pool gets the overlay the IPv4 one has.

An IPv4 pool's VXLAN mode becomes the IPv6 pool's; a ``vxlan`` networking backend (no
BGP) needs VXLAN for IPv6 too, else IPv6 pods on different nodes could not reach each
other.  IPIP cannot carry IPv6; with IPIP on BIRD (stock calico.yaml) IPv6 stays routed
natively by BGP, as in Calico's dual-stack set-up, so the rewrite leaves it alone.
"""

from __future__ import annotations

from collections.abc import Mapping

_MODES = {"always": "Always", "crosssubnet": "CrossSubnet"}


def _mode(value: str | None) -> str | None:
    return _MODES.get((value or "").strip().lower())


def ipv6_vxlan_mode(ipv4_vxlan: str | None, backend: str) -> str | None:
    """The vxlanMode an IPv6 pool needs to match the IPv4 side, or None for no overlay."""
    return _mode(ipv4_vxlan) or ("Always" if backend.strip().lower() == "vxlan" else None)


def encapsulation_env(env: Mapping[str, str], backend: str, mode: str) -> dict[str, str]:
    """calico-node env to add so the IPv6 default pool keeps the manifest's overlay."""
    if mode not in ("dual", "ipv6") or _mode(env.get("CALICO_IPV6POOL_VXLAN")):
        return {}
    want = ipv6_vxlan_mode(env.get("CALICO_IPV4POOL_VXLAN"), backend)
    return {} if want is None else {"CALICO_IPV6POOL_VXLAN": want}
