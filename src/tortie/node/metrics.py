"""Prometheus metrics of ``tortie node run`` (Felix's FELIX_PROMETHEUSMETRICS* variables).

Served with ``prometheus_client`` from a registry of our own.  The agent's loop feeds the
counters; a thread of its own (``refresh_forever``) refreshes a snapshot every
``REFRESH`` seconds: BGP sessions from BIRD, this node's blocks per pool from the agent's
watched cache, their allocations read from the store at most every ``USAGE_REFRESH``
seconds.  A scrape only reads that snapshot, so the HTTP thread never touches the store
or BIRD, and nothing here can delay routing.

Metric names (``tortie_`` prefix):

- ``node_up`` (1 while the agent runs), ``node_startup_duration_seconds``
- ``bgp_sessions_established{family}``, ``bgp_sessions{family}`` (4 / 6)
- ``node_blocks{pool}``, ``node_addresses_in_use{pool}`` (this node's affine blocks)
- ``datastore_wakeups_total``, ``bird_reconfigurations_total``, ``bird_restarts_total``
- CNI hooks, defined here and filled by the CNI request service (issue 9):
  ``cni_requests_total{verb,result}`` and ``cni_request_duration_seconds{verb}``
  (histogram); ``verb`` is ADD / DEL / CHECK / GC, ``result`` is ``ok`` or the CNI
  error name.  Only this module imports ``prometheus_client``: never the CNI plugins.
"""

from __future__ import annotations

import errno
import ipaddress
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from tortie.datastore import keys
from tortie.datastore.base import Datastore
from tortie.errors import DatastoreError, InvalidInput, TortieError
from tortie.model.ipam_records import decode_block

TYPE_CHECKING = False
if TYPE_CHECKING:
    import logging

    from prometheus_client.core import Metric

    from tortie.node.birdproc import Bird
    from tortie.node.cache import ClusterView
    from tortie.node.config import NodeConfig

REFRESH = 5.0  # seconds between snapshots (BGP sessions, blocks per pool)
USAGE_REFRESH = 30.0  # seconds between reads of this node's blocks' allocations
NO_POOL = "none"  # blocks whose pool was deleted


@dataclass(frozen=True)
class PoolUsage:
    blocks: int = 0
    in_use: int = 0


def pool_usage(view: ClusterView, node: str, used: Mapping[str, int]) -> dict[str, PoolUsage]:
    """This node's blocks (from the watched cache) and their used addresses (``used``:
    block CIDR -> addresses allocated; a block not in it counts 0), by pool CIDR: pure."""
    pools = [ipaddress.ip_network(p.cidr) for p in view.pools]
    usage: dict[str, PoolUsage] = {str(p): PoolUsage() for p in pools}
    for version in (4, 6):
        for cidr in view.blocks_of(node, version):
            net = ipaddress.ip_network(cidr)
            pool = next(
                (str(p) for p in pools if p.version == net.version and net.subnet_of(p)),  # type: ignore[arg-type]
                NO_POOL,
            )
            old = usage.get(pool, PoolUsage())
            usage[pool] = PoolUsage(old.blocks + 1, old.in_use + used.get(cidr, 0))
    return usage


def blocks_in_use(store: Datastore, view: ClusterView, node: str) -> dict[str, int]:
    """Addresses allocated in each of this node's blocks: one read per block."""
    out: dict[str, int] = {}
    for version in (4, 6):
        for cidr in view.blocks_of(node, version):
            kv = store.get(keys.block_key(cidr, version))
            if kv is None:
                continue
            try:
                block = decode_block(kv.key, kv.value)
            except DatastoreError:
                continue  # 'tortie ipam check' reports it
            out[cidr] = sum(1 for a in block.allocations if a is not None)
    return out


def session_counts(sessions: Iterable[tuple[int, bool]]) -> dict[int, tuple[int, int]]:
    """(family, established) pairs -> {family: (established, total)} for 4 and 6."""
    out = {4: (0, 0), 6: (0, 0)}
    for family, up in sessions:
        est, total = out.get(family, (0, 0))
        out[family] = (est + int(up), total + 1)
    return out


@dataclass
class Snapshot:
    sessions: dict[int, tuple[int, int]] = field(default_factory=lambda: session_counts(()))
    pools: dict[str, PoolUsage] = field(default_factory=dict)


