"""The one exception tree of tortie, grouped by what the caller must do.

    TortieError
    ├── InvalidInput        the request or resource is wrong: fix it and ask again
    │   └── DecodeError     the text could not be parsed at all (YAML/JSON)
    ├── NotFound            the named object does not exist
    ├── Conflict            someone else changed the object first
    │   ├── AlreadyExists   create-if-absent found the key present
    │   └── RevisionConflict update/delete-if-revision lost the race
    ├── Exhausted           no address/block left where the request allows
    ├── Unavailable         the datastore cannot be reached now: try again later
    ├── StoreUnusable       the datastore cannot serve this (read-only, not a tortie
    │                       store, not a database, full disk): retrying will not help
    └── DatastoreError      the datastore answered with something unusable

Only adapters (CLI, CNI plugins, node agent) turn these into exit codes or CNI error
codes; ``tortie.errors.exit_code`` and ``tortie.cni.errors.cni_code`` are the maps and a
test proves every class has an entry.  This module imports nothing: the CNI plugins load it.
"""

from __future__ import annotations

MAX_MESSAGE = 1000  # characters; a user's value can be megabytes


def bounded(message: str, limit: int = MAX_MESSAGE) -> str:
    """One bounded line: a message longer than ``limit`` keeps its start (the object and
    reason) and its end (the fix), and says how much was cut.  Every error passes here, so
    no user value, however large, is echoed whole."""
    message = message.replace("\n", " ")
    if len(message) <= limit:
        return message
    half = limit // 2
    cut = len(message) - 2 * half
    return f"{message[:half]} …[{cut} characters cut]… {message[-half:]}"


class TortieError(Exception):
    """Base of every error tortie raises on purpose.  ``str(err)`` is one line for users."""

    def __init__(self, message: str) -> None:
        message = bounded(message)
        super().__init__(message)
        self.message = message
        # The address family a request failed for, when the error is about one family
        # (CNI plugins say "failed to request IPv6 addresses: ...").
        self.ip_version: int | None = None

    def __str__(self) -> str:
        return self.message


class InvalidInput(TortieError):
    """The request or resource is invalid; the message names the object, reason and fix."""


class DecodeError(InvalidInput):
    """Input text is not valid YAML/JSON."""


class NotFound(TortieError):
    """The named object does not exist."""


class Conflict(TortieError):
    """A compare-and-swap lost against a concurrent writer."""


class AlreadyExists(Conflict):
    """create-if-absent found the key already present."""


class RevisionConflict(Conflict):
    """update/delete-if-revision found a different revision (or no key)."""


class Exhausted(TortieError):
    """No free address or block where the request allows."""


class Unavailable(TortieError):
    """The datastore could not be reached or kept losing races: try again later."""


class StoreUnusable(TortieError):
    """The datastore is reachable but cannot serve the request, and retrying will not
    help: read-only, someone else's file, not a database, no permission, full disk.
    The message names the cause and the fix."""


class DatastoreError(TortieError):
    """The datastore returned something unusable (corrupt value, unexpected answer)."""


# CLI exit codes: 2 for usage errors (wrong input), 1 for everything else.
EXIT_CODES: dict[type[TortieError], int] = {
    TortieError: 1,
    InvalidInput: 2,
    DecodeError: 2,
    NotFound: 1,
    Conflict: 1,
    AlreadyExists: 1,
    RevisionConflict: 1,
    Exhausted: 1,
    Unavailable: 1,
    StoreUnusable: 1,
    DatastoreError: 1,
}


def exit_code(err: TortieError) -> int:
    """The CLI exit code for an error: the entry of its most specific class."""
    for cls in type(err).__mro__:
        if issubclass(cls, TortieError) and cls in EXIT_CODES:
            return EXIT_CODES[cls]
    return 1
