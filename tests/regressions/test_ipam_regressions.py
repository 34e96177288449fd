"""Review findings for the IPAM engine: each test reproduces one bug and fails today."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from typing import Any

import pytest

from tortie.core.addr import parse_network
from tortie.datastore import keys
from tortie.datastore.base import KV, Datastore, Writes
from tortie.datastore.memory import MemoryDatastore
from tortie.datastore.sqlite import SqliteDatastore
from tortie.errors import Conflict, DatastoreError, NotFound, TortieError, Unavailable
from tortie.ipam.admin import Admin
from tortie.ipam.check import check
from tortie.ipam.requests import AutoAssignArgs, ReleaseOptions
from tortie.ipam.service import Ipam
from tortie.model.ipam_records import decode_block
from tortie.model.resources import IPAMConfig


def pool_doc(name: str, cidr: str, block_size: int, **spec_extra: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {"cidr": cidr, "blockSize": block_size}
    if spec_extra.get("node_selector") is not None:
        spec["nodeSelector"] = spec_extra["node_selector"]
    if spec_extra.get("disabled"):
        spec["disabled"] = True
    return {
        "apiVersion": "projectcalico.org/v3",
        "kind": "IPPool",
        "metadata": {"name": name},
        "spec": spec,
    }


def create_pool(store: Datastore, name: str, cidr: str, block_size: int) -> None:
    admin = Admin(store)
    admin.execute(admin.plan("create", [pool_doc(name, cidr, block_size)]))


class HookStore:
    """Delegates to ``inner``; ``hooks[(verb, key)]`` runs once, after the real call."""

    def __init__(self, inner: Datastore) -> None:
        self.inner = inner
        self.hooks: dict[tuple[str, str], Callable[[], None]] = {}
        self.before: dict[tuple[str, str], Callable[[], None]] = {}

    def _fire(self, table: dict[tuple[str, str], Callable[[], None]], verb: str, key: str) -> None:
        hook = table.pop((verb, key), None)
        if hook is not None:
            hook()

    def get(self, key: str) -> KV | None:
        return self.inner.get(key)

    def list(self, prefix: str) -> list[KV]:
        return self.inner.list(prefix)

    def current_revision(self) -> int:
        return self.inner.current_revision()

    def txn(self, writes: Writes) -> int:
        return self.inner.txn(writes)

    def wait_for_change(
        self, prefixes: tuple[str, ...], after_revision: int, timeout: float
    ) -> bool:
        return self.inner.wait_for_change(prefixes, after_revision, timeout)

    def create(self, key: str, value: str) -> KV:
        self._fire(self.before, "create", key)
        kv = self.inner.create(key, value)
        self._fire(self.hooks, "create", key)
        return kv

    def update(self, key: str, value: str, revision: int) -> KV:
        self._fire(self.before, "update", key)
        kv = self.inner.update(key, value, revision)
        self._fire(self.hooks, "update", key)
        return kv

    def delete(self, key: str, revision: int | None = None) -> None:
        self._fire(self.before, "delete", key)
        self.inner.delete(key, revision)
        self._fire(self.hooks, "delete", key)

    def close(self) -> None:
        pass


def _ip(cidr_addr: str) -> str:
    return cidr_addr.split("/", 1)[0]


def _block_cidr(addr: str, size: int) -> str:
    return str(parse_network(f"{addr}/{size}", strict=False))


# ---------------------------------------------------------------------------------
# 1. _release_affinity deletes the affinity without a revision: a concurrent re-claim
#    of the same block by the same node loses its (confirmed) affinity.


def test_trim_release_does_not_delete_affinity_of_concurrent_reclaim() -> None:
    inner = MemoryDatastore()
    create_pool(inner, "p", "10.0.0.0/24", 26)
    store = HookStore(inner)
    ipam = Ipam(store)
    first = ipam.auto_assign(AutoAssignArgs("a", "h1", num4=1)).ipv4.addresses[0]
    x = _block_cidr(_ip(first), 26)
    # Give node a a second block in the pool, so emptying X trims it.
    other = next(
        c for c in ("10.0.0.0/26", "10.0.0.64/26", "10.0.0.128/26", "10.0.0.192/26") if c != x
    )
    ipam.assign_ip(str(parse_network(other).network_address + 1), "hy", {}, "a")

    x_first = str(parse_network(x).network_address + 5)

    def concurrent_reclaim() -> None:
        # Another process of node a (e.g. `ipam assign` or a new pod) re-claims X right
        # after the trimming process deleted the block, before it deletes the affinity.
        Ipam(inner).assign_ip(x_first, "h2", {}, "a")

    store.hooks[("delete", keys.block_key(x, 4))] = concurrent_reclaim
    ipam.release_ips([ReleaseOptions(_ip(first))])

    block = Ipam(inner).get_block(x)
    assert block is not None and block.host() == "a"  # the re-claimed block holds h2
    # ... so node a's confirmed affinity for it must still exist.
    assert inner.get(keys.affinity_key("a", x, 4)) is not None, (
        "block affine to a with an allocation but its affinity was deleted"
    )


# ---------------------------------------------------------------------------------
# 2. An empty affine block of a deleted pool is never released; a new pool over the
#    same range with another block size is accepted and both blocks hand out the same
#    address.


def test_stale_empty_block_after_pool_delete_causes_duplicate_address() -> None:
    store = MemoryDatastore()
    create_pool(store, "old", "10.0.0.0/24", 26)
    ipam = Ipam(store)
    addr = _ip(ipam.auto_assign(AutoAssignArgs("a", "h1", num4=1)).ipv4.addresses[0])
    Admin(store).delete_pool("old")  # block non-empty: kept
    ipam.release_ips([ReleaseOptions(addr)])  # now empty, still affine to a
    create_pool(store, "new", "10.0.0.0/24", 28)  # accepted: the old block is empty

    # The emptied block of the deleted pool was given back, so the new pool's /28 blocks
    # are the only ones in the range and no address can have two owners.
    assert ipam.get_block(_block_cidr(addr, 26)) is None
    b = ipam.assign_ip(addr, "hb", {}, "b")  # node b, in a /28 block
    got = ipam.auto_assign(AutoAssignArgs("a", "ha", num4=1)).ipv4.addresses
    assert _ip(b) not in [_ip(g) for g in got], "same address handed to two owners"


# ---------------------------------------------------------------------------------
# 3. decode_block lets IndexError escape for a cidr without a prefix length.


def test_decode_block_cidr_without_prefix_is_datastore_error() -> None:
    key = keys.block_key("10.0.0.0/30", 4)
    value = json.dumps({"cidr": "10.0.0.0", "allocations": [None] * 4, "unallocated": [0, 1, 2, 3]})
    with pytest.raises(DatastoreError):
        decode_block(key, value)


def test_check_reports_block_with_cidr_without_prefix() -> None:
    store = MemoryDatastore()
    store.create(
        keys.block_key("10.0.0.0/30", 4),
        json.dumps({"cidr": "10.0.0.0", "allocations": [None] * 4, "unallocated": [0, 1, 2, 3]}),
    )
    report = check(store)  # IndexError today
    assert any(p.kind == "corrupt-value" for p in report.problems)


# ---------------------------------------------------------------------------------
# 4. ipam check aborts instead of reporting corrupt values.


def test_check_reports_workload_endpoint_with_bad_address() -> None:
    store = MemoryDatastore()
    store.create(
        keys.resource_key("workloadendpoints", "wep1", "default"),
        json.dumps({"metadata": {"name": "wep1"}, "spec": {"node": "a", "ipNetworks": ["bogus"]}}),
    )
    report = check(store)  # raises InvalidInput today: the whole check fails
    assert any(p.kind == "corrupt-value" for p in report.problems)


def test_check_reports_node_that_is_not_an_object() -> None:
    store = MemoryDatastore()
    store.create(keys.resource_key("nodes", "a"), "[]")
    try:
        report = check(store)  # AttributeError today
    except TortieError:
        return
    assert any(p.kind == "corrupt-value" for p in report.problems)


def test_check_with_corrupt_cluster_information_raises_tortie_error() -> None:
    store = MemoryDatastore()
    store.create(keys.resource_key("clusterinformations", "default"), "{not json")
    # A named, user-facing error; never a JSONDecodeError traceback.
    with pytest.raises(DatastoreError, match="clusterinformations/default"):
        check(store)


# ---------------------------------------------------------------------------------
# 5. Strict affinity is read from the block (frozen at creation), not from the config:
#    after strictAffinity is turned off, blocks created under it can never be borrowed.


def test_borrowing_allowed_after_strict_affinity_turned_off() -> None:
    store = MemoryDatastore()
    create_pool(store, "p", "10.0.0.0/28", 28)  # one block
    ipam = Ipam(store)
    ipam.set_config(IPAMConfig(strict_affinity=True))
    assert ipam.auto_assign(AutoAssignArgs("a", "ha", num4=1)).ipv4.addresses
    ipam.set_config(IPAMConfig(strict_affinity=False))
    res = ipam.auto_assign(AutoAssignArgs("b", "hb", num4=1)).ipv4
    assert res.addresses, f"node b could not borrow with strict affinity off: {res.messages}"


# ---------------------------------------------------------------------------------
# 6. An ambiguous block write (applied, but the store reports Unavailable, as etcd does
#    after its total timeout) makes _assign_from_block undo the handle increment: the
#    address is allocated but cannot be released by handle.


class AmbiguousUpdateStore(HookStore):
    def __init__(self, inner: Datastore, prefix: str) -> None:
        super().__init__(inner)
        self.prefix = prefix
        self.armed = True

    def update(self, key: str, value: str, revision: int) -> KV:
        kv = self.inner.update(key, value, revision)
        if self.armed and key.startswith(self.prefix):
            self.armed = False
            raise Unavailable("etcd: timed out after 6.0 s (the write may have been applied)")
        return kv

    def txn(self, writes: Writes) -> int:  # the block write now travels with its handle
        rev = self.inner.txn(writes)
        if self.armed and any(w.key.startswith(self.prefix) for w in writes):
            self.armed = False
            raise Unavailable("etcd: timed out after 6.0 s (the write may have been applied)")
        return rev


def test_ambiguous_block_write_does_not_drop_handle() -> None:
    inner = MemoryDatastore()
    create_pool(inner, "p", "10.0.0.0/24", 26)
    ipam = Ipam(inner)
    ipam.auto_assign(AutoAssignArgs("a", "warm", num4=1))  # block exists: next write is update
    flaky = Ipam(AmbiguousUpdateStore(inner, keys.block_prefix(4)))
    with pytest.raises(Unavailable):
        flaky.auto_assign(AutoAssignArgs("a", "h1", num4=1))
    # The CNI plugin answers the failed ADD with DEL, which releases by handle.
    with contextlib.suppress(NotFound):
        Ipam(inner).release_by_handle("h1")
    leftover = [
        o
        for kv in inner.list(keys.block_prefix(4))
        for o, attr in decode_block(kv.key, kv.value).allocated()
        if attr.handle_id == "h1"
    ]
    assert leftover == [], "address allocated for h1 can no longer be released by handle"


# ---------------------------------------------------------------------------------
# 7. split_pool deletes the original pool without a revision: a concurrent change to the
#    pool (e.g. disabling it) made while the parts are created is lost.


def test_split_pool_does_not_lose_concurrent_pool_update() -> None:
    inner = MemoryDatastore()
    create_pool(inner, "p", "10.0.0.0/24", 26)
    store = HookStore(inner)
    pkey = keys.resource_key("ippools", "p")

    def disable() -> None:
        kv = inner.get(pkey)
        assert kv is not None
        doc = json.loads(kv.value)
        doc["spec"]["disabled"] = True
        inner.update(pkey, json.dumps(doc), kv.revision)

    store.hooks[("create", keys.resource_key("ippools", "split-p-0"))] = disable
    with pytest.raises(Conflict, match="changed meanwhile"):
        Admin(store).split_pool(2, "p", None)
    # Refused as a whole: the (now disabled) pool stands, no part was left behind.
    kv = inner.get(pkey)
    assert kv is not None and json.loads(kv.value)["spec"]["disabled"] is True
    assert inner.list(keys.resource_prefix("ippools")) == [kv]


# ---------------------------------------------------------------------------------
# 8. A lost race between plan and execute surfaces the raw datastore message (a key and
#    a revision), not the resource, the reason and the fix.


def test_apply_conflict_message_names_resource_and_fix(tmp_path: Any) -> None:
    store = SqliteDatastore(str(tmp_path / "s.db"))
    create_pool(store, "p", "10.0.0.0/24", 26)
    admin = Admin(store)
    doc = pool_doc("p", "10.0.0.0/24", 26, node_selector="all()")
    planned = admin.plan("apply", [doc])
    # Someone else applies a change between validation and the write.
    admin2 = Admin(store)
    admin2.execute(admin2.plan("apply", [pool_doc("p", "10.0.0.0/24", 26, disabled=True)]))
    with pytest.raises(TortieError) as err:
        admin.execute(planned)
    msg = str(err.value)
    assert "IPPool(p)" in msg and "again" in msg, msg
