"""The main ``calico`` / ``tortie-cni`` plugin: ADD, DEL, CHECK, VERSION, GC, STATUS.

ADD: addresses from IPAM (``calico-ipam``/``tortie-ipam`` in-process, any other
``ipam.type`` executed from ``CNI_PATH``), the pod's veth pair (``setup_pod``), then a
WorkloadEndpoint.  Any failure after IPAM rolls everything back.  DEL undoes all three
and is idempotent.  ``run(stdin, env)`` returns ``(exit code, stdout)``; every failure is
CNI error JSON, never a traceback.

Imports stay light (no yaml, pyroute2, argparse): one process runs per pod and call.
"""

from __future__ import annotations

import ipaddress
import json
import os
from collections.abc import Callable, Mapping

from tortie.cni import errors as codes
from tortie.cni import ipam_plugin
from tortie.cni.endpoint import (
    EndpointId,
    build_endpoint,
    check_endpoint,
    delete_endpoint,
    gc_endpoints,
    read_endpoint,
    write_endpoint,
)
from tortie.cni.errors import cni_code
from tortie.cni.log import Log
from tortie.cni.netconf import (
    IpamNetConf,
    determine_nodename,
    load_json,
    parse_netconf,
    valid_attachments,
)
from tortie.cni.protocol import (
    LATEST_VERSION,
    CniEnv,
    CniError,
    check_command_version,
    check_known_args,
    check_version,
    command_of,
    error_json,
    format_ipam_result,
    parse_env,
    result_addresses,
    version_json,
    version_tuple,
)
from tortie.cni.sandbox import check_netns_path
from tortie.core.record import record
from tortie.dataplane.pod import PodNetwork, host_veth_name, setup_pod, teardown_pod
from tortie.datastore.backends import open_datastore
from tortie.datastore.base import Datastore
from tortie.datastore.config import DatastoreSettings
from tortie.errors import InvalidInput, NotFound, TortieError

TYPE_CHECKING = False  # typing stays unimported at run time: plugin start-up
if TYPE_CHECKING:
    from typing import Any, TextIO

IN_PROCESS_IPAM = ("calico-ipam", "tortie-ipam")
DEFAULT_MTU = 1500
HOST_MAC = "ee:ee:ee:ee:ee:ee"
DELEGATE_TIMEOUT = 120.0

StoreOpener = Callable[[DatastoreSettings], Datastore]


@record
class MainConf:
    """The keys the main plugin reads on top of the IPAM ones."""

    ipam: IpamNetConf
    ipam_type: str
    mtu: int = DEFAULT_MTU
    allow_ip_forwarding: bool = False


def _invalid(msg: str) -> CniError:
    return CniError(codes.INVALID_NETWORK_CONFIG, msg)


def parse_main_conf(top: Mapping[str, Any], env: Mapping[str, str], version: str) -> MainConf:
    conf = parse_netconf(top, env, version)
    ipam = top.get("ipam")
    ipam_type = ipam.get("type") if isinstance(ipam, dict) else None
    if not isinstance(ipam_type, str) or not ipam_type:
        raise _invalid(
            'the network configuration needs an "ipam" object with a "type", e.g. '
            '"ipam": {"type": "calico-ipam"}'
        )
    if "/" in ipam_type or ipam_type in (".", ".."):
        raise _invalid(f"ipam.type {ipam_type!r} is not a plugin name; name a plugin in CNI_PATH")
    mtu = top.get("mtu", DEFAULT_MTU)
    if isinstance(mtu, bool) or not isinstance(mtu, int) or not 68 <= mtu <= 65535:
        raise _invalid(f"mtu must be a whole number from 68 to 65535, not {json.dumps(mtu)}")
    settings = top.get("container_settings") or {}
    if not isinstance(settings, dict):
        raise _invalid('"container_settings" must be an object')
    forwarding = settings.get("allow_ip_forwarding", False)
    if not isinstance(forwarding, bool):
        raise _invalid("container_settings.allow_ip_forwarding must be true or false")
    return MainConf(conf, ipam_type, mtu, forwarding)


