"""``txn``: several compare-and-swap writes land together or not at all, on every backend."""

from __future__ import annotations

import threading

import pytest

from tortie.datastore.base import Datastore, TxnConflict, Write


def test_writes_land_together_at_one_revision(store: Datastore) -> None:
    old = store.create("/t/b", "b0")
    gone = store.create("/t/c", "c0")
    rev = store.txn(
        [
            Write("/t/a", "a1", 0),
            Write("/t/b", "b1", old.revision),
            Write("/t/c", None, gone.revision),
        ]
    )
    a, b = store.get("/t/a"), store.get("/t/b")
    assert a is not None and b is not None
    assert (a.value, a.revision, b.value, b.revision) == ("a1", rev, "b1", rev)
    assert store.get("/t/c") is None
    assert store.current_revision() == rev


@pytest.mark.parametrize("broken", ["exists", "stale", "deleted"])
def test_one_failed_compare_writes_nothing(store: Datastore, broken: str) -> None:
    b = store.create("/t/b", "b0")
    c = store.create("/t/c", "c0")
    writes = [
        Write("/t/a", "a1", 0),
        Write("/t/b", "b1", b.revision),
        Write("/t/c", None, c.revision),
    ]
    if broken == "exists":
        store.create("/t/a", "other")
    elif broken == "stale":
        store.update("/t/b", "b-other", b.revision)
    else:
        store.delete("/t/c", c.revision)
    before = {kv.key: (kv.value, kv.revision) for kv in store.list("/t/")}
    with pytest.raises(TxnConflict) as err:
        store.txn(writes)
    after = {kv.key: (kv.value, kv.revision) for kv in store.list("/t/")}
    assert after == before
    # The conflict carries every key as it is now: the caller can plan again.
    now = {
        k: (None if kv is None else (kv.value, kv.revision)) for k, kv in err.value.current.items()
    }
    assert now == {k: before.get(k) for k in ("/t/a", "/t/b", "/t/c")}
    assert "transaction not applied" in str(err.value)


def test_empty_txn_and_duplicate_keys(store: Datastore) -> None:
    store.create("/t/x", "1")
    assert store.txn([]) == store.current_revision()
    with pytest.raises(ValueError, match="twice"):
        store.txn([Write("/t/y", "1", 0), Write("/t/y", "2", 0)])
    assert store.get("/t/y") is None


def test_concurrent_txns_on_one_key_exactly_one_wins(store: Datastore) -> None:
    """Many writers race the same two keys from the same revision: one wins, the rest
    conflict, and the two keys always move together."""
    a = store.create("/t/a", "0")
    b = store.create("/t/b", "0")
    wins: list[int] = []
    lost: list[int] = []
    barrier = threading.Barrier(6)

    def writer(n: int) -> None:
        barrier.wait()
        try:
            store.txn([Write("/t/a", str(n), a.revision), Write("/t/b", str(n), b.revision)])
            wins.append(n)
        except TxnConflict:
            lost.append(n)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(wins) == 1 and len(lost) == 5
    ka, kb = store.get("/t/a"), store.get("/t/b")
    assert ka is not None and kb is not None
    assert ka.value == kb.value == str(wins[0])
