"""The allocator's pure planner (``tortie.ipam.planner``): no store at all.

Hypothesis drives any sequence of assign and release plans over a few blocks and checks
what every plan must keep: no address given twice (within a plan or across plans), never
more than a block holds, each want's addresses from usable blocks only, releases free
exactly the handle's addresses and change each block once.
"""

from __future__ import annotations

import ipaddress

from hypothesis import given, settings
from hypothesis import strategies as st

from tortie.core import block as blk
from tortie.core.block import Attribute, Block
from tortie.ipam.planner import (
    Want,
    address_text,
    attribute_for,
    blocks_to_return,
    plan_assign,
    plan_release,
    usable,
)
from tortie.model.ippool import IPPool

NODE = "n1"


def want(handle: str, count: int = 1) -> Want:
    return Want(count, attribute_for(handle, {}, NODE))


def pool(name: str, cidr: str, block_size: int) -> IPPool:
    return IPPool(name=name, cidr=cidr, block_size=block_size)


def test_attribute_for_records_the_node_unless_named() -> None:
    assert attribute_for("h", {"pod": "p"}, NODE) == Attribute("h", {"pod": "p", "node": NODE})
    assert attribute_for("h", {"node": "x"}, NODE).secondary == {"node": "x"}


def test_usable_blocks_are_the_nodes_with_room() -> None:
    mine = blk.new_block("10.0.0.0/30", NODE)
    assert usable(mine, NODE) and usable(mine, None)
    assert not usable(blk.new_block("10.0.0.4/30", "other"), NODE)
    assert usable(blk.new_block("10.0.0.4/30", "other"), None)  # borrowing takes any
    full, _ = blk.assign(mine, 4, Attribute("h"))
    assert not usable(full, NODE) and not usable(full, None)


def test_wants_are_served_in_order_spilling_into_the_next_block() -> None:
    a = blk.new_block("10.0.0.0/30", NODE)
    b = blk.new_block("10.0.0.4/30", NODE)
    plan = plan_assign([a, b], [want("h1", 3), want("h2", 2), want("h3", 4)], NODE)
    assert [g.addresses for g in plan.grants] == [
        ["10.0.0.0/30", "10.0.0.1/30", "10.0.0.2/30"],
        ["10.0.0.3/30", "10.0.0.4/30"],
        ["10.0.0.5/30", "10.0.0.6/30", "10.0.0.7/30"],  # short: the caller decides
    ]
    assert [g.counts for g in plan.grants] == [
        {"10.0.0.0/30": 3},
        {"10.0.0.0/30": 1, "10.0.0.4/30": 1},
        {"10.0.0.4/30": 3},
    ]
    assert plan.filled([want("h1", 3), want("h2", 2), want("h3", 4)]) == [True, True, False]
    assert set(plan.blocks) == {"10.0.0.0/30", "10.0.0.4/30"}
    assert plan.blocks["10.0.0.0/30"].free == 0 and plan.blocks["10.0.0.4/30"].free == 0
    assert a.free == 4  # the input is untouched


def test_blocks_the_node_may_not_use_are_skipped_and_unchanged_ones_not_returned() -> None:
    other = blk.new_block("10.0.0.0/30", "other")
    mine = blk.new_block("10.0.0.4/30", NODE)
    spare = blk.new_block("10.0.0.8/30", NODE)
    plan = plan_assign([other, mine, spare], [want("h1")], NODE)
    assert plan.grants[0].addresses == ["10.0.0.4/30"]
    assert list(plan.blocks) == ["10.0.0.4/30"]


def test_address_text_has_the_block_prefix() -> None:
    b = blk.new_block("fd00::40/122", NODE)
    assert address_text(b, 3) == "fd00::43/122"


def test_release_changes_each_block_once_and_frees_only_the_handles() -> None:
    a = blk.new_block("10.0.0.0/29", NODE)
    b = blk.new_block("10.0.0.8/29", NODE)
    a, _ = blk.assign(a, 2, Attribute("h1"))
    a, _ = blk.assign(a, 1, Attribute("h2"))
    a, _ = blk.assign(a, 1, Attribute("keep"))
    b, _ = blk.assign(b, 1, Attribute("h1"))
    holdings = [("h1", ["10.0.0.0/29", "10.0.0.8/29"]), ("h2", ["10.0.0.0/29"]), ("gone", [])]
    plan = plan_release({a.cidr: a, b.cidr: b}, holdings)
    assert plan.released == {
        "h1": ["10.0.0.0", "10.0.0.1", "10.0.0.8"],
        "h2": ["10.0.0.2"],
        "gone": [],
    }
    assert plan.blocks["10.0.0.0/29"].sequence_number == a.sequence_number + 1  # one write
    assert [attr.handle_id for _, attr in plan.blocks["10.0.0.0/29"].allocated()] == ["keep"]
    assert plan.emptied == ["10.0.0.8/29"]  # b held only h1's address


