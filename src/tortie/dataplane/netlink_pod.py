"""A pod's network over netlink (pyroute2): what ``tortie.dataplane.pod`` does with
``ip -batch`` processes, for the resident node service, where no process may be spawned
per pod and pyroute2 is already loaded.

Same functions, same result, same errors as ``pod.py`` (calico-behaviour.md §4).  Safe in
a multi-threaded server: ``setns(2)`` moves only the calling thread, and a netlink socket
belongs to the namespace its thread was in when it was created, so the pod's socket is
opened inside ``entered(pod)`` and then used from the host side.  Sysctls are written as in
``pod.py`` (``/proc/sys/net`` of the calling thread's namespace).
"""

from __future__ import annotations

import errno
import os
import socket
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from pyroute2 import IPRoute  # type: ignore[import-untyped]
from pyroute2.netlink.exceptions import NetlinkError  # type: ignore[import-untyped]
from pyroute2.netlink.rtnl.ifaddrmsg import IFA_F_NODAD  # type: ignore[import-untyped]

from tortie.dataplane import sysctl
from tortie.dataplane.netns import entered, open_netns
from tortie.dataplane.pod import (
    _configure_host_link,
    _wait_host_link_local,
    check_pod,
)
from tortie.dataplane.spec import (
    HOST_LINK_LOCAL,
    HOST_MAC,
    IPV4_GATEWAY,
    Addresses,
    PodInterfaces,
    PodNetwork,
    check_ifname,
    host_veth_name,
    parse_addresses,
    validate,
)
from tortie.errors import InvalidInput, NotFound, TortieError

__all__ = [
    "PodInterfaces",
    "PodNetwork",
    "check_pod",
    "host_veth_name",
    "link_kind",
    "setup_pod",
    "teardown_pod",
]

NUD_PERMANENT = 0x80
RT_SCOPE_LINK = 253
RTPROT_BOOT = 3  # what `ip route add` records (pyroute2 would say "static")


class _Failed(Exception):
    """A netlink request failed: what was asked and the kernel's answer."""

    def __init__(self, what: str, exc: NetlinkError) -> None:
        self.code = exc.code
        self.message = f"{what} failed: {os.strerror(exc.code) if exc.code else exc}"
        super().__init__(self.message)


@contextmanager
def _netlink() -> Iterator[IPRoute]:
    ipr = IPRoute()
    try:
        yield ipr
    finally:
        ipr.close()


def _ask(what: str, call: Any, *args: Any, **kwargs: Any) -> Any:
    try:
        return call(*args, **kwargs)
    except NetlinkError as exc:
        raise _Failed(what, exc) from None


def _index(ipr: IPRoute, name: str) -> int | None:
    found = ipr.link_lookup(ifname=name)
    return found[0] if found else None


def setup_pod(net: PodNetwork) -> PodInterfaces:
    """Create and configure the pod's veth pair; on any failure leave nothing behind."""
    addrs = validate(net)
    pod_fd = open_netns(net.netns)
    try:
        if os.path.samestat(os.fstat(pod_fd), os.stat("/proc/thread-self/ns/net")):
            raise InvalidInput(
                f"pod network namespace {net.netns} is this host's own namespace: pass the "
                "pod's namespace (CNI_NETNS)"
            )
        with _netlink() as host:
            with entered(pod_fd, net.netns):
                pod = IPRoute()  # its socket lives in the pod's namespace
            try:
                _create_veth(host, pod, net, pod_fd)
                try:
                    _configure_host_link(net.host_ifname, addrs)
                    with entered(pod_fd, net.netns):
                        _pod_sysctls(net, addrs)
                    pod_mac = _configure_pod(pod, net, addrs)
                    _add_host_routes(host, net.host_ifname, addrs)
                    if addrs.v6:
                        _wait_host_link_local(net.host_ifname)
                except BaseException as exc:
                    try:
                        _delete_link(host, net.host_ifname)
                    except (_Failed, OSError) as undo:
                        exc.add_note(f"rollback failed: {undo}; delete interface {net.host_ifname}")
                    raise
            finally:
                pod.close()
    except _Failed as exc:
        raise TortieError(f"pod interface {net.pod_ifname} in {net.netns}: {exc.message}") from None
    finally:
        os.close(pod_fd)
    return PodInterfaces(net.host_ifname, HOST_MAC, net.pod_ifname, pod_mac)


