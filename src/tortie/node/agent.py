"""``tortie node run``: startup, then keep BIRD in step with the datastore until told to
stop (SIGTERM / SIGINT), then stop BIRD and remove the run-time files.

A reconciler over a watched cache (docs/design/node-reconciler.md): the change feed
(``tortie.datastore.feed``: etcd watch streams, SQLite revision polling) keeps
``NodeCache`` equal to the followed prefixes — Nodes, IPPools, BGP and Felix
configurations, block affinities — and every pass computes each part's desired state
from it (``tortie.node.reconciler``; BIRD's configuration today) and applies what
changed.  Nothing is read from the store while nothing followed changes; a full re-list
every ``RESYNC`` seconds is the safety net and logs any drift it finds.  Kernel parts are
re-applied every ``DATAPLANE_RESYNC`` seconds.  A datastore that is briefly unreachable is
logged and retried; what is programmed stays.
"""

from __future__ import annotations

import fcntl
import json
import os
import threading
import time

from tortie.datastore.base import Datastore
from tortie.datastore.feed import Change, Feed, FeedBroken, open_feed
from tortie.errors import Conflict, TortieError, Unavailable
from tortie.node.cache import FOLLOWED, ClusterView, NodeCache
from tortie.node.config import NodeConfig
from tortie.node.hostprep import Host
from tortie.node.outgoing import NatPart
from tortie.node.reconciler import Part, Reconciler
from tortie.node.routing import BirdPart
from tortie.node.startup import StartupResult, redetect, startup
from tortie.rundir import RunDir

TYPE_CHECKING = False
if TYPE_CHECKING:
    import logging
    from collections.abc import Callable
    from typing import IO

    from tortie.cni.host import NodeService
    from tortie.datastore.base import KV
    from tortie.datastore.config import DatastoreSettings
    from tortie.node.birdproc import Bird
    from tortie.node.metrics import AgentMetrics


def write_status(run_dir: str, result: StartupResult, **extra: object) -> None:
    doc = {
        "node": result.node_name,
        "pid": os.getpid(),
        "backend": result.backend,
        "ipv4": result.ipv4,
        "ipv6": result.ipv6 if result.ipv6_support else None,
        "routerID": result.router_id,
        "startup": "done",
        **extra,
    }
    path = RunDir(run_dir).agent_status
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(doc, fh)
    os.replace(tmp, path)


def _claim_run_dir(run_dir: str) -> IO[str]:
    """Lock the run directory for this agent (a second agent there would start a second
    BIRD on the same socket and delete the first one's files when it stops) and write
    our pid.  The lock dies with the process, so a crashed agent leaves no stale claim."""
    fh = open(RunDir(run_dir).agent_pid, "a+", encoding="utf-8")  # noqa: SIM115
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fh.seek(0)
        other = fh.read().strip()[:20] or "?"
        fh.close()
        raise Conflict(
            f"another node agent (pid {other}) already runs with run directory {run_dir}; "
            "stop it first, or give this agent its own TORTIE_RUN_DIR"
        ) from None
    fh.seek(0)
    fh.truncate()
    fh.write(str(os.getpid()))
    fh.flush()
    return fh


def cni_observer(metrics: AgentMetrics) -> Callable[[str, bool, float], None]:
    """The CNI service's per-call callback, counted in the agent's metrics."""

    def observe(verb: str, ok: bool, seconds: float) -> None:
        metrics.cni_requests.labels(verb, "ok" if ok else "error").inc()
        metrics.cni_latency.labels(verb).observe(seconds)

    return observe


def start_cni_service(
    config: NodeConfig,
    store: Datastore,
    settings: DatastoreSettings | None,
    log: logging.Logger,
    metrics: AgentMetrics | None,
) -> NodeService:
    """Serve the CNI plugins on ``$TORTIE_RUN_DIR/cni.sock`` (tortie/cni/host.py)."""
    from tortie.cni.host import start_node_service
    from tortie.rundir import RunDir

    return start_node_service(
        RunDir(config.run_dir),
        log,
        trusted_uids=config.cni_trusted_uids,
        settings=settings,
        store=store,
        observe=cni_observer(metrics) if metrics is not None else None,
    )


