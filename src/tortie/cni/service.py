"""The node service: the CNI plugins' calls, run warm inside ``tortie node run``.

The thin plugins (``tortie.cni.thin``) send each call here over ``cni.sock``.  The call
runs through the same edge as in a plugin process (``tortie.cni.edge.run_plugin``, the
same verb handlers, errors and logs), with what a fresh process cannot keep: open
datastore connections (one per datastore the network configurations name), a group
commit per datastore with warm blocks (``tortie.ipam.batch``, ``tortie.ipam.warm``) and
the netlink dataplane.

- Only callers with uid 0 (or one the agent was told to trust) are served; others get a
  CNI error and a log line naming their pid and uid.  The socket is mode 0600, or 0666
  when other uids are trusted (they must be able to connect; peer credentials decide).
- Calls for one container run one after another, in arrival order; calls for different
  containers run at once.
- A request is read with a deadline and a size limit: garbage, a huge payload or a
  client that never finishes gets a one-line CNI error and holds no one else up.
"""

from __future__ import annotations

import os
import socket as _socket
import struct
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor

from tortie.cni import errors as codes
from tortie.cni import ipam_plugin, main_plugin
from tortie.cni.edge import Backends, Plugin, run_plugin
from tortie.cni.protocol import LATEST_VERSION, error_json
from tortie.cni.thin import MAGIC, encode_answer
from tortie.datastore.backends import open_datastore
from tortie.datastore.config import DatastoreSettings
from tortie.errors import Conflict
from tortie.ipam.batch import GroupCommit
from tortie.ipam.requests import AssignRequest
from tortie.ipam.warm import WarmBlocks

TYPE_CHECKING = False
if TYPE_CHECKING:
    import logging
    from types import ModuleType

    from tortie.datastore.base import Datastore
    from tortie.node.metrics import AgentMetrics

SOCKET_NAME = "cni.sock"
MAX_REQUEST = 1 << 20  # bytes: a network configuration with prevResult is a few KiB
READ_TIMEOUT = 5.0  # seconds for a client to send its whole request
DRAIN_TIMEOUT = 20.0  # seconds ``stop`` waits for calls in progress
WORKERS = 32  # calls run at once (a batch of ADDs is written by one of them)
VERBS = ("ADD", "DEL", "CHECK", "GC", "STATUS", "VERSION")
PLUGINS: Mapping[bytes, Plugin] = {b"ipam": ipam_plugin.PLUGIN, b"main": main_plugin.PLUGIN}


class BadRequest(Exception):
    """A request the service cannot read; its text goes back as the CNI error."""


def settings_key(s: DatastoreSettings) -> tuple[object, ...]:
    return (
        s.datastore_type,
        s.sqlite_path,
        s.etcd_endpoints,
        s.etcd_ca_cert_file,
        s.etcd_cert_file,
        s.etcd_key_file,
        s.etcd_username,
        s.etcd_password,
    )


class Stores:
    """Open datastores by settings, each with its group commit and warm blocks.  The
    agent's own store is handed in already open; others are opened on first use."""

    def __init__(self, log: logging.Logger | None, warm: bool = True) -> None:
        self.log = log
        self.warm = warm
        self._lock = threading.Lock()
        self._stores: dict[tuple[object, ...], Datastore] = {}
        self._owned: list[Datastore] = []
        self._commits: dict[int, GroupCommit] = {}
        self._warm: list[WarmBlocks] = []

    def add(self, settings: DatastoreSettings, store: Datastore) -> None:
        with self._lock:
            self._stores[settings_key(settings)] = store

    def open(self, settings: DatastoreSettings) -> Datastore:
        key = settings_key(settings)
        with self._lock:
            store = self._stores.get(key)
            if store is None:
                store = open_datastore(settings)
                self._stores[key] = store
                self._owned.append(store)
            return store

    def group_commit(self, store: Datastore) -> GroupCommit:
        with self._lock:
            commit = self._commits.get(id(store))
            if commit is None:
                warm = WarmBlocks(store, self.log) if self.warm else None
                if warm is not None:
                    self._warm.append(warm)
                commit = GroupCommit(store, warm.note if warm else None)
                self._commits[id(store)] = commit
            return commit

    def assign(self, store: Datastore, request: AssignRequest) -> list[str]:
        return self.group_commit(store).assign(request)

    def close(self) -> None:
        """Wait for the warm-block claims under way, then close the stores opened here
        (the caller closes the ones it added, after this)."""
        with self._lock:
            owned, self._owned = self._owned, []
            warm, self._warm = self._warm, []
            self._stores.clear()
        for keeper in warm:
            keeper.close()
        for store in owned:
            store.close()


