"""The IPAM service: auto-assign, assign, release and block affinities (reference §6–7).

Adapters (CLI, CNI, node agent) call this; it talks to the datastore protocol only.
Every write is compare-and-swap through ``run_cas``; pure block logic is in
``tortie.core.block``.  Nothing here enumerates a pool: new blocks are found by probing
candidate keys from a start point derived from the node name.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterable, Mapping

from tortie.core import block as blk
from tortie.core.addr import (
    Address,
    Network,
    block_at,
    block_count,
    block_of,
    network_in,
    ordinal_of,
    parse_address,
    parse_network,
    start_index,
)
from tortie.core.block import Attribute, Block
from tortie.core.record import record
from tortie.datastore import keys
from tortie.datastore.base import KV, Datastore
from tortie.errors import (
    AlreadyExists,
    Conflict,
    DatastoreError,
    InvalidInput,
    NotFound,
    RevisionConflict,
)
from tortie.ipam import pool_choice
from tortie.ipam import pools as poolsel
from tortie.ipam.assign import assign as assign_all
from tortie.ipam.ownership import HandleOwners, handle_owners
from tortie.ipam.records import FULL_BLOCK_MARK, list_blocks
from tortie.ipam.requests import (
    AssignRequest,
    AutoAssignArgs,
    AutoAssignResult,
    FamilyResult,
    ReleaseOptions,
    ReleaseResult,
)
from tortie.ipam.retry import DEFAULT_POLICY, RetryPolicy, run_cas
from tortie.model.ipam_records import (
    CONFIRMED,
    PENDING,
    PENDING_DELETION,
    Affinity,
    Handle,
    decode_affinity,
    decode_block,
    decode_handle,
    encode_affinity,
    encode_block,
    encode_handle,
)
from tortie.model.ippool import IPPool
from tortie.model.resources import IPAMConfig, ipamconfig_from_v2, ipamconfig_to_v2

DEFAULT_MAX_BLOCKS_PER_HOST = 20
PROBES_BEFORE_LISTING = 16


def go_list(items: Iterable[str]) -> str:
    """Format like Go's ``%v`` of a string slice, as Calico's messages do."""
    return "[" + " ".join(items) + "]"


@record
class _Family:
    version: int
    pools: list[IPPool]


class Ipam:
    def __init__(self, store: Datastore, policy: RetryPolicy = DEFAULT_POLICY) -> None:
        self.store = store
        self.policy = policy

    # ------------------------------------------------------------------ config

    def get_config(self) -> IPAMConfig:
        kv = self.store.get(keys.CONFIG_KEY)
        if kv is None:
            return IPAMConfig()
        try:
            return ipamconfig_from_v2(json.loads(kv.value))
        except (ValueError, InvalidInput) as exc:
            raise DatastoreError(
                f"{keys.CONFIG_KEY}: stored IPAM config is not valid ({exc})"
            ) from None

    def set_config(self, config: IPAMConfig) -> None:
        value = json.dumps(ipamconfig_to_v2(config))

        def write() -> None:
            kv = self.store.get(keys.CONFIG_KEY)
            if kv is None:
                self.store.create(keys.CONFIG_KEY, value)
            else:
                self.store.update(keys.CONFIG_KEY, value, kv.revision)

        run_cas(write, "set IPAM config", self.policy)

    # ------------------------------------------------------------ auto-assign

    def resolve_pools(
        self, node: str, requested: dict[int, tuple[str, ...]], intent: str
    ) -> dict[int, list[IPPool]]:
        """The pools each family draws from (see ``pool_choice.resolve_pools``)."""
        return pool_choice.resolve_pools(self.store, node, requested, intent)

    def can_assign(self, node: str, requested: dict[int, tuple[str, ...]], intent: str) -> None:
        """Raise unless every family in ``requested`` could get an address now (CNI
        STATUS); writes nothing."""
        config = self.get_config()
        for version, pools in self.resolve_pools(node, requested, intent).items():
            pool_choice.can_assign(self.store, config, node, version, pools)

    def assign(self, request: AssignRequest) -> list[str]:
        """Specific then automatic addresses, all or nothing (see ``ipam.assign``)."""
        return assign_all(self, request)

    def auto_assign(self, args: AutoAssignArgs) -> AutoAssignResult:
        """Assign ``num4`` IPv4 then ``num6`` IPv6 addresses.

        Running dry is not an exception: the family's result holds fewer addresses and a
        message saying why.  Bad requests (unknown pools, no pool for the node) raise.
        """
        if args.num4 < 0 or args.num6 < 0:
            raise InvalidInput("the number of addresses to assign must not be negative")
        attrs = dict(args.attrs)
        attrs.setdefault("node", args.node)
        attr = Attribute(args.handle_id, attrs)
        config = self.get_config()
        wanted = {v: n for v, n in ((4, args.num4), (6, args.num6)) if n}
        named = {4: args.ipv4_pools, 6: args.ipv6_pools}
        # Resolve the pools of both families before writing anything, so a request that
        # fails for one family (no pool, bad pool name) leaves nothing allocated.
        chosen = self.resolve_pools(args.node, {v: named[v] for v in wanted}, args.intent)
        plans = [
            (v, wanted.get(v, 0), chosen.get(v, []), bool(named[v]) and v in wanted) for v in (4, 6)
        ]
        results = []
        for version, num, pools, was_requested in plans:
            if num == 0:
                results.append(FamilyResult())
                continue
            owned = self._confirmed_affinities(args.node, version)
            if not was_requested:
                owned = self._release_unselected(args.node, version, pools, owned)
            fam = _Family(version, pools)
            results.append(self._assign_family(args.node, fam, num, attr, config, owned))
        return AutoAssignResult(ipv4=results[0], ipv6=results[1])

    def _assign_family(
        self,
        node: str,
        fam: _Family,
        num: int,
        attr: Attribute,
        config: IPAMConfig,
        owned: list[str],
    ) -> FamilyResult:
        """Fill the request from the node's blocks (``owned``), then new blocks, then
        by borrowing."""
        got: list[str] = []
        messages: list[str] = []
        nets = [p.network for p in fam.pools]
        for cidr in [c for c in owned if _in_any(c, nets)]:
            if len(got) >= num:
                break
            got += self._assign_from_block(cidr, fam.version, num - len(got), attr, node)
        limit = config.max_blocks_per_host or DEFAULT_MAX_BLOCKS_PER_HOST
        while len(got) < num and config.auto_allocate_blocks:
            if len(owned) >= limit:
                messages.append(
                    f"node {node} already has {len(owned)} blocks, the most allowed "
                    f"(maxBlocksPerHost {limit})"
                )
                break
            claimed = self._claim_any_block(node, fam, config.strict_affinity)
            if claimed is None:
                break
            owned = [*owned, claimed]
            got += self._assign_from_block(claimed, fam.version, num - len(got), attr, node)
        if len(got) < num:
            if config.strict_affinity:
                messages.append("No more free affine blocks and strict affinity enabled")
            else:
                got += self._borrow(fam, num - len(got), attr)
        if len(got) < num:
            messages.append(f"No IPs available in pools: {go_list(p.cidr for p in fam.pools)}")
        return FamilyResult(got, messages)

    def _assign_from_block(
        self, cidr: str, version: int, count: int, attr: Attribute, node: str | None
    ) -> list[str]:
        """Take up to ``count`` addresses from one block.  With ``node`` the block must
        still be affine to it; with None any block (borrowing)."""
        key = keys.block_key(cidr, version)

        def attempt() -> list[str]:
            kv = self.store.get(key)
            if kv is None or FULL_BLOCK_MARK in kv.value:
                return []  # a full block is skipped without decoding it
            block = decode_block(key, kv.value)
            if (node is not None and block.host() != node) or block.free == 0:
                return []
            new, ordinals = blk.assign(block, count, attr)
            self._add_to_handle(attr.handle_id, cidr, len(ordinals))
            try:
                self.store.update(key, encode_block(new), kv.revision)
            except Conflict:  # surely not written; after an unknown outcome the handle
                # keeps the count: too high is safe (ipam check reports it), too low leaks
                self._remove_from_handle(attr.handle_id, cidr, len(ordinals))
                raise
            prefix = cidr.rsplit("/", 1)[1]
            return [f"{new.address(o)}/{prefix}" for o in ordinals]

        return run_cas(attempt, f"assign from block {cidr}", self.policy)

    def _borrow(self, fam: _Family, count: int, attr: Attribute) -> list[str]:
        got: list[str] = []
        nets = [p.network for p in fam.pools]
        for sb in list_blocks(self.store, fam.version, free_only=True):
            if len(got) >= count:
                break
            if sb.block.free and _in_any(sb.cidr, nets):
                got += self._assign_from_block(sb.cidr, fam.version, count - len(got), attr, None)
        return got

    # ------------------------------------------------------------- affinities

    def _affinities(self, node: str, version: int) -> list[tuple[str, KV, Affinity]]:
        out = []
        for kv in self.store.list(keys.affinity_prefix(node, version)):
            out.append((keys.cidr_from_key(kv.key), kv, decode_affinity(kv.key, kv.value)))
        return out

    def _confirmed_affinities(self, node: str, version: int) -> list[str]:
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

    def _claim_any_block(self, node: str, fam: _Family, strict: bool) -> str | None:
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

    def _release_unselected(
        self, node: str, version: int, selected: list[IPPool], owned: list[str]
    ) -> list[str]:
        """Empty blocks of pools that no longer select the node are given up; returns the
        node's blocks that remain."""
        nets = [p.network for p in selected]
        kept = []
        for cidr in owned:
            if _in_any(cidr, nets) or not self._release_affinity(
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

    # ----------------------------------------------------------------- handles

    def _add_to_handle(self, handle_id: str | None, cidr: str, count: int) -> None:
        self._change_handle(handle_id, cidr, count)

    def _remove_from_handle(self, handle_id: str | None, cidr: str, count: int) -> None:
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

    def handle_owners(self, handle_id: str) -> HandleOwners | None:
        """Node, network and newest allocation time of a handle (CNI GC)."""
        return handle_owners(self.store, handle_id)

    def get_handle(self, handle_id: str) -> Handle | None:
        kv = self.store.get(keys.handle_key(handle_id))
        return None if kv is None else decode_handle(kv.key, kv.value)

    # ------------------------------------------------------- specific address

    def assign_ip(
        self, address: str, handle_id: str | None, attrs: Mapping[str, str], node: str
    ) -> str:
        """Assign one specific address; returns it as /32 or /128."""
        addr = parse_address(address)
        enabled = [p for p in poolsel.load_pools(self.store) if not p.disabled]
        pool = poolsel.pool_containing(addr, enabled)
        if pool is None:
            raise InvalidInput(
                f"The provided IP address is not in a configured pool ({addr}); "
                "choose an address inside an enabled IPPool or create a pool that contains it"
            )
        cidr = str(block_of(addr, pool.block_size))
        key = keys.block_key(cidr, pool.version)
        full = dict(attrs)
        full.setdefault("node", node)
        attr = Attribute(handle_id, full)
        config = self.get_config()

        def attempt() -> None:
            kv = self.store.get(key)
            if kv is None:
                self._claim_block(node, cidr, pool.version, config.strict_affinity)
                raise RevisionConflict(f"block {cidr} was just created")
            block = decode_block(key, kv.value)
            new = blk.assign_ordinal(block, ordinal_of(block.network, addr), attr)
            if new is None:
                raise InvalidInput(
                    f"Address already assigned in block {cidr} ({addr}); "
                    "release it first or ask for another address"
                )
            if config.strict_affinity and block.host() not in (None, node):
                raise InvalidInput(
                    f"Block affinity ({block.affinity}) does not match provided (host:{node}) "
                    f"for {addr}; with strict affinity an address can only come from the "
                    "node's own blocks"
                )
            self._add_to_handle(handle_id, cidr, 1)
            try:
                self.store.update(key, encode_block(new), kv.revision)
            except Conflict:  # surely not written (see _assign_from_block)
                self._remove_from_handle(handle_id, cidr, 1)
                raise

        run_cas(attempt, f"assign {addr}", self.policy)
        return f"{addr}/{addr.max_prefixlen}"

    # ---------------------------------------------------------------- release

    def _block_cidr_for(self, addr: Address, pools: list[IPPool]) -> str | None:
        pool = poolsel.pool_containing(addr, pools)
        if pool is not None:
            return str(block_of(addr, pool.block_size))
        # The pool is gone: find an existing block that holds the address.
        for kv in self.store.list(keys.block_prefix(addr.version)):
            cidr = keys.cidr_from_key(kv.key)
            if addr in parse_network(cidr):
                return cidr
        return None

    def release_ips(self, items: Iterable[ReleaseOptions]) -> ReleaseResult:
        result = ReleaseResult()
        pools = poolsel.load_pools(self.store)
        by_block: dict[tuple[str, int], list[tuple[Address, ReleaseOptions]]] = {}
        seen: set[Address] = set()
        for item in items:
            addr = parse_address(item.address)
            if addr in seen:  # listed twice: release (and report) it once
                continue
            seen.add(addr)
            cidr = self._block_cidr_for(addr, pools)
            if cidr is None:
                result.not_allocated.append(str(addr))
                continue
            by_block.setdefault((cidr, addr.version), []).append((addr, item))
        for (cidr, version), group in by_block.items():
            self._release_in_block(cidr, version, group, result)
        return result

    def _release_in_block(
        self,
        cidr: str,
        version: int,
        group: list[tuple[Address, ReleaseOptions]],
        result: ReleaseResult,
    ) -> None:
        key = keys.block_key(cidr, version)
        emptied: list[Block] = []

        def attempt() -> tuple[dict[str | None, int], list[str], list[str], list[tuple[str, str]]]:
            emptied.clear()
            released: list[str] = []
            missing: list[str] = []
            refused: list[tuple[str, str]] = []
            kv = self.store.get(key)
            if kv is None:
                return {}, released, [str(a) for a, _ in group], refused
            block = decode_block(key, kv.value)
            ordinals = []
            for addr, opt in group:
                ordinal = ordinal_of(block.network, addr)
                owner = block.owner(ordinal)
                if owner is None:
                    missing.append(str(addr))
                elif opt.handle_id is not None and owner.handle_id != opt.handle_id:
                    refused.append(
                        (str(addr), f"held by handle {owner.handle_id}, not {opt.handle_id}")
                    )
                elif opt.sequence_number is not None and (
                    block.sequence_number_for_allocation.get(str(ordinal)) != opt.sequence_number
                ):
                    refused.append(
                        (str(addr), "sequence number is stale: the address was re-allocated since")
                    )
                else:
                    ordinals.append(ordinal)
                    released.append(str(addr))
            new, per_handle = blk.release(block, ordinals)
            if per_handle:
                self._write_or_drop(key, new, kv.revision)
                if new.empty and new.host():
                    emptied.append(new)
            return per_handle, released, missing, refused

        per_handle, released, missing, refused = run_cas(
            attempt, f"release in block {cidr}", self.policy
        )
        for handle_id, count in per_handle.items():
            self._remove_from_handle(handle_id, cidr, count)
        for block in emptied:
            self._trim_emptied_block(block, version)
        result.released.extend(released)
        result.not_allocated.extend(missing)
        result.refused.extend(refused)

    def _trim_emptied_block(self, block: Block, version: int) -> None:
        """A release left one of a node's blocks empty: give the block back to the pool
        when the node has another block in the same pool, so a burst of pods does not
        leave a node holding many empty blocks.  One block per pool stays warm."""
        node = block.host()
        if node is None:
            return
        net = parse_network(block.cidr)
        pool = poolsel.pool_containing(net.network_address, poolsel.load_pools(self.store))
        if pool is None:  # its pool was deleted: nothing should keep the block
            self._release_affinity(node, block.cidr, version, must_be_empty=True)
            return
        others = [
            c
            for c in self._confirmed_affinities(node, version)
            if c != block.cidr and network_in(parse_network(c), pool.network)
        ]
        if others:
            self._release_affinity(node, block.cidr, version, must_be_empty=True)

    def _write_or_drop(self, key: str, block: Block, revision: int) -> None:
        """Store the block, or delete it when it is empty and affine to nobody."""
        if block.empty and block.affinity is None:
            self.store.delete(key, revision)
        else:
            self.store.update(key, encode_block(block), revision)

    def release_by_handle(self, handle_id: str) -> list[str]:
        """Release every address of a handle; NotFound when the handle does not exist."""
        key = keys.handle_key(handle_id)
        kv = self.store.get(key)
        if kv is None:
            raise NotFound(f"handle {handle_id} does not exist")
        handle = decode_handle(key, kv.value)
        released: list[str] = []
        for cidr, recorded in handle.block.items():
            version = 6 if ":" in cidr else 4
            bkey = keys.block_key(cidr, version)

            emptied: list[Block] = []

            def attempt(bkey: str = bkey, emptied: list[Block] = emptied) -> list[str]:
                bkv = self.store.get(bkey)
                if bkv is None:
                    return []
                block = decode_block(bkey, bkv.value)
                ordinals = blk.ordinals_of_handle(block, handle_id)
                if not ordinals:
                    return []
                new, _ = blk.release(block, ordinals)
                self._write_or_drop(bkey, new, bkv.revision)
                emptied[:] = [new] if new.empty and new.host() else []
                return [str(block.address(o)) for o in ordinals]

            freed = run_cas(attempt, f"release handle {handle_id}", self.policy)
            for block in emptied:
                self._trim_emptied_block(block, version)
            released += freed
            # Decrement (never blindly delete) the handle, so an allocation made for it
            # meanwhile in another block stays recorded.  At least the count read above
            # goes, so a stale count (block lost its addresses) does not linger.
            self._remove_from_handle(handle_id, cidr, max(len(freed), recorded))
        return released

    # ------------------------------------------------------------------ reads

    def get_block(self, cidr: str) -> Block | None:
        net = parse_network(cidr)
        kv = self.store.get(keys.block_key(str(net), net.version))
        return None if kv is None else decode_block(kv.key, kv.value)

    def find_block(self, address: str) -> Block | None:
        """The block that holds (or would hold) an address, if it exists."""
        addr = parse_address(address)
        cidr = self._block_cidr_for(addr, poolsel.load_pools(self.store))
        return self.get_block(cidr) if cidr else None

    def find_allocation(self, address: str) -> tuple[Block, int] | None:
        """The block and ordinal of an allocated address, or None when it is free."""
        addr = parse_address(address)
        cidr = self._block_cidr_for(addr, poolsel.load_pools(self.store))
        block = self.get_block(cidr) if cidr else None
        if block is None:
            return None
        ordinal = ordinal_of(block.network, addr)
        return (block, ordinal) if block.owner(ordinal) is not None else None


def _in_any(cidr: str, nets: list[Network]) -> bool:
    net = parse_network(cidr)
    return any(network_in(net, n) for n in nets)
