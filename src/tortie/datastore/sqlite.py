"""The embedded datastore: one SQLite file, safe for many processes on one host.

WAL journal (readers never block the writer), a busy timeout so concurrent writers
queue instead of failing, and one short ``BEGIN IMMEDIATE`` transaction per write.
A single row in ``meta`` holds the store-wide revision counter, so revisions behave
like etcd mod revisions (never reused, even after delete and re-create).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from collections.abc import Iterator

from tortie.datastore.base import KV
from tortie.errors import AlreadyExists, NotFound, RevisionConflict, Unavailable

_SCHEMA = """
CREATE TABLE IF NOT EXISTS kv (
    key TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL,
    revision INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    revision INTEGER NOT NULL
);
INSERT OR IGNORE INTO meta (id, revision) VALUES (1, 0);
"""

BUSY_TIMEOUT_MS = 30_000
CHANGE_POLL_SECONDS = 0.1  # wait_for_change: one single-row read per poll


def _prefix_end(prefix: str) -> str:
    """The smallest string greater than every string starting with ``prefix``."""
    return prefix[:-1] + chr(ord(prefix[-1]) + 1) if prefix else "\U0010ffff"


class SqliteDatastore:
    """The protocol of ``tortie.datastore.base`` on one SQLite file."""

    def __init__(self, path: str) -> None:
        self.path = path
        db: sqlite3.Connection | None = None
        try:
            parent = os.path.dirname(os.path.abspath(path))
            os.makedirs(parent, exist_ok=True)
            db = sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
            self._db = db
            self._db.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            mode = self._db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if mode != "wal":
                raise sqlite3.OperationalError(f"cannot switch to WAL journal (got {mode})")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript("BEGIN IMMEDIATE;" + _SCHEMA + "COMMIT;")
        except (OSError, sqlite3.Error) as exc:
            if db is not None:
                db.close()
            raise Unavailable(
                f"datastore {path}: cannot open SQLite file ({exc}); "
                "set SQLITE_PATH to a writable file"
            ) from exc

    def get(self, key: str) -> KV | None:
        try:
            row = self._db.execute(
                "SELECT value, revision FROM kv WHERE key = ?", (key,)
            ).fetchone()
        except sqlite3.Error as exc:
            raise self._unavailable(exc) from exc
        return None if row is None else KV(key, row[0], row[1])

    def list(self, prefix: str) -> list[KV]:
        try:
            rows = self._db.execute(
                "SELECT key, value, revision FROM kv WHERE key >= ? AND key < ? ORDER BY key",
                (prefix, _prefix_end(prefix)),
            ).fetchall()
        except sqlite3.Error as exc:
            raise self._unavailable(exc) from exc
        return [KV(k, v, r) for k, v, r in rows]

    @contextlib.contextmanager
    def _write(self, key: str) -> Iterator[tuple[int, int | None]]:
        """One short write transaction: yields (the next store revision, the key's current
        revision or None); commits when the body returns, rolls back when it raises."""
        try:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                row = self._db.execute("UPDATE meta SET revision = revision + 1 RETURNING revision")
                rev = int(row.fetchone()[0])
                cur = self._db.execute("SELECT revision FROM kv WHERE key = ?", (key,)).fetchone()
                yield rev, None if cur is None else int(cur[0])
                self._db.execute("COMMIT")
            finally:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
        except sqlite3.Error as exc:
            raise self._unavailable(exc) from exc

    def create(self, key: str, value: str) -> KV:
        with self._write(key) as (rev, cur):
            if cur is not None:
                raise AlreadyExists(f"{key} already exists")
            self._db.execute(
                "INSERT INTO kv (key, value, revision) VALUES (?, ?, ?)", (key, value, rev)
            )
        return KV(key, value, rev)

    def update(self, key: str, value: str, revision: int) -> KV:
        with self._write(key) as (rev, cur):
            if cur != revision:
                raise RevisionConflict(f"{key} changed (expected revision {revision})")
            self._db.execute(
                "UPDATE kv SET value = ?, revision = ? WHERE key = ?", (value, rev, key)
            )
        return KV(key, value, rev)

    def delete(self, key: str, revision: int | None = None) -> None:
        with self._write(key) as (_rev, cur):
            if cur is None:
                if revision is None:
                    raise NotFound(f"{key} does not exist")
                raise RevisionConflict(f"{key} was already deleted")
            if revision is not None and cur != revision:
                raise RevisionConflict(f"{key} changed (expected revision {revision})")
            self._db.execute("DELETE FROM kv WHERE key = ?", (key,))

    def current_revision(self) -> int:
        try:
            row = self._db.execute("SELECT revision FROM meta WHERE id = 1").fetchone()
        except sqlite3.Error as exc:
            raise self._unavailable(exc) from exc
        return 0 if row is None else int(row[0])

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

    def _unavailable(self, exc: sqlite3.Error) -> Unavailable:
        return Unavailable(f"datastore {self.path}: SQLite error ({exc}); try again later")

    def close(self) -> None:
        self._db.close()