@record(frozen=False)
class Ctx:
    """Everything one verb needs."""

    conf: MainConf
    env: CniEnv
    raw_env: Mapping[str, str]
    stdin: bytes
    store: Datastore
    log: Log

    @property
    def in_process(self) -> bool:
        return self.conf.ipam_type in IN_PROCESS_IPAM

    def ipam_call(self) -> ipam_plugin.Call:
        return ipam_plugin.Call(self.conf.ipam, self.env, self.store, self.log)

    def node(self, lenient: bool = False) -> str:
        """The node name.  ``lenient`` (DEL, GC) falls back to the host name when the
        nodename file has gone: cleaning up must not depend on it."""
        ipam = self.conf.ipam
        return determine_nodename(ipam, require_file=not (lenient or ipam.nodename_file_optional))

    def endpoint_id(self, node: str) -> EndpointId:
        args = self.env.args
        pod, ns = args.get("K8S_POD_NAME", ""), args.get("K8S_POD_NAMESPACE", "")
        if not (pod and ns):
            pod = ns = ""
        return EndpointId(node, self.env.container_id, self.env.ifname, pod, ns)

    def host_ifname(self) -> str:
        args = self.env.args
        return host_veth_name(
            self.env.container_id,
            args.get("K8S_POD_NAMESPACE") or None,
            args.get("K8S_POD_NAME") or None,
        )


def _one_line(text: str) -> str:
    return " ".join(text.split())


# ------------------------------------------------------------------------------- run


def run(
    stdin: bytes,
    env: Mapping[str, str],
    *,
    open_store: StoreOpener | None = None,
    stderr: TextIO | None = None,
) -> tuple[int, str]:
    """Run one plugin call.  Returns the exit code (0 or 1) and what goes to stdout."""
    version = LATEST_VERSION
    log = Log(stderr=None)
    try:
        command = command_of(env)
        if command == "VERSION":
            return 0, version_json()
        top = load_json(stdin)
        version = check_version(top.get("cniVersion"))
        check_command_version(command, version)
        conf = parse_main_conf(top, env, version)
        log = Log(conf.ipam.log_level, conf.ipam.log_file_path, stderr, tag=f"calico {command} ")
        cenv = parse_env(env, command)
        log.debug(
            f"network {conf.ipam.name} container {cenv.container_id or '-'} "
            f"netns {cenv.netns or '-'} ifname {cenv.ifname or '-'} args {dict(cenv.args)}"
        )
        settings = conf.ipam.datastore
        store = open_store(settings) if open_store else open_datastore(settings)
        try:
            out = VERBS[command](Ctx(conf, cenv, env, stdin, store, log))
        finally:
            if open_store is None:
                store.close()
        log.info(f"done: {out or 'ok'}")
        return 0, out
    except CniError as exc:
        log.error(f"code {exc.code}: {exc.msg}")
        return 1, error_json(version, exc.code, _one_line(exc.msg), _one_line(exc.details))
    except TortieError as exc:
        log.error(f"{type(exc).__name__}: {exc}")
        return 1, error_json(version, cni_code(exc), _one_line(str(exc)))
    except Exception as exc:  # the edge: a bug must still answer with CNI error JSON
        msg = _one_line(f"internal error: {type(exc).__name__}: {exc}")[:1000]
        log.error(msg)
        return 1, error_json(version, codes.INTERNAL_ERROR, msg, "please report this as a bug")
    finally:
        log.flush()


# ------------------------------------------------------------------ delegated IPAM


def find_plugin(name: str, path: tuple[str, ...]) -> str:
    for directory in path:
        candidate = os.path.join(directory, name)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    raise CniError(
        codes.INVALID_NETWORK_CONFIG,
        f"failed to find IPAM plugin {name!r} in CNI_PATH [{':'.join(path)}]; install it "
        "there or fix ipam.type",
    )


