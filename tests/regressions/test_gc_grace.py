"""Issue 10 defect 11: CNI GC and ADDs still running.  The runtime's list of live
containers can be taken before an ADD finishes; GC must not take that ADD's address."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "cni"))
from cni_helpers import add_pool, allocated, call, netconf

from tortie.datastore import keys
from tortie.datastore.base import KV, Writes
from tortie.datastore.memory import MemoryDatastore
from tortie.model.ipam_records import decode_handle

DUAL = {"assign_ipv6": "true"}
NO_CONTAINER = {"CNI_CONTAINERID": "", "CNI_NETNS": "", "CNI_IFNAME": ""}


def _store() -> MemoryDatastore:
    store = MemoryDatastore()
    add_pool(store, "pool4", "10.66.0.0/16")
    add_pool(store, "pool6", "fd00:66::/48")
    return store


def _gc(conf: dict[str, Any], live: list[str], grace: object = None) -> dict[str, Any]:
    ipam = dict(conf["ipam"])
    if grace is not None:
        ipam["leak_grace_period"] = grace
    attachments = [{"containerID": c, "ifname": "eth0"} for c in live]
    return {**conf, "ipam": ipam, "cni.dev/valid-attachments": attachments}


def test_gc_keeps_an_allocation_younger_than_the_grace_period() -> None:
    store = _store()
    conf = netconf("1.1.0", ipam=DUAL)
    assert call(store, "ADD", conf, CNI_CONTAINERID="new")[0] == 0
    # the runtime listed its containers before "new" was attached: the default grace
    # period (15 minutes, as Calico's) keeps the address
    assert call(store, "GC", _gc(conf, []), **NO_CONTAINER) == (0, None)
    assert set(allocated(store).values()) == {"net1.new"}
    # a short grace period expires, then the leak is collected
    assert call(store, "GC", _gc(conf, [], "1s"), **NO_CONTAINER) == (0, None)
    assert set(allocated(store).values()) == {"net1.new"}
    time.sleep(1.1)
    assert call(store, "GC", _gc(conf, [], "1s"), **NO_CONTAINER) == (0, None)
    assert allocated(store) == {} and store.list(keys.handle_prefix()) == []


class _GcDuringAdd(MemoryDatastore):
    """Runs one CNI GC (on the same store) just before ADD's block write (which now carries
    the handle in the same transaction)."""

    def __init__(self, gc_conf: dict[str, Any]) -> None:
        super().__init__()
        self.gc_conf = gc_conf
        self.fired = False

    def _maybe_gc(self, key: str) -> None:
        if not self.fired and "/block/" in key and "/assignment/" in key:
            self.fired = True
            assert call(self, "GC", self.gc_conf, **NO_CONTAINER) == (0, None)

    def update(self, key: str, value: str, revision: int) -> KV:
        self._maybe_gc(key)
        return super().update(key, value, revision)

    def txn(self, writes: Writes) -> int:  # the handle and block land together now
        for w in writes:
            self._maybe_gc(w.key)
        return super().txn(writes)


def test_gc_during_an_add_does_not_orphan_its_address() -> None:
    conf = netconf("1.1.0")
    store = _GcDuringAdd(_gc(conf, []))
    add_pool(store, "pool4", "10.66.0.0/16")
    code, out = call(store, "ADD", conf, CNI_CONTAINERID="inflight")
    assert code == 0 and out is not None and store.fired
    # the address ADD returned is allocated and its handle still counts it, so DEL
    # can release it
    assert set(allocated(store).values()) == {"net1.inflight"}
    kv = store.get(keys.handle_key("net1.inflight"))
    assert kv is not None and decode_handle(kv.key, kv.value).total == 1
    assert call(store, "DEL", conf, CNI_CONTAINERID="inflight") == (0, None)
    assert allocated(store) == {}


def test_grace_period_is_checked() -> None:
    store = _store()
    conf = netconf("1.1.0")
    for bad in ("soon", "-5s", -1, True, "15"):
        code, out = call(store, "GC", _gc(conf, [], bad), **NO_CONTAINER)
        assert code == 1 and out is not None and out["code"] == 7, bad
        assert "leak_grace_period" in out["msg"]
