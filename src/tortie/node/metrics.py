"""Prometheus metrics of ``tortie node run`` (Felix's FELIX_PROMETHEUSMETRICS* variables).

Served with ``prometheus_client`` from a registry of our own.  The agent's loop feeds the
counters and refreshes a snapshot (BGP sessions from BIRD, blocks and addresses per pool
from the store) at most every ``REFRESH`` seconds or after a datastore change; a scrape
only reads that snapshot, so the HTTP thread never touches the store or BIRD.

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
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from tortie.datastore import keys
from tortie.datastore.base import Datastore
from tortie.errors import DatastoreError, InvalidInput, TortieError
from tortie.ipam.pools import load_pools
from tortie.model.ipam_records import decode_block

TYPE_CHECKING = False
if TYPE_CHECKING:
    import logging

    from prometheus_client.core import Metric

    from tortie.node.birdproc import Bird
    from tortie.node.config import NodeConfig

REFRESH = 5.0
NO_POOL = "none"  # blocks whose pool was deleted


@dataclass(frozen=True)
class PoolUsage:
    blocks: int = 0
    in_use: int = 0


def pool_usage(store: Datastore, node: str) -> dict[str, PoolUsage]:
    """This node's affine blocks and their used addresses, by pool CIDR (pure reads)."""
    pools = [ipaddress.ip_network(p.cidr) for p in load_pools(store)]
    owner = f"host:{node}"
    usage: dict[str, PoolUsage] = {str(p): PoolUsage() for p in pools}
    for version in (4, 6):
        for kv in store.list(keys.block_prefix(version)):
            try:
                block = decode_block(kv.key, kv.value)
            except DatastoreError:
                continue  # 'tortie ipam check' reports it
            if block.affinity != owner:
                continue
            net = ipaddress.ip_network(block.cidr)
            pool = next(
                (str(p) for p in pools if p.version == net.version and net.subnet_of(p)),  # type: ignore[arg-type]
                NO_POOL,
            )
            used = sum(1 for a in block.allocations if a is not None)
            old = usage.get(pool, PoolUsage())
            usage[pool] = PoolUsage(old.blocks + 1, old.in_use + used)
    return usage


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
        self._next_refresh = 0.0
        r.register(_SnapshotCollector(self))

    def started(self, seconds: float) -> None:
        self.startup_seconds.set(seconds)
        self.up.set(1)

    def refresh(self, store: Datastore, node: str, bird: Bird | None) -> None:
        """Re-read pools/blocks and (when BIRD runs) the BGP sessions into the snapshot."""
        pools = pool_usage(store, node)
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

    def after_pass(
        self, store: Datastore, node: str, bird: Bird | None, woke: bool, applied: bool
    ) -> None:
        """One loop pass of the agent: count, and refresh the snapshot when due."""
        if woke:
            self.wakeups.inc()
        if applied:
            self.reconfigurations.inc()
        if bird is not None and bird.restarts > self._restarts_seen:
            self.restarts.inc(bird.restarts - self._restarts_seen)
            self._restarts_seen = bird.restarts
        now = time.monotonic()
        if woke or applied or now >= self._next_refresh:
            self.refresh(store, node, bird)
            self._next_refresh = now + REFRESH


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
