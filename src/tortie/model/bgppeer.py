"""BGPPeer in Calico's ``projectcalico.org/v3`` format (§16).

Calico's validation lives in ``bgppeer_from_dict``: ``node`` or ``nodeSelector``, not both;
``peerIP`` with ``asNumber`` or ``peerSelector``, not both; addresses, ports and AS
numbers in range; errors are one line naming the object, the reason and the fix.
Standard library only.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping

from tortie.core.record import field, record
from tortie.model.bgp import as_number, duration, secret_file, selector
from tortie.model.fields import (
    API_VERSION,
    CRD_API_VERSION,
    as_mapping,
    check_known,
    check_top,
    fail,
    get_bool,
    get_enum,
    get_int,
    get_str,
    get_str_list,
    object_name,
    read_metadata,
    write_metadata,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

NEXT_HOP_MODES = ("Auto", "Self", "Keep")
SOURCE_ADDRESSES = ("UseNodeIP", "None")
_PEER_FIELDS = (
    "node",
    "nodeSelector",
    "peerIP",
    "asNumber",
    "peerSelector",
    "keepOriginalNextHop",
    "nextHopMode",
    "sourceAddress",
    "maxRestartTime",
    "keepaliveTime",
    "ttlSecurity",
    "password",
    "filters",
    "reachableBy",
    "numAllowedLocalASNumbers",
)


@record
class BGPPeer:
    """One BGPPeer; ``peer_ip`` is a bare address, ``port`` 179 unless given."""

    name: str
    node: str = ""
    node_selector: str = ""
    peer_ip: str = ""
    port: int = 179
    as_number: int | None = None
    peer_selector: str = ""
    keep_original_next_hop: bool = False
    next_hop_mode: str = "Auto"
    source_address: str = "UseNodeIP"
    max_restart_time: str = ""
    keepalive_time: str = ""
    ttl_security: int = 0
    allowed_local_as: int = 0  # numAllowedLocalASNumbers
    password_file: str = ""
    filters: tuple[str, ...] = ()
    reachable_by: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    uid: str | None = None
    creation_timestamp: str | None = None
    resource_version: str | None = None

    @property
    def global_peer(self) -> bool:
        """Calico's 'global' type: no node and no node selector (or ``all()``)."""
        return not self.node and self.node_selector in ("", "all()")


def split_peer_ip(obj: str, text: str) -> tuple[str, int]:
    """``10.0.0.1``, ``10.0.0.1:1790``, ``fd00::1``, ``[fd00::1]:1790`` -> (address, port)."""
    host, port = text, 179
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        if not rest.startswith(":") or not rest[1:].isdigit():
            fail(obj, f"spec.peerIP {text!r} is not [IPv6]:port", "write it like [fd00::1]:179")
        port = int(rest[1:])
    elif text.count(":") == 1:
        host, _, p = text.partition(":")
        if not p.isdigit():
            fail(obj, f"spec.peerIP {text!r} has a bad port", "write it like 10.0.0.1:179")
        port = int(p)
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        fail(obj, f"spec.peerIP {text!r} is not an IP address", "write it like 10.0.0.1 or fd00::1")
    if not 1 <= port <= 65535:
        fail(obj, f"spec.peerIP {text!r} has port {port} out of range", "use a port 1-65535")
    return str(addr), port


