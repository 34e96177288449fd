"""core/block.py: the pure block operations (FIFO reuse, sequence numbers, attribute
sharing and compaction, /32 and /128 blocks)."""

from __future__ import annotations

import ipaddress

import pytest

from tortie.core.block import (
    Attribute,
    affinity_for,
    assign,
    assign_ordinal,
    new_block,
    ordinals_of_handle,
    release,
    with_affinity,
)
from tortie.core.record import FrozenInstanceError

A = Attribute("net.a", {"pod": "a"})
B = Attribute("net.b", {"pod": "b"})


def test_new_block_sizes_and_affinity() -> None:
    v4 = new_block("10.0.0.0/26", "n1")
    assert (v4.size, v4.free, v4.in_use, v4.empty) == (64, 64, 0, True)
    assert v4.affinity == affinity_for("n1") == "host:n1" and v4.host() == "n1"
    assert new_block("10.0.0.7/32", None).size == 1
    assert new_block("fd00::/122", "n1").size == 64
    assert new_block("fd00::1/128", None).host() is None


def test_assign_takes_from_the_front_and_bumps_the_sequence() -> None:
    block = new_block("10.0.0.0/26", "n1")
    after, got = assign(block, 3, A)
    assert got == [0, 1, 2]
    assert after.sequence_number == block.sequence_number + 1
    assert after.sequence_number_for_allocation == {"0": 1, "1": 1, "2": 1}
    assert after.in_use == 3 and block.in_use == 0  # the original is untouched
    assert [str(after.address(o)) for o in got] == ["10.0.0.0", "10.0.0.1", "10.0.0.2"]
    assert after.owner(1) == A and after.owner(3) is None
    with pytest.raises(FrozenInstanceError):
        after.cidr = "x"  # type: ignore[misc]


def test_assign_more_than_free_gives_what_there_is() -> None:
    block, got = assign(new_block("10.0.0.4/32", None), 5, A)
    assert got == [0] and block.free == 0
    again, none = assign(block, 1, B)
    assert none == [] and again is block  # nothing changed, no new sequence number


def test_identical_attributes_share_one_entry() -> None:
    block, _ = assign(new_block("10.0.0.0/26", None), 2, A)
    block, _ = assign(block, 1, Attribute("net.a", {"pod": "a"}))
    block, _ = assign(block, 1, B)
    assert block.attributes == (A, B)
    assert ordinals_of_handle(block, "net.a") == [0, 1, 2]
    assert ordinals_of_handle(block, "net.b") == [3]


def test_release_is_fifo_counts_per_handle_and_compacts() -> None:
    block, _ = assign(new_block("10.0.0.0/30", None), 2, A)
    block, _ = assign(block, 2, B)
    freed, per_handle = release(block, [0, 1, 1, 3])
    assert per_handle == {"net.a": 2, "net.b": 1}
    assert freed.unallocated == (0, 1, 3)  # released ordinals go to the back
    assert freed.attributes == (B,)  # A's entry is gone, B renumbered
    assert freed.owner(2) == B
    assert "0" not in freed.sequence_number_for_allocation
    _again, got = assign(freed, 1, A)
    assert got == [0]
    unchanged, none = release(freed, [0])
    assert none == {} and unchanged is freed


def test_assign_ordinal_and_ipv6_last_address() -> None:
    block = new_block("fd00::/122", "n1")
    taken = assign_ordinal(block, 63, A)
    assert taken is not None
    assert taken.address(63) == ipaddress.ip_address("fd00::3f")
    assert 63 not in taken.unallocated and taken.in_use == 1
    assert assign_ordinal(taken, 63, B) is None  # already allocated
    one = assign_ordinal(new_block("fd00::1/128", None), 0, A)
    assert one is not None and one.free == 0 and str(one.address(0)) == "fd00::1"


def test_with_affinity() -> None:
    block = new_block("10.0.0.0/26", "n1")
    moved = with_affinity(block, "n2")
    assert moved.host() == "n2" and moved.sequence_number == block.sequence_number + 1
    assert with_affinity(block, None).affinity is None
