"""The embedded datastore: one SQLite file, safe for many processes and threads on one host.

WAL journal (readers never block the writer nor wait for it), a busy timeout so writers
of several processes queue instead of failing, and one short ``BEGIN IMMEDIATE``
transaction per write.  A single row in ``meta`` holds the store-wide revision counter,
so revisions behave like etcd mod revisions (never reused, even after delete and
re-create).

Threads: each thread gets its own connection (reads run in parallel and never wait for a
write); writes of one process take a process-wide lock first, so threads queue on it
instead of in SQLite's sleeping busy handler (``bench/sqlite_threads_bench.py``).

Reads never write: opening, recognising the file and reading take no write lock, so a
read-only file, mount or immutable file serves every read.  The first write creates the
directory, the file and the schema (``tortie.datastore.sqlite_file``).
"""

from __future__ import annotations

import _thread  # not threading: the builtin costs no import time on the plugin path
import contextlib
import os
import sqlite3
import time
from collections.abc import Callable, Iterator

from tortie.datastore import sqlite_file as sf
from tortie.datastore.base import KV, Writes, check_writes, conflict_of
from tortie.errors import AlreadyExists, NotFound, RevisionConflict, StoreUnusable, TortieError

CHANGE_POLL_SECONDS = 0.1  # wait_for_change: one single-row read per poll
_Row = tuple[object, ...]
Change = Callable[[sqlite3.Connection, int, "int | None"], None]


def prefix_end(prefix: str) -> str:
    """The smallest string greater than every string starting with ``prefix``."""
    return prefix[:-1] + chr(ord(prefix[-1]) + 1) if prefix else "\U0010ffff"


