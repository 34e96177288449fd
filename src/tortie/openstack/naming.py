"""How Calico's Neutron driver names a VM's WorkloadEndpoint (pure)."""

from __future__ import annotations

import re

from tortie.errors import InvalidInput

NAMESPACE = "openstack"
ORCHESTRATOR = "openstack"
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def check_id(what: str, flag: str, value: str) -> str:
    if not _ID.fullmatch(value) or len(value) > 253:
        raise InvalidInput(
            f"{what} {value!r} is not a valid id; give {flag} letters, digits, '.', '_' or '-' "
            "(starting with a letter or digit)"
        )
    return value


def endpoint_name(host: str, device_id: str, port_id: str) -> str:
    """``<host>-openstack-<device_id>-<port_id>``, every ``-`` inside the ids doubled."""
    return "-".join(
        (
            host.replace("-", "--"),
            ORCHESTRATOR,
            device_id.replace("-", "--"),
            port_id.replace("-", "--"),
        )
    )


def interface_name(port_id: str) -> str:
    """``tap`` + the first 11 characters of the port id, as Neutron names the tap device."""
    return "tap" + port_id[:11]


def namespace_for(region: str | None) -> str:
    return f"{NAMESPACE}-{region}" if region else NAMESPACE


def handle_id(namespace: str, name: str) -> str:
    """The IPAM handle holding the pool addresses of one OpenStack endpoint."""
    return f"openstack.{namespace}.{name}"
