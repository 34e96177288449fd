"""Handle records: how many addresses each handle holds in each block.

The bottom layer of the IPAM service (``HandleCounts`` ← ``BlockAffinities`` ←
``Ipam``): a handle's record is created with its first address and deleted with its
last; every change is one compare-and-swap through ``run_cas``.
"""

from __future__ import annotations

from tortie.core import block as blk
from tortie.datastore import keys
from tortie.datastore.base import KV, Datastore, Write
from tortie.errors import AlreadyExists
from tortie.ipam.retry import DEFAULT_POLICY, RetryPolicy, run_cas
from tortie.model.ipam_records import (
    Handle,
    decode_block,
    decode_handle,
    encode_handle,
)

TYPE_CHECKING = False  # typing stays unimported at run time: plugin start-up
if TYPE_CHECKING:
    from tortie.ipam.ownership import HandleOwners


def handle_write(handle_id: str, added: dict[str, int], held: KV | None) -> Write:
    """The transaction write adding ``added`` (block CIDR -> addresses) to the handle as
    ``held`` (None: the handle must not exist yet)."""
    key = keys.handle_key(handle_id)
    counts = {} if held is None else dict(decode_handle(key, held.value).block)
    for cidr, n in added.items():
        counts[cidr] = counts.get(cidr, 0) + n
    value = encode_handle(Handle(handle_id, counts))
    return Write(key, value, 0 if held is None else held.revision)


class HandleCounts:
    def __init__(self, store: Datastore, policy: RetryPolicy = DEFAULT_POLICY) -> None:
        self.store = store
        self.policy = policy

    # ----------------------------------------------------------------- handles

    def add_to_handle(self, handle_id: str | None, cidr: str, count: int) -> None:
        self._change_handle(handle_id, cidr, count)

    def remove_from_handle(self, handle_id: str | None, cidr: str, count: int) -> None:
        self._change_handle(handle_id, cidr, -count)

    def _change_handle(self, handle_id: str | None, cidr: str, delta: int) -> None:
        """Add ``delta`` to the handle's count for one block; the record is created with
        its first address and deleted with its last."""
        if handle_id is None or delta == 0:
            return
        key = keys.handle_key(handle_id)

        def write() -> None:
            kv = self.store.get(key)
            counts = {} if kv is None else dict(decode_handle(key, kv.value).block)
            left = counts.get(cidr, 0) + delta
            if left > 0:
                counts[cidr] = left
            else:
                counts.pop(cidr, None)
            value = encode_handle(Handle(handle_id, counts))
            if kv is None:
                if counts:
                    self.store.create(key, value)
            elif counts:
                self.store.update(key, value, kv.revision)
            else:
                self.store.delete(key, kv.revision)

        run_cas(write, f"update handle {handle_id}", self.policy)

    def handle_write(self, handle_id: str, cidr: str, count: int) -> Write:
        """The write that adds ``count`` addresses in ``cidr`` to the handle, for a
        transaction that also writes the block (compare-and-swap on the handle as read)."""
        return handle_write(handle_id, {cidr: count}, self.store.get(keys.handle_key(handle_id)))

    def add_counts(self, handle_id: str, counts: dict[str, int]) -> None:
        """Add addresses in several blocks to a handle in one write; a new handle is
        created straight away (one round trip), an existing one updated."""
        key = keys.handle_key(handle_id)
        try:
            self.store.create(key, encode_handle(Handle(handle_id, dict(counts))))
            return
        except AlreadyExists:
            pass

        def write() -> None:
            kv = self.store.get(key)
            merged = {} if kv is None else dict(decode_handle(key, kv.value).block)
            for cidr, n in counts.items():
                merged[cidr] = merged.get(cidr, 0) + n
            value = encode_handle(Handle(handle_id, merged))
            if kv is None:
                self.store.create(key, value)
            else:
                self.store.update(key, value, kv.revision)

        run_cas(write, f"update handle {handle_id}", self.policy)

    def handle_owners(self, handle_id: str) -> HandleOwners | None:
        """Node, network and newest allocation time of a handle (CNI GC)."""
        from tortie.ipam.ownership import handle_owners  # GC only: off the ADD path

        return handle_owners(self.store, handle_id)

    def get_handle(self, handle_id: str) -> Handle | None:
        kv = self.store.get(keys.handle_key(handle_id))
        return None if kv is None else decode_handle(kv.key, kv.value)

    def repair_handle(self, handle_id: str) -> bool | None:
        """Make a handle's counts what its blocks really hold (a crash between a block write
        and the handle write can leave a count for an address no block has).  Returns None
        when there is no handle, True when it was changed or deleted, False when right."""
        key = keys.handle_key(handle_id)

        def attempt() -> bool | None:
            kv = self.store.get(key)
            if kv is None:
                return None
            handle = decode_handle(key, kv.value)
            actual = {}
            for cidr in handle.block:
                bkv = self.store.get(keys.block_key(cidr, 6 if ":" in cidr else 4))
                if bkv is None:
                    continue
                held = len(blk.ordinals_of_handle(decode_block(bkv.key, bkv.value), handle_id))
                if held:
                    actual[cidr] = held
            if actual == dict(handle.block):
                return False
            if actual:
                self.store.update(key, encode_handle(Handle(handle_id, actual)), kv.revision)
            else:
                self.store.delete(key, kv.revision)
            return True

        return run_cas(attempt, f"repair handle {handle_id}", self.policy)
