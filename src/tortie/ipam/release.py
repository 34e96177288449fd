"""Releasing handles, one or a batch, in store transactions.

``release_handles`` reads each handle record and the blocks they name, plans the release
in memory (``planner.plan_release``: each block changed once, however many handles it
holds; ``planner.blocks_to_return``: which emptied blocks go back to their pool), then
writes every handle deletion, every block and every returned block's affinity in one
``Datastore.txn`` — on etcd as on SQLite they land together or not at all, so a handle
never outlives its addresses nor an address its handle.  A transaction stays within
``MAX_TXN_OPS`` writes (etcd's ``--max-txn-ops``); more handles take several, each
handle whole in one of them.

A lost race (``TxnConflict``) is planned again from the keys as the conflict returns
them (no second read of what it returned; blocks a changed handle now names are read),
through the one retry loop ``run_cas``.  Any other failure propagates: nothing of that
transaction was written (on SQLite nothing of the whole call: it runs in ``atomic()``).
"""

from __future__ import annotations

from collections.abc import Sequence

from tortie.datastore import keys
from tortie.datastore.base import KV, TxnConflict, Write
from tortie.ipam.planner import blocks_to_return, plan_release
from tortie.ipam.pools import load_pools
from tortie.ipam.records import MAX_TXN_OPS, atomic
from tortie.ipam.retry import DEFAULT_POLICY, RetryPolicy, run_cas
from tortie.model.ipam_records import (
    CONFIRMED,
    decode_affinity,
    decode_block,
    decode_handle,
    encode_block,
)
from tortie.model.ippool import IPPool

TYPE_CHECKING = False  # typing stays unimported at run time: plugin start-up
if TYPE_CHECKING:
    from tortie.datastore.base import Datastore


def version_of(cidr: str) -> int:
    return 6 if ":" in cidr else 4


def release_handles(
    store: Datastore, handle_ids: Sequence[str], policy: RetryPolicy = DEFAULT_POLICY
) -> dict[str, list[str] | None]:
    """Release every address of each handle and delete its record.  Returns, per
    handle, the addresses freed (without prefix), or None when the handle does not
    exist.  A handle named twice is released once."""
    ids = list(dict.fromkeys(handle_ids))
    out: dict[str, list[str] | None] = {}
    with atomic(store):
        held = {h: store.get(keys.handle_key(h)) for h in ids}
        for chunk in chunks(ids, held):
            out.update(_Release(store, chunk, held).run(policy))
    for h in ids:
        out.setdefault(h, None)
    return out


def chunks(ids: list[str], held: dict[str, KV | None]) -> list[list[str]]:
    """The existing handles in groups whose transaction stays within ``MAX_TXN_OPS``
    writes: a handle costs its own deletion plus, for each block it adds, the block and
    (should the block be returned) its affinity."""
    out: list[list[str]] = []
    chunk: list[str] = []
    cidrs: set[str] = set()
    for h in ids:
        kv = held[h]
        if kv is None:
            continue
        mine = set(decode_handle(kv.key, kv.value).block)
        cost = len(chunk) + 1 + 2 * len(cidrs | mine)
        if chunk and cost > MAX_TXN_OPS:
            out.append(chunk)
            chunk, cidrs = [], set()
        chunk.append(h)
        cidrs |= mine
    if chunk:
        out.append(chunk)
    return out


class _Release:
    """One transaction's worth of handles, with every key as last seen (read, or
    returned by a conflict) so a lost race is planned again without reading it."""

    def __init__(self, store: Datastore, chunk: list[str], held: dict[str, KV | None]) -> None:
        self.store = store
        self.chunk = chunk
        self.known: dict[str, KV | None] = {keys.handle_key(h): held[h] for h in chunk}
        self._pools: list[IPPool] | None = None
        self._affinities: dict[tuple[str, int], list[KV]] = {}

    def run(self, policy: RetryPolicy) -> dict[str, list[str] | None]:
        what = f"release handle {self.chunk[0]}" + (
            f" and {len(self.chunk) - 1} more" if len(self.chunk) > 1 else ""
        )
        return run_cas(self.attempt, what, policy)

    def _get(self, key: str) -> KV | None:
        if key not in self.known:
            self.known[key] = self.store.get(key)
        return self.known[key]

    def attempt(self) -> dict[str, list[str] | None]:
        holdings: list[tuple[str, list[str]]] = []
        writes: list[Write] = []
        for h in self.chunk:
            kv = self.known[keys.handle_key(h)]
            if kv is not None:
                holdings.append((h, list(decode_handle(kv.key, kv.value).block)))
                writes.append(Write(kv.key, None, kv.revision))
        blocks = {}
        for cidr in {c for _, cidrs in holdings for c in cidrs}:
            bkv = self._get(keys.block_key(cidr, version_of(cidr)))
            if bkv is not None:
                blocks[cidr] = decode_block(bkv.key, bkv.value)
        plan = plan_release(blocks, holdings)
        returned: list[str] = []
        if plan.emptied:
            emptied = [plan.blocks[c] for c in plan.emptied]
            confirmed: dict[str, list[str]] = {}
            for node, version in {(b.host() or "", version_of(b.cidr)) for b in emptied}:
                confirmed.setdefault(node, []).extend(
                    keys.cidr_from_key(a.key)
                    for a in self._node_affinities(node, version)
                    if decode_affinity(a.key, a.value).state == CONFIRMED
                )
            returned = blocks_to_return(emptied, self._load_pools(), confirmed)
        for cidr, new in plan.blocks.items():
            bkv = self.known[keys.block_key(cidr, version_of(cidr))]
            assert bkv is not None  # planned blocks were read
            drop = cidr in returned or (new.empty and new.affinity is None)
            writes.append(Write(bkv.key, None if drop else encode_block(new), bkv.revision))
        for cidr in returned:
            node = plan.blocks[cidr].host() or ""
            akey = keys.affinity_key(node, cidr, version_of(cidr))
            for akv in self._node_affinities(node, version_of(cidr)):
                if akv.key == akey:
                    writes.append(Write(akey, None, akv.revision))
        if writes:
            try:
                self.store.txn(writes)
            except TxnConflict as exc:
                self.known.update(exc.current)
                if any(k.startswith(keys.all_affinities_prefix()) for k in exc.current):
                    self._affinities.clear()  # listed again on the next attempt
                raise
        return {h: plan.released.get(h) for h, _ in holdings} | {
            h: None for h in self.chunk if self.known[keys.handle_key(h)] is None
        }

    def _load_pools(self) -> list[IPPool]:
        if self._pools is None:
            self._pools = load_pools(self.store)
        return self._pools

    def _node_affinities(self, node: str, version: int) -> list[KV]:
        found = self._affinities.get((node, version))
        if found is None:
            found = self._affinities[(node, version)] = self.store.list(
                keys.affinity_prefix(node, version)
            )
        return found


__all__ = ["chunks", "release_handles", "version_of"]