RESYNC = 300.0  # seconds between full re-reads of the followed prefixes (a safety net)
DATAPLANE_RESYNC = 10.0  # seconds between re-applies of the kernel parts (hand edits)
SETTLE = 0.05  # after a change, wait this long for more before reconciling


def run_agent(
    config: NodeConfig,
    store: Datastore,
    log: logging.Logger,
    stop: threading.Event,
    host: Host | None = None,
    settings: DatastoreSettings | None = None,
) -> int:
    """Run the agent until ``stop``.  ``settings``: how ``store`` was opened (CNI calls
    naming the same datastore then share its connection)."""
    os.makedirs(config.run_dir, exist_ok=True)
    pid_file = _claim_run_dir(config.run_dir)
    bird = None
    service = None
    feed = None
    quit_metrics = threading.Event()
    try:
        metrics = None  # Prometheus metrics (issue 9 item 5), imported only when enabled
        if config.metrics_enabled:
            from tortie.node.metrics import serve

            metrics = serve(config, log)
        began = time.monotonic()
        result = startup(config, store, log, host)
        if metrics is not None:
            metrics.started(time.monotonic() - began)
        if config.cni_service:
            service = start_cni_service(config, store, settings, log, metrics)
        host = host or Host()
        echoed: list[KV] = []  # what parts wrote to the store, for the cache at once
        parts = encapsulation_parts(config, store, log, host, echoed.append)
        parts.append(NatPart(host.nat(), dict(config.felix_env), log))
        if result.backend == "bird":
            from tortie.node.birdproc import Bird

            bird = Bird(config.run_dir, log)  # adopts a BIRD a killed agent left behind
            parts.append(BirdPart(bird, log, config.bgp_hold_time, config.bgp_connect_retry))
        else:
            from tortie.node.birdfind import stop_left_behind

            stop_left_behind(config.run_dir, log)  # no BIRD may route for this node now
        write_status(config.run_dir, result)
        log.info("agent running for node %s (backend %s)", result.node_name, result.backend)
        feed = open_feed(store, FOLLOWED)
        loop = AgentLoop(config, store, log, stop, host, result, feed, Reconciler(parts, log))
        loop.echoed = echoed
        if metrics is not None:
            from tortie.node.metrics import refresh_forever

            refresh_forever(metrics, store, loop.current, bird, log, quit_metrics)
        return loop.run(bird, metrics)
    finally:
        quit_metrics.set()
        if feed is not None:
            feed.close()
        if service is not None:
            service.stop()  # drains, then closes the stores it opened (cni/host.py)
        if bird is not None:
            bird.stop()
        run = RunDir(config.run_dir)
        for path in (run.agent_status, run.agent_pid):
            if os.path.exists(path):
                os.unlink(path)
        pid_file.close()  # releases the run directory


def encapsulation_parts(
    config: NodeConfig,
    store: Datastore,
    log: logging.Logger,
    host: Host,
    echo: Callable[[KV], None] | None = None,
) -> list[Part]:
    """Tunnel addresses, the pod MTU and (unless the backend is none) VXLAN."""
    from tortie.node.encapsulation import MtuPart, TunnelAddressPart, VxlanPart
    from tortie.node.mtu import host_mtu
    from tortie.node.vxlan import OVERHEAD_V4, OVERHEAD_V6, VxlanSettings
    from tortie.rundir import RunDir

    mtu = host_mtu(host.links())
    parts: list[Part] = [
        TunnelAddressPart(store, config.backend, log, echo),
        MtuPart(RunDir(config.run_dir), config.backend, mtu, config.veth_mtu, log),
    ]
    if config.backend != "none":
        settings = VxlanSettings(
            vni=config.vxlan_vni,
            port=config.vxlan_port,
            mtu_v4=config.vxlan_mtu or mtu - OVERHEAD_V4,
            mtu_v6=config.vxlan_mtu_v6 or mtu - OVERHEAD_V6,
        )
        parts.append(VxlanPart(host.vxlan(), settings, config.backend, log))
    return parts


