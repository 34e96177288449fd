"""Every BGPConfiguration and BGPPeer field of issue 16 goes from the resource through the
peering core into BIRD's configuration, and real BIRD accepts the result (``bird -p``)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tortie.model.ippool import ippool_from_dict
from tortie.model.node import Node, node_from_dict
from tortie.node.bird import render
from tortie.node.peering import Local, read_password_files, routing_view


def node(name: str, n: int, labels: dict[str, str] | None = None, **bgp: Any) -> Node:
    return node_from_dict(
        {
            "kind": "Node",
            "metadata": {"name": name, "labels": labels or {}},
            "spec": {
                "bgp": {"ipv4Address": f"10.0.0.{n}/24", "ipv6Address": f"fd00::{n}/64", **bgp}
            },
        }
    )


POOLS = [
    ippool_from_dict({"kind": "IPPool", "metadata": {"name": n}, "spec": {"cidr": c, **extra}})
    for n, c, extra in (
        ("p4", "10.244.0.0/16", {}),
        ("p6", "fd10::/48", {}),
        ("hidden", "10.99.0.0/16", {"disableBGPExport": True}),
    )
]


def cfg(name: str, **spec: Any) -> dict[str, Any]:
    return {"kind": "BGPConfiguration", "metadata": {"name": name}, "spec": spec}


def peer(name: str, **spec: Any) -> dict[str, Any]:
    return {"kind": "BGPPeer", "metadata": {"name": name}, "spec": spec}


def build(
    configs: list[dict[str, Any]],
    peers: list[dict[str, Any]],
    nodes: list[Node] | None = None,
    me: str = "a",
    passwords: dict[str, str] | None = None,  # None: routing_view reads the files
) -> tuple[str, tuple[str, ...]]:
    nodes = nodes or [node("a", 1), node("b", 2)]
    n = next(int(x.ipv4_address.split(".")[3].split("/")[0]) for x in nodes if x.name == me)  # type: ignore[union-attr]
    view, warnings = routing_view(
        Local(me, f"10.0.0.{n}", f"10.0.0.{n}", f"fd00::{n}"),
        nodes,
        POOLS,
        [f"10.244.{n}.0/26"],
        [f"fd10:0:0:{n}::/122"],
        {f"/c/{c['metadata']['name']}": c for c in configs},
        {f"/p/{p['metadata']['name']}": p for p in peers},
        passwords=passwords,
    )
    return render(view), warnings


def protocol(text: str, name: str) -> str:
    m = re.search(
        rf"^(protocol \w+|filter|template bgp) {re.escape(name)}\b.*?^}}", text, re.S | re.M
    )
    assert m is not None, f"no {name} in\n{text}"
    return m.group(0)


def bird_accepts(text: str, tmp_path: Path) -> None:
    bird = shutil.which("bird") or "/usr/sbin/bird"
    if not Path(bird).exists():
        pytest.skip("needs BIRD 2 (Debian bird2) for 'bird -p'")
    conf = tmp_path / "bird.conf"
    conf.write_text(text)
    result = subprocess.run([bird, "-p", "-c", str(conf)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr + "\n" + text


DEFAULT = cfg(
    "default",
    asNumber=65010,
    nodeToNodeMeshEnabled=True,
    listenPort=1790,
    logSeverityScreen="Warning",
    serviceClusterIPs=[{"cidr": "10.96.0.0/12"}, {"cidr": "fd00:96::/112"}],
    serviceExternalIPs=[{"cidr": "192.0.2.0/24"}],
    serviceLoadBalancerIPs=[{"cidr": "198.51.100.0/24"}],
    communities=[{"name": "lab", "value": "65010:100"}, {"name": "big", "value": "65010:1:2"}],
    prefixAdvertisements=[
        {"cidr": "10.244.0.0/16", "communities": ["lab", "65010:7"]},
        {"cidr": "fd10::/48", "communities": ["big"]},
    ],
    ignoredInterfaces=["kube-ipvs0", "eth9*"],
    bindMode="NodeIP",
    nodeMeshMaxRestartTime="90s",
    nodeMeshPassword={"secretKeyRef": {"name": "/etc/tortie/mesh-password"}},
)


def test_every_bgpconfiguration_field_is_rendered(tmp_path: Path) -> None:
    text, warnings = build([DEFAULT], [], passwords={"/etc/tortie/mesh-password": "s3cret\n"})
    assert warnings == ()
    assert "local 10.0.0.1 port 1790 as 65010;" in protocol(text, "mesh4")  # asNumber, bindMode
    assert "local fd00::1 port 1790 as 65010;" in protocol(text, "mesh6")
    assert "strict bind on;" in protocol(text, "mesh4")  # bindMode NodeIP: listen there only
    assert "log stderr { warning, error, auth, fatal, bug };" in text  # logSeverityScreen
    mesh = protocol(text, "Mesh_10_0_0_2")
    assert "neighbor 10.0.0.2 port 1790 as 65010;" in mesh  # the peer listens there too
    assert 'password "s3cret";' in mesh and "graceful restart time 90;" in mesh
    for route in ("10.96.0.0/12", "192.0.2.0/24", "198.51.100.0/24"):  # services
        assert f"route {route} blackhole;" in protocol(text, "announce4")
    assert "route fd00:96::/112 blackhole;" in protocol(text, "announce6")
    exports = protocol(text, "export_bgp4")
    assert "if net ~ 10.244.0.0/16 then bgp_community.add((65010, 100));" in exports
    assert "if net ~ 10.244.0.0/16 then bgp_community.add((65010, 7));" in exports
    assert "bgp_large_community.add((65010, 1, 2));" in protocol(text, "export_bgp6")
    assert 'if proto = "announce4" then accept;' in exports
    assert "if net ~ [ 10.99.0.0/16+ ] then reject;" in exports  # disableBGPExport
    assert 'interface -"cali*", -"kube-ipvs0", -"eth9*", "*";' in text  # ignoredInterfaces
    bird_accepts(text, tmp_path)
    mesh_off, _ = build([cfg("default", nodeToNodeMeshEnabled=False)], [])
    assert "protocol bgp Mesh_" not in mesh_off


def test_node_specific_configuration_overrides_what_calico_allows(tmp_path: Path) -> None:
    per_node = cfg(
        "node.a",
        listenPort=1791,
        logSeverityScreen="Debug",
        prefixAdvertisements=[{"cidr": "10.244.0.0/16", "communities": ["65010:9"]}],
    )
    text, _ = build([DEFAULT, per_node], [], passwords={})
    assert "local 10.0.0.1 port 1791 as 65010;" in text and "log stderr all;" in text
    assert "bgp_community.add((65010, 9))" in text and "(65010, 100)" not in text
    # b listens where ITS configuration says: 1790
    assert "neighbor 10.0.0.2 port 1790 as 65010;" in protocol(text, "Mesh_10_0_0_2")
    b_text, _ = build([DEFAULT, per_node], [], me="b")
    assert "neighbor 10.0.0.1 port 1791 as 65010;" in protocol(b_text, "Mesh_10_0_0_1")
    bird_accepts(text, tmp_path)


def test_every_bgppeer_field_is_rendered(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = tmp_path / "tor-password"
    secret.write_text("tor-pass\n")
    peers = [
        peer(
            "tor4",
            peerIP="10.0.0.254:1179",
            asNumber="1.10",  # asdot: 65546
            keepOriginalNextHop=True,
            sourceAddress="None",
            maxRestartTime="2m",
            keepaliveTime="10s",
            ttlSecurity=2,
            numAllowedLocalASNumbers=2,
            password={"file": str(secret)},
        ),
        peer("tor6", peerIP="[fd00::254]:1179", asNumber=65010, nextHopMode="Self"),
        peer("only-b", node="b", peerIP="10.0.0.253", asNumber=64999),
        peer("racks", nodeSelector="rack == 'r1'", peerIP="10.0.0.252", asNumber=64998),
    ]
    nodes = [node("a", 1, {"rack": "r1"}), node("b", 2)]
    configs = [cfg("default", asNumber=65010)]
    text, warnings = build(configs, peers, nodes, passwords=None)  # reads the file
    assert warnings == ()
    tor4 = protocol(text, "Global_10_0_0_254")
    assert "neighbor 10.0.0.254 port 1179 as 65546;" in tor4
    assert "source address" not in tor4  # sourceAddress None
    assert "ttl security on;" in tor4 and "multihop 2;" in tor4
    assert (
        "allow local as 2;" in tor4
        and "keepalive time 10;" in tor4
        and "graceful restart time 120;" in tor4
    )
    assert 'password "tor-pass";' in tor4 and "next hop keep;" in tor4
    assert "import filter import_outside4;" in tor4 and "export filter export_outside4;" in tor4
    tor6 = protocol(text, "Global_fd00__254")
    assert "neighbor fd00::254 port 1179 as 65010;" in tor6  # iBGP outside router
    assert "source address fd00::1;" in tor6 and "next hop self;" in tor6
    assert "Node_10_0_0_253" not in text  # node: b
    assert "neighbor 10.0.0.252 as 64998;" in protocol(text, "Node_10_0_0_252")  # nodeSelector
    b_text, _ = build(configs, peers, nodes, me="b", passwords={})
    assert "Node_10_0_0_253" in b_text and "Node_10_0_0_252" not in b_text
    assert read_password_files([], str(tmp_path / "missing")) == {}
    bird_accepts(text, tmp_path)
    bird_accepts(b_text, tmp_path)


def test_node_as_and_cluster_id(tmp_path: Path) -> None:
    nodes = [
        node("a", 1, asNumber=65001),
        node("b", 2, asNumber=65002),
        node("rr", 3, {"rr": "y"}, routeReflectorClusterID="224.0.0.1"),
    ]
    text, _ = build([], [], nodes)
    assert "local as 65001;" in protocol(text, "mesh4")
    assert "neighbor 10.0.0.2 as 65002;" in protocol(text, "Mesh_10_0_0_2")  # eBGP
    assert "Mesh_10_0_0_3" not in text  # a reflector is not in the mesh
    bird_accepts(text, tmp_path)
    to_rr = [peer("to-rr", nodeSelector="all()", peerSelector="has(rr)")]
    rr_text, _ = build([cfg("default", nodeToNodeMeshEnabled=False)], to_rr, nodes, me="rr")
    # a and b have their own AS: eBGP, not clients; a same-AS node would be one
    assert "rr client" not in rr_text
    same_as = [node("a", 1), node("b", 2), nodes[2]]
    rr_text, _ = build([cfg("default", nodeToNodeMeshEnabled=False)], to_rr, same_as, me="rr")
    client = protocol(rr_text, "Global_10_0_0_1")
    assert "rr client;" in client and "rr cluster id 224.0.0.1;" in client
    assert "export filter export_client4;" in client
    assert "if source = RTS_BGP then accept;" in protocol(rr_text, "export_client4")
    bird_accepts(rr_text, tmp_path)


def test_outside_routes_never_reach_another_router_nor_the_nodes(tmp_path: Path) -> None:
    peers = [peer("tor", peerIP="10.0.0.254", asNumber=64600)]
    text, _ = build([], peers)
    assert "attribute int tortie_outside;" in text
    imports = protocol(text, "import_outside4")
    assert "tortie_outside = 1;" in imports
    # inside a pool an outside route loses to any node's; this node's blocks: refused
    assert "if net ~ [ 10.244.0.0/16+, 10.99.0.0/16+ ] then preference = 50;" in imports
    assert "if net ~ [ 10.244.1.0/26+ ] then reject;" in imports
    for name in ("export_outside4", "export_bgp4"):
        assert "if defined(tortie_outside) then reject;" in protocol(text, name)
    # no outside router: nothing of this in the text
    plain, _ = build([], [])
    assert "tortie_outside" not in plain
    assert "preference 110;" in protocol(plain, "kernel4")  # a pod route beats BGP
    bird_accepts(text, tmp_path)


def test_unreadable_or_unusable_password_is_a_warning(tmp_path: Path) -> None:
    peers = [peer("tor", peerIP="10.0.0.254", asNumber=64600, password={"file": "/nope"})]
    text, warnings = build([], peers, passwords=None)
    assert "password" not in protocol(text, "Global_10_0_0_254")
    assert len(warnings) == 1 and "BGPPeer(tor): password file /nope is missing" in warnings[0]
    text, warnings = build([], peers, passwords={"/nope": 'a"b'})
    assert "password" not in protocol(text, "Global_10_0_0_254")
    assert "contains a quote" in warnings[0]
