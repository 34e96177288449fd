"""The VXLAN desired state as a pure function of nodes, blocks and pools."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tortie.errors import InvalidInput
from tortie.model.ippool import IPPool
from tortie.model.node import Node
from tortie.node.vxlan import (
    DEVICE_V4,
    DEVICE_V6,
    Device,
    FdbEntry,
    Neighbour,
    Route,
    VtepNode,
    VxlanPool,
    VxlanSettings,
    desired,
    from_node,
    from_pool,
)

POOLS_ALWAYS = [VxlanPool("10.244.0.0/16", "Always"), VxlanPool("fd00:244::/48", "Always")]


def node(i: int, subnet: int = 1, vtep: bool = True, v6: bool = True) -> VtepNode:
    return VtepNode(
        name=f"node{i}",
        ipv4_address=f"10.{subnet}.0.{10 + i}/24",
        ipv6_address=f"fd00:{subnet}::{10 + i}/64" if v6 else None,
        ipv4_tunnel_addr=f"10.244.{i}.0" if vtep else None,
        ipv4_tunnel_mac=f"66:00:00:00:{i:02x}:04" if vtep else None,
        ipv6_tunnel_addr=f"fd00:244:0:{i}::" if vtep and v6 else None,
        ipv6_tunnel_mac=f"66:00:00:00:{i:02x}:06" if vtep and v6 else None,
        blocks=(f"10.244.{i}.0/26", f"fd00:244:0:{i}::/122"),
    )


def test_always_gives_devices_vteps_and_tunnel_routes() -> None:
    state = desired(node(1), [node(1), node(2), node(3, subnet=2)], POOLS_ALWAYS)
    assert state.v4.device == Device(
        DEVICE_V4, 4096, 4789, "10.1.0.11", 1450, "66:00:00:00:01:04", "10.244.1.0/32"
    )
    assert state.v6.device == Device(
        DEVICE_V6, 4096, 4789, "fd00:1::11", 1430, "66:00:00:00:01:06", "fd00:244:0:1::/128"
    )
    assert state.v4.neighbours == {
        Neighbour("10.244.2.0", "66:00:00:00:02:04"),
        Neighbour("10.244.3.0", "66:00:00:00:03:04"),
    }
    assert state.v4.fdb == {
        FdbEntry("66:00:00:00:02:04", "10.1.0.12"),
        FdbEntry("66:00:00:00:03:04", "10.2.0.13"),
    }
    assert state.v4.routes == {
        Route("10.244.2.0/32", None, True),
        Route("10.244.2.0/26", "10.244.2.0", True),
        Route("10.244.3.0/32", None, True),
        Route("10.244.3.0/26", "10.244.3.0", True),
    }
    assert Route("fd00:244:0:3::/122", "fd00:244:0:3::", True) in state.v6.routes
    assert state.unprogrammed_pools == {4: ("10.244.0.0/16",), 6: ("fd00:244::/48",)}


def test_cross_subnet_is_native_inside_the_own_prefix_and_tunnelled_outside() -> None:
    pools = [VxlanPool("10.244.0.0/16", "CrossSubnet")]
    state = desired(node(1), [node(2), node(3, subnet=2)], pools)
    assert Route("10.244.2.0/26", "10.1.0.12", False) in state.v4.routes
    assert Route("10.244.3.0/26", "10.244.3.0", True) in state.v4.routes
    # VTEPs exist for every remote node either way.
    assert len(state.v4.neighbours) == 2
    assert state.v6.device is None  # no IPv6 VXLAN pool
    assert state.unprogrammed_pools == {4: ("10.244.0.0/16",), 6: ()}


def test_never_and_blocks_outside_vxlan_pools_are_left_to_bird() -> None:
    pools = [VxlanPool("10.244.0.0/16", "Never"), VxlanPool("fd00:244::/48", "Never")]
    state = desired(node(1), [node(2)], pools)
    assert state.v4.device is None and state.v6.device is None
    assert state.unprogrammed_pools == {4: (), 6: ()}
    other = VtepNode("node9", "10.1.0.19/24", None, "10.244.9.0", "66:00:00:00:09:04",
                     blocks=("10.99.0.0/26",))  # fmt: skip
    state = desired(node(1), [other], POOLS_ALWAYS)
    assert state.v4.routes == {Route("10.244.9.0/32", None, True)}


def test_nodes_without_a_vtep_get_no_entries_and_native_routes_on_the_same_link() -> None:
    # No VTEP yet (a pool just switched from Never): the remote on this node's link is
    # routed natively, the one across a router not at all, and neither gets VTEP entries.
    state = desired(node(1), [node(2, vtep=False), node(3, subnet=2, vtep=False)], POOLS_ALWAYS)
    assert state.v4.neighbours == frozenset() and state.v4.fdb == frozenset()
    assert state.v4.routes == {Route("10.244.2.0/26", "10.1.0.12", False)}
    assert state.v6.routes == {Route("fd00:244:0:2::/122", "fd00:1::12", False)}
    # ... and a local node without a tunnel address has no device, no VTEP entries, and
    # the same native routes to its own link only.
    state = desired(node(1, vtep=False), [node(2), node(3, subnet=2)], POOLS_ALWAYS)
    assert state.v4.device is None and state.v4.neighbours == frozenset()
    assert state.v4.routes == {Route("10.244.2.0/26", "10.1.0.12", False)}


def test_settings_set_vni_port_and_mtus() -> None:
    s = VxlanSettings(vni=77, port=8472, mtu_v4=8950, mtu_v6=8930)
    state = desired(node(1), [], POOLS_ALWAYS, s)
    assert state.v4.device is not None and state.v6.device is not None
    assert (state.v4.device.vni, state.v4.device.port, state.v4.device.mtu) == (77, 8472, 8950)
    assert state.v6.device.mtu == 8930


@pytest.mark.parametrize(
    ("local", "pools", "message"),
    [
        (node(1), [VxlanPool("10.244.0.0/16", "Sometimes")], "vxlanMode 'Sometimes'"),
        (node(1), [VxlanPool("10.244.0.0/99", "Always")], "is not a CIDR"),
        (VtepNode("bad", "10.1.0.1"), POOLS_ALWAYS, None),
        (VtepNode("bad", "nonsense/24"), POOLS_ALWAYS, "node bad: host address"),
        (
            VtepNode("bad", "10.1.0.1/24", None, "fd00::1", "66:00:00:00:00:01"),
            POOLS_ALWAYS,
            "node bad: VXLAN tunnel address",
        ),
        (
            VtepNode("bad", "10.1.0.1/24", None, "10.244.0.1", "zz"),
            POOLS_ALWAYS,
            "node bad: VXLAN tunnel MAC",
        ),
    ],
)
def test_bad_input_is_one_line_naming_the_object(
    local: VtepNode, pools: list[VxlanPool], message: str | None
) -> None:
    if message is None:  # an address without a prefix is a /32: accepted
        desired(local, [], pools)
        return
    with pytest.raises(InvalidInput, match=message) as err:
        desired(local, [], pools)
    assert "\n" not in str(err.value) and ": " in str(err.value)


def test_from_node_reads_the_model() -> None:
    model = Node(
        name="n1",
        ipv4_address="10.1.0.11/24",
        ipv6_address="fd00:1::11/64",
        ipv4_vxlan_tunnel_addr="10.244.1.0",
        ipv6_vxlan_tunnel_addr="fd00:244:0:1::",
        vxlan_tunnel_mac="66:00:00:00:01:04",
        vxlan_tunnel_mac_v6="66:00:00:00:01:06",
    )
    vtep = from_node(model, ["10.244.1.0/26"])
    assert vtep == VtepNode(
        "n1", "10.1.0.11/24", "fd00:1::11/64", "10.244.1.0", "66:00:00:00:01:04",
        "fd00:244:0:1::", "66:00:00:00:01:06", ("10.244.1.0/26",),
    )  # fmt: skip
    # the VTEP these fields make has a device per family
    state = desired(
        vtep, [], [VxlanPool("10.244.0.0/16", "Always"), VxlanPool("fd00:244::/48", "Always")]
    )
    assert state.v4.device is not None and state.v6.device is not None


def test_from_pool_keeps_cidr_and_mode() -> None:
    pool = IPPool(name="p", cidr="10.244.0.0/16", block_size=26, vxlan_mode="CrossSubnet")
    assert from_pool(pool) == VxlanPool("10.244.0.0/16", "CrossSubnet")


@st.composite
def clusters(draw: st.DrawFn) -> tuple[VtepNode, list[VtepNode], str]:
    count = draw(st.integers(min_value=1, max_value=8))
    subnets = draw(st.lists(st.integers(1, 3), min_size=count, max_size=count))
    vteps = draw(st.lists(st.booleans(), min_size=count, max_size=count))
    nodes = [node(i + 1, subnets[i], vteps[i]) for i in range(count)]
    mode = draw(st.sampled_from(["Always", "CrossSubnet", "Never"]))
    return nodes[0], draw(st.permutations(nodes)), mode


@settings(max_examples=200, deadline=None)
@given(clusters())
def test_every_remote_block_is_routed_once_and_the_right_way(
    cluster: tuple[VtepNode, list[VtepNode], str],
) -> None:
    local, everyone, mode = cluster
    pools = [VxlanPool("10.244.0.0/16", mode), VxlanPool("fd00:244::/48", mode)]
    state = desired(local, everyone, pools)
    # Independent of the order nodes arrive in.
    assert state == desired(local, list(reversed(everyone)), pools)
    own = ipaddress.ip_interface(local.ipv4_address or "")
    remotes = [n for n in everyone if n.name != local.name]
    for version, fam in ((4, state.v4), (6, state.v6)):
        if mode == "Never":
            assert fam.device is None and fam.routes == frozenset()
            continue
        local_vtep = local.ipv4_tunnel_addr is not None
        assert (fam.device is not None) == local_vtep
        with_vtep = [n for n in remotes if n.ipv4_tunnel_addr and local_vtep]
        assert len(fam.neighbours) == len(fam.fdb) == len(with_vtep)
        by_dst = {r.dst: r for r in fam.routes}
        assert len(by_dst) == len(fam.routes)
        for remote in remotes:
            block = remote.blocks[0 if version == 4 else 1]
            host = ipaddress.ip_interface(remote.ipv4_address or "")
            tunnel = local_vtep and remote.ipv4_tunnel_addr is not None
            native = host.ip in own.network and (mode == "CrossSubnet" or not tunnel)
            route = by_dst.get(block)
            if native:
                address = remote.ipv4_address if version == 4 else remote.ipv6_address
                gateway = str(ipaddress.ip_interface(address or "").ip)
                assert route is not None and not route.tunnel and route.gateway == gateway
            elif tunnel:
                assert route is not None and route.tunnel and route.gateway is not None
            else:
                assert route is None
