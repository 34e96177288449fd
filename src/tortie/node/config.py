"""calico-node's environment (calico-behaviour.md §10) read into one validated record.

Every variable keeps Calico's name and meaning; tortie adds ``TORTIE_RUN_DIR`` (where the
agent keeps BIRD's configuration, socket and pid files, so several agents can run on one
machine in separate network namespaces), ``TORTIE_K8S_NODE_FILE`` (the Kubernetes Node
object read by ``kubernetes-internal-ip``) and two BGP timers for tests and small labs.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from tortie.errors import InvalidInput
from tortie.model.fields import is_dns_subdomain
from tortie.model.names import quoted
from tortie.nodename import determine_node_name, nodename_file
from tortie.rundir import RunDir

DEFAULT_RUN_DIR = RunDir().path
DEFAULT_AS = 64512
BACKENDS = ("bird", "vxlan", "none")
METHOD_KINDS = (
    "first-found",
    "interface",
    "skip-interface",
    "cidr",
    "can-reach",
    "kubernetes-internal-ip",
)
_FALSE = frozenset({"false", "0", "no", "n", "f"})


@dataclass(frozen=True)
class Method:
    """An autodetection method: ``kind`` and its comma-separated arguments."""

    kind: str
    args: tuple[str, ...] = ()

    def __str__(self) -> str:
        return self.kind + ("=" + ",".join(self.args) if self.args else "")


@dataclass(frozen=True)
class PoolSettings:
    """CALICO_IPV{4,6}POOL_* for one family; ``cidr`` "" means Calico's default."""

    version: int
    cidr: str
    block_size: int
    ipip: str
    vxlan: str
    nat_outgoing: bool
    node_selector: str


@dataclass(frozen=True)
class NodeConfig:
    node_name: str
    name_source: str
    nodename_file: str
    run_dir: str
    ip: str
    ip6: str
    ip_method: Method
    ip6_method: Method
    router_id: str
    as_number: int | None
    ipv6_support: bool
    ip_forwarding: bool
    backend: str
    poll_interval: float
    no_default_pools: bool
    pool4: PoolSettings
    pool6: PoolSettings
    k8s_node_file: str
    bgp_hold_time: int
    bgp_connect_retry: int
    # Felix's Prometheus settings (tortie/node/metrics.py); host "" = every address.
    metrics_enabled: bool = False
    metrics_port: int = 9091
    metrics_host: str = ""
    # The CNI node service (tortie/cni/service.py) on $TORTIE_RUN_DIR/cni.sock.
    cni_service: bool = True
    cni_trusted_uids: tuple[int, ...] = (0,)
    # Felix's VXLAN settings; an MTU of 0 means the host's MTU minus the overhead.
    vxlan_vni: int = 4096
    vxlan_port: int = 4789
    vxlan_mtu: int = 0
    vxlan_mtu_v6: int = 0
    veth_mtu: int | None = None  # FELIX_VETHMTU (None: computed)
    # Every FELIX_* variable as given, for settings read together with the datastore's
    # FelixConfiguration (environment first, as Felix).
    felix_env: tuple[tuple[str, str], ...] = ()


def parse_bool(name: str, value: str, default: bool) -> bool:
    """Calico's booleans: ``false``, ``0``, ``no``, ``n``, ``f`` are false; empty is the default."""
    value = value.strip().lower()
    if not value:
        return default
    return value not in _FALSE


def parse_method(variable: str, value: str) -> Method:
    """``first-found``, ``interface=REGEX,…``, ``skip-interface=…``, ``cidr=…``,
    ``can-reach=DEST``, ``kubernetes-internal-ip``; anything else is Calico's error."""
    text = value.strip() or "first-found"
    kind, sep, rest = text.partition("=")
    kind = kind.strip()
    args = tuple(a.strip() for a in rest.split(",") if a.strip())
    if kind not in METHOD_KINDS or (kind in ("first-found", "kubernetes-internal-ip") and sep):
        raise InvalidInput(
            f"Invalid IP autodetection method: {text[:80]}; set {variable} to one of "
            "first-found, interface=REGEX, skip-interface=REGEX, cidr=CIDR, can-reach=DEST, "
            "kubernetes-internal-ip"
        )
    if kind in ("interface", "skip-interface", "cidr", "can-reach") and not args:
        raise InvalidInput(
            f"Invalid IP autodetection method: {text[:80]}; {kind}= needs a value, "
            f"e.g. {variable}={kind}={_EXAMPLES[kind]}"
        )
    if kind in ("interface", "skip-interface"):
        for pattern in args:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise InvalidInput(
                    f"{variable}: {pattern[:40]!r} is not a valid regular expression ({exc}); "
                    "fix the pattern"
                ) from None
    return Method(kind, args)


