"""Group commit: many concurrent automatic assigns of one node in few block writes.

The node service runs this for ADDs that ask only for automatic addresses (no ``IP=``).  Requests that arrive while a batch is being
written wait and form the next batch (the classic group commit: no added latency for a
lone request, and under a burst one write serves many pods).

A batch takes addresses from the node's affine blocks only: each block read once, every
request's addresses planned in memory (``tortie.core.block.assign``, pure), then every
request's handle and every block in one store transaction (``Datastore.txn``: one etcd
``Txn``, one SQLite transaction), so they land together or not at all.  A request the
node's blocks cannot fill completely is not written at all and runs the ordinary
all-or-nothing ``Ipam.assign`` (which claims blocks, borrows and explains shortfalls), so
the rules and errors stay those of ``tortie.ipam.assign``.  Another writer may change the
store at any time: a block write that loses the race gives back what the batch wrote for
its requests, and they take the ordinary path.  Nothing was written then.  Any other
failure is answered to the batch's requests as it is.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from tortie.core import block as blk
from tortie.core.block import Attribute, Block
from tortie.datastore import keys
from tortie.datastore.base import KV, TxnConflict, Write
from tortie.errors import Conflict
from tortie.ipam.affinities import in_pool_order
from tortie.ipam.handle_counts import handle_write
from tortie.ipam.records import FULL_BLOCK_MARK, StoredBlock, atomic
from tortie.ipam.requests import AssignRequest
from tortie.ipam.service import Ipam
from tortie.model.ipam_records import (
    decode_block,
    encode_block,
)
from tortie.model.ippool import IPPool

TYPE_CHECKING = False
if TYPE_CHECKING:
    from tortie.datastore.base import Datastore


FULL_RECHECK = 1.0  # seconds
# Requests per batch: each writes its handle, and the batch its blocks, in one transaction;
# etcd refuses more than 128 operations per transaction (--max-txn-ops).
MAX_BATCH = 96
# Per family: the pools a batch used and the free addresses left in the node's blocks of
# them (None: more than the batch looked at).
FreeAfter = dict[int, tuple[list[IPPool], int | None]]


def batch_key(req: AssignRequest) -> tuple[object, ...]:
    return (req.node, req.num4, req.num6, req.ipv4_pools, req.ipv6_pools, req.intent)


class _Item:
    __slots__ = ("done", "error", "lead", "request", "result")

    def __init__(self, request: AssignRequest) -> None:
        self.request = request
        self.result: list[str] | None = None
        self.error: BaseException | None = None
        self.lead = False
        self.done = threading.Event()


class GroupCommit:
    """Assigns of one store, coalesced.  ``assign`` has ``Ipam.assign``'s contract.

    ``after_commit(node, version, pools, free)`` is told, after each batch, how many
    addresses the node's blocks of those pools still have free (None: more than the
    batch looked at); the warm-block keeper claims the next block when it runs low."""

    def __init__(
        self,
        store: Datastore,
        after_commit: Callable[[str, int, list[IPPool], int | None], None] | None = None,
        max_batch: int = MAX_BATCH,
    ) -> None:
        self.store = store
        self.after_commit = after_commit
        self.max_batch = max_batch
        self._lock = threading.Lock()
        self._pending: list[_Item] = []
        self._busy = False
        # Free addresses of each block when this service last read it, and when: a
        # block seen full is not read again for FULL_RECHECK seconds (a node's old blocks
        # fill up; reading each one per ADD would cost a round trip apiece).
        self._free: dict[str, tuple[int, float]] = {}
        self.batches = 0  # statistics: batches written, requests they carried
        self.batched = 0

    def assign(self, request: AssignRequest) -> list[str]:
        if request.addresses or not (request.num4 or request.num6) or request.handle_id is None:
            return Ipam(self.store).assign(request)
        item = _Item(request)
        with self._lock:
            self._pending.append(item)
            lead = not self._busy
            self._busy = True
        if not lead:
            item.done.wait()
            if item.lead:  # handed the lead: our item is in the batch we now write
                item.done.clear()  # it woke us to lead; from here it means "answered"
                self._lead()
                item.done.wait()
        else:
            self._lead()
            item.done.wait()
        if item.error is not None:
            raise item.error
        assert item.result is not None
        return item.result

    def _lead(self) -> None:
        with self._lock:
            batch, self._pending = self._pending[: self.max_batch], self._pending[self.max_batch :]
        try:
            self._commit(batch)
        finally:
            with self._lock:
                if self._pending:
                    nxt = self._pending[0]
                    nxt.lead = True
                    nxt.done.set()  # wakes it to lead; it waits again for its result
                else:
                    self._busy = False

    def _commit(self, batch: list[_Item]) -> None:
        groups: dict[tuple[object, ...], list[_Item]] = {}
        for item in batch:
            groups.setdefault(batch_key(item.request), []).append(item)
        notes: list[tuple[str, FreeAfter]] = []
        for items in groups.values():
            try:
                leftovers, free_after = self._commit_group(items)
                notes.append((items[0].request.node, free_after))
            except Conflict:  # lost a race before writing: nothing of the batch landed
                leftovers = [i for i in items if not i.done.is_set()]
            except BaseException as exc:  # the store failed: the batch may or may not
                # have landed, so these requests fail as they are (never a second try
                # that could give a handle a second address); the runtime retries
                for item in items:
                    if not item.done.is_set():
                        item.error = exc
                        item.done.set()
                continue
            for item in leftovers:  # the ordinary path, one by one
                try:
                    item.result = Ipam(self.store).assign(item.request)
                except BaseException as exc:
                    item.error = exc
                item.done.set()
        if self.after_commit is not None:  # after the leftovers: they may have claimed
            for node, free_after in notes:
                for version, (pools, spare) in free_after.items():
                    self.after_commit(node, version, pools, spare)

    def _commit_group(self, items: list[_Item]) -> tuple[list[_Item], FreeAfter]:
        """Fill what the node's blocks can: read each block once, plan every request's
        addresses in memory, write every handle and block in one transaction.  Returns the items left for the ordinary path (nothing was
        written for them) and the free addresses left per family; items filled here are
        answered."""
        ipam = Ipam(self.store)
        first = items[0].request
        wanted = {v: n for v, n in ((4, first.num4), (6, first.num6)) if n}
        named = {4: first.ipv4_pools, 6: first.ipv6_pools}
        filled: list[_Item] = []
        free_after: FreeAfter = {}
        with atomic(self.store):
            chosen = ipam.resolve_pools(first.node, {v: named[v] for v in wanted}, first.intent)
            plans: list[_Plan] = []
            candidates: dict[int, list[str]] = {}
            for version, num in wanted.items():
                pools = chosen.get(version, [])
                owned = ipam.confirmed_affinities(first.node, version)
                if not named[version]:
                    owned = ipam.release_unselected(first.node, version, pools, owned)
                candidates[version] = in_pool_order(owned, pools)
                need = list(items)
                for cidr in candidates[version]:
                    if not need:
                        break
                    if self._known_full(cidr):
                        continue
                    stored = self._read_own(cidr, version, first.node)
                    if stored is None:
                        continue
                    fit = stored.block.free // num
                    if fit:
                        plans.append(_Plan(stored, num, need[:fit]))
                        need = need[fit:]
            planned = {id(i) for p in plans for i in p.items}
            per_item = {id(i): sum(id(i) in p.ids() for p in plans) for i in items}
            complete = [i for i in items if per_item[id(i)] == len(wanted) and id(i) in planned]
            done = {id(i) for i in complete}
            for plan in plans:
                plan.assign([i for i in plan.items if id(i) in done])
            plans = [p for p in plans if p.items]
            if complete:
                try:
                    self._write_together(complete, plans)
                    filled = complete
                except Conflict:  # another writer: nothing was written, the ordinary path
                    for plan in plans:
                        self._free.pop(plan.stored.cidr, None)
            for version in wanted:
                known = [self._free.get(c) for c in candidates[version]]
                spare = sum(k[0] for k in known if k) if all(known) else None
                free_after[version] = (chosen.get(version, []), spare)
        if filled:
            self.batches += 1
            self.batched += len(filled)
        for item in filled:
            addrs = [a for p in plans for a in p.addresses.get(id(item), [])]
            item.result = sorted(addrs, key=lambda a: ":" in a)
            item.done.set()
        return [i for i in items if not i.done.is_set()], free_after

    def _write_together(self, complete: list[_Item], plans: list[_Plan]) -> None:
        """Every filled request's handle and every block of the batch in one store
        transaction: on etcd as on SQLite they land together or not at all.  Any error
        but a conflict reaches the requests as it is (the ordinary path would take a
        second address for a handle the transaction may have written)."""
        blocks = [Write(p.stored.key, encode_block(p.new), p.stored.revision) for p in plans]
        current: dict[str, KV | None] = {}  # handles assumed new until the store says not
        for attempt in (1, 2):
            writes = [  # an existing handle (a repeated ADD) is added to
                handle_write(
                    handle,
                    {p.stored.cidr: p.num for p in plans if id(item) in p.ids()},
                    current.get(keys.handle_key(handle)),
                )
                for item in complete
                for handle in (item.request.handle_id or "",)
            ]
            try:
                self.store.txn(writes + blocks)
                break
            except TxnConflict as exc:
                blocks_moved = any(
                    (cur := exc.current.get(w.key)) is None or cur.revision != w.revision
                    for w in blocks
                )
                if blocks_moved or attempt == 2:
                    raise
                current = exc.current  # only handles differed: write them as they are
        now = time.monotonic()
        for plan in plans:
            self._free[plan.stored.cidr] = (plan.new.free, now)

    def _known_full(self, cidr: str) -> bool:
        seen = self._free.get(cidr)
        return seen is not None and seen[0] == 0 and time.monotonic() - seen[1] < FULL_RECHECK

    def _read_own(self, cidr: str, version: int, node: str) -> StoredBlock | None:
        """The block if it is still this node's and has room (noting what it has free)."""
        kv = self.store.get(keys.block_key(cidr, version))
        if kv is None or FULL_BLOCK_MARK in kv.value:
            self._free[cidr] = (0, time.monotonic())
            return None
        block = decode_block(kv.key, kv.value)
        if block.host() != node or block.free == 0:
            self._free[cidr] = (0, time.monotonic())
            return None
        self._free[cidr] = (block.free, time.monotonic())
        return StoredBlock(cidr, block, kv.revision)


class _Plan:
    """The requests one block serves in a batch, and (after ``assign``) the block as it
    will be written."""

    __slots__ = ("addresses", "items", "new", "num", "stored")

    def __init__(self, stored: StoredBlock, num: int, items: list[_Item]) -> None:
        self.stored = stored
        self.num = num
        self.items = items
        self.new: Block = stored.block
        self.addresses: dict[int, list[str]] = {}

    def ids(self) -> set[int]:
        return {id(i) for i in self.items}

    def assign(self, items: list[_Item]) -> None:
        """Give each of ``items`` its addresses in this block (in memory; pure)."""
        self.items = items
        new = self.stored.block
        prefix = self.stored.cidr.rsplit("/", 1)[1]
        for item in items:
            attrs = dict(item.request.attrs)
            attrs.setdefault("node", item.request.node)
            new, ordinals = blk.assign(new, self.num, Attribute(item.request.handle_id, attrs))
            self.addresses[id(item)] = [f"{new.address(o)}/{prefix}" for o in ordinals]
        self.new = new


__all__ = ["GroupCommit", "batch_key"]
