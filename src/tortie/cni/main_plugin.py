"""The main ``calico`` / ``tortie-cni`` plugin: ADD, DEL, CHECK, VERSION, GC, STATUS.

ADD: addresses from the IPAM back end (``tortie.cni.ipam_backend``: ``calico-ipam`` /
``tortie-ipam`` in-process, any other ``ipam.type`` executed from ``CNI_PATH``), the
pod's veth pair (``setup_pod``), then a WorkloadEndpoint.  Any failure after IPAM rolls
everything back.  DEL undoes all three and is idempotent.  The verb handlers run through
the one CNI edge (``tortie.cni.edge.run_plugin``); ``run(stdin, env)`` returns
``(exit code, stdout)`` and every failure is CNI error JSON, never a traceback.

Imports stay light (no yaml, pyroute2, argparse): one process runs per pod and call.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Callable, Mapping
from functools import partial

from tortie.cni import errors as codes
from tortie.cni import ipam_plugin
from tortie.cni.edge import Call, Plugin, run_plugin
from tortie.cni.endpoint import (
    EndpointId,
    build_endpoint,
    check_endpoint,
    delete_endpoint,
    gc_endpoints,
    read_endpoint,
    write_endpoint,
)
from tortie.cni.ipam_backend import IpamBackend, ipam_backend
from tortie.cni.netconf import (
    IpamNetConf,
    MainConf,
    determine_nodename,
    parse_main_conf,
    valid_attachments,
)
from tortie.cni.protocol import (
    CniError,
    check_known_args,
    format_ipam_result,
    result_addresses,
    version_tuple,
)
from tortie.dataplane import pod as ip_dataplane
from tortie.dataplane.pod import PodNetwork, host_veth_name
from tortie.errors import InvalidInput, NotFound, TortieError

TYPE_CHECKING = False  # typing stays unimported at run time: plugin start-up
if TYPE_CHECKING:
    from typing import Any

HOST_MAC = "ee:ee:ee:ee:ee:ee"


def check_endpoint_name(ident: EndpointId) -> None:
    """Refuse, before anything is written, an attachment whose WorkloadEndpoint could not
    be stored under a valid name (DEL and every listing would then fail on it)."""
    from tortie.model.fields import is_dns_subdomain

    if not is_dns_subdomain(ident.name):
        raise CniError(
            codes.INVALID_ENVIRONMENT,
            f"CNI_CONTAINERID {ident.container_id[:80]!r} with CNI_IFNAME {ident.ifname!r} "
            f"gives WorkloadEndpoint name {ident.name[:120]!r}, which is not a DNS-1123 "
            "name; use letters, digits, '-' and '.' in the container id and interface name",
        )


def ipam_of(call: Call) -> IpamBackend:
    """The IPAM back end every verb goes through (in-process or an executed plugin)."""
    return ipam_backend(call)


def dataplane_of(call: Call) -> Any:
    """What wires pods: ``ip -batch`` in the plugin's process, netlink in the service."""
    return call.backends.dataplane or ip_dataplane


def node_of(call: Call, lenient: bool = False) -> str:
    """The node name.  ``lenient`` (DEL, GC) falls back to the host name when the
    nodename file has gone: cleaning up must not depend on it."""
    ipam = call.conf.ipam
    return determine_nodename(ipam, require_file=not (lenient or ipam.nodename_file_optional))


def endpoint_of(call: Call, node: str) -> EndpointId:
    args = call.env.args
    pod, ns = args.get("K8S_POD_NAME", ""), args.get("K8S_POD_NAMESPACE", "")
    if not (pod and ns):
        pod = ns = ""
    return EndpointId(node, call.env.container_id, call.env.ifname, pod, ns)


def host_ifname_of(call: Call) -> str:
    args = call.env.args
    return host_veth_name(
        call.env.container_id,
        args.get("K8S_POD_NAMESPACE") or None,
        args.get("K8S_POD_NAME") or None,
    )


# ------------------------------------------------------------------------------- ADD


