"""The ``calico-ipam`` / ``tortie-ipam`` plugin: ADD, DEL, CHECK, VERSION, GC, STATUS.

The verb handlers only: ``PLUGIN`` hands them to the one CNI edge
(``tortie.cni.edge.run_plugin``: request parsing, store, error mapping), and every IPAM
rule (pools, all-or-nothing assign, STATUS capacity, GC ownership) lives in
``tortie.ipam``.  ``run(stdin, env)`` returns ``(exit code, stdout)``.

Imports stay light (standard library and tortie's stdlib-only modules): a runtime starts
one process per pod and call.
"""

from __future__ import annotations

import ipaddress
import json
import time
from collections.abc import Callable, Mapping
from functools import partial

from tortie.cni import errors as codes
from tortie.cni.edge import Call, Plugin, run_plugin
from tortie.cni.errors import cni_code
from tortie.cni.netconf import (
    IpamNetConf,
    determine_nodename,
    parse_netconf,
    valid_attachments,
)
from tortie.cni.protocol import (
    CniError,
    check_known_args,
    format_ipam_result,
    result_addresses,
)
from tortie.datastore import keys
from tortie.errors import NotFound, TortieError
from tortie.ipam.requests import WORKLOAD, AssignRequest
from tortie.ipam.service import Ipam

TYPE_CHECKING = False  # typing stays unimported at run time: plugin start-up
if TYPE_CHECKING:
    from tortie.ipam.allocator import Allocator

KNOWN_ARGS = (
    "IP",
    "K8S_POD_NAMESPACE",
    "K8S_POD_NAME",
    "K8S_POD_INFRA_CONTAINER_ID",
    "K8S_POD_UID",
)


def handle_of(call: Call) -> str:
    """The IPAM handle of the call's attachment: ``<network>.<container id>``."""
    return f"{call.conf.name}.{call.env.container_id}"


def allocator_of(call: Call) -> Allocator:
    """The node service's allocator for the call's store (it batches), or the plain
    one (``Ipam``) in the plugin's own process."""
    allocator_for = call.backends.allocator
    return allocator_for(call.store) if allocator_for is not None else Ipam(call.store)


# ------------------------------------------------------------------------------- ADD


def _requested_ips(call: Call) -> list[str]:
    """The addresses of ``IP=`` in CNI_ARGS (comma-separated), IPv4 first."""
    text = call.env.args.get("IP", "")
    out: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        try:
            addr = ipaddress.ip_address(part)
        except ValueError:
            raise CniError(
                codes.INVALID_ENVIRONMENT,
                f"CNI_ARGS: IP={part!r} is not an IP address; give one address per family, "
                "e.g. IP=10.0.0.5,fd00::5",
            ) from None
        if isinstance(addr, ipaddress.IPv6Address) and addr.scope_id:
            raise CniError(
                codes.INVALID_ENVIRONMENT,
                f"CNI_ARGS: IP={part!r} carries a zone id; give the address without %{addr.scope_id}",
            )
        if addr in out:
            continue
        if any(a.version == addr.version for a in out):
            raise CniError(
                codes.INVALID_ENVIRONMENT,
                f"CNI_ARGS: IP={text!r} names two IPv{addr.version} addresses; a pod gets at most "
                "one address per family, e.g. IP=10.0.0.5,fd00::5",
            )
        out.append(addr)
    if not out and "IP" in call.env.args:
        raise CniError(codes.INVALID_ENVIRONMENT, "CNI_ARGS: IP= is empty; give an address")
    return [str(a) for a in sorted(out, key=lambda a: a.version)]


def cmd_add(call: Call) -> str:
    check_known_args(call.env.args, KNOWN_ARGS)
    requested = _requested_ips(call)
    conf = call.conf
    if not requested and not conf.assign_ipv4 and not conf.assign_ipv6:
        raise CniError(
            codes.INVALID_NETWORK_CONFIG,
            'nothing to assign: ipam.assign_ipv4 is "false" and ipam.assign_ipv6 is not "true"; '
            "enable one of them",
        )
    node = determine_nodename(conf)
    from tortie.ipam.assign import timestamp

    attrs = {"node": node, "network": conf.name, "timestamp": timestamp()}
    pod = call.env.args.get("K8S_POD_NAME", "")
    if pod:
        attrs["pod"] = pod
        attrs["namespace"] = call.env.args.get("K8S_POD_NAMESPACE", "")
    request = AssignRequest(
        node=node,
        handle_id=handle_of(call),
        addresses=tuple(requested),
        num4=0 if requested else int(conf.assign_ipv4),
        num6=0 if requested else int(conf.assign_ipv6),
        attrs=attrs,
        ipv4_pools=conf.ipv4_pools,
        ipv6_pools=conf.ipv6_pools,
        intent=WORKLOAD,
    )
    try:
        got = allocator_of(call).assign(request)
    except TortieError as exc:
        for note in getattr(exc, "__notes__", ()):
            call.log.error(note)
        version = exc.ip_version or (4 if conf.assign_ipv4 or requested else 6)
        raise CniError(cni_code(exc), f"failed to request IPv{version} addresses: {exc}") from None
    call.log.info(f"assigned {', '.join(got)} to handle {handle_of(call)} on node {node}")
    return json.dumps(format_ipam_result(conf.cni_version, got))


