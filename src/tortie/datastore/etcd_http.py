"""A minimal HTTP/1.1 client over ``socket`` for the etcd JSON gateway's unary calls.

``http.client`` costs ~15 ms to import (it pulls in ``email.parser``, ``email.message``
and ``ssl``) and the CNI plugin imports the etcd backend on every pod, so the unary path
(range, put, txn, deleterange, auth) uses this instead.  It does only what etcd needs:

* one kept-alive connection per ``Connection``: ``POST`` with ``Host``, the caller's
  headers and ``Content-Length``, headers and body sent in ONE ``sendall`` (and
  ``TCP_NODELAY``, so nothing waits for Nagle);
* answers with a ``Content-Length`` body, a ``Transfer-Encoding: chunked`` body or a body
  that ends with the connection; ``Connection: close`` (and HTTP/1.0) close afterwards;
* timeouts are socket timeouts (each connect, send and receive waits at most
  ``timeout``), raised as ``TimeoutError``;
* a connection that ends before the first byte of an answer raises ``RemoteDisconnected``
  (a ``ConnectionResetError``, like ``http.client``'s), so the caller can tell "the server
  dropped a kept-alive connection" from a broken answer (``ProtocolError``).

``ssl`` is never imported here: TLS connections get the caller's ``SSLContext``.
"""

from __future__ import annotations

import socket

TYPE_CHECKING = False  # typing stays unimported at run time: plugin start-up
if TYPE_CHECKING:
    import ssl

_MAX_LINE = 65536
_MAX_HEADERS = 100
_RECV_SIZE = 65536


class ProtocolError(Exception):
    """The server's answer is not HTTP we understand, or it stopped in the middle."""


class RemoteDisconnected(ConnectionResetError):
    """The connection ended before any byte of an answer arrived."""


class Response:
    """A complete answer: status, reason, headers (names lower-cased) and body."""

    __slots__ = ("body", "headers", "reason", "status", "will_close")

    def __init__(
        self, status: int, reason: str, headers: dict[str, str], body: bytes, will_close: bool
    ) -> None:
        self.status = status
        self.reason = reason
        self.headers = headers
        self.body = body
        self.will_close = will_close

    def __repr__(self) -> str:
        return f"<Response {self.status} {self.reason} ({len(self.body)} bytes)>"


