"""BGP against a real router: FRR as top-of-rack, three nodes (``tortie node run`` + BIRD
each) in namespaces, one dual-stack pod per node, an outside host behind the ToR.

One fabric for the module (start-up is the slow part); every test states the whole BGP
set-up it needs (``Fabric.reset``: resources and node labels / AS / cluster ids)."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator
from functools import partial
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fabric import (
    OUTSIDE_NET4,
    OUTSIDE_NET6,
    TOR4,
    TOR6,
    TOR_AS,
    Fabric,
    doc,
    tor_peers,
)
from frr import require_frr
from harness import BIN, Host, host_addr, wait_for

from netns import NetnsPool, require_root

MESH, GLOBAL, NODE = "node-to-node mesh", "global", "node specific"


def _require() -> None:
    require_root()
    require_frr()
    for tool in ("bird", "birdc"):
        if not any(os.access(f"{d}/{tool}", os.X_OK) for d in ("/usr/sbin", "/usr/bin")):
            pytest.skip(f"needs BIRD 2 ({tool} not found): apt-get install bird2")
    if not (BIN / "tortie").exists():
        pytest.skip(f"{BIN}/tortie is not installed (pip install -e .)")


@pytest.fixture(scope="module")
def fab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fabric]:
    _require()
    with NetnsPool() as pool:
        fabric = Fabric(pool, tmp_path_factory.mktemp("frr"))
        try:
            for host in fabric.hosts:
                fabric.cluster.start_agent(host, "dual")
            for host in fabric.hosts:
                wait_for(
                    f"{host.name}: agent started",
                    (host.run_dir / "agent.json").exists,
                    30,
                    detail=lambda h=host: fabric.cluster.agent_log(h),  # type: ignore[misc]
                )
                fabric.cluster.add_pod(host, f"{host.name}-a", "dual")
            yield fabric
        finally:
            fabric.close()


def mesh_with(fab: Fabric, host: Host, *extra: tuple[str, str]) -> set[tuple[str, str]]:
    """The host's full-mesh sessions (both families) plus ``extra``."""
    mesh = {(host_addr(o.index, v), MESH) for o in fab.hosts if o is not host for v in (4, 6)}
    return mesh | set(extra)


def own_blocks(host: Host, version: int) -> set[str]:
    return host.blackholes(version)


def kernel_gateway(host: Host, prefix: str) -> str | None:
    version = 6 if ":" in prefix else 4
    for r in host.routes(version):
        if r["dst"] == prefix:
            return str(r.get("gateway") or r.get("type") or r.get("dev"))
    return None


def kernel_gateways(host: Host, prefix: str) -> set[str]:
    """Every next hop of the kernel route to ``prefix`` (ECMP included)."""
    for r in host.routes(6 if ":" in prefix else 4):
        if r["dst"] == prefix:
            hops = r.get("nexthops") or [r]
            return {str(h.get("gateway") or r.get("type") or h.get("dev")) for h in hops}
    return set()


def has_route(host: Host, prefix: str) -> bool:
    return bool(kernel_gateways(host, prefix))


def test_tor_learns_every_block_and_outside_host_reaches_every_pod(fab: Fabric) -> None:
    fab.reset(*tor_peers())
    for host in fab.hosts:
        fab.wait_sessions(host, mesh_with(fab, host, (TOR4, GLOBAL), (TOR6, GLOBAL)))
    want = {
        (block, host_addr(h.index, v))
        for h in fab.hosts
        for v in (4, 6)
        for block in own_blocks(h, v)
    }
    assert len(want) == 6  # one block per family per node

    def tor_has_blocks() -> bool:
        hops = {**fab.tor.next_hops(4), **fab.tor.next_hops(6)}
        return all(node in hops.get(block, set()) for block, node in want)

    wait_for("the ToR learns every block with its node as next hop", tor_has_blocks, 20)
    for block, node in want:  # the node itself: FRR's best path, installed in its kernel
        best = [p for p in fab.tor.routes(6 if ":" in block else 4)[block] if p.get("bestpath")]
        assert [h["ip"] for h in best[0]["nexthops"] if h.get("scope", "global") == "global"] == [
            node
        ]
    # the outside host: its only route is its default via the ToR; no NAT anywhere
    assert fab.unreachable([(fab.outside, a) for _, _, a in fab.pods()]) == []
    # the nodes learned the outside network from the ToR (they have no default route)
    for host in fab.hosts:
        assert kernel_gateway(host, OUTSIDE_NET4) == TOR4
        assert kernel_gateway(host, OUTSIDE_NET6) in fab.addresses(fab.tor_ns)


