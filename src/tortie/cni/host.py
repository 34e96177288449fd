"""One assembly of the CNI node service, for ``tortie node run`` and ``tortie node
serve-cni`` alike: the stores (the caller's own datastore shared), the netlink
dataplane, the trusted uids, the metrics callback, and start and stop in one order.

Stop order: stop accepting, drain the calls queued and running (bounded), and only when
none runs any more close the stores the service opened; the caller closes its own store
after ``NodeService.stop`` returned True.

Metrics reach the service through ``Observer`` (``verb, ok, seconds`` per call), so
``tortie.cni`` does not import the agent's metrics module.
"""

from __future__ import annotations

import os
import signal
import threading

from tortie.cni.service import DRAIN_TIMEOUT, CniService, Observer, netlink_dataplane
from tortie.cni.stores import Stores
from tortie.rundir import RunDir

TYPE_CHECKING = False
if TYPE_CHECKING:
    import logging

    from tortie.datastore.base import Datastore
    from tortie.datastore.config import DatastoreSettings


class NodeService:
    """A started service and the stores it owns."""

    def __init__(self, service: CniService, stores: Stores, log: logging.Logger) -> None:
        self.service = service
        self.stores = stores
        self.log = log

    @property
    def path(self) -> str:
        return self.service.path

    def stop(self, drain: float = DRAIN_TIMEOUT) -> bool:
        """Stop serving; close the stores once no call runs.  True when closed; False
        when calls still run after ``drain`` (then nothing is closed under them: the
        process exits with the connections open)."""
        if not self.service.stop(drain):
            self.log.warning("CNI calls still running: datastore connections left open")
            return False
        self.stores.close()
        return True


def start_node_service(
    run_dir: RunDir,
    log: logging.Logger,
    *,
    trusted_uids: tuple[int, ...],
    settings: DatastoreSettings | None = None,
    store: Datastore | None = None,
    observe: Observer | None = None,
    socket_path: str | None = None,
    netlink: bool = True,
) -> NodeService:
    """Serve the CNI plugins on ``run_dir.cni_socket`` (or ``socket_path``).  ``store``
    opened from ``settings`` is shared with the calls naming the same datastore."""
    path = socket_path or run_dir.cni_socket
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    stores = Stores(log)
    if settings is not None and store is not None:
        stores.add(settings, store)
    service = CniService(
        path,
        stores,
        log=log,
        observe=observe,
        trusted_uids=trusted_uids,
        dataplane=netlink_dataplane(log) if netlink else None,
    )
    try:
        service.start()
    except BaseException:
        service.stop(0.0)
        stores.close()
        raise
    return NodeService(service, stores, log)


class StopSignals:
    """SIGTERM and SIGINT set ``stop``; the handler does nothing else (logging is not
    re-entrant: a handler that logs can deadlock on the lock the interrupted code
    holds).  ``received`` names the signals afterwards, for the log."""

    def __init__(self, stop: threading.Event | None = None) -> None:
        self.stop = stop or threading.Event()
        self.signals: list[int] = []

    def install(self) -> StopSignals:
        signal.signal(signal.SIGTERM, self._handle)
        signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum: int, _frame: object) -> None:
        self.signals.append(signum)
        self.stop.set()

    def wait(self) -> None:
        # Timed: the kernel may hand the signal to any thread, and Python runs the
        # handler only when the main thread next runs bytecode; an untimed wait never does.
        while not self.stop.wait(0.5):
            pass

    @property
    def received(self) -> str:
        return ", ".join(signal.Signals(s).name for s in self.signals) or "none"
