"""core/addr.py: parsing and O(1) block arithmetic, including /32, /128 and IPv6 pools
with more blocks than any list could hold."""

from __future__ import annotations

import ipaddress

import pytest

from tortie.core.addr import (
    address_at,
    block_at,
    block_count,
    block_of,
    block_size_of,
    host_bits,
    network_in,
    ordinal_of,
    parse_address,
    parse_network,
    start_index,
)
from tortie.errors import InvalidInput

net = ipaddress.ip_network
ip = ipaddress.ip_address


def test_parse_address_both_families_and_the_address_part_of_a_cidr() -> None:
    assert parse_address("10.0.0.5") == ip("10.0.0.5")
    assert parse_address(" fd00::5 ") == ip("fd00::5")
    assert parse_address("10.0.0.5/26") == ip("10.0.0.5")


@pytest.mark.parametrize("text", ["", "10.0.0.300", "10.0.0", "fd00:::1", "abc", "/24"])
def test_parse_address_refuses_garbage_naming_the_input(text: str) -> None:
    with pytest.raises(InvalidInput, match="--ip") as err:
        parse_address(text, what="--ip")
    assert repr(text) in str(err.value)


def test_parse_address_refuses_a_zone() -> None:
    with pytest.raises(InvalidInput, match="zone id"):
        parse_address("fe80::1%eth0")


def test_parse_network_strict_and_loose() -> None:
    assert parse_network("10.1.0.0/16") == net("10.1.0.0/16")
    assert parse_network("10.1.2.3/16", strict=False) == net("10.1.0.0/16")
    with pytest.raises(InvalidInput, match=r"not strictly masked; use 10\.1\.0\.0/16"):
        parse_network("10.1.2.3/16", what="cidr")
    with pytest.raises(InvalidInput, match="not a valid CIDR"):
        parse_network("10.1.0.0/33")


@pytest.mark.parametrize(
    ("block_size", "version", "bits"), [(26, 4, 6), (32, 4, 0), (122, 6, 6), (128, 6, 0)]
)
def test_host_bits(block_size: int, version: int, bits: int) -> None:
    assert host_bits(block_size, version) == bits


def test_block_count_and_block_at_v4() -> None:
    pool = net("192.168.0.0/16")
    assert block_count(pool, 26) == 1024
    assert block_at(pool, 26, 0) == net("192.168.0.0/26")
    assert block_at(pool, 26, 1) == net("192.168.0.64/26")
    assert block_at(pool, 26, 1023) == net("192.168.255.192/26")
    # A pool that is one block, and /32 blocks of one address each.
    assert block_count(net("10.0.0.0/26"), 26) == 1
    assert block_count(net("10.0.0.0/24"), 32) == 256
    assert block_at(net("10.0.0.0/24"), 32, 255) == net("10.0.0.255/32")


def test_ipv6_block_ordinals_beyond_any_list() -> None:
    pool = net("fd00:1::/48")
    count = block_count(pool, 122)
    assert count == 2**74
    last = block_at(pool, 122, count - 1)
    assert last == net("fd00:1:0:ffff:ffff:ffff:ffff:ffc0/122")
    assert network_in(last, pool)
    assert block_at(net("fd00::/64"), 128, 2**64 - 1) == net("fd00::ffff:ffff:ffff:ffff/128")


@pytest.mark.parametrize(
    ("addr", "size", "block"),
    [
        ("10.0.0.63", 26, "10.0.0.0/26"),
        ("10.0.0.64", 26, "10.0.0.64/26"),
        ("10.0.0.7", 32, "10.0.0.7/32"),
        ("255.255.255.255", 26, "255.255.255.192/26"),
        ("fd00::3f", 122, "fd00::/122"),
        ("fd00::40", 122, "fd00::40/122"),
        ("fd00::1", 128, "fd00::1/128"),
        (
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            122,
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffc0/122",
        ),
    ],
)
def test_block_of_at_block_boundaries(addr: str, size: int, block: str) -> None:
    assert block_of(ip(addr), size) == net(block)


def test_ordinal_and_address_are_inverse() -> None:
    for cidr in ("10.0.0.64/26", "10.0.0.9/32", "fd00::40/122", "fd00::1/128"):
        block = net(cidr)
        for ordinal in (0, block.num_addresses - 1):
            addr = address_at(block, ordinal)
            assert addr in block
            assert ordinal_of(block, addr) == ordinal
    assert address_at(net("10.0.0.64/26"), 63) == ip("10.0.0.127")


def test_block_size_of() -> None:
    assert block_size_of("10.0.0.0/26") == 26
    assert block_size_of("fd00::/122") == 122


def test_network_in() -> None:
    pool = net("10.0.0.0/16")
    assert network_in(net("10.0.255.192/26"), pool)
    assert network_in(pool, pool)
    assert not network_in(net("10.1.0.0/26"), pool)
    assert not network_in(net("10.0.0.0/8"), pool)
    assert not network_in(net("fd00::/122"), pool)
    assert network_in(net("fd00:1:0:1::/122"), net("fd00:1::/48"))


def test_start_index_is_stable_in_range_and_spreads_nodes() -> None:
    assert start_index("node-1", 1024) == start_index("node-1", 1024)
    starts = {start_index(f"node-{i}", 1024) for i in range(50)}
    assert all(0 <= s < 1024 for s in starts)
    assert len(starts) > 40
    assert 0 <= start_index("node-1", 2**74) < 2**74
    assert start_index("node-1", 1) == 0
