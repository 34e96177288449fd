"""Block affinities: which node owns which block, claimed in two phases.

The middle layer of the IPAM service (``HandleCounts`` ← ``BlockAffinities`` ←
``Ipam``): claiming a block for a node (pending affinity, block, confirm), settling
claims a crash left pending, and giving blocks back.  Nothing here enumerates a pool:
new blocks are found by probing candidate keys from a start point derived from the
node name.
"""

from __future__ import annotations

import contextlib

from tortie.core import block as blk
from tortie.core.addr import (
    Network,
    block_at,
    block_count,
    network_in,
    parse_network,
    start_index,
)
from tortie.core.record import record
from tortie.datastore import keys
from tortie.datastore.base import KV
from tortie.errors import (
    AlreadyExists,
    Conflict,
    NotFound,
)
from tortie.ipam.handle_counts import HandleCounts
from tortie.ipam.retry import run_cas
from tortie.model.ipam_records import (
    CONFIRMED,
    PENDING,
    PENDING_DELETION,
    Affinity,
    decode_affinity,
    decode_block,
    encode_affinity,
    encode_block,
)
from tortie.model.ippool import IPPool

PROBES_BEFORE_LISTING = 16


@record
class Family:
    """One address family of a request and the pools it draws from, in order."""

    version: int
    pools: list[IPPool]


