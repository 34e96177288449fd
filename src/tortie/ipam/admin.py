"""Resource verbs (create, apply, replace, delete, get) with their IPAM side effects.

Every document of a request is validated against the store and against the other
documents first; only then is anything written, so a failing command writes nothing.
IPAMConfiguration lives at Calico's ``/calico/ipam/v2/config``; other kinds are stored
whole at ``/calico/resources/v3/projectcalico.org/<plural>/[<ns>/]<name>``.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from tortie.core.addr import network_in, parse_network
from tortie.core.block import Block
from tortie.core.record import record, replace
from tortie.datastore import keys
from tortie.datastore.base import KV, Datastore
from tortie.errors import AlreadyExists, Conflict, InvalidInput, NotFound, RevisionConflict
from tortie.ipam.pools import load_pools
from tortie.ipam.service import Ipam
from tortie.ipam.usage import load_blocks
from tortie.model.ippool import (
    IPPool,
    PoolIndex,
    check_pool_change,
    ippool_from_dict,
    ippool_to_dict,
)
from tortie.model.resources import KINDS, IPAMConfig, KindInfo, ipamconfig_to_dict

VERBS = ("create", "apply", "replace", "delete")


@record
class Planned:
    """One validated write: the verb, the kind, the object and its storage key."""

    verb: str
    info: KindInfo
    obj: Any
    key: str
    current: KV | None


def _name_ns(info: KindInfo, obj: Any) -> tuple[str, str | None]:
    name = str(obj.name)
    ns = getattr(obj, "namespace", None) if info.namespaced else None
    return name, (ns or "default") if info.namespaced else None


def describe(info: KindInfo, obj: Any) -> str:
    name, ns = _name_ns(info, obj)
    return f"{info.kind}({ns + '/' if ns else ''}{name})"


def storage_key(info: KindInfo, obj: Any) -> str:
    if info.kind == "IPAMConfiguration":
        return keys.CONFIG_KEY
    name, ns = _name_ns(info, obj)
    return keys.resource_key(info.plural, name, ns)


class Admin:
    def __init__(self, store: Datastore) -> None:
        self.store = store
        self.ipam = Ipam(store)

    # ------------------------------------------------------------- planning

    def plan(self, verb: str, docs: Sequence[Mapping[str, Any]]) -> list[Planned]:
        """Validate every document for ``verb``; raise on the first problem."""
        planned: list[Planned] = []
        keys_planned: set[str] = set()
        pools = {p.name: p for p in load_pools(self.store)}
        index = PoolIndex(pools.values())
        self._blocks: list[Block] | None = None  # loaded once, when a new pool needs them
        for doc in docs:
            info = KINDS[str(doc.get("kind"))]
            obj = info.from_dict(doc)
            key = storage_key(info, obj)
            current = self.store.get(key)
            what = describe(info, obj)
            exists = current is not None or info.kind == "IPAMConfiguration"
            if key in keys_planned:
                raise InvalidInput(f"{what} appears twice in the input; keep one of them")
            keys_planned.add(key)
            if verb == "create" and current is not None:
                raise AlreadyExists(
                    f"Failed to create '{info.kind}' resource: resource already exists: {what}; "
                    "use 'tortie apply' or 'tortie replace' to change it"
                )
            if verb in ("replace", "delete") and not exists:
                raise NotFound(f"resource does not exist: {what}; create it first")
            if verb == "delete" and info.kind == "IPAMConfiguration":
                raise InvalidInput(f"{what} cannot be deleted; change it with 'tortie apply'")
            if info.kind == "IPPool" and verb != "delete":
                self._check_pool(obj, pools, index, current)
                pools[obj.name] = obj
                index.put(obj)
            planned.append(Planned(verb, info, obj, key, current))
        return planned

    def _check_pool(
        self, pool: IPPool, pools: dict[str, IPPool], index: PoolIndex, current: KV | None
    ) -> None:
        old = pools.get(pool.name)
        if current is not None and old is not None:
            check_pool_change(old, pool)
        index.check(pool)
        if old is None:
            if self._blocks is None:
                self._blocks = load_blocks(self.store)
            for block in self._blocks:
                net = parse_network(block.cidr)
                if (
                    net.version == pool.version
                    and network_in(net, pool.network)
                    and (net.prefixlen != pool.block_size and block.in_use)
                ):
                    raise InvalidInput(
                        f"IPPool({pool.name}): block {block.cidr} inside {pool.cidr} still holds "
                        f"{block.in_use} addresses with a different block size than "
                        f"{pool.block_size}; release them first or use blockSize "
                        f"{net.prefixlen}"
                    )

    # ------------------------------------------------------------- applying

    def execute(self, planned: list[Planned]) -> list[str]:
        """Carry out validated writes; returns one message per object."""
        done = []
        for n, p in enumerate(planned):
            what = describe(p.info, p.obj)
            try:
                self._carry_out(p)
            except (RevisionConflict, NotFound) as exc:
                if what in str(exc):
                    raise
                # A raw key means another writer got between our read and our write.
                done_note = f" ({n} earlier resources of this command were written)" if n else ""
                raise Conflict(
                    f"{what} was changed or deleted by another writer while this command ran"
                    f"{done_note}; check it with 'tortie get' and run the command again"
                ) from None
            if p.verb == "delete":
                done.append(f"Successfully deleted 1 '{p.info.kind}' resource(s): {what}")
            else:
                verb = {"create": "created", "apply": "applied", "replace": "replaced"}[p.verb]
                done.append(f"Successfully {verb} 1 '{p.info.kind}' resource(s): {what}")
        return done

    def _carry_out(self, p: Planned) -> None:
        if p.verb == "delete":
            self._delete(p)
        else:
            self._write(p)

    def _write(self, p: Planned) -> None:
        if p.info.kind == "IPAMConfiguration":
            self.ipam.set_config(p.obj)
            return
        doc = p.info.to_dict(p.obj)
        meta = doc.setdefault("metadata", {})
        meta.pop("resourceVersion", None)
        if p.current is None:
            if p.info.kind == "IPPool":
                self._clear_foreign_empty_blocks(p.obj)
            meta.setdefault("uid", str(uuid.uuid4()))
            meta.setdefault(
                "creationTimestamp",
                datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            )
            try:
                self.store.create(p.key, json.dumps(doc))
            except AlreadyExists:
                raise AlreadyExists(
                    f"{describe(p.info, p.obj)} was created by someone else meanwhile; "
                    "run the command again"
                ) from None
        else:
            old_meta = json.loads(p.current.value).get("metadata", {})
            for field in ("uid", "creationTimestamp"):
                if field in old_meta:
                    meta[field] = old_meta[field]
            try:
                self.store.update(p.key, json.dumps(doc), p.current.revision)
            except RevisionConflict:
                raise Conflict(
                    f"{describe(p.info, p.obj)} was changed by someone else meanwhile; "
                    "run the command again"
                ) from None

    def _clear_foreign_empty_blocks(self, pool: IPPool) -> None:
        """Empty blocks of another size left inside a new pool's range (by a deleted pool)
        are given back first, so old and new blocks can never overlap.  Blocks that still
        hold addresses were refused by ``plan``."""
        for block in load_blocks(self.store):
            net = parse_network(block.cidr)
            if (
                net.version == pool.version
                and network_in(net, pool.network)
                and net.prefixlen != pool.block_size
                and block.empty
            ):
                host = block.host()
                if host is not None:
                    self.ipam.release_affinity(host, block.cidr, pool.version)
                else:
                    with contextlib.suppress(NotFound, RevisionConflict):
                        self.store.delete(keys.block_key(block.cidr, pool.version))

    def _delete(self, p: Planned) -> None:
        if p.info.kind == "IPPool":
            self.delete_pool(p.obj.name)
            return
        if p.info.kind == "Node":  # as calicoctl: the node's addresses and blocks go too
            from tortie.ipam.node_release import release_node

            release_node(self.store, p.obj.name)
        self.store.delete(p.key)

    def delete_pool(self, name: str) -> IPPool:
        """Disable the pool, release its empty affine blocks, then delete it."""
        key = keys.resource_key("ippools", name)
        pool = next((p for p in load_pools(self.store) if p.name == name), None)
        kv = self.store.get(key)
        if pool is None or kv is None:
            raise NotFound(
                f"resource does not exist: IPPool({name}); list pools with 'tortie get ippools'"
            )
        if not pool.disabled:
            doc = json.loads(kv.value)
            doc.setdefault("spec", {})["disabled"] = True
            kv = self.store.update(key, json.dumps(doc), kv.revision)
        self.ipam.release_pool_affinities(pool)
        try:
            self.store.delete(key, kv.revision)
        except RevisionConflict:
            raise Conflict(
                f"IPPool({name}) was changed meanwhile (it is disabled now); run the delete again"
            ) from None
        return pool

    # ----------------------------------------------------------------- read

    def get(self, info: KindInfo, name: str | None, namespace: str | None) -> list[dict[str, Any]]:
        if info.kind == "IPAMConfiguration":
            if name not in (None, "default"):
                raise NotFound(
                    f"resource does not exist: IPAMConfiguration({name}); the only one is 'default'"
                )
            kv = self.store.get(keys.CONFIG_KEY)
            doc = ipamconfig_to_dict(self.ipam.get_config())
            if kv is not None:
                doc.setdefault("metadata", {})["resourceVersion"] = str(kv.revision)
            return [doc]
        if name is not None:
            key = keys.resource_key(
                info.plural, name, (namespace or "default") if info.namespaced else None
            )
            kv = self.store.get(key)
            if kv is None:
                where = f"{namespace or 'default'}/" if info.namespaced else ""
                raise NotFound(
                    f"resource does not exist: {info.kind}({where}{name}); check the name with 'tortie get {info.plural}'"
                )
            found = [kv]
        else:
            prefix = keys.resource_prefix(info.plural, namespace if info.namespaced else None)
            found = self.store.list(prefix)
        out = []
        for kv in found:
            doc = json.loads(kv.value)
            doc = info.to_dict(info.from_dict(doc, strict=False))
            doc.setdefault("metadata", {})["resourceVersion"] = str(kv.revision)
            out.append(doc)
        return out

    # ---------------------------------------------------------------- split

    def split_pool(self, count: int, name: str | None, cidr: str | None) -> list[IPPool]:
        pools = load_pools(self.store)
        if name is not None:
            pool = next((p for p in pools if p.name == name), None)
            what = f"IPPool({name})"
        else:
            net = parse_network(cidr or "", what="--cidr")
            pool = next((p for p in pools if p.network == net), None)
            what = f"IPPool with CIDR {cidr}"
        if pool is None:
            raise NotFound(f"{what} does not exist; list pools with 'tortie get ippools'")
        pool_key = keys.resource_key("ippools", pool.name)
        pool_kv = self.store.get(pool_key)
        if pool_kv is None:
            raise NotFound(f"{what} was deleted meanwhile; list pools with 'tortie get ippools'")
        pool = ippool_from_dict(json.loads(pool_kv.value), strict=False)
        if count < 2 or count & (count - 1):
            raise InvalidInput(
                f"cannot split {what} into {count} pools; the number must be a power of two (2, 4, 8, ...)"
            )
        bits = count.bit_length() - 1
        new_prefix = pool.network.prefixlen + bits
        if new_prefix > pool.block_size:
            raise InvalidInput(
                f"cannot split IPPool({pool.name}) {pool.cidr} into {count}: the parts (/{new_prefix}) "
                f"would be smaller than one block (/{pool.block_size}); split into fewer parts"
            )
        now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        parts = [
            replace(
                pool,
                name=f"split-{pool.name}-{i}",
                cidr=str(sub),
                uid=str(uuid.uuid4()),
                creation_timestamp=now,
                resource_version=None,
            )
            for i, sub in enumerate(pool.network.subnets(prefixlen_diff=bits))
        ]
        for part in parts:
            if self.store.get(keys.resource_key("ippools", part.name)) is not None:
                raise AlreadyExists(
                    f"cannot split IPPool({pool.name}): IPPool({part.name}) already exists; delete or rename it first"
                )
        # The parts cover exactly the old pool: blocks and affinities stay where they are.
        # Create the parts before deleting the pool, so a failure never leaves the range
        # without a pool (the overlap meanwhile is harmless: same range, same block size).
        created: list[str] = []
        try:
            for part in parts:
                key = keys.resource_key("ippools", part.name)
                self.store.create(key, json.dumps(ippool_to_dict(part)))
                created.append(key)
        except AlreadyExists:
            for key in created:
                self.store.delete(key)
            raise AlreadyExists(
                f"cannot split IPPool({pool.name}): a pool named split-{pool.name}-<i> was "
                "created meanwhile; nothing was changed, run the command again"
            ) from None
        try:
            self.store.delete(pool_key, pool_kv.revision)
        except RevisionConflict:
            for key in created:
                self.store.delete(key)
            raise Conflict(
                f"cannot split IPPool({pool.name}): it was changed meanwhile; nothing was "
                "changed, run the command again"
            ) from None
        return parts


def config_with(config: IPAMConfig, strict: bool | None, max_blocks: int | None) -> IPAMConfig:
    """A new IPAM config with the given settings changed (validated like a resource)."""
    from tortie.model.resources import ipamconfig_from_dict

    doc = ipamconfig_to_dict(config)
    spec = doc.setdefault("spec", {})
    if strict is not None:
        spec["strictAffinity"] = strict
    if max_blocks is not None:
        spec["maxBlocksPerHost"] = max_blocks
    return ipamconfig_from_dict(doc)