def test_node_status_lists_every_peer_with_its_type(fab: Fabric) -> None:
    fab.reset(*tor_peers())
    host = fab.hosts[0]
    fab.wait_sessions(host, mesh_with(fab, host, (TOR4, GLOBAL), (TOR6, GLOBAL)))
    text = host.tortie("node", "status")
    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()
    v4 = lines.index("IPv4 BGP status")
    v6 = lines.index("IPv6 BGP status")
    rows = [
        [c.strip() for c in line.strip("|").split("|")] for line in lines if line.startswith("|")
    ]
    assert rows[0] == ["PEER ADDRESS", "PEER TYPE", "STATE", "SINCE", "INFO"]
    body = {r[0]: r for r in rows if r[0] != "PEER ADDRESS"}
    for peer in (TOR4, TOR6):
        assert body[peer][1:3] == ["global", "up"] and body[peer][4] == "Established"
    for peer in (host_addr(2, 4), host_addr(3, 6)):
        assert body[peer][1:3] == ["node-to-node mesh", "up"]
    assert v4 < lines.index(next(x for x in lines if TOR4 in x)) < v6
    assert lines.index(next(x for x in lines if TOR6 in x)) > v6


def test_second_external_peer_never_gets_the_first_ones_routes(fab: Fabric) -> None:
    """Per-node peers: ``node: host-1`` and ``nodeSelector: rack == 'b'`` (host-2) with a
    second router.  It learns the pod blocks but none of the ToR's routes, not even one
    inside a pool; the ToR gets none of its routes; host-3, which does not peer with it,
    gets none of them from the other nodes."""
    tor2_ns = fab.pool.new()
    fab.cluster.attach(tor2_ns, "10.10.0.253", "fd10::253")
    tor2_nets = ("192.168.60.0/24", "fd60::/64", "10.244.254.0/24", "fd00:244:ffff::/64")
    tor2 = fab.router(tor2_ns, "tor2", 64700, "10.10.0.253", [1, 2, 3], networks=tor2_nets)
    tor_nets = ("10.244.253.0/24", "fd00:244:fffe::/64")  # inside the pools
    fab.tor.configure(*announce_lines(tor_nets, True))
    try:
        tor2_peers = [
            doc("BGPPeer", f"tor2-{who}-v{v}", {**sel, "peerIP": addr, "asNumber": 64700})
            for who, sel in (
                ("host1", {"node": "host-1"}),
                ("rack-b", {"nodeSelector": "rack == 'b'"}),
            )
            for v, addr in ((4, "10.10.0.253"), (6, "fd10::253"))
        ]
        fab.reset(*tor_peers(), *tor2_peers, nodes={"host-2": {"labels": {"rack": "b"}}})
        h1, h2, h3 = fab.hosts
        both = {(TOR4, GLOBAL), (TOR6, GLOBAL), ("10.10.0.253", NODE), ("fd10::253", NODE)}
        fab.wait_sessions(h1, mesh_with(fab, h1, *both))
        fab.wait_sessions(h2, mesh_with(fab, h2, *both))
        fab.wait_sessions(h3, mesh_with(fab, h3, (TOR4, GLOBAL), (TOR6, GLOBAL)))
        assert tor2.established() == {host_addr(i, v) for i in (1, 2) for v in (4, 6)}
        blocks = {b for h in fab.hosts for v in (4, 6) for b in own_blocks(h, v)}

        def tor2_has_blocks() -> bool:
            return blocks <= set(tor2.routes(4)) | set(tor2.routes(6))

        wait_for("the second router learns every pod block", tor2_has_blocks, 20)
        for prefix in tor2_nets + tor_nets:  # host-1 has both routers' routes
            wait_for(f"host-1 learns {prefix}", partial(has_route, h1, prefix), 20)
        learned = set(tor2.routes(4)) | set(tor2.routes(6))
        assert not {OUTSIDE_NET4, OUTSIDE_NET6, *tor_nets} & learned
        first = set(fab.tor.routes(4)) | set(fab.tor.routes(6))
        assert not set(tor2_nets) & first
        for prefix in tor2_nets:  # not passed on by the nodes that peer with it
            assert kernel_gateways(h3, prefix) == set(), prefix
    finally:
        fab.tor.configure(*announce_lines(tor_nets, False))
        fab.reset(*tor_peers())
        tor2.stop()


