"""Group commit: many concurrent automatic assigns of one node in few block writes.

The node service runs this for ADDs that ask only for automatic addresses (no ``IP=``)
with a handle that holds nothing yet.  Requests that arrive while a batch is being
written wait and form the next batch (the classic group commit: no added latency for a
lone request, and under a burst one write serves many pods).

A batch takes addresses from the node's affine blocks only: per block, one read, every
request's ordinals assigned in memory (``tortie.core.block.assign``, pure), each handle
counted, then one compare-and-swap write of the block.  On SQLite the whole batch is also
one transaction (one commit for N pods).  A request the node's blocks cannot fill gives
back what the batch took for it and runs the ordinary all-or-nothing ``Ipam.assign``
(which claims blocks, borrows and explains shortfalls), so the rules and errors stay
those of ``tortie.ipam.assign``.  Another writer may change the store at any time: the
block write is compare-and-swap and is retried on a conflict.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable

from tortie.core import block as blk
from tortie.core.block import Attribute
from tortie.datastore import keys
from tortie.errors import Conflict, NotFound
from tortie.ipam.affinities import in_pool_order
from tortie.ipam.records import FULL_BLOCK_MARK, atomic
from tortie.ipam.requests import AssignRequest
from tortie.ipam.retry import run_cas
from tortie.ipam.service import Ipam
from tortie.model.ipam_records import decode_block, encode_block
from tortie.model.ippool import IPPool

TYPE_CHECKING = False
if TYPE_CHECKING:
    from tortie.datastore.base import Datastore


FULL_RECHECK = 1.0  # seconds


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
        max_batch: int = 256,
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
        self.notes: list[tuple[str, dict[int, tuple[list[IPPool], int | None]]]] = []
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
        self.notes = []
        for items in groups.values():
            try:
                leftovers = self._commit_group(items)
            except BaseException:
                leftovers = [i for i in items if not i.done.is_set()]
            for item in leftovers:  # the ordinary path, one by one
                try:
                    item.result = Ipam(self.store).assign(item.request)
                except BaseException as exc:
                    item.error = exc
                item.done.set()
        if self.after_commit is not None:  # after the leftovers: they may have claimed
            for node, free_after in self.notes:
                for version, (pools, spare) in free_after.items():
                    self.after_commit(node, version, pools, spare)

    def _commit_group(self, items: list[_Item]) -> list[_Item]:
        """Fill what the node's blocks can in one write per block; returns the items
        left for the ordinary path.  Items filled here are answered after the commit."""
        ipam = Ipam(self.store)
        first = items[0].request
        wanted = {v: n for v, n in ((4, first.num4), (6, first.num6)) if n}
        named = {4: first.ipv4_pools, 6: first.ipv6_pools}
        filled: list[tuple[_Item, list[str]]] = []
        free_after: dict[int, tuple[list[IPPool], int | None]] = {}
        with atomic(self.store):
            fresh = [i for i in items if ipam.get_handle(i.request.handle_id or "") is None]
            chosen = ipam.resolve_pools(first.node, {v: named[v] for v in wanted}, first.intent)
            got: dict[int, list[list[str]]] = {id(i): [] for i in fresh}
            for version, num in wanted.items():
                pools = chosen.get(version, [])
                owned = ipam._confirmed_affinities(first.node, version)
                if not named[version]:
                    owned = ipam._release_unselected(first.node, version, pools, owned)
                need = [(i, num) for i in fresh]
                candidates = in_pool_order(owned, pools)
                for cidr in candidates:
                    if not need:
                        break
                    if self._known_full(cidr):
                        continue
                    taken, _ = self._fill_block(ipam, cidr, version, first.node, need)
                    for item, addrs in taken:
                        got[id(item)].append(addrs)
                    served = {id(i) for i, _ in taken}
                    need = [(i, n) for i, n in need if id(i) not in served]
                known = [self._free.get(c) for c in candidates]
                spare = sum(k[0] for k in known if k) if all(known) else None
                free_after[version] = (pools, spare)
            for item in fresh:
                addrs = [a for part in got[id(item)] for a in part]
                if len(addrs) == sum(wanted.values()):
                    filled.append((item, addrs))
            unfilled = [i for i in fresh if all(i is not f for f, _ in filled)]
            for item in unfilled:  # give back partial takes inside the same transaction
                if got[id(item)]:
                    with contextlib.suppress(NotFound):
                        ipam.release_by_handle(item.request.handle_id or "")
        if filled:
            self.batches += 1
            self.batched += len(filled)
        for item, addrs in filled:
            item.result = sorted(addrs, key=lambda a: ":" in a)
            item.done.set()
        self.notes.append((first.node, free_after))
        return [i for i in items if not i.done.is_set()]

    def _known_full(self, cidr: str) -> bool:
        seen = self._free.get(cidr)
        return seen is not None and seen[0] == 0 and time.monotonic() - seen[1] < FULL_RECHECK

    def _fill_block(
        self,
        ipam: Ipam,
        cidr: str,
        version: int,
        node: str,
        need: list[tuple[_Item, int]],
    ) -> tuple[list[tuple[_Item, list[str]]], int]:
        """One block, one write: as many of ``need`` as it holds.  Returns what each item
        got and how many addresses the block still has free."""
        key = keys.block_key(cidr, version)
        prefix = cidr.rsplit("/", 1)[1]

        def attempt() -> tuple[list[tuple[_Item, list[str]]], int]:
            kv = self.store.get(key)
            if kv is None or FULL_BLOCK_MARK in kv.value:
                self._free[cidr] = (0, time.monotonic())
                return [], 0
            block = decode_block(key, kv.value)
            if block.host() != node:
                self._free[cidr] = (0, time.monotonic())
                return [], 0
            taken: list[tuple[_Item, list[str]]] = []
            new = block
            for item, count in need:
                if new.free < count:
                    break  # all-or-nothing per item and family: no partial fills
                attrs = dict(item.request.attrs)
                attrs.setdefault("node", node)
                new, ordinals = blk.assign(new, count, Attribute(item.request.handle_id, attrs))
                taken.append((item, [f"{new.address(o)}/{prefix}" for o in ordinals]))
            self._free[cidr] = (new.free, time.monotonic())
            if not taken:
                return [], new.free
            for item, addrs in taken:
                ipam._add_to_handle(item.request.handle_id, cidr, len(addrs))
            try:
                self.store.update(key, encode_block(new), kv.revision)
            except Conflict:
                for item, addrs in taken:
                    ipam._remove_from_handle(item.request.handle_id, cidr, len(addrs))
                raise
            return taken, new.free

        return run_cas(attempt, f"assign from block {cidr}", ipam.policy)


__all__ = ["GroupCommit", "batch_key"]
