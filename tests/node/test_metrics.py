"""The node agent's Prometheus metrics on the memory backend: per-pool blocks and addresses
of this node, the loop's counters, the CNI hooks, and the settings' bad input."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from typing import cast

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from tortie.datastore import keys
from tortie.datastore.base import KV
from tortie.datastore.memory import MemoryDatastore
from tortie.errors import InvalidInput, Unavailable
from tortie.ipam.requests import AutoAssignArgs
from tortie.ipam.service import Ipam
from tortie.node.birdproc import Bird
from tortie.node.cache import FOLLOWED, ClusterView, NodeCache
from tortie.node.config import config_from_env
from tortie.node.metrics import (
    USAGE_REFRESH,
    AgentMetrics,
    PoolUsage,
    blocks_in_use,
    pool_usage,
    refresh_forever,
    serve,
    session_counts,
)

POOL4, POOL6 = "10.244.0.0/16", "fd00:244::/48"


def add_pool(store: MemoryDatastore, name: str, cidr: str, block_size: int) -> None:
    doc = {
        "apiVersion": "projectcalico.org/v3",
        "kind": "IPPool",
        "metadata": {"name": name},
        "spec": {"cidr": cidr, "blockSize": block_size},
    }
    store.create(keys.resource_key("ippools", name), json.dumps(doc))


def assign(store: MemoryDatastore, node: str, handle: str, num4: int, num6: int) -> None:
    res = Ipam(store).auto_assign(AutoAssignArgs(node=node, handle_id=handle, num4=num4, num6=num6))
    assert len(res.ipv4.addresses) == num4 and len(res.ipv6.addresses) == num6


def samples(metrics: AgentMetrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = generate_latest(metrics.registry).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


@pytest.fixture
def store() -> MemoryDatastore:
    s = MemoryDatastore()
    add_pool(s, "v4", POOL4, 30)  # 4 addresses a block: 5 addresses need 2 blocks
    add_pool(s, "v6", POOL6, 122)
    return s


def view_of(store: MemoryDatastore) -> ClusterView:
    """What the agent's watched cache would hold for this store."""
    cache = NodeCache()
    cache.replace(kv for prefix in FOLLOWED for kv in store.list(prefix))
    return cache.view()


def usage(store: MemoryDatastore, node: str) -> dict[str, PoolUsage]:
    view = view_of(store)
    return pool_usage(view, node, blocks_in_use(store, view, node))


def test_pool_usage_counts_only_this_nodes_blocks(store: MemoryDatastore) -> None:
    assert usage(store, "a") == {POOL4: PoolUsage(), POOL6: PoolUsage()}
    for i in range(5):
        assign(store, "a", f"pod-{i}", 1, int(i == 0))
    assign(store, "b", "other", 1, 1)
    assert usage(store, "a") == {POOL4: PoolUsage(2, 5), POOL6: PoolUsage(1, 1)}
    assert usage(store, "b") == {POOL4: PoolUsage(1, 1), POOL6: PoolUsage(1, 1)}


def test_scrape_shows_pools_sessions_and_counters(store: MemoryDatastore) -> None:
    metrics = AgentMetrics()
    metrics.started(0.25)
    assign(store, "a", "pod", 1, 1)
    metrics.after_pass(woke=True, applied=1, bird=None)
    metrics.after_pass(woke=True, applied=0, bird=None)
    metrics.after_pass(woke=False, applied=0, bird=None)
    metrics.refresh(store, view_of(store), "a", None)
    got = samples(metrics)
    assert got[("tortie_node_up", ())] == 1
    assert got[("tortie_node_startup_duration_seconds", ())] == 0.25
    assert got[("tortie_datastore_wakeups_total", ())] == 2
    assert got[("tortie_bird_reconfigurations_total", ())] == 1
    assert got[("tortie_bird_restarts_total", ())] == 0
    assert got[("tortie_node_blocks", (("pool", POOL4),))] == 1
    assert got[("tortie_node_addresses_in_use", (("pool", POOL6),))] == 1
    assert got[("tortie_bgp_sessions", (("family", "4"),))] == 0


