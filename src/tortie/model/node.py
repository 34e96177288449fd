"""Node in Calico's ``projectcalico.org/v3`` format (addresses keep their prefix).

Standard library only: the CNI plugins import this module.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping

from tortie.core.record import field, record
from tortie.model.fields import (
    API_VERSION,
    as_mapping,
    check_known,
    check_top,
    fail,
    get_str,
    object_name,
    read_metadata,
    read_objects,
    write_metadata,
)

TYPE_CHECKING = False  # typing stays unimported at run time: plugin start-up
if TYPE_CHECKING:
    from typing import Any

# --------------------------------------------------------------------------------------
# Node
# --------------------------------------------------------------------------------------

MAX_AS_NUMBER = 4294967295


@record
class OrchRef:
    orchestrator: str
    node_name: str = ""


@record
class Node:
    """A Calico node; addresses keep their prefix (``10.0.0.5/24``), canonical text."""

    name: str
    ipv4_address: str | None = None
    ipv6_address: str | None = None
    as_number: int | None = None
    router_id: str | None = None
    route_reflector_cluster_id: str | None = None
    ipv4_ipip_tunnel_addr: str | None = None
    ipv4_vxlan_tunnel_addr: str | None = None
    ipv6_vxlan_tunnel_addr: str | None = None
    vxlan_tunnel_mac: str | None = None
    vxlan_tunnel_mac_v6: str | None = None
    orch_refs: tuple[OrchRef, ...] = ()
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    uid: str | None = None
    creation_timestamp: str | None = None
    resource_version: str | None = None


_NODE_BGP_FIELDS = (
    "ipv4Address",
    "ipv6Address",
    "asNumber",
    "routerID",
    "ipv4IPIPTunnelAddr",
    "routeReflectorClusterID",
)
_NODE_SPEC_FIELDS = (
    "bgp",
    "ipv4VXLANTunnelAddr",
    "vxlanTunnelMACAddr",
    "ipv6VXLANTunnelAddr",
    "vxlanTunnelMACAddrV6",
    "orchRefs",
)
_MAC = re.compile(r"[0-9a-f]{2}(:[0-9a-f]{2}){5}")


def node_from_dict(d: Mapping[str, Any], *, strict: bool = True) -> Node:
    """Parse and validate a v3 Node."""
    obj = object_name("Node", d)
    top = check_top(obj, d, ("Node",), (API_VERSION,), strict)
    meta = read_metadata(obj, top, strict=strict)
    obj = f"Node({meta.name})"
    spec = as_mapping(obj, "spec", top.get("spec"))
    check_known(obj, "spec", spec, _NODE_SPEC_FIELDS, strict)
    bgp = as_mapping(obj, "spec.bgp", spec.get("bgp"))
    check_known(obj, "spec.bgp", bgp, _NODE_BGP_FIELDS, strict)
    return Node(
        name=meta.name,
        ipv4_address=_interface(obj, "spec.bgp", bgp, "ipv4Address", 4),
        ipv6_address=_interface(obj, "spec.bgp", bgp, "ipv6Address", 6),
        as_number=_as_number(obj, bgp.get("asNumber")),
        router_id=_router_id(obj, bgp.get("routerID")),
        route_reflector_cluster_id=_cluster_id(obj, bgp.get("routeReflectorClusterID")),
        ipv4_ipip_tunnel_addr=_address(obj, "spec.bgp", bgp, "ipv4IPIPTunnelAddr", 4),
        ipv4_vxlan_tunnel_addr=_address(obj, "spec", spec, "ipv4VXLANTunnelAddr", 4),
        ipv6_vxlan_tunnel_addr=_address(obj, "spec", spec, "ipv6VXLANTunnelAddr", 6),
        vxlan_tunnel_mac=_mac(obj, spec, "vxlanTunnelMACAddr"),
        vxlan_tunnel_mac_v6=_mac(obj, spec, "vxlanTunnelMACAddrV6"),
        orch_refs=_orch_refs(obj, spec.get("orchRefs"), strict),
        labels=meta.labels,
        annotations=meta.annotations,
        uid=meta.uid,
        creation_timestamp=meta.creation_timestamp,
        resource_version=meta.resource_version,
    )


def node_to_dict(n: Node) -> dict[str, Any]:
    bgp: dict[str, Any] = {}
    for key, value in (
        ("ipv4Address", n.ipv4_address),
        ("ipv6Address", n.ipv6_address),
        ("asNumber", n.as_number),
        ("routerID", n.router_id),
        ("routeReflectorClusterID", n.route_reflector_cluster_id),
        ("ipv4IPIPTunnelAddr", n.ipv4_ipip_tunnel_addr),
    ):
        if value is not None:
            bgp[key] = value
    spec: dict[str, Any] = {}
    if bgp:
        spec["bgp"] = bgp
    for key, text in (
        ("ipv4VXLANTunnelAddr", n.ipv4_vxlan_tunnel_addr),
        ("vxlanTunnelMACAddr", n.vxlan_tunnel_mac),
        ("ipv6VXLANTunnelAddr", n.ipv6_vxlan_tunnel_addr),
        ("vxlanTunnelMACAddrV6", n.vxlan_tunnel_mac_v6),
    ):
        if text is not None:
            spec[key] = text
    if n.orch_refs:
        spec["orchRefs"] = [
            {"nodeName": r.node_name, "orchestrator": r.orchestrator}
            if r.node_name
            else {"orchestrator": r.orchestrator}
            for r in n.orch_refs
        ]
    return {
        "apiVersion": API_VERSION,
        "kind": "Node",
        "metadata": write_metadata(
            n.name, n.labels, n.annotations, n.uid, n.creation_timestamp, n.resource_version
        ),
        "spec": spec,
    }


def _interface(obj: str, path: str, data: Mapping[str, Any], key: str, version: int) -> str | None:
    text = get_str(obj, path, data, key, "")
    if not text:
        return None
    example = "10.0.0.5/24" if version == 4 else "fd00::5/64"
    if "/" not in text:
        fail(obj, f"{path}.{key} {text!r} has no prefix length", f"write it like {example}")
    try:
        iface = ipaddress.ip_interface(text)
    except ValueError:
        fail(
            obj, f"{path}.{key} {text!r} is not an IPv{version} address", f"write it like {example}"
        )
    if iface.version != version or not text.partition("/")[2].isdigit():
        fail(
            obj, f"{path}.{key} {text!r} is not an IPv{version} address", f"write it like {example}"
        )
    return str(iface)


def _address(obj: str, path: str, data: Mapping[str, Any], key: str, version: int) -> str | None:
    text = get_str(obj, path, data, key, "")
    if not text:
        return None
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        addr = None
    if addr is None or addr.version != version:
        fail(obj, f"{path}.{key} {text!r} is not an IPv{version} address", "write a bare address")
    return str(addr)


def _mac(obj: str, spec: Mapping[str, Any], key: str) -> str | None:
    text = get_str(obj, "spec", spec, key, "")
    if not text:
        return None
    canonical = text.lower().replace("-", ":")
    if not _MAC.fullmatch(canonical):
        fail(obj, f"spec.{key} {text!r} is not a MAC address", "write it like 66:a1:b2:c3:d4:e5")
    return canonical


def _as_number(obj: str, value: object) -> int | None:
    if value is None or value == "":
        return None
    number: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and value.isdigit():
        number = int(value)
    elif isinstance(value, str) and re.fullmatch(r"\d+\.\d+", value):
        high, low = (int(part) for part in value.split("."))
        if high <= 0xFFFF and low <= 0xFFFF:
            number = high * 65536 + low
    hint = ' (quote an asdot number: "1.10")' if isinstance(value, float) else ""
    if number is None or not 1 <= number <= MAX_AS_NUMBER:
        fail(
            obj,
            f"spec.bgp.asNumber {value!r} is not an AS number{hint}",
            'use 1-4294967295 or asdot notation like "1.10"',
        )
    return number


def _router_id(obj: str, value: object) -> str | None:
    if value is None or value == "":
        return None
    addr: ipaddress.IPv4Address | None = None
    if isinstance(value, str):
        try:
            addr = ipaddress.IPv4Address(value)
        except ValueError:
            addr = None
    if addr is None or addr.packed == b"\0\0\0\0":
        fail(
            obj,
            f"spec.bgp.routerID {value!r} is not a non-zero dotted-quad IPv4 address",
            "write it like 10.0.0.1",
        )
    return str(addr)


def _cluster_id(obj: str, value: object) -> str | None:
    if value is None or value == "":
        return None
    try:
        return str(ipaddress.IPv4Address(str(value)))
    except ValueError:
        fail(
            obj,
            f"spec.bgp.routeReflectorClusterID {value!r} is not a dotted-quad IPv4 address",
            "write it like 224.0.0.1",
        )


def _orch_refs(obj: str, value: object, strict: bool) -> tuple[OrchRef, ...]:
    def one(path: str, data: Mapping[str, Any]) -> OrchRef:
        orchestrator = get_str(obj, path, data, "orchestrator", "")
        if not orchestrator:
            fail(obj, f"{path}.orchestrator is missing", "name the orchestrator, e.g. k8s")
        return OrchRef(orchestrator, get_str(obj, path, data, "nodeName", ""))

    return read_objects(obj, "spec.orchRefs", value, ("orchestrator", "nodeName"), strict, one)
