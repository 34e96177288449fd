"""The node service: the CNI plugins' calls, run warm inside ``tortie node run``.

The thin plugins (``tortie.cni.thin``) send each call here over ``cni.sock`` (wire
format: ``tortie.cni.wire``).  The call runs through the same edge as in a plugin process
(``tortie.cni.edge.run_plugin``, the same verb handlers, errors and logs), with what a
fresh process cannot keep: open datastore connections (``tortie.cni.stores``), a group
commit per datastore with warm blocks and the netlink dataplane.  ``tortie.cni.host``
assembles all of it for ``tortie node run`` and ``tortie node serve-cni``.

- Only callers with uid 0 (or one the agent was told to trust) are served; others get a
  CNI error and a log line naming their pid and uid.  The socket is mode 0600, or 0666
  when other uids are trusted (they must be able to connect; peer credentials decide).
- Calls go through ``tortie.cni.calls.CallQueue``: first come, first served per
  container, one worker per container at a time, calls whose client hung up dropped
  before they start, workers stranded in a pod's namespace retired.
- A request is read with a deadline and a size limit: garbage, a huge payload or a
  client that never finishes gets a one-line CNI error and holds no one else up.
- ``stop``: stop accepting, finish reading, drain the queue (bounded); the stores are
  closed by the caller only when ``stop`` says nothing runs any more.
"""

from __future__ import annotations

import itertools
import os
import select
import socket as _socket
import struct
import threading
import time
from collections.abc import Callable, Mapping

from tortie.cni import errors as codes
from tortie.cni import ipam_plugin, main_plugin
from tortie.cni.calls import CallQueue, QueuedCall
from tortie.cni.edge import Backends, Plugin, run_plugin
from tortie.cni.protocol import LATEST_VERSION, error_json
from tortie.cni.stores import Stores, settings_key
from tortie.cni.wire import EMPTY, NOT_OURS, BadRequest, could_be_request, decode_request
from tortie.cni.wire import encode_answer as encode_answer
from tortie.datastore.config import DatastoreSettings
from tortie.errors import Conflict

TYPE_CHECKING = False
if TYPE_CHECKING:
    import logging

    from tortie.cni.pod_dataplane import PodDataplane
    from tortie.datastore.base import Datastore

__all__ = ["BadRequest", "CniService", "Stores", "netlink_dataplane", "settings_key"]

MAX_REQUEST = 1 << 20  # bytes: a network configuration with prevResult is a few KiB
READ_TIMEOUT = 5.0  # seconds for a client to send its whole request
DRAIN_TIMEOUT = 20.0  # seconds ``stop`` waits for queued and running calls
WORKERS = 32  # calls run at once (a batch of ADDs is written by one of them)
VERBS = ("ADD", "DEL", "CHECK", "GC", "STATUS", "VERSION")
PLUGINS: Mapping[bytes, Plugin] = {b"ipam": ipam_plugin.PLUGIN, b"main": main_plugin.PLUGIN}
Observer = Callable[[str, bool, float], None]  # (verb, ok, seconds) of every call
Runner = Callable[..., tuple[int, str]]  # run_plugin's signature


def parse_request(data: bytes) -> tuple[Plugin, dict[str, str], bytes]:
    name, env, stdin = decode_request(data)
    return PLUGINS[name], env, stdin


def netlink_dataplane(log: logging.Logger | None) -> PodDataplane | None:
    """The pyroute2 pod dataplane when available; None keeps ``ip -batch``."""
    try:
        from tortie.dataplane import netlink_pod
    except ImportError as exc:  # pyroute2 missing from this installation
        if log is not None:
            log.warning("netlink pod dataplane unavailable (%s); using iproute2", exc)
        return None
    return netlink_pod


def client_gone(conn: _socket.socket) -> bool:
    """True when the client closed its end entirely (a client waiting for its answer
    has only shut down writing: POLLHUP comes only with both directions shut)."""
    poller = select.poll()
    poller.register(conn.fileno(), select.POLLHUP | select.POLLERR)
    return any(ev & (select.POLLHUP | select.POLLERR) for _, ev in poller.poll(0))


