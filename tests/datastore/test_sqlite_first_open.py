"""Several processes writing a store that does not exist yet (node agents of one machine
starting together): every one of them succeeds, and the store is made once."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

from tortie.datastore.sqlite import SqliteDatastore


def _write(path: str, i: int) -> None:
    store = SqliteDatastore(path)
    try:
        for _ in range(3):  # what an agent's start does: read, then write
            store.get("/calico/k")
            store.list("/calico/")
            store.current_revision()
        store.create(f"/calico/k{i}", "1")
    finally:
        store.close()


def test_concurrent_first_writes_to_a_new_file(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("fork")
    for round_ in range(20):
        path = str(tmp_path / f"new{round_}.db")
        procs = [ctx.Process(target=_write, args=(path, i)) for i in range(8)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(60)
        assert [p.exitcode for p in procs] == [0] * 8, f"round {round_}"
        store = SqliteDatastore(path)
        try:
            assert len(store.list("/calico/")) == 8
        finally:
            store.close()
