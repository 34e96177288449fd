"""The IPAM service: assign, auto-assign, release (reference §6–7).

``Ipam`` keeps the allocation policy only: which addresses a request gets (its node's
blocks, new blocks, borrowing) and giving them back.  Underneath: block affinities and
claims (``ipam.affinities``), handle counts (``ipam.handle_counts``), typed block
records with one corrupt-value policy (``ipam.records``), pool choice and STATUS
capacity (``ipam.pool_choice``), the all-or-nothing request (``ipam.assign``).
Adapters (CLI, CNI, node agent) call this; it talks to the datastore protocol only.
Every write is compare-and-swap through ``run_cas``; pure block logic is in
``tortie.core.block``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping

from tortie.core import block as blk
from tortie.core.addr import (
    Address,
    block_of,
    network_in,
    ordinal_of,
    parse_address,
    parse_network,
)
from tortie.core.block import Attribute, Block
from tortie.datastore import keys
from tortie.datastore.base import Write
from tortie.errors import (
    Conflict,
    DatastoreError,
    InvalidInput,
    NotFound,
    RevisionConflict,
)
from tortie.ipam import pools as poolsel
from tortie.ipam.affinities import BlockAffinities, Family, in_any, in_pool_order
from tortie.ipam.planner import Want, attribute_for, plan_assign, usable_block
from tortie.ipam.records import list_blocks
from tortie.ipam.requests import (
    AssignRequest,
    AutoAssignArgs,
    AutoAssignResult,
    FamilyResult,
    ReleaseOptions,
    ReleaseResult,
)
from tortie.ipam.retry import run_cas
from tortie.model.ipam_records import (
    decode_block,
    encode_block,
)
from tortie.model.ipamconfig import IPAMConfig, ipamconfig_from_v2, ipamconfig_to_v2
from tortie.model.ippool import IPPool

DEFAULT_MAX_BLOCKS_PER_HOST = 20


def go_list(items: Iterable[str]) -> str:
    """Format like Go's ``%v`` of a string slice, as Calico's messages do."""
    return "[" + " ".join(items) + "]"


class Ipam(BlockAffinities):
    """The allocation policy: which addresses a request gets, and giving them back."""

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
        from tortie.ipam import pool_choice  # lazy: not every plugin verb resolves pools

        return pool_choice.resolve_pools(self.store, node, requested, intent)

    def can_assign(self, node: str, requested: dict[int, tuple[str, ...]], intent: str) -> None:
        """Raise unless every family in ``requested`` could get an address now (CNI
        STATUS); writes nothing."""
        from tortie.ipam import pool_choice

        config = self.get_config()
        for version, pools in self.resolve_pools(node, requested, intent).items():
            pool_choice.can_assign(self.store, config, node, version, pools)

    def assign(self, request: AssignRequest) -> list[str]:
        """Specific then automatic addresses, all or nothing (see ``ipam.assign``)."""
        from tortie.ipam.assign import assign  # lazy: ADD only

        return assign(self, request)

    def auto_assign(self, args: AutoAssignArgs) -> AutoAssignResult:
        """Assign ``num4`` IPv4 then ``num6`` IPv6 addresses.

        Running dry is not an exception: the family's result holds fewer addresses and a
        message saying why.  Bad requests (unknown pools, no pool for the node) raise.
        """
        if args.num4 < 0 or args.num6 < 0:
            raise InvalidInput("the number of addresses to assign must not be negative")
        attr = attribute_for(args.handle_id, args.attrs, args.node)
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
            owned = self.confirmed_affinities(args.node, version)
            if not was_requested:
                owned = self.release_unselected(args.node, version, pools, owned)
            fam = Family(version, pools)
            results.append(self._assign_family(args.node, fam, num, attr, config, owned))
        return AutoAssignResult(ipv4=results[0], ipv6=results[1])

    def _assign_family(
        self,
        node: str,
        fam: Family,
        num: int,
        attr: Attribute,
        config: IPAMConfig,
        owned: list[str],
    ) -> FamilyResult:
        """Fill the request from the node's blocks (``owned``), then new blocks, then
        by borrowing."""
        got: list[str] = []
        messages: list[str] = []
        for cidr in in_pool_order(owned, fam.pools):
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
            claimed = self.claim_any_block(node, fam, config.strict_affinity)
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
            stored = usable_block(self.store.get(key), node)
            if stored is None:
                return []
            plan = plan_assign([stored.block], [Want(count, attr)], node)
            got = plan.grants[0].addresses
            # The handle's count and the block land in one transaction: on etcd as on
            # SQLite a failure can never leave one without the other.
            writes = [Write(key, encode_block(plan.blocks[cidr]), stored.revision)]
            if attr.handle_id is not None:
                writes.insert(0, self.handle_write(attr.handle_id, cidr, len(got)))
            self.store.txn(writes)
            return got

        return run_cas(attempt, f"assign from block {cidr}", self.policy)

    def _borrow(self, fam: Family, count: int, attr: Attribute) -> list[str]:
        got: list[str] = []
        nets = [p.network for p in fam.pools]
        for sb in list_blocks(self.store, fam.version, free_only=True):
            if len(got) >= count:
                break
            if sb.block.free and in_any(sb.cidr, nets):
                got += self._assign_from_block(sb.cidr, fam.version, count - len(got), attr, None)
        return got

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
        attr = attribute_for(handle_id, attrs, node)
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
            self.add_to_handle(handle_id, cidr, 1)
            try:
                self.store.update(key, encode_block(new), kv.revision)
            except Conflict:  # surely not written (see _assign_from_block)
                self.remove_from_handle(handle_id, cidr, 1)
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

        def attempt() -> tuple[
            dict[str | None, int], list[str], list[str], list[tuple[str, str]], Block | None
        ]:
            released: list[str] = []
            missing: list[str] = []
            refused: list[tuple[str, str]] = []
            kv = self.store.get(key)
            if kv is None:
                return {}, released, [str(a) for a, _ in group], refused, None
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
            emptied = new if per_handle and new.empty and new.host() else None
            return per_handle, released, missing, refused, emptied

        per_handle, released, missing, refused, emptied = run_cas(
            attempt, f"release in block {cidr}", self.policy
        )
        for handle_id, count in per_handle.items():
            self.remove_from_handle(handle_id, cidr, count)
        if emptied is not None:
            self._trim_emptied_block(emptied, version)
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
            for c in self.confirmed_affinities(node, version)
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

    def release_addresses(self, items: Iterable[ReleaseOptions]) -> ReleaseResult:
        """``release_ips`` under the ``Allocator`` name (``tortie.ipam.allocator``)."""
        return self.release_ips(items)

    def release_by_handle(self, handle_id: str) -> list[str]:
        """Release every address of a handle and delete it, in one store transaction
        (``tortie.ipam.release``); NotFound when the handle does not exist."""
        from tortie.ipam.release import release_handles  # lazy: DEL only

        released = release_handles(self.store, [handle_id], self.policy)[handle_id]
        if released is None:
            raise NotFound(f"handle {handle_id} does not exist")
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
