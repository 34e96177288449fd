"""CNI error codes, and the map from tortie's exception tree to them.

Codes below 100 are the CNI specification's (section "Error"); 100 and above are
tortie's own.  ``cni_code`` gives the entry of an error's most specific class; a test
proves every class in :mod:`tortie.errors` has one.  Standard library only.
"""

from __future__ import annotations

from tortie.errors import (
    AlreadyExists,
    Conflict,
    DatastoreError,
    DecodeError,
    Exhausted,
    InvalidInput,
    NotFound,
    RevisionConflict,
    StoreUnusable,
    TortieError,
    Unavailable,
)

# The specification's codes.
INCOMPATIBLE_VERSION = 1
UNSUPPORTED_FIELD = 2
UNKNOWN_CONTAINER = 3
INVALID_ENVIRONMENT = 4
IO_FAILURE = 5
DECODE_FAILURE = 6
INVALID_NETWORK_CONFIG = 7
TRY_AGAIN_LATER = 11
PLUGIN_NOT_AVAILABLE = 50
PLUGIN_NOT_AVAILABLE_LIMITED = 51

# tortie's own codes (100 and above).
NO_ADDRESSES = 100  # a pool ran dry / no block left where the request allows
OBJECT_MISSING = 101  # something the request needs does not exist (e.g. no pool for the node)
DATASTORE_CORRUPT = 102  # the datastore answered with something unusable
CHECK_FAILED = 103  # CHECK found the attachment's addresses not allocated to it
TORTIE_ERROR = 110  # a TortieError of no more specific class
INTERNAL_ERROR = 999  # a bug: an exception tortie did not raise on purpose

CNI_CODES: dict[type[TortieError], int] = {
    TortieError: TORTIE_ERROR,
    InvalidInput: INVALID_NETWORK_CONFIG,
    DecodeError: DECODE_FAILURE,
    NotFound: OBJECT_MISSING,
    # A compare-and-swap conflict that escaped the retry loop: another writer won.
    Conflict: TRY_AGAIN_LATER,
    AlreadyExists: TRY_AGAIN_LATER,
    RevisionConflict: TRY_AGAIN_LATER,
    Exhausted: NO_ADDRESSES,
    Unavailable: TRY_AGAIN_LATER,
    StoreUnusable: IO_FAILURE,  # permanent: read-only, foreign file, not a database
    DatastoreError: DATASTORE_CORRUPT,
}


def cni_code(err: TortieError) -> int:
    """The CNI error code for an error: the entry of its most specific class."""
    for cls in type(err).__mro__:
        code = CNI_CODES.get(cls)
        if code is not None:
            return code
    return TORTIE_ERROR
