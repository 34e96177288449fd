"""The BIRD 2 configuration the agent renders (``tortie.node.bird.render``), read as text,
and, when BIRD is installed, every variant checked by ``bird -p -c``."""

from __future__ import annotations

import ipaddress
import logging
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tortie.datastore.memory import MemoryDatastore
from tortie.node.bird import Peer, RoutingView, render
from tortie.node.config import config_from_env
from tortie.node.hostaddrs import HostAddress
from tortie.node.hostprep import FakeHost
from tortie.node.routerid import hashed_router_id
from tortie.node.routing import load_view
from tortie.node.startup import startup

LOG = logging.getLogger("test.node.bird")

PEERS = (
    Peer("node-b", "10.0.0.2", "fd00::2"),
    Peer("node-c", "10.0.0.3", None),  # no IPv6 address
    Peer("node-d", None, "fd00::4"),  # IPv6-only
)


def dual(**kw: object) -> RoutingView:
    base: dict[str, object] = {
        "node_name": "node-a",
        "router_id": "10.0.0.1",
        "as_number": 64512,
        "ipv4": "10.0.0.1",
        "ipv6": "fd00::1",
        "peers": PEERS,
        "blocks4": ("10.244.1.0/26", "10.244.7.64/26"),
        "blocks6": ("fd00:244:0:1::/122",),
        "pools4": ("10.244.0.0/16",),
        "pools6": ("fd00:244::/48",),
    }
    base.update(kw)
    return RoutingView(**base)  # type: ignore[arg-type]


def v4_only(**kw: object) -> RoutingView:
    return dual(ipv6=None, blocks6=(), pools6=(), **kw)


def v6_only(**kw: object) -> RoutingView:
    return dual(ipv4=None, router_id=hashed_router_id("node-a"), blocks4=(), pools4=(), **kw)


def protocol(text: str, name: str) -> str:
    """The body of ``protocol <kind> <name> ...{ ... }`` (first closing brace at column 0)."""
    m = re.search(rf"^protocol \w+ {re.escape(name)}\b.*?^}}", text, re.S | re.M)
    assert m is not None, f"no protocol {name}"
    return m.group(0)


def sessions(text: str) -> dict[str, tuple[str, str]]:
    """Mesh session name -> (neighbor line, source address line)."""
    out = {}
    for name in re.findall(r"^protocol bgp (Mesh_\S+) from", text, re.M):
        body = protocol(text, name)
        neighbor = re.search(r"neighbor (\S+ as \d+);", body)
        source = re.search(r"source address (\S+);", body)
        assert neighbor and source
        out[name] = (neighbor.group(1), source.group(1))
    return out


def test_dual_stack_has_one_session_per_peer_and_family() -> None:
    text = render(dual())
    assert text.count("router id ") == 1 and "router id 10.0.0.1;" in text
    assert sessions(text) == {
        "Mesh_10_0_0_2": ("10.0.0.2 as 64512", "10.0.0.1"),
        "Mesh_10_0_0_3": ("10.0.0.3 as 64512", "10.0.0.1"),
        "Mesh_fd00__2": ("fd00::2 as 64512", "fd00::1"),
        "Mesh_fd00__4": ("fd00::4 as 64512", "fd00::1"),
    }
    assert "from mesh4" in protocol(text, "Mesh_10_0_0_3")
    assert "from mesh6" in protocol(text, "Mesh_fd00__4")
    assert 'protocol direct { ipv4; ipv6; interface -"cali*", "*"; }' in text
    for v in (4, 6):
        assert f"protocol kernel kernel{v}" in text and f"protocol static blocks{v}" in text
    assert "route 10.244.1.0/26 blackhole;" in protocol(text, "blocks4")
    assert "route 10.244.7.64/26 blackhole;" in protocol(text, "blocks4")
    assert "route fd00:244:0:1::/122 blackhole;" in protocol(text, "blocks6")


def test_render_is_deterministic_and_ignores_peer_order() -> None:
    assert render(dual()) == render(dual(peers=tuple(reversed(PEERS))))
    assert render(dual()) != render(dual(peers=PEERS[:1]))


def test_ipv4_only_has_no_ipv6_anything() -> None:
    text = render(v4_only())
    assert "ipv6" not in text and "fd00" not in text
    assert set(sessions(text)) == {"Mesh_10_0_0_2", "Mesh_10_0_0_3"}
    assert 'protocol direct { ipv4; interface -"cali*", "*"; }' in text


def test_ipv6_only_uses_the_hashed_router_id() -> None:
    rid = hashed_router_id("node-a")
    assert re.fullmatch(r"\d+\.\d+\.\d+\.\d+", rid)
    text = render(v6_only())
    assert f"router id {rid};" in text
    assert "ipv4" not in text and "10.0.0" not in text
    assert set(sessions(text)) == {"Mesh_fd00__2", "Mesh_fd00__4"}