class Connection:
    """One HTTP/1.1 connection to ``host:port``, kept alive between requests.

    Not thread-safe: one request at a time (the caller pools connections).  After any
    exception the connection is closed and must not be reused."""

    def __init__(
        self,
        host: str,
        port: int,
        timeout: float,
        context: ssl.SSLContext | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.timeout = timeout
        self.context = context
        self.sock: socket.socket | None = None
        name = f"[{host}]" if ":" in host else host
        default = 443 if context is not None else 80
        self._host_header = name if port == default else f"{name}:{port}"
        self._buf = bytearray()
        self._pos = 0

    def __repr__(self) -> str:
        state = "open" if self.sock is not None else "closed"
        return f"<Connection {self._host_header} {state}>"

    def connect(self) -> None:
        """Open the TCP connection (and TLS handshake): errors raise and leave it closed."""
        sock = socket.create_connection((self.host, self.port), self.timeout)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.context is not None:
                sock = self.context.wrap_socket(sock, server_hostname=self.host)
        except BaseException:
            sock.close()
            raise
        self.sock = sock
        self._buf = bytearray()
        self._pos = 0

    def settimeout(self, timeout: float) -> None:
        self.timeout = timeout
        if self.sock is not None:
            self.sock.settimeout(timeout)

    def close(self) -> None:
        sock, self.sock = self.sock, None
        self._buf = bytearray()
        self._pos = 0
        if sock is not None:
            sock.close()

    def request(self, path: str, body: bytes, headers: dict[str, str]) -> Response:
        """``POST path`` with ``body`` and read the whole answer.

        Connects first when not connected.  On any exception the connection is closed."""
        if self.sock is None:
            self.connect()
        try:
            lines = [f"POST {path} HTTP/1.1", f"Host: {self._host_header}"]
            for name, value in headers.items():
                if "\r" in value or "\n" in value:
                    raise ProtocolError(f"invalid value for header {name}")
                lines.append(f"{name}: {value}")
            lines.append(f"Content-Length: {len(body)}\r\n\r\n")
            assert self.sock is not None
            self.sock.sendall("\r\n".join(lines).encode("latin-1") + body)
            return self._read_response()
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------------ reading

    def _fill(self) -> bool:
        """Receive more bytes into the buffer; False at end of stream."""
        assert self.sock is not None
        data = self.sock.recv(_RECV_SIZE)
        if not data:
            return False
        if self._pos:
            del self._buf[: self._pos]
            self._pos = 0
        self._buf += data
        return True

    def _readline(self, what: str) -> bytes:
        """One line without its line ending (``\\r\\n`` or a bare ``\\n``)."""
        while True:
            end = self._buf.find(b"\n", self._pos)
            if end >= 0:
                line = bytes(self._buf[self._pos : end])
                self._pos = end + 1
                return line[:-1] if line.endswith(b"\r") else line
            if len(self._buf) - self._pos > _MAX_LINE:
                raise ProtocolError(f"{what} longer than {_MAX_LINE} bytes")
            if not self._fill():
                if what == "status line" and self._pos == len(self._buf):
                    raise RemoteDisconnected("connection closed without an answer")
                raise ProtocolError(f"connection closed in the middle of the {what}")

    def _read_exact(self, n: int) -> bytes:
        while len(self._buf) - self._pos < n:
            if not self._fill():
                got = len(self._buf) - self._pos
                raise ProtocolError(f"connection closed after {got} of {n} body bytes")
        data = bytes(self._buf[self._pos : self._pos + n])
        self._pos += n
        return data

    def _read_to_end(self) -> bytes:
        while self._fill():
            pass
        data = bytes(self._buf[self._pos :])
        self._pos = len(self._buf)
        return data

    def _read_chunked(self) -> bytes:
        parts: list[bytes] = []
        while True:
            line = self._readline("chunk size")
            size_text = line.split(b";", 1)[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                raise ProtocolError(f"bad chunk size {size_text[:20]!r}") from None
            if size < 0:
                raise ProtocolError(f"bad chunk size {size_text[:20]!r}")
            if size == 0:
                for _ in range(_MAX_HEADERS):  # trailers, up to the empty line
                    if not self._readline("chunked trailer"):
                        return b"".join(parts)
                raise ProtocolError("too many trailer lines")
            parts.append(self._read_exact(size))
            if self._readline("chunk end"):
                raise ProtocolError("chunk not followed by a line end")

    def _read_head(self) -> tuple[str, int, str, dict[str, str]]:
        line = self._readline("status line")
        try:
            version, rest = line.decode("latin-1").split(" ", 1)
            code, _, reason = rest.partition(" ")
            status = int(code)
        except ValueError:
            raise ProtocolError(f"bad status line {line[:40]!r}") from None
        if not version.startswith("HTTP/1.") or not 100 <= status <= 999:
            raise ProtocolError(f"bad status line {line[:40]!r}")
        headers: dict[str, str] = {}
        for _ in range(_MAX_HEADERS + 1):
            raw = self._readline("headers")
            if not raw:
                return version, status, reason.strip(), headers
            name, sep, value = raw.decode("latin-1").partition(":")
            if not sep:
                raise ProtocolError(f"bad header line {raw[:40]!r}")
            key = name.strip().lower()
            value = value.strip()
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        raise ProtocolError(f"more than {_MAX_HEADERS} headers")

    def _read_response(self) -> Response:
        while True:
            version, status, reason, headers = self._read_head()
            if status >= 200:
                break
            # 1xx interim answers (100 Continue, 103 Early Hints): the real one follows.
        tokens = {t.strip().lower() for t in headers.get("connection", "").split(",")}
        will_close = "close" in tokens or (version == "HTTP/1.0" and "keep-alive" not in tokens)
        encoding = headers.get("transfer-encoding", "").lower()
        length = headers.get("content-length")
        if status in (204, 304):
            body = b""
        elif encoding:
            if encoding.split(",")[-1].strip() != "chunked":
                raise ProtocolError(f"unsupported Transfer-Encoding {encoding!r}")
            body = self._read_chunked()
        elif length is not None:
            try:
                n = int(length.split(",")[0])
            except ValueError:
                raise ProtocolError(f"bad Content-Length {length[:20]!r}") from None
            if n < 0:
                raise ProtocolError(f"bad Content-Length {length[:20]!r}")
            body = self._read_exact(n)
        else:
            body = self._read_to_end()
            will_close = True
        if self._pos != len(self._buf):
            will_close = True  # bytes after the answer: nothing we asked for
        if will_close:
            self.close()
        else:
            self._buf = bytearray()  # do not keep a large answer alive between requests
            self._pos = 0
        return Response(status, reason, headers, body, will_close)
