"""IPAMConfiguration and Node in Calico's ``projectcalico.org/v3``
format, and the registry of every resource kind tortie handles (WorkloadEndpoint
lives in ``model.workloadendpoint`` and is re-exported here).

Standard library only: the CNI plugins import this module.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Mapping

from tortie.core.record import field, record
from tortie.errors import InvalidInput
from tortie.model.ippool import (
    API_VERSION,
    CRD_API_VERSION,
    as_mapping,
    check_known,
    check_top,
    fail,
    get_bool,
    get_int,
    get_str,
    ippool_from_dict,
    ippool_to_dict,
    object_name,
    read_metadata,
    type_name,
    write_metadata,
)
from tortie.model.workloadendpoint import (
    IPNAT,
    WorkloadEndpoint,
    WorkloadEndpointPort,
    workloadendpoint_from_dict,
    workloadendpoint_to_dict,
)

TYPE_CHECKING = False  # typing stays unimported at run time: plugin start-up
if TYPE_CHECKING:
    from typing import Any, Protocol
else:
    Protocol = object

__all__ = [
    "IPNAT",
    "KINDS",
    "IPAMConfig",
    "KindInfo",
    "Node",
    "OrchRef",
    "WorkloadEndpoint",
    "WorkloadEndpointPort",
    "ipamconfig_from_dict",
    "ipamconfig_from_v2",
    "ipamconfig_to_dict",
    "ipamconfig_to_v2",
    "kind_for_cli_name",
    "node_from_dict",
    "node_to_dict",
    "workloadendpoint_from_dict",
    "workloadendpoint_to_dict",
]

# --------------------------------------------------------------------------------------
# IPAMConfiguration
# --------------------------------------------------------------------------------------

MAX_INT32 = 2147483647


@record
class IPAMConfig:
    """Cluster-wide IPAM settings (the single ``default`` object).

    ``max_blocks_per_host`` 0 means Calico's default limit (20).
    """

    strict_affinity: bool = False
    auto_allocate_blocks: bool = True
    max_blocks_per_host: int = 0
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    uid: str | None = None
    creation_timestamp: str | None = None
    resource_version: str | None = None

    @property
    def name(self) -> str:
        return "default"


def _check_ipamconfig(obj: str, strict_affinity: bool, auto: bool, max_blocks: int) -> None:
    if not strict_affinity and not auto:
        fail(
            obj,
            "strictAffinity false together with autoAllocateBlocks false leaves no way to "
            "get an address",
            "enable strictAffinity or autoAllocateBlocks",
        )
    if max_blocks > 0 and not strict_affinity:
        fail(
            obj,
            f"maxBlocksPerHost {max_blocks} needs strictAffinity",
            "set strictAffinity: true or maxBlocksPerHost: 0",
        )


def ipamconfig_from_dict(d: Mapping[str, Any], *, strict: bool = True) -> IPAMConfig:
    """Parse and validate a v3 IPAMConfiguration (alias ``IPAMConfig``)."""
    obj = object_name("IPAMConfiguration", d)
    top = check_top(
        obj, d, ("IPAMConfiguration", "IPAMConfig"), (API_VERSION, CRD_API_VERSION), strict
    )
    meta = read_metadata(obj, top, strict=strict)
    if meta.name != "default":
        fail(obj, f"metadata.name is {meta.name!r}; there is only one", "name it default")
    spec = as_mapping(obj, "spec", top.get("spec"))
    check_known(
        obj, "spec", spec, ("strictAffinity", "autoAllocateBlocks", "maxBlocksPerHost"), strict
    )
    strict_affinity = get_bool(obj, "spec", spec, "strictAffinity", False)
    auto = get_bool(obj, "spec", spec, "autoAllocateBlocks", True)
    max_blocks = get_int(obj, "spec", spec, "maxBlocksPerHost", 0, 0, MAX_INT32)
    _check_ipamconfig(obj, strict_affinity, auto, max_blocks)
    return IPAMConfig(
        strict_affinity=strict_affinity,
        auto_allocate_blocks=auto,
        max_blocks_per_host=max_blocks,
        labels=meta.labels,
        annotations=meta.annotations,
        uid=meta.uid,
        creation_timestamp=meta.creation_timestamp,
        resource_version=meta.resource_version,
    )


def ipamconfig_to_dict(c: IPAMConfig) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": "IPAMConfiguration",
        "metadata": write_metadata(
            "default", c.labels, c.annotations, c.uid, c.creation_timestamp, c.resource_version
        ),
        "spec": {
            "strictAffinity": c.strict_affinity,
            "autoAllocateBlocks": c.auto_allocate_blocks,
            "maxBlocksPerHost": c.max_blocks_per_host,
        },
    }


# Calico's stored form (/calico/ipam/v2/config).  Its Go struct tags are
# strict_affinity, auto_allocate_blocks and -- unlike the other two -- maxBlocksPerHost,
# all omitempty: a missing key is false/0.  We read both spellings of the third.
_V2_MAX_BLOCKS = "maxBlocksPerHost"
_V2_MAX_BLOCKS_ALT = "max_blocks_per_host"


def ipamconfig_from_v2(d: Mapping[str, Any]) -> IPAMConfig:
    """Decode the stored v2 value (missing keys are false/0, as Go's omitempty wrote it)."""
    obj = "IPAMConfig(/calico/ipam/v2/config)"
    data = as_mapping(obj, "value", d)
    strict_affinity = get_bool(obj, "value", data, "strict_affinity", False)
    auto = get_bool(obj, "value", data, "auto_allocate_blocks", False)
    key = _V2_MAX_BLOCKS if _V2_MAX_BLOCKS in data else _V2_MAX_BLOCKS_ALT
    max_blocks = get_int(obj, "value", data, key, 0, 0, MAX_INT32)
    return IPAMConfig(
        strict_affinity=strict_affinity, auto_allocate_blocks=auto, max_blocks_per_host=max_blocks
    )


def ipamconfig_to_v2(c: IPAMConfig) -> dict[str, Any]:
    """The stored v2 value, every key written (Calico reads explicit zero values fine)."""
    return {
        "strict_affinity": c.strict_affinity,
        "auto_allocate_blocks": c.auto_allocate_blocks,
        _V2_MAX_BLOCKS: c.max_blocks_per_host,
    }


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
    ipv4_ipip_tunnel_addr: str | None = None
    ipv4_vxlan_tunnel_addr: str | None = None
    ipv6_vxlan_tunnel_addr: str | None = None
    orch_refs: tuple[OrchRef, ...] = ()
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    uid: str | None = None
    creation_timestamp: str | None = None
    resource_version: str | None = None


_NODE_BGP_FIELDS = ("ipv4Address", "ipv6Address", "asNumber", "routerID", "ipv4IPIPTunnelAddr")
_NODE_SPEC_FIELDS = ("bgp", "ipv4VXLANTunnelAddr", "ipv6VXLANTunnelAddr", "orchRefs")


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
        ipv4_ipip_tunnel_addr=_address(obj, "spec.bgp", bgp, "ipv4IPIPTunnelAddr", 4),
        ipv4_vxlan_tunnel_addr=_address(obj, "spec", spec, "ipv4VXLANTunnelAddr", 4),
        ipv6_vxlan_tunnel_addr=_address(obj, "spec", spec, "ipv6VXLANTunnelAddr", 6),
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
        ("ipv4IPIPTunnelAddr", n.ipv4_ipip_tunnel_addr),
    ):
        if value is not None:
            bgp[key] = value
    spec: dict[str, Any] = {}
    if bgp:
        spec["bgp"] = bgp
    if n.ipv4_vxlan_tunnel_addr is not None:
        spec["ipv4VXLANTunnelAddr"] = n.ipv4_vxlan_tunnel_addr
    if n.ipv6_vxlan_tunnel_addr is not None:
        spec["ipv6VXLANTunnelAddr"] = n.ipv6_vxlan_tunnel_addr
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


