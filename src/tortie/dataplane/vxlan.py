"""Apply a ``tortie.node.vxlan.VxlanState`` to the kernel over netlink (pyroute2).

Each ``apply`` reads what is there and writes only the difference, so a second apply of
the same state makes no netlink writes, and whatever someone deleted or changed by hand
(a route, a neighbour, an FDB entry, the device itself) is put back.  What it may touch:
the two devices ``vxlan.calico`` / ``vxlan-v6.calico`` (and everything on them) and the
main-table routes carrying ``ROUTE_PROTOCOL``; every other route is left alone (a
foreign route to a destination tortie wants, at the metric tortie's would get, is reported
as a conflict, not replaced; at another metric — BIRD's kernel protocol uses 32 — both
routes coexist and the kernel prefers the lower metric, so a pool switching from ``Never``
to VXLAN keeps its pods reachable while BIRD withdraws its route).

``netns`` (a name under /run/netns or a path) applies inside that namespace: the calling
thread enters it for the call (``tortie.dataplane.netns.entered``) and opens its netlink
socket there, as ``netlink_pod`` does.  Call from a thread without an asyncio loop.
"""

from __future__ import annotations

import errno
import os
import socket
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from pyroute2 import IPRoute  # type: ignore[import-untyped]
from pyroute2.netlink.exceptions import NetlinkError  # type: ignore[import-untyped]

from tortie.dataplane.netns import entered, open_netns
from tortie.errors import TortieError
from tortie.node.vxlan import (
    DEVICE_V4,
    DEVICE_V6,
    ROUTE_PROTOCOL,
    FamilyState,
    FdbEntry,
    Neighbour,
    Route,
    VxlanState,
)

__all__ = ["ApplyResult", "VxlanDataplane"]

_RT_TABLE_MAIN = 254
_RT_SCOPE_UNIVERSE = 0
_RT_SCOPE_LINK = 253
_RTNH_F_ONLINK = 4
_NUD_NOARP = 0x40
_NUD_PERMANENT = 0x80
_NTF_SELF = 0x02
_AF_BRIDGE = 7
_FAMILY = {4: socket.AF_INET, 6: socket.AF_INET6}
_EXISTS = object()  # a route "add" found the destination taken


@dataclass
class ApplyResult:
    """What one apply did: the number of netlink writes, and the routes it left alone
    because a route of another protocol holds the destination."""

    writes: int = 0
    conflicts: list[str] = field(default_factory=list)


class VxlanDataplane:
    def __init__(self, netns: str | None = None) -> None:
        if netns is not None and "/" not in netns:
            netns = f"/run/netns/{netns}"
        self.netns = netns

    def apply(self, state: VxlanState) -> ApplyResult:
        result = ApplyResult()
        self._run(state.families(), result)
        return result

    def cleanup(self) -> int:
        """Remove tortie's VXLAN devices and every route carrying ``ROUTE_PROTOCOL``."""
        result = ApplyResult()
        self._run((FamilyState(4), FamilyState(6)), result)
        return result.writes

    def _run(self, families: Iterable[FamilyState], result: ApplyResult) -> None:
        if self.netns is None:
            _with_socket(families, result)
            return
        fd = open_netns(self.netns)
        try:
            with entered(fd, self.netns):
                _with_socket(families, result)
        finally:
            os.close(fd)


def _with_socket(families: Iterable[FamilyState], result: ApplyResult) -> None:
    ipr = IPRoute()
    try:
        for fam in families:
            _apply_family(ipr, fam, result)
    except NetlinkError as exc:
        raise TortieError(
            f"VXLAN dataplane: netlink refused a change ({exc}): check that this kernel "
            "has vxlan and that tortie runs as root"
        ) from None
    finally:
        ipr.close()


class _Writer:
    def __init__(self, ipr: Any, result: ApplyResult) -> None:
        self.ipr = ipr
        self.result = result

    def __call__(self, method: str, *args: Any, **kwargs: Any) -> Any:
        self.result.writes += 1
        try:
            return getattr(self.ipr, method)(*args, **kwargs)
        except NetlinkError as exc:
            if args[0] == "del" and exc.code in (errno.ENOENT, errno.ESRCH, errno.ENODEV):
                return None  # already gone (the kernel removed it with something else)
            if method == "route" and args[0] == "add" and exc.code == errno.EEXIST:
                return _EXISTS
            detail = ", ".join(f"{k}={v}" for k, v in sorted(kwargs.items()))
            raise TortieError(
                f"VXLAN dataplane: {method} {args[0]} ({detail}) failed: {exc.args[-1]}; "
                "check that this kernel has vxlan and that tortie runs as root"
            ) from None


