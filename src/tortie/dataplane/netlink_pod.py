"""A pod's network over netlink (pyroute2): what ``tortie.dataplane.pod`` does with
``ip -batch`` processes, for the resident node service, which must not spawn processes per
pod.  Same functions, results, errors and rollback as ``pod.py`` (calico-behaviour.md §4);
``check_pod`` is ``pod.py``'s.

Threads: the service wires several pods at once, one per thread.  ``setns(2)``
(``tortie.dataplane.netns.entered``) moves only the calling thread, and a netlink socket
belongs for life to the namespace its creating thread was in.  pyroute2 0.9's ``IPRoute``
creates its socket (and its asyncio loop) in the constructing thread, synchronously, when
given no ``netns`` argument (``IPRoute(netns=...)`` forks a helper process instead, not
wanted in a threaded server); every socket and loop is thread-local, so an ``IPRoute`` used
from another thread would silently open a second socket in that thread's namespace.  Hence
the rules here: each ``IPRoute`` is opened, used and closed by one call in one thread; the
host's is opened in the caller's namespace, the pod's inside ``entered(pod)``.  Sysctls
are written as ``pod.py`` writes them: ``/proc/sys/net`` of the calling thread's namespace.
Do not call these functions from a thread running an asyncio loop (pyroute2's sync API
runs its own loop in the calling thread).
"""

from __future__ import annotations

import asyncio
import errno
import os
import socket
from typing import Any

from pyroute2 import IPRoute  # type: ignore[import-untyped]
from pyroute2.netlink.exceptions import (  # type: ignore[import-untyped]
    NetlinkDumpInterrupted,
    NetlinkError,
)

