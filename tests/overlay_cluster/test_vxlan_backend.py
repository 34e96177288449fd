"""``CALICO_NETWORKING_BACKEND=vxlan``, IPv4 and IPv6 pools with ``vxlanMode: Always``,
four real agents (two hosts on each segment behind a plain router), one pod per host made
by the real ``calico`` plugin.  The segments' MTU is 1400, so the pod MTU must be
1400 - 70 = 1330 (VXLAN over IPv6 is the largest overhead enabled).

The tests share one cluster and run in file order; the node deletion comes last."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "node_cluster"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness import Host, wait_for
from overlay_lab import (
    DEVICE4,
    DEVICE6,
    SegmentedCluster,
    df_ping,
    fdb,
    link,
    neighbours,
    netns_processes,
    ping,
    require,
    unreachable,
    vxlan_routes,
)

from netns import Netns, NetnsPool

HOST_MTU = 1400
POD_MTU = HOST_MTU - 70


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SegmentedCluster]:
    require()
    tmp = tmp_path_factory.mktemp("vxlan-backend")
    store = {"DATASTORE_TYPE": "sqlite", "SQLITE_PATH": str(tmp / "tortie.db")}
    with NetnsPool() as pool:
        c = SegmentedCluster(pool, tmp, store, ["a", "a", "b", "b"], mtu=HOST_MTU)
        try:
            c.start_all(
                "dual",
                CALICO_NETWORKING_BACKEND="vxlan",
                CALICO_IPV4POOL_VXLAN="Always",
                CALICO_IPV6POOL_VXLAN="Always",
            )
            c.wait_running()
            for host in c.hosts:
                c.add_pod(host, f"pod{host.index}", "dual")
            for host in c.hosts:  # every other node's VTEP and blocks programmed here
                wait_for(
                    f"{host.name}: VXLAN routes to the 3 other nodes' blocks",
                    partial(routed, host, 6),
                    timeout=15,
                    detail=partial(c.log_tail, host),
                )
            yield c
        finally:
            c.close()


def routed(host: Host, count: int) -> bool:
    """``count`` VXLAN routes per family (a tunnel address and a block per peer)."""
    return all(len(vxlan_routes(host, v)) == count for v in (4, 6))


def pod(host: Host) -> tuple[Netns, list[str]]:
    return host.pods[f"pod{host.index}"]


def spec(cluster: SegmentedCluster, host: Host) -> dict[str, Any]:
    result: dict[str, Any] = cluster.node(host.name)["spec"]
    return result


def test_every_pod_reaches_every_pod_on_other_nodes_across_the_router(
    cluster: SegmentedCluster,
) -> None:
    # The router knows the two host subnets and nothing else.
    assert sorted(r["dst"] for r in cluster.router.routes("-4")) == ["10.1.0.0/24", "10.2.0.0/24"]
    assert not any("244" in r["dst"] for r in cluster.router.routes("-6"))
    assert unreachable(cluster, [4, 6]) == []
    h1, _h2, h3, _h4 = cluster.hosts
    # host-1 reaches host-3's pods through the tunnel: routes via host-3's tunnel
    # address, onlink, over the device; the FDB sends that MAC to host-3's address.
    s3 = spec(cluster, h3)
    for version, device, addr, mac in (
        (4, DEVICE4, s3["ipv4VXLANTunnelAddr"], s3["vxlanTunnelMACAddr"]),
        (6, DEVICE6, s3["ipv6VXLANTunnelAddr"], s3["vxlanTunnelMACAddrV6"]),
    ):
        routes = [r for r in vxlan_routes(h1, version).values() if r.get("gateway") == addr]
        assert len(routes) == 1 and routes[0]["dev"] == device, routes
        assert "onlink" in routes[0]["flags"]
        assert neighbours(h1, device)[addr] == mac
        assert fdb(h1, device)[mac] == cluster.host_address(h3, version)


def test_no_bird_runs(cluster: SegmentedCluster) -> None:
    for host in cluster.hosts:
        procs = netns_processes(host.ns)
        assert host.agent is not None and host.agent.pid in procs  # the check sees them
        assert "bird" not in procs.values(), procs
        assert not (host.run_dir / "bird.cfg").exists()
        assert not any(r.get("protocol") == "bird" for r in host.routes(4) + host.routes(6))


def test_largest_dont_fragment_ping_the_pod_mtu_allows_gets_through(
    cluster: SegmentedCluster,
) -> None:
    for host in cluster.hosts:
        assert (host.run_dir / "mtu").read_text().strip() == str(POD_MTU)  # published
        assert link(pod(host)[0], "eth0")["mtu"] == POD_MTU  # what the plugin gave the pod
        assert link(host.ns, DEVICE4)["mtu"] == HOST_MTU - 50
        assert link(host.ns, DEVICE6)["mtu"] == HOST_MTU - 70
    src = pod(cluster.hosts[0])[0]
    for dst in pod(cluster.hosts[2])[1]:  # across the router
        headers = 48 if ":" in dst else 28  # IPv6 + ICMPv6 / IPv4 + ICMP
        ok, out = df_ping(src, dst, POD_MTU - headers)
        assert ok, out
        ok, out = df_ping(src, dst, POD_MTU - headers + 1)
        assert not ok and "message too long" in out and str(POD_MTU) in out, out


def test_entries_deleted_by_hand_come_back(cluster: SegmentedCluster) -> None:
    h1, _h2, h3, _h4 = cluster.hosts
    s3 = spec(cluster, h3)
    tun4, mac4, tun6, mac6 = (
        s3["ipv4VXLANTunnelAddr"],
        s3["vxlanTunnelMACAddr"],
        s3["ipv6VXLANTunnelAddr"],
        s3["vxlanTunnelMACAddrV6"],
    )
    block4 = next(d for d, r in vxlan_routes(h1, 4).items() if r.get("gateway") == tun4)
    block6 = next(d for d, r in vxlan_routes(h1, 6).items() if r.get("gateway") == tun6)
    pod3_4, pod3_6 = pod(h3)[1]
    h1.ns.ip("route", "del", block4)
    h1.ns.ip("-6", "route", "del", block6)
    h1.ns.run("bridge", "fdb", "del", mac4, "dev", DEVICE4, "dst", cluster.host_address(h3, 4))
    h1.ns.ip("neigh", "del", tun6, "dev", DEVICE6)
    deleted = time.monotonic()
    assert block4 not in vxlan_routes(h1, 4) and mac4 not in fdb(h1, DEVICE4)
    assert not ping(pod(h1)[0], pod3_4, wait=1)  # the deletions did cut host-3 off
    assert not ping(pod(h1)[0], pod3_6, wait=1)

    def repaired() -> bool:
        return (
            block4 in vxlan_routes(h1, 4)
            and block6 in vxlan_routes(h1, 6)
            and fdb(h1, DEVICE4).get(mac4) == cluster.host_address(h3, 4)
            and neighbours(h1, DEVICE6).get(tun6) == mac6
        )

    wait_for("the hand-deleted entries back on host-1", repaired, timeout=15)
    took = time.monotonic() - deleted
    assert took < 12, f"repair took {took:.1f} s (dataplane resync every 10 s)"
    assert ping(pod(h1)[0], pod3_4) and ping(pod(h1)[0], pod3_6)
    assert "VXLAN: " in cluster.agent_log(h1)  # logged the repair


def test_agent_written_node_fields_round_trip_through_get_yaml_and_apply(
    cluster: SegmentedCluster,
) -> None:
    h2 = cluster.hosts[1]
    dumped = cluster.tortie("get", "node", h2.name, "-o", "yaml")
    assert dumped.returncode == 0, dumped.stderr
    doc = yaml.safe_load(dumped.stdout)
    s2 = doc["spec"]
    # the agent filled them in, and they are what its kernel uses
    dev4, dev6 = link(h2.ns, DEVICE4), link(h2.ns, DEVICE6)
    assert s2["vxlanTunnelMACAddr"] == dev4["address"]
    assert s2["vxlanTunnelMACAddrV6"] == dev6["address"]
    assert s2["ipv4VXLANTunnelAddr"] in {a["local"] for a in dev4["addr_info"]}
    assert s2["ipv6VXLANTunnelAddr"] in {a["local"] for a in dev6["addr_info"]}
    applied = cluster.tortie("apply", "-f", "-", stdin=dumped.stdout)
    assert applied.returncode == 0, applied.stderr
    assert spec(cluster, h2) == s2  # unchanged by the round trip

    # A MAC edited in the YAML and applied is the one every node's kernel uses.
    new4, new6 = "66:00:00:00:0a:04", "66:00:00:00:0a:06"
    doc["spec"].update(vxlanTunnelMACAddr=new4, vxlanTunnelMACAddrV6=new6)
    applied = cluster.tortie("apply", "-f", "-", stdin=yaml.safe_dump(doc))
    assert applied.returncode == 0, applied.stderr
    s2 = spec(cluster, h2)
    assert (s2["vxlanTunnelMACAddr"], s2["vxlanTunnelMACAddrV6"]) == (new4, new6)
    others = [h for h in cluster.hosts if h is not h2]

    def followed() -> bool:
        return (
            link(h2.ns, DEVICE4)["address"] == new4
            and link(h2.ns, DEVICE6)["address"] == new6
            and all(
                neighbours(h, DEVICE4).get(s2["ipv4VXLANTunnelAddr"]) == new4
                and neighbours(h, DEVICE6).get(s2["ipv6VXLANTunnelAddr"]) == new6
                and fdb(h, DEVICE4).get(new4) == cluster.host_address(h2, 4)
                and fdb(h, DEVICE6).get(new6) == cluster.host_address(h2, 6)
                for h in others
            )
        )

    wait_for("every node on host-2's new VTEP MACs", followed, timeout=10)
    assert unreachable(cluster, [4, 6]) == []
    again = yaml.safe_load(cluster.tortie("get", "node", h2.name, "-o", "yaml").stdout)
    assert again["spec"] == s2  # the agent kept the MACs it was given


def test_deleted_node_leaves_no_fdb_neighbour_or_route_anywhere(
    cluster: SegmentedCluster,
) -> None:
    h4 = cluster.hosts[3]
    s4 = spec(cluster, h4)
    others = cluster.hosts[:3]
    mine = {
        4: (s4["ipv4VXLANTunnelAddr"], s4["vxlanTunnelMACAddr"], DEVICE4),
        6: (s4["ipv6VXLANTunnelAddr"], s4["vxlanTunnelMACAddrV6"], DEVICE6),
    }

    def traces(h: Host) -> list[str]:
        found = []
        for version, (addr, mac, device) in mine.items():
            if addr in neighbours(h, device):
                found.append(f"{h.name}: neighbour {addr}")
            if mac in fdb(h, device):
                found.append(f"{h.name}: fdb {mac}")
            found += [
                f"{h.name}: route {d}"
                for d, r in vxlan_routes(h, version).items()
                if r.get("gateway") == addr or d.split("/")[0] == addr
            ]
        return found

    # per family: neighbour, FDB entry, route to the tunnel address, route to the block
    assert all(len(traces(h)) == 8 for h in others), [traces(h) for h in others]
    assert cluster.stop_agent(h4) == 0
    gone = cluster.tortie("delete", "node", h4.name)
    assert gone.returncode == 0, gone.stderr
    took = wait_for(
        "host-4's VTEP entries and routes gone from every other node",
        lambda: not any(traces(h) for h in others),
        timeout=10,
        detail=lambda: "\n".join(t for h in others for t in traces(h)),
    )
    assert took < 5, f"took {took:.1f} s"
    # host-4's pod and tunnel addresses went with it: 3 hosts x (2 pod + 2 tunnel) left
    check = cluster.tortie("ipam", "check")
    assert check.returncode == 0 and "found 0 problems" in check.stdout, check.stdout
    assert "Found 12 IPAM allocations" in check.stdout, check.stdout
    h4.pods.clear()
    assert unreachable(cluster, [4, 6]) == []