def teardown_pod(host_ifname: str, addresses: Sequence[str], netns: str | None) -> None:
    """Delete the pod's veth pair (its host routes go with it).  Idempotent: a missing
    interface or namespace is fine.  If the host end is gone but the namespace still holds
    a veth carrying one of ``addresses``, that veth is deleted instead."""
    check_ifname(host_ifname, "host interface name")
    addrs = parse_addresses(addresses)
    try:
        with _netlink() as host:
            kind = _kind(host, host_ifname)
            if kind is not None:
                if kind != "veth":
                    raise InvalidInput(
                        f"host interface {host_ifname} is a {kind}, not a pod veth: refusing "
                        "to delete it; check the interface name passed to DEL"
                    )
                _delete_link(host, host_ifname)
            elif netns:
                _delete_orphan_pod_veths(netns, addrs)
    except _Failed as exc:
        raise TortieError(f"tearing down pod interface {host_ifname}: {exc.message}") from None


def link_kind(name: str) -> str | None:
    """``veth``, ``dummy``... of a link in the current namespace; ``device`` for hardware;
    ``None`` if there is no such link."""
    with _netlink() as ipr:
        return _kind(ipr, name)


def _kind(ipr: IPRoute, name: str) -> str | None:
    index = _index(ipr, name)
    if index is None:
        return None
    (link,) = _ask(f"link show dev {name}", ipr.get_links, index)
    info = link.get_attr("IFLA_LINKINFO")
    kind = info.get_attr("IFLA_INFO_KIND") if info is not None else None
    return str(kind) if kind else "device"


def _create_veth(host: IPRoute, pod: IPRoute, net: PodNetwork, pod_fd: int) -> None:
    """Host end here (MAC ee:ee:.., up), pod end created straight inside the pod netns.
    A stale host veth of the same name (an earlier sandbox) is replaced, as Calico does."""
    what = f"link add {net.host_ifname} type veth peer name {net.pod_ifname}"
    for attempt in (1, 2):
        try:
            _ask(
                what,
                host.link,
                "add",
                ifname=net.host_ifname,
                kind="veth",
                address=HOST_MAC,
                mtu=net.mtu,
                peer={"ifname": net.pod_ifname, "mtu": net.mtu, "net_ns_fd": pod_fd},
            )
            break
        except _Failed as exc:
            if exc.code != errno.EEXIST or attempt == 2:
                raise
        kind = _kind(host, net.host_ifname)
        if kind is None:
            raise InvalidInput(
                f"interface {net.pod_ifname} already exists in pod network namespace "
                f"{net.netns}: delete it or pass another CNI_IFNAME"
            )
        if kind != "veth":
            raise InvalidInput(
                f"host interface {net.host_ifname} already exists and is a {kind}, not a "
                "veth: remove it or choose another interface prefix"
            )
        _delete_link(host, net.host_ifname)
    index = _index(host, net.host_ifname)
    _ask(f"link set {net.host_ifname} up", host.link, "set", index=index, state="up")


def _pod_sysctls(net: PodNetwork, addrs: Addresses) -> None:
    """Inside the pod's namespace, before its link comes up (as pod.py)."""
    if addrs.v6:
        for dev in ("all", "default", "lo", net.pod_ifname):
            sysctl.write(f"ipv6/conf/{dev}/disable_ipv6", "0")
        sysctl.write(f"ipv6/conf/{net.pod_ifname}/accept_dad", "0")
    if net.allow_ip_forwarding:
        sysctl.write("ipv4/ip_forward", "1")
        if addrs.v6:
            sysctl.write("ipv6/conf/all/forwarding", "1")


