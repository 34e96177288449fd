"""A pool switched from ``vxlanMode: Never`` to ``Always`` while pods run: three real
agents with BIRD, all hosts on one segment (so ``Never`` works: BGP-learnt routes),
pods pinging each other all along.  IPv4 first, then IPv6: the pods keep reaching each
other (at most a couple of lost pings per flow), the routes move from BIRD to the
tunnel, and the pod MTU the agent publishes follows (host 1500 - 50 with IPv4 VXLAN,
- 70 once IPv6 VXLAN is on): a new pod gets it, and a don't-fragment ping of the
largest size it allows crosses the tunnel.  Then an IPIP pool added while running
is refused in one line by every agent, which keep working."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "node_cluster"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness import Host, wait_for
from overlay_lab import (
    DEVICE4,
    DEVICE6,
    POOL4,
    POOL6,
    SegmentedCluster,
    bgp_established,
    bird_routes_in,
    df_ping,
    link,
    require,
    route_get,
    set_pool_mode,
    unreachable,
)

from netns import Netns, NetnsPool
from tortie.node.tunnel import kernel_has_ipip

POOLS = {4: POOL4, 6: POOL6}
DEVICES = {4: DEVICE4, 6: DEVICE6}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SegmentedCluster]:
    require()
    tmp = tmp_path_factory.mktemp("pool-switch")
    store = {"DATASTORE_TYPE": "sqlite", "SQLITE_PATH": str(tmp / "tortie.db")}
    with NetnsPool() as pool:
        c = SegmentedCluster(pool, tmp, store, ["a", "a", "a"])
        try:
            c.start_all("dual", CALICO_NETWORKING_BACKEND="bird")
            c.wait_running()
            for host in c.hosts:
                c.add_pod(host, f"pod{host.index}", "dual")
            for host in c.hosts:
                wait_for(
                    f"{host.name}: 4 BGP sessions established",
                    partial(bgp_established, host, 4),
                    timeout=40,
                    detail=partial(c.log_tail, host),
                )
                for v in (4, 6):
                    wait_for(
                        f"{host.name}: BIRD's IPv{v} routes to both peers' blocks",
                        partial(bird_routed, host, v, 2),
                        timeout=20,
                        detail=partial(c.log_tail, host),
                    )
            assert unreachable(c, [4, 6]) == []
            yield c
        finally:
            c.close()


def bird_routed(host: Host, version: int, count: int) -> bool:
    return len(bird_routes_in(host, version, POOLS[version])) == count


def pod_addresses(cluster: SegmentedCluster, version: int) -> dict[str, str]:
    return {
        h.name: next(a for a in h.pods[f"pod{h.index}"][1] if (":" in a) == (version == 6))
        for h in cluster.hosts
    }


def tunnelled(cluster: SegmentedCluster, version: int) -> bool:
    """Every host sends to every other host's pod over the VXLAN device, and BIRD has
    withdrawn its routes from the kernel."""
    addrs = pod_addresses(cluster, version)
    return all(
        route_get(h, addr).get("dev") == DEVICES[version]
        for h in cluster.hosts
        for name, addr in addrs.items()
        if name != h.name
    ) and not any(bird_routes_in(h, version, POOLS[version]) for h in cluster.hosts)


class Pinger:
    """``ping -i 0.1`` from a pod, until stopped; how many answers were missing."""

    def __init__(self, src: Netns, dst: str) -> None:
        self.dst = dst
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", src.name, "ping", "-i", "0.1", "-W", "1", dst],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    def stop(self) -> tuple[int, int]:
        """(sent, lost)."""
        self.proc.send_signal(signal.SIGINT)
        out, _ = self.proc.communicate(timeout=10)
        m = re.search(r"(\d+) packets transmitted, (\d+) received", out)
        assert m, out
        return int(m.group(1)), int(m.group(1)) - int(m.group(2))


def switch_while_pinging(cluster: SegmentedCluster, version: int) -> None:
    h1 = cluster.hosts[0]
    src = h1.pods["pod1"][0]
    pingers = [
        Pinger(src, addr)
        for v in (4, 6)
        for name, addr in pod_addresses(cluster, v).items()
        if name != h1.name
    ]
    try:
        time.sleep(1.0)  # a second of answers before the switch
        set_pool_mode(cluster, version, vxlanMode="Always")
        took = wait_for(
            f"IPv{version} pod traffic through {DEVICES[version]} on every host",
            partial(tunnelled, cluster, version),
            timeout=20,
        )
        assert took < 10, f"the switch took {took:.1f} s"
        time.sleep(1.0)  # and a second after it
    finally:
        results = {p.dst: p.stop() for p in pingers}
    for dst, (sent, lost) in results.items():
        assert sent >= 15 and lost <= 2, f"ping {dst}: {lost} of {sent} lost"
    assert unreachable(cluster, [4, 6]) == []


def check_new_pod_mtu(cluster: SegmentedCluster, name: str, mtu: int, version: int) -> None:
    h1, h2 = cluster.hosts[0], cluster.hosts[1]
    wait_for(
        f"the published pod MTU to become {mtu}",
        lambda: all((h.run_dir / "mtu").read_text().strip() == str(mtu) for h in cluster.hosts),
        timeout=10,
    )
    addrs = cluster.add_pod(h1, name, "dual")
    assert link(h1.pods[name][0], "eth0")["mtu"] == mtu
    dst = pod_addresses(cluster, version)[h2.name]
    assert route_get(h1, dst)["dev"] == DEVICES[version]
    headers = 48 if version == 6 else 28
    ok, out = df_ping(h1.pods[name][0], dst, mtu - headers)
    assert ok, out
    ok, out = df_ping(h1.pods[name][0], dst, mtu - headers + 1)
    assert not ok and "message too long" in out and str(mtu) in out, out
    assert len(addrs) == 2


def test_ipv4_pool_never_to_always_keeps_pods_talking(cluster: SegmentedCluster) -> None:
    for host in cluster.hosts:  # before: BIRD's routes, native, no device, MTU 1500
        assert DEVICE4 not in host.ns.link_names()
        assert (host.run_dir / "mtu").read_text().strip() == "1500"
    switch_while_pinging(cluster, 4)
    assert all(bird_routed(h, 6, 2) for h in cluster.hosts)  # IPv6 still BIRD's
    check_new_pod_mtu(cluster, "late4", 1500 - 50, 4)


def test_ipv6_pool_never_to_always_keeps_pods_talking(cluster: SegmentedCluster) -> None:
    switch_while_pinging(cluster, 6)
    check_new_pod_mtu(cluster, "late6", 1500 - 70, 6)


def test_ipip_pool_added_while_running_is_refused_in_one_line(
    cluster: SegmentedCluster,
) -> None:
    if kernel_has_ipip():
        pytest.skip("this kernel has the ipip module; the refusal is for kernels without it")
    pool = (
        "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata: {name: legacy-ipip}\n"
        "spec: {cidr: 10.99.0.0/16, ipipMode: Always, vxlanMode: Never, natOutgoing: true}\n"
    )
    applied = cluster.tortie("apply", "-f", "-", stdin=pool)
    assert applied.returncode == 0, applied.stderr

    def refused(host: Host) -> list[str]:
        return [  # the agent's error lines about the pool
            line
            for line in cluster.agent_log(host).splitlines()
            if "legacy-ipip" in line and "[ERROR]" in line
        ]

    def said(host: Host) -> bool:
        return bool(refused(host))

    for host in cluster.hosts:
        wait_for(f"{host.name}: the refusal logged", partial(said, host), timeout=10)
    time.sleep(2.5)  # retried meanwhile (1 s, 2 s): still said once
    for host in cluster.hosts:
        lines = refused(host)
        assert len(lines) == 1, lines
        assert "ipip module" in lines[0] and "vxlanMode" in lines[0], lines[0]
        assert "Traceback" not in cluster.agent_log(host)
        assert cluster.agent_alive(host)
    assert unreachable(cluster, [4, 6]) == []  # nothing else held up
    gone = cluster.tortie("delete", "ippool", "legacy-ipip")
    assert gone.returncode == 0, gone.stderr
