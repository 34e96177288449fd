"""Group commit: the allocator that batches, for the node service.

``GroupCommit`` is an ``Allocator`` (``tortie.ipam.allocator``) over one store.  Calls
that arrive while a batch is being written wait and form the next batch (the classic
group commit: a lone call is written at once, with no added latency; under a burst one
store transaction serves many pods).  ADDs and DELs form batches of their own, each
written in one ``Datastore.txn`` (one etcd ``Txn``, one SQLite transaction) of at most
``MAX_TXN_OPS`` writes (a DEL batch past that in a few, each handle whole in one), so a
pod's handle and its blocks land together or not at all.

ADD (automatic addresses, a handle): the node's blocks are read once per batch and every
request is planned in memory by ``planner.plan_assign`` — the planner the ordinary path
uses — then every handle and every block written in one transaction.  A request the
node's blocks cannot fill completely is not written and runs the ordinary all-or-nothing
``Ipam.assign`` (which claims blocks, borrows and explains shortfalls), so the rules and
errors stay those of ``tortie.ipam.assign``.

DEL (release by handle): the batch's handles go to ``release.release_handles``, which
plans them with ``planner.plan_release`` and writes every handle and every touched block
once, in one transaction.

A lost race (``TxnConflict``) is planned again from the keys as the conflict returns
them.  Any other failure is answered to the batch's calls as it is: nothing of the
transaction was written, or (a timeout after sending) all of it — never a part — and
the runtime's retry sees which.  Specific addresses and releases of named addresses take
the plain allocator (``Ipam``) one by one.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from typing import Generic, TypeVar

from tortie.datastore import keys
from tortie.datastore.base import KV, TxnConflict, Write
from tortie.errors import NotFound
from tortie.ipam.affinities import in_pool_order
from tortie.ipam.handle_counts import handle_write
from tortie.ipam.planner import AssignPlan, Want, attribute_for, plan_assign, usable_block
from tortie.ipam.records import MAX_TXN_OPS, StoredBlock, atomic
from tortie.ipam.release import release_handles, version_of
from tortie.ipam.requests import AssignRequest, ReleaseOptions, ReleaseResult
from tortie.ipam.retry import DEFAULT_POLICY, RetryPolicy
from tortie.ipam.service import Ipam
from tortie.model.ipam_records import encode_block
from tortie.model.ippool import IPPool

TYPE_CHECKING = False
if TYPE_CHECKING:
    from tortie.datastore.base import Datastore


FULL_RECHECK = 1.0  # seconds
# Calls per batch: each writes its handle, and the batch its blocks, in one transaction
# of at most MAX_TXN_OPS writes (etcd's --max-txn-ops).
MAX_BATCH = 96
# An ADD batch that keeps losing races to other writers is planned again this often
# before its requests take the ordinary path.
MAX_REPLANS = 8
# Per family: the pools a batch used and the free addresses left in the node's blocks of
# them (None: more than the batch looked at).
FreeAfter = dict[int, tuple[list[IPPool], int | None]]
BLOCKS = (keys.block_prefix(4), keys.block_prefix(6))

Q = TypeVar("Q")
R = TypeVar("R")


def batch_key(req: AssignRequest) -> tuple[object, ...]:
    return (req.node, req.num4, req.num6, req.ipv4_pools, req.ipv6_pools, req.intent)


class Pending(Generic[Q, R]):
    """One call waiting in a ``Coalescer``: answered with ``result`` or ``error``."""

    __slots__ = ("done", "error", "lead", "request", "result")

    def __init__(self, request: Q) -> None:
        self.request = request
        self.result: R | None = None
        self.error: BaseException | None = None
        self.lead = False
        self.done = threading.Event()

    def answer(self, result: R) -> None:
        self.result = result
        self.done.set()

    def fail(self, error: BaseException) -> None:
        self.error = error
        self.done.set()


class Coalescer(Generic[Q, R]):
    """Concurrent calls in batches.  The first caller writes a batch of everything
    pending (at most ``max_batch``) with ``commit``, which answers each call; calls
    arriving meanwhile queue, and the first of them leads the next batch."""

    def __init__(self, commit: Callable[[list[Pending[Q, R]]], None], max_batch: int) -> None:
        self.commit = commit
        self.max_batch = max_batch
        self._lock = threading.Lock()
        self._pending: list[Pending[Q, R]] = []
        self._busy = False

    def submit(self, request: Q) -> R:
        item: Pending[Q, R] = Pending(request)
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
            batch = self._pending[: self.max_batch]
            self._pending = self._pending[self.max_batch :]
        try:
            self.commit(batch)
        except BaseException as exc:  # commit answers every call; if it broke, say so
            for item in batch:
                if not item.done.is_set():
                    item.fail(exc)
        finally:
            with self._lock:
                if self._pending:
                    nxt = self._pending[0]
                    nxt.lead = True
                    nxt.done.set()  # wakes it to lead; it waits again for its result
                else:
                    self._busy = False


AddItem = Pending[AssignRequest, list[str]]
DelItem = Pending[str, list[str]]


class GroupCommit:
    """The batching ``Allocator`` of one store.

    ``after_commit(node, version, pools, free)`` is told, after each ADD batch, how many
    addresses the node's blocks of those pools still have free (None: more than the
    batch looked at); the warm-block keeper claims the next block when it runs low."""

    def __init__(
        self,
        store: Datastore,
        after_commit: Callable[[str, int, list[IPPool], int | None], None] | None = None,
        max_batch: int = MAX_BATCH,
        policy: RetryPolicy = DEFAULT_POLICY,
    ) -> None:
        self.store = store
        self.after_commit = after_commit
        self.policy = policy
        self._adds: Coalescer[AssignRequest, list[str]] = Coalescer(self._commit_adds, max_batch)
        self._dels: Coalescer[str, list[str]] = Coalescer(self._commit_dels, max_batch)
        # Free addresses of each block when this service last read it, and when: a
        # block seen full is not read again for FULL_RECHECK seconds (a node's old blocks
        # fill up; reading each one per ADD would cost a round trip apiece).
        self._free: dict[str, tuple[int, float]] = {}
        self.batches = 0  # statistics: ADD batches written, requests they carried
        self.batched = 0
        self.release_batches = 0  # DEL batches written, handles they released
        self.released = 0

    # ------------------------------------------------------------------ Allocator

    def assign(self, request: AssignRequest) -> list[str]:
        if request.addresses or not (request.num4 or request.num6) or request.handle_id is None:
            return self._plain().assign(request)
        return self._adds.submit(request)

    def release_by_handle(self, handle_id: str) -> list[str]:
        return self._dels.submit(handle_id)

    def release_addresses(self, items: Iterable[ReleaseOptions]) -> ReleaseResult:
        return self._plain().release_addresses(items)

    def _plain(self) -> Ipam:
        return Ipam(self.store, self.policy)

    # ------------------------------------------------------------------------ DEL

    def _commit_dels(self, batch: list[DelItem]) -> None:
        released = release_handles(self.store, [i.request for i in batch], self.policy)
        self._free.clear()  # addresses came free: blocks seen full may not be any more
        self.release_batches += 1
        seen: set[str] = set()
        for item in batch:
            got = None if item.request in seen else released.get(item.request)
            seen.add(item.request)
            if got is None:  # absent, or named twice (the second DEL finds it gone)
                item.fail(NotFound(f"handle {item.request} does not exist"))
            else:
                self.released += 1
                item.answer(got)

    # ------------------------------------------------------------------------ ADD

    def _commit_adds(self, batch: list[AddItem]) -> None:
        groups: dict[tuple[object, ...], list[AddItem]] = {}
        for item in batch:
            groups.setdefault(batch_key(item.request), []).append(item)
        notes: list[tuple[str, FreeAfter]] = []
        for items in groups.values():
            try:
                leftovers, free_after = self._commit_group(items)
                notes.append((items[0].request.node, free_after))
            except BaseException as exc:  # the store failed: the batch's transaction
                # landed whole or not at all, so these requests fail as they are (never
                # a second try that could give a handle a second address); the runtime
                # retries (after its DEL)
                for item in items:
                    if not item.done.is_set():
                        item.fail(exc)
                continue
            plain = self._plain()
            for item in leftovers:  # the ordinary path, one by one
                try:
                    item.answer(plain.assign(item.request))
                except BaseException as exc:
                    item.fail(exc)
        if self.after_commit is not None:  # after the leftovers: they may have claimed
            for node, free_after in notes:
                for version, (pools, spare) in free_after.items():
                    self.after_commit(node, version, pools, spare)

    def _commit_group(self, items: list[AddItem]) -> tuple[list[AddItem], FreeAfter]:
        """Fill what the node's blocks can in one transaction.  Returns the items left
        for the ordinary path (nothing was written for them) and the free addresses
        left per family; items filled here are answered."""
        ipam = self._plain()
        first = items[0].request
        node = first.node
        wanted = {v: n for v, n in ((4, first.num4), (6, first.num6)) if n}
        named = {4: first.ipv4_pools, 6: first.ipv6_pools}
        answers: list[tuple[AddItem, list[str]]] = []
        free_after: FreeAfter = {}
        with atomic(self.store):
            chosen = ipam.resolve_pools(node, {v: named[v] for v in wanted}, first.intent)
            candidates: dict[int, list[str]] = {}
            for version in wanted:
                pools = chosen.get(version, [])
                owned = ipam.confirmed_affinities(node, version)
                if not named[version]:
                    owned = ipam.release_unselected(node, version, pools, owned)
                candidates[version] = in_pool_order(owned, pools)
            known: dict[str, KV | None] = {}  # keys as last read or returned by a conflict
            for _replan in range(MAX_REPLANS):
                batch, plans, stored = self._plan(items, node, wanted, candidates, known)
                if not batch:
                    break
                writes = [
                    handle_write(
                        item.request.handle_id or "",
                        {c: n for p in plans.values() for c, n in p.grants[i].counts.items()},
                        known.get(keys.handle_key(item.request.handle_id or "")),
                    )
                    for i, item in enumerate(batch)
                ]
                writes += [
                    Write(stored[c].key, encode_block(new), stored[c].revision)
                    for p in plans.values()
                    for c, new in p.blocks.items()
                ]
                try:
                    self.store.txn(writes)
                except TxnConflict as exc:  # another writer: plan again from what it wrote
                    known.update(exc.current)
                    for key in exc.current:
                        if key.startswith(BLOCKS):
                            self._free.pop(keys.cidr_from_key(key), None)
                    continue
                now = time.monotonic()
                for p in plans.values():
                    for c, new in p.blocks.items():
                        self._free[c] = (new.free, now)
                for i, item in enumerate(batch):
                    got = [a for v in (4, 6) if v in plans for a in plans[v].grants[i].addresses]
                    answers.append((item, got))
                break
            for version in wanted:
                seen = [self._free.get(c) for c in candidates[version]]
                spare = sum(k[0] for k in seen if k) if all(seen) else None
                free_after[version] = (chosen.get(version, []), spare)
        if answers:
            self.batches += 1
            self.batched += len(answers)
        for item, got in answers:  # after the transaction is committed (SQLite: here)
            item.answer(got)
        return [i for i in items if not i.done.is_set()], free_after

    def _plan(
        self,
        items: list[AddItem],
        node: str,
        wanted: dict[int, int],
        candidates: dict[int, list[str]],
        known: dict[str, KV | None],
    ) -> tuple[list[AddItem], dict[int, AssignPlan], dict[str, StoredBlock]]:
        """Plan the longest run of ``items`` the node's blocks fill completely in every
        family and one transaction can carry: those items, each family's plan for them
        and the blocks as read (by CIDR)."""
        stored: dict[str, StoredBlock] = {}
        for version, num in wanted.items():
            for sb in self._blocks(candidates[version], version, node, num * len(items), known):
                stored[sb.cidr] = sb

        def plan(run: list[AddItem]) -> dict[int, AssignPlan]:
            out = {}
            for version, num in wanted.items():
                blocks = [b.block for c, b in stored.items() if version_of(c) == version]
                wants = [
                    Want(num, attribute_for(i.request.handle_id, i.request.attrs, node))
                    for i in run
                ]
                out[version] = plan_assign(blocks, wants, node)
            return out

        plans = plan(items)
        # Served whole in every family: a leading run (blocks serve requests in order,
        # so once one comes up short every later one does).  Cut it to what one
        # transaction carries: a handle each, plus every block the run writes.
        touched: set[str] = set()
        handles: set[str | None] = set()
        count = 0
        for i in range(len(items)):
            if any(len(plans[v].grants[i].addresses) < n for v, n in wanted.items()):
                break
            if items[i].request.handle_id in handles:  # twice at once: a key per transaction
                break
            handles.add(items[i].request.handle_id)
            mine = {c for p in plans.values() for c in p.grants[i].counts}
            if count + 1 + len(touched | mine) > MAX_TXN_OPS:
                break
            touched |= mine
            count += 1
        if count < len(items):  # plan the run alone: the others must not hold addresses
            plans = plan(items[:count])
        return items[:count], plans, stored

    def _blocks(
        self, cidrs: list[str], version: int, node: str, need: int, known: dict[str, KV | None]
    ) -> list[StoredBlock]:
        """The node's usable blocks among ``cidrs``, in order, until they hold ``need``
        free addresses: each read once per batch (a block seen full lately is not)."""
        out: list[StoredBlock] = []
        free = 0
        for cidr in cidrs:
            if free >= need:
                break
            key = keys.block_key(cidr, version)
            if key not in known:
                if self._known_full(cidr):
                    continue
                known[key] = self.store.get(key)
            sb = usable_block(known[key], node)
            self._free[cidr] = (0 if sb is None else sb.block.free, time.monotonic())
            if sb is not None:
                out.append(sb)
                free += sb.block.free
        return out

    def _known_full(self, cidr: str) -> bool:
        seen = self._free.get(cidr)
        return seen is not None and seen[0] == 0 and time.monotonic() - seen[1] < FULL_RECHECK


__all__ = ["MAX_BATCH", "Coalescer", "GroupCommit", "Pending", "batch_key"]
