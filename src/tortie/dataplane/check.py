"""CNI CHECK for a pod's dataplane: is everything ``setup_pod`` made still in place?"""

from __future__ import annotations

import os

from tortie.dataplane import sysctl
from tortie.dataplane.iproute import IpCommandError, parse_json_stream, run_batch
from tortie.dataplane.netns import entered, open_netns
from tortie.dataplane.spec import (
    HOST_LINK_LOCAL,
    HOST_MAC,
    IPV4_GATEWAY,
    Addresses,
    PodNetwork,
    validate,
)
from tortie.errors import InvalidInput, NotFound

TYPE_CHECKING = False  # typing costs ms to import in the per-pod CNI process
if TYPE_CHECKING:
    from typing import Any


def check_pod(net: PodNetwork) -> None:
    """Raise ``NotFound`` (interface or netns gone) or ``InvalidInput`` (listing every
    difference) unless the pod's dataplane matches ``net``."""
    addrs = validate(net)
    host_link, host_routes = _show(net.host_ifname, "on the host")
    problems = _check_host(net, addrs, host_link, host_routes)
    fd = open_netns(net.netns)
    try:
        with entered(fd, net.netns):
            pod_link, pod_routes = _show(net.pod_ifname, f"in pod network namespace {net.netns}")
            problems += _check_pod_side(net, addrs, pod_link, pod_routes)
    finally:
        os.close(fd)
    if pod_link.get("ifindex") != host_link.get("link_index"):
        problems.append(f"{net.pod_ifname} is not the peer of {net.host_ifname}")
    if problems:
        raise InvalidInput(
            f"pod network of {net.host_ifname}/{net.pod_ifname} differs from setup: "
            + "; ".join(problems)
            + ": delete and re-add the pod's network"
        )


def _show(ifname: str, where: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The link (with its addresses) and its routes of every table, in the current netns."""
    try:
        out = run_batch(
            [f"addr show dev {ifname}", f"route show table all dev {ifname}"],
            json=True,
            details=True,
        )
    except IpCommandError as exc:
        if "does not exist" in exc.failure.message:
            raise NotFound(
                f"interface {ifname} does not exist {where}: the pod's network was not set "
                "up or was removed; add it again"
            ) from None
        raise InvalidInput(f"cannot inspect interface {ifname} {where}: {exc.message}") from None
    links, routes = parse_json_stream(out)
    return links[0], [r for r in routes if r.get("table", "main") == "main"]


def _has_route(routes: list[dict[str, Any]], dst: str, gateway: str | None = None) -> bool:
    return any(r.get("dst") == dst and r.get("gateway") == gateway for r in routes)


def _check_link(net: PodNetwork, link: dict[str, Any], name: str) -> list[str]:
    problems = []
    if link.get("linkinfo", {}).get("info_kind") != "veth":
        problems.append(f"{name} is not a veth")
    if link.get("mtu") != net.mtu:
        problems.append(f"{name} has MTU {link.get('mtu')}, not {net.mtu}")
    if "UP" not in link.get("flags", []):
        problems.append(f"{name} is down")
    return problems


def _check_sysctls(wanted: dict[str, str]) -> list[str]:
    return [
        f"sysctl net.{key.replace('/', '.')} is {got}, not {value}"
        for key, value in wanted.items()
        if (got := sysctl.read(key)) != value
    ]


def _check_host(
    net: PodNetwork, addrs: Addresses, link: dict[str, Any], routes: list[dict[str, Any]]
) -> list[str]:
    h = net.host_ifname
    problems = _check_link(net, link, h)
    if link.get("address") != HOST_MAC:
        problems.append(f"{h} has MAC {link.get('address')}, not {HOST_MAC}")
    for a in (*addrs.v4, *addrs.v6):
        if not _has_route(routes, a):
            problems.append(f"host route {a} dev {h} is missing")
    wanted = {f"ipv6/conf/{h}/accept_ra": "0"} if addrs.v6 else {}
    if addrs.v4:
        for key in ("proxy_arp", "forwarding", "route_localnet"):
            wanted[f"ipv4/conf/{h}/{key}"] = "1"
        wanted[f"ipv4/neigh/{h}/proxy_delay"] = "0"
    if addrs.v6:
        wanted |= {f"ipv6/conf/{h}/{k}": "1" for k in ("proxy_ndp", "forwarding")}
        wanted |= {f"ipv6/conf/{h}/{k}": "0" for k in ("accept_dad", "disable_ipv6")}
    return problems + _check_sysctls(wanted)


def _check_pod_side(
    net: PodNetwork, addrs: Addresses, link: dict[str, Any], routes: list[dict[str, Any]]
) -> list[str]:
    p = net.pod_ifname
    problems = _check_link(net, link, p)
    have = {(a.get("local"), a.get("prefixlen")) for a in link.get("addr_info", [])}
    problems += [f"{p} lacks address {a}/32" for a in addrs.v4 if (a, 32) not in have]
    problems += [f"{p} lacks address {a}/128" for a in addrs.v6 if (a, 128) not in have]
    if addrs.v4 and not _has_route(routes, IPV4_GATEWAY):
        problems.append(f"route {IPV4_GATEWAY} dev {p} scope link is missing")
    if addrs.v4 and not _has_route(routes, "default", IPV4_GATEWAY):
        problems.append(f"default route via {IPV4_GATEWAY} dev {p} is missing")
    if addrs.v6 and not _has_route(routes, "default", HOST_LINK_LOCAL):
        problems.append(f"IPv6 default route via {HOST_LINK_LOCAL} dev {p} is missing")
    wanted = {f"ipv6/conf/{p}/{k}": "0" for k in ("accept_dad", "disable_ipv6")} if addrs.v6 else {}
    if net.allow_ip_forwarding:
        wanted["ipv4/ip_forward"] = "1"
    return problems + _check_sysctls(wanted)
