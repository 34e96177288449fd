"""The pure rule set and its nft text: which pools NAT and to where, per family; every
rendering accepted by the real nft (in a throw-away namespace)."""

from __future__ import annotations

import itertools

import pytest

from nat_lab import pool
from netns import NetnsPool
from tortie.model.felixconfig import PortRange
from tortie.model.node import Node
from tortie.node.nat import FamilyNat, NatRules, desired, fingerprints, host_ips, render
from tortie.node.natsettings import NatSettings

POOLS = [
    pool("a", "10.244.0.0/16", natOutgoing=True),
    pool("b", "10.245.0.0/16"),
    pool("a6", "fd00:244::/48", natOutgoing=True),
    pool("b6", "fd00:245::/48"),
]


def rules_of(text: str, family: str) -> list[str]:
    """The rule lines of tortie's chain for ``family`` in a rendered script."""
    body = text.split(f"table {family} tortie {{\n", 1)[1].split("\n}\n", 1)[0]
    chain = body.split("chain postrouting {\n", 1)[1]
    return [ln.strip() for ln in chain.splitlines() if "saddr" in ln]


def test_both_families_masquerade_outside_every_pool() -> None:
    r = desired(POOLS, NatSettings())
    assert r.ipv4 == FamilyNat(4, ("10.244.0.0/15",), ("10.244.0.0/16",))
    assert r.ipv6 == FamilyNat(6, ("fd00:244::/48", "fd00:245::/48"), ("fd00:244::/48",))
    text = render(r)
    assert rules_of(text, "ip") == [
        "ip saddr @nat-pools ip daddr != @all-pools counter masquerade fully-random"
    ]
    assert rules_of(text, "ip6") == [
        "ip6 saddr @nat-pools ip6 daddr != @all-pools counter masquerade fully-random"
    ]
    assert "type nat hook postrouting priority srcnat + 10; policy accept;" in text


def test_only_tortie_tables_are_named_and_each_is_replaced_in_the_script() -> None:
    text = render(desired(POOLS, NatSettings()))
    tables = [ln for ln in text.splitlines() if ln.startswith(("table", "delete"))]
    assert tables == [
        "table ip tortie",
        "delete table ip tortie",
        "table ip tortie {",
        "table ip6 tortie",
        "delete table ip6 tortie",
        "table ip6 tortie {",
    ]


def test_family_without_a_nat_pool_gets_no_table() -> None:
    r = desired(
        [pool("a", "10.244.0.0/16", natOutgoing=True), pool("b6", "fd00:245::/48")], NatSettings()
    )
    assert r.ipv4 is not None and r.ipv6 is None
    assert "table ip6 tortie {" not in render(r)
    assert render(NatRules()).splitlines()[1:] == [
        "table ip tortie",
        "delete table ip tortie",
        "table ip6 tortie",
        "delete table ip6 tortie",
    ]
    assert desired(POOLS, NatSettings(ipv6=False)).ipv6 is None


def test_disabled_pools_count_as_pools_and_load_balancer_only_pools_do_not() -> None:
    pools = [
        pool("a", "10.244.0.0/16", natOutgoing=True, disabled=True),
        pool("ext", "192.0.2.0/24", disabled=True),  # Calico's "do not NAT to this range"
        pool("lb", "198.51.100.0/24", allowedUses=["LoadBalancer"]),
    ]
    r = desired(pools, NatSettings())
    assert r.ipv4 is not None
    assert r.ipv4.nat_pools == ("10.244.0.0/16",)
    assert r.ipv4.all_pools == ("10.244.0.0/16", "192.0.2.0/24")


def test_snat_address_per_family() -> None:
    s = NatSettings(address_v4="203.0.113.7", address_v6="2001:db8::7")
    text = render(desired(POOLS, s))
    assert rules_of(text, "ip")[-1].endswith("counter snat to 203.0.113.7 fully-random")
    assert rules_of(text, "ip6")[-1].endswith("counter snat to 2001:db8::7 fully-random")
    # An IPv4 address only: IPv6 still masquerades (Calico would fail here, calico#3275).
    text = render(desired(POOLS, NatSettings(address_v4="203.0.113.7")))
    assert rules_of(text, "ip6")[-1].endswith("counter masquerade fully-random")


