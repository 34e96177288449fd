"""The node agent's Prometheus metrics on the memory backend: per-pool blocks and addresses
of this node, the loop's counters, the CNI hooks, and the settings' bad input."""

from __future__ import annotations

import json
import logging
import socket
from typing import cast

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from tortie.datastore import keys
from tortie.datastore.memory import MemoryDatastore
from tortie.errors import InvalidInput
from tortie.ipam.requests import AutoAssignArgs
from tortie.ipam.service import Ipam
from tortie.node.birdproc import Bird
from tortie.node.config import config_from_env
from tortie.node.metrics import AgentMetrics, PoolUsage, pool_usage, serve, session_counts

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


def test_pool_usage_counts_only_this_nodes_blocks(store: MemoryDatastore) -> None:
    assert pool_usage(store, "a") == {POOL4: PoolUsage(), POOL6: PoolUsage()}
    for i in range(5):
        assign(store, "a", f"pod-{i}", 1, int(i == 0))
    assign(store, "b", "other", 1, 1)
    assert pool_usage(store, "a") == {POOL4: PoolUsage(2, 5), POOL6: PoolUsage(1, 1)}
    assert pool_usage(store, "b") == {POOL4: PoolUsage(1, 1), POOL6: PoolUsage(1, 1)}


def test_scrape_shows_pools_sessions_and_counters(store: MemoryDatastore) -> None:
    metrics = AgentMetrics()
    metrics.started(0.25)
    assign(store, "a", "pod", 1, 1)
    metrics.after_pass(store, "a", None, woke=True, applied=True)
    metrics.after_pass(store, "a", None, woke=True, applied=False)
    metrics.after_pass(store, "a", None, woke=False, applied=False)
    got = samples(metrics)
    assert got[("tortie_node_up", ())] == 1
    assert got[("tortie_node_startup_duration_seconds", ())] == 0.25
    assert got[("tortie_datastore_wakeups_total", ())] == 2
    assert got[("tortie_bird_reconfigurations_total", ())] == 1
    assert got[("tortie_bird_restarts_total", ())] == 0
    assert got[("tortie_node_blocks", (("pool", POOL4),))] == 1
    assert got[("tortie_node_addresses_in_use", (("pool", POOL6),))] == 1
    assert got[("tortie_bgp_sessions", (("family", "4"),))] == 0


def test_snapshot_follows_a_release_after_a_wakeup(store: MemoryDatastore) -> None:
    metrics = AgentMetrics()
    assign(store, "a", "pod", 2, 0)
    metrics.after_pass(store, "a", None, woke=True, applied=False)
    assert samples(metrics)[("tortie_node_addresses_in_use", (("pool", POOL4),))] == 2
    Ipam(store).release_by_handle("pod")
    metrics.after_pass(store, "a", None, woke=False, applied=False)  # not due yet
    assert samples(metrics)[("tortie_node_addresses_in_use", (("pool", POOL4),))] == 2
    metrics.after_pass(store, "a", None, woke=True, applied=False)
    assert samples(metrics)[("tortie_node_addresses_in_use", (("pool", POOL4),))] == 0


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
    metrics.after_pass(store, "a", cast(Bird, bird), woke=False, applied=False)
    metrics.after_pass(store, "a", cast(Bird, bird), woke=False, applied=False)
    bird.restarts = 3
    metrics.after_pass(store, "a", cast(Bird, bird), woke=False, applied=False)
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