_EXAMPLES = {
    "interface": "eth.*",
    "skip-interface": "eth1",
    "cidr": "10.0.0.0/8",
    "can-reach": "8.8.8.8",
}


def _int(env: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    text = env.get(name, "").strip()
    if not text:
        return default
    try:
        value = int(text)
    except ValueError:
        value = low - 1
    if not low <= value <= high:
        raise InvalidInput(
            f"{name}={text[:40]!r} is not a number from {low} to {high}; fix or unset {name}"
        )
    return value


def parse_trusted_uids(env: Mapping[str, str]) -> tuple[int, ...]:
    """root, and the uids of ``TORTIE_CNI_TRUSTED_UIDS`` (comma-separated)."""
    text = env.get("TORTIE_CNI_TRUSTED_UIDS", "")
    uids = [0]
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        if not part.isdigit() or int(part) > 2**32 - 2:
            raise InvalidInput(
                f"TORTIE_CNI_TRUSTED_UIDS={text[:60]!r}: {part[:20]!r} is not a uid; give "
                "numeric uids separated by commas, e.g. 1000,1001"
            )
        uids.append(int(part))
    return tuple(dict.fromkeys(uids))


def _hold_time(env: Mapping[str, str]) -> int:
    """BGP hold time in seconds: 0 (BIRD's default) or 3 to 65535 (RFC 4271)."""
    value = _int(env, "TORTIE_BGP_HOLD_TIME", 0, 0, 65535)
    if 0 < value < 3:
        raise InvalidInput(
            f"TORTIE_BGP_HOLD_TIME={value} is too short: BGP takes 0 (BIRD's default) or "
            "3 to 65535 seconds; set it to 3 or more, or unset it"
        )
    return value


def parse_duration(name: str, text: str) -> float:
    """Go-style durations as Calico takes them (``30s``, ``5m``, ``1h``) or plain seconds."""
    text = text.strip()
    if not text:
        return 0.0
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m|h)?", text)
    if m is None:
        raise InvalidInput(
            f"{name}={text[:40]!r} is not a duration; use e.g. 30s, 5m or a number of seconds"
        )
    scale = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}[m.group(2)]
    return float(m.group(1)) * scale


def _pool(env: Mapping[str, str], version: int) -> PoolSettings:
    p = f"CALICO_IPV{version}POOL_"
    default_size = 26 if version == 4 else 122
    size_text = env.get(p + "BLOCK_SIZE", "").strip()
    block_size = default_size
    if size_text:
        limits = (20, 32) if version == 4 else (116, 128)
        try:
            block_size = int(size_text)
        except ValueError:
            block_size = -1
        if not limits[0] <= block_size <= limits[1]:
            raise InvalidInput(
                f"Invalid blocksize {size_text[:20]} for version {version}; set "
                f"{p}BLOCK_SIZE to {limits[0]}-{limits[1]} (default {default_size})"
            )
    return PoolSettings(
        version=version,
        cidr=env.get(p + "CIDR", "").strip(),
        block_size=block_size,
        ipip=env.get(p + "IPIP", "").strip() if version == 4 else "",
        vxlan=env.get(p + "VXLAN", "").strip(),
        nat_outgoing=parse_bool(p + "NAT_OUTGOING", env.get(p + "NAT_OUTGOING", ""), version == 4),
        node_selector=env.get(p + "NODE_SELECTOR", "").strip(),
    )