def exec_delegate(ctx: Ctx, command: str) -> dict[str, Any] | None:
    """Run the IPAM plugin ``ipam.type`` with our stdin and environment (CNI_COMMAND set
    to ``command``).  Its decoded result, None for empty output; its error re-raised."""
    import subprocess

    plugin = find_plugin(ctx.conf.ipam_type, ctx.env.path)
    env = dict(ctx.raw_env)
    env["CNI_COMMAND"] = command
    try:
        proc = subprocess.run(
            [plugin],
            input=ctx.stdin,
            env=env,
            capture_output=True,
            timeout=DELEGATE_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise CniError(codes.IO_FAILURE, f"cannot run IPAM plugin {plugin}: {exc}") from None
    text = proc.stdout.decode("utf-8", "replace").strip()
    name = ctx.conf.ipam_type
    try:
        decoded = json.loads(text) if text else None
    except ValueError:
        decoded = None
        if proc.returncode == 0:
            raise CniError(
                codes.DECODE_FAILURE,
                f"IPAM plugin {name} {command} printed something that is not JSON: {text[:200]}",
            ) from None
    if proc.returncode != 0:
        if isinstance(decoded, dict) and isinstance(decoded.get("code"), int):
            raise CniError(
                decoded["code"],
                f"IPAM plugin {name} {command} failed: {decoded.get('msg', '')}",
                str(decoded.get("details", "")),
            )
        err = proc.stderr.decode("utf-8", "replace").strip()[-300:]
        raise CniError(
            codes.IO_FAILURE,
            f"IPAM plugin {name} {command} exited with {proc.returncode}: {text[:200] or err}",
        )
    if decoded is not None and not isinstance(decoded, dict):
        raise CniError(
            codes.DECODE_FAILURE, f"IPAM plugin {name} {command} result is not an object"
        )
    return decoded


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


def _release(ctx: Ctx) -> None:
    if ctx.in_process:
        ipam_plugin.cmd_del(ctx.ipam_call())
    else:
        exec_delegate(ctx, "DEL")


def cmd_add(ctx: Ctx) -> str:
    check_known_args(ctx.env.args, ipam_plugin.KNOWN_ARGS)
    node = ctx.node()
    ident = ctx.endpoint_id(node)
    host = ctx.host_ifname()
    netns = ctx.env.netns
    check_netns_path(netns)
    if ctx.in_process:
        ipam_out = json.loads(ipam_plugin.cmd_add(ctx.ipam_call()))
    else:
        ipam_out = exec_delegate(ctx, "ADD") or {}
    done = "ipam"
    try:
        addresses = _single_addresses(result_addresses(ipam_out))
        ctx.log.info(f"IPAM gave {', '.join(addresses)}; host veth {host}")
        done = "veth"
        interfaces = setup_pod(
            PodNetwork(
                host_ifname=host,
                pod_ifname=ctx.env.ifname,
                netns=netns,
                addresses=addresses,
                mtu=ctx.conf.mtu,
                allow_ip_forwarding=ctx.conf.allow_ip_forwarding,
            )
        )
        done = "wep"
        wep = build_endpoint(ident, ctx.conf.ipam.name, addresses, host, interfaces.pod_mac)
        write_endpoint(ctx.store, wep)
        result = format_result(
            ctx.conf.ipam.cni_version, addresses, host, ctx.env.ifname, interfaces.pod_mac, netns
        )
    except BaseException as exc:
        _rollback(ctx, exc, done, ident, host)
        raise
    ctx.log.info(f"pod {ident.wep_namespace}/{ident.name} is up")
    return json.dumps(result)


def _rollback(ctx: Ctx, exc: BaseException, done: str, ident: EndpointId, host: str) -> None:
    """Undo an ADD that failed after IPAM ran; each step's own failure becomes a note."""
    ctx.log.error(f"ADD failed ({exc}); rolling back")
    steps: list[tuple[str, Callable[[], object]]] = []
    if done == "wep":
        steps.append(("delete WorkloadEndpoint", lambda: delete_endpoint(ctx.store, ident)))
    if done in ("veth", "wep"):
        steps.append(("delete pod veth", lambda: teardown_pod(host, [], None)))
    steps.append(("release addresses", lambda: _release(ctx)))
    for what, step in steps:
        try:
            step()
        except Exception as undo:
            ctx.log.error(f"rollback: {what} failed: {undo}")
            exc.add_note(f"rollback: {what} failed: {undo}")


# ------------------------------------------------------------------------------- DEL


def cmd_del(ctx: Ctx) -> str:
    """Tear down, delete the endpoint, release.  Every step runs; the first failure is
    reported at the end.  Missing pieces are success."""
    node = ctx.node(lenient=True)
    ident = ctx.endpoint_id(node)
    host = ctx.host_ifname()
    failures: list[BaseException] = []
    try:
        wep = read_endpoint(ctx.store, ident)
    except (TortieError, ValueError) as exc:
        ctx.log.warning(f"cannot read WorkloadEndpoint {ident.name}: {exc}")
        wep = None
    ours = wep is None or not wep.container_id or wep.container_id == ctx.env.container_id
    if ours:
        addresses = list(wep.ip_networks) if wep is not None else []
        try:
            teardown_pod(host, addresses, ctx.env.netns or None)
        except (TortieError, OSError) as exc:
            failures.append(exc)
        try:
            delete_endpoint(ctx.store, ident)
        except TortieError as exc:
            failures.append(exc)
    else:
        ctx.log.info(
            f"WorkloadEndpoint {ident.name} belongs to container {wep.container_id if wep else ''}"
            f"; leaving it and {host} alone"
        )
    try:
        _release(ctx)
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


def cmd_check(ctx: Ctx) -> str:
    prev = ctx.conf.ipam.raw.get("prevResult")
    if not isinstance(prev, dict):
        raise CniError(
            codes.INVALID_NETWORK_CONFIG,
            'CHECK needs "prevResult" (the result of ADD) in the network configuration',
        )
    addresses = _single_addresses(result_addresses(prev))
    node = ctx.node()
    ident = ctx.endpoint_id(node)
    host = ctx.host_ifname()
    prev_host, prev_mac = _prev_interfaces(prev)
    if prev_host is not None and prev_host != host:
        raise CniError(
            codes.CHECK_FAILED,
            f"prevResult names host interface {prev_host}, but this pod's is {host}",
        )
    if ctx.in_process:
        ipam_plugin.cmd_check(ctx.ipam_call())
    else:
        exec_delegate(ctx, "CHECK")
    from tortie.dataplane.pod import check_pod

    try:
        check_pod(
            PodNetwork(
                host_ifname=host,
                pod_ifname=ctx.env.ifname,
                netns=ctx.env.netns,
                addresses=addresses,
                mtu=ctx.conf.mtu,
                allow_ip_forwarding=ctx.conf.allow_ip_forwarding,
            )
        )
    except (NotFound, InvalidInput) as exc:
        raise CniError(codes.CHECK_FAILED, f"CHECK failed: {exc}") from None
    problems = check_endpoint(ctx.store, ident, addresses, host, prev_mac)
    if problems:
        raise CniError(codes.CHECK_FAILED, "CHECK failed: " + "; ".join(problems))
    return ""


# ------------------------------------------------------------------- GC and STATUS


def cmd_gc(ctx: Ctx) -> str:
    valid = {cid for cid, _ in valid_attachments(ctx.conf.ipam)}
    if ctx.in_process:
        ipam_plugin.cmd_gc(ctx.ipam_call())
    else:
        exec_delegate(ctx, "GC")
    removed = gc_endpoints(ctx.store, ctx.node(lenient=True), ctx.conf.ipam.name, valid)
    if removed:
        ctx.log.info(f"GC: deleted stale WorkloadEndpoints {', '.join(removed)}")
    return ""


def cmd_status(ctx: Ctx) -> str:
    if ctx.in_process:
        ipam_plugin.cmd_status(ctx.ipam_call())
    else:
        exec_delegate(ctx, "STATUS")
    return ""


def cmd_version(ctx: Ctx) -> str:  # pragma: no cover - answered before the store opens
    return version_json()


VERBS: Mapping[str, Callable[[Ctx], str]] = {
    "ADD": cmd_add,
    "DEL": cmd_del,
    "CHECK": cmd_check,
    "GC": cmd_gc,
    "STATUS": cmd_status,
    "VERSION": cmd_version,
}

__all__ = ["VERBS", "Ctx", "MainConf", "parse_main_conf", "run"]
