"""``tortie node startup``: what calico-node's start-up does on every host (§10).

Order: addresses (IP / IP6), the configurations that cannot work (one message naming the
variable), router id, conflicts with other nodes, default pools, the default IPAM
configuration, the Node resource, the nodename file, and the host's forwarding and IPv6
prerequisites.  Nothing is written before every check has passed.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from tortie.core.record import replace
from tortie.datastore import keys
from tortie.datastore.base import Datastore
from tortie.errors import Conflict, DatastoreError, InvalidInput
from tortie.ipam.nodes import NodeService
from tortie.ipam.pools import load_pools
from tortie.ipam.service import Ipam
from tortie.model.resources import Node
from tortie.node.autodetect import complete, detect
from tortie.node.config import DEFAULT_AS, NodeConfig
from tortie.node.defaultpools import ensure_default_pools
from tortie.node.hostaddrs import HostAddress
from tortie.node.hostprep import Host, prepare
from tortie.node.routerid import router_id
from tortie.node.tunnel import (
    IPIP,
    check_ipip_supported,
    ensure_tunnel_addresses,
    kernel_has_ipip,
    tunnel_settings,
)
from tortie.nodename import write_nodename_file


@dataclass(frozen=True)
class StartupResult:
    node_name: str
    ipv4: str | None  # host address with prefix, e.g. "10.10.0.11/24"
    ipv6: str | None  # e.g. "fd10::11/64"
    router_id: str  # dotted quad ("" with CALICO_NETWORKING_BACKEND=none)
    as_number: int
    ipv6_support: bool
    backend: str
    run_dir: str
    warnings: tuple[str, ...] = ()


def _address(
    version: int,
    setting: str,
    config: NodeConfig,
    stored: str | None,
    host_addrs: Sequence[HostAddress],
    log: logging.Logger,
) -> str | None:
    """IP / IP6 with Calico's meaning: IPv4 "" autodetects when nothing is stored; IPv6
    "" keeps the stored value and detects ONLY with ``autodetect``."""
    variable = "IP" if version == 4 else "IP6"
    value = setting.strip()
    if value.lower() == "none":
        return None
    if value == "":
        if stored is not None:
            log.info("%s is empty: keeping the stored address %s", variable, stored)
            return stored
        if version == 6:
            return None
        value = "autodetect"
    if value.lower() == "autodetect":
        method = config.ip_method if version == 4 else config.ip6_method
        found = detect(method, version, host_addrs, config.k8s_node_file)
        log.info("%s", found.describe())
        return found.address.interface
    address, note = complete(value, version, host_addrs)
    log.info("IPv%d address %s from %s", version, address, note)
    return address


def _host(address: str | None) -> str | None:
    return None if address is None else str(ipaddress.ip_interface(address).ip)


def _check_conflicts(
    service: NodeService, name: str, ipv4: str | None, ipv6: str | None, log: logging.Logger
) -> None:
    nodes, broken = service.list_readable()
    for message in broken:
        log.warning("address conflict check skips %s", message)
    for other in nodes:
        if other.name == name:
            continue
        for fam, mine, theirs, var in (
            ("IPv4", ipv4, other.ipv4_address, "IP"),
            ("IPv6", ipv6, other.ipv6_address, "IP6"),
        ):
            if mine is not None and _host(mine) == _host(theirs):
                raise Conflict(
                    f"{fam} address conflict: {_host(mine)} is already used by node "
                    f"{other.name}; set {var} to this host's own address, or remove the stale "
                    f"node with 'tortie delete node {other.name}'"
                )


def resolve_addresses(
    config: NodeConfig, stored: Node | None, host_addrs: Sequence[HostAddress], log: logging.Logger
) -> tuple[str | None, str | None]:
    ipv4 = _address(
        4, config.ip, config, None if stored is None else stored.ipv4_address, host_addrs, log
    )
    ipv6 = _address(
        6, config.ip6, config, None if stored is None else stored.ipv6_address, host_addrs, log
    )
    return ipv4, ipv6


def startup(
    config: NodeConfig,
    store: Datastore,
    log: logging.Logger,
    host: Host | None = None,
    kernel_ipip: Callable[[], bool] = kernel_has_ipip,
) -> StartupResult:
    host = host or Host()
    nodes = NodeService(store)
    try:
        stored = nodes.get(config.node_name)
    except DatastoreError as exc:
        raise DatastoreError(
            f"{exc}; correct this node's Node with 'tortie apply -f FILE', or remove it with "
            f"'tortie delete node {config.node_name}' (which also releases its addresses)"
        ) from None
    log.info("node name %s (from %s)", config.node_name, config.name_source)
    host_addrs = host.addresses()
    ipv4: str | None = None if stored is None else stored.ipv4_address
    ipv6: str | None = None if stored is None else stored.ipv6_address
    rid = ""
    if config.backend != "none":
        ipv4, ipv6 = resolve_addresses(config, stored, host_addrs, log)
        if ipv4 is None and ipv6 is None:
            raise InvalidInput(
                "no IPv4 or IPv6 addresses configured or detected, required for Calico "
                "networking; set IP=autodetect (or an address) and/or IP6=autodetect, or "
                "CALICO_NETWORKING_BACKEND=none to run without networking"
            )
        v6_pools = [p.name for p in load_pools(store) if p.version == 6]
        wants_v6 = v6_pools or config.pool6.cidr not in ("", "none")
        if ipv6 is None and config.ip6 == "" and config.ipv6_support and wants_v6:
            what = (
                f"IPv6 pools exist ({', '.join(v6_pools)})"
                if v6_pools
                else ("CALICO_IPV6POOL_CIDR is set")
            )
            raise InvalidInput(
                f"IP6 is empty but {what}: an empty IP6 never detects an address (only "
                "IP6=autodetect does); set IP6=autodetect, an IPv6 address, or IP6=none to "
                "run this node without IPv6"
            )
        rid = router_id(config.router_id, config.node_name, ipv4)
        _check_conflicts(nodes, config.node_name, ipv4, ipv6, log)

    ensure_default_pools(
        store, config, [a.address for a in host_addrs], log, node_has_ipv6=ipv6 is not None
    )
    if store.get(keys.CONFIG_KEY) is None:
        ipam = Ipam(store)
        ipam.set_config(ipam.get_config())
    as_number = config.as_number or (stored.as_number if stored else None) or DEFAULT_AS

    def change(old: Node | None) -> Node:
        base = old or Node(name=config.node_name)
        return replace(
            base,
            ipv4_address=ipv4,
            ipv6_address=ipv6,
            as_number=config.as_number if config.as_number is not None else base.as_number,
            router_id=rid or base.router_id,
        )

    nodes.update(config.node_name, change)
    if config.backend != "none":
        # Tunnel addresses and VTEP MACs from the encapsulated pools; an IPIP pool on a
        # kernel without ipip stops the start with one line (never silence).
        settings = tunnel_settings(
            nodes.get(config.node_name) or Node(config.node_name), load_pools(store), config.backend
        )
        check_ipip_supported(settings, not settings.enabled(IPIP) or kernel_ipip())
        ensure_tunnel_addresses(store, config.node_name, config.backend, log)
    write_nodename_file(config.nodename_file, config.node_name)
    warnings: list[str] = []
    if config.backend != "none":
        uses_v6 = ipv6 is not None and config.ipv6_support
        warnings = prepare(host, config.ip_forwarding, ipv4 is not None, uses_v6, log)
        if uses_v6 and not any(a.address == _host(ipv6) for a in host_addrs):
            warnings.append(f"IPv6 address {ipv6} is not on any interface of this host")
            log.warning("%s", warnings[-1])
    log.info(
        "startup done: node %s, IPv4 %s, IPv6 %s, router id %s, AS %d",
        config.node_name,
        ipv4 or "none",
        ipv6 or "none",
        rid or "none",
        as_number,
    )
    return StartupResult(
        node_name=config.node_name,
        ipv4=ipv4,
        ipv6=ipv6,
        router_id=rid,
        as_number=as_number,
        ipv6_support=config.ipv6_support,
        backend=config.backend,
        run_dir=config.run_dir,
        warnings=tuple(warnings),
    )


def redetect(
    config: NodeConfig,
    store: Datastore,
    previous: StartupResult,
    log: logging.Logger,
    host: Host | None = None,
) -> StartupResult:
    """AUTODETECT_POLL_INTERVAL: detect again; update the Node only when an address moved."""
    host = host or Host()
    if config.backend == "none":
        return previous
    nodes = NodeService(store)
    host_addrs = host.addresses()
    ipv4, ipv6 = previous.ipv4, previous.ipv6
    # IP "" means "autodetect only when nothing is stored" (§10): once stored, it is kept.
    if config.ip.lower() == "autodetect":
        ipv4 = detect(config.ip_method, 4, host_addrs, config.k8s_node_file).address.interface
    if config.ip6.lower() == "autodetect":
        ipv6 = detect(config.ip6_method, 6, host_addrs, config.k8s_node_file).address.interface
    if (ipv4, ipv6) == (previous.ipv4, previous.ipv6):
        return previous
    _check_conflicts(nodes, config.node_name, ipv4, ipv6, log)
    rid = router_id(config.router_id, config.node_name, ipv4)
    log.info(
        "address change detected: IPv4 %s -> %s, IPv6 %s -> %s",
        previous.ipv4,
        ipv4,
        previous.ipv6,
        ipv6,
    )

    def change(old: Node | None) -> Node:
        return replace(
            old or Node(name=config.node_name), ipv4_address=ipv4, ipv6_address=ipv6, router_id=rid
        )

    nodes.update(config.node_name, change)
    return dataclasses.replace(previous, ipv4=ipv4, ipv6=ipv6, router_id=rid)
