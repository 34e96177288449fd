"""One SQLite file as a tortie store: opening it, recognising it, naming its faults.

Kept apart from the key-value operations in ``tortie.datastore.sqlite``:

* **Opening never creates or writes.**  Connections open the file with ``mode=rw``
  (SQLite falls back to read-only on a read-only file), or, on a read-only mount where
  the WAL index cannot be created, ``immutable=1``.  Only the first write creates the
  directory, the file and the schema.
* **Recognising**: a tortie store carries ``application_id`` = ``APPLICATION_ID`` and
  ``user_version`` = ``SCHEMA_VERSION`` (stores made before the stamp have id 0 and
  exactly the ``kv``/``meta`` tables; their first write stamps them).  Any other file is
  someone else's: it is refused before anything touches it.
* **Faults** are told apart: a lock held by another process is ``Unavailable`` (try
  again later); everything retrying cannot fix (not a database, not a tortie store,
  read-only, no permission, full disk, corrupt) is ``StoreUnusable``, naming the cause.
"""

from __future__ import annotations

import os
import sqlite3

from tortie.errors import StoreUnusable, TortieError, Unavailable

APPLICATION_ID = 0x746F7274  # "tort"
SCHEMA_VERSION = 1
BUSY_TIMEOUT_MS = 30_000
# The WAL is truncated to this size after a checkpoint (SQLite leaves it at its peak
# otherwise), so a store on a small file system does not keep the disk full.
JOURNAL_SIZE_LIMIT = 1 << 20
WAL_CHECKPOINT_PAGES = 256  # checkpoint at ~1 MiB of WAL (SQLite's default: 1000 pages)
# Below this much free space the WAL is truncated after every write (a 200 KiB disk).
LOW_SPACE_BYTES = 16 << 20

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS kv (
        key TEXT PRIMARY KEY NOT NULL,
        value TEXT NOT NULL,
        revision INTEGER NOT NULL
    ) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS meta (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        revision INTEGER NOT NULL
    )""",
    "INSERT OR IGNORE INTO meta (id, revision) VALUES (1, 0)",
    f"PRAGMA application_id = {APPLICATION_ID}",
    f"PRAGMA user_version = {SCHEMA_VERSION}",
)
_TABLES = {"kv": ["key", "value", "revision"], "meta": ["id", "revision"]}

# What ``recognise`` finds in a file.
NEW = "new"  # an empty SQLite file (or none): the first write makes the schema
UNSTAMPED = "unstamped"  # a tortie store from before the application_id stamp
CURRENT = "current"


def _uri(path: str, query: str) -> str:
    escaped = path.replace("%", "%25").replace("?", "%3f").replace("#", "%23")
    return f"file:{escaped}?{query}"


def connect(path: str, *, create: bool = False) -> sqlite3.Connection:
    """A connection to an existing file (``create``: make the file).  Usable from any
    thread; the caller keeps one per thread."""
    mode = "rwc" if create else "rw"
    db = sqlite3.connect(
        _uri(path, f"mode={mode}"),
        uri=True,
        timeout=BUSY_TIMEOUT_MS / 1000,
        isolation_level=None,
        check_same_thread=False,
    )
    try:
        db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        db.execute("PRAGMA synchronous = NORMAL")
        db.execute(f"PRAGMA journal_size_limit = {JOURNAL_SIZE_LIMIT}")
        db.execute(f"PRAGMA wal_autocheckpoint = {WAL_CHECKPOINT_PAGES}")
    except sqlite3.Error:
        db.close()
        raise
    return db


def connect_immutable(path: str) -> sqlite3.Connection:
    """A read-only connection that needs no WAL index: for files nobody can write (a
    read-only mount), where SQLite cannot create the ``-shm`` file."""
    return sqlite3.connect(
        _uri(path, "mode=ro&immutable=1"), uri=True, isolation_level=None, check_same_thread=False
    )


def recognise(db: sqlite3.Connection, path: str) -> str:
    """``NEW``, ``UNSTAMPED`` or ``CURRENT``; ``StoreUnusable`` for anyone else's file."""
    app_id = int(db.execute("PRAGMA application_id").fetchone()[0])
    version = int(db.execute("PRAGMA user_version").fetchone()[0])
    tables = {
        str(name)
        for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        if not str(name).startswith("sqlite_")
    }
    if app_id == APPLICATION_ID:
        if version > SCHEMA_VERSION:
            raise StoreUnusable(
                f"datastore {path}: made by a newer tortie (schema {version}, this one "
                f"reads {SCHEMA_VERSION}); upgrade tortie"
            )
        return CURRENT if tables else NEW
    if app_id == 0 and not tables and version == 0:
        return NEW
    if (
        app_id == 0
        and tables == set(_TABLES)
        and all(
            [row[1] for row in db.execute(f"PRAGMA table_info({name})")] == columns
            for name, columns in _TABLES.items()
        )
    ):
        return UNSTAMPED
    shown = ", ".join(sorted(tables)[:5]) or "none"
    raise StoreUnusable(
        f"datastore {path}: this SQLite file is not a tortie store (application id "
        f"{app_id:#x}, tables: {shown}); tortie leaves it untouched: set SQLITE_PATH to a "
        "tortie store or to a new file"
    )


