"""The CNI protocol, specification 1.1.0: versions, environment, results and errors.

Pure functions and small records; standard library only (every plugin call imports this).

* Results are shaped for the configuration's ``cniVersion``: 0.1.0/0.2.0 ``ip4``/``ip6``
  objects, 0.3.x/0.4.0 ``ips[]`` with ``version``, 1.x ``ips[]`` without it.
* Errors go to stdout as ``{"cniVersion", "code", "msg", "details"}`` and the process
  exits 1; logs never go to stdout.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence

from tortie.cni import errors as codes
from tortie.core.record import field, record

TYPE_CHECKING = False  # typing stays unimported at run time: plugin start-up
if TYPE_CHECKING:
    from typing import Any

SUPPORTED_VERSIONS = ("0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")
LATEST_VERSION = SUPPORTED_VERSIONS[-1]
# libcni treats a configuration without cniVersion as 0.1.0.
DEFAULT_VERSION = "0.1.0"

COMMANDS = ("ADD", "DEL", "CHECK", "VERSION", "GC", "STATUS")
# Environment variables each command needs besides CNI_COMMAND.
REQUIRED_ENV: Mapping[str, tuple[str, ...]] = {
    "ADD": ("CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"),
    "CHECK": ("CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"),
    "DEL": ("CNI_CONTAINERID", "CNI_IFNAME"),
    "GC": (),
    "STATUS": (),
    "VERSION": (),
}
# The oldest configuration version that allows each command.
MIN_VERSION: Mapping[str, str] = {"CHECK": "0.4.0", "GC": "1.1.0", "STATUS": "1.1.0"}

_CONTAINER_ID = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.\-]*")
IFNAMSIZ = 16


class CniError(Exception):
    """An error to report to the runtime with a CNI code.  ``msg`` is one line."""

    def __init__(self, code: int, msg: str, details: str = "") -> None:
        from tortie.errors import bounded

        msg, details = bounded(msg), bounded(details)
        super().__init__(msg)
        self.code = code
        self.msg = msg
        self.details = details

    def __str__(self) -> str:
        return self.msg


def version_tuple(version: str) -> tuple[int, int, int]:
    """``"0.3.1"`` → ``(0, 3, 1)``; only for versions in SUPPORTED_VERSIONS."""
    a, b, c = version.split(".")
    return int(a), int(b), int(c)


def check_version(version: object) -> str:
    """The configuration's cniVersion if this plugin speaks it; CniError otherwise."""
    if version is None:
        return DEFAULT_VERSION
    if not isinstance(version, str):
        raise CniError(
            codes.INVALID_NETWORK_CONFIG,
            f"cniVersion must be a string such as {LATEST_VERSION!r}, not {json.dumps(version)}",
        )
    if version == "":
        return DEFAULT_VERSION
    if version not in SUPPORTED_VERSIONS:
        raise CniError(
            codes.INCOMPATIBLE_VERSION,
            f"incompatible CNI versions: config is {version!r}, plugin supports "
            f"{', '.join(SUPPORTED_VERSIONS)}",
            f"set cniVersion to one of {', '.join(SUPPORTED_VERSIONS)}",
        )
    return version


def check_command_version(command: str, version: str) -> None:
    """CHECK needs 0.4.0 or later, GC and STATUS 1.1.0 or later."""
    least = MIN_VERSION.get(command)
    if least is not None and version_tuple(version) < version_tuple(least):
        raise CniError(
            codes.INCOMPATIBLE_VERSION,
            f"config version {version} does not allow {command}; "
            f"{command} needs cniVersion {least} or later",
        )


def version_json() -> str:
    """What VERSION prints."""
    return json.dumps({"cniVersion": LATEST_VERSION, "supportedVersions": list(SUPPORTED_VERSIONS)})


def error_json(version: str, code: int, msg: str, details: str = "") -> str:
    return json.dumps({"cniVersion": version, "code": code, "msg": msg, "details": details})


def is_ipv6(address: str) -> bool:
    return ":" in address


def format_ipam_result(version: str, addresses: Sequence[str]) -> dict[str, Any]:
    """An IPAM result for ``addresses`` (CIDR text, in order) in the shape of ``version``."""
    v = version_tuple(version)
    if v < (0, 3, 0):
        out: dict[str, Any] = {"cniVersion": version}
        for key, six in (("ip4", False), ("ip6", True)):
            first = next((a for a in addresses if is_ipv6(a) == six), None)
            if first is not None:
                out[key] = {"ip": first}
        out["dns"] = {}
        return out
    ips: list[dict[str, str]] = []
    for a in addresses:
        entry = {"address": a}
        if v < (1, 0, 0):
            entry = {"version": "6" if is_ipv6(a) else "4", "address": a}
        ips.append(entry)
    return {"cniVersion": version, "ips": ips, "dns": {}}