def _single_addresses(addresses: list[str]) -> tuple[str, ...]:
    """IPAM addresses (block prefixes, e.g. 10.65.0.5/26) → /32 and /128, v4 first."""
    out: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = []
    for text in addresses:
        try:
            addr = ipaddress.ip_interface(text).ip
        except ValueError:
            raise CniError(
                codes.DECODE_FAILURE, f"IPAM returned {text!r}, which is not an address"
            ) from None
        if addr not in out:
            out.append(addr)
    if not out:
        raise CniError(codes.NO_ADDRESSES, "IPAM returned no addresses")
    ordered = sorted(out, key=lambda a: a.version)
    return tuple(f"{a}/{a.max_prefixlen}" for a in ordered)


def format_result(
    version: str, addresses: tuple[str, ...], host: str, ifname: str, mac: str, netns: str
) -> dict[str, Any]:
    v = version_tuple(version)
    if v < (0, 3, 0):
        return format_ipam_result(version, addresses)
    ips: list[dict[str, Any]] = []
    for a in addresses:
        entry: dict[str, Any] = {"address": a, "interface": 1}
        if v < (1, 0, 0):
            entry = {"version": "6" if ":" in a else "4", **entry}
        ips.append(entry)
    return {
        "cniVersion": version,
        "interfaces": [
            {"name": host, "mac": HOST_MAC},
            {"name": ifname, "mac": mac, "sandbox": netns},
        ],
        "ips": ips,
        "dns": {},
    }


def _release(call: Call) -> None:
    ipam_of(call).run("DEL")


def cmd_add(call: Call) -> str:
    check_known_args(call.env.args, ipam_plugin.KNOWN_ARGS)
    node = node_of(call)
    ident = endpoint_of(call, node)
    check_endpoint_name(ident)
    host = host_ifname_of(call)
    netns = call.env.netns
    from tortie.cni.sandbox import check_netns_path  # ADD only

    check_netns_path(netns)
    ipam_out = ipam_of(call).run("ADD") or {}
    done = "ipam"
    try:
        addresses = _single_addresses(result_addresses(ipam_out))
        call.log.info(f"IPAM gave {', '.join(addresses)}; host veth {host}")
        done = "veth"
        interfaces = dataplane_of(call).setup_pod(
            PodNetwork(
                host_ifname=host,
                pod_ifname=call.env.ifname,
                netns=netns,
                addresses=addresses,
                mtu=call.conf.mtu,
                allow_ip_forwarding=call.conf.allow_ip_forwarding,
            )
        )
        done = "wep"
        wep = build_endpoint(ident, call.conf.ipam.name, addresses, host, interfaces.pod_mac)
        write_endpoint(call.store, wep)
        result = format_result(
            call.conf.ipam.cni_version, addresses, host, call.env.ifname, interfaces.pod_mac, netns
        )
    except BaseException as exc:
        _rollback(call, exc, done, ident, host)
        raise
    call.log.info(f"pod {ident.wep_namespace}/{ident.name} is up")
    return json.dumps(result)


def _rollback(call: Call, exc: BaseException, done: str, ident: EndpointId, host: str) -> None:
    """Undo an ADD that failed after IPAM ran; each step's own failure becomes a note."""
    call.log.error(f"ADD failed ({exc}); rolling back")
    steps: list[tuple[str, Callable[[], object]]] = []
    if done == "wep":
        steps.append(("delete WorkloadEndpoint", lambda: delete_endpoint(call.store, ident)))
    if done in ("veth", "wep"):
        steps.append(("delete pod veth", lambda: dataplane_of(call).teardown_pod(host, [], None)))
    steps.append(("release addresses", lambda: _release(call)))
    for what, step in steps:
        try:
            step()
        except Exception as undo:
            call.log.error(f"rollback: {what} failed: {undo}")
            exc.add_note(f"rollback: {what} failed: {undo}")


# ------------------------------------------------------------------------------- DEL


