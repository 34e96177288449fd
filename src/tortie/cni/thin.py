"""The thin CNI plugin: hand the call to the node service, or run it here.

A runtime starts one plugin process per pod and call.  This module is all that process
loads when the node agent (``tortie node run``) serves CNI: it imports only C-level
modules already in a ``python3 -I -S`` interpreter (``posix``, ``sys``) plus ``_socket``,
sends stdin and the environment over ``cni.sock`` and prints the answer.

Socket: ``$TORTIE_CNI_SOCKET`` if set (empty or ``none``: never use the service), else
``$TORTIE_RUN_DIR/cni.sock``, else the path written into the launcher at install time.

- No service there (no socket, nobody listening, not allowed to connect): the plugin runs
  in this process exactly as without an agent (``fallback``).
- Connected, but no complete answer (the service died or stalled mid-call): CNI error 11,
  "try again later".  The runtime retries; the service rolls back a failed ADD and the
  next ADD/DEL repairs whatever a killed one left.

Wire format: ``tortie.cni.wire`` (no imports of its own).
"""

import posix
import sys

from tortie.cni.wire import MAGIC, PLUGINS, decode_answer, encode_answer, encode_request

__all__ = ["MAGIC", "PLUGINS", "call", "decode_answer", "encode_answer", "encode_request"]

TRY_AGAIN_LATER = 11
TIMEOUT = 300.0  # longer than any ADD; the runtime's own deadline is usually shorter
CONNECT_TIMEOUT = 5.0  # a service whose backlog stays full this long is stalled
SOCKET_FILE = "cni.sock"  # tortie.rundir.RunDir.cni_socket (not imported: it loads os)
LAUNCHER_SOCKET = "/var/run/tortie/" + SOCKET_FILE


def socket_path(env: dict[bytes, bytes], default: str) -> str | None:
    explicit = env.get(b"TORTIE_CNI_SOCKET")
    if explicit is not None:
        text = explicit.decode()
        return None if text in ("", "none") else text
    run_dir = env.get(b"TORTIE_RUN_DIR")
    if run_dir:
        return run_dir.decode() + "/" + SOCKET_FILE
    return default


def _cni_version(stdin: bytes) -> str:
    """The request's cniVersion, read without a JSON parser (for our own error)."""
    _, found, rest = stdin.partition(b'"cniVersion"')
    value = rest.lstrip(b" \t\r\n:").split(b'"', 2)
    if found and len(value) == 3 and not value[0] and value[1].replace(b".", b"").isdigit():
        return value[1].decode()
    return "1.1.0"


def try_again(stdin: bytes, why: str) -> tuple[int, bytes]:
    msg = why.replace("\\", "\\\\").replace('"', '\\"')
    out = (
        f'{{"cniVersion": "{_cni_version(stdin)}", "code": {TRY_AGAIN_LATER}, "msg": "{msg}", '
        '"details": "the node service did not finish the call; it rolls back or the next '
        'call repairs it"}'
    )
    return 1, out.encode()


def timeval(seconds: float) -> bytes:
    """A ``struct timeval`` (two C longs on Linux) without the ``struct`` module."""
    size = 8 if sys.maxsize > 1 << 32 else 4
    whole = int(seconds)
    micro = int((seconds - whole) * 1e6)
    return whole.to_bytes(size, sys.byteorder) + micro.to_bytes(size, sys.byteorder)


def call(
    path: str, plugin: bytes, env: dict[bytes, bytes], stdin: bytes
) -> tuple[int, bytes] | None:
    """Send one call to the service at ``path``.  None when no service could be reached
    (nothing was sent); otherwise its answer, or error 11 when the answer never came."""
    import _socket

    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        # A socket timeout would not bound it (a non-blocking connect to a full backlog
        # fails at once); SO_SNDTIMEO makes the kernel wait for room that long at most,
        # then fail with EAGAIN.
        sock.setsockopt(_socket.SOL_SOCKET, _socket.SO_SNDTIMEO, timeval(CONNECT_TIMEOUT))
        try:
            sock.connect(path)  # blocking, but a full backlog waits CONNECT_TIMEOUT at most
        except BlockingIOError:  # EAGAIN: the backlog stayed full
            return try_again(
                stdin,
                f"node service at {path} accepted no connection for {CONNECT_TIMEOUT:g} s "
                "(its backlog is full: the agent is stalled or overloaded); check the "
                "agent's log or restart it (tortie node run)",
            )
        except OSError:
            return None  # no socket, nobody listening, or not ours to use: run here
        sock.setsockopt(_socket.SOL_SOCKET, _socket.SO_SNDTIMEO, timeval(0.0))
        sock.settimeout(TIMEOUT)
        chunks = []
        try:
            try:
                sock.sendall(encode_request(plugin, env, stdin))
                sock.shutdown(_socket.SHUT_WR)
            except OSError:
                pass  # the service may have answered already (e.g. a refused request)
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        except OSError as exc:
            # A service that refused a request before reading all of it (too large)
            # answers and closes; the kernel then reports a reset after the answer.
            answer = decode_answer(b"".join(chunks))
            if answer is not None:
                return answer
            return try_again(stdin, f"node service at {path}: {exc.strerror or exc}")
    finally:
        sock.close()
    answer = decode_answer(b"".join(chunks))
    if answer is None:
        return try_again(stdin, f"node service at {path} stopped before answering")
    return answer


def read_stdin() -> bytes:
    chunks = []
    try:
        while chunk := posix.read(0, 65536):
            chunks.append(chunk)
    except OSError:
        pass
    return b"".join(chunks)


def main(plugin: str, module: str, default_socket: str = LAUNCHER_SOCKET) -> int:
    """The launcher's entry: ``plugin`` is ``ipam`` or ``main``; ``module`` the in-process
    fallback (``tortie.cni.ipam_main`` / ``tortie.cni.plugin_main``)."""
    stdin = read_stdin()
    env = posix.environ
    path = socket_path(env, default_socket)
    answer = call(path, plugin.encode(), env, stdin) if path else None
    if answer is None:
        __import__(module)
        code: int = sys.modules[module].main(stdin)
        return code
    code, out = answer
    data = out + b"\n" if out else b""
    while data:
        data = data[posix.write(1, data) :]
    return code


def ipam_plugin() -> int:
    """Console-script entry of ``calico-ipam`` / ``tortie-ipam`` (pip's wrappers)."""
    return main("ipam", "tortie.cni.ipam_main")


def main_plugin() -> int:
    """Console-script entry of ``calico`` / ``tortie-cni`` (pip's wrappers)."""
    return main("main", "tortie.cni.plugin_main")