def announce_lines(prefixes: Iterable[str], on: bool) -> list[str]:
    """FRR commands that make the ToR announce (or stop announcing) ``prefixes``."""
    lines = [f"router bgp {TOR_AS}"]
    for v in (4, 6):
        lines.append(f"address-family ipv{v} unicast")
        lines += [f"{'' if on else 'no '}network {p}" for p in prefixes if (":" in p) == (v == 6)]
        lines.append("exit-address-family")
    return lines


def test_per_node_as_and_a_router_announcing_pool_prefixes(fab: Fabric) -> None:
    """host-3 in its own AS: eBGP between it and the others.  The ToR then announces the
    pools and every node's block itself: no node takes those over its own or another
    node's route to the pods (eBGP from the ToR would otherwise tie with host-3's)."""
    h1, _, h3 = fab.hosts
    fab.reset(*tor_peers(), nodes={"host-3": {"as_number": 64513}})
    for host in fab.hosts:
        fab.wait_sessions(host, mesh_with(fab, host, (TOR4, GLOBAL), (TOR6, GLOBAL)))
    block3 = sorted(own_blocks(h3, 4))[0]
    wait_for(
        "host-1 reaches host-3's block over eBGP (AS path 64513)",
        lambda: "BGP.as_path: 64513" in fab.birdc(h1, "show", "route", "for", block3, "all"),
        20,
    )
    assert "Neighbor AS:      64513" in fab.birdc(h1, "show", "protocols", "all", "Mesh_10_10_0_13")
    assert fab.unreachable(fab.pod_matrix()) == []
    pools = ["10.244.0.0/16", "fd00:244::/48"]
    blocks = {h.name: {v: sorted(own_blocks(h, v)) for v in (4, 6)} for h in fab.hosts}
    announced = pools + [b for h in blocks.values() for v in (4, 6) for b in h[v]]

    def tor_announces(on: bool) -> None:
        fab.tor.configure(*announce_lines(announced, on))

    tor = fab.addresses(fab.tor_ns)
    tor_announces(True)
    try:
        wait_for(
            "host-1 hears the ToR's pool prefix",
            lambda: (
                kernel_gateway(h1, "10.244.0.0/16") == TOR4
                and kernel_gateway(h1, "fd00:244::/48") in fab.addresses(fab.tor_ns)
            ),
            20,
        )
        for host in fab.hosts:
            for other in fab.hosts:
                for v in (4, 6):
                    for block in blocks[other.name][v]:
                        hops = kernel_gateways(host, block)
                        if other is host:
                            assert hops == {"blackhole"}, (host.name, block)
                        else:  # via the nodes (eBGP peers may add a second path)
                            assert hops and not hops & tor, (host.name, block, hops)
            for _, addrs in host.pods.values():  # the pod routes themselves: untouched
                for a in addrs:
                    assert kernel_gateway(host, a).startswith("cali"), (host.name, a)  # type: ignore[union-attr]
        # BIRD on host-1 keeps the ToR's path for host-3's block, but not as the best
        detail = fab.birdc(h1, "show", "route", "for", blocks["host-3"][4][0], "all")
        assert "Global_10_10_0_254" in detail and "* (100)" in detail.replace("[", " ")
        assert fab.unreachable(fab.pod_matrix()) == []
    finally:
        tor_announces(False)
        fab.reset(*tor_peers())


def test_route_reflector_chosen_by_label(fab: Fabric) -> None:
    """Calico's recipe: mesh off, one node labelled and given routeReflectorClusterID, a
    BGPPeer peering every node with the nodes the label selects.  The ToR peers with the
    reflector only; the reflector passes the clients' blocks to it and its routes to the
    clients."""
    rr_label = {"route-reflector": "true"}
    fab.reset(
        doc("BGPConfiguration", "default", {"nodeToNodeMeshEnabled": False}),
        doc(
            "BGPPeer",
            "peer-with-route-reflectors",
            {"nodeSelector": "all()", "peerSelector": "route-reflector == 'true'"},
        ),
        *[
            doc(
                "BGPPeer",
                f"rr-tor-v{v}",
                {"nodeSelector": "route-reflector == 'true'", "peerIP": a, "asNumber": TOR_AS},
            )
            for v, a in ((4, TOR4), (6, TOR6))
        ],
        nodes={"host-1": {"labels": rr_label, "cluster_id": "224.0.0.1"}},
    )
    rr, c1, c2 = fab.hosts
    for client in (c1, c2):  # exactly one session per family: to the reflector
        fab.wait_sessions(client, {(host_addr(1, 4), GLOBAL), (host_addr(1, 6), GLOBAL)})
    fab.wait_sessions(
        rr,
        {(host_addr(i, v), GLOBAL) for i in (2, 3) for v in (4, 6)} | {(TOR4, NODE), (TOR6, NODE)},
    )
    assert "rr client;" in (rr.run_dir / "bird.cfg").read_text()
    assert fab.unreachable(fab.pod_matrix()) == []

    # the clients' blocks reach the ToR through the reflector, next hop the client itself
    def tor_learned(block: str, v: int, client: Host) -> bool:
        return host_addr(client.index, v) in fab.tor.next_hops(v).get(block, set())

    def outside_route(client: Host) -> bool:
        return kernel_gateway(client, OUTSIDE_NET4) == TOR4 and (
            kernel_gateway(client, OUTSIDE_NET6) in fab.addresses(fab.tor_ns)
        )

    for client in (c1, c2):
        for v in (4, 6):
            for block in own_blocks(client, v):
                wait_for(f"ToR learns {block}", partial(tor_learned, block, v, client), 20)
        wait_for(  # the ToR's routes, reflected to the clients
            f"{client.name} learns the outside network through the reflector",
            partial(outside_route, client),
            20,
        )
    assert fab.unreachable([(fab.outside, a) for _, _, a in fab.pods()]) == []
    fab.reset(*tor_peers())
    for host in fab.hosts:  # back to the mesh
        fab.wait_sessions(host, mesh_with(fab, host, (TOR4, GLOBAL), (TOR6, GLOBAL)))