def test_port_range_for_tcp_and_udp_then_everything_else() -> None:
    s = NatSettings(address_v6="2001:db8::7", port_range=PortRange(32768, 60999))
    text = render(desired(POOLS, s))
    m4 = "ip saddr @nat-pools ip daddr != @all-pools"
    assert rules_of(text, "ip") == [
        f"{m4} meta l4proto {{ tcp, udp }} counter masquerade to :32768-60999 fully-random",
        f"{m4} counter masquerade fully-random",
    ]
    m6 = "ip6 saddr @nat-pools ip6 daddr != @all-pools"
    assert rules_of(text, "ip6") == [
        f"{m6} meta l4proto {{ tcp, udp }} counter snat to [2001:db8::7]:32768-60999 fully-random",
        f"{m6} counter snat to 2001:db8::7 fully-random",
    ]
    one = render(desired(POOLS, NatSettings(port_range=PortRange(5000, 5000))))
    assert "masquerade to :5000 fully-random" in one


def test_exclusions_and_host_addresses() -> None:
    nodes = [
        Node("n1", ipv4_address="10.10.0.1/24", ipv6_address="fd00:10::1/64"),
        Node("n2", ipv4_address="10.10.0.2/24"),
        Node("n3"),
    ]
    hosts = host_ips(nodes)
    assert hosts == ["10.10.0.1", "fd00:10::1", "10.10.0.2"]
    assert desired(POOLS, NatSettings(), hosts).ipv4.hosts is None  # type: ignore[union-attr]
    r = desired(POOLS, NatSettings(exclusions="IPPoolsAndHostIPs"), hosts)
    assert r.ipv4 is not None and r.ipv6 is not None
    assert (r.ipv4.hosts, r.ipv6.hosts) == (("10.10.0.1", "10.10.0.2"), ("fd00:10::1",))
    text = render(r)
    assert rules_of(text, "ip") == [
        "ip saddr @nat-pools ip daddr != @all-pools ip daddr != @hosts counter masquerade "
        "fully-random"
    ]


def test_interface_filter_uses_nft_wildcard() -> None:
    text = render(desired(POOLS, NatSettings(interface_filter="eth+")))
    assert 'ip daddr != @all-pools oifname "eth*" counter masquerade' in text
    text = render(desired(POOLS, NatSettings(interface_filter="bond0")))
    assert 'oifname "bond0" counter' in text


def test_fingerprints_follow_the_content() -> None:
    a = render(desired(POOLS, NatSettings()))
    fa = fingerprints(a)
    assert fa["ip"] and fa["ip6"] and fa["ip"] != fa["ip6"]
    assert fingerprints(render(desired(list(reversed(POOLS)), NatSettings()))) == fa
    b = fingerprints(render(desired([*POOLS, pool("c", "10.99.0.0/16")], NatSettings())))
    assert b["ip"] != fa["ip"] and b["ip6"] == fa["ip6"]
    assert fingerprints(render(NatRules())) == {"ip": None, "ip6": None}


def _variants() -> list[NatSettings]:
    out = []
    for addr4, addr6, ports, excl, iface in itertools.product(
        (None, "203.0.113.7"),
        (None, "2001:db8::7"),
        (None, PortRange(1024, 2047), PortRange(7000, 7000)),
        ("IPPoolsOnly", "IPPoolsAndHostIPs"),
        (None, "wan+"),
    ):
        out.append(NatSettings(excl, addr4, addr6, ports, iface))
    return out


@pytest.mark.root
def test_every_variant_is_valid_nft(namespaces: NetnsPool) -> None:
    ns = namespaces.new()
    variants = _variants()
    for s in variants:
        for hosts in ([], ["10.10.0.1", "fd00:10::1"]):
            text = render(desired(POOLS, s, hosts))
            done = ns.run("nft", "-f", "-", input=text, check=False)
            assert done.returncode == 0, f"{s}: {done.stderr}"
            listed = ns.run("nft", "list", "chains").stdout
            assert fingerprints(listed) == fingerprints(text)
    assert len(variants) == 48