def test_allocations_are_read_on_their_own_timer_or_when_blocks_change(
    store: MemoryDatastore,
) -> None:
    metrics = AgentMetrics()
    assign(store, "a", "pod", 2, 0)
    view = view_of(store)
    metrics.refresh(store, view, "a", None, now=100.0)
    assert samples(metrics)[("tortie_node_addresses_in_use", (("pool", POOL4),))] == 2
    Ipam(store).release_by_handle("pod")
    metrics.refresh(store, view, "a", None, now=101.0)  # same blocks, not due: no read
    assert samples(metrics)[("tortie_node_addresses_in_use", (("pool", POOL4),))] == 2
    metrics.refresh(store, view, "a", None, now=100.0 + USAGE_REFRESH)
    assert samples(metrics)[("tortie_node_addresses_in_use", (("pool", POOL4),))] == 0
    assign(store, "a", "pod2", 5, 0)  # a second block: the cache's view changes
    metrics.refresh(store, view_of(store), "a", None, now=100.0 + USAGE_REFRESH + 1)
    got = samples(metrics)
    assert got[("tortie_node_addresses_in_use", (("pool", POOL4),))] == 5
    assert got[("tortie_node_blocks", (("pool", POOL4),))] == 2


def test_a_failing_store_never_stops_the_refresh_thread(store: MemoryDatastore) -> None:
    class Broken(MemoryDatastore):
        def get(self, key: str) -> KV | None:
            raise Unavailable("etcd: no endpoint answered")

    assign(store, "a", "pod", 1, 0)
    view = view_of(store)
    metrics, stop = AgentMetrics(), threading.Event()
    seen: list[int] = []

    def current() -> tuple[ClusterView, str]:
        seen.append(1)
        return view, "a"

    log = logging.getLogger("test.metrics")
    thread = refresh_forever(metrics, Broken(), current, None, log, stop, every=0.01)
    deadline = time.monotonic() + 5
    while len(seen) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    stop.set()
    thread.join(timeout=5)
    assert len(seen) >= 3 and not thread.is_alive()


class DeadBird:
    """Stands in for a BIRD that keeps dying: only what the metrics read."""

    socket = "/nonexistent"

    def __init__(self) -> None:
        self.restarts = 0

    def running(self) -> bool:
        return False


def test_bird_restarts_counted_once_each(store: MemoryDatastore) -> None:
    metrics, bird = AgentMetrics(), DeadBird()
    bird.restarts = 2
    metrics.after_pass(woke=False, applied=0, bird=cast(Bird, bird))
    metrics.after_pass(woke=False, applied=0, bird=cast(Bird, bird))
    bird.restarts = 3
    metrics.after_pass(woke=False, applied=0, bird=cast(Bird, bird))
    assert samples(metrics)[("tortie_bird_restarts_total", ())] == 3


def test_session_counts_per_family() -> None:
    got = session_counts([(4, True), (4, False), (6, True)])
    assert got == {4: (1, 2), 6: (1, 1)}


def test_cni_hooks_are_defined_for_the_request_service() -> None:
    metrics = AgentMetrics()
    metrics.cni_requests.labels(verb="ADD", result="ok").inc()
    metrics.cni_latency.labels(verb="ADD").observe(0.02)
    got = samples(metrics)
    assert got[("tortie_cni_requests_total", (("result", "ok"), ("verb", "ADD")))] == 1
    assert got[("tortie_cni_request_duration_seconds_count", (("verb", "ADD"),))] == 1


def test_settings_default_off_and_port_must_be_a_number() -> None:
    base = {"NODENAME": "a"}
    config = config_from_env(base)
    assert (config.metrics_enabled, config.metrics_port, config.metrics_host) == (False, 9091, "")
    assert serve(config, logging.getLogger("t")) is None
    with pytest.raises(InvalidInput) as err:
        config_from_env({**base, "FELIX_PROMETHEUSMETRICSPORT": "http"})
    assert "FELIX_PROMETHEUSMETRICSPORT" in str(err.value) and "\n" not in str(err.value)


def test_port_in_use_is_one_clear_line() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        config = config_from_env(
            {
                "NODENAME": "a",
                "FELIX_PROMETHEUSMETRICSENABLED": "true",
                "FELIX_PROMETHEUSMETRICSPORT": str(port),
                "FELIX_PROMETHEUSMETRICSHOST": "127.0.0.1",
            }
        )
        with pytest.raises(InvalidInput) as err:
            serve(config, logging.getLogger("t"))
    text = str(err.value)
    assert f"port {port}" in text and "FELIX_PROMETHEUSMETRICSPORT" in text and "\n" not in text
