"""The datastore contract (see ``tortie.datastore.base``), run against every backend."""

from __future__ import annotations

import multiprocessing
import threading
import time
from concurrent.futures import ProcessPoolExecutor

import pytest

from tortie.datastore.base import Datastore
from tortie.errors import AlreadyExists, NotFound, RevisionConflict

from .cas_worker import increment, increment_in_process
from .conftest import Backend


def test_get_missing_is_none(store: Datastore) -> None:
    assert store.get("/calico/nothing") is None


def test_create_then_get(store: Datastore) -> None:
    kv = store.create("/k", '{"a": 1}')
    assert kv.key == "/k" and kv.value == '{"a": 1}' and kv.revision > 0
    assert store.get("/k") == kv


def test_create_twice_already_exists(store: Datastore) -> None:
    store.create("/k", "1")
    with pytest.raises(AlreadyExists):
        store.create("/k", "2")
    got = store.get("/k")
    assert got is not None and got.value == "1"


def test_update_with_right_wrong_and_missing_revision(store: Datastore) -> None:
    kv = store.create("/k", "1")
    kv2 = store.update("/k", "2", kv.revision)
    assert kv2.value == "2" and kv2.revision > kv.revision
    assert store.get("/k") == kv2
    with pytest.raises(RevisionConflict):
        store.update("/k", "3", kv.revision)  # stale
    with pytest.raises(RevisionConflict):
        store.update("/k", "3", kv2.revision + 1000)  # never existed
    with pytest.raises(RevisionConflict):
        store.update("/missing", "3", kv2.revision)
    with pytest.raises(RevisionConflict):
        store.update("/missing", "3", 0)
    assert store.get("/missing") is None
    assert store.get("/k") == kv2


def test_delete_with_right_wrong_and_no_revision(store: Datastore) -> None:
    kv = store.create("/k", "1")
    with pytest.raises(RevisionConflict):
        store.delete("/k", kv.revision + 1000)
    assert store.get("/k") == kv
    store.delete("/k", kv.revision)
    assert store.get("/k") is None
    with pytest.raises(RevisionConflict):
        store.delete("/k", kv.revision)  # already deleted
    store.create("/j", "1")
    store.delete("/j")
    assert store.get("/j") is None
    with pytest.raises(NotFound):
        store.delete("/j")


def test_revisions_grow_store_wide_and_are_never_reused(store: Datastore) -> None:
    a = store.create("/a", "1")
    b = store.create("/b", "1")
    assert b.revision > a.revision
    a2 = store.update("/a", "2", a.revision)
    assert a2.revision > b.revision
    store.delete("/a", a2.revision)
    a3 = store.create("/a", "2")
    assert a3.revision > a2.revision
    seen = {a.revision, b.revision, a2.revision}
    assert a3.revision not in seen
    b2 = store.update("/b", "2", b.revision)
    assert b2.revision > a3.revision


def test_list_prefix_sorted_without_neighbours(store: Datastore) -> None:
    for key in ["/a/b/2", "/a/bc", "/a/b/1", "/a/b", "/a/a", "/a/b/10", "/a/b0", "/a/b/\u00e9"]:
        store.create(key, key)
    assert [kv.key for kv in store.list("/a/b/")] == ["/a/b/1", "/a/b/10", "/a/b/2", "/a/b/\u00e9"]
    assert [kv.key for kv in store.list("/a/b")] == [
        "/a/b", "/a/b/1", "/a/b/10", "/a/b/2", "/a/b/\u00e9", "/a/b0", "/a/bc",
    ]  # fmt: skip
    assert store.list("/a/bd") == []
    assert store.list("/a/")[0].key == "/a/a"
    kvs = store.list("/a/b/")
    assert all(kv == store.get(kv.key) for kv in kvs)


def test_unicode_values_and_keys(store: Datastore) -> None:
    value = '{"note": "h\u00e9llo \u4e16\u754c \U0001f431", "nul": "\\u0000"}'
    kv = store.create("/uni/k\u00e9y", value)
    got = store.get("/uni/k\u00e9y")
    assert got == kv and got.value == value
    assert store.list("/uni/")[0].value == value


def test_not_json_values_are_stored_as_text(store: Datastore) -> None:
    store.create("/bad", "{not json")
    got = store.get("/bad")
    assert got is not None and got.value == "{not json"


def test_large_value(store: Datastore) -> None:
    value = '{"data": "' + "x" * 200_000 + '"}'
    kv = store.create("/big", value)
    got = store.get("/big")
    assert got is not None and got.value == value
    kv2 = store.update("/big", value + " ", kv.revision)
    assert store.list("/big")[0] == kv2


WORKERS = 4
INCREMENTS = 25


def test_concurrent_cas_increments_lose_nothing(backend: Backend, store: Datastore) -> None:
    store.create("/counter", "0")
    if backend.settings is None:  # memory: one process, several threads
        threads = [
            threading.Thread(target=increment, args=(store, "/counter", INCREMENTS))
            for _ in range(WORKERS)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    else:  # real processes, each with its own handle, like concurrent CNI invocations
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(WORKERS, mp_context=ctx) as pool:
            futures = [
                pool.submit(increment_in_process, backend.settings, "/counter", INCREMENTS)
                for _ in range(WORKERS)
            ]
            for f in futures:
                f.result(timeout=120)
    final = store.get("/counter")
    assert final is not None and int(final.value) == WORKERS * INCREMENTS


def test_current_revision_follows_writes(store: Datastore) -> None:
    before = store.current_revision()
    kv = store.create("/k", "1")
    assert store.current_revision() == kv.revision > before
    store.delete("/k")
    assert store.current_revision() > kv.revision


def test_wait_for_change_times_out_without_writes(store: Datastore) -> None:
    store.create("/calico/ipam/v2/host/n1/ipv4/block/10.0.0.0-26", "{}")
    rev = store.current_revision()
    started = time.monotonic()
    assert store.wait_for_change(("/calico/ipam/v2/host/",), rev, timeout=0.3) is False
    assert 0.25 <= time.monotonic() - started < 3


def test_wait_for_change_sees_earlier_and_later_writes(backend: Backend) -> None:
    """A write after the given revision is reported whether it happened before the wait
    started (no change slips between a read and the wait) or during it (another handle)."""
    watcher, writer = backend.open(), backend.open()
    try:
        prefixes = ("/calico/ipam/v2/host/", "/calico/resources/v3/projectcalico.org/nodes/")
        rev = watcher.current_revision()
        kv = writer.create("/calico/resources/v3/projectcalico.org/nodes/n1", "{}")
        assert watcher.wait_for_change(prefixes, rev, timeout=5) is True

        rev = watcher.current_revision()

        def delete_later() -> None:  # its own handle: a store handle belongs to one thread
            late = backend.open()
            try:
                late.delete(kv.key, kv.revision)
            finally:
                late.close()

        timer = threading.Timer(0.3, delete_later)
        timer.start()
        started = time.monotonic()
        assert watcher.wait_for_change(prefixes, rev, timeout=10) is True
        assert time.monotonic() - started < 5
        timer.join()
    finally:
        watcher.close()
        writer.close()


def test_wait_for_change_ignores_other_prefixes_where_it_can(backend: Backend) -> None:
    """memory and etcd filter by prefix; SQLite may wake spuriously (documented)."""
    store = backend.open()
    try:
        rev = store.current_revision()
        store.create("/calico/ipam/v2/assignment/ipv4/block/10.0.0.0-26", "{}")
        changed = store.wait_for_change(("/calico/ipam/v2/host/",), rev, timeout=0.3)
        assert changed is (backend.kind == "sqlite")
    finally:
        store.close()
