"""Calico's stored JSON for blocks, block affinities and handles (etcd layout, §6/§8).

Decoding checks the shape and raises ``DatastoreError`` naming the key, so a corrupt
value is reported, never silently overwritten.
"""

from __future__ import annotations

import ipaddress
import json

from tortie.core.block import Attribute, Block
from tortie.core.record import field, record
from tortie.errors import DatastoreError

TYPE_CHECKING = False  # typing stays unimported at run time: plugin start-up
if TYPE_CHECKING:
    from typing import Any

PENDING = "pending"
CONFIRMED = "confirmed"
PENDING_DELETION = "pendingDeletion"
AFFINITY_STATES = (PENDING, CONFIRMED, PENDING_DELETION)


@record
class Affinity:
    state: str
    deleted: bool = False


@record
class Handle:
    handle_id: str
    block: dict[str, int] = field(default_factory=dict)
    deleted: bool = False

    @property
    def total(self) -> int:
        return sum(self.block.values())


def _load(key: str, text: str) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise DatastoreError(f"{key}: stored value is not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise DatastoreError(f"{key}: stored value is not a JSON object")
    return data


def encode_block(block: Block) -> str:
    doc: dict[str, Any] = {
        "cidr": block.cidr,
        "affinity": block.affinity,
        "strictAffinity": block.strict_affinity,
        "allocations": list(block.allocations),
        "unallocated": list(block.unallocated),
        "attributes": [
            {"handle_id": a.handle_id, "secondary": dict(a.secondary) or None}
            for a in block.attributes
        ],
        "deleted": block.deleted,
        "sequenceNumber": block.sequence_number,
        "sequenceNumberForAllocation": dict(block.sequence_number_for_allocation),
    }
    if block.affinity_claim_time:
        doc["affinityClaimTime"] = block.affinity_claim_time
    return json.dumps(doc, separators=(",", ":"))


def decode_block(key: str, text: str) -> Block:
    d = _load(key, text)
    try:
        cidr = d["cidr"]
        size = 1 << ((128 if ":" in cidr else 32) - int(cidr.rsplit("/", 1)[1]))
        allocations = tuple(None if a is None else int(a) for a in d["allocations"])
        unallocated = tuple(int(o) for o in d.get("unallocated") or ())
        attributes = tuple(
            Attribute(
                a.get("handle_id"), {str(k): str(v) for k, v in (a.get("secondary") or {}).items()}
            )
            for a in d.get("attributes") or ()
        )
        seq_map = {str(k): int(v) for k, v in (d.get("sequenceNumberForAllocation") or {}).items()}
        block = Block(
            cidr=cidr,
            affinity=d.get("affinity"),
            allocations=allocations,
            unallocated=unallocated,
            attributes=attributes,
            sequence_number=int(d.get("sequenceNumber") or 0),
            sequence_number_for_allocation=seq_map,
            strict_affinity=bool(d.get("strictAffinity", False)),
            deleted=bool(d.get("deleted", False)),
            affinity_claim_time=d.get("affinityClaimTime"),
        )
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
        raise DatastoreError(f"{key}: stored value is not a valid block ({exc!r})") from None
    problem = _block_problem(block, size) or _cidr_problem(key, block.cidr)
    if problem:
        raise DatastoreError(f"{key}: stored value is not a valid block ({problem})")
    return block


def _cidr_problem(key: str, cidr: str) -> str | None:
    """The stored CIDR must be a masked network and, under a block key, the key's own."""
    try:
        net = ipaddress.ip_network(cidr)
    except ValueError:
        return f"cidr {cidr!r} is not a masked network"
    if "/block/" in key:
        addr, _, plen = key.rsplit("/", 1)[1].rpartition("-")
        if f"{addr}/{plen}" != str(net):
            return f"cidr {cidr} does not match the key"
    return None


def _block_problem(block: Block, size: int) -> str | None:
    if len(block.allocations) != size:
        return f"{len(block.allocations)} allocation slots, expected {size}"
    free = set(block.unallocated)
    if len(free) != len(block.unallocated):
        return "an ordinal is listed twice in unallocated"
    if any(not 0 <= o < size for o in free):
        return f"unallocated lists an ordinal outside 0-{size - 1}"
    for ordinal, idx in enumerate(block.allocations):
        if idx is None and ordinal not in free:
            return f"ordinal {ordinal} is neither allocated nor free"
        if idx is not None and (ordinal in free or not 0 <= idx < len(block.attributes)):
            return f"ordinal {ordinal} has a bad allocation entry"
    return None


def encode_affinity(affinity: Affinity) -> str:
    return json.dumps({"state": affinity.state, "deleted": affinity.deleted})


def decode_affinity(key: str, text: str) -> Affinity:
    d = _load(key, text)
    state = d.get("state", CONFIRMED) or CONFIRMED
    if state not in AFFINITY_STATES:
        raise DatastoreError(f"{key}: unknown affinity state {state!r}")
    deleted = d.get("deleted", False)
    return Affinity(state, deleted in (True, "true"))


def encode_handle(handle: Handle) -> str:
    return json.dumps(
        {"handleID": handle.handle_id, "block": handle.block, "deleted": handle.deleted}
    )


def decode_handle(key: str, text: str) -> Handle:
    d = _load(key, text)
    try:
        blocks = {str(k): int(v) for k, v in (d.get("block") or {}).items()}
        return Handle(
            str(d.get("handleID") or key.rsplit("/", 1)[1]), blocks, bool(d.get("deleted"))
        )
    except (TypeError, ValueError, AttributeError) as exc:
        raise DatastoreError(f"{key}: stored value is not a valid handle ({exc!r})") from None