def cmd_del(call: Call) -> str:
    """Tear down, delete the endpoint, release.  Every step runs; the first failure is
    reported at the end.  Missing pieces are success."""
    node = node_of(call, lenient=True)
    ident = endpoint_of(call, node)
    host = host_ifname_of(call)
    failures: list[BaseException] = []
    try:
        wep = read_endpoint(call.store, ident)
    except (TortieError, ValueError) as exc:
        call.log.warning(f"cannot read WorkloadEndpoint {ident.name}: {exc}")
        wep = None
    ours = wep is None or not wep.container_id or wep.container_id == call.env.container_id
    if ours:
        addresses = list(wep.ip_networks) if wep is not None else []
        try:
            dataplane_of(call).teardown_pod(host, addresses, call.env.netns or None)
        except (TortieError, OSError) as exc:
            failures.append(exc)
        try:
            delete_endpoint(call.store, ident)
        except TortieError as exc:
            failures.append(exc)
    else:
        call.log.info(
            f"WorkloadEndpoint {ident.name} belongs to container {wep.container_id if wep else ''}"
            f"; leaving it and {host} alone"
        )
    try:
        _release(call)
    except (TortieError, CniError) as exc:
        failures.append(exc)
    if failures:
        raise failures[0]
    return ""


# ----------------------------------------------------------------------------- CHECK


def _prev_interfaces(prev: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """(host veth name, pod MAC) from prevResult's interfaces, when present."""
    ifaces = prev.get("interfaces")
    if not isinstance(ifaces, list):
        return None, None
    host = ifaces[0].get("name") if ifaces and isinstance(ifaces[0], dict) else None
    mac = ifaces[1].get("mac") if len(ifaces) > 1 and isinstance(ifaces[1], dict) else None
    return (host if isinstance(host, str) else None, mac if isinstance(mac, str) else None)


def cmd_check(call: Call) -> str:
    prev = call.conf.ipam.raw.get("prevResult")
    if not isinstance(prev, dict):
        raise CniError(
            codes.INVALID_NETWORK_CONFIG,
            'CHECK needs "prevResult" (the result of ADD) in the network configuration',
        )
    addresses = _single_addresses(result_addresses(prev))
    node = node_of(call)
    ident = endpoint_of(call, node)
    host = host_ifname_of(call)
    prev_host, prev_mac = _prev_interfaces(prev)
    if prev_host is not None and prev_host != host:
        raise CniError(
            codes.CHECK_FAILED,
            f"prevResult names host interface {prev_host}, but this pod's is {host}",
        )
    ipam_of(call).run("CHECK")
    from tortie.dataplane.pod import check_pod

    try:
        check_pod(
            PodNetwork(
                host_ifname=host,
                pod_ifname=call.env.ifname,
                netns=call.env.netns,
                addresses=addresses,
                mtu=call.conf.mtu,
                allow_ip_forwarding=call.conf.allow_ip_forwarding,
            )
        )
    except (NotFound, InvalidInput) as exc:
        raise CniError(codes.CHECK_FAILED, f"CHECK failed: {exc}") from None
    problems = check_endpoint(call.store, ident, addresses, host, prev_mac)
    if problems:
        raise CniError(codes.CHECK_FAILED, "CHECK failed: " + "; ".join(problems))
    return ""


# ------------------------------------------------------------------- GC and STATUS


def cmd_gc(call: Call) -> str:
    valid = {cid for cid, _ in valid_attachments(call.conf.ipam)}
    ipam_of(call).run("GC")
    removed = gc_endpoints(call.store, node_of(call, lenient=True), call.conf.ipam.name, valid)
    if removed:
        call.log.info(f"GC: deleted stale WorkloadEndpoints {', '.join(removed)}")
    return ""


def cmd_status(call: Call) -> str:
    ipam_of(call).run("STATUS")
    return ""


VERBS: Mapping[str, Callable[[Call], str]] = {
    "ADD": cmd_add,
    "DEL": cmd_del,
    "CHECK": cmd_check,
    "GC": cmd_gc,
    "STATUS": cmd_status,
}  # VERSION is answered by the edge before any configuration is read


def _common(conf: MainConf) -> IpamNetConf:
    return conf.ipam


PLUGIN = Plugin("calico", parse_main_conf, _common, VERBS)
run = partial(run_plugin, PLUGIN)  # run(stdin, env, *, open_store=, stderr=, backends=)

__all__ = ["PLUGIN", "VERBS", "MainConf", "parse_main_conf", "run"]
