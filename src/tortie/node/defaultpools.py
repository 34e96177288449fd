"""Default IP pools at node startup (calico-behaviour.md §10).

A family gets ``default-ipv4-ippool`` / ``default-ipv6-ippool`` only when no pool of that
family exists (IPv6: and the node has an IPv6 address or CALICO_IPV6POOL_CIDR is set), so the first node creates them and every later start (or node) finds them.
Two nodes starting at once both try to create the same name: one wins, the other sees it.
"""

from __future__ import annotations

import ipaddress
import secrets
from collections.abc import Sequence

from tortie.datastore.base import Datastore
from tortie.errors import AlreadyExists, InvalidInput
from tortie.ipam.admin import Admin
from tortie.ipam.pools import load_pools
from tortie.node.config import NodeConfig, PoolSettings

TYPE_CHECKING = False
if TYPE_CHECKING:
    import logging

DEFAULT_IPV4_CIDR = "192.168.0.0/16"
_ENCAP = {"always": "Always", "crosssubnet": "CrossSubnet", "never": "Never", "off": "Never"}


def default_ipv4_cidr(host_addresses: Sequence[str]) -> str:
    """192.168.0.0/16, or the first 172.16–31.0.0/16 that holds none of the host's addresses."""
    hosts = [ipaddress.ip_address(a) for a in host_addresses]
    for cidr in [DEFAULT_IPV4_CIDR] + [f"172.{n}.0.0/16" for n in range(16, 32)]:
        net = ipaddress.ip_network(cidr)
        if not any(h in net for h in hosts):
            return cidr
    raise InvalidInput(
        "every default IPv4 pool range (192.168.0.0/16, 172.16-31.0.0/16) holds a host "
        "address; set CALICO_IPV4POOL_CIDR"
    )


def random_ula48() -> str:
    """A random unique-local /48 (fdXX:XXXX:XXXX::/48), as Calico picks."""
    raw = bytes([0xFD]) + secrets.token_bytes(5) + bytes(10)
    return str(ipaddress.IPv6Network((raw, 48)))


def _encap(variable: str, value: str) -> str:
    if not value:
        return "Never"
    mode = _ENCAP.get(value.lower())
    if mode is None:
        raise InvalidInput(
            f"{variable}={value[:40]!r} is not valid; use Always, CrossSubnet or Never"
        )
    return mode


_FIELD_VARIABLES = {
    "spec.cidr": "CIDR",
    "spec.blockSize": "BLOCK_SIZE",
    "spec.ipipMode": "IPIP",
    "spec.vxlanMode": "VXLAN",
    "spec.natOutgoing": "NAT_OUTGOING",
    "spec.nodeSelector": "NODE_SELECTOR",
}


def _name_variables(message: str, version: int) -> str:
    """The pool's own complaint, with each field named by the variable that set it."""
    for field, suffix in _FIELD_VARIABLES.items():
        message = message.replace(field, f"CALICO_IPV{version}POOL_{suffix} ({field})")
    return message


def pool_document(p: PoolSettings, cidr: str) -> dict[str, object]:
    prefix = f"CALICO_IPV{p.version}POOL_"
    spec: dict[str, object] = {
        "cidr": cidr,
        "blockSize": p.block_size,
        "natOutgoing": p.nat_outgoing,
        "nodeSelector": p.node_selector or "all()",
        "vxlanMode": _encap(prefix + "VXLAN", p.vxlan),
    }
    if p.version == 4:
        spec["ipipMode"] = _encap(prefix + "IPIP", p.ipip)
    return {
        "apiVersion": "projectcalico.org/v3",
        "kind": "IPPool",
        "metadata": {"name": f"default-ipv{p.version}-ippool"},
        "spec": spec,
    }


def ensure_default_pools(
    store: Datastore,
    config: NodeConfig,
    host_addresses: Sequence[str],
    log: logging.Logger,
    node_has_ipv6: bool = True,
) -> list[str]:
    """Create the missing default pools; returns the names created by this call."""
    if config.no_default_pools:
        log.info("NO_DEFAULT_POOLS is set: no default pools created")
        return []
    families = {p.version for p in load_pools(store)}
    created = []
    for settings in (config.pool4, config.pool6):
        v = settings.version
        if settings.cidr.lower() == "none" or v in families:
            continue
        if v == 6 and not (config.ipv6_support and (settings.cidr or node_has_ipv6)):
            # Better than Calico: no surprise IPv6 pool for a node that uses no IPv6 (it
            # would make the next start fail on "IP6 empty while an IPv6 pool exists").
            continue
        cidr = settings.cidr or (default_ipv4_cidr(host_addresses) if v == 4 else random_ula48())
        try:
            net = ipaddress.ip_network(cidr, strict=False)
        except ValueError:
            net = None
        if net is None or net.version != v:
            raise InvalidInput(
                f"CALICO_IPV{v}POOL_CIDR={cidr[:60]!r} is not an IPv{v} CIDR; "
                f"set it to e.g. {'10.244.0.0/16' if v == 4 else 'fd00:10:244::/48'}"
            )
        doc = pool_document(settings, cidr)
        admin = Admin(store)
        try:
            admin.execute(admin.plan("create", [doc]))
        except InvalidInput as exc:
            raise InvalidInput(_name_variables(str(exc), v)) from None
        except AlreadyExists:
            log.info("default IPv%d pool was created by another node meanwhile", v)
            continue
        log.info("created default IPv%d pool default-ipv%d-ippool (%s)", v, v, cidr)
        created.append(f"default-ipv{v}-ippool")
    return created
