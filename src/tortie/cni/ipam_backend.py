"""The IPAM back end of the main plugin: one object, whatever does the work.

``calico-ipam``/``tortie-ipam`` run in-process (no second process per pod); any other
``ipam.type`` is executed from ``CNI_PATH`` with the same stdin and environment, as
the CNI spec delegates.  Both answer ``run(command)`` with the decoded result (None
for an empty one) or raise ``CniError``; a node-service client would be one more back
end with the same method.
"""

from __future__ import annotations

import json
import os

from tortie.cni import errors as codes
from tortie.cni import ipam_plugin
from tortie.cni.edge import Call
from tortie.cni.netconf import MainConf
from tortie.cni.protocol import CniError

TYPE_CHECKING = False  # typing stays unimported at run time: plugin start-up
if TYPE_CHECKING:
    from typing import Any, Protocol

    class IpamBackend(Protocol):
        def run(self, command: str) -> dict[str, Any] | None: ...
else:
    IpamBackend = object

IN_PROCESS_IPAM = ("calico-ipam", "tortie-ipam")
DELEGATE_TIMEOUT = 120.0


class InProcessIpam:
    """tortie's own IPAM plugin, called as a function on the already open store."""

    def __init__(self, call: Call) -> None:
        self.call = call

    def run(self, command: str) -> dict[str, Any] | None:
        out = ipam_plugin.VERBS[command](self.call)
        decoded = json.loads(out) if out else None
        return decoded if isinstance(decoded, dict) else None


class ExecIpam:
    """Another IPAM plugin, executed from CNI_PATH."""

    def __init__(self, name: str, path: tuple[str, ...], env: dict[str, str], stdin: bytes):
        self.name = name
        self.path = path
        self.env = env
        self.stdin = stdin

    def run(self, command: str) -> dict[str, Any] | None:
        return exec_delegate(self.name, self.path, self.env, self.stdin, command)


def ipam_backend(call: Call) -> InProcessIpam | ExecIpam:
    """The main plugin's IPAM back end for ``call`` (its ``conf`` is a ``MainConf``)."""
    conf: MainConf = call.conf
    request = call.request
    if conf.ipam_type in IN_PROCESS_IPAM:
        return InProcessIpam(Call(conf.ipam, request, call.store, call.log))
    return ExecIpam(conf.ipam_type, request.env.path, dict(request.raw_env), request.stdin)


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


def exec_delegate(
    name: str, path: tuple[str, ...], raw_env: dict[str, str], stdin: bytes, command: str
) -> dict[str, Any] | None:
    """Run the IPAM plugin ``ipam.type`` with our stdin and environment (CNI_COMMAND set
    to ``command``).  Its decoded result, None for empty output; its error re-raised."""
    import subprocess

    plugin = find_plugin(name, path)
    env = dict(raw_env)
    env["CNI_COMMAND"] = command
    try:
        proc = subprocess.run(
            [plugin],
            input=stdin,
            env=env,
            capture_output=True,
            timeout=DELEGATE_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise CniError(codes.IO_FAILURE, f"cannot run IPAM plugin {plugin}: {exc}") from None
    text = proc.stdout.decode("utf-8", "replace").strip()
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
