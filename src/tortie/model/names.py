"""Names that become parts of datastore keys: one rule, used by every entry point.

A node name or handle id ends up inside a key (``/calico/ipam/v2/host/<node>/…``,
``/calico/ipam/v2/handle/<handle>``): a ``/`` would move it to another place in the layout,
whitespace and control characters break tools that print keys.  Standard library only:
the CNI plugins import this module.
"""

from __future__ import annotations

from tortie.errors import InvalidInput

MAX_NODE_NAME = 253
MAX_HANDLE = 512
QUOTE_PREFIX = 60  # at most this much of a user's value is echoed in a message


def quoted(value: str, limit: int = QUOTE_PREFIX) -> str:
    """``repr`` of at most a short prefix of a user value (with its full length when cut),
    so a huge or binary value never makes a huge message."""
    if len(value) <= limit:
        return repr(value)
    return f"{value[:limit]!r}… ({len(value)} characters)"


def name_problem(name: str, limit: int) -> str | None:
    """Why ``name`` cannot be part of a key, or None when it can."""
    if not name.strip():
        return "it is empty"
    if len(name) > limit:
        return f"it is longer than {limit} characters"
    for ch in name:
        if ch == "/":
            return "it contains '/'"
        if ch.isspace():
            return "it contains whitespace"
        if not ch.isprintable():
            return "it contains a control character"
    return None


def check_node_name(name: str, source: str, fix: str) -> str:
    problem = name_problem(name, MAX_NODE_NAME)
    if problem:
        raise InvalidInput(
            f"node name {quoted(name)} (from {source}) is not valid: {problem}; {fix}"
        )
    return name


def check_handle(handle: str, source: str, fix: str) -> str:
    problem = name_problem(handle, MAX_HANDLE)
    if problem:
        raise InvalidInput(
            f"handle {quoted(handle)} (from {source}) is not valid: {problem}; {fix}"
        )
    return handle


def check_attribute(key: str, source: str) -> str:
    problem = name_problem(key, MAX_HANDLE)
    if problem:
        raise InvalidInput(
            f"attribute name {quoted(key)} (from {source}) is not valid: {problem}; "
            "use a name like 'namespace' or 'pod'"
        )
    return key
