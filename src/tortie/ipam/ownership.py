"""Who an allocation belongs to and how old it is: what CNI GC needs to decide.

ADD records ``node``, ``network`` and ``timestamp`` (Calico's format, Go's
``time.Time.String`` in UTC) with every address.  GC releases a handle only when every
allocation of it is on this node, in this network and older than a grace period, so an
ADD still running when the runtime took its list of live containers keeps its address.
"""

from __future__ import annotations

import time

from tortie.core import block as blk
from tortie.core.record import field, record
from tortie.datastore import keys
from tortie.datastore.base import Datastore
from tortie.model.ipam_records import decode_block, decode_handle


@record(frozen=False)
class HandleOwners:
    """The ``node`` and ``network`` attributes of a handle's allocations and the time
    of the newest one (None when no allocation says when it was made)."""

    nodes: set[str] = field(default_factory=set)
    networks: set[str] = field(default_factory=set)
    allocations: int = 0
    newest: float | None = None


def parse_timestamp(text: str) -> float | None:
    """Seconds since the epoch of a ``timestamp`` attribute (``tortie.ipam.assign.
    timestamp``'s format); None when unreadable."""
    parts = text.split()
    if len(parts) < 2:
        return None
    import calendar  # GC only: off the ADD path

    clock, _, fraction = parts[1].partition(".")
    try:
        whole = calendar.timegm(time.strptime(f"{parts[0]} {clock}", "%Y-%m-%d %H:%M:%S"))
        frac = float(f"0.{fraction}") if fraction.isdigit() else 0.0
    except ValueError:
        return None
    return whole + frac


def handle_owners(store: Datastore, handle_id: str) -> HandleOwners | None:
    """What the blocks say about a handle's allocations; None when the handle is gone."""
    key = keys.handle_key(handle_id)
    kv = store.get(key)
    if kv is None:
        return None
    out = HandleOwners()
    for cidr in decode_handle(key, kv.value).block:
        bkv = store.get(keys.block_key(cidr, 6 if ":" in cidr else 4))
        if bkv is None:
            continue
        block = decode_block(bkv.key, bkv.value)
        for ordinal in blk.ordinals_of_handle(block, handle_id):
            owner = block.owner(ordinal)
            attrs = owner.secondary if owner else {}
            out.allocations += 1
            out.nodes.add(attrs.get("node", ""))
            out.networks.add(attrs.get("network", ""))
            made = parse_timestamp(attrs.get("timestamp", ""))
            if made is not None and (out.newest is None or made > out.newest):
                out.newest = made
    return out
