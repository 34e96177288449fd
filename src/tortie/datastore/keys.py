"""Calico's etcd v3 key layout (reference section 8).  Pure string functions."""

from __future__ import annotations

IPAM = "/calico/ipam/v2"
RESOURCES = "/calico/resources/v3/projectcalico.org"
CONFIG_KEY = f"{IPAM}/config"


def _cidr_part(cidr: str) -> str:
    return cidr.replace("/", "-")


def cidr_from_key(key: str) -> str:
    """The CIDR named by the last segment of a block or affinity key."""
    last = key.rsplit("/", 1)[1]
    addr, _, plen = last.rpartition("-")
    return f"{addr}/{plen}"


def family_dir(version: int) -> str:
    return "ipv4" if version == 4 else "ipv6"


def block_prefix(version: int) -> str:
    return f"{IPAM}/assignment/{family_dir(version)}/block/"


def block_key(cidr: str, version: int) -> str:
    return block_prefix(version) + _cidr_part(cidr)


def host_prefix(node: str) -> str:
    return f"{IPAM}/host/{node}/"


def affinity_prefix(node: str, version: int) -> str:
    return f"{IPAM}/host/{node}/{family_dir(version)}/block/"


def affinity_key(node: str, cidr: str, version: int) -> str:
    return affinity_prefix(node, version) + _cidr_part(cidr)


def all_affinities_prefix() -> str:
    return f"{IPAM}/host/"


def node_of_affinity_key(key: str) -> str:
    # /calico/ipam/v2/host/<node>/ipv4/block/<cidr>
    return key[len(f"{IPAM}/host/") :].split("/", 1)[0]


def handle_prefix() -> str:
    return f"{IPAM}/handle/"


def handle_key(handle_id: str) -> str:
    return handle_prefix() + handle_id


def resource_prefix(plural: str, namespace: str | None = None) -> str:
    if namespace:
        return f"{RESOURCES}/{plural}/{namespace}/"
    return f"{RESOURCES}/{plural}/"


def resource_key(plural: str, name: str, namespace: str | None = None) -> str:
    return resource_prefix(plural, namespace) + name
