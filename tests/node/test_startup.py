"""Node startup on the memory backend with a described host (no kernel touched)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from tortie.datastore import keys
from tortie.datastore.memory import MemoryDatastore
from tortie.errors import Conflict, InvalidInput, NotFound
from tortie.ipam.nodes import NodeService
from tortie.ipam.pools import load_pools
from tortie.node.autodetect import choose, detect
from tortie.node.config import Method, config_from_env
from tortie.node.hostaddrs import HostAddress
from tortie.node.hostprep import FakeHost
from tortie.node.startup import redetect, startup

LOG = logging.getLogger("test.node")


def addr(ifname: str, a: str, plen: int, idx: int = 2, **flags: bool) -> HostAddress:
    return HostAddress(ifname, idx, a, plen, 6 if ":" in a else 4, "global", **flags)


def host(*extra: HostAddress) -> FakeHost:
    return FakeHost(
        given=[
            addr("eth0", "10.10.0.11", 24),
            addr("eth0", "fd10::11", 64),
            HostAddress("eth0", 2, "fe80::1", 64, 6, "link"),
            *extra,
        ],
        default_routes={4},
    )


def env(tmp_path: Path, name: str = "node-a", **kw: str) -> dict[str, str]:
    return {"NODENAME": name, "CALICO_NODENAME_FILE": str(tmp_path / "nodename"), **kw}


def run(store: MemoryDatastore, tmp_path: Path, h: FakeHost | None = None, **kw: str):  # type: ignore[no-untyped-def]
    return startup(config_from_env(env(tmp_path, **kw)), store, LOG, h or host())


def test_dual_stack_startup_writes_everything(tmp_path: Path) -> None:
    store = MemoryDatastore()
    h = host()
    r = run(store, tmp_path, h, IP="autodetect", IP6="autodetect")
    assert (r.ipv4, r.ipv6, r.router_id, r.as_number) == (
        "10.10.0.11/24",
        "fd10::11/64",
        "10.10.0.11",
        64512,
    )
    node = NodeService(store).get("node-a")
    assert node is not None
    assert (node.ipv4_address, node.ipv6_address, node.router_id) == (
        "10.10.0.11/24",
        "fd10::11/64",
        "10.10.0.11",
    )
    doc = json.loads(store.get(keys.resource_key("nodes", "node-a")).value)  # type: ignore[union-attr]
    assert doc["spec"]["bgp"] == {
        "ipv4Address": "10.10.0.11/24",
        "ipv6Address": "fd10::11/64",
        "routerID": "10.10.0.11",
    }
    assert (tmp_path / "nodename").read_text() == "node-a"
    assert store.get(keys.CONFIG_KEY) is not None
    pools = {p.name: p for p in load_pools(store)}
    assert pools["default-ipv4-ippool"].cidr == "192.168.0.0/16"
    v6 = pools["default-ipv6-ippool"]
    assert v6.cidr.startswith("fd") and v6.cidr.endswith("::/48") and v6.block_size == 122
    assert h.enabled == {4: "1", 6: "1"}
    assert any("default IPv6 route" in w for w in r.warnings)


def test_default_pools_created_once_and_never_twice(tmp_path: Path) -> None:
    store = MemoryDatastore()
    run(store, tmp_path, IP6="autodetect")
    first = {p.name: p.cidr for p in load_pools(store)}
    run(store, tmp_path, IP6="autodetect")
    run(
        store,
        tmp_path,
        host(addr("eth0", "10.10.0.12", 24)),
        name="node-b",
        IP="10.10.0.12",
        IP6="fd10::12",
    )
    assert {p.name: p.cidr for p in load_pools(store)} == first
    assert len(first) == 2


def test_pool_variables_and_none(tmp_path: Path) -> None:
    store = MemoryDatastore()
    run(
        store,
        tmp_path,
        IP6="autodetect",
        CALICO_IPV4POOL_CIDR="10.244.0.0/16",
        CALICO_IPV4POOL_BLOCK_SIZE="24",
        CALICO_IPV4POOL_NAT_OUTGOING="false",
        CALICO_IPV4POOL_IPIP="CrossSubnet",
        CALICO_IPV6POOL_CIDR="none",
        CALICO_IPV4POOL_NODE_SELECTOR="zone == 'a'",
    )
    (p,) = load_pools(store)
    assert (p.cidr, p.block_size, p.nat_outgoing, p.ipip_mode, p.node_selector) == (
        "10.244.0.0/16",
        24,
        False,
        "CrossSubnet",
        "zone == 'a'",
    )


def test_ipv4_default_avoids_host_address(tmp_path: Path) -> None:
    store = MemoryDatastore()
    h = FakeHost(given=[addr("eth0", "192.168.1.5", 24), addr("eth1", "172.16.3.3", 24)])
    run(store, tmp_path, h, CALICO_IPV6POOL_CIDR="none")
    assert [p.cidr for p in load_pools(store)] == ["172.17.0.0/16"]


def test_no_default_pools(tmp_path: Path) -> None:
    store = MemoryDatastore()
    run(store, tmp_path, NO_DEFAULT_POOLS="true")
    assert load_pools(store) == []


def test_explicit_ip_beats_stored_and_empty_keeps_it(tmp_path: Path) -> None:
    store = MemoryDatastore()
    h = host(addr("eth1", "10.20.0.5", 16, idx=3), addr("eth1", "fd20::5", 64, idx=3))
    run(store, tmp_path, h, IP6="autodetect")
    r = run(store, tmp_path, h, IP="10.20.0.5", IP6="fd20::5")
    assert (r.ipv4, r.ipv6) == ("10.20.0.5/16", "fd20::5/128")  # IPv6 without prefix: /128
    r = run(store, tmp_path, h)  # empty IP and IP6: keep what is stored
    assert (r.ipv4, r.ipv6) == ("10.20.0.5/16", "fd20::5/128")
    r = run(store, tmp_path, h, IP="autodetect", IP6="none")
    assert (r.ipv4, r.ipv6) == ("10.10.0.11/24", None)
    node = NodeService(store).get("node-a")
    assert node is not None and node.ipv6_address is None


def test_ip6_empty_never_detects(tmp_path: Path) -> None:
    store = MemoryDatastore()
    r = run(store, tmp_path, CALICO_IPV6POOL_CIDR="none")
    assert r.ipv6 is None  # an IPv6 address is on eth0, but IP6 is empty


def test_ip6_empty_with_ipv6_pool_is_explained(tmp_path: Path) -> None:
    store = MemoryDatastore()
    with pytest.raises(InvalidInput, match=r"IP6 is empty.*only IP6=autodetect does"):
        run(store, tmp_path, CALICO_IPV6POOL_CIDR="fd00:5::/48")
    assert load_pools(store) == [] and store.list("/calico/resources") == []  # nothing written
    run(store, tmp_path, IP6="autodetect")  # creates an IPv6 pool
    with pytest.raises(InvalidInput, match=r"IPv6 pools exist \(default-ipv6-ippool\)"):
        run(store, tmp_path, name="node-b", IP="10.10.0.12/24")


def test_no_ipv6_pool_for_a_node_without_ipv6(tmp_path: Path) -> None:
    store = MemoryDatastore()
    run(store, tmp_path)  # IP6 unset: IPv4 only, no default IPv6 pool
    run(store, tmp_path)
    assert [p.version for p in load_pools(store)] == [4]


def test_both_families_off(tmp_path: Path) -> None:
    store = MemoryDatastore()
    with pytest.raises(InvalidInput, match="no IPv4 or IPv6 addresses configured or detected"):
        run(store, tmp_path, IP="none", IP6="none")
    assert store.list("/") == []


def test_ipv6_only_needs_router_id(tmp_path: Path) -> None:
    store = MemoryDatastore()
    with pytest.raises(InvalidInput, match="CALICO_ROUTER_ID=hash"):
        run(store, tmp_path, IP="none", IP6="autodetect")
    assert store.list("/") == []
    r = run(store, tmp_path, IP="none", IP6="autodetect", CALICO_ROUTER_ID="hash")
    assert r.ipv4 is None and r.ipv6 == "fd10::11/64" and r.router_id.count(".") == 3
    assert [p.version for p in load_pools(store)] == [4, 6]


def test_address_conflict_refused(tmp_path: Path) -> None:
    store = MemoryDatastore()
    run(store, tmp_path, IP6="autodetect")
    with pytest.raises(
        Conflict, match=r"IPv4 address conflict: 10\.10\.0\.11 is already used by node node-a"
    ):
        run(store, tmp_path, name="node-b", IP6="none")
    with pytest.raises(Conflict, match="IPv6 address conflict"):
        run(store, tmp_path, name="node-b", IP="10.10.0.99/24", IP6="autodetect")
    assert NodeService(store).get("node-b") is None


def test_backend_none_skips_addresses(tmp_path: Path) -> None:
    store = MemoryDatastore()
    h = host()
    r = run(store, tmp_path, h, IP="none", IP6="none", CALICO_NETWORKING_BACKEND="none")
    assert (r.ipv4, r.ipv6, r.router_id) == (None, None, "")
    assert h.enabled == {}


def test_as_number(tmp_path: Path) -> None:
    store = MemoryDatastore()
    r = run(store, tmp_path, AS="65001", CALICO_IPV6POOL_CIDR="none")
    node = NodeService(store).get("node-a")
    assert r.as_number == 65001 and node is not None and node.as_number == 65001


def test_forwarding_disabled_warns(tmp_path: Path) -> None:
    store = MemoryDatastore()
    h = host()
    r = run(store, tmp_path, h, FELIX_IPFORWARDING="Disabled", CALICO_IPV6POOL_CIDR="none")
    assert h.enabled == {} and any("forwarding is off" in w for w in r.warnings)


def test_redetect_updates_node(tmp_path: Path) -> None:
    store = MemoryDatastore()
    h = host()
    config = config_from_env(env(tmp_path, IP="autodetect", IP6="autodetect"))
    first = startup(config, store, LOG, h)
    assert redetect(config, store, first, LOG, h) is first
    h.given = [addr("eth0", "10.10.0.50", 24), addr("eth0", "fd10::50", 64)]
    second = redetect(config, store, first, LOG, h)
    assert (second.ipv4, second.ipv6) == ("10.10.0.50/24", "fd10::50/64")
    node = NodeService(store).get("node-a")
    assert node is not None and node.ipv4_address == "10.10.0.50/24"


# ---------------------------------------------------------------- address choice


def test_preference_skips_flawed_addresses() -> None:
    cands = [
        addr("eth0", "fd10::1", 128),
        addr("eth0", "fd10::2", 64, deprecated=True),
        addr("eth0", "fd10::3", 64, temporary=True),
        addr("eth1", "fd10::4", 64, idx=3),
    ]
    found = choose(cands, "first-found")
    assert found is not None and found.address.address == "fd10::4"
    assert "VIP-style" in found.reason and "deprecated" in found.reason
    assert "temporary" in found.reason
    # With only flawed candidates, the least flawed one is taken and the reason says so
    only = choose(cands[:3], "first-found")
    assert only is not None and only.address.address == "fd10::3"
    assert "best candidate left" in only.reason


def test_detect_never_takes_link_local_or_tentative() -> None:
    given = [
        HostAddress("eth0", 2, "fe80::1", 64, 6, "link"),
        addr("eth0", "fd10::9", 64, unusable=True),
    ]
    with pytest.raises(NotFound, match="no IPv6 address found by IP6_AUTODETECTION_METHOD"):
        detect(Method("first-found"), 6, given)


def test_host_address_not_network_address() -> None:
    found = detect(Method("cidr", ("10.10.0.0/16",)), 4, [addr("eth0", "10.10.0.11", 24)])
    assert found.address.interface == "10.10.0.11/24"
