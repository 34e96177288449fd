"""Change feeds (``tortie.datastore.feed``) on every backend — memory, SQLite, a real
etcd — and the node agent's cache fed by them.

The property the agent relies on: after any sequence of writes (inside and outside the
followed prefixes, single and in transactions), stream breaks and re-lists, the cache
holds exactly what a fresh read of the followed prefixes returns."""

from __future__ import annotations

import contextlib
import itertools
import socket
import sys
import threading
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .conftest import Backend

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/, for etcd_cluster

from etcd_cluster import EtcdCluster, request
from tortie.datastore.backends import open_datastore
from tortie.datastore.base import KV, Datastore, Write
from tortie.datastore.config import DatastoreSettings
from tortie.datastore.etcd_feed import EtcdFeed
from tortie.datastore.feed import Change, Feed, FeedBroken, PollingFeed, open_feed
from tortie.datastore.memory import MemoryDatastore
from tortie.datastore.sqlite import SqliteDatastore
from tortie.node.cache import NodeCache

_roots = itertools.count()


def followed(root: str) -> tuple[str, ...]:
    return (f"{root}/a/", f"{root}/b/")


def fresh(store: Datastore, prefixes: tuple[str, ...]) -> dict[str, tuple[str, int]]:
    return {kv.key: (kv.value, kv.revision) for p in prefixes for kv in store.list(p)}


def held(cache: NodeCache) -> dict[str, tuple[str, int]]:
    return {k: (kv.value, kv.revision) for k, kv in cache.kv.items()}


def settle(feed: Feed, cache: NodeCache, store: Datastore, timeout: float = 10.0) -> None:
    """Apply changes until the cache equals a fresh read (or fail after ``timeout``)."""
    deadline = time.monotonic() + timeout
    while True:
        cache.apply(feed.changes(0.05))
        if held(cache) == fresh(store, cache.prefixes):
            return
        assert time.monotonic() < deadline, (
            f"cache never caught up: {held(cache)} vs {fresh(store, cache.prefixes)}"
        )


def break_streams(feed: Feed) -> None:
    """Cut the feed's connections under it (etcd: the streams must resume by revision)."""
    if isinstance(feed, EtcdFeed):
        for conn in list(feed._conns):
            if conn.sock is not None:
                with contextlib.suppress(OSError):
                    conn.sock.shutdown(socket.SHUT_RDWR)


def test_only_followed_prefixes_arrive_and_deletions_say_so(store: Datastore) -> None:
    root = f"/feed{next(_roots)}"
    prefixes = followed(root)
    store.create(f"{root}/a/1", "one")
    feed = open_feed(store, prefixes)
    try:
        assert [(kv.key, kv.value) for kv in feed.load()] == [(f"{root}/a/1", "one")]
        assert feed.changes(0.3) == []
        store.create(f"{root}/c/ignored", "x")  # not followed
        store.create(f"{root}/b/2", "two")
        kv = store.get(f"{root}/a/1")
        assert kv is not None
        store.delete(f"{root}/a/1", kv.revision)
        got: list[Change] = []
        deadline = time.monotonic() + 10
        while len(got) < 2 and time.monotonic() < deadline:
            got += feed.changes(0.5)
        assert [(c.key, c.value) for c in got] == [(f"{root}/b/2", "two"), (f"{root}/a/1", None)]
        assert feed.changes(0.3) == []  # nothing more, however long we wait
    finally:
        feed.close()


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    ops=st.lists(
        st.tuples(
            st.sampled_from(["put", "delete", "txn", "break", "reload", "wait"]),
            st.sampled_from(["a/1", "a/2", "b/1", "b/2", "c/1"]),
            st.text(alphabet="xyz", min_size=1, max_size=3),
        ),
        max_size=25,
    )
)
def test_cache_equals_a_fresh_read_after_any_writes_and_reconnects(
    backend: Backend, ops: list[tuple[str, str, str]]
) -> None:
    store = backend.open()
    root = f"/prop{next(_roots)}"
    prefixes = followed(root)
    feed = open_feed(store, prefixes)
    cache = NodeCache(prefixes)
    try:
        cache.replace(feed.load())
        for op, name, value in ops:
            key = f"{root}/{name}"
            cur = store.get(key)
            if op == "put":
                if cur is None:
                    store.create(key, value)
                else:
                    store.update(key, value, cur.revision)
            elif op == "delete" and cur is not None:
                store.delete(key, cur.revision)
            elif op == "txn":  # this key and its sibling together
                other = f"{root}/{name[:-1]}{'2' if name.endswith('1') else '1'}"
                o = store.get(other)
                store.txn(
                    [
                        Write(key, value, cur.revision if cur else 0),
                        Write(other, None, o.revision) if o else Write(other, value, 0),
                    ]
                )
            elif op == "break":
                break_streams(feed)
            elif op == "reload":
                cache.replace(feed.load())
            elif op == "wait":
                cache.apply(feed.changes(0.05))
        settle(feed, cache, store)
    finally:
        feed.close()
        if backend.kind != "memory":
            store.close()


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_polling_lists_only_the_prefix_that_changed(kind: str, tmp_path: Path) -> None:
    store: Datastore = (
        MemoryDatastore() if kind == "memory" else SqliteDatastore(str(tmp_path / "s.db"))
    )
    root = f"/poll{next(_roots)}"
    feed = PollingFeed(store, followed(root), poll=0.01)
    feed.load()
    before = feed.lists
    store.create(f"{root}/c/elsewhere", "x")  # moves the store revision only
    assert feed.changes(0.1) == [] and feed.lists == before
    store.create(f"{root}/b/1", "y")
    assert [c.key for c in feed.changes(1.0)] == [f"{root}/b/1"]
    assert feed.lists == before + 1  # b/ listed again, a/ not


