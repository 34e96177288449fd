"""A pod's network, Calico style (calico-behaviour.md §4): veth pair, sysctls, addresses,
routes on both sides.  Runs in the calling process's network namespace as the "host".

Cost per pod: three ``ip -batch -`` processes (host link, pod side, host routes), sysctls
written directly under ``/proc/sys/net``, ``setns(2)`` to reach the pod.  No pyroute2.
"""

from __future__ import annotations

import os
import time

from tortie.dataplane import sysctl
from tortie.dataplane.iproute import IpCommandError, parse_json_stream, run_batch
from tortie.dataplane.netns import entered, open_netns
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

TYPE_CHECKING = False  # typing costs ms to import in the per-pod CNI process
if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = [
    "HOST_LINK_LOCAL_TIMEOUT",
    "PodInterfaces",
    "PodNetwork",
    "check_pod",
    "host_veth_name",
    "setup_pod",
    "teardown_pod",
]

HOST_LINK_LOCAL_TIMEOUT = 2.0  # seconds to wait for the host side's fe80:: address
_LL_HEX = "fe80000000000000eceeeefffeeeeeee"  # HOST_LINK_LOCAL as in /proc/net/if_inet6
_IFA_F_UNUSABLE = 0x40 | 0x08  # tentative, dadfailed


def setup_pod(net: PodNetwork) -> PodInterfaces:
    """Create and configure the pod's veth pair; on any failure leave nothing behind."""
    addrs = validate(net)
    pod_fd = open_pod_netns(net)
    try:
        _create_veth(net, pod_fd)
        try:
            configure_host_link(net.host_ifname, addrs)
            with entered(pod_fd, net.netns):
                pod_mac = _configure_pod(net, addrs)
            _add_host_routes(net.host_ifname, addrs)
            if addrs.v6:
                wait_host_link_local(net.host_ifname)
        except BaseException as exc:
            try:
                _delete_link(net.host_ifname)
            except (TortieError, IpCommandError, OSError) as undo:
                exc.add_note(f"rollback failed: {undo}; delete interface {net.host_ifname}")
            raise
    except IpCommandError as exc:
        raise TortieError(f"pod interface {net.pod_ifname} in {net.netns}: {exc.message}") from None
    finally:
        os.close(pod_fd)
    return PodInterfaces(net.host_ifname, HOST_MAC, net.pod_ifname, pod_mac)


def open_pod_netns(net: PodNetwork) -> int:
    """An fd of the pod's namespace; refuses the calling thread's own (the host's)."""
    pod_fd = open_netns(net.netns)
    if os.path.samestat(os.fstat(pod_fd), os.stat("/proc/thread-self/ns/net")):
        os.close(pod_fd)
        raise InvalidInput(
            f"pod network namespace {net.netns} is this host's own namespace: pass the "
            "pod's namespace (CNI_NETNS)"
        )
    return pod_fd


def write_pod_sysctls(net: PodNetwork, addrs: Addresses) -> None:
    """Inside the pod's namespace, before its link comes up: IPv6 on, no DAD on the pod
    end, forwarding when the configuration allows it."""
    if addrs.v6:
        for dev in ("all", "default", "lo", net.pod_ifname):
            sysctl.write(f"ipv6/conf/{dev}/disable_ipv6", "0")
        sysctl.write(f"ipv6/conf/{net.pod_ifname}/accept_dad", "0")  # before link up
    if net.allow_ip_forwarding:
        sysctl.write("ipv4/ip_forward", "1")
        if addrs.v6:
            sysctl.write("ipv6/conf/all/forwarding", "1")


def check_pod(net: PodNetwork) -> None:
    """Raise ``NotFound``/``InvalidInput`` unless the pod's dataplane matches ``net``."""
    from tortie.dataplane.check import check_pod as check  # CHECK only: keep ADD lean

    check(net)