def _apply_family(ipr: Any, fam: FamilyState, result: ApplyResult) -> None:
    write = _Writer(ipr, result)
    family = _FAMILY[fam.version]
    index = _device(ipr, fam, write)
    if index is not None and fam.device is not None:
        _address(ipr, index, fam, write)
        _neighbours(ipr, index, family, fam.neighbours, write)
        _fdb(ipr, index, fam.fdb, write)
    _routes(ipr, index, family, fam.routes, write)


def _lookup(ipr: Any, name: str) -> int | None:
    found = ipr.link_lookup(ifname=name)
    return int(found[0]) if found else None


def _device(ipr: Any, fam: FamilyState, write: _Writer) -> int | None:
    name = DEVICE_V4 if fam.version == 4 else DEVICE_V6
    index = _lookup(ipr, name)
    dev = fam.device
    if dev is None:
        if index is not None:
            write("link", "del", index=index)
        return None
    local_key = "vxlan_local" if fam.version == 4 else "vxlan_local6"
    if index is not None:
        link = ipr.get_links(index)[0]
        info = link.get_attr("IFLA_LINKINFO")
        data = info.get_attr("IFLA_INFO_DATA") if info is not None else None
        kind = info.get_attr("IFLA_INFO_KIND") if info is not None else None
        fixed = data is not None and (
            kind == "vxlan"
            and data.get_attr("IFLA_VXLAN_ID") == dev.vni
            and data.get_attr("IFLA_VXLAN_PORT") == dev.port
            and data.get_attr("IFLA_VXLAN_LEARNING") == 0
            and str(data.get_attr(f"IFLA_{local_key.upper()}")) == dev.local
        )
        if not fixed:  # VNI, port, local address, learning: only set at creation
            write("link", "del", index=index)
            index = None
        else:
            changes: dict[str, Any] = {}
            if link.get_attr("IFLA_MTU") != dev.mtu:
                changes["mtu"] = dev.mtu
            if str(link.get_attr("IFLA_ADDRESS")).lower() != dev.mac:
                changes["address"] = dev.mac
            if not link["flags"] & 1:  # IFF_UP
                changes["state"] = "up"
            if changes:
                write("link", "set", index=index, **changes)
    if index is None:
        write(
            "link",
            "add",
            ifname=name,
            kind="vxlan",
            vxlan_id=dev.vni,
            vxlan_port=dev.port,
            vxlan_learning=0,
            address=dev.mac,
            mtu=dev.mtu,
            **{local_key: dev.local},
        )
        index = _lookup(ipr, name)
        if index is None:  # pragma: no cover - the kernel just created it
            raise TortieError(f"VXLAN device {name} vanished after creation: retry")
        write("link", "set", index=index, state="up")
    return index


def _address(ipr: Any, index: int, fam: FamilyState, write: _Writer) -> None:
    assert fam.device is not None
    ip, plen = fam.device.address.split("/")
    have = set()
    for msg in ipr.get_addr(family=_FAMILY[fam.version], index=index):
        if msg["index"] != index or msg["scope"] != _RT_SCOPE_UNIVERSE:
            continue  # keep the kernel's link-local address
        have.add((str(msg.get_attr("IFA_ADDRESS")), int(msg["prefixlen"])))
    for addr, prefixlen in sorted(have - {(ip, int(plen))}):
        write("addr", "del", index=index, address=addr, prefixlen=prefixlen)
    if (ip, int(plen)) not in have:
        write("addr", "add", index=index, address=ip, prefixlen=int(plen))


def _neighbours(
    ipr: Any, index: int, family: int, want: frozenset[Neighbour], write: _Writer
) -> None:
    wanted = {n.ip: n.mac for n in want}
    for msg in ipr.get_neighbours(family=family, ifindex=index):
        if msg["ifindex"] != index:
            continue
        ip = str(msg.get_attr("NDA_DST"))
        mac = str(msg.get_attr("NDA_LLADDR") or "").lower()
        permanent = bool(msg["state"] & _NUD_PERMANENT)
        if wanted.get(ip) == mac and permanent:
            del wanted[ip]
        elif ip not in wanted and permanent:
            write("neigh", "del", ifindex=index, dst=ip, family=family)
    for ip, mac in sorted(wanted.items()):
        write(
            "neigh",
            "replace",
            ifindex=index,
            dst=ip,
            lladdr=mac,
            family=family,
            state=_NUD_PERMANENT,
        )