def config_from_env(env: Mapping[str, str]) -> NodeConfig:
    """Read and check every variable; raise ``InvalidInput`` naming the variable to fix."""
    name, source = determine_node_name(env)
    if not name:
        raise InvalidInput("cannot determine the node name; set NODENAME")
    if not is_dns_subdomain(name):
        # The Node resource would be written but unreadable (its name is its key): refuse.
        raise InvalidInput(
            f"node name {quoted(name)} (from {source}) is not a valid Node name: use "
            "lower-case letters, digits, '-' and '.', starting and ending with a letter or "
            "digit, at most 253 characters; set NODENAME to such a name"
        )
    backend = env.get("CALICO_NETWORKING_BACKEND", "").strip().lower() or "bird"
    if backend not in BACKENDS:
        raise InvalidInput(
            f"CALICO_NETWORKING_BACKEND={backend[:40]!r} is not supported; "
            f"set it to one of: {', '.join(BACKENDS)}"
        )
    as_text = env.get("AS", "").strip()
    as_number = None
    if as_text:
        as_number = _int(env, "AS", 0, 1, 4294967295)
    forwarding = env.get("FELIX_IPFORWARDING", "").strip() or "Enabled"
    if forwarding.lower() not in ("enabled", "disabled"):
        raise InvalidInput(
            f"FELIX_IPFORWARDING={forwarding[:40]!r} is not valid; set it to Enabled or Disabled"
        )
    pool4, pool6 = _pool(env, 4), _pool(env, 6)
    no_default = parse_bool("NO_DEFAULT_POOLS", env.get("NO_DEFAULT_POOLS", ""), False)
    if no_default:
        given = [
            f"CALICO_IPV{p.version}POOL_CIDR"
            for p in (pool4, pool6)
            if p.cidr and p.cidr.lower() != "none"
        ]
        if given:
            raise InvalidInput(
                f"NO_DEFAULT_POOLS=true and {' and '.join(given)} are both set; "
                f"unset {given[0]} or NO_DEFAULT_POOLS"
            )
    return NodeConfig(
        node_name=name,
        name_source=source,
        nodename_file=nodename_file(env),
        run_dir=RunDir.from_env(env).path,
        ip=env.get("IP", "").strip(),
        ip6=env.get("IP6", "").strip(),
        ip_method=parse_method("IP_AUTODETECTION_METHOD", env.get("IP_AUTODETECTION_METHOD", "")),
        ip6_method=parse_method(
            "IP6_AUTODETECTION_METHOD", env.get("IP6_AUTODETECTION_METHOD", "")
        ),
        router_id=env.get("CALICO_ROUTER_ID", "").strip(),
        as_number=as_number,
        ipv6_support=parse_bool("FELIX_IPV6SUPPORT", env.get("FELIX_IPV6SUPPORT", ""), True),
        ip_forwarding=forwarding.lower() == "enabled",
        backend=backend,
        poll_interval=parse_duration(
            "AUTODETECT_POLL_INTERVAL", env.get("AUTODETECT_POLL_INTERVAL", "")
        ),
        no_default_pools=no_default,
        pool4=pool4,
        pool6=pool6,
        k8s_node_file=env.get("TORTIE_K8S_NODE_FILE", "").strip(),
        bgp_hold_time=_hold_time(env),
        bgp_connect_retry=_int(env, "TORTIE_BGP_CONNECT_RETRY_TIME", 5, 1, 65535),
        metrics_enabled=parse_bool(
            "FELIX_PROMETHEUSMETRICSENABLED", env.get("FELIX_PROMETHEUSMETRICSENABLED", ""), False
        ),
        metrics_port=_int(env, "FELIX_PROMETHEUSMETRICSPORT", 9091, 1, 65535),
        metrics_host=env.get("FELIX_PROMETHEUSMETRICSHOST", "").strip(),
        cni_service=parse_bool("TORTIE_CNI_SERVICE", env.get("TORTIE_CNI_SERVICE", ""), True),
        cni_trusted_uids=parse_trusted_uids(env),
        vxlan_vni=_int(env, "FELIX_VXLANVNI", 4096, 1, 16777215),
        vxlan_port=_int(env, "FELIX_VXLANPORT", 4789, 1, 65535),
        vxlan_mtu=_mtu(env, "FELIX_VXLANMTU"),
        vxlan_mtu_v6=_mtu(env, "FELIX_VXLANMTUV6"),
        veth_mtu=_veth_mtu(env),
        felix_env=tuple(sorted((k, v) for k, v in env.items() if k.startswith("FELIX_"))),
    )


def _veth_mtu(env: Mapping[str, str]) -> int | None:
    from tortie.node.mtu import veth_mtu_override

    return veth_mtu_override(env)


def _mtu(env: Mapping[str, str], name: str) -> int:
    """An MTU setting: unset or 0 means computed; else 68-65535."""
    if env.get(name, "").strip() in ("", "0"):
        return 0
    return _int(env, name, 0, 68, 65535)