def teardown_pod(host_ifname: str, addresses: Sequence[str], netns: str | None) -> None:
    """Delete the pod's veth pair (its host routes go with it).  Idempotent: a missing
    interface or namespace is fine.  If the host end is gone but the namespace still holds
    a veth carrying one of ``addresses``, that veth is deleted instead."""
    check_ifname(host_ifname, "host interface name")
    addrs = parse_addresses(addresses)
    try:
        kind = link_kind(host_ifname)
        if kind is not None:
            if kind != "veth":
                raise InvalidInput(
                    f"host interface {host_ifname} is a {kind}, not a pod veth: refusing to "
                    "delete it; check the interface name passed to DEL"
                )
            _delete_link(host_ifname)
        elif netns:
            _delete_orphan_pod_veths(netns, addrs)
    except IpCommandError as exc:
        raise TortieError(f"tearing down pod interface {host_ifname}: {exc.message}") from None


def link_kind(name: str) -> str | None:
    """``veth``, ``dummy``... of a link in the current namespace; ``device`` for hardware;
    ``None`` if there is no such link."""
    try:
        out = run_batch([f"link show dev {name}"], json=True, details=True)
    except IpCommandError as exc:
        if "does not exist" in exc.failure.message:
            return None
        raise
    (links,) = parse_json_stream(out)
    info = links[0].get("linkinfo", {})
    return str(info.get("info_kind", "device"))


def _create_veth(net: PodNetwork, pod_fd: int) -> None:
    """Host end here (up, MAC ee:ee:..), pod end created straight inside the pod netns.
    A stale host veth of the same name (an earlier sandbox) is replaced, as Calico does."""
    add = (
        f"link add {net.host_ifname} mtu {net.mtu} address {HOST_MAC} up type veth "
        f"peer name {net.pod_ifname} mtu {net.mtu} netns /proc/self/fd/{pod_fd}"
    )
    for attempt in (1, 2):
        try:
            run_batch([add], pass_fds=[pod_fd])
            return
        except IpCommandError as exc:
            if "File exists" not in exc.failure.message or attempt == 2:
                raise
        kind = link_kind(net.host_ifname)
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
        _delete_link(net.host_ifname)


def configure_host_link(host: str, addrs: Addresses) -> None:
    """Calico's per-veth host sysctls.  Written before the pod end comes up, so the
    host's link-local is never tentative (accept_dad=0) and always fe80::ecee:eeff:feee:eeee."""
    if addrs.v4:
        sysctl.write(f"ipv4/conf/{host}/proxy_arp", "1")
        sysctl.write(f"ipv4/conf/{host}/forwarding", "1")
        sysctl.write(f"ipv4/conf/{host}/route_localnet", "1")
        sysctl.write(f"ipv4/neigh/{host}/proxy_delay", "0")
    if addrs.v6:
        sysctl.write(f"ipv6/conf/{host}/disable_ipv6", "0")
        sysctl.write(f"ipv6/conf/{host}/addr_gen_mode", "0", missing_ok=True)  # eui64
        sysctl.write(f"ipv6/conf/{host}/accept_dad", "0")
        sysctl.write(f"ipv6/conf/{host}/proxy_ndp", "1")
        sysctl.write(f"ipv6/conf/{host}/forwarding", "1")
    sysctl.write(f"ipv6/conf/{host}/accept_ra", "0", missing_ok=not addrs.v6)