class ContainerLocks:
    """One lock per container id while calls for it are in flight."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._held: dict[str, tuple[threading.Lock, int]] = {}

    def acquire(self, cid: str) -> threading.Lock:
        with self._lock:
            lock, users = self._held.get(cid, (threading.Lock(), 0))
            self._held[cid] = (lock, users + 1)
        lock.acquire()
        return lock

    def release(self, cid: str, lock: threading.Lock) -> None:
        lock.release()
        with self._lock:
            _, users = self._held[cid]
            if users <= 1:
                del self._held[cid]
            else:
                self._held[cid] = (lock, users - 1)


EMPTY = "empty request (the client sent nothing); use the tortie plugins"


def parse_request(data: bytes) -> tuple[Plugin, dict[str, str], bytes]:
    if not data:
        raise BadRequest(EMPTY)
    if not data.startswith(MAGIC):
        raise BadRequest(
            "not a tortie CNI request (wrong or missing header); use the tortie plugins"
        )
    head, sep, rest = data[len(MAGIC) :].partition(b"\n")
    plugin = PLUGINS.get(head)
    if not sep or plugin is None:
        raise BadRequest(f"unknown plugin {head[:40]!r} in the request; expected ipam or main")
    env: dict[str, str] = {}
    pos = 0
    while True:
        end = rest.find(b"\0", pos)
        if end < 0:
            raise BadRequest("request environment is not terminated; the request was cut short")
        if end == pos:
            return plugin, env, rest[end + 1 :]
        name, eq, value = rest[pos:end].partition(b"=")
        if not eq or not name:
            raise BadRequest("request environment holds an entry without '='")
        env[name.decode("utf-8", "surrogateescape")] = value.decode("utf-8", "surrogateescape")
        pos = end + 1


def netlink_dataplane(log: logging.Logger | None) -> ModuleType | None:
    """The pyroute2 pod dataplane when available; None keeps ``ip -batch``."""
    try:
        from tortie.dataplane import netlink_pod
    except ImportError as exc:  # pyroute2 missing from this installation
        if log is not None:
            log.warning("netlink pod dataplane unavailable (%s); using iproute2", exc)
        return None
    return netlink_pod


class CniService:
    """Serve CNI calls on a UNIX socket until ``stop``."""

    def __init__(
        self,
        path: str,
        stores: Stores,
        *,
        log: logging.Logger | None = None,
        metrics: AgentMetrics | None = None,
        trusted_uids: tuple[int, ...] = (0,),
        dataplane: ModuleType | None = None,
        open_store: Callable[[DatastoreSettings], Datastore] | None = None,
    ) -> None:
        self.path = path
        self.stores = stores
        self.log = log
        self.metrics = metrics
        self.trusted_uids = trusted_uids
        self.open_store = open_store or stores.open
        self.backends = Backends(assign=stores.assign, dataplane=dataplane)
        self.locks = ContainerLocks()
        self._workers = ThreadPoolExecutor(WORKERS, thread_name_prefix="cni-call")
        self._listener: _socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._active = 0
        self._idle = threading.Condition()
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

    def stop(self) -> None:
        """Stop accepting, let calls in progress finish (bounded), remove the socket."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join()
        if self._listener is not None:
            self._listener.close()
            self._listener = None
            if os.path.exists(self.path):
                os.unlink(self.path)
        deadline = time.monotonic() + DRAIN_TIMEOUT
        with self._idle:
            while self._active and time.monotonic() < deadline:
                self._idle.wait(0.1)
        self._workers.shutdown(wait=False, cancel_futures=True)
        if self.log is not None:
            self.log.info("CNI service stopped: served %d calls", self.served)

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
                self._active += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    # ------------------------------------------------------------------ one call

    def _serve(self, conn: _socket.socket) -> None:
        try:
            conn.settimeout(READ_TIMEOUT)
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
                return
            code, out = self._answer(conn)
            conn.settimeout(30.0)
            conn.sendall(encode_answer(code, out.encode()))
        except OSError as exc:  # the client went away (e.g. killed by its runtime)
            if self.log is not None:
                self.log.info("CNI call: client connection closed early: %s", exc)
        finally:
            conn.close()
            with self._idle:
                self._active -= 1
                self._idle.notify_all()

    def _answer(self, conn: _socket.socket) -> tuple[int, str]:
        began = time.monotonic()
        verb = "invalid"
        try:
            plugin, env, stdin = parse_request(self._read(conn))
        except BadRequest as exc:
            if str(exc) != EMPTY:  # a connect-and-close probe is not worth a warning
                self._warn("bad CNI request: %s", exc)
            self._count(verb, 1, began)
            return 1, error_json(LATEST_VERSION, codes.DECODE_FAILURE, str(exc))
        command = env.get("CNI_COMMAND", "")
        verb = command if command in VERBS else "invalid"
        cid = env.get("CNI_CONTAINERID", "")
        # The call itself runs on one of a fixed set of workers: each keeps its datastore
        # connection (SQLite opens one per thread), so the connections stay bounded
        # however many calls come and go; this thread only read the request.
        code, out = self._workers.submit(self._run, plugin, env, stdin, cid).result()
        self.served += 1
        self._count(verb, code, began)
        if code != 0 and self.log is not None:
            self.log.warning("CNI %s of container %s failed: %s", verb, cid or "-", out[:300])
        return code, out

    def _run(self, plugin: Plugin, env: dict[str, str], stdin: bytes, cid: str) -> tuple[int, str]:
        lock = self.locks.acquire(cid) if cid else None
        try:
            return run_plugin(
                plugin, stdin, env, open_store=self.open_store, backends=self.backends
            )
        finally:
            if lock is not None:
                self.locks.release(cid, lock)

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
            head = b"".join(chunks)[: len(MAGIC)]
            if not MAGIC.startswith(head):  # garbage: say so now, not after the deadline
                raise BadRequest(
                    "not a tortie CNI request (wrong or missing header); use the tortie plugins"
                )

    def _count(self, verb: str, code: int, began: float) -> None:
        if self.metrics is not None:
            self.metrics.cni_requests.labels(verb, "ok" if code == 0 else "error").inc()
            self.metrics.cni_latency.labels(verb).observe(time.monotonic() - began)

    def _warn(self, msg: str, *args: object) -> None:
        if self.log is not None:
            self.log.warning(msg, *args)
