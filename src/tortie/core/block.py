"""An allocation block and the pure operations on it.

A block is the unit of compare-and-swap.  Every function here takes a block and returns
a new one (records are frozen; nothing is edited in place) and every change increments
``sequence_number``; each allocation remembers the sequence number of the write that made
it, so a release carrying a stale number can be refused.  Free ordinals form a FIFO:
released ordinals go to the back, so a just-freed address is not handed out again at once.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from tortie.core.addr import Address, Network, address_at, parse_network
from tortie.core.record import field, record, replace


@record
class Attribute:
    """Who owns an allocation: a handle and free-form attributes (pod, namespace, node…)."""

    handle_id: str | None
    secondary: Mapping[str, str] = field(default_factory=dict)


@record
class Block:
    cidr: str
    affinity: str | None
    allocations: tuple[int | None, ...]
    unallocated: tuple[int, ...]
    attributes: tuple[Attribute, ...] = ()
    sequence_number: int = 0
    sequence_number_for_allocation: Mapping[str, int] = field(default_factory=dict)
    strict_affinity: bool = False
    deleted: bool = False
    affinity_claim_time: str | None = None

    @property
    def network(self) -> Network:
        return parse_network(self.cidr)

    @property
    def size(self) -> int:
        return len(self.allocations)

    @property
    def free(self) -> int:
        return len(self.unallocated)

    @property
    def in_use(self) -> int:
        return self.size - self.free

    @property
    def empty(self) -> bool:
        return self.free == self.size

    def host(self) -> str | None:
        """The node this block is affine to, or None."""
        if self.affinity and self.affinity.startswith("host:"):
            return self.affinity[5:]
        return None

    def owner(self, ordinal: int) -> Attribute | None:
        idx = self.allocations[ordinal]
        return None if idx is None else self.attributes[idx]

    def allocated(self) -> Iterable[tuple[int, Attribute]]:
        for ordinal, idx in enumerate(self.allocations):
            if idx is not None:
                yield ordinal, self.attributes[idx]

    def address(self, ordinal: int) -> Address:
        return address_at(self.network, ordinal)


def affinity_for(node: str) -> str:
    return f"host:{node}"


def new_block(cidr: str, node: str | None, strict_affinity: bool = False) -> Block:
    size = 1 << ((32 if ":" not in cidr else 128) - int(cidr.rsplit("/", 1)[1]))
    return Block(
        cidr=cidr,
        affinity=affinity_for(node) if node else None,
        allocations=(None,) * size,
        unallocated=tuple(range(size)),
        strict_affinity=strict_affinity,
    )


def _attribute_index(block: Block, attr: Attribute) -> tuple[tuple[Attribute, ...], int]:
    """Reuse an identical attribute entry or append a new one."""
    for i, existing in enumerate(block.attributes):
        if existing == attr:
            return block.attributes, i
    return (*block.attributes, attr), len(block.attributes)


def assign(block: Block, count: int, attr: Attribute) -> tuple[Block, list[int]]:
    """Take up to ``count`` free ordinals from the front of the FIFO."""
    take = block.unallocated[:count]
    if not take:
        return block, []
    attributes, idx = _attribute_index(block, attr)
    allocations = list(block.allocations)
    seq = block.sequence_number + 1
    seq_map = dict(block.sequence_number_for_allocation)
    for ordinal in take:
        allocations[ordinal] = idx
        seq_map[str(ordinal)] = seq
    new = replace(
        block,
        allocations=tuple(allocations),
        unallocated=block.unallocated[len(take) :],
        attributes=attributes,
        sequence_number=seq,
        sequence_number_for_allocation=seq_map,
    )
    return new, list(take)


def assign_ordinal(block: Block, ordinal: int, attr: Attribute) -> Block | None:
    """Take one specific ordinal; None when it is already allocated."""
    if block.allocations[ordinal] is not None:
        return None
    attributes, idx = _attribute_index(block, attr)
    allocations = list(block.allocations)
    allocations[ordinal] = idx
    seq = block.sequence_number + 1
    seq_map = dict(block.sequence_number_for_allocation)
    seq_map[str(ordinal)] = seq
    return replace(
        block,
        allocations=tuple(allocations),
        unallocated=tuple(o for o in block.unallocated if o != ordinal),
        attributes=attributes,
        sequence_number=seq,
        sequence_number_for_allocation=seq_map,
    )


def release(block: Block, ordinals: Iterable[int]) -> tuple[Block, dict[str | None, int]]:
    """Free allocated ordinals (others are ignored); returns released counts per handle."""
    allocations = list(block.allocations)
    seq_map = dict(block.sequence_number_for_allocation)
    freed: list[int] = []
    per_handle: dict[str | None, int] = {}
    for ordinal in ordinals:
        idx = allocations[ordinal]
        if idx is None:
            continue
        handle = block.attributes[idx].handle_id
        per_handle[handle] = per_handle.get(handle, 0) + 1
        allocations[ordinal] = None
        seq_map.pop(str(ordinal), None)
        freed.append(ordinal)
    if not freed:
        return block, {}
    attributes, allocations = _compact(block.attributes, allocations)
    new = replace(
        block,
        allocations=tuple(allocations),
        unallocated=block.unallocated + tuple(freed),
        attributes=attributes,
        sequence_number=block.sequence_number + 1,
        sequence_number_for_allocation=seq_map,
    )
    return new, per_handle


def ordinals_of_handle(block: Block, handle_id: str) -> list[int]:
    return [o for o, attr in block.allocated() if attr.handle_id == handle_id]


def _compact(
    attributes: tuple[Attribute, ...], allocations: list[int | None]
) -> tuple[tuple[Attribute, ...], list[int | None]]:
    """Drop attribute entries no allocation points at, renumbering the rest."""
    used = sorted({i for i in allocations if i is not None})
    if len(used) == len(attributes):
        return attributes, allocations
    renumber = {old: new for new, old in enumerate(used)}
    return (
        tuple(attributes[i] for i in used),
        [None if i is None else renumber[i] for i in allocations],
    )


def with_affinity(block: Block, node: str | None) -> Block:
    return replace(
        block,
        affinity=affinity_for(node) if node else None,
        sequence_number=block.sequence_number + 1,
    )