def _configure_pod(net: PodNetwork, addrs: Addresses) -> str:
    """Inside the pod netns: sysctls, link up, addresses, routes.  Returns the pod MAC."""
    pod = net.pod_ifname
    write_pod_sysctls(net, addrs)
    cmds = ["link set lo up", f"link set {pod} up"]
    cmds += [f"addr add {a}/32 dev {pod}" for a in addrs.v4]
    cmds += [f"addr add {a}/128 dev {pod} nodad" for a in addrs.v6]
    # Permanent neighbour entries for the gateways: the host side's MAC is fixed, so the
    # pod never needs proxy ARP / proxy NDP answers, which the host gives only when it has
    # a route to the gateway address (calico#3270: hosts without a default route).
    if addrs.v4:
        cmds.append(f"route add {IPV4_GATEWAY} dev {pod} scope link")
        cmds.append(f"route add default via {IPV4_GATEWAY} dev {pod}")
        cmds.append(f"neigh replace {IPV4_GATEWAY} lladdr {HOST_MAC} dev {pod} nud permanent")
    if addrs.v6:  # the gateway is waited for (host side) before setup_pod returns
        cmds.append(f"route add default via {HOST_LINK_LOCAL} dev {pod}")
        cmds.append(f"neigh replace {HOST_LINK_LOCAL} lladdr {HOST_MAC} dev {pod} nud permanent")
    cmds.append(f"link show dev {pod}")
    out = run_batch(cmds)
    _, sep, rest = out.partition("link/ether ")
    if not sep:
        raise TortieError(f"pod interface {pod} has no MAC address in `ip link` output")
    return rest.split(None, 1)[0]


def _add_host_routes(host: str, addrs: Addresses) -> None:
    try:
        run_batch([f"route add {r} dev {host} scope link" for r in addrs.host_routes()])
    except IpCommandError as exc:
        if "File exists" not in exc.failure.message or not exc.failure.command:
            raise
        dst = exc.failure.command.split()[2].split("/")[0]
        raise InvalidInput(
            f"pod address {dst} is already routed via {_route_owner(dst)} on this host: "
            "another workload or the host uses it; release the address or remove that route"
        ) from None


def _route_owner(dst: str) -> str:
    """Name the interface holding the main-table route to ``dst`` (for error messages)."""
    try:
        (routes,) = parse_json_stream(run_batch(["route show table all"], json=True))
    except (IpCommandError, ValueError):
        return "another interface"
    for r in routes:
        if r.get("dst") == dst and r.get("table", "main") == "main":
            return f"interface {r.get('dev', '?')}"
    return "another interface"


def wait_host_link_local(host: str) -> None:
    """Wait (bounded) until the host end's fe80::ecee:eeff:feee:eeee is usable: the pod's
    IPv6 default route points at it."""
    deadline = time.monotonic() + HOST_LINK_LOCAL_TIMEOUT
    pause = 0.001
    while True:
        with open("/proc/thread-self/net/if_inet6", encoding="ascii") as f:
            for line in f:
                fields = line.split()
                if (
                    len(fields) == 6
                    and fields[5] == host
                    and fields[0] == _LL_HEX
                    and not int(fields[4], 16) & _IFA_F_UNUSABLE
                ):
                    return
        if time.monotonic() >= deadline:
            raise TortieError(
                f"failed to get IPv6 addresses for host side of the pod interface: {host} "
                f"has no usable {HOST_LINK_LOCAL} after {HOST_LINK_LOCAL_TIMEOUT:g} s; check "
                "that IPv6 is enabled on the host (net.ipv6.conf.all.disable_ipv6=0)"
            )
        time.sleep(pause)
        pause = min(pause * 2, 0.05)


def _delete_link(name: str) -> None:
    try:
        run_batch([f"link del {name}"])
    except IpCommandError as exc:
        if "Cannot find device" not in exc.failure.message:
            raise


def _delete_orphan_pod_veths(netns: str, addrs: Addresses) -> None:
    """The host end is gone: delete veths in the pod netns that carry the pod's addresses."""
    try:
        fd = open_netns(netns)
    except (NotFound, InvalidInput):
        return
    wanted = set(addrs.v4) | set(addrs.v6)
    try:
        with entered(fd, netns):
            (links,) = parse_json_stream(run_batch(["addr show"], json=True, details=True))
            for link in links:
                if link.get("linkinfo", {}).get("info_kind") != "veth":
                    continue
                if any(a.get("local") in wanted for a in link.get("addr_info", [])):
                    _delete_link(link["ifname"])
    finally:
        os.close(fd)