class BlockAffinities(HandleCounts):
    # ------------------------------------------------------------- affinities

    def _affinities(self, node: str, version: int) -> list[tuple[str, KV, Affinity]]:
        out = []
        for kv in self.store.list(keys.affinity_prefix(node, version)):
            out.append((keys.cidr_from_key(kv.key), kv, decode_affinity(kv.key, kv.value)))
        return out

    def confirmed_affinities(self, node: str, version: int) -> list[str]:
        """The node's confirmed blocks.  Pending claims and pending deletions left by a
        crash are settled: confirmed when the block is still ours, dropped when another
        node's block stands there (or, for a deletion, when the block is gone)."""
        out = []
        for cidr, kv, aff in self._affinities(node, version):
            if aff.state == CONFIRMED or (
                aff.state in (PENDING, PENDING_DELETION)
                and self._settle_pending(node, cidr, version, kv)
            ):
                out.append(cidr)
        return out

    def _settle_pending(self, node: str, cidr: str, version: int, kv: KV) -> bool:
        bkv = self.store.get(keys.block_key(cidr, version))
        try:
            if bkv is not None and decode_block(bkv.key, bkv.value).host() == node:
                self.store.update(kv.key, encode_affinity(Affinity(CONFIRMED)), kv.revision)
                return True
            if bkv is not None or decode_affinity(kv.key, kv.value).state == PENDING_DELETION:
                self.store.delete(kv.key, kv.revision)  # another node's block, or ours is gone
        except Conflict:
            pass
        return False

    def claim_any_block(self, node: str, fam: Family, strict: bool) -> str | None:
        for pool in fam.pools:
            cidr = self._claim_in_pool(node, pool, strict)
            if cidr is not None:
                return cidr
        return None

    def _claim_in_pool(self, node: str, pool: IPPool, strict: bool) -> str | None:
        """Walk the pool's blocks from the node's hash-derived start and claim the first
        that does not exist.  Probes single keys; lists existing blocks only when the
        neighbourhood is crowded."""
        net = pool.network
        count = block_count(net, pool.block_size)
        start = start_index(node, count)
        existing: set[str] | None = None
        for step in range(count):
            cidr = str(block_at(net, pool.block_size, (start + step) % count))
            key = keys.block_key(cidr, pool.version)
            if existing is None and step >= PROBES_BEFORE_LISTING:
                existing = {kv.key for kv in self.store.list(keys.block_prefix(pool.version))}
            taken = key in existing if existing is not None else self.store.get(key) is not None
            if taken:
                continue
            if self._claim_block(node, cidr, pool.version, strict):
                return cidr
            if existing is not None:
                existing.add(key)
        return None

    def _claim_block(self, node: str, cidr: str, version: int, strict: bool) -> bool:
        """Two-phase claim: pending affinity, create the block, confirm.  False when
        another node created the block first."""
        akey = keys.affinity_key(node, cidr, version)
        with contextlib.suppress(AlreadyExists):
            self.store.create(akey, encode_affinity(Affinity(PENDING)))
        bkey = keys.block_key(cidr, version)
        try:
            self.store.create(bkey, encode_block(blk.new_block(cidr, node, strict)))
        except AlreadyExists:
            bkv = self.store.get(bkey)
            if bkv is None or decode_block(bkey, bkv.value).host() != node:
                self._delete_key(akey)
                return False
        self._set_affinity_state(akey, CONFIRMED)
        return True

    def _set_affinity_state(self, akey: str, state: str) -> KV:
        def write() -> KV:
            kv = self.store.get(akey)
            if kv is None:
                return self.store.create(akey, encode_affinity(Affinity(state)))
            return self.store.update(akey, encode_affinity(Affinity(state)), kv.revision)

        return run_cas(write, f"set affinity {akey}", self.policy)

    def _delete_key(self, key: str) -> None:
        with contextlib.suppress(NotFound):
            self.store.delete(key)

    def release_unselected(
        self, node: str, version: int, selected: list[IPPool], owned: list[str]
    ) -> list[str]:
        """Empty blocks of pools that no longer select the node are given up; returns the
        node's blocks that remain."""
        nets = [p.network for p in selected]
        kept = []
        for cidr in owned:
            if in_any(cidr, nets) or not self._release_affinity(
                node, cidr, version, must_be_empty=True
            ):
                kept.append(cidr)
        return kept

    def _release_affinity(self, node: str, cidr: str, version: int, must_be_empty: bool) -> bool:
        """Give up one block affinity.  An empty block is deleted with it; a non-empty
        block is kept (or, without ``must_be_empty``, kept without affinity).  True when
        the affinity is gone."""
        akey = keys.affinity_key(node, cidr, version)
        bkey = keys.block_key(cidr, version)

        def attempt() -> bool:
            akv = self.store.get(akey)
            bkv = self.store.get(bkey)
            block = decode_block(bkey, bkv.value) if bkv else None
            if bkv is not None and block is not None and block.host() == node:
                if not block.empty:
                    if must_be_empty:
                        return False
                    unaffine = blk.with_affinity(block, None)
                    self.store.update(bkey, encode_block(unaffine), bkv.revision)
                else:
                    doomed = encode_affinity(Affinity(PENDING_DELETION))
                    akv = (
                        self.store.create(akey, doomed)
                        if akv is None
                        else self.store.update(akey, doomed, akv.revision)
                    )
                    try:
                        self.store.delete(bkey, bkv.revision)
                    except Conflict:
                        # Someone wrote the block meanwhile: keep the affinity, re-check.
                        self._set_affinity_state(akey, CONFIRMED)
                        raise
            if akv is not None:
                # Only the affinity as we last saw it: a claim of the same block that
                # happened meanwhile changed it, and the retry sees that claim's block.
                self.store.delete(akey, akv.revision)
            return True

        return run_cas(attempt, f"release affinity of {cidr}", self.policy)

    def release_affinity(self, node: str, cidr: str, version: int) -> bool:
        """Give up one of a node's blocks if it is empty; True when the affinity is gone."""
        return self._release_affinity(node, cidr, version, must_be_empty=True)

    def release_host_affinities(self, node: str, must_be_empty: bool = True) -> list[str]:
        """Release the node's block affinities; returns the CIDRs released."""
        released = []
        for version in (4, 6):
            for cidr, _kv, _aff in self._affinities(node, version):
                if self._release_affinity(node, cidr, version, must_be_empty):
                    released.append(cidr)
        return released

    def release_pool_affinities(self, pool: IPPool) -> list[str]:
        """Release every empty affine block inside the pool (pool deletion)."""
        released = []
        for kv in self.store.list(keys.all_affinities_prefix()):
            family = f"/{keys.family_dir(pool.version)}/block/"
            if family not in kv.key:
                continue
            cidr = keys.cidr_from_key(kv.key)
            if network_in(parse_network(cidr), pool.network):
                node = keys.node_of_affinity_key(kv.key)
                if self._release_affinity(node, cidr, pool.version, must_be_empty=True):
                    released.append(cidr)
        return released


_BLOCK_NETS: dict[str, Network] = {}  # block CIDR → parsed (a resident service asks often)


def block_network(cidr: str) -> Network:
    net = _BLOCK_NETS.get(cidr)
    if net is None:
        if len(_BLOCK_NETS) >= 4096:
            _BLOCK_NETS.clear()
        net = _BLOCK_NETS[cidr] = parse_network(cidr)
    return net


def in_any(cidr: str, nets: list[Network]) -> bool:
    net = block_network(cidr)
    return any(network_in(net, n) for n in nets)


def in_pool_order(owned: list[str], pools: list[IPPool]) -> list[str]:
    """The blocks of ``owned`` inside ``pools``, the first pool's blocks first (the order
    a request names its pools in is the order they are used)."""
    out: list[str] = []
    left = [(c, block_network(c)) for c in owned]
    for pool in pools:
        mine = [c for c, net in left if network_in(net, pool.network)]
        out += mine
        left = [(c, net) for c, net in left if c not in mine]
    return out
