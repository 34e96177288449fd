"""Two hosts with ``tortie node run`` and BIRD, metrics on: scraped over HTTP from inside
a host's namespace and parsed with prometheus_client's parser, they show the BGP sessions
per family and this host's blocks and addresses once a pod is added."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness import BIN, POOL4, POOL6, Cluster, Host, host_addr, wait_for

from netns import NetnsPool, require_root

PORT = "9123"
SCRAPE = (
    "import sys, urllib.request;"
    "sys.stdout.write(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())"
)
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@pytest.fixture(scope="module")
def pool() -> Iterator[NetnsPool]:
    require_root()
    for tool in ("bird", "birdc"):
        if not any(os.access(f"{d}/{tool}", os.X_OK) for d in ("/usr/sbin", "/usr/bin", "/sbin")):
            pytest.skip(f"needs BIRD 2 ({tool} not found): apt-get install bird2")
    if not (BIN / "tortie").exists():
        pytest.skip(f"{BIN}/tortie is not installed (pip install -e .)")
    with NetnsPool() as p:
        yield p


def scrape(host: Host, address: str) -> Samples:
    url = f"http://{address}:{PORT}/metrics"
    proc = subprocess.run(
        ["ip", "netns", "exec", host.ns.name, sys.executable, "-c", SCRAPE, url],
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    if proc.returncode != 0:
        return {}
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(proc.stdout)
        for s in family.samples
    }


def has(host: Host, address: str, want: Samples) -> bool:
    got = scrape(host, address)
    return all(got.get(k) == v for k, v in want.items())


def test_metrics_scraped_from_a_running_agent(pool: NetnsPool, tmp_path: Path) -> None:
    store = {"DATASTORE_TYPE": "sqlite", "SQLITE_PATH": str(tmp_path / "tortie.db")}
    cluster = Cluster(pool, tmp_path, store, size=2)
    on = {"FELIX_PROMETHEUSMETRICSENABLED": "true", "FELIX_PROMETHEUSMETRICSPORT": PORT}
    h1, h2 = cluster.hosts
    try:
        cluster.start_agent(h1, "dual", **on)
        cluster.start_agent(h2, "dual")
        sessions: Samples = {
            (name, (("family", f),)): 1.0
            for name in ("tortie_bgp_sessions", "tortie_bgp_sessions_established")
            for f in ("4", "6")
        }
        for address in (host_addr(1, 4), f"[{host_addr(1, 6)}]"):  # every family's address
            wait_for(
                f"metrics on {address}: one established session per family",
                partial(has, h1, address, {**sessions, ("tortie_node_up", ()): 1.0}),
                timeout=40,
                detail=lambda: f"{scrape(h1, host_addr(1, 4))}\n{cluster.agent_log(h1)}",
            )
        before = scrape(h1, host_addr(1, 4))
        assert before[("tortie_node_blocks", (("pool", POOL4),))] == 0
        assert before[("tortie_node_startup_duration_seconds", ())] > 0
        assert before[("tortie_bird_reconfigurations_total", ())] >= 1
        cluster.add_pod(h1, "pod-a", "dual")
        cluster.add_pod(h1, "pod-b", "ipv4")
        wait_for(
            "metrics: the pods' blocks and addresses",
            partial(
                has,
                h1,
                host_addr(1, 4),
                {
                    ("tortie_node_blocks", (("pool", POOL4),)): 1.0,
                    ("tortie_node_blocks", (("pool", POOL6),)): 1.0,
                    ("tortie_node_addresses_in_use", (("pool", POOL4),)): 2.0,
                    ("tortie_node_addresses_in_use", (("pool", POOL6),)): 1.0,
                },
            ),
            timeout=15,
            detail=lambda: str(scrape(h1, host_addr(1, 4))),
        )
        after = scrape(h1, host_addr(1, 4))
        assert after[("tortie_datastore_wakeups_total", ())] >= 1
        # The pods' ADDs went through the agent's CNI service: counted and timed.
        assert after[("tortie_cni_requests_total", (("result", "ok"), ("verb", "ADD")))] == 2
        assert after[("tortie_cni_request_duration_seconds_count", (("verb", "ADD"),))] == 2
        assert scrape(h2, host_addr(2, 4)) == {}  # metrics are off by default
    finally:
        cluster.close()


def test_port_in_use_stops_the_agent_with_one_line(pool: NetnsPool, tmp_path: Path) -> None:
    store = {"DATASTORE_TYPE": "sqlite", "SQLITE_PATH": str(tmp_path / "tortie.db")}
    cluster = Cluster(pool, tmp_path, store, size=1)
    (host,) = cluster.hosts
    busy = subprocess.Popen(
        ["ip", "netns", "exec", host.ns.name, sys.executable, "-m", "http.server", PORT],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(
            "the port to be taken",
            lambda: host.ns.run("ss", "-ltn", check=False).stdout.count(f":{PORT}") > 0,
        )
        cluster.start_agent(
            host, "ipv4", FELIX_PROMETHEUSMETRICSENABLED="true", FELIX_PROMETHEUSMETRICSPORT=PORT
        )
        assert host.agent is not None
        rc = host.agent.wait(timeout=30)
        host.agent = None
        log = cluster.agent_log(host)
        assert rc == 2, log
        errors = [line for line in log.splitlines() if PORT in line]
        assert len(errors) == 1 and "FELIX_PROMETHEUSMETRICSPORT" in errors[0], log
        assert "Traceback" not in log
    finally:
        busy.terminate()
        busy.wait(timeout=10)
        cluster.close()
