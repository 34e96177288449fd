"""BGPConfiguration in Calico's ``projectcalico.org/v3`` format (§16), and the readers it
shares with BGPPeer (``tortie.model.bgppeer``).

Every rule of Calico's validation for the two kinds lives in the ``*_from_dict``
functions (a BGPPeer names ``node`` or ``nodeSelector``, not both; ``peerIP`` with
``asNumber`` or ``peerSelector``, not both; addresses and AS numbers in range); errors are
one line naming the object, the reason and the fix.  Standard library only.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping

from tortie.core.record import field, record
from tortie.core.selector import parse_selector
from tortie.errors import InvalidInput
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
    read_objects,
    write_metadata,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

MAX_AS_NUMBER = 4294967295
DEFAULT_AS = 64512
LOG_SEVERITIES = ("Debug", "Info", "Warning", "Error", "Fatal")
BIND_MODES = ("None", "NodeIP")
_COMMUNITY = re.compile(r"(\d+):(\d+)(?::(\d+))?")

_CONFIG_FIELDS = (
    "asNumber",
    "nodeToNodeMeshEnabled",
    "listenPort",
    "logSeverityScreen",
    "serviceClusterIPs",
    "serviceExternalIPs",
    "serviceLoadBalancerIPs",
    "communities",
    "prefixAdvertisements",
    "nodeMeshPassword",
    "nodeMeshMaxRestartTime",
    "bindMode",
    "ignoredInterfaces",
)
# Calico: a node.<name> object can override only these (the rest are cluster-wide).
_NODE_CONFIG_FIELDS = ("listenPort", "logSeverityScreen", "prefixAdvertisements", "communities")


@record
class PrefixAdvertisement:
    cidr: str
    communities: tuple[str, ...] = ()  # as written: community names or values
    values: tuple[str, ...] = ()  # the community values (names resolved)


@record
class BGPConfiguration:
    """``default`` (cluster-wide) or ``node.<name>`` (one node's overrides).  ``None``
    fields are unset: the per-node object inherits them from ``default``."""

    name: str
    as_number: int | None = None
    node_to_node_mesh: bool | None = None
    listen_port: int | None = None
    log_severity: str | None = None
    service_cluster_ips: tuple[str, ...] = ()
    service_external_ips: tuple[str, ...] = ()
    service_load_balancer_ips: tuple[str, ...] = ()
    communities: Mapping[str, str] = field(default_factory=dict)
    prefix_advertisements: tuple[PrefixAdvertisement, ...] = ()
    node_mesh_password_file: str | None = None
    node_mesh_max_restart: str | None = None
    bind_mode: str | None = None
    ignored_interfaces: tuple[str, ...] = ()
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    uid: str | None = None
    creation_timestamp: str | None = None
    resource_version: str | None = None


# ---------------------------------------------------------------------------- readers


def as_number(obj: str, path: str, value: object) -> int | None:
    """An AS number: 1-4294967295, or asdot ``"1.10"``; None when absent."""
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
    if number is None or not 1 <= number <= MAX_AS_NUMBER:
        fail(obj, f"{path} {value!r} is not an AS number", 'use 1-4294967295 or asdot like "1.10"')
    return number


def _cidrs(obj: str, spec: Mapping[str, Any], key: str) -> tuple[str, ...]:
    def one(path: str, data: Mapping[str, Any]) -> str:
        return _cidr(obj, f"{path}.cidr", get_str(obj, path, data, "cidr", ""))

    return read_objects(obj, f"spec.{key}", spec.get(key), ("cidr",), True, one)


def _cidr(obj: str, path: str, text: str) -> str:
    try:
        return str(ipaddress.ip_network(text, strict=False))
    except ValueError:
        fail(obj, f"{path} {text!r} is not a CIDR", "write it like 10.96.0.0/12 or fd00:96::/112")


def _community(obj: str, path: str, value: str) -> str:
    m = _COMMUNITY.fullmatch(value)
    limit = 0xFFFFFFFF if m and m.group(3) is not None else 0xFFFF
    if m is None or any(int(g) > limit for g in m.groups() if g is not None):
        fail(
            obj,
            f"{path} {value!r} is not a BGP community",
            "use aa:nn (each 0-65535) or a large community aa:nn:mm (each 0-4294967295)",
        )
    return value


def selector(obj: str, spec: Mapping[str, Any], key: str) -> str:
    text = get_str(obj, "spec", spec, key, "")
    if text:
        try:
            parse_selector(text)
        except InvalidInput as exc:
            fail(obj, f"spec.{key} is invalid: {exc}", "fix the selector (e.g. has(k), k == 'v')")
    return text


def secret_file(obj: str, path: str, value: object) -> str:
    """Calico reads a Kubernetes Secret; tortie reads the password from a file named in
    ``secretKeyRef.name`` (or ``file``)."""
    data = as_mapping(obj, path, value)
    ref = as_mapping(obj, f"{path}.secretKeyRef", data.get("secretKeyRef"))
    name = get_str(obj, path, data, "file", "") or get_str(
        obj, f"{path}.secretKeyRef", ref, "name", ""
    )
    if data and not name.startswith("/"):
        what = (
            f"{path}.secretKeyRef names a Kubernetes Secret, which tortie does not read"
            if ref and not data.get("file")
            else f"{path} names no password file"
        )
        fail(obj, what, f"set {path}.file to the absolute path of a file holding the password")
    return name


# ---------------------------------------------------------------------- BGPConfiguration


def bgpconfiguration_from_dict(d: Mapping[str, Any], *, strict: bool = True) -> BGPConfiguration:
    obj = object_name("BGPConfiguration", d)
    top = check_top(obj, d, ("BGPConfiguration",), (API_VERSION, CRD_API_VERSION), strict)
    meta = read_metadata(obj, top, strict=strict)
    obj = f"BGPConfiguration({meta.name})"
    if meta.name != "default" and not meta.name.startswith("node."):
        fail(obj, "the name is neither default nor node.<node name>", "rename it")
    spec = as_mapping(obj, "spec", top.get("spec"))
    check_known(obj, "spec", spec, _CONFIG_FIELDS, strict)
    if meta.name != "default" and strict:
        for key in _CONFIG_FIELDS:
            if key not in _NODE_CONFIG_FIELDS and spec.get(key) not in (None, [], ""):
                hint = (
                    "set the node's AS in its Node spec.bgp.asNumber"
                    if key == "asNumber"
                    else "set it in BGPConfiguration default"
                )
                fail(
                    obj,
                    f"spec.{key} is only valid in BGPConfiguration default "
                    "(a per-node object may set listenPort, logSeverityScreen, "
                    "prefixAdvertisements)",
                    hint,
                )
    communities: dict[str, str] = {}

    def community(path: str, data: Mapping[str, Any]) -> tuple[str, str]:
        name = get_str(obj, path, data, "name", "")
        if not name:
            fail(obj, f"{path}.name is missing", "name the community")
        return name, _community(obj, f"{path}.value", get_str(obj, path, data, "value", ""))

    for name, value in read_objects(
        obj, "spec.communities", spec.get("communities"), ("name", "value"), strict, community
    ):
        communities[name] = value

    def advertisement(path: str, data: Mapping[str, Any]) -> PrefixAdvertisement:
        cidr = _cidr(obj, f"{path}.cidr", get_str(obj, path, data, "cidr", ""))
        written = get_str_list(obj, path, data, "communities")
        values = []
        for i, c in enumerate(written):
            if c not in communities and not _COMMUNITY.fullmatch(c):
                fail(
                    obj,
                    f"{path}.communities[{i}] {c!r} is neither a name in spec.communities "
                    "nor a community value",
                    "define it in spec.communities, or write aa:nn or aa:nn:mm",
                )
            values.append(communities.get(c) or _community(obj, f"{path}.communities[{i}]", c))
        return PrefixAdvertisement(cidr, written, tuple(values))

    adverts = read_objects(
        obj,
        "spec.prefixAdvertisements",
        spec.get("prefixAdvertisements"),
        ("cidr", "communities"),
        strict,
        advertisement,
    )
    if communities and not adverts and strict:
        fail(
            obj,
            "spec.communities are defined but not used in spec.prefixAdvertisements",
            "name them in prefixAdvertisements[].communities, or remove them",
        )
    severity = get_str(obj, "spec", spec, "logSeverityScreen", "") or None
    if severity is not None:
        severity = get_enum(obj, "spec", spec, "logSeverityScreen", LOG_SEVERITIES, "Info")
    bind = get_str(obj, "spec", spec, "bindMode", "") or None
    if bind is not None:
        bind = get_enum(obj, "spec", spec, "bindMode", BIND_MODES, "None")
    port = spec.get("listenPort")
    mesh = spec.get("nodeToNodeMeshEnabled")
    password = spec.get("nodeMeshPassword")
    return BGPConfiguration(
        name=meta.name,
        as_number=as_number(obj, "spec.asNumber", spec.get("asNumber")),
        node_to_node_mesh=None
        if mesh is None
        else get_bool(obj, "spec", spec, "nodeToNodeMeshEnabled", True),
        listen_port=None
        if port is None
        else get_int(obj, "spec", spec, "listenPort", 179, 1, 65535),
        log_severity=severity,
        service_cluster_ips=_cidrs(obj, spec, "serviceClusterIPs"),
        service_external_ips=_cidrs(obj, spec, "serviceExternalIPs"),
        service_load_balancer_ips=_cidrs(obj, spec, "serviceLoadBalancerIPs"),
        communities=communities,
        prefix_advertisements=adverts,
        node_mesh_password_file=None
        if password is None
        else secret_file(obj, "spec.nodeMeshPassword", password),
        node_mesh_max_restart=duration(obj, spec, "nodeMeshMaxRestartTime") or None,
        bind_mode=bind,
        ignored_interfaces=get_str_list(obj, "spec", spec, "ignoredInterfaces"),
        labels=meta.labels,
        annotations=meta.annotations,
        uid=meta.uid,
        creation_timestamp=meta.creation_timestamp,
        resource_version=meta.resource_version,
    )


def bgpconfiguration_to_dict(c: BGPConfiguration) -> dict[str, Any]:
    spec: dict[str, Any] = {}
    for key, value in (
        ("asNumber", c.as_number),
        ("nodeToNodeMeshEnabled", c.node_to_node_mesh),
        ("listenPort", c.listen_port),
        ("logSeverityScreen", c.log_severity),
        ("bindMode", c.bind_mode),
        ("nodeMeshMaxRestartTime", c.node_mesh_max_restart),
    ):
        if value is not None:
            spec[key] = value
    for key, cidrs in (
        ("serviceClusterIPs", c.service_cluster_ips),
        ("serviceExternalIPs", c.service_external_ips),
        ("serviceLoadBalancerIPs", c.service_load_balancer_ips),
    ):
        if cidrs:
            spec[key] = [{"cidr": x} for x in cidrs]
    if c.communities:
        spec["communities"] = [{"name": k, "value": v} for k, v in c.communities.items()]
    if c.prefix_advertisements:
        spec["prefixAdvertisements"] = [
            {"cidr": a.cidr, "communities": list(a.communities)} for a in c.prefix_advertisements
        ]
    if c.node_mesh_password_file is not None:
        spec["nodeMeshPassword"] = {"file": c.node_mesh_password_file}
    if c.ignored_interfaces:
        spec["ignoredInterfaces"] = list(c.ignored_interfaces)
    return {
        "apiVersion": API_VERSION,
        "kind": "BGPConfiguration",
        "metadata": write_metadata(
            c.name, c.labels, c.annotations, c.uid, c.creation_timestamp, c.resource_version
        ),
        "spec": spec,
    }


# ------------------------------------------------------------------------------ BGPPeer


_DURATION = re.compile(r"(\d+h)?(\d+m)?(\d+s)?")


def duration(obj: str, spec: Mapping[str, Any], key: str) -> str:
    text = get_str(obj, "spec", spec, key, "")
    if text and (not _DURATION.fullmatch(text)):
        fail(obj, f"spec.{key} {text!r} is not a duration", "write it like 120s, 2m or 1h30m")
    return text


def duration_seconds(text: str) -> int:
    """``1h2m3s`` -> 3723; ``""`` -> 0."""
    total = 0
    for number, unit in re.findall(r"(\d+)([hms])", text):
        total += int(number) * {"h": 3600, "m": 60, "s": 1}[unit]
    return total