from tortie.dataplane.netns import entered, open_netns
from tortie.dataplane.pod import (
    check_pod,
    configure_host_link,
    open_pod_netns,
    wait_host_link_local,
    write_pod_sysctls,
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

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

__all__ = [
    "PodInterfaces",
    "PodNetwork",
    "check_pod",
    "host_veth_name",
    "link_kind",
    "setup_pod",
    "teardown_pod",
]

# What `ip` puts in the messages it sends, so both dataplanes leave identical state.
_RT_TABLE_MAIN = 254
_RTPROT_BOOT = 3  # `ip route add`'s protocol
_RT_SCOPE_UNIVERSE = 0
_RT_SCOPE_LINK = 253
_RTN_UNICAST = 1
_NUD_PERMANENT = 0x80
_IFA_F_NODAD = 0x02
_LOOPBACK = "lo"


class _Failure(Exception):
    """A netlink request was refused: ``command`` is the ``ip`` command it stands for (so
    messages read as ``pod.py``'s), ``code`` the errno.  Internal, like ``IpCommandError``:
    the public functions turn it into the ``tortie.errors`` tree."""

    def __init__(self, command: str, code: int, reason: str, interrupted: bool = False) -> None:
        self.command = command
        self.code = code
        self.interrupted = interrupted  # a dump raced with a change: ask again
        self.message = f"`ip {command}` failed: {reason}"
        super().__init__(self.message)


def _open() -> Any:
    """An ``IPRoute`` whose socket belongs to the calling thread's current namespace.
    Close it in the same thread (``with``)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:  # the normal case: no loop in this thread
        return IPRoute(ext_ack=True)
    raise TortieError(
        "the netlink pod dataplane was called from a thread running an asyncio event loop: "
        "call it from a worker thread (asyncio.to_thread)"
    )


def _do(command: str, method: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run one pyroute2 request; a refusal becomes ``_Failure`` naming ``command``."""
    try:
        return method(*args, **kwargs)
    except NetlinkError as exc:
        reason = str(exc.args[1]) if len(exc.args) > 1 and exc.args[1] else ""
        interrupted = isinstance(exc, NetlinkDumpInterrupted)
        raise _Failure(command, exc.code, reason or os.strerror(exc.code), interrupted) from None


def _dump(command: str, method: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """A dump request; one that raced with a change (NLM_F_DUMP_INTR, likely on a busy
    node) is asked again, up to five times."""
    for attempt in range(1, 6):
        try:
            return _do(command, method, "dump", *args, **kwargs)
        except _Failure as exc:
            if not exc.interrupted or attempt == 5:
                raise
    raise AssertionError("unreachable")  # pragma: no cover


def setup_pod(net: PodNetwork) -> PodInterfaces:
    """Create and configure the pod's veth pair; on any failure leave nothing behind."""
    addrs = validate(net)
    pod_fd = open_pod_netns(net)
    try:
        with _open() as host:
            _create_veth(host, net, pod_fd)
            try:
                configure_host_link(net.host_ifname, addrs)
                with entered(pod_fd, net.netns):
                    pod_mac, host_index = _configure_pod(net, addrs)
                _add_host_routes(host, net.host_ifname, host_index, addrs)
                if addrs.v6:
                    wait_host_link_local(net.host_ifname)
            except BaseException as exc:
                try:
                    _delete_link(host, net.host_ifname)
                except (TortieError, _Failure, OSError) as undo:
                    exc.add_note(f"rollback failed: {undo}; delete interface {net.host_ifname}")
                raise
    except _Failure as exc:
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
        with _open() as host:
            kind = _link_kind(host, host_ifname)
            if kind is not None:
                if kind != "veth":
                    raise InvalidInput(
                        f"host interface {host_ifname} is a {kind}, not a pod veth: refusing "
                        "to delete it; check the interface name passed to DEL"
                    )
                _delete_link(host, host_ifname)
        if kind is None and netns:
            _delete_orphan_pod_veths(netns, addrs)
    except _Failure as exc:
        raise TortieError(f"tearing down pod interface {host_ifname}: {exc.message}") from None


def link_kind(name: str) -> str | None:
    """``veth``, ``dummy``... of a link in the current namespace; ``device`` for hardware;
    ``None`` if there is no such link."""
    try:
        with _open() as ipr:
            return _link_kind(ipr, name)
    except _Failure as exc:
        raise TortieError(f"interface {name}: {exc.message}") from None


def _link_kind(ipr: Any, name: str) -> str | None:
    try:
        (link,) = _do(f"link show dev {name}", ipr.link, "get", ifname=name)
    except _Failure as exc:
        if exc.code == errno.ENODEV:
            return None
        raise
    kind = link.get_nested("IFLA_LINKINFO", "IFLA_INFO_KIND")
    return str(kind) if kind else "device"


def _create_veth(host: Any, net: PodNetwork, pod_fd: int) -> None:
    """Host end here (up, MAC ee:ee:..), pod end created straight inside the pod netns.
    A stale host veth of the same name (an earlier sandbox) is replaced, as Calico does."""
    command = (
        f"link add {net.host_ifname} mtu {net.mtu} address {HOST_MAC} up type veth "
        f"peer name {net.pod_ifname} mtu {net.mtu} netns {net.netns}"
    )
    for attempt in (1, 2):
        try:
            _do(
                command,
                host.link,
                "add",
                ifname=net.host_ifname,
                kind="veth",
                mtu=net.mtu,
                address=HOST_MAC,
                state="up",
                peer={"ifname": net.pod_ifname, "mtu": net.mtu, "net_ns_fd": pod_fd},
            )
            return
        except _Failure as exc:
            if exc.code != errno.EEXIST or attempt == 2:
                raise
        kind = _link_kind(host, net.host_ifname)
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


def _configure_pod(net: PodNetwork, addrs: Addresses) -> tuple[str, int]:
    """Inside the pod netns (the calling thread is there): sysctls, link up, addresses,
    routes, gateway neighbours.  Returns the pod MAC and the host end's interface index
    (the pod end's IFLA_LINK: a veth names its peer's index in the peer's namespace)."""
    pod = net.pod_ifname
    write_pod_sysctls(net, addrs)
    with _open() as ipr:  # opened here: its socket belongs to the pod's namespace
        (link,) = _do(f"link show dev {pod}", ipr.link, "get", ifname=pod)
        index = int(link["index"])
        mac = link.get_attr("IFLA_ADDRESS")
        peer = link.get_attr("IFLA_LINK")
        if not mac or not peer:
            raise TortieError(
                f"pod interface {pod} has no MAC address or no peer in its netlink answer"
            )
        _do("link set lo up", ipr.link, "set", ifname=_LOOPBACK, state="up")
        _do(f"link set {pod} up", ipr.link, "set", index=index, state="up")
        family_addrs = [(a, socket.AF_INET, 32, 0) for a in addrs.v4]
        family_addrs += [(a, socket.AF_INET6, 128, _IFA_F_NODAD) for a in addrs.v6]
        for a, family, prefix, flags in family_addrs:
            nodad = " nodad" if flags else ""
            _do(
                f"addr add {a}/{prefix} dev {pod}{nodad}",
                ipr.addr,
                "add",
                index=index,
                family=family,
                address=a,
                prefixlen=prefix,
                flags=flags,
            )
        # Permanent neighbour entries for the gateways: the host side's MAC is fixed, so
        # the pod never needs proxy ARP / proxy NDP answers (see pod.py, calico#3270).
        if addrs.v4:
            _route(ipr, f"route add {IPV4_GATEWAY} dev {pod} scope link", index, IPV4_GATEWAY)
            _route(
                ipr,
                f"route add default via {IPV4_GATEWAY} dev {pod}",
                index,
                None,
                gateway=IPV4_GATEWAY,
            )
            _neighbour(ipr, pod, index, socket.AF_INET, IPV4_GATEWAY)
        if addrs.v6:  # the gateway is waited for (host side) before setup_pod returns
            _route(
                ipr,
                f"route add default via {HOST_LINK_LOCAL} dev {pod}",
                index,
                None,
                gateway=HOST_LINK_LOCAL,
                family=socket.AF_INET6,
            )
            _neighbour(ipr, pod, index, socket.AF_INET6, HOST_LINK_LOCAL)
    return str(mac), int(peer)


def _route(
    ipr: Any,
    command: str,
    oif: int,
    dst: str | None,
    *,
    gateway: str | None = None,
    family: int = socket.AF_INET,
) -> None:
    """``ip route add``: a host route to ``dst`` (scope link) or a default via ``gateway``."""
    spec: dict[str, Any] = {
        "family": family,
        "oif": oif,
        "table": _RT_TABLE_MAIN,
        "proto": _RTPROT_BOOT,
        "type": _RTN_UNICAST,
    }
    if dst is None:
        spec.update(dst_len=0, gateway=gateway, scope=_RT_SCOPE_UNIVERSE)
    else:
        spec.update(dst=dst, dst_len=32 if family == socket.AF_INET else 128)
        spec["scope"] = _RT_SCOPE_LINK
    _do(command, ipr.route, "add", **spec)


def _neighbour(ipr: Any, pod: str, index: int, family: int, address: str) -> None:
    _do(
        f"neigh replace {address} lladdr {HOST_MAC} dev {pod} nud permanent",
        ipr.neigh,
        "replace",
        family=family,
        ifindex=index,
        dst=address,
        lladdr=HOST_MAC,
        state=_NUD_PERMANENT,
    )


def _add_host_routes(host: Any, name: str, index: int, addrs: Addresses) -> None:
    routes = [(a, socket.AF_INET) for a in addrs.v4] + [(a, socket.AF_INET6) for a in addrs.v6]
    for dst, family in routes:
        full = 32 if family == socket.AF_INET else 128
        try:
            _route(host, f"route add {dst}/{full} dev {name} scope link", index, dst, family=family)
        except _Failure as exc:
            if exc.code != errno.EEXIST:
                raise
            raise InvalidInput(
                f"pod address {dst} is already routed via {_route_owner(host, dst, family)} "
                "on this host: another workload or the host uses it; release the address or "
                "remove that route"
            ) from None


def _route_owner(ipr: Any, dst: str, family: int) -> str:
    """Name the interface holding the main-table route to ``dst`` (for error messages)."""
    full = 32 if family == socket.AF_INET else 128
    try:
        for r in _dump("route show table all", ipr.route, family=family):
            if (
                r.get_attr("RTA_TABLE", r["table"]) == _RT_TABLE_MAIN
                and r["dst_len"] == full
                and r.get_attr("RTA_DST") == dst
                and r.get_attr("RTA_OIF")
            ):
                (link,) = ipr.link("get", index=r.get_attr("RTA_OIF"))
                return f"interface {link.get_attr('IFLA_IFNAME')}"
    except (_Failure, NetlinkError, OSError, ValueError):
        pass
    return "another interface"


def _delete_link(ipr: Any, name: str) -> None:
    try:
        _do(f"link del {name}", ipr.link, "del", ifname=name)
    except _Failure as exc:
        if exc.code != errno.ENODEV:
            raise


def _delete_orphan_pod_veths(netns: str, addrs: Addresses) -> None:
    """The host end is gone: delete veths in the pod netns that carry the pod's addresses."""
    try:
        fd = open_netns(netns)
    except (NotFound, InvalidInput):
        return
    wanted = set(addrs.v4) | set(addrs.v6)
    try:
        with entered(fd, netns), _open() as ipr:
            carrying = set()
            for a in _dump("addr show", ipr.addr):
                local = a.get_attr("IFA_LOCAL") or a.get_attr("IFA_ADDRESS")
                if local in wanted:
                    carrying.add(int(a["index"]))
            for link in _dump("link show", ipr.link):
                index = int(link["index"])
                if (
                    index in carrying
                    and link.get_nested("IFLA_LINKINFO", "IFLA_INFO_KIND") == "veth"
                ):
                    _delete_link(ipr, link.get_attr("IFLA_IFNAME"))
    finally:
        os.close(fd)