def test_a_block_named_but_missing_releases_nothing() -> None:
    plan = plan_release({}, [("h", ["10.0.0.0/29"])])
    assert plan.released == {"h": []} and plan.blocks == {} and plan.emptied == []


def test_emptied_blocks_go_back_but_one_per_pool_stays() -> None:
    pools = [pool("p", "10.0.0.0/24", 29), pool("q", "10.1.0.0/24", 29)]
    empty = [blk.new_block(c, NODE) for c in ("10.0.0.0/29", "10.0.0.8/29", "10.1.0.0/29")]
    confirmed = {NODE: ["10.0.0.0/29", "10.0.0.8/29", "10.1.0.0/29"]}
    assert blocks_to_return(empty, pools, confirmed) == ["10.0.0.0/29"]
    # A third block of the pool (not emptied) lets both empty ones go.
    confirmed[NODE].append("10.0.0.16/29")
    assert blocks_to_return(empty, pools, confirmed) == ["10.0.0.0/29", "10.0.0.8/29"]
    # A block whose pool is gone goes back whatever else the node holds.
    gone = [blk.new_block("10.9.0.0/29", NODE)]
    assert blocks_to_return(gone, pools, {NODE: ["10.9.0.0/29"]}) == ["10.9.0.0/29"]


# ------------------------------------------------------------------------ properties

CIDRS = ["10.0.0.0/29", "10.0.0.8/29", "10.0.0.16/30"]
OWNERS = [NODE, NODE, "other"]

step = st.one_of(
    st.tuples(
        st.just("assign"),
        st.lists(
            st.tuples(st.sampled_from(["h0", "h1", "h2", "h3"]), st.integers(0, 5)), max_size=6
        ),
        st.sampled_from([NODE, None]),
    ),
    st.tuples(st.just("release"), st.lists(st.sampled_from(["h0", "h1", "h2", "h3"]))),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(step, max_size=12))
def test_any_sequence_of_plans_never_gives_an_address_twice(steps: list[tuple]) -> None:  # type: ignore[type-arg]
    blocks: dict[str, Block] = {c: blk.new_block(c, o) for c, o in zip(CIDRS, OWNERS, strict=True)}
    held: dict[str, str] = {}  # address -> handle, the model
    for kind, *args in steps:
        if kind == "assign":
            requests, node = args
            wants = [want(h, n) for h, n in requests]
            plan = plan_assign(list(blocks.values()), wants, node)
            given_now: list[str] = []
            for (h, n), grant in zip(requests, plan.grants, strict=True):
                assert len(grant.addresses) <= n
                assert sum(grant.counts.values()) == len(grant.addresses)
                for text in grant.addresses:
                    addr = text.split("/")[0]
                    assert addr not in held, f"{addr} given twice"
                    cidr = next(
                        c for c in CIDRS if ipaddress.ip_address(addr) in ipaddress.ip_network(c)
                    )
                    assert node is None or blocks[cidr].host() == node  # only usable blocks
                    held[addr] = h
                    given_now.append(addr)
            assert len(given_now) == len(set(given_now))
            # a short want means no usable block had room left
            if any(len(g.addresses) < w.count for g, w in zip(plan.grants, wants, strict=True)):
                after = {**blocks, **plan.blocks}
                assert not any(usable(b, node) for b in after.values())
            blocks.update(plan.blocks)
        else:
            (handles,) = args
            holdings = [(h, list(CIDRS)) for h in dict.fromkeys(handles)]
            freed = plan_release(blocks, holdings)
            for h, _ in holdings:
                mine = sorted(a for a, owner in held.items() if owner == h)
                assert sorted(freed.released[h]) == mine
                for a in mine:
                    del held[a]
            blocks.update(freed.blocks)
        for b in blocks.values():  # never more than a block holds; the model agrees
            assert 0 <= b.free <= b.size and len(set(b.unallocated)) == b.free
            assert b.in_use == sum(1 for _ in b.allocated())
        in_blocks = {
            str(b.address(o)): attr.handle_id for b in blocks.values() for o, attr in b.allocated()
        }
        assert in_blocks == held