def result_addresses(prev: Mapping[str, Any]) -> list[str]:
    """The addresses (CIDR text) of a result in any version's shape.  CniError (code 7)
    when the shape is wrong."""
    out: list[str] = []
    ips = prev.get("ips")
    if ips is not None:
        if not isinstance(ips, list):
            raise CniError(codes.INVALID_NETWORK_CONFIG, "prevResult.ips must be a list")
        for i, entry in enumerate(ips):
            addr = entry.get("address") if isinstance(entry, dict) else None
            if not isinstance(addr, str):
                raise CniError(
                    codes.INVALID_NETWORK_CONFIG,
                    f'prevResult.ips[{i}].address must be a string such as "10.0.0.5/26"',
                )
            out.append(addr)
    for key in ("ip4", "ip6"):
        entry = prev.get(key)
        if entry is None:
            continue
        addr = entry.get("ip") if isinstance(entry, dict) else None
        if not isinstance(addr, str):
            raise CniError(codes.INVALID_NETWORK_CONFIG, f"prevResult.{key}.ip must be a string")
        out.append(addr)
    return out


# --------------------------------------------------------------------------- environment


@record
class CniEnv:
    """The CNI_* variables of one call, validated for its command."""

    command: str
    container_id: str = ""
    netns: str = ""
    ifname: str = ""
    args: Mapping[str, str] = field(default_factory=dict)
    path: tuple[str, ...] = ()


def command_of(env: Mapping[str, str]) -> str:
    command = env.get("CNI_COMMAND", "")
    if not command:
        raise CniError(
            codes.INVALID_ENVIRONMENT,
            "CNI_COMMAND is not set; set it to one of " + ", ".join(COMMANDS),
        )
    if command not in COMMANDS:
        raise CniError(
            codes.INVALID_ENVIRONMENT,
            f"CNI_COMMAND {command!r} is not a CNI command; set it to one of "
            + ", ".join(COMMANDS),
        )
    return command


def check_interface_name(name: str) -> str | None:
    """Why ``name`` is not a valid interface name, or None (libcni's rules)."""
    if len(name.encode()) >= IFNAMSIZ:
        return f"is longer than {IFNAMSIZ - 1} bytes"
    if name in (".", ".."):
        return "may not be '.' or '..'"
    for ch in name:
        if ch in "/:" or ch.isspace() or not ch.isprintable():
            return f"may not contain {ch!r}"
    return None


def parse_cni_args(text: str) -> dict[str, str]:
    """``K=V;K2=V2`` → dict.  Empty segments are skipped; a segment without ``=`` is an
    error (code 4).  A repeated key keeps its last value."""
    out: dict[str, str] = {}
    for pair in text.split(";"):
        if not pair:
            continue
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise CniError(
                codes.INVALID_ENVIRONMENT,
                f"CNI_ARGS: invalid pair {pair!r}; write KEY=VALUE pairs separated by ';'",
            )
        out[key] = value
    return out


def ignore_unknown(args: Mapping[str, str]) -> bool:
    return args.get("IgnoreUnknown", "").lower() in ("1", "true")


def check_known_args(args: Mapping[str, str], known: Sequence[str]) -> None:
    """Unknown CNI_ARGS keys are an error (code 4) unless ``IgnoreUnknown=1``."""
    if ignore_unknown(args):
        return
    unknown = [k for k in args if k not in known and k != "IgnoreUnknown"]
    if unknown:
        raise CniError(
            codes.INVALID_ENVIRONMENT,
            f"CNI_ARGS: unknown args {', '.join(unknown)}; remove them or add IgnoreUnknown=1",
        )


def parse_env(env: Mapping[str, str], command: str) -> CniEnv:
    """Validate the variables ``command`` needs; CniError code 4 names each bad one."""
    missing = [name for name in REQUIRED_ENV[command] if not env.get(name)]
    if missing:
        raise CniError(
            codes.INVALID_ENVIRONMENT,
            f"missing environment variable{'s' if len(missing) > 1 else ''} "
            f"{', '.join(missing)} (required for {command})",
        )
    container_id = env.get("CNI_CONTAINERID", "")
    if container_id and not _CONTAINER_ID.fullmatch(container_id):
        raise CniError(
            codes.INVALID_ENVIRONMENT,
            f"CNI_CONTAINERID {container_id!r} is invalid: use letters, digits and '_.-', "
            "starting with a letter or digit",
        )
    ifname = env.get("CNI_IFNAME", "")
    if ifname:
        problem = check_interface_name(ifname)
        if problem is not None:
            raise CniError(
                codes.INVALID_ENVIRONMENT, f"CNI_IFNAME {ifname!r} is invalid: it {problem}"
            )
    args = parse_cni_args(env.get("CNI_ARGS", ""))
    path = tuple(p for p in env.get("CNI_PATH", "").split(":") if p)
    return CniEnv(
        command=command,
        container_id=container_id,
        netns=env.get("CNI_NETNS", ""),
        ifname=ifname,
        args=args,
        path=path,
    )