def test_no_address_means_no_routing_protocols() -> None:
    text = render(dual(ipv4=None, ipv6=None, router_id=hashed_router_id("node-a")))
    assert "protocol direct" not in text and "protocol bgp" not in text
    assert "protocol device" in text


def test_own_node_and_own_address_are_never_peers() -> None:
    peers = (*PEERS, Peer("node-a", "10.0.0.1", "fd00::1"), Peer("ghost", "10.0.0.1", None))
    assert sessions(render(dual(peers=peers))) == sessions(render(dual()))


def test_peer_with_its_own_as_number() -> None:
    text = render(dual(peers=(Peer("node-b", "10.0.0.2", "fd00::2", as_number=64999),)))
    assert sessions(text)["Mesh_10_0_0_2"][0] == "10.0.0.2 as 64999"
    assert sessions(text)["Mesh_fd00__2"][0] == "fd00::2 as 64999"
    assert "local as 64512;" in text


def test_timers() -> None:
    default = render(dual())
    assert "hold time" not in default and "keepalive time" not in default
    assert "connect retry time 5;" in default
    text = render(dual(hold_time=9, connect_retry=2))
    assert text.count("hold time 9;") == 2 and text.count("keepalive time 3;") == 2
    assert "connect retry time 2;" in text
    assert "keepalive time 1;" in render(dual(hold_time=3))


def export_filter(text: str, version: int) -> list[str]:
    m = re.search(rf"^filter export_bgp{version} {{\n(.*?)^}}", text, re.S | re.M)
    assert m is not None
    return [line.strip() for line in m.group(1).splitlines()]


def test_aggregation_filter_order() -> None:
    """First match wins: the block itself is sent, anything more specific inside this
    node's blocks is refused (the block covers it), other routes inside a pool (borrowed
    addresses learnt from the kernel) are sent, everything else is refused."""
    rules = export_filter(render(dual()), 4)
    assert rules == [
        "if net ~ [ 10.244.1.0/26, 10.244.7.64/26 ] then accept;",
        "if net ~ [ 10.244.1.0/26+, 10.244.7.64/26+ ] then reject;",
        "if net ~ [ 10.244.0.0/16+ ] then accept;",
        "reject;",
    ]
    assert export_filter(render(dual()), 6) == [
        "if net ~ [ fd00:244:0:1::/122 ] then accept;",
        "if net ~ [ fd00:244:0:1::/122+ ] then reject;",
        "if net ~ [ fd00:244::/48+ ] then accept;",
        "reject;",
    ]


def decide(rules: list[str], prefix: str) -> str:
    """Run the rendered filter on one route as BIRD does: first matching rule wins;
    ``a/n`` in a set matches that prefix only, ``a/n+`` it and everything inside it."""
    net = ipaddress.ip_network(prefix)
    for rule in rules:
        m = re.fullmatch(r"if net ~ \[ (.*) \] then (accept|reject);", rule)
        if m is None:
            assert rule in ("accept;", "reject;"), rule
            return rule[:-1]
        for item in m.group(1).split(", "):
            cidr = ipaddress.ip_network(item.rstrip("+"))
            if net == cidr or (item.endswith("+") and net.subnet_of(cidr)):  # type: ignore[arg-type]
                return m.group(2)
    raise AssertionError("filter falls through without a decision")


@pytest.mark.parametrize(
    ("prefix", "verdict"),
    [
        ("10.244.1.0/26", "accept"),  # own block: sent, once
        ("10.244.7.64/26", "accept"),
        ("10.244.1.5/32", "reject"),  # pod inside own block: the block covers it
        ("10.244.7.96/27", "reject"),
        ("10.244.2.9/32", "accept"),  # borrowed address in another node's block
        ("10.244.9.0/26", "accept"),  # a block inside the pool
        ("10.244.0.0/16", "accept"),
        ("10.0.0.0/24", "reject"),  # host link
        ("0.0.0.0/0", "reject"),  # default route
        ("10.245.0.1/32", "reject"),  # outside every pool
    ],
)
def test_aggregation_filter_semantics_ipv4(prefix: str, verdict: str) -> None:
    assert decide(export_filter(render(dual()), 4), prefix) == verdict


@pytest.mark.parametrize(
    ("prefix", "verdict"),
    [
        ("fd00:244:0:1::/122", "accept"),
        ("fd00:244:0:1::5/128", "reject"),
        ("fd00:244:0:9::7/128", "accept"),
        ("fd00::/64", "reject"),
        ("::/0", "reject"),
    ],
)
def test_aggregation_filter_semantics_ipv6(prefix: str, verdict: str) -> None:
    assert decide(export_filter(render(dual()), 6), prefix) == verdict


