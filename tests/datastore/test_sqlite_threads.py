"""The SQLite store shared by the threads of one process (a threaded node service)."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

from tortie.datastore.sqlite import SqliteDatastore
from tortie.errors import RevisionConflict

THREADS = 8
INCREMENTS = 40


def _increment(store: SqliteDatastore, key: str, times: int, lost: list[int]) -> None:
    done = 0
    while done < times:
        kv = store.get(key)
        assert kv is not None
        try:
            store.update(key, json.dumps(json.loads(kv.value) + 1), kv.revision)
        except RevisionConflict:
            lost.append(1)  # a lost race, retried: never a lost update
            continue
        done += 1


def test_concurrent_cas_increments_from_threads_lose_no_update(tmp_path: Path) -> None:
    store = SqliteDatastore(str(tmp_path / "t.db"))
    store.create("/counter", "0")
    conflicts: list[int] = []
    workers = [
        threading.Thread(target=_increment, args=(store, "/counter", INCREMENTS, conflicts))
        for _ in range(THREADS)
    ]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=60)
    kv = store.get("/counter")
    assert kv is not None and json.loads(kv.value) == THREADS * INCREMENTS
    # every write got its own store revision: 1 create + one per increment
    assert store.current_revision() == 1 + THREADS * INCREMENTS
    store.close()


def test_a_thread_reads_while_another_thread_writes(tmp_path: Path) -> None:
    """Readers have their own connection: a write transaction in progress on one thread
    does not hold up a read on another."""
    store = SqliteDatastore(str(tmp_path / "t.db"))
    store.create("/a", "1")
    in_write = threading.Event()
    release = threading.Event()

    def slow_writer() -> None:
        def change(db: object, rev: int, cur: int | None) -> None:
            in_write.set()
            release.wait(10)

        store._write("/b", change)

    writer = threading.Thread(target=slow_writer)
    writer.start()
    try:
        assert in_write.wait(10)
        started = time.monotonic()
        kv = store.get("/a")
        assert kv is not None and kv.value == "1"
        assert [k.key for k in store.list("/")] == ["/a"]
        assert time.monotonic() - started < 1.0
    finally:
        release.set()
        writer.join(10)
    store.close()
