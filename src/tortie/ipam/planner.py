"""The allocator's pure core: which addresses requests get, and what releasing handles
does to blocks.  No I/O: blocks and requests in, new blocks and addresses out.

Every automatic assignment — one request on the ordinary path (``Ipam``), a batch of them
in the node service (``tortie.ipam.batch``) — is planned by ``plan_assign``; every
release by handle — one handle or a batch of DELs — by ``plan_release``, and which
emptied blocks go back to their pool by ``blocks_to_return``.  The callers read the
blocks, hand them here, and write what comes back in one store transaction.  So the
rules live once: the attributes an address records (``attribute_for``), which block may
serve a node (``usable``), the order blocks and requests are served in, and how an
address is written out (``address_text``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from tortie.core import block as blk
from tortie.core.addr import network_in, parse_network
from tortie.core.block import Attribute, Block
from tortie.core.record import record
from tortie.datastore import keys
from tortie.datastore.base import KV
from tortie.ipam.pools import pool_containing
from tortie.ipam.records import FULL_BLOCK_MARK, StoredBlock
from tortie.model.ipam_records import decode_block
from tortie.model.ippool import IPPool


def attribute_for(handle_id: str | None, attrs: Mapping[str, str], node: str) -> Attribute:
    """What an allocation records: the handle and the attributes, ``node`` among them
    unless the caller named one."""
    full = dict(attrs)
    full.setdefault("node", node)
    return Attribute(handle_id, full)


def usable(block: Block, node: str | None) -> bool:
    """Whether ``block`` can give ``node`` an address now: it has one free and is
    affine to the node (``node`` None: any block, as when borrowing)."""
    return block.free > 0 and (node is None or block.host() == node)


def usable_block(kv: KV | None, node: str | None) -> StoredBlock | None:
    """The stored block as read if it can give ``node`` an address now (``usable``); a
    full block is skipped without decoding it (a node's old blocks are full)."""
    if kv is None or FULL_BLOCK_MARK in kv.value:
        return None
    block = decode_block(kv.key, kv.value)
    if not usable(block, node):
        return None
    return StoredBlock(keys.cidr_from_key(kv.key), block, kv.revision)


def address_text(block: Block, ordinal: int) -> str:
    """An allocated address as the allocator answers it: with the block's prefix."""
    return f"{block.address(ordinal)}/{block.cidr.rsplit('/', 1)[1]}"


# ----------------------------------------------------------------------- assign


@record
class Want:
    """One request's need in one family: ``count`` addresses recorded with ``attr``."""

    count: int
    attr: Attribute


@record
class Grant:
    """What one ``Want`` got: its addresses (block prefix) and how many in each block."""

    addresses: list[str]
    counts: dict[str, int]


@record
class AssignPlan:
    """The blocks as they are to be written (only those that changed, keyed by CIDR)
    and one ``Grant`` per ``Want``, in the order given."""

    blocks: dict[str, Block]
    grants: list[Grant]

    def filled(self, wants: Sequence[Want]) -> list[bool]:
        return [len(g.addresses) == w.count for g, w in zip(self.grants, wants, strict=True)]


def plan_assign(blocks: Sequence[Block], wants: Sequence[Want], node: str | None) -> AssignPlan:
    """Serve ``wants`` in order from ``blocks`` in order, each from the front of the
    free list (``core.block.assign``), a want spilling into the next block when one
    runs out.  Blocks ``node`` may not use are skipped (``usable``).  A want that could
    not be served completely keeps what it got: the caller decides."""
    current = {b.cidr: b for b in blocks}
    order = list(current)
    changed: dict[str, Block] = {}
    grants: list[Grant] = []
    start = 0  # blocks before it are of no use to anyone any more
    for want in wants:
        got: list[str] = []
        counts: dict[str, int] = {}
        for i in range(start, len(order)):
            if len(got) >= want.count:
                break
            cidr = order[i]
            block = current[cidr]
            if not usable(block, node):
                if i == start:
                    start += 1
                continue
            new, ordinals = blk.assign(block, want.count - len(got), want.attr)
            current[cidr] = changed[cidr] = new
            got += [address_text(new, o) for o in ordinals]
            counts[cidr] = len(ordinals)
        grants.append(Grant(got, counts))
    return AssignPlan(changed, grants)


# ---------------------------------------------------------------------- release


@record
class ReleasePlan:
    """The blocks as they are to be written (only those that changed), every handle's
    freed addresses (no prefix), and the changed blocks left empty while affine to a
    node (candidates for ``blocks_to_return``)."""

    blocks: dict[str, Block]
    released: dict[str, list[str]]
    emptied: list[str]


def plan_release(
    blocks: Mapping[str, Block], holdings: Sequence[tuple[str, Sequence[str]]]
) -> ReleasePlan:
    """Free every address of each handle in ``holdings`` (handle, the block CIDRs its
    record names) in ``blocks`` (a CIDR missing from it holds nothing).  Each block is
    changed once, however many of the handles it holds."""
    wanted: dict[str, set[str]] = {}
    for handle_id, cidrs in holdings:
        for cidr in cidrs:
            wanted.setdefault(cidr, set()).add(handle_id)
    changed: dict[str, Block] = {}
    freed: dict[tuple[str, str], list[str]] = {}  # (handle, cidr) -> addresses
    for cidr, handles in wanted.items():
        block = blocks.get(cidr)
        if block is None:
            continue
        ordinals = []
        for ordinal, attr in block.allocated():
            if attr.handle_id in handles:
                ordinals.append(ordinal)
                freed.setdefault((attr.handle_id, cidr), []).append(str(block.address(ordinal)))
        if ordinals:
            changed[cidr], _ = blk.release(block, ordinals)
    released = {
        handle_id: [a for cidr in cidrs for a in freed.get((handle_id, cidr), [])]
        for handle_id, cidrs in holdings
    }
    emptied = [c for c, b in changed.items() if b.empty and b.host() is not None]
    return ReleasePlan(changed, released, emptied)


def blocks_to_return(
    emptied: Sequence[Block], pools: Sequence[IPPool], confirmed: Mapping[str, Sequence[str]]
) -> list[str]:
    """Which of the ``emptied`` blocks (empty, affine to a node) go back to their pool:
    a block whose pool is gone, and a block whose node keeps another block of the same
    pool (``confirmed``: node -> its confirmed block CIDRs), so a node keeps one warm
    block per pool however many empty in one batch."""
    returned: list[str] = []
    for block in emptied:
        node = block.host()
        if node is None:
            continue
        net = parse_network(block.cidr)
        pool = pool_containing(net.network_address, pools)
        if pool is None:
            returned.append(block.cidr)
            continue
        others = [
            c
            for c in confirmed.get(node, ())
            if c != block.cidr
            and c not in returned
            and (":" in c) == (":" in block.cidr)
            and network_in(parse_network(c), pool.network)
        ]
        if others:
            returned.append(block.cidr)
    return returned


__all__ = [
    "AssignPlan",
    "Grant",
    "ReleasePlan",
    "Want",
    "address_text",
    "attribute_for",
    "blocks_to_return",
    "plan_assign",
    "plan_release",
    "usable",
    "usable_block",
]
