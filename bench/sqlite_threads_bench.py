"""How the SQLite store serves the threads of one process (issue 11 item 4).

Three ways, each with THREADS threads doing CAS increments on their own key (a CNI ADD
is mostly such writes) while one thread reads about once a millisecond:

  shared+lock   one connection, every call under one process lock (reads wait for writes)
  per-thread    a connection per thread, writes queue in SQLite's busy handler (sleeps)
  per-thread+wl a connection per thread, writes queue on a process write lock (chosen)

Prints writes/s and the worst read latency.  Run: .venv/bin/python bench/sqlite_threads_bench.py
"""

from __future__ import annotations

import contextlib
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator

from tortie.datastore.sqlite import SqliteDatastore

THREADS = 4
WRITES = 150


class _NoLock:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


class _SharedLocked:
    """Every call under one lock: what one shared connection with a lock amounts to."""

    def __init__(self, store: SqliteDatastore) -> None:
        self.store = store
        self.lock = threading.Lock()

    @contextlib.contextmanager
    def use(self) -> Iterator[SqliteDatastore]:
        with self.lock:
            yield self.store


def _run(mode: str, path: str) -> tuple[float, float, float]:
    store = SqliteDatastore(path)
    if mode == "per-thread":
        store._write_lock = _NoLock()  # type: ignore[assignment]
    shared = _SharedLocked(store)
    for t in range(THREADS):
        store.create(f"/n/{t}", "0")
    stop = threading.Event()
    read_worst = [0.0]
    reads = [0]

    def use() -> contextlib.AbstractContextManager[SqliteDatastore]:
        return shared.use() if mode == "shared+lock" else contextlib.nullcontext(store)

    def writer(t: int) -> None:
        for _ in range(WRITES):
            with use() as s:
                kv = s.get(f"/n/{t}")
                assert kv is not None
                s.update(kv.key, str(int(kv.value) + 1), kv.revision)

    def reader() -> None:
        while not stop.is_set():
            started = time.perf_counter()
            with use() as s:
                s.list("/n/")
            read_worst[0] = max(read_worst[0], time.perf_counter() - started)
            reads[0] += 1
            time.sleep(0.001)  # a steady stream of reads, not a busy loop

    threads = [threading.Thread(target=writer, args=(t,)) for t in range(THREADS)]
    r = threading.Thread(target=reader)
    r.start()
    started = time.perf_counter()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    elapsed = time.perf_counter() - started
    stop.set()
    r.join()
    assert all(kv.value == str(WRITES) for kv in store.list("/n/"))
    store.close()
    return THREADS * WRITES / elapsed, read_worst[0], reads[0] / elapsed


def main() -> int:
    print(f"{THREADS} writer threads x {WRITES} CAS increments, one reader thread")
    for mode in ("shared+lock", "per-thread", "per-thread+wl"):
        rates, worst, read_rates = [], [], []
        for _ in range(5):
            with tempfile.TemporaryDirectory() as tmp:
                rate, read, read_rate = _run(mode, f"{tmp}/b.db")
            rates.append(rate)
            worst.append(read)
            read_rates.append(read_rate)
        print(
            f"{mode:14} {statistics.median(rates):8.0f} writes/s  "
            f"{statistics.median(read_rates):8.0f} reads/s  "
            f"worst read {max(worst) * 1000:6.1f} ms"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