class _SnapshotCollector(Collector):
    def __init__(self, metrics: AgentMetrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        snap = self.metrics.snapshot
        est = GaugeMetricFamily(
            "tortie_bgp_sessions_established", "BGP sessions established", labels=["family"]
        )
        total = GaugeMetricFamily(
            "tortie_bgp_sessions", "BGP sessions configured", labels=["family"]
        )
        for family, (up, all_) in sorted(snap.sessions.items()):
            est.add_metric([str(family)], up)
            total.add_metric([str(family)], all_)
        blocks = GaugeMetricFamily(
            "tortie_node_blocks", "IPAM blocks affine to this node", labels=["pool"]
        )
        in_use = GaugeMetricFamily(
            "tortie_node_addresses_in_use",
            "Addresses allocated in this node's blocks",
            labels=["pool"],
        )
        for pool, usage in sorted(snap.pools.items()):
            blocks.add_metric([pool], usage.blocks)
            in_use.add_metric([pool], usage.in_use)
        yield from (est, total, blocks, in_use)


class AgentMetrics:
    """Every metric of the agent, in one registry (tests make as many as they like)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.up = Gauge("tortie_node_up", "1 while the node agent runs", registry=r)
        self.startup_seconds = Gauge(
            "tortie_node_startup_duration_seconds", "Duration of the agent's startup", registry=r
        )
        self.wakeups = Counter(
            "tortie_datastore_wakeups", "Datastore change notifications received", registry=r
        )
        self.reconfigurations = Counter(
            "tortie_bird_reconfigurations", "BIRD configurations applied", registry=r
        )
        self.restarts = Counter("tortie_bird_restarts", "BIRD restarts after it died", registry=r)
        # Hooks for the CNI request service (issue 9): defined, documented, not fed here.
        self.cni_requests = Counter(
            "tortie_cni_requests", "CNI requests by verb and result", ["verb", "result"], registry=r
        )
        self.cni_latency = Histogram(
            "tortie_cni_request_duration_seconds", "CNI request latency", ["verb"], registry=r
        )
        self.snapshot = Snapshot()
        self._restarts_seen = 0
        self._next_usage = 0.0
        self._usage_view: ClusterView | None = None
        self._used: dict[str, int] = {}
        r.register(_SnapshotCollector(self))

    def started(self, seconds: float) -> None:
        self.startup_seconds.set(seconds)
        self.up.set(1)

    def refresh(
        self,
        store: Datastore,
        view: ClusterView,
        node: str,
        bird: Bird | None,
        now: float | None = None,
    ) -> None:
        """A new snapshot: blocks per pool from the cache, their allocations from the
        store at most every ``USAGE_REFRESH`` seconds, BGP sessions from BIRD."""
        now = time.monotonic() if now is None else now
        if now >= self._next_usage or self._usage_view is not view:
            self._used = blocks_in_use(store, view, node)
            self._next_usage = now + USAGE_REFRESH
            self._usage_view = view
        pools = pool_usage(view, node, self._used)
        sessions = self.snapshot.sessions
        if bird is not None and bird.running():
            from tortie.node.birdctl import birdc, parse_protocols

            try:
                text = birdc(bird.socket, "show", "protocols", timeout=2)
                sessions = session_counts((s.family, s.established) for s in parse_protocols(text))
            except TortieError:
                pass  # BIRD (re)starting: keep the last counts
        elif bird is not None:
            sessions = session_counts(())
        self.snapshot = Snapshot(sessions, pools)

    def after_pass(self, woke: bool, applied: int, bird: Bird | None) -> None:
        """One pass of the agent's loop: counters only (no I/O: routing never waits)."""
        if woke:
            self.wakeups.inc()
        if applied:
            self.reconfigurations.inc(applied)
        if bird is not None and bird.restarts > self._restarts_seen:
            self.restarts.inc(bird.restarts - self._restarts_seen)
            self._restarts_seen = bird.restarts


def refresh_forever(
    metrics: AgentMetrics,
    store: Datastore,
    current: Callable[[], tuple[ClusterView, str] | None],
    bird: Bird | None,
    log: logging.Logger,
    stop: threading.Event,
    every: float = REFRESH,
) -> threading.Thread:
    """Refresh the snapshot on a timer of its own in a thread: a slow store or BIRD
    delays the metrics, never routing.  ``current()``: the agent's latest view."""

    def loop() -> None:
        failing = ""
        while not stop.is_set():
            got = current()
            if got is not None:
                try:
                    metrics.refresh(store, got[0], got[1], bird)
                    failing = ""
                except TortieError as exc:
                    if str(exc) != failing:
                        log.warning("metrics not refreshed: %s", exc)
                    failing = str(exc)
            stop.wait(every)

    thread = threading.Thread(target=loop, name="metrics", daemon=True)
    thread.start()
    return thread


def serve(config: NodeConfig, log: logging.Logger) -> AgentMetrics | None:
    """Start the metrics HTTP server when FELIX_PROMETHEUSMETRICSENABLED; None otherwise.
    A port in use (or an address not on this host) is one ``InvalidInput`` line."""
    if not config.metrics_enabled:
        return None
    metrics = AgentMetrics()
    hosts = [config.metrics_host] if config.metrics_host else ["::", "0.0.0.0"]
    for host in hosts:
        try:
            start_http_server(config.metrics_port, addr=host, registry=metrics.registry)
        except OSError as exc:
            if exc.errno == errno.EAFNOSUPPORT and host == "::":
                continue  # no IPv6 here: all IPv4 addresses
            raise InvalidInput(
                f"cannot serve metrics on {host or '*'} port {config.metrics_port}: "
                f"{exc.strerror or exc}; set FELIX_PROMETHEUSMETRICSPORT to a free port "
                "(or FELIX_PROMETHEUSMETRICSHOST to an address of this host)"
            ) from None
        log.info("metrics on http://[%s]:%d/metrics", host, config.metrics_port)
        return metrics
    return metrics