class CniService:
    """Serve CNI calls on a UNIX socket until ``stop``."""

    def __init__(
        self,
        path: str,
        stores: Stores,
        *,
        log: logging.Logger | None = None,
        observe: Observer | None = None,
        trusted_uids: tuple[int, ...] = (0,),
        dataplane: PodDataplane | None = None,
        open_store: Callable[[DatastoreSettings], Datastore] | None = None,
        workers: int = WORKERS,
        runner: Runner = run_plugin,
    ) -> None:
        self.path = path
        self.stores = stores
        self.log = log
        self.observe = observe
        self.trusted_uids = trusted_uids
        self.open_store = open_store or stores.open
        self.backends = Backends(allocator=stores.allocator, dataplane=dataplane)
        self.runner = runner
        self.queue = CallQueue(workers, log)
        self._listener: _socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._reading = 0  # connections whose request is still being read
        self._idle = threading.Condition()
        self._anonymous = itertools.count()
        self.served = 0

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        if os.path.exists(self.path):
            probe = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
            try:
                probe.connect(self.path)
            except OSError:
                os.unlink(self.path)  # left by a service that is gone
            else:
                raise Conflict(
                    f"another node service already answers on {self.path}; stop it, or give "
                    "this agent its own TORTIE_RUN_DIR"
                )
            finally:
                probe.close()
        listener = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
        listener.bind(self.path)
        # 0600 keeps everyone but root (and this uid) from connecting at all.  A trusted
        # uid must be able to connect, so then anyone may, and the peer credentials
        # checked on every call are what refuses the others.
        opened = set(self.trusted_uids) - {0, os.geteuid()}
        os.chmod(self.path, 0o666 if opened else 0o600)
        listener.listen(256)
        listener.settimeout(0.2)
        self._listener = listener
        self._thread = threading.Thread(target=self._accept_loop, name="cni-service", daemon=True)
        self._thread.start()
        if self.log is not None:
            self.log.info("serving CNI on %s", self.path)

    def stop(self, drain: float = DRAIN_TIMEOUT) -> bool:
        """Stop accepting and remove the socket; finish reading the requests already
        accepted; let queued and running calls finish (``drain`` seconds at most; calls
        not started by then get CNI error 11).  True when no call runs any more (the
        stores may be closed); False when some still run after the bound."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join()
        if self._listener is not None:
            self._listener.close()
            self._listener = None
            if os.path.exists(self.path):
                os.unlink(self.path)
        deadline = time.monotonic() + drain
        with self._idle:
            while self._reading and time.monotonic() < deadline:
                self._idle.wait(0.1)
        running = self.queue.close(max(0.0, deadline - time.monotonic()))
        if self.log is not None:
            self.log.info("CNI service stopped: served %d calls", self.served)
            if running:
                self.log.warning(
                    "%d CNI calls still run after the %g s drain; their stores stay open",
                    running,
                    drain,
                )
        return running == 0

    def _accept_loop(self) -> None:
        assert self._listener is not None
        while not self._stopping.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                if self._stopping.is_set():
                    return
                time.sleep(0.05)  # e.g. out of file descriptors: do not spin
                continue
            with self._idle:
                self._reading += 1
            threading.Thread(target=self._receive, args=(conn,), daemon=True).start()

    # ------------------------------------------------------------------ one call

    def _receive(self, conn: _socket.socket) -> None:
        """Read and check one request, then queue it; the worker answers and closes."""
        queued = False
        try:
            conn.settimeout(READ_TIMEOUT)
            queued = self._admit(conn)
        except OSError as exc:  # the client went away (e.g. killed by its runtime)
            if self.log is not None:
                self.log.info("CNI call: client connection closed early: %s", exc)
        finally:
            if not queued:
                conn.close()
            with self._idle:
                self._reading -= 1
                self._idle.notify_all()

    def _admit(self, conn: _socket.socket) -> bool:
        began = time.monotonic()
        pid, uid, _ = struct.unpack(
            "3i", conn.getsockopt(_socket.SOL_SOCKET, _socket.SO_PEERCRED, 12)
        )
        if uid not in self.trusted_uids:
            self._warn("refused a CNI call from pid %d uid %d (not trusted)", pid, uid)
            out = error_json(
                LATEST_VERSION,
                codes.IO_FAILURE,
                f"the node service at {self.path} does not serve uid {uid}; run the plugin "
                "as root or add the uid to TORTIE_CNI_TRUSTED_UIDS",
            )
            conn.sendall(encode_answer(1, out.encode()))
            return False
        try:
            plugin, env, stdin = parse_request(self._read(conn))
        except BadRequest as exc:
            if str(exc) != EMPTY:  # a connect-and-close probe is not worth a warning
                self._warn("bad CNI request: %s", exc)
            self._count("invalid", 1, began)
            out = error_json(LATEST_VERSION, codes.DECODE_FAILURE, str(exc))
            conn.sendall(encode_answer(1, out.encode()))
            return False
        command = env.get("CNI_COMMAND", "")
        verb = command if command in VERBS else "invalid"
        cid = env.get("CNI_CONTAINERID", "")
        key: object = cid or ("-", next(self._anonymous))  # no container: no order to keep
        label = f"{verb} of container {cid or '-'}"

        def run() -> None:
            # Each worker keeps its datastore connection (SQLite opens one per thread), so
            # the connections stay bounded however many calls come and go.
            try:
                code, out = self.runner(
                    plugin, stdin, env, open_store=self.open_store, backends=self.backends
                )
            except Exception as exc:  # run_plugin answers every error; a runner might not
                code, out = (
                    1,
                    error_json(
                        LATEST_VERSION, codes.INTERNAL_ERROR, f"internal error: {exc}"[:1000]
                    ),
                )
            self.served += 1
            # Counted before the answer goes out: whoever got the answer sees it counted.
            self._count(verb, code, began)
            self._answer(conn, code, out)
            if code != 0:
                self._warn("CNI %s failed: %s", label, out[:300])

        def abandon() -> None:
            self._answer(conn, 1, self._try_again("the node service is stopping"))

        def gone() -> bool:
            if client_gone(conn):
                conn.close()
                return True
            return False

        call = QueuedCall(key, run, abandon, gone, label)
        if not self.queue.submit(call):
            conn.sendall(encode_answer(1, self._try_again("the node service is stopping").encode()))
            return False
        return True

    def _answer(self, conn: _socket.socket, code: int, out: str) -> None:
        try:
            conn.settimeout(30.0)
            conn.sendall(encode_answer(code, out.encode()))
        except OSError as exc:
            if self.log is not None:
                self.log.info("CNI call: client connection closed early: %s", exc)
        finally:
            conn.close()

    def _try_again(self, why: str) -> str:
        return error_json(
            LATEST_VERSION, codes.TRY_AGAIN_LATER, f"{why}; the call did not run, try again"
        )

    def _read(self, conn: _socket.socket) -> bytes:
        deadline = time.monotonic() + READ_TIMEOUT
        chunks: list[bytes] = []
        size = 0
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise BadRequest(f"request not complete after {READ_TIMEOUT:g} s; giving up")
            conn.settimeout(left)
            try:
                chunk = conn.recv(65536)
            except TimeoutError:
                raise BadRequest(
                    f"request not complete after {READ_TIMEOUT:g} s; giving up"
                ) from None
            if not chunk:
                return b"".join(chunks)
            size += len(chunk)
            if size > MAX_REQUEST:
                raise BadRequest(f"request larger than {MAX_REQUEST} bytes; refused")
            chunks.append(chunk)
            if not could_be_request(b"".join(chunks)):  # garbage: say so now
                raise BadRequest(NOT_OURS)

    def _count(self, verb: str, code: int, began: float) -> None:
        if self.observe is not None:
            try:
                self.observe(verb, code == 0, time.monotonic() - began)
            except Exception as exc:  # metrics never fail a call
                self._warn("CNI metrics callback failed: %s", exc)

    def _warn(self, msg: str, *args: object) -> None:
        if self.log is not None:
            self.log.warning(msg, *args)
