"""What each kind adds to the generic resource verbs.  A kind without hooks is stored
whole at ``/calico/resources/v3/projectcalico.org/<plural>/[<ns>/]<name>``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tortie.datastore import keys
from tortie.errors import InvalidInput, NotFound
from tortie.model.ippool import IPPool, PoolIndex, check_pool_change
from tortie.model.resources import ipamconfig_to_dict

if TYPE_CHECKING:
    from tortie.core.block import Block
    from tortie.datastore.base import KV
    from tortie.resources.service import Planned, ResourceService


class KindHooks:
    """The defaults: nothing to add.  One instance per planned request (hooks may keep
    what they loaded for the request, e.g. the pools)."""

    implicit = False  # exists without a stored object (IPAMConfiguration)

    def key(self, obj: Any) -> str | None:
        """The storage key when it is not the resource default."""
        return None

    def check(self, svc: ResourceService, verb: str, obj: Any, current: KV | None) -> None:
        """Refuse ``obj`` for ``verb`` (raise); called for every planned document in order."""

    def before_create(self, svc: ResourceService, obj: Any) -> None:
        """Work to do before the object is first stored."""

    def write(self, svc: ResourceService, p: Planned) -> bool:
        """Store the object in a kind's own way; False: store it whole (the default)."""
        return False

    def delete(self, svc: ResourceService, p: Planned) -> bool:
        """Delete in a kind's own way; False: delete the stored object (the default)."""
        return False

    def get(self, svc: ResourceService, name: str | None) -> list[dict[str, Any]] | None:
        """The documents of ``get`` in a kind's own way; None: the stored objects."""
        return None

    def note(self, obj: Any) -> str:
        """Something the user should know about a written object (added to its line)."""
        return ""


class IPAMConfigHooks(KindHooks):
    """One per cluster, stored in Calico's v2 form at ``/calico/ipam/v2/config``."""

    implicit = True

    def key(self, obj: Any) -> str | None:
        return keys.CONFIG_KEY

    def check(self, svc: ResourceService, verb: str, obj: Any, current: KV | None) -> None:
        if verb == "delete":
            raise InvalidInput(
                "IPAMConfiguration(default) cannot be deleted; change it with 'tortie apply'"
            )

    def write(self, svc: ResourceService, p: Planned) -> bool:
        svc.ipam.set_config(p.obj)
        return True

    def get(self, svc: ResourceService, name: str | None) -> list[dict[str, Any]] | None:
        if name not in (None, "default"):
            raise NotFound(
                f"resource does not exist: IPAMConfiguration({name}); the only one is 'default'"
            )
        kv = svc.store.get(keys.CONFIG_KEY)
        doc = ipamconfig_to_dict(svc.ipam.get_config())
        if kv is not None:
            doc.setdefault("metadata", {})["resourceVersion"] = str(kv.revision)
        return [doc]


class PoolHooks(KindHooks):
    """Overlaps (O(n log n) over the whole request), allowed changes, blocks of another
    size, and deletion that gives the pool's empty blocks back first."""

    def __init__(self) -> None:
        self._pools: dict[str, IPPool] | None = None
        self._index = PoolIndex()
        self._blocks: list[Block] | None = None

    def check(self, svc: ResourceService, verb: str, obj: Any, current: KV | None) -> None:
        if verb == "delete":
            return
        from tortie.ipam.pool_admin import check_blocks_for_new_pool
        from tortie.ipam.pools import load_pools

        if self._pools is None:
            self._pools = {p.name: p for p in load_pools(svc.store)}
            self._index = PoolIndex(self._pools.values())
        pool: IPPool = obj
        old = self._pools.get(pool.name)
        if current is not None and old is not None:
            check_pool_change(old, pool)
        self._index.check(pool)
        if old is None:
            if self._blocks is None:
                from tortie.ipam.usage import load_blocks

                self._blocks = load_blocks(svc.store)
            check_blocks_for_new_pool(pool, self._blocks)
        self._pools[pool.name] = pool
        self._index.put(pool)

    def before_create(self, svc: ResourceService, obj: Any) -> None:
        from tortie.ipam.pool_admin import clear_foreign_empty_blocks

        clear_foreign_empty_blocks(svc.store, svc.ipam, obj)

    def delete(self, svc: ResourceService, p: Planned) -> bool:
        from tortie.ipam.pool_admin import delete_pool

        delete_pool(svc.store, svc.ipam, p.obj.name)
        return True


class NodeHooks(KindHooks):
    """As ``calicoctl delete node``: the node's addresses, endpoints and blocks go too."""

    def delete(self, svc: ResourceService, p: Planned) -> bool:
        from tortie.ipam.node_release import release_node

        release_node(svc.store, p.obj.name)
        return False  # then the Node itself, as any resource


class FelixConfigHooks(KindHooks):
    """Calico's fields that tortie keeps but does not act on are named in the message."""

    def note(self, obj: Any) -> str:
        from tortie.model.felixconfig import not_acted_on

        ignored = not_acted_on(obj)
        return f" (stored, not acted on by tortie: {', '.join(ignored)})" if ignored else ""


HOOKS: dict[str, type[KindHooks]] = {
    "FelixConfiguration": FelixConfigHooks,
    "IPAMConfiguration": IPAMConfigHooks,
    "IPPool": PoolHooks,
    "Node": NodeHooks,
}