def bgppeer_from_dict(d: Mapping[str, Any], *, strict: bool = True) -> BGPPeer:
    obj = object_name("BGPPeer", d)
    top = check_top(obj, d, ("BGPPeer",), (API_VERSION, CRD_API_VERSION), strict)
    meta = read_metadata(obj, top, strict=strict)
    obj = f"BGPPeer({meta.name})"
    spec = as_mapping(obj, "spec", top.get("spec"))
    check_known(obj, "spec", spec, _PEER_FIELDS, strict)
    node = get_str(obj, "spec", spec, "node", "")
    node_selector = selector(obj, spec, "nodeSelector")
    if node and node_selector:
        fail(obj, "spec.node and spec.nodeSelector are both set", "keep one of them")
    peer_selector = selector(obj, spec, "peerSelector")
    raw_ip = get_str(obj, "spec", spec, "peerIP", "")
    asn = as_number(obj, "spec.asNumber", spec.get("asNumber"))
    if peer_selector and (raw_ip or asn is not None):
        fail(
            obj,
            "spec.peerSelector is set together with spec.peerIP/asNumber",
            "use peerSelector alone, or peerIP with asNumber",
        )
    if not peer_selector and not raw_ip:
        fail(obj, "spec.peerIP is missing", "set peerIP and asNumber, or peerSelector")
    if raw_ip and asn is None:
        fail(obj, "spec.asNumber is missing", "set the peer's AS number")
    address, port = split_peer_ip(obj, raw_ip) if raw_ip else ("", 179)
    keep = get_bool(obj, "spec", spec, "keepOriginalNextHop", False)
    mode = get_enum(obj, "spec", spec, "nextHopMode", NEXT_HOP_MODES, "Auto")
    if keep and mode == "Self":
        fail(obj, "keepOriginalNextHop contradicts nextHopMode Self", "keep one of them")
    ttl = get_int(obj, "spec", spec, "ttlSecurity", 0, 0, 255)
    # Accepting a setting that is not carried out is a defect: refuse these until the
    # BIRD rendering does them.
    for unsupported, what in (("filters", "BGPFilter resources"), ("reachableBy", "reachableBy")):
        if spec.get(unsupported):
            fail(
                obj,
                f"spec.{unsupported} is not supported by tortie yet ({what} are not rendered)",
                f"remove spec.{unsupported}",
            )
    return BGPPeer(
        name=meta.name,
        node=node,
        node_selector=node_selector,
        peer_ip=address,
        port=port,
        as_number=asn,
        peer_selector=peer_selector,
        keep_original_next_hop=keep,
        next_hop_mode="Keep" if keep else mode,
        source_address=get_enum(obj, "spec", spec, "sourceAddress", SOURCE_ADDRESSES, "UseNodeIP"),
        max_restart_time=duration(obj, spec, "maxRestartTime"),
        keepalive_time=duration(obj, spec, "keepaliveTime"),
        ttl_security=ttl,
        allowed_local_as=get_int(obj, "spec", spec, "numAllowedLocalASNumbers", 0, 0, 255),
        password_file=secret_file(obj, "spec.password", spec.get("password"))
        if spec.get("password") is not None
        else "",
        filters=get_str_list(obj, "spec", spec, "filters"),
        reachable_by=get_str(obj, "spec", spec, "reachableBy", ""),
        labels=meta.labels,
        annotations=meta.annotations,
        uid=meta.uid,
        creation_timestamp=meta.creation_timestamp,
        resource_version=meta.resource_version,
    )


def bgppeer_to_dict(p: BGPPeer) -> dict[str, Any]:
    spec: dict[str, Any] = {}
    if p.node:
        spec["node"] = p.node
    if p.node_selector:
        spec["nodeSelector"] = p.node_selector
    if p.peer_ip:
        host = f"[{p.peer_ip}]" if ":" in p.peer_ip and p.port != 179 else p.peer_ip
        spec["peerIP"] = f"{host}:{p.port}" if p.port != 179 else host
        spec["asNumber"] = p.as_number
    if p.peer_selector:
        spec["peerSelector"] = p.peer_selector
    if p.keep_original_next_hop:
        spec["keepOriginalNextHop"] = True
    elif p.next_hop_mode != "Auto":
        spec["nextHopMode"] = p.next_hop_mode
    if p.source_address != "UseNodeIP":
        spec["sourceAddress"] = p.source_address
    for key, value in (
        ("maxRestartTime", p.max_restart_time),
        ("keepaliveTime", p.keepalive_time),
        ("reachableBy", p.reachable_by),
    ):
        if value:
            spec[key] = value
    if p.ttl_security:
        spec["ttlSecurity"] = p.ttl_security
    if p.allowed_local_as:
        spec["numAllowedLocalASNumbers"] = p.allowed_local_as
    if p.password_file:
        spec["password"] = {"file": p.password_file}
    if p.filters:
        spec["filters"] = list(p.filters)
    return {
        "apiVersion": API_VERSION,
        "kind": "BGPPeer",
        "metadata": write_metadata(
            p.name, p.labels, p.annotations, p.uid, p.creation_timestamp, p.resource_version
        ),
        "spec": spec,
    }