# ------------------------------------------------------------------------------- DEL


def cmd_del(call: Call) -> str:
    try:
        released = allocator_of(call).release_by_handle(handle_of(call))
    except NotFound:
        call.log.info(f"handle {handle_of(call)} holds no addresses: nothing to release")
        return ""
    call.log.info(f"released {', '.join(released) or 'nothing'} of handle {handle_of(call)}")
    return ""


# ----------------------------------------------------------------------------- CHECK


def cmd_check(call: Call) -> str:
    prev = call.conf.raw.get("prevResult")
    if not isinstance(prev, dict):
        raise CniError(
            codes.INVALID_NETWORK_CONFIG,
            'CHECK needs "prevResult" (the result of ADD) in the network configuration',
        )
    ipam = Ipam(call.store)
    for cidr in result_addresses(prev):
        text = cidr.split("/", 1)[0]
        try:
            ipaddress.ip_address(text)
        except ValueError:
            raise CniError(
                codes.INVALID_NETWORK_CONFIG, f"prevResult address {cidr!r} is not an address"
            ) from None
        found = ipam.find_allocation(text)
        if found is None:
            raise CniError(
                codes.CHECK_FAILED,
                f"address {text} of prevResult is not allocated (expected handle {handle_of(call)})",
            )
        block, ordinal = found
        owner = block.owner(ordinal)
        if owner is None or owner.handle_id != handle_of(call):
            raise CniError(
                codes.CHECK_FAILED,
                f"address {text} of prevResult is allocated to handle "
                f"{owner.handle_id if owner else None}, not {handle_of(call)}",
            )
    return ""


# -------------------------------------------------------------------------------- GC


def cmd_gc(call: Call) -> str:
    """Release every handle of this network on this node whose container is not among the
    valid attachments and whose newest address is older than the grace period (an ADD
    still running when the runtime listed its containers keeps its address).  Ownership
    comes from the ``network`` attribute ADD records; a handle without it whose container
    part contains '.' is left alone, since it may belong to another network whose name
    extends this one (``net.a`` + ``b``)."""
    valid = {cid for cid, _ in valid_attachments(call.conf)}
    node = determine_nodename(call.conf)
    grace = call.conf.gc_grace_seconds
    ipam = Ipam(call.store)
    allocator = allocator_of(call)
    base = keys.handle_prefix()
    name = call.conf.name
    released = 0
    for kv in call.store.list(base + name + "."):
        handle_id = kv.key[len(base) :]
        container = handle_id[len(name) + 1 :]
        if container in valid:
            continue
        owners = ipam.handle_owners(handle_id)
        if owners is None:
            continue
        networks, nodes = owners.networks, owners.nodes
        if networks - {name, ""} or ("" in networks and "." in container):
            call.log.debug(f"GC: skipping {handle_id}: it may belong to another network")
            continue
        if nodes - {node}:
            call.log.debug(f"GC: skipping {handle_id}: allocated on {sorted(nodes)}")
            continue
        if grace > 0:
            if owners.allocations == 0:
                call.log.debug(f"GC: skipping {handle_id}: no address yet (an ADD may be running)")
                continue
            if owners.newest is not None and time.time() - owners.newest < grace:
                call.log.debug(f"GC: skipping {handle_id}: younger than {grace:g}s")
                continue
        try:
            addrs = allocator.release_by_handle(handle_id)
        except NotFound:
            continue
        released += 1
        call.log.info(f"GC: released {', '.join(addrs) or 'nothing'} of stale handle {handle_id}")
    call.log.info(f"GC: released {released} stale handle(s)")
    return ""


# ---------------------------------------------------------------------------- STATUS


def cmd_status(call: Call) -> str:
    conf = call.conf
    wanted = {4: conf.assign_ipv4, 6: conf.assign_ipv6}
    named = {4: conf.ipv4_pools, 6: conf.ipv6_pools}
    try:
        node = determine_nodename(conf)
        Ipam(call.store).can_assign(node, {v: named[v] for v in (4, 6) if wanted[v]}, WORKLOAD)
    except (TortieError, CniError) as exc:
        raise CniError(
            codes.PLUGIN_NOT_AVAILABLE, f"plugin cannot assign addresses: {exc}"
        ) from None
    return ""


VERBS: Mapping[str, Callable[[Call], str]] = {
    "ADD": cmd_add,
    "DEL": cmd_del,
    "CHECK": cmd_check,
    "GC": cmd_gc,
    "STATUS": cmd_status,
}  # VERSION is answered by the edge before any configuration is read


def _same(conf: IpamNetConf) -> IpamNetConf:
    return conf


PLUGIN = Plugin("calico-ipam", parse_netconf, _same, VERBS)
run = partial(run_plugin, PLUGIN)  # run(stdin, env, *, open_store=, stderr=, backends=)

__all__ = ["KNOWN_ARGS", "PLUGIN", "VERBS", "handle_of", "run"]