def test_replace_reports_drift_and_apply_ignores_older_changes() -> None:
    cache = NodeCache(("/x/",))
    assert cache.replace([KV("/x/1", "a", 5)]) == ["/x/1"]
    version = cache.version
    assert cache.replace([KV("/x/1", "a", 5)]) == [] and cache.version == version
    assert not cache.apply([Change("/x/1", "old", 3), Change("/x/1", None, 4)])
    assert cache.apply([Change("/x/1", None, 6)]) and cache.kv == {}
    assert cache.replace([KV("/x/2", "b", 7), KV("/y/ignored", "c", 8)]) == ["/x/2"]


@pytest.fixture
def etcd(etcd_single: EtcdCluster) -> Datastore:
    etcd_single.wipe()
    return open_datastore(
        DatastoreSettings(datastore_type="etcdv3", etcd_endpoints=etcd_single.endpoints)
    )


def test_etcd_feed_resumes_across_a_member_restart_without_losing_writes(
    etcd: Datastore, etcd_single: EtcdCluster
) -> None:
    root = f"/restart{next(_roots)}"
    writer_store = etcd
    feed = open_feed(etcd, followed(root))
    cache = NodeCache(followed(root))
    try:
        cache.replace(feed.load())
        writer_store.create(f"{root}/a/1", "before")
        settle(feed, cache, etcd)
        member = etcd_single.members[0]
        member.stop()
        member.start()
        member.wait_healthy()
        writer_store.create(f"{root}/a/2", "after")
        settle(feed, cache, etcd, timeout=20)
        assert isinstance(feed, EtcdFeed) and feed.streams_opened > len(followed(root))
    finally:
        feed.close()
        etcd.close()


def test_etcd_feed_from_a_compacted_revision_asks_for_a_list(
    etcd: Datastore, etcd_single: EtcdCluster
) -> None:
    root = f"/compact{next(_roots)}"
    feed = open_feed(etcd, followed(root))
    try:
        feed.load()
        feed.close()  # streams stop; writes go on without us
        kv = etcd.create(f"{root}/a/1", "x")
        etcd.update(kv.key, "y", kv.revision)
        status, _ = request(
            etcd_single.members[0], "POST", "/v3/kv/compaction", {"revision": str(kv.revision + 1)}
        )
        assert status == 200
        # A feed that resumes from before the compaction must say so (and a load fixes it).
        assert isinstance(feed, EtcdFeed)
        stop = threading.Event()
        with pytest.raises(FeedBroken, match="compacted"):
            feed._stream(feed._generation, stop, f"{root}/a/", kv.revision)
        assert [k.value for k in feed.load()] == ["y"]
    finally:
        feed.close()
        etcd.close()
