"""WorkloadEndpoint in Calico's ``projectcalico.org/v3`` format.

Every field of Calico's v3 WorkloadEndpointSpec is carried.  Fields tortie reads are
typed; fields it only passes along (``qosControls``, ``awsElasticIPs``, and any field a
newer Calico adds) are kept as written, so a read/write round trip never loses data.

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
    get_int,
    get_str,
    get_str_list,
    object_name,
    read_metadata,
    read_objects,
    write_metadata,
)

TYPE_CHECKING = False  # typing stays unimported at run time: plugin start-up
if TYPE_CHECKING:
    from typing import Any

__all__ = [
    "IPNAT",
    "WorkloadEndpoint",
    "WorkloadEndpointPort",
    "workloadendpoint_from_dict",
    "workloadendpoint_to_dict",
]

_MAC = re.compile(r"[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}")
_IFNAME = re.compile(r"[^\s/:]{1,15}")
_PROTOCOLS = ("TCP", "UDP", "SCTP", "ICMP", "ICMPv6", "UDPLite")


@record
class IPNAT:
    internal_ip: str
    external_ip: str


@record
class WorkloadEndpointPort:
    name: str
    protocol: str
    port: int
    host_port: int = 0
    host_ip: str = ""


@record
class WorkloadEndpoint:
    """A pod's, container's or VM's interface; ``ip_networks`` are /32 and /128 CIDRs.

    ``extra_spec`` holds spec fields tortie does not interpret, exactly as read.
    """

    name: str
    namespace: str = "default"
    orchestrator: str = ""
    workload: str = ""
    node: str = ""
    pod: str = ""
    endpoint: str = ""
    container_id: str = ""
    ip_networks: tuple[str, ...] = ()
    profiles: tuple[str, ...] = ()
    interface_name: str = ""
    mac: str = ""
    ip_nats: tuple[IPNAT, ...] = ()
    ipv4_gateway: str = ""
    ipv6_gateway: str = ""
    allowed_ips: tuple[str, ...] = ()
    allow_spoofed_source_prefixes: tuple[str, ...] = ()
    service_account_name: str = ""
    ports: tuple[WorkloadEndpointPort, ...] = ()
    extra_spec: Mapping[str, Any] = field(default_factory=dict)
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    uid: str | None = None
    creation_timestamp: str | None = None
    resource_version: str | None = None


_WEP_STR_FIELDS = (
    ("orchestrator", "orchestrator"),
    ("workload", "workload"),
    ("node", "node"),
    ("pod", "pod"),
    ("endpoint", "endpoint"),
    ("containerID", "container_id"),
    ("serviceAccountName", "service_account_name"),
)
_TYPED_SPEC_FIELDS = (
    *(key for key, _ in _WEP_STR_FIELDS),
    "ipNetworks",
    "profiles",
    "interfaceName",
    "mac",
    "ipNATs",
    "ipv4Gateway",
    "ipv6Gateway",
    "allowedIps",
    "allowSpoofedSourcePrefixes",
    "ports",
)
# Calico's spec fields tortie passes along untouched.
_PASSED_SPEC_FIELDS = ("qosControls", "awsElasticIPs")


def workloadendpoint_from_dict(d: Mapping[str, Any], *, strict: bool = True) -> WorkloadEndpoint:
    """Parse and validate a v3 WorkloadEndpoint.

    ``strict`` (a file a person wrote) refuses spec fields Calico does not define; not
    strict (what a datastore holds) keeps them in ``extra_spec``: they may come from a
    newer Calico or another writer, and are written back unchanged."""
    obj = object_name("WorkloadEndpoint", d, namespaced=True)
    top = check_top(obj, d, ("WorkloadEndpoint",), (API_VERSION,), strict)
    meta = read_metadata(obj, top, strict=strict, namespaced=True)
    obj = f"WorkloadEndpoint({meta.namespace}/{meta.name})"
    spec = as_mapping(obj, "spec", top.get("spec"))
    check_known(obj, "spec", spec, _TYPED_SPEC_FIELDS + _PASSED_SPEC_FIELDS, strict)
    strings = {attr: get_str(obj, "spec", spec, key, "") for key, attr in _WEP_STR_FIELDS}
    interface = get_str(obj, "spec", spec, "interfaceName", "")
    if interface and not _IFNAME.fullmatch(interface):
        fail(
            obj,
            f"spec.interfaceName {interface!r} is not a Linux interface name",
            "use at most 15 characters without spaces, '/' or ':'",
        )
    mac = get_str(obj, "spec", spec, "mac", "")
    if mac and not _MAC.fullmatch(mac):
        fail(obj, f"spec.mac {mac!r} is not a MAC address", "write it like ee:ee:ee:ee:ee:ee")
    return WorkloadEndpoint(
        name=meta.name,
        namespace=meta.namespace,
        ip_networks=_networks(obj, spec, "ipNetworks"),
        profiles=get_str_list(obj, "spec", spec, "profiles"),
        interface_name=interface,
        mac=mac.lower(),
        ip_nats=_ip_nats(obj, spec.get("ipNATs"), strict),
        ipv4_gateway=_gateway(obj, spec, "ipv4Gateway", 4),
        ipv6_gateway=_gateway(obj, spec, "ipv6Gateway", 6),
        allowed_ips=_networks(obj, spec, "allowedIps"),
        allow_spoofed_source_prefixes=_prefixes(obj, spec, "allowSpoofedSourcePrefixes"),
        ports=_ports(obj, spec.get("ports"), strict),
        extra_spec={k: v for k, v in spec.items() if k not in _TYPED_SPEC_FIELDS},
        labels=meta.labels,
        annotations=meta.annotations,
        uid=meta.uid,
        creation_timestamp=meta.creation_timestamp,
        resource_version=meta.resource_version,
        **strings,
    )


def workloadendpoint_to_dict(w: WorkloadEndpoint) -> dict[str, Any]:
    spec: dict[str, Any] = {}
    for key, attr in _WEP_STR_FIELDS:
        value = getattr(w, attr)
        if value:
            spec[key] = value
    if w.ip_networks:
        spec["ipNetworks"] = list(w.ip_networks)
    if w.ipv4_gateway:
        spec["ipv4Gateway"] = w.ipv4_gateway
    if w.ipv6_gateway:
        spec["ipv6Gateway"] = w.ipv6_gateway
    if w.allowed_ips:
        spec["allowedIps"] = list(w.allowed_ips)
    if w.allow_spoofed_source_prefixes:
        spec["allowSpoofedSourcePrefixes"] = list(w.allow_spoofed_source_prefixes)
    if w.profiles:
        spec["profiles"] = list(w.profiles)
    if w.interface_name:
        spec["interfaceName"] = w.interface_name
    if w.mac:
        spec["mac"] = w.mac
    if w.ip_nats:
        spec["ipNATs"] = [
            {"internalIP": n.internal_ip, "externalIP": n.external_ip} for n in w.ip_nats
        ]
    if w.ports:
        spec["ports"] = [_port_to_dict(p) for p in w.ports]
    for key, value in w.extra_spec.items():
        spec.setdefault(key, value)
    return {
        "apiVersion": API_VERSION,
        "kind": "WorkloadEndpoint",
        "metadata": write_metadata(
            w.name,
            w.labels,
            w.annotations,
            w.uid,
            w.creation_timestamp,
            w.resource_version,
            namespace=w.namespace,
        ),
        "spec": spec,
    }


def _networks(obj: str, spec: Mapping[str, Any], key: str) -> tuple[str, ...]:
    return tuple(
        _host_network(obj, f"spec.{key}[{i}]", text)
        for i, text in enumerate(get_str_list(obj, "spec", spec, key))
    )


def _prefixes(obj: str, spec: Mapping[str, Any], key: str) -> tuple[str, ...]:
    out = []
    for i, text in enumerate(get_str_list(obj, "spec", spec, key)):
        try:
            out.append(str(ipaddress.ip_network(text, strict=False)))
        except ValueError:
            fail(obj, f"spec.{key}[{i}] {text!r} is not a CIDR", "write it like 10.0.0.0/24")
    return tuple(out)


def _gateway(obj: str, spec: Mapping[str, Any], key: str, version: int) -> str:
    text = get_str(obj, "spec", spec, key, "")
    if not text:
        return ""
    addr = _plain_address(obj, f"spec.{key}", text)
    if ipaddress.ip_address(addr).version != version:
        fail(
            obj,
            f"spec.{key} {text} is not an IPv{version} address",
            f"give an IPv{version} gateway",
        )
    return addr


def _host_network(obj: str, path: str, text: str) -> str:
    """A /32 or /128 CIDR; a bare address gets its full-length prefix."""
    try:
        iface = ipaddress.ip_interface(text)
    except ValueError:
        fail(obj, f"{path} {text!r} is not an IP address or CIDR", "write it like 10.0.0.5/32")
    full = iface.max_prefixlen
    if iface.network.prefixlen != full:
        fail(obj, f"{path} {text} is not a single address", f"use {iface.ip}/{full}")
    return f"{iface.ip}/{full}"


def _plain_address(obj: str, path: str, text: str) -> str:
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        fail(obj, f"{path} {text!r} is not an IP address", "write a bare address like 10.0.0.5")


def _ip_nats(obj: str, value: object, strict: bool) -> tuple[IPNAT, ...]:
    def one(path: str, data: Mapping[str, Any]) -> IPNAT:
        internal = get_str(obj, path, data, "internalIP", "")
        external = get_str(obj, path, data, "externalIP", "")
        return IPNAT(
            _plain_address(obj, f"{path}.internalIP", internal),
            _plain_address(obj, f"{path}.externalIP", external),
        )

    return read_objects(obj, "spec.ipNATs", value, ("internalIP", "externalIP"), strict, one)


def _ports(obj: str, value: object, strict: bool) -> tuple[WorkloadEndpointPort, ...]:
    def one(path: str, data: Mapping[str, Any]) -> WorkloadEndpointPort:
        protocol = data.get("protocol", "TCP")
        if isinstance(protocol, str):
            canonical = {p.lower(): p for p in _PROTOCOLS}.get(protocol.lower())
            if canonical is None:
                fail(obj, f"{path}.protocol {protocol!r} is unknown", f"use one of {_PROTOCOLS}")
            protocol = canonical
        elif (
            isinstance(protocol, bool) or not isinstance(protocol, int) or not 1 <= protocol <= 255
        ):
            fail(obj, f"{path}.protocol {protocol!r} is invalid", "use TCP, UDP, SCTP or 1-255")
        host_ip = get_str(obj, path, data, "hostIP", "")
        return WorkloadEndpointPort(
            name=get_str(obj, path, data, "name", ""),
            protocol=str(protocol),
            port=get_int(obj, path, data, "port", 0, 1, 65535),
            host_port=get_int(obj, path, data, "hostPort", 0, 0, 65535),
            host_ip=_plain_address(obj, f"{path}.hostIP", host_ip) if host_ip else "",
        )

    known = ("name", "protocol", "port", "hostPort", "hostIP")
    return read_objects(obj, "spec.ports", value, known, strict, one)


def _port_to_dict(p: WorkloadEndpointPort) -> dict[str, Any]:
    out: dict[str, Any] = {
        "name": p.name,
        "protocol": int(p.protocol) if p.protocol.isdigit() else p.protocol,
        "port": p.port,
    }
    if p.host_port:
        out["hostPort"] = p.host_port
    if p.host_ip:
        out["hostIP"] = p.host_ip
    return out