def is_writable(path: str) -> bool:
    """Whether this process may write the file (and its directory, for the WAL files)."""
    if not os.path.exists(path):
        return True
    directory = os.path.dirname(os.path.abspath(path))
    return os.access(path, os.W_OK) and os.access(directory, os.W_OK)


def read_only_reason(path: str) -> str:
    """Why a store cannot be written, as far as the file system tells."""
    directory = os.path.dirname(os.path.abspath(path))
    try:
        if os.statvfs(directory).f_flag & os.ST_RDONLY:
            return "its file system is mounted read-only"
    except OSError:
        pass
    if os.path.exists(path) and not os.access(path, os.W_OK):
        return "the file is not writable: permissions or the immutable attribute"
    if not os.access(directory, os.W_OK):
        return f"directory {directory} is not writable"
    return "SQLite opened it read-only"


def low_on_space(path: str) -> bool:
    """Whether the store's file system has less than ``LOW_SPACE_BYTES`` free."""
    try:
        st = os.statvfs(os.path.dirname(os.path.abspath(path)))
    except OSError:
        return False
    return st.f_bavail * st.f_frsize < LOW_SPACE_BYTES


def is_busy(exc: sqlite3.Error) -> bool:
    name = str(getattr(exc, "sqlite_errorname", ""))
    return name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED"))


def is_cantopen(exc: sqlite3.Error) -> bool:
    return str(getattr(exc, "sqlite_errorname", "")).startswith("SQLITE_CANTOPEN")


def is_full(exc: sqlite3.Error) -> bool:
    return str(getattr(exc, "sqlite_errorname", "")) == "SQLITE_FULL"


def fault(path: str, exc: sqlite3.Error) -> TortieError:
    """The error to raise for a SQLite failure on ``path``: retryable or not, with its cause."""
    name = str(getattr(exc, "sqlite_errorname", ""))
    where = f"datastore {path}"
    if is_busy(exc):
        return Unavailable(
            f"{where}: locked by another process for longer than "
            f"{BUSY_TIMEOUT_MS // 1000} s ({exc}); try again later"
        )
    if name.startswith("SQLITE_READONLY") or (not is_writable(path) and "write" in str(exc)):
        return StoreUnusable(
            f"{where} is read-only ({read_only_reason(path)}); this command must write to "
            "the store: make it writable, or run the command where the store is writable"
        )
    if name == "SQLITE_NOTADB":
        return StoreUnusable(
            f"{where}: the file is not a SQLite database; set SQLITE_PATH to a tortie store "
            "or to a new file"
        )
    if name == "SQLITE_FULL":
        return StoreUnusable(
            f"{where}: the file system is full (nothing was written); free space and try again"
        )
    if name.startswith("SQLITE_CORRUPT"):
        return StoreUnusable(
            f"{where}: the file is corrupt ({exc}); restore it from a backup or an export"
        )
    if name.startswith(("SQLITE_CANTOPEN", "SQLITE_PERM", "SQLITE_AUTH")):
        directory = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(directory):
            reason = f"directory {directory} does not exist"
        elif os.path.isdir(path):
            reason = "it is a directory"
        elif not os.access(directory, os.R_OK | os.X_OK) or (
            os.path.exists(path) and not os.access(path, os.R_OK)
        ):
            reason = "permission denied"
        else:
            reason = str(exc)
        return StoreUnusable(f"{where}: cannot open the file ({reason}); check SQLITE_PATH")
    return StoreUnusable(f"{where}: SQLite error {name or type(exc).__name__} ({exc})")


def create_directory(path: str) -> None:
    """Make the store's directory on the first write, saying where when it cannot."""
    directory = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(directory, exist_ok=True)
    except OSError as exc:
        raise StoreUnusable(
            f"datastore {path}: cannot create its directory {directory} "
            f"({exc.strerror}); set SQLITE_PATH to a file in a writable directory"
        ) from None
