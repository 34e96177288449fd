"""Real processes allocating from one SQLite file at the same time.

Eight spawned processes on four nodes (so several processes share a node's blocks)
allocate about 2,100 addresses from a pool of 2,048; node demands are uneven so the
blocks cannot be split evenly and some node must borrow.  Workers also release whole
handles while others allocate.  Afterwards: no address is held twice, nothing a worker
was given is missing from the store (or held under another handle), nothing it
released is still held, and handles agree with the blocks.
"""

from __future__ import annotations

import multiprocessing
import queue as queue_mod
import time
from pathlib import Path

from tortie.datastore.sqlite import SqliteDatastore

from .conc_worker import WorkerReport, allocate
from .helpers import check_invariants, create_pool

POOL = ("10.0.0.0/21", 26)  # 32 blocks of 64 = 2048 addresses
# (worker, node, net addresses held at the end): 700 + 600 + 500 + 240 = 2040 held,
# which needs 11 + 10 + 8 + 4 = 33 blocks of the pool's 32, so someone borrows.
WORKERS = [
    ("w0", "node-a", 240),
    ("w1", "node-a", 230),
    ("w2", "node-a", 230),
    ("w3", "node-b", 300),
    ("w4", "node-b", 300),
    ("w5", "node-c", 250),
    ("w6", "node-c", 250),
    ("w7", "node-d", 240),
]


def test_processes_allocating_on_one_sqlite_file(tmp_path: Path) -> None:
    path = str(tmp_path / "ipam.db")
    setup = SqliteDatastore(path)
    create_pool(setup, "pool", POOL[0], POOL[1])
    setup.close()

    ctx = multiprocessing.get_context("spawn")
    results: multiprocessing.Queue[WorkerReport] = ctx.Queue()
    start_at = time.time() + 3.0  # after every child has imported tortie
    procs = [
        ctx.Process(target=allocate, args=(path, w, node, target, start_at, results))
        for w, node, target in WORKERS
    ]
    for p in procs:
        p.start()
    reports: list[WorkerReport] = []
    deadline = time.time() + 120
    while len(reports) < len(procs):
        try:
            reports.append(results.get(timeout=max(0.1, deadline - time.time())))
        except queue_mod.Empty:
            break
    for p in procs:
        p.join(timeout=10)
        if p.is_alive():
            p.kill()
    assert len(reports) == len(WORKERS), "a worker did not report back"
    errors = [f"{r.worker}: {r.error}" for r in reports if r.error]
    assert not errors, errors

    total = sum(r.allocations for r in reports)
    assert total >= 2000, total
    # No address was handed to two live handles (across all processes).
    given: dict[str, str] = {}
    for r in reports:
        for handle, addrs in r.held.items():
            for a in addrs:
                assert a not in given, f"{a} given to {given[a]} and {handle}"
                given[a] = handle
    assert len(given) == sum(t for _w, _n, t in WORKERS)

    store = SqliteDatastore(path)
    try:
        state = check_invariants(store)
        # Zero lost allocations: the store holds exactly what workers kept, per handle.
        assert state.held == given
        for r in reports:
            for handle, addrs in r.held.items():
                assert state.handles.get(handle) is not None, f"handle {handle} is missing"
                assert sum(state.handles[handle].values()) == len(addrs)
            for handle in r.released:
                assert handle not in state.handles, f"released handle {handle} still stored"
        # Several processes per node shared the node's blocks, and someone borrowed.
        node_of = {w: n for w, n, _t in WORKERS}
        borrowed = 0
        sharing: dict[str, set[str]] = {}
        for block in state.blocks.values():
            for _ordinal, attr in block.allocated():
                assert attr.handle_id is not None
                worker = attr.handle_id.split("-", 1)[0]
                if block.host() != node_of[worker]:
                    borrowed += 1
                else:
                    sharing.setdefault(block.cidr, set()).add(worker)
        assert borrowed > 0, "the pool was sized to force borrowing, but nobody borrowed"
        assert any(len(ws) > 1 for ws in sharing.values()), "no block was shared by processes"
        assert len(state.blocks) == 32
    finally:
        store.close()
