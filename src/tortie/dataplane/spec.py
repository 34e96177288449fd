"""What a pod's network should look like, Calico's interface naming, input validation."""

from __future__ import annotations

import ipaddress

from tortie.core.record import record
from tortie.errors import InvalidInput

TYPE_CHECKING = False  # typing costs ms to import in the per-pod CNI process
if TYPE_CHECKING:
    from collections.abc import Sequence

IFNAMSIZ_MAX = 15  # Linux interface names: at most 15 bytes
HOST_MAC = "ee:ee:ee:ee:ee:ee"
HOST_LINK_LOCAL = "fe80::ecee:eeff:feee:eeee"  # EUI-64 link-local of HOST_MAC
IPV4_GATEWAY = "169.254.1.1"
# Linux forbids "/", ":" and whitespace; ip -batch would also misread quotes, "#", "\".
_BAD_NAME_CHARS = frozenset("/:#\"'\\")


@record
class PodNetwork:
    """The dataplane wanted for one pod interface (see calico-behaviour.md §4)."""

    host_ifname: str  # e.g. "calic440f455693"
    pod_ifname: str  # CNI_IFNAME, e.g. "eth0"
    netns: str  # /var/run/netns/x or /proc/<pid>/ns/net
    addresses: tuple[str, ...]  # "10.0.0.5/32", "fd00::5/128" (or bare addresses)
    mtu: int = 1500
    allow_ip_forwarding: bool = False


@record
class PodInterfaces:
    """The two ends of the veth pair as created."""

    host_ifname: str
    host_mac: str
    pod_ifname: str
    pod_mac: str


class Addresses:
    """Validated pod addresses without prefix, split by family, compressed form.
    (A plain class: each dataclass costs ~0.5 ms at import, paid per pod.)"""

    __slots__ = ("v4", "v6")

    def __init__(self, v4: tuple[str, ...], v6: tuple[str, ...]) -> None:
        self.v4 = v4
        self.v6 = v6

    def host_routes(self) -> list[str]:
        return [f"{a}/32" for a in self.v4] + [f"{a}/128" for a in self.v6]


def host_veth_name(
    container_id: str, namespace: str | None, pod: str | None, prefix: str = "cali"
) -> str:
    """Calico's host-side name: prefix + sha1("<ns>.<pod>")[:11], else container ID[:11]."""
    if namespace and pod:
        import hashlib

        return prefix + hashlib.sha1(f"{namespace}.{pod}".encode()).hexdigest()[:11]
    if not container_id:
        raise InvalidInput(
            "host veth name: no container ID and no Kubernetes namespace/pod: pass "
            "CNI_CONTAINERID or K8S_POD_NAMESPACE and K8S_POD_NAME"
        )
    return prefix + container_id[:11]


def check_ifname(name: str, what: str) -> None:
    """``InvalidInput`` unless ``name`` is a usable Linux interface name."""
    if not name or len(name.encode()) > IFNAMSIZ_MAX:
        raise InvalidInput(
            f"{what} {name!r} is {len(name.encode())} bytes long: Linux interface names "
            f"must be 1 to {IFNAMSIZ_MAX} bytes; choose a shorter name"
        )
    if name in (".", "..") or any(c.isspace() or c in _BAD_NAME_CHARS for c in name):
        raise InvalidInput(
            f"{what} {name!r} is not a valid interface name: it must not be '.' or '..' "
            "nor contain whitespace or any of / : # ' \" \\"
        )


def parse_addresses(addresses: Sequence[str]) -> Addresses:
    """Split pod addresses by family; each must be one address (/32, /128 or bare)."""
    v4: list[str] = []
    v6: list[str] = []
    for text in addresses:
        try:
            iface = ipaddress.ip_interface(text)
        except ValueError:
            raise InvalidInput(
                f"pod address {text!r} is not an IP address: pass e.g. 10.0.0.5/32 or fd00::5/128"
            ) from None
        full = 32 if iface.version == 4 else 128
        if iface.network.prefixlen != full:
            raise InvalidInput(
                f"pod address {text} has prefix /{iface.network.prefixlen}: pod addresses are "
                f"single addresses; pass {iface.ip}/{full}"
            )
        target = v4 if iface.version == 4 else v6
        if str(iface.ip) not in target:
            target.append(str(iface.ip))
    return Addresses(tuple(v4), tuple(v6))


def validate(net: PodNetwork) -> Addresses:
    """Check a ``PodNetwork`` before touching anything; return its addresses."""
    check_ifname(net.host_ifname, "host interface name")
    check_ifname(net.pod_ifname, "pod interface name")
    if not 68 <= net.mtu <= 65535:
        raise InvalidInput(
            f"MTU {net.mtu} for pod interface {net.pod_ifname} is out of range: use 68 to 65535"
        )
    if not net.netns:
        raise InvalidInput("pod network namespace path is empty: pass CNI_NETNS")
    addrs = parse_addresses(net.addresses)
    if not (addrs.v4 or addrs.v6):
        raise InvalidInput(
            f"pod interface {net.pod_ifname} has no addresses: IPAM must return at least one"
        )
    return addrs
