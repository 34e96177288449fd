"""natOutgoing for real: nft in a node namespace, pods behind veths, an outside host with
no route back to any pool (``nat_lab``)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cli.clihelp import Cli
from nat_lab import HOLD_TCP, NODE4, NODE6, OUT4, OUT6, NatLab, ping, pool, stop
from netns import IP
from tortie.dataplane import nat as nat_dataplane
from tortie.dataplane.nat import NatTables
from tortie.errors import TortieError
from tortie.model.felixconfig import PortRange
from tortie.model.ippool import IPPool
from tortie.node.nat import desired, render
from tortie.node.natsettings import NatSettings

pytestmark = [pytest.mark.root, pytest.mark.slow]


def pools(b_nat: bool = False) -> list[IPPool]:
    return [
        pool("pool-a", "10.244.0.0/16", natOutgoing=True),
        pool("pool-b", "10.245.0.0/16", natOutgoing=b_nat),
        pool("pool-a6", "fd00:244::/48", natOutgoing=True),
        pool("pool-b6", "fd00:245::/48", natOutgoing=b_nat),
    ]


def apply(lab: NatLab, settings: NatSettings | None = None, **kw: bool) -> bool:
    text = render(desired(pools(**kw), settings or NatSettings(), [NODE4, NODE6]))
    return NatTables(lab.node.name).apply(text)


def table_handle(lab: NatLab, family: str) -> str:
    m = re.search(r"# handle (\d+)", lab.nft("-a", "list", "table", family, "tortie"))
    assert m is not None
    return m.group(1)


def test_pods_reach_the_outside_as_the_node_over_both_families(lab: NatLab) -> None:
    a = lab.pod_a
    assert not ping(a, OUT4) and not ping(a, OUT6)  # control: no way back without NAT
    assert apply(lab)
    assert ping(a, OUT4) and ping(a, OUT6)
    assert lab.ask(a, OUT4) == NODE4
    assert lab.ask(a, OUT6) == NODE6
    assert lab.arrives_from(a, OUT4) == NODE4
    assert lab.arrives_from(a, OUT6) == NODE6
    counted = lab.nft("list", "chain", "ip", "tortie", "postrouting")
    assert re.search(r"counter packets [1-9]\d* bytes \d+ masquerade", counted), counted


def test_a_pool_without_nat_outgoing_gets_no_way_out(lab: NatLab) -> None:
    apply(lab)
    b = lab.pod_b
    assert not ping(b, OUT4) and not ping(b, OUT6)
    assert lab.ask(b, OUT4) == "unreachable" and lab.ask(b, OUT6) == "unreachable"
    # Its packets do leave, with the pod's own address: the rule left them alone.
    assert lab.arrives_from(b, OUT4) == b.ip4
    assert lab.arrives_from(b, OUT6) == b.ip6


def test_pod_to_pod_between_pools_keeps_the_pod_address(lab: NatLab) -> None:
    apply(lab, b_nat=True)  # both pools NAT outgoing; between them nothing is NATed
    lab.serve_in(lab.pod_b.ns, "pod-b")
    lab.serve_in(lab.pod_a.ns, "pod-a")
    assert lab.ask(lab.pod_a, lab.pod_b.ip4) == lab.pod_a.ip4
    assert lab.ask(lab.pod_a, lab.pod_b.ip6) == lab.pod_a.ip6
    assert lab.ask(lab.pod_b, lab.pod_a.ip4) == lab.pod_b.ip4
    assert lab.ask(lab.pod_b, lab.pod_a.ip6) == lab.pod_b.ip6


def test_toggling_nat_outgoing_on_a_pool_takes_effect(lab: NatLab) -> None:
    b = lab.pod_b
    apply(lab, b_nat=False)
    assert lab.ask(b, OUT4) == "unreachable" and lab.ask(b, OUT6) == "unreachable"
    started = time.perf_counter()
    assert apply(lab, b_nat=True)
    took = time.perf_counter() - started
    assert lab.ask(b, OUT4) == NODE4 and lab.ask(b, OUT6) == NODE6
    assert apply(lab, b_nat=False)
    assert lab.ask(b, OUT4) == "unreachable" and lab.ask(b, OUT6) == "unreachable"
    assert lab.ask(lab.pod_a, OUT4) == NODE4  # the other pool kept its NAT throughout
    print(f"re-render + apply after a pool change: {took * 1000:.1f} ms")


def test_second_apply_of_the_same_rules_writes_nothing(lab: NatLab) -> None:
    tables = NatTables(lab.node.name)
    text = render(desired(pools(), NatSettings()))
    assert tables.apply(text) is True
    handles = (table_handle(lab, "ip"), table_handle(lab, "ip6"))
    assert tables.apply(text) is False
    assert tables.writes == 1
    assert (table_handle(lab, "ip"), table_handle(lab, "ip6")) == handles
    # A fresh applier (an agent restart) reads the fingerprints back from the kernel.
    again = NatTables(lab.node.name)
    assert again.apply(text) is False and again.writes == 0
    assert again.apply(render(desired(pools(b_nat=True), NatSettings()))) is True
    assert table_handle(lab, "ip") != handles[0]
    # force rewrites regardless (a resync repairing a hand edit inside the table).
    lab.nft("flush", "chain", "ip", "tortie", "postrouting")
    assert lab.ask(lab.pod_a, OUT4) == "unreachable"
    assert again.apply(render(desired(pools(b_nat=True), NatSettings())), force=True)
    assert lab.ask(lab.pod_a, OUT4) == NODE4


FOREIGN = """\
table inet other {
	set blocked {
		type ipv4_addr
		elements = { 192.0.2.1 }
	}
	chain input {
		type filter hook input priority filter; policy accept;
		ip saddr @blocked drop
	}
}
table ip other4 {
	chain post {
		type nat hook postrouting priority srcnat; policy accept;
		ip daddr 198.51.100.0/24 masquerade
	}
}
"""


def test_other_tables_stay_byte_identical_and_cleanup_removes_only_tortie(lab: NatLab) -> None:
    lab.node.run("nft", "-f", "-", input=FOREIGN)

    def foreign() -> str:
        return lab.nft("-a", "list", "table", "inet", "other") + lab.nft(
            "-a", "list", "table", "ip", "other4"
        )

    before_all = lab.nft("list", "ruleset")
    before = foreign()
    tables = NatTables(lab.node.name)
    tables.apply(render(desired(pools(), NatSettings())))
    tables.apply(render(desired(pools(b_nat=True), NatSettings(address_v4=NODE4))))
    assert foreign() == before
    listing = tables.listing()
    assert "table ip tortie {" in listing and "table ip6 tortie {" in listing
    assert "other" not in listing
    assert set(re.findall(r"^table (\S+ \S+)", lab.nft("list", "tables"), re.M)) == {
        "inet other",
        "ip other4",
        "ip tortie",
        "ip6 tortie",
    }
    assert tables.cleanup() == ["ip tortie", "ip6 tortie"]
    assert foreign() == before
    assert lab.nft("list", "ruleset") == before_all
    assert tables.cleanup() == []  # nothing left to remove; still no error


def test_established_flow_survives_reapplying_and_changing_the_rules(lab: NatLab) -> None:
    apply(lab)
    client = subprocess.Popen(
        [str(IP), "netns", "exec", lab.pod_a.ns.name, sys.executable, "-c", HOLD_TCP, OUT4],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert client.stdin is not None and client.stdout is not None

    def exchange(n: int) -> str:
        assert client.stdin is not None and client.stdout is not None
        client.stdin.write(f"{n}\n")
        client.stdin.flush()
        return client.stdout.readline().strip()

    try:
        first = exchange(1)
        host, port, _ = first.split()
        assert host == NODE4
        tables = NatTables(lab.node.name)
        assert tables.apply(render(desired(pools(), NatSettings())), force=True)
        assert exchange(2) == f"{host} {port} 2"
        assert tables.apply(render(desired(pools(b_nat=True), NatSettings())))
        assert exchange(3) == f"{host} {port} 3"
    finally:
        stop(client)


def test_nat_outgoing_address_per_family(lab: NatLab) -> None:
    lab.add_node_address("172.30.0.9")
    lab.add_node_address("fd00:30::9")
    apply(lab, NatSettings(address_v4="172.30.0.9", address_v6="fd00:30::9"))
    assert lab.ask(lab.pod_a, OUT4) == "172.30.0.9"
    assert lab.ask(lab.pod_a, OUT6) == "fd00:30::9"
    assert ping(lab.pod_a, OUT4) and ping(lab.pod_a, OUT6)  # no port: ICMP SNATs too
    apply(lab, NatSettings(address_v4="172.30.0.9"))  # IPv6 falls back to masquerade,
    lab.node.ip("addr", "del", "fd00:30::9/64", "dev", "wan0")  # (which may pick any address)
    assert lab.ask(lab.pod_a, OUT6) == NODE6
    assert lab.ask(lab.pod_a, OUT4) == "172.30.0.9"


def test_port_range(lab: NatLab) -> None:
    apply(lab, NatSettings(port_range=PortRange(40000, 40015)))
    for dst in (OUT4, OUT6, OUT4, OUT6):
        host, port = lab.ask_port(lab.pod_a, dst)
        assert host in (NODE4, NODE6) and 40000 <= port <= 40015, (host, port)


def test_exclusions_ip_pools_and_host_ips(lab: NatLab) -> None:
    text = render(
        desired(pools(), NatSettings(exclusions="IPPoolsAndHostIPs"), [OUT4, f"{OUT6}/64"])
    )
    NatTables(lab.node.name).apply(text)
    a = lab.pod_a
    assert lab.arrives_from(a, OUT4) == a.ip4  # a host address: not NATed
    assert lab.arrives_from(a, OUT6) == a.ip6
    apply(lab)  # IPPoolsOnly
    assert lab.arrives_from(a, OUT4) == NODE4
    assert lab.arrives_from(a, OUT6) == NODE6


def test_interface_filter(lab: NatLab) -> None:
    apply(lab, NatSettings(interface_filter="eth+"))
    assert lab.ask(lab.pod_a, OUT4) == "unreachable"  # leaves by wan0: not matched
    apply(lab, NatSettings(interface_filter="wan+"))
    assert lab.ask(lab.pod_a, OUT4) == NODE4 and lab.ask(lab.pod_a, OUT6) == NODE6


def test_node_cleanup_command(lab: NatLab, cli: Cli, tmp_path: Path) -> None:
    apply(lab)
    node = lab.node
    node.ip("route", "add", "10.99.0.0/24", "via", OUT4, "proto", "bird")
    node.ip("route", "add", "10.98.0.0/24", "via", OUT4, "proto", "static")
    run = tmp_path / "run"
    run.mkdir()
    (run / "agent.pid").write_text(str(os.getpid()))
    cli("node", "cleanup", "--netns", node.name).fails(1, "is running", "stop it first")
    assert "table ip tortie" in lab.nft("list", "tables")  # refused: nothing removed
    (run / "agent.pid").unlink()
    out = cli("node", "cleanup", "--netns", node.name).ok().out
    assert out.splitlines() == [
        "NAT tables (natOutgoing): removed table ip tortie, table ip6 tortie",
        "VXLAN devices and routes: none found",
        "routes BIRD left in the kernel (proto bird): removed 1 routes",
    ]
    assert "tortie" not in lab.nft("list", "tables")
    routes = {r["dst"] for r in node.routes()}
    assert "10.99.0.0/24" not in routes and "10.98.0.0/24" in routes
    again = cli("node", "cleanup", "--netns", node.name).ok().out
    assert again.count("none found") == 3


def test_missing_nft_is_one_clear_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.setattr(nat_dataplane, "_FALLBACK", ())
    with pytest.raises(TortieError) as info:
        NatTables().apply("")
    assert str(info.value) == (
        "nft (nftables) is not installed, so natOutgoing cannot be programmed; "
        "install it (Debian/Ubuntu: apt-get install nftables)"
    )