def _configure_pod(pod: IPRoute, net: PodNetwork, addrs: Addresses) -> str:
    """Link up, addresses, routes and the gateways' permanent neighbour entries inside
    the pod (see pod.py for why).  Returns the pod MAC."""
    name = net.pod_ifname
    index = _index(pod, name)
    if index is None:
        raise TortieError(f"pod interface {name} vanished from {net.netns} while being set up")
    lo = _index(pod, "lo")
    if lo is not None:
        _ask("link set lo up", pod.link, "set", index=lo, state="up")
    _ask(f"link set {name} up", pod.link, "set", index=index, state="up")
    for a in addrs.v4:
        _ask(f"addr add {a}/32 dev {name}", pod.addr, "add", index=index, address=a, prefixlen=32)
    for a in addrs.v6:
        _ask(
            f"addr add {a}/128 dev {name} nodad",
            pod.addr,
            "add",
            index=index,
            address=a,
            prefixlen=128,
            flags=IFA_F_NODAD,
        )
    if addrs.v4:
        _ask(
            f"route add {IPV4_GATEWAY} dev {name} scope link",
            pod.route,
            "add",
            dst=IPV4_GATEWAY,
            dst_len=32,
            oif=index,
            scope=RT_SCOPE_LINK,
            proto=RTPROT_BOOT,
        )
        _ask(
            f"route add default via {IPV4_GATEWAY} dev {name}",
            pod.route,
            "add",
            dst="0.0.0.0",
            dst_len=0,
            gateway=IPV4_GATEWAY,
            oif=index,
            proto=RTPROT_BOOT,
        )
        _neigh(pod, index, name, IPV4_GATEWAY, socket.AF_INET)
    if addrs.v6:
        _ask(
            f"route add default via {HOST_LINK_LOCAL} dev {name}",
            pod.route,
            "add",
            family=socket.AF_INET6,
            dst="::",
            dst_len=0,
            gateway=HOST_LINK_LOCAL,
            oif=index,
            proto=RTPROT_BOOT,
        )
        _neigh(pod, index, name, HOST_LINK_LOCAL, socket.AF_INET6)
    (link,) = _ask(f"link show dev {name}", pod.get_links, index)
    mac = link.get_attr("IFLA_ADDRESS")
    if not mac:
        raise TortieError(f"pod interface {name} has no MAC address")
    return str(mac)


def _neigh(pod: IPRoute, index: int, name: str, address: str, family: int) -> None:
    _ask(
        f"neigh replace {address} lladdr {HOST_MAC} dev {name} nud permanent",
        pod.neigh,
        "replace",
        family=family,
        dst=address,
        lladdr=HOST_MAC,
        ifindex=index,
        state=NUD_PERMANENT,
    )


def _add_host_routes(host: IPRoute, name: str, addrs: Addresses) -> None:
    index = _index(host, name)
    for route in addrs.host_routes():
        dst, prefix = route.split("/")
        family = socket.AF_INET6 if ":" in dst else socket.AF_INET
        try:
            host.route(
                "add",
                family=family,
                dst=dst,
                dst_len=int(prefix),
                oif=index,
                scope=RT_SCOPE_LINK,
                proto=RTPROT_BOOT,
            )
        except NetlinkError as exc:
            if exc.code != errno.EEXIST:
                raise _Failed(f"route add {route} dev {name} scope link", exc) from None
            raise InvalidInput(
                f"pod address {dst} is already routed via {_route_owner(host, dst, family)} on "
                "this host: another workload or the host uses it; release the address or "
                "remove that route"
            ) from None


def _route_owner(host: IPRoute, dst: str, family: int) -> str:
    """Name the interface holding the main-table route to ``dst`` (for error messages)."""
    try:
        for r in host.get_routes(family=family, dst=dst):
            if r.get_attr("RTA_DST") == dst and r.get_attr("RTA_OIF"):
                (link,) = host.get_links(r.get_attr("RTA_OIF"))
                return f"interface {link.get_attr('IFLA_IFNAME')}"
    except NetlinkError:
        pass
    return "another interface"


def _delete_link(host: IPRoute, name: str) -> None:
    index = _index(host, name)
    if index is None:
        return
    try:
        host.link("del", index=index)
    except NetlinkError as exc:
        if exc.code != errno.ENODEV:
            raise _Failed(f"link del {name}", exc) from None


def _delete_orphan_pod_veths(netns: str, addrs: Addresses) -> None:
    """The host end is gone: delete veths in the pod netns that carry the pod's addresses."""
    try:
        fd = open_netns(netns)
    except (NotFound, InvalidInput):
        return
    wanted = set(addrs.v4) | set(addrs.v6)
    try:
        with entered(fd, netns):
            pod = IPRoute()
        try:
            carrying = {a["index"] for a in pod.get_addr() if a.get_attr("IFA_ADDRESS") in wanted}
            for link in pod.get_links():
                info = link.get_attr("IFLA_LINKINFO")
                kind = info.get_attr("IFLA_INFO_KIND") if info is not None else None
                if kind == "veth" and link["index"] in carrying:
                    _delete_link(pod, link.get_attr("IFLA_IFNAME"))
        finally:
            pod.close()
    finally:
        os.close(fd)
