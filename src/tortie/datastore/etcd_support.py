"""Pieces of the etcd client that hold no connection: watch events, endpoint parsing,
base64 and key-range helpers, and the wording of failures.  Standard library only."""

from __future__ import annotations

import base64
import socket
import sys
from urllib.parse import urlsplit

from tortie.core.record import record
from tortie.datastore.etcd_http import RemoteDisconnected
from tortie.errors import DatastoreError, InvalidInput

TYPE_CHECKING = False  # typing stays unimported at run time: plugin start-up
if TYPE_CHECKING:
    from typing import Literal


@record
class WatchEvent:
    """One change under a watched prefix; ``value`` is ``""`` for deletions."""

    type: Literal["PUT", "DELETE"]
    key: str
    value: str
    revision: int


class WatchCompacted(DatastoreError):
    """The watch start revision was compacted away: list again, then watch from there."""

    def __init__(self, message: str, compact_revision: int) -> None:
        super().__init__(message)
        self.compact_revision = compact_revision


@record
class Endpoint:
    url: str
    host: str
    port: int
    https: bool


class Failed(Exception):
    """One attempt on one endpoint failed; ``sent`` when the request may have arrived."""

    def __init__(self, reason: str, sent: bool, permanent: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.sent = sent
        self.permanent = permanent


def b64(text: str | bytes) -> str:
    raw = text.encode() if isinstance(text, str) else text
    return base64.b64encode(raw).decode("ascii")


def text(b64: str) -> str:
    return base64.b64decode(b64).decode("utf-8", "replace")


def prefix_end(prefix: bytes) -> bytes:
    """etcd's range_end for "every key starting with prefix" (``\\0`` means no end)."""
    stripped = prefix.rstrip(b"\xff")
    if not stripped:
        return b"\0"
    return stripped[:-1] + bytes([stripped[-1] + 1])


def common_prefix(prefixes: tuple[str, ...]) -> str:
    """The longest string every prefix starts with (character by character, on purpose)."""
    if not prefixes:
        return ""
    first, last = min(prefixes), max(prefixes)
    n = 0
    while n < min(len(first), len(last)) and first[n] == last[n]:
        n += 1
    return first[:n]


def parse_endpoint(url: str) -> Endpoint:
    parts = urlsplit(url if "://" in url else f"http://{url}")
    try:
        port = parts.port
    except ValueError:
        port = None
        parts = parts._replace(scheme="bad")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidInput(
            f"etcd endpoint {url!r} is not an http:// or https:// URL; "
            "set ETCD_ENDPOINTS to e.g. http://127.0.0.1:2379"
        )
    https = parts.scheme == "https"
    host = parts.hostname
    if ":" in host:
        host = f"[{host}]"
    return Endpoint(
        url=f"{parts.scheme}://{host}" + (f":{port}" if port else ""),
        host=parts.hostname,
        port=port or 2379,
        https=https,
    )


def _describe_tls(exc: BaseException, client_cert: bool) -> tuple[str, bool] | None:
    """``describe`` for ``ssl`` errors (only called once ``ssl`` has been imported)."""
    import ssl

    if isinstance(exc, ssl.SSLCertVerificationError):
        why = exc.verify_message or exc.reason or "verify failed"
        return f"TLS: server certificate not trusted ({why}); check ETCD_CA_CERT_FILE", True
    files = "ETCD_CERT_FILE and ETCD_KEY_FILE"
    if isinstance(exc, ssl.SSLError):
        reason = str(exc.reason or exc).split(" (_ssl.c:")[0].lower().replace("_", " ")
        if "certificate required" in reason or (
            not client_cert and isinstance(exc, ssl.SSLEOFError)
        ):
            return f"TLS: etcd requires a client certificate ({reason}); set {files}", True
        if any(w in reason for w in ("expired", "bad certificate", "unknown ca", "certificate")):
            return (
                f"TLS: etcd rejected the client certificate ({reason}: expired, or not signed "
                f"by a CA etcd trusts); check {files}",
                True,
            )
        if "wrong version number" in reason or "record layer" in reason:
            return f"TLS handshake failed ({reason}): is this endpoint really https?", True
        return f"TLS error ({reason})", False
    return None


def _remote_disconnected(exc: BaseException) -> bool:
    """The connection ended before any answer (ours, or ``http.client``'s in ``watch``)."""
    if isinstance(exc, RemoteDisconnected):
        return True
    client = sys.modules.get("http.client")
    return client is not None and isinstance(exc, client.RemoteDisconnected)


def describe(
    exc: BaseException, timeout: float, client_cert: bool, https: bool
) -> tuple[str, bool]:
    """A short human reason for a transport failure, and whether it is a configuration
    problem that retrying the same endpoint cannot fix (TLS trust or certificates)."""
    if "ssl" in sys.modules:  # no ssl imported: no ssl error to describe
        tls = _describe_tls(exc, client_cert)
        if tls is not None:
            return tls
    if isinstance(exc, TimeoutError):
        return f"timed out after {timeout:.1f} s", False
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused", False
    if _remote_disconnected(exc):
        if not https:
            return "connection closed without an answer (is this an https endpoint?)", False
        return "connection closed without an answer", False
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve host ({exc.strerror})", False
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower(), False
    return (f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__), False


def summary(reasons: dict[str, str]) -> str:
    if not reasons:
        return "no attempt within the time limit"
    return "; ".join(f"{url}: {why}" for url, why in reasons.items())
