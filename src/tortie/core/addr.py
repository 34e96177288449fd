"""Addresses, blocks and ordinals: integer arithmetic only, never enumeration.

A pool of prefix P with blocks of size B holds ``2**(B-P)`` blocks; block ``i`` starts at
``pool + i * 2**(bits-B)``.  Everything here is O(1) in the size of the pool, so a v6 /48
pool with /122 blocks (2**74 blocks) costs the same as a v4 /24.
"""

from __future__ import annotations

import ipaddress

from tortie.errors import InvalidInput

TYPE_CHECKING = False  # typing stays unimported at run time: plugin start-up
if TYPE_CHECKING:
    from typing import TypeAlias

Network: TypeAlias = ipaddress.IPv4Network | ipaddress.IPv6Network
Address: TypeAlias = ipaddress.IPv4Address | ipaddress.IPv6Address


def parse_address(text: str, what: str = "address") -> Address:
    """An IPv4 or IPv6 address; also accepts ``addr/prefix`` and returns the address part."""
    try:
        addr = ipaddress.ip_address(text.split("/", 1)[0].strip())
    except ValueError:
        raise InvalidInput(
            f"{what} {text!r} is not a valid IPv4 or IPv6 address; write it like 10.0.0.5 or fd00::5"
        ) from None
    if isinstance(addr, ipaddress.IPv6Address) and addr.scope_id:
        raise InvalidInput(
            f"{what} {text!r} carries a zone id (%{addr.scope_id}), which a pod address cannot "
            "have; write the address without it"
        )
    return addr


def parse_network(text: str, what: str = "CIDR", strict: bool = True) -> Network:
    """A CIDR; with ``strict`` the host bits must be zero."""
    try:
        return ipaddress.ip_network(text.strip(), strict=strict)
    except ValueError as exc:
        if strict and "host bits set" in str(exc):
            fixed = ipaddress.ip_network(text.strip(), strict=False)
            raise InvalidInput(f"{what} {text} is not strictly masked; use {fixed}") from None
        raise InvalidInput(
            f"{what} {text!r} is not a valid CIDR; write it like 10.0.0.0/16 or fd00::/48"
        ) from None


def host_bits(block_size: int, version: int) -> int:
    return (32 if version == 4 else 128) - block_size


def block_count(pool: Network, block_size: int) -> int:
    return 1 << (block_size - pool.prefixlen)


def block_at(pool: Network, block_size: int, index: int) -> Network:
    """Block number ``index`` of the pool (0-based)."""
    start = int(pool.network_address) + (index << host_bits(block_size, pool.version))
    return ipaddress.ip_network((start, block_size))


def block_of(addr: Address, block_size: int) -> Network:
    """The block of ``block_size`` that contains ``addr``."""
    shift = host_bits(block_size, addr.version)
    return ipaddress.ip_network(((int(addr) >> shift) << shift, block_size))


def block_size_of(cidr: str) -> int:
    return int(cidr.rsplit("/", 1)[1])


def ordinal_of(block: Network, addr: Address) -> int:
    return int(addr) - int(block.network_address)


def address_at(block: Network, ordinal: int) -> Address:
    return ipaddress.ip_address(int(block.network_address) + ordinal)


def start_index(node: str, count: int) -> int:
    """Where a node starts looking for a free block: a stable hash of its name.

    Different nodes start in different places, so they rarely race for the same block.
    """
    import hashlib  # only when claiming a block

    digest = hashlib.sha256(node.encode()).digest()
    return int.from_bytes(digest[:16], "big") % count


def network_in(inner: Network, outer: Network) -> bool:
    return (
        inner.version == outer.version
        and inner.prefixlen >= outer.prefixlen
        and int(inner.network_address) >> host_bits(outer.prefixlen, outer.version)
        == int(outer.network_address) >> host_bits(outer.prefixlen, outer.version)
    )