class AgentLoop:
    """Follow the store through the change feed into the cache; reconcile on change."""

    def __init__(
        self,
        config: NodeConfig,
        store: Datastore,
        log: logging.Logger,
        stop: threading.Event,
        host: Host | None,
        result: StartupResult,
        feed: Feed,
        reconciler: Reconciler,
    ) -> None:
        self.config = config
        self.store = store
        self.log = log
        self.stop = stop
        self.host = host
        self.result = result
        self.feed = feed
        self.reconciler = reconciler
        self.cache = NodeCache()
        self.loaded = False
        self.resyncs = 0
        self._view: tuple[ClusterView, str] | None = None
        self.echoed: list[KV] = []
        self._warned: frozenset[str] = frozenset()

    def current(self) -> tuple[ClusterView, str] | None:
        """The latest view and this node's name (read by the metrics thread)."""
        return self._view

    def run(self, bird: Bird | None, metrics: AgentMetrics | None) -> int:
        config, log = self.config, self.log
        now = time.monotonic()
        next_resync = now + RESYNC
        next_dataplane = now + DATAPLANE_RESYNC
        next_poll = now + config.poll_interval if config.poll_interval else None
        woke = False
        while not self.stop.is_set():
            try:
                now = time.monotonic()
                if not self.loaded or now >= next_resync:
                    self._load()
                    next_resync = now + RESYNC
                view = self.cache.view()
                self._view = (view, self.result.node_name)
                for warning in sorted(set(view.warnings) - self._warned):
                    log.warning("%s", warning)
                self._warned = frozenset(view.warnings)
                if view.node(self.result.node_name) is None:
                    # Deleted under us ('tortie delete node'): its blocks are gone and the
                    # other nodes dropped it; running on would leave a silently cut-off host.
                    log.error(
                        "node %s was deleted from the datastore while its agent runs; "
                        "stopping: restart the agent to register the node again, or leave "
                        "it stopped if the node is decommissioned",
                        self.result.node_name,
                    )
                    return 1
                if next_poll is not None and now >= next_poll:
                    next_poll = now + config.poll_interval
                    self._redetect()
                resync = now >= next_dataplane
                if resync:
                    next_dataplane = now + DATAPLANE_RESYNC
                applied = self.reconciler.reconcile(view, self.result, resync=resync)
                if self.echoed:  # a part wrote to the store: the others see it now
                    echoed, self.echoed[:] = list(self.echoed), []
                    self.cache.apply(Change(kv.key, kv.value, kv.revision) for kv in echoed)
                    view = self.cache.view()
                    applied += self.reconciler.reconcile(view, self.result)
                if bird is not None:
                    bird.supervise()
                if metrics is not None:
                    metrics.after_pass(woke, len(applied), bird)
                woke = self._wait(min(1.0, max(0.0, next_resync - time.monotonic())))
            except FeedBroken as exc:
                log.info("%s", exc)
                self.loaded = False
            except Unavailable as exc:
                log.warning("datastore unavailable (%s); retrying in 1 s", exc)
                self.loaded = False
                self.stop.wait(1.0)
            except TortieError as exc:
                log.error("%s; retrying in 5 s", exc)
                self.loaded = False
                self.stop.wait(5.0)
        log.info("stopping")
        return 0

    def _load(self) -> None:
        """List everything followed; after the first time, say what had drifted."""
        differ = self.cache.replace(self.feed.load())
        if self.loaded and differ:
            shown = ", ".join(k.removeprefix("/calico/") for k in differ[:5])
            more = f" and {len(differ) - 5} more" if len(differ) > 5 else ""
            self.log.warning(
                "resync: %d keys differed from the watched cache (%s%s); corrected",
                len(differ),
                shown,
                more,
            )
        self.loaded = True
        self.resyncs += 1

    def _wait(self, timeout: float) -> bool:
        """Wait for changes (up to ``timeout``), let a burst settle; True when the
        cache changed."""
        changed = self.cache.apply(self.feed.changes(timeout))
        if changed:
            while not self.stop.is_set() and self.cache.apply(self.feed.changes(SETTLE)):
                pass
        return changed

    def _redetect(self) -> None:
        try:
            new = redetect(self.config, self.store, self.result, self.log, self.host)
        except Unavailable:
            raise
        except TortieError as exc:
            # An address gone for a moment must not stop routing updates.
            self.log.warning("address re-detection failed, addresses kept: %s", exc)
            return
        if new != self.result:
            self.result = new
            write_status(self.config.run_dir, self.result)
