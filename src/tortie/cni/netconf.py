"""The network configuration of a ``calico-ipam`` call (reference section 1).

``load_json`` decodes stdin (code 6 on failure); ``parse_netconf`` reads the keys this
plugin uses (code 7 with a message saying what to change).  Unknown keys are ignored, as
in Calico: a conflist written for Calico works unchanged.  Datastore keys fall back to
the environment (``DATASTORE_TYPE``, ``SQLITE_PATH``, ``ETCD_*``).  Standard library only.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping

from tortie.cni import errors as codes
from tortie.cni.protocol import CniError
from tortie.core.record import field, record
from tortie.datastore.config import DatastoreSettings, read_settings
from tortie.errors import InvalidInput
from tortie.model.fields import type_name
from tortie.nodename import DEFAULT_NODENAME_FILE
from tortie.rundir import RunDir

TYPE_CHECKING = False  # typing stays unimported at run time: plugin start-up
if TYPE_CHECKING:
    from typing import Any

NETWORK_NAME = re.compile(r"[a-zA-Z0-9_.\-]+")
CNI_DATASTORE_TYPES = ("sqlite", "etcdv3")
# Calico's (logrus) level names; "warn" is an alias of "warning".
LOG_LEVELS = ("debug", "info", "warning", "warn", "error", "fatal", "panic", "none")


DEFAULT_GC_GRACE_SECONDS = 900.0  # Calico's leak grace period: 15 minutes


@record
class IpamNetConf:
    """The validated configuration.  ``raw`` is the whole decoded object (for keys only
    one command reads: ``prevResult``, ``cni.dev/valid-attachments``)."""

    cni_version: str
    name: str
    assign_ipv4: bool = True
    assign_ipv6: bool = False
    ipv4_pools: tuple[str, ...] = ()
    ipv6_pools: tuple[str, ...] = ()
    datastore: DatastoreSettings = field(default_factory=DatastoreSettings)
    nodename: str = ""
    nodename_file: str = DEFAULT_NODENAME_FILE
    nodename_file_optional: bool = False
    log_level: str = ""
    log_file_path: str = ""
    gc_grace_seconds: float = DEFAULT_GC_GRACE_SECONDS
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False)


_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}


def _duration(ipam: Mapping[str, Any], key: str, default: float) -> float:
    """A Go duration string ("15m", "90s", "1h30m", "0") or a number of seconds."""
    value = ipam.get(key)
    if value is None:
        return default
    fix = f'ipam.{key} must be a duration such as "15m", "90s" or "0s", or a number of seconds'
    if isinstance(value, bool):
        raise _invalid(f"{fix}, not a boolean")
    if isinstance(value, (int, float)):
        if value < 0:
            raise _invalid(f"{fix}, not a negative number")
        return float(value)
    if not isinstance(value, str):
        raise _invalid(f"{fix}, not {type_name(value)}")
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", value)
    if value == "0":
        return 0.0
    if not parts or "".join(n + u for n, u in parts) != value:
        raise _invalid(f"{fix}; got {value[:40]!r}")
    return sum(float(n) * _UNITS[u] for n, u in parts)


def _invalid(msg: str) -> CniError:
    return CniError(codes.INVALID_NETWORK_CONFIG, msg)


def load_json(data: bytes) -> dict[str, Any]:
    """Decode stdin: code 6 when it is not JSON, code 7 when it is not an object."""
    try:
        value = json.loads(data)
    except (ValueError, RecursionError) as exc:
        detail = str(exc) if not isinstance(exc, RecursionError) else "nested too deeply"
        raise CniError(
            codes.DECODE_FAILURE,
            f"failed to load netconf: stdin is not valid JSON ({detail})",
        ) from None
    if not isinstance(value, dict):
        raise _invalid(
            f"failed to load netconf: the network configuration must be a JSON object, "
            f"not {type_name(value)}"
        )
    return value


def _get_str(data: Mapping[str, Any], key: str, where: str = "", default: str = "") -> str:
    value = data.get(key)
    if value is None:
        return default
    if not isinstance(value, str):
        raise _invalid(
            f"{where}{key} must be a JSON string, not {type_name(value)} "
            f"({json.dumps(value)[:40]}); quote the value"
        )
    return value


def _get_bool(data: Mapping[str, Any], key: str) -> bool:
    value = data.get(key)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise _invalid(f"{key} must be true or false, not {type_name(value)}")
    return value


def _get_pools(ipam: Mapping[str, Any], key: str) -> tuple[str, ...]:
    value = ipam.get(key)
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise _invalid(
            f"ipam.{key} must be a list of pool names or CIDRs (non-empty strings), "
            f'e.g. ["default-ipv4-ippool"], not {json.dumps(value)[:60]}'
        )
    return tuple(value)


def _assign_flag(ipam: Mapping[str, Any], key: str, default: bool) -> bool:
    """Calico's string flags: assign_ipv4 is off only for "false", assign_ipv6 on only
    for "true".  A JSON boolean is refused rather than guessed at."""
    value = ipam.get(key)
    if value is None:
        return default
    if not isinstance(value, str):
        raise _invalid(
            f'ipam.{key} must be a JSON string ("true" or "false"), not {type_name(value)}; '
            f'write "{str(value).lower()}" in quotes'
        )
    return value != "false" if key == "assign_ipv4" else value == "true"


def _datastore(top: Mapping[str, Any], env: Mapping[str, str]) -> DatastoreSettings:
    conf_type = _get_str(top, "datastore_type")
    dtype = conf_type or env.get("DATASTORE_TYPE", "") or "sqlite"
    source = "datastore_type" if conf_type else "DATASTORE_TYPE"
    if dtype == "kubernetes":
        raise _invalid(
            f"{source} kubernetes is not supported: tortie keeps IPAM data in etcd or in a "
            f"local SQLite file; set {source} to etcdv3 or sqlite"
        )
    if dtype not in CNI_DATASTORE_TYPES:
        raise _invalid(
            f"{source} {dtype!r} is not supported; set it to one of: "
            + ", ".join(CNI_DATASTORE_TYPES)
        )
    try:
        return read_settings({**top, "datastore_type": dtype}, env)
    except InvalidInput as exc:
        raise _invalid(str(exc)) from None


def parse_netconf(top: Mapping[str, Any], env: Mapping[str, str], version: str) -> IpamNetConf:
    """Read the keys calico-ipam uses.  ``version`` is the already checked cniVersion."""
    name = _get_str(top, "name")
    if not name:
        raise _invalid('the network configuration has no "name"; add "name": "<network>"')
    if not NETWORK_NAME.fullmatch(name):
        raise _invalid(
            f"invalid characters detected in the given network name {name!r}; "
            "only letters a-z, A-Z, numbers 0-9 and the symbols _.- are supported"
        )
    ipam_value = top.get("ipam")
    if ipam_value is None:
        ipam: Mapping[str, Any] = {}
    elif isinstance(ipam_value, dict):
        ipam = ipam_value
    else:
        raise _invalid(f'"ipam" must be an object, not {type_name(ipam_value)}')
    log_level = _get_str(top, "log_level").lower()
    if log_level and log_level not in LOG_LEVELS:
        raise _invalid(
            f"log_level {log_level!r} is not a log level; use one of: " + ", ".join(LOG_LEVELS)
        )
    return IpamNetConf(
        cni_version=version,
        name=name,
        assign_ipv4=_assign_flag(ipam, "assign_ipv4", True),
        assign_ipv6=_assign_flag(ipam, "assign_ipv6", False),
        ipv4_pools=_get_pools(ipam, "ipv4_pools"),
        ipv6_pools=_get_pools(ipam, "ipv6_pools"),
        datastore=_datastore(top, env),
        nodename=_get_str(top, "nodename"),
        nodename_file=_get_str(top, "nodename_file") or DEFAULT_NODENAME_FILE,
        nodename_file_optional=_get_bool(top, "nodename_file_optional"),
        log_level=log_level,
        log_file_path=_get_str(top, "log_file_path"),
        gc_grace_seconds=_duration(ipam, "leak_grace_period", DEFAULT_GC_GRACE_SECONDS),
        raw=top,
    )


def _check_nodename(name: str, source: str) -> str:
    from tortie.model.names import check_node_name

    try:
        return check_node_name(
            name, source, 'use a DNS name; set "nodename" in the network configuration'
        )
    except InvalidInput as exc:
        raise _invalid(exc.message) from None


def determine_nodename(conf: IpamNetConf, require_file: bool = False) -> str:
    """The ``nodename`` key, else the nodename file, else the lower-cased hostname.

    ``require_file`` (the main plugin, unless ``nodename_file_optional``) makes a
    missing file an error instead of falling back to the hostname.
    """
    if conf.nodename:
        return _check_nodename(conf.nodename, "nodename")
    try:
        with open(conf.nodename_file, encoding="utf-8") as f:
            text = f.read().strip()
    except (OSError, ValueError) as exc:
        if require_file:
            raise _invalid(
                f"cannot read the node name from {conf.nodename_file} ({exc}); check that "
                'the node agent is running, or set "nodename" or "nodename_file_optional"'
            ) from None
        text = ""
    if text:
        return _check_nodename(text, conf.nodename_file)
    return _check_nodename(os.uname().nodename.lower(), "the hostname")


def valid_attachments(conf: IpamNetConf) -> list[tuple[str, str]]:
    """GC's ``cni.dev/valid-attachments`` as (containerID, ifname) pairs; code 7 when
    missing or malformed (a missing list must never mean "release everything")."""
    value = conf.raw.get("cni.dev/valid-attachments")
    if not isinstance(value, list):
        raise _invalid(
            'GC needs "cni.dev/valid-attachments": a list of {"containerID", "ifname"} '
            f"objects, got {type_name(value)}"
        )
    out = []
    for i, item in enumerate(value):
        cid = item.get("containerID") if isinstance(item, dict) else None
        ifname = item.get("ifname", "") if isinstance(item, dict) else None
        if not isinstance(cid, str) or not cid or not isinstance(ifname, str):
            raise _invalid(
                f"cni.dev/valid-attachments[{i}] must be an object with a string "
                '"containerID" and "ifname"'
            )
        out.append((cid, ifname))
    return out


# ------------------------------------------------------------------ main plugin

DEFAULT_MTU = 1500


@record
class MainConf:
    """The keys the main plugin reads on top of the IPAM ones."""

    ipam: IpamNetConf
    ipam_type: str
    mtu: int = DEFAULT_MTU
    allow_ip_forwarding: bool = False


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
    # No "mtu" in the configuration: the one the node agent published (host MTU minus
    # the encapsulation overhead), as calico-node's install-cni fills __CNI_MTU__ in.
    mtu = top["mtu"] if "mtu" in top else RunDir.from_env().published_mtu(DEFAULT_MTU)
    if isinstance(mtu, bool) or not isinstance(mtu, int) or not 68 <= mtu <= 65535:
        raise _invalid(f"mtu must be a whole number from 68 to 65535, not {json.dumps(mtu)}")
    settings = top.get("container_settings") or {}
    if not isinstance(settings, dict):
        raise _invalid('"container_settings" must be an object')
    forwarding = settings.get("allow_ip_forwarding", False)
    if not isinstance(forwarding, bool):
        raise _invalid("container_settings.allow_ip_forwarding must be true or false")
    return MainConf(conf, ipam_type, mtu, forwarding)
