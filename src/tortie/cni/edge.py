"""The one CNI edge both plugins run through: one request, one dispatcher, one error
mapping.

``run_plugin`` reads a request (environment + network configuration), opens the store,
calls the verb handler and turns every failure into CNI error JSON: ``CniError`` keeps
its code, ``TortieError`` is mapped by ``cni_code``, anything else is a bug reported as
code 999 in one line (never a traceback).  A plugin is a ``Plugin``: how to parse its
configuration and its verb handlers.  Imports stay light: a runtime starts one process
per pod and call.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from tortie.cni import errors as codes
from tortie.cni.errors import cni_code
from tortie.cni.log import Log
from tortie.cni.netconf import IpamNetConf, load_json
from tortie.cni.protocol import (
    LATEST_VERSION,
    CniEnv,
    CniError,
    check_command_version,
    check_version,
    command_of,
    error_json,
    parse_env,
    version_json,
)
from tortie.core.record import record
from tortie.datastore.backends import open_datastore
from tortie.datastore.base import Datastore
from tortie.datastore.config import DatastoreSettings
from tortie.errors import TortieError

TYPE_CHECKING = False  # typing stays unimported at run time: plugin start-up
if TYPE_CHECKING:
    from typing import Any, TextIO

    from tortie.cni.pod_dataplane import PodDataplane
    from tortie.ipam.allocator import AllocatorFor

StoreOpener = Callable[[DatastoreSettings], Datastore]


@record
class Backends:
    """What the process running the call offers the verbs.  The plugin's own process:
    nothing (the plain allocator ``Ipam`` per call, ``ip -batch`` for pods).  The node
    service (``tortie.cni.service``): the ``allocator`` of each store (its batching one,
    ``tortie.ipam.batch.GroupCommit``, with warm blocks), and the netlink pod
    ``dataplane`` (a ``PodDataplane``: ``tortie.dataplane.netlink_pod``)."""

    allocator: AllocatorFor | None = None
    dataplane: PodDataplane | None = None


IN_PROCESS = Backends()


@record
class CniRequest:
    """One plugin call as the runtime made it."""

    command: str
    version: str
    env: CniEnv
    raw_env: Mapping[str, str]
    stdin: bytes
    top: Mapping[str, Any]
    backends: Backends = IN_PROCESS


@record(frozen=False)
class Call:
    """Everything one verb handler gets, for both plugins: the plugin's configuration
    (``IpamNetConf`` for the IPAM plugin, ``MainConf`` for the main one), the request,
    the open store and the log."""

    conf: Any
    request: CniRequest
    store: Datastore
    log: Log

    @property
    def env(self) -> CniEnv:
        return self.request.env

    @property
    def backends(self) -> Backends:
        return self.request.backends


@record
class Plugin:
    """A plugin: its log tag, how its configuration is read (``parse`` returns the
    configuration; ``common`` the part every plugin shares: datastore, logging) and its
    verb handlers."""

    tag: str
    parse: Callable[[Mapping[str, Any], Mapping[str, str], str], Any]
    common: Callable[[Any], IpamNetConf]
    verbs: Mapping[str, Callable[[Call], str]]


def one_line(text: str) -> str:
    return " ".join(text.split())


def run_plugin(
    plugin: Plugin,
    stdin: bytes,
    env: Mapping[str, str],
    *,
    open_store: StoreOpener | None = None,
    stderr: TextIO | None = None,
    backends: Backends = IN_PROCESS,
) -> tuple[int, str]:
    """Run one call.  Returns the exit code (0 or 1) and what goes to stdout.

    ``open_store`` replaces ``open_datastore`` (tests and the node service pass their
    own; a store it returns is not closed here).  ``backends``: see ``Backends``.
    """
    version = LATEST_VERSION
    log = Log(stderr=None)
    try:
        command = command_of(env)
        if command == "VERSION":
            return 0, version_json()
        top = load_json(stdin)
        version = check_version(top.get("cniVersion"))
        check_command_version(command, version)
        conf = plugin.parse(top, env, version)
        common = plugin.common(conf)
        log = Log(common.log_level, common.log_file_path, stderr, tag=f"{plugin.tag} {command} ")
        cenv = parse_env(env, command)
        log.debug(
            f"network {common.name} container {cenv.container_id or '-'} "
            f"netns {cenv.netns or '-'} ifname {cenv.ifname or '-'} args {dict(cenv.args)}"
        )
        request = CniRequest(command, version, cenv, env, stdin, top, backends)
        store = (open_store or open_datastore)(common.datastore)
        try:
            out = plugin.verbs[command](Call(conf, request, store, log))
        finally:
            if open_store is None:
                store.close()
        log.info(f"done: {out or 'ok'}")
        return 0, out
    except CniError as exc:
        log.error(f"code {exc.code}: {exc.msg}")
        return 1, error_json(version, exc.code, one_line(exc.msg), one_line(exc.details))
    except TortieError as exc:
        log.error(f"{type(exc).__name__}: {exc}")
        return 1, error_json(version, cni_code(exc), one_line(str(exc)))
    except Exception as exc:  # the edge: a bug must still answer with CNI error JSON
        msg = one_line(f"internal error: {type(exc).__name__}: {exc}")[:1000]
        log.error(msg)
        return 1, error_json(version, codes.INTERNAL_ERROR, msg, "please report this as a bug")
    finally:
        log.flush()