def _orch_refs(obj: str, value: object, strict: bool) -> tuple[OrchRef, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        fail(obj, f"spec.orchRefs must be a list, not {type_name(value)}", "write it as a list")
    refs = []
    for i, item in enumerate(value):
        path = f"spec.orchRefs[{i}]"
        data = as_mapping(obj, path, item)
        check_known(obj, path, data, ("orchestrator", "nodeName"), strict)
        orchestrator = get_str(obj, path, data, "orchestrator", "")
        if not orchestrator:
            fail(obj, f"{path}.orchestrator is missing", "name the orchestrator, e.g. k8s")
        refs.append(OrchRef(orchestrator, get_str(obj, path, data, "nodeName", "")))
    return tuple(refs)


# --------------------------------------------------------------------------------------
# Registry of kinds
# --------------------------------------------------------------------------------------


class FromDict(Protocol):
    def __call__(self, d: Mapping[str, Any], *, strict: bool = True) -> Any: ...


@record
class KindInfo:
    """What the CLI and datastore need to know about one resource kind."""

    kind: str
    plural: str
    namespaced: bool
    from_dict: FromDict
    to_dict: Callable[[Any], dict[str, Any]]
    cli_names: tuple[str, ...]
    api_versions: tuple[str, ...] = (API_VERSION,)

    @property
    def list_kind(self) -> str:
        return f"{self.kind}List"


_IPPOOL = KindInfo(
    "IPPool",
    "ippools",
    False,
    ippool_from_dict,
    ippool_to_dict,
    ("ippool", "ippools", "pool", "pools", "ipp", "ipps"),
    (API_VERSION, CRD_API_VERSION),
)
_IPAMCONFIG = KindInfo(
    "IPAMConfiguration",
    "ipamconfigurations",
    False,
    ipamconfig_from_dict,
    ipamconfig_to_dict,
    ("ipamconfiguration", "ipamconfigurations", "ipamconfig", "ipamconfigs"),
    (API_VERSION, CRD_API_VERSION),
)
_NODE = KindInfo("Node", "nodes", False, node_from_dict, node_to_dict, ("node", "nodes", "no"))
_WEP = KindInfo(
    "WorkloadEndpoint",
    "workloadendpoints",
    True,
    workloadendpoint_from_dict,
    workloadendpoint_to_dict,
    ("workloadendpoint", "workloadendpoints", "wep", "weps"),
)

KINDS: dict[str, KindInfo] = {
    "IPPool": _IPPOOL,
    "IPAMConfiguration": _IPAMCONFIG,
    "IPAMConfig": _IPAMCONFIG,
    "Node": _NODE,
    "WorkloadEndpoint": _WEP,
}


def kind_for_cli_name(name: str) -> KindInfo:
    """The kind a CLI resource name stands for (case-insensitive; kind names work too)."""
    wanted = name.strip().lower()
    for info in dict.fromkeys(KINDS.values()):
        if wanted in info.cli_names or wanted == info.kind.lower():
            return info
    valid = "; ".join(", ".join(info.cli_names) for info in dict.fromkeys(KINDS.values()))
    raise InvalidInput(f"unknown resource type {name!r}; use one of: {valid}")
