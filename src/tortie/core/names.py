"""Names that become part of a datastore key or a stored record: node names, handles and
allocation attributes.  One set of rules for every edge (CLI, CNI plugins, node agent).

A node name and a handle are single segments of Calico's key layout
(``/calico/ipam/v2/host/<node>/…``, ``/calico/ipam/v2/handle/<handle>``): a ``/`` or a
``.``/``..`` segment would put the record somewhere else, and control characters or
spaces make a key no tool can name.  Each function returns why a value is refused, or
None; the caller words the message for its edge (an ``InvalidInput`` or a CNI error).
Standard library only and no imports: the CNI plugins load this on every call.
"""

from __future__ import annotations

# Kubernetes node names are DNS subdomains (at most 253 characters).
MAX_NODE_NAME = 253
# Handles are <network>.<container id> or an orchestrator's own id; etcd keys stay short.
MAX_HANDLE = 512
MAX_ATTRIBUTE = 1024


def _segment_problem(text: str, limit: int) -> str | None:
    if not text:
        return "is empty"
    if len(text) > limit:
        return f"is longer than {limit} characters"
    if text in (".", ".."):
        return "may not be '.' or '..'"
    for ch in text:
        if ch == "/" or ch.isspace() or not ch.isprintable():
            return f"may not contain {ch!r}"
    return None


def node_name_problem(name: str) -> str | None:
    """Why ``name`` cannot be a node name (a DNS name without '/' or spaces), or None."""
    return _segment_problem(name, MAX_NODE_NAME)


def handle_problem(handle: str) -> str | None:
    """Why ``handle`` cannot be a handle id (one key segment), or None."""
    return _segment_problem(handle, MAX_HANDLE)


def attribute_problem(key: str, value: str) -> str | None:
    """Why ``key=value`` cannot be an allocation attribute, or None.  Keys are words
    (no spaces, '=' or control characters); values are printable text."""
    if not key:
        return "has an empty key"
    if len(key) > MAX_ATTRIBUTE or len(value) > MAX_ATTRIBUTE:
        return f"is longer than {MAX_ATTRIBUTE} characters"
    for ch in key:
        if ch == "=" or ch.isspace() or not ch.isprintable():
            return f"key may not contain {ch!r}"
    for ch in value:
        if not ch.isprintable():
            return f"value may not contain {ch!r}"
    return None
