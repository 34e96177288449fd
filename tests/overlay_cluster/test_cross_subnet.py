"""``CALICO_NETWORKING_BACKEND=bird`` with ``vxlanMode: CrossSubnet`` pools for both
families: four real agents with their BIRDs (two hosts per segment behind a plain
router, an iBGP full mesh across it), one pod per host.  Traffic to a node on the same
segment is routed natively via that node's host address; to the other segment it goes
through the tunnel; BIRD installs nothing inside the pools."""

from __future__ import annotations

import sys
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
    netns_processes,
    ping,
    require,
    route_get,
    unreachable,
    vxlan_routes,
)

from netns import NetnsPool
from vxlan_lab import tx_packets


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SegmentedCluster]:
    require()
    tmp = tmp_path_factory.mktemp("cross-subnet")
    store = {"DATASTORE_TYPE": "sqlite", "SQLITE_PATH": str(tmp / "tortie.db")}
    with NetnsPool() as pool:
        c = SegmentedCluster(pool, tmp, store, ["a", "a", "b", "b"])
        try:
            c.start_all(
                "dual",
                CALICO_NETWORKING_BACKEND="bird",
                CALICO_IPV4POOL_VXLAN="CrossSubnet",
                CALICO_IPV6POOL_VXLAN="CrossSubnet",
            )
            c.wait_running()
            for host in c.hosts:
                c.add_pod(host, f"pod{host.index}", "dual")
            for host in c.hosts:
                wait_for(
                    f"{host.name}: 6 BGP sessions established",
                    partial(bgp_established, host, 6),
                    timeout=40,
                    detail=partial(c.log_tail, host),
                )
                wait_for(
                    f"{host.name}: routes to the 3 other nodes' blocks",
                    partial(routed, host),
                    timeout=15,
                    detail=partial(c.log_tail, host),
                )
            yield c
        finally:
            c.close()


def routed(host: Host) -> bool:
    # per family: 3 blocks, and a tunnel address route for each of the 2 VTEPs across
    # the router and each of the 1 on this segment (Calico programs every VTEP)
    return all(len(vxlan_routes(host, v)) == 6 for v in (4, 6))


def test_same_subnet_is_native_and_cross_subnet_goes_through_the_tunnel(
    cluster: SegmentedCluster,
) -> None:
    for host in cluster.hosts:
        assert "bird" in netns_processes(host.ns).values()  # this is the BGP backend
        for other in cluster.hosts:
            if other is host:
                continue
            same = cluster.segment[other.name] == cluster.segment[host.name]
            spec = cluster.node(other.name)["spec"]
            for addr in other.pods[f"pod{other.index}"][1]:
                v = 6 if ":" in addr else 4
                got = route_get(host, addr)
                if same:  # natively via the peer's host address, no VXLAN device
                    want = ("eth0", cluster.host_address(other, v))
                else:  # via the peer's tunnel address over the VXLAN device
                    tunnel = spec["ipv4VXLANTunnelAddr" if v == 4 else "ipv6VXLANTunnelAddr"]
                    want = (DEVICE4 if v == 4 else DEVICE6, tunnel)
                assert (got["dev"], got.get("gateway")) == want, (host.name, addr, got)
        # BIRD learnt the blocks but installs none inside the VXLAN pools: tortie does
        assert bird_routes_in(host, 4, POOL4) == [] and bird_routes_in(host, 6, POOL6) == []
    assert unreachable(cluster, [4, 6]) == []


def test_only_cross_subnet_traffic_is_encapsulated(cluster: SegmentedCluster) -> None:
    h1, h2, h3, _h4 = cluster.hosts
    src = h1.pods["pod1"][0]
    for device, same, across in (
        (DEVICE4, h2.pods["pod2"][1][0], h3.pods["pod3"][1][0]),
        (DEVICE6, h2.pods["pod2"][1][1], h3.pods["pod3"][1][1]),
    ):
        before = tx_packets(h1.ns, device)
        assert all(ping(src, same) for _ in range(5))
        assert tx_packets(h1.ns, device) == before  # nothing went into the tunnel
        assert all(ping(src, across) for _ in range(5))
        assert tx_packets(h1.ns, device) >= before + 5