def test_configuration_and_peer_options_as_the_router_sees_them(fab: Fabric) -> None:
    """listenPort, service ranges from every node, communities, a password from a file,
    ttlSecurity and maxRestartTime: each checked on the real router or socket."""
    password = fab.tmp / "tor-password"
    password.write_text("tortie-md5\n")
    v4_neighbors = [host_addr(h.index, 4) for h in fab.hosts]
    tor_side = ["router bgp 64600"]
    for n in v4_neighbors:
        tor_side += [f"neighbor {n} password tortie-md5", f"neighbor {n} ttl-security hops 1"]
    fab.tor.configure(*tor_side)
    try:
        fab.reset(
            doc(
                "BGPConfiguration",
                "default",
                {
                    "listenPort": 1790,
                    "serviceClusterIPs": [{"cidr": "10.96.0.0/12"}],
                    "serviceLoadBalancerIPs": [{"cidr": "fd00:96::/112"}],
                    "communities": [{"name": "pods", "value": "65000:100"}],
                    "prefixAdvertisements": [
                        {"cidr": "10.244.0.0/16", "communities": ["pods", "64512:1:2"]}
                    ],
                },
            ),
            doc(
                "BGPPeer",
                "tor-v4",
                {
                    "peerIP": TOR4,
                    "asNumber": TOR_AS,
                    "password": {"file": str(password)},
                    "ttlSecurity": 1,
                    "maxRestartTime": "90s",
                },
            ),
            doc("BGPPeer", "tor-v6", {"peerIP": TOR6, "asNumber": TOR_AS}),
        )
        for host in fab.hosts:  # the mesh now dials port 1790: established means heard
            fab.wait_sessions(host, mesh_with(fab, host, (TOR4, GLOBAL), (TOR6, GLOBAL)))
        listening = fab.hosts[0].ns.run("ss", "-ltnH").stdout
        assert ":1790 " in listening and ":179 " not in listening
        # MD5 and TTL security are enforced by the router: established means both matched
        assert set(v4_neighbors) <= fab.tor.established()
        neighbor = fab.tor.json(f"show bgp neighbors {v4_neighbors[0]}")[v4_neighbors[0]]
        assert neighbor["gracefulRestartInfo"]["timers"]["receivedRestartTimer"] == 90
        nodes = {4: set(v4_neighbors), 6: {host_addr(h.index, 6) for h in fab.hosts}}

        def announced_by_all(v: int, service: str) -> bool:
            return fab.tor.next_hops(v).get(service) == nodes[v]

        for v, service in ((4, "10.96.0.0/12"), (6, "fd00:96::/112")):
            wait_for(f"every node announces {service}", partial(announced_by_all, v, service), 20)
        block = sorted(own_blocks(fab.hosts[0], 4))[0]
        paths = fab.tor.json(f"show bgp ipv4 unicast {block}")["paths"]
        assert paths[0]["community"]["string"] == "65000:100"
        assert paths[0]["largeCommunity"]["string"] == "64512:1:2"
    finally:
        fab.tor.configure(
            "router bgp 64600",
            *(f"no neighbor {n} password" for n in v4_neighbors),
            *(f"no neighbor {n} ttl-security hops 1" for n in v4_neighbors),
        )
        fab.reset(*tor_peers())