class SqliteDatastore:
    """The protocol of ``tortie.datastore.base`` on one SQLite file.

    A file that does not exist yet reads as an empty store, and the first write creates
    it.  A missing directory is made by the first use, unless ``reading``: an opener
    that only reads creates nothing, so a path whose directory does not exist is
    ``NotFound`` naming it (a mistyped path should not look like an empty store; with
    ``default_path`` it is simply empty: a fresh machine), and ``read_only`` is True
    while the file does not exist.
    """

    def __init__(self, path: str, *, reading: bool = False, default_path: bool = False) -> None:
        self.path = path
        self.reading = reading
        self.default_path = default_path
        self._local = _thread._local()
        self._opened: list[sqlite3.Connection] = []
        self._opened_lock = _thread.allocate_lock()
        self._write_lock = _thread.allocate_lock()
        self._state = sf.NEW
        self._immutable = False
        self._reader()  # a foreign or broken file is refused now, before any use

    @property
    def read_only(self) -> bool:
        """True when this process can only read the store (read-only file, directory or
        mount, immutable file): callers skip writes that are optional."""
        if self.reading and not os.path.exists(self.path):
            return True
        return self._immutable or not sf.is_writable(self.path)

    # ------------------------------------------------------------------ connections

    def _keep(self, db: sqlite3.Connection) -> sqlite3.Connection:
        self._local.db = db
        with self._opened_lock:
            self._opened.append(db)
        return db

    def _open_existing(self) -> sqlite3.Connection:
        db: sqlite3.Connection | None = None
        try:
            db = sf.connect(self.path)
            self._state = sf.recognise(db, self.path)
        except sqlite3.Error as exc:
            if db is not None:
                db.close()
            if sf.is_cantopen(exc) and not sf.is_writable(self.path):
                return self._open_immutable()
            raise sf.fault(self.path, exc) from exc
        except TortieError:
            if db is not None:
                db.close()
            raise
        return db

    def _open_immutable(self) -> sqlite3.Connection:
        """A read-only mount: SQLite cannot create the WAL index there, and nobody can
        write the file, so it is read as immutable.  An immutable read would not see
        writes still in a WAL left by a crash: that is refused rather than served stale."""
        wal = self.path + "-wal"
        if os.path.exists(wal) and os.path.getsize(wal) > 0:
            raise StoreUnusable(
                f"datastore {self.path} is on a read-only file system with unfinished writes "
                f"in {wal}; open it once where it is writable (any tortie command) to fold "
                "them into the store"
            )
        try:
            db = sf.connect_immutable(self.path)
            self._state = sf.recognise(db, self.path)
        except sqlite3.Error as exc:
            raise sf.fault(self.path, exc) from exc
        self._immutable = True
        return db

    def _reader(self) -> sqlite3.Connection | None:
        """This thread's connection, or None while the file does not exist."""
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is not None:
            return db
        if not os.path.exists(self.path):
            directory = os.path.dirname(os.path.abspath(self.path))
            if os.path.isdir(directory):
                return None
            if not self.reading:
                sf.create_directory(self.path)
                return None
            if self.default_path:
                return None
            raise NotFound(
                f"datastore {self.path}: there is no tortie store at this path (directory "
                f"{directory} does not exist); check SQLITE_PATH, or write to the store "
                "(e.g. 'tortie apply') to create it"
            )
        return self._keep(self._open_existing())

    def _writer(self) -> sqlite3.Connection:
        """This thread's connection with the schema in place (created on first write)."""
        db = self._reader()
        if db is None:
            sf.create_directory(self.path)
            try:
                db = self._keep(sf.connect(self.path, create=True))
                self._state = sf.recognise(db, self.path)
            except sqlite3.Error as exc:
                raise sf.fault(self.path, exc) from exc
        if self._state != sf.CURRENT:
            self._make_schema(db)
        return db

    def _make_schema(self, db: sqlite3.Connection) -> None:
        """Create the tables once.  Several processes may open a new file at the same moment
        (agents of one machine starting together): switching to WAL needs the file to
        itself and SQLite does not wait for that, so a busy answer is retried here, within
        the usual busy timeout, after looking again whether another process did the work."""
        import random
        import time

        deadline = time.monotonic() + sf.BUSY_TIMEOUT_MS / 1000
        while True:
            try:
                self._try_make_schema(db)
                return
            except sqlite3.OperationalError as exc:
                if not sf.is_busy(exc) or time.monotonic() > deadline:
                    raise sf.fault(self.path, exc) from exc
                time.sleep(0.01 + random.random() * 0.05)
                try:
                    self._state = sf.recognise(db, self.path)
                except sqlite3.Error:
                    continue
                if self._state == sf.CURRENT:
                    return

    def _try_make_schema(self, db: sqlite3.Connection) -> None:
        try:
            if self._state == sf.NEW:
                mode = db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
                if mode != "wal":
                    raise sf.fault(
                        self.path, sqlite3.OperationalError(f"no WAL journal (got {mode})")
                    )
            db.execute("BEGIN IMMEDIATE")
            try:
                self._state = sf.recognise(db, self.path)  # again, under the write lock
                for statement in sf.SCHEMA:
                    db.execute(statement)
                db.execute("COMMIT")
            finally:
                if db.in_transaction:
                    db.execute("ROLLBACK")
        except sqlite3.OperationalError:
            raise
        except sqlite3.Error as exc:
            raise sf.fault(self.path, exc) from exc
        self._state = sf.CURRENT

    # ------------------------------------------------------------------ reads

    def _read(self, sql: str, args: tuple[str, ...]) -> list[_Row]:
        db = self._reader()
        if db is None:
            return []
        try:
            if self._state == sf.NEW:  # another process may have made the schema since
                self._state = sf.recognise(db, self.path)
                if self._state == sf.NEW:
                    return []
            return list(db.execute(sql, args).fetchall())
        except sqlite3.Error as exc:
            raise sf.fault(self.path, exc) from exc

    def get(self, key: str) -> KV | None:
        rows = self._read("SELECT value, revision FROM kv WHERE key = ?", (key,))
        return None if not rows else KV(key, str(rows[0][0]), int(str(rows[0][1])))

    def list(self, prefix: str) -> list[KV]:
        rows = self._read(
            "SELECT key, value, revision FROM kv WHERE key >= ? AND key < ? ORDER BY key",
            (prefix, prefix_end(prefix)),
        )
        return [KV(str(k), str(v), int(str(r))) for k, v, r in rows]

    def current_revision(self) -> int:
        rows = self._read("SELECT revision FROM meta WHERE id = 1", ())
        return int(str(rows[0][0])) if rows else 0

    def prefix_stamp(self, prefix: str) -> tuple[int, int]:
        """How many keys are under ``prefix`` and the highest revision among them: any
        write under the prefix changes it (revisions are never reused).  The change feed
        (``tortie.datastore.feed``) lists a prefix again only when this moved."""
        rows = self._read(
            "SELECT count(*), coalesce(max(revision), 0) FROM kv WHERE key >= ? AND key < ?",
            (prefix, prefix_end(prefix)),
        )
        return (int(str(rows[0][0])), int(str(rows[0][1]))) if rows else (0, 0)

    # ------------------------------------------------------------------ writes

    def _write(self, key: str, change: Change) -> int:
        """One short write transaction: ``change(db, revision, current)`` gets the
        connection, the next store revision and the key's current revision (or None);
        commits when it returns, rolls back when it raises.  Returns the new revision.
        On a file system low on space the WAL is folded into the file after each write,
        so it cannot grow until the disk is full; a full disk is met once by truncating
        the WAL and trying again."""
        if getattr(self._local, "atomic", False):  # inside ``atomic()``: its transaction
            db = self._writer()
            try:
                return self._change(db, key, change)
            except sqlite3.Error as exc:
                raise sf.fault(self.path, exc) from exc
        with self._write_lock:
            db = self._writer()
            for attempt in (1, 2):
                try:
                    rev = self._transaction(db, key, change)
                except sqlite3.Error as exc:
                    if not sf.is_full(exc) or attempt == 2 or not self._shrink_wal(db):
                        raise sf.fault(self.path, exc) from exc
                    continue
                if sf.low_on_space(self.path):
                    self._shrink_wal(db)
                return rev
            raise AssertionError("unreachable")

    @staticmethod
    def _change(db: sqlite3.Connection, key: str, change: Change) -> int:
        row = db.execute("UPDATE meta SET revision = revision + 1 RETURNING revision")
        rev = int(row.fetchone()[0])
        found = db.execute("SELECT revision FROM kv WHERE key = ?", (key,)).fetchone()
        change(db, rev, None if found is None else int(found[0]))
        return rev

    @contextlib.contextmanager
    def atomic(self) -> Iterator[None]:
        """Every write in the block is one SQLite transaction: all of them are kept or
        none (an ADD that fails, even for a full disk, or is killed leaves nothing).
        The block holds the store's write lock; reads in it see its own writes."""
        if getattr(self._local, "atomic", False):
            yield
            return
        with self._write_lock:
            db = self._writer()
            try:
                db.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise sf.fault(self.path, exc) from exc
            self._local.atomic = True
            try:
                yield
                db.execute("COMMIT")
            except sqlite3.Error as exc:
                raise sf.fault(self.path, exc) from exc
            finally:
                self._local.atomic = False
                if db.in_transaction:
                    db.execute("ROLLBACK")
        if sf.low_on_space(self.path):
            self._shrink_wal(db)

    @classmethod
    def _transaction(cls, db: sqlite3.Connection, key: str, change: Change) -> int:
        db.execute("BEGIN IMMEDIATE")
        try:
            rev = cls._change(db, key, change)
            db.execute("COMMIT")
            return rev
        finally:
            if db.in_transaction:
                db.execute("ROLLBACK")

    def _shrink_wal(self, db: sqlite3.Connection) -> bool:
        """Copy the WAL into the file and truncate it (best effort: False when that
        cannot be done now), so freed space is usable and the WAL does not keep it."""
        try:
            busy = db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
        except sqlite3.Error:
            return False
        return int(busy) == 0

    def create(self, key: str, value: str) -> KV:
        def change(db: sqlite3.Connection, rev: int, cur: int | None) -> None:
            if cur is not None:
                raise AlreadyExists(f"{key} already exists")
            db.execute("INSERT INTO kv (key, value, revision) VALUES (?, ?, ?)", (key, value, rev))

        return KV(key, value, self._write(key, change))

    def update(self, key: str, value: str, revision: int) -> KV:
        def change(db: sqlite3.Connection, rev: int, cur: int | None) -> None:
            if cur != revision:
                raise RevisionConflict(f"{key} changed (expected revision {revision})")
            db.execute("UPDATE kv SET value = ?, revision = ? WHERE key = ?", (value, rev, key))

        return KV(key, value, self._write(key, change))

    def delete(self, key: str, revision: int | None = None) -> None:
        def change(db: sqlite3.Connection, _rev: int, cur: int | None) -> None:
            if cur is None:
                if revision is None:
                    raise NotFound(f"{key} does not exist")
                raise RevisionConflict(f"{key} was already deleted")
            if revision is not None and cur != revision:
                raise RevisionConflict(f"{key} changed (expected revision {revision})")
            db.execute("DELETE FROM kv WHERE key = ?", (key,))

        self._write(key, change)

    def txn(self, writes: Writes) -> int:
        """Every write in one SQLite transaction at one revision, or none of them."""
        check_writes(writes)
        if not writes:
            return self.current_revision()

        def change(db: sqlite3.Connection, rev: int, _cur: int | None) -> None:
            current: dict[str, KV | None] = {}
            for w in writes:
                row = db.execute("SELECT value, revision FROM kv WHERE key = ?", (w.key,))
                found = row.fetchone()
                current[w.key] = None if found is None else KV(w.key, found[0], int(found[1]))
            conflict = conflict_of(writes, current)
            if conflict is not None:
                raise conflict
            for w in writes:
                if w.value is None:
                    db.execute("DELETE FROM kv WHERE key = ?", (w.key,))
                elif w.revision == 0:
                    db.execute(
                        "INSERT INTO kv (key, value, revision) VALUES (?, ?, ?)",
                        (w.key, w.value, rev),
                    )
                else:
                    db.execute(
                        "UPDATE kv SET value = ?, revision = ? WHERE key = ?", (w.value, rev, w.key)
                    )

        return self._write(writes[0].key, change)

    # ------------------------------------------------------------------ watching

    def wait_for_change(
        self, prefixes: tuple[str, ...], after_revision: int, timeout: float
    ) -> bool:
        """Cheap change detection: poll the store-wide revision (any write counts, so a
        write elsewhere in the store gives a spurious True; callers re-read)."""
        deadline = time.monotonic() + max(0.0, timeout)
        while True:
            if self.current_revision() > after_revision:
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            time.sleep(min(CHANGE_POLL_SECONDS, remaining))

    def close(self) -> None:
        with self._opened_lock:
            opened, self._opened = self._opened, []
        for db in opened:
            with contextlib.suppress(sqlite3.Error):
                db.close()
        self._local = _thread._local()