def test_filters_without_blocks_or_pools() -> None:
    assert export_filter(render(dual(blocks4=())), 4) == [
        "if net ~ [ 10.244.0.0/16+ ] then accept;",
        "reject;",
    ]
    no_pools = render(dual(blocks4=(), pools4=()))
    assert export_filter(no_pools, 4) == ["reject;"]
    assert protocol(no_pools, "blocks4").count("route ") == 0


def test_kernel_learns_and_programs_only_bgp_and_blackholes() -> None:
    body = protocol(render(dual()), "kernel4")
    assert "learn;" in body
    # tortie's own VXLAN routes (protocol 81) are not learned; everything else is
    assert "import filter { if krt_source = 81 then reject; accept; };" in body
    assert 'if proto = "blocks4" || source = RTS_BGP then accept;' in body
    assert "net ~" not in body  # no VXLAN pools: nothing held back from the kernel


def test_routes_inside_vxlan_pools_are_never_installed_by_bird() -> None:
    text = render(dual(tunneled4=("10.244.0.0/16",), tunneled6=("fd00:244::/48",)))
    v4, v6 = protocol(text, "kernel4"), protocol(text, "kernel6")
    assert "if source = RTS_BGP && net ~ [ 10.244.0.0/16+ ] then reject;" in v4
    assert "if source = RTS_BGP && net ~ [ fd00:244::/48+ ] then reject;" in v6
    # the node's own blocks are still blackholed (and so announced)
    assert "route 10.244.1.0/26 blackhole;" in protocol(text, "blocks4")
    mesh = re.search(r"^template bgp mesh4 \{.*?^\}", render(dual()), re.S | re.M)
    assert mesh is not None and "gateway recursive;" in mesh.group(0)


def test_ipv6_support_off_renders_no_ipv6(tmp_path: Path) -> None:
    """FELIX_IPV6SUPPORT=false on a dual-stack host: no IPv6 channel, session, block or
    pool in BIRD, although the Node and the default IPv6 pool may exist."""
    store = MemoryDatastore()
    host = FakeHost(
        given=[
            HostAddress("eth0", 2, "10.10.0.11", 24, 4, "global"),
            HostAddress("eth0", 2, "fd10::11", 64, 6, "global"),
        ],
        default_routes={4, 6},
    )
    env = {
        "NODENAME": "node-a",
        "CALICO_NODENAME_FILE": str(tmp_path / "nodename"),
        "IP": "autodetect",
        "IP6": "autodetect",
        "FELIX_IPV6SUPPORT": "false",
    }
    result = startup(config_from_env(env), store, LOG, host)
    text = render(load_view(store, result, LOG))
    assert "ipv6" not in text and "fd10::11" not in text
    assert "protocol kernel kernel4" in text
    env["FELIX_IPV6SUPPORT"] = "true"
    both = MemoryDatastore()
    result = startup(config_from_env(env), both, LOG, host)
    text = render(load_view(both, result, LOG))
    assert "protocol kernel kernel6" in text and "source address fd10::11;" not in text
    assert "ipv6;" in text


def bird_binary() -> str:
    found = shutil.which("bird") or next(
        (p for p in ("/usr/sbin/bird", "/sbin/bird") if Path(p).exists()), None
    )
    if found is None:
        pytest.skip("BIRD 2 is not installed (Debian package bird2): cannot run 'bird -p'")
    return found


VARIANTS = {
    "dual": dual(),
    "dual-timers-own-as": dual(
        hold_time=9, connect_retry=2, peers=(Peer("x", "10.0.0.9", "fd00::9", 65001),)
    ),
    "shortest-hold-time": dual(hold_time=3),
    "ipv4-only": v4_only(),
    "ipv6-only": v6_only(),
    "no-blocks": dual(blocks4=(), blocks6=()),
    "no-pools-no-blocks": dual(blocks4=(), blocks6=(), pools4=(), pools6=()),
    "no-peers": dual(peers=()),
    "no-address": dual(ipv4=None, ipv6=None),
}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_bird_accepts_every_variant(variant: str, tmp_path: Path) -> None:
    bird = bird_binary()
    conf = tmp_path / "bird.cfg"
    conf.write_text(render(VARIANTS[variant]), encoding="utf-8")
    check = subprocess.run(
        [bird, "-p", "-c", str(conf)], capture_output=True, text=True, check=False
    )
    assert check.returncode == 0, check.stderr


def test_bird_check_can_fail(tmp_path: Path) -> None:
    """The check above is meaningful: a broken filter is refused."""
    bird = bird_binary()
    conf = tmp_path / "bird.cfg"
    conf.write_text(render(dual()).replace("then reject;", "then rejekt;"), encoding="utf-8")
    check = subprocess.run([bird, "-p", "-c", str(conf)], capture_output=True, check=False)
    assert check.returncode != 0