def _fdb(ipr: Any, index: int, want: frozenset[FdbEntry], write: _Writer) -> None:
    wanted = {(e.mac, e.dst) for e in want}
    have = set()
    for msg in ipr.get_neighbours(family=_AF_BRIDGE, ifindex=index):
        if msg["ifindex"] != index or msg.get_attr("NDA_DST") is None:
            continue
        have.add((str(msg.get_attr("NDA_LLADDR")).lower(), str(msg.get_attr("NDA_DST"))))
    for mac, dst in sorted(have - wanted):
        write("fdb", "del", ifindex=index, lladdr=mac, dst=dst)
    for mac, dst in sorted(wanted - have):
        write("fdb", "append", ifindex=index, lladdr=mac, dst=dst)


def _route_key(msg: Any) -> str:
    dst = msg.get_attr("RTA_DST")
    if dst is None:
        dst = "0.0.0.0" if msg["family"] == socket.AF_INET else "::"
    return f"{dst}/{msg['dst_len']}"


def _routes(
    ipr: Any, index: int | None, family: int, want: frozenset[Route], write: _Writer
) -> None:
    ours: dict[str, Any] = {}
    foreign: set[str] = set()
    for msg in ipr.get_routes(family=family, table=_RT_TABLE_MAIN):
        if msg.get_attr("RTA_TABLE", msg["table"]) != _RT_TABLE_MAIN:
            continue
        key = _route_key(msg)
        if msg["proto"] == ROUTE_PROTOCOL:
            ours[key] = msg
        elif msg["type"] == 1 and msg.get_attr("RTA_PRIORITY", 0) == _default_metric(family):
            foreign.add(key)  # a unicast route at the metric tortie's would get
    # Without the device only native routes can be programmed (see node/vxlan.py).
    wanted = {r.dst: r for r in want if index is not None or not r.tunnel}
    for key, msg in sorted(ours.items()):
        if key not in wanted:
            write("route", "del", **_route_id(msg, family))
    # Direct routes to the remote tunnel addresses first: IPv6 checks an onlink gateway
    # against the route that resolves it, which must then be the one on the device.
    for dst, route in sorted(wanted.items(), key=lambda kv: (kv[1].gateway is not None, kv[0])):
        have = ours.get(dst)
        if have is not None and _matches(have, route, index):
            continue
        if have is None and dst in foreign:
            write.result.conflicts.append(dst)
            continue
        # "add" for a new route: never replaces a foreign one that appeared meanwhile.
        if (
            write(
                "route", "add" if have is None else "replace", **_route_spec(route, index, family)
            )
            is _EXISTS
        ):
            write.result.conflicts.append(dst)


def _default_metric(family: int) -> int:
    """The metric the kernel gives a route added without one (tortie's routes)."""
    return 0 if family == socket.AF_INET else 1024


def _route_id(msg: Any, family: int) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "dst": _route_key(msg),
        "family": family,
        "table": _RT_TABLE_MAIN,
        "proto": ROUTE_PROTOCOL,
        "scope": msg["scope"],
        "type": msg["type"],
    }
    for attr, key in (("RTA_PRIORITY", "priority"), ("RTA_OIF", "oif")):
        value = msg.get_attr(attr)
        if value is not None:
            spec[key] = value
    return spec


def _matches(msg: Any, route: Route, index: int | None) -> bool:
    gateway = msg.get_attr("RTA_GATEWAY")
    onlink = bool(msg["flags"] & _RTNH_F_ONLINK)
    if (str(gateway) if gateway is not None else None) != route.gateway:
        return False
    if route.tunnel:
        return msg.get_attr("RTA_OIF") == index and onlink == (route.gateway is not None)
    return not onlink and msg.get_attr("RTA_OIF") != index


def _route_spec(route: Route, index: int | None, family: int) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "dst": route.dst,
        "family": family,
        "table": _RT_TABLE_MAIN,
        "proto": ROUTE_PROTOCOL,
    }
    if route.gateway is not None:
        spec["gateway"] = route.gateway
    if route.tunnel:
        spec["oif"] = index
        if route.gateway is not None:
            spec["flags"] = _RTNH_F_ONLINK
            spec["scope"] = _RT_SCOPE_UNIVERSE
        else:
            spec["scope"] = _RT_SCOPE_LINK
    return spec
