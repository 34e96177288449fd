"""Pure overlay control plane: settings, MACs, MTU, IPIP refusal, conflist, Node fields."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from tortie.cli.install_cmd import conflist
from tortie.datastore.memory import MemoryDatastore
from tortie.errors import InvalidInput
from tortie.ipam.pools import load_pools
from tortie.model.ippool import IPPool, ippool_from_dict
from tortie.model.node import Node, node_from_dict, node_to_dict
from tortie.node.config import config_from_env
from tortie.node.defaultpools import ensure_default_pools
from tortie.node.mtu import (
    host_mtu,
    pod_mtu,
    publish_mtu,
    read_published_mtu,
    substitute_cni_mtu,
    veth_mtu_override,
)
from tortie.node.tunnel import (
    check_ipip_supported,
    derived_mac,
    kernel_has_ipip,
    tunnel_settings,
)
from tortie.rundir import RunDir

NODE = Node("node-a", ipv4_address="10.9.0.5/24", ipv6_address="fd09::5/64")


def mkpool(name: str, cidr: str, **spec: object) -> IPPool:
    return ippool_from_dict(
        {
            "apiVersion": "projectcalico.org/v3",
            "kind": "IPPool",
            "metadata": {"name": name},
            "spec": {"cidr": cidr, **spec},
        }
    )


def test_mac_is_deterministic_unicast_locally_administered_and_per_family() -> None:
    mac = derived_mac("node-a")
    assert mac == derived_mac("node-a")
    assert mac != derived_mac("node-b")
    assert derived_mac("node-a", 6) != mac
    first = int(mac.split(":")[0], 16)
    assert first & 0x01 == 0 and first & 0x02 == 0x02
    assert len(mac.split(":")) == 6


def test_settings_follow_modes_selectors_and_backend() -> None:
    pools = [
        mkpool("a", "10.1.0.0/16", vxlanMode="CrossSubnet"),
        mkpool("b", "10.2.0.0/16", ipipMode="Always"),
        mkpool("c", "fd01::/48", vxlanMode="Always"),
        mkpool("d", "10.3.0.0/16", vxlanMode="Always", nodeSelector="zone == 'x'"),
        mkpool("e", "10.4.0.0/16", vxlanMode="Always", disabled=True),
        mkpool("f", "10.5.0.0/16"),
    ]
    s = tunnel_settings(NODE, pools)
    assert dict(s.pools) == {"vxlan": ("a",), "ipip": ("b",), "vxlan-v6": ("c",)}
    assert s.kinds == ("ipip", "vxlan", "vxlan-v6")
    assert tunnel_settings(NODE, pools, backend="none").kinds == ()
    v4only = Node("n", ipv4_address="10.9.0.6/24")
    assert tunnel_settings(v4only, pools).kinds == ("ipip", "vxlan")


@pytest.mark.parametrize(
    ("spec", "kinds", "expected"),
    [
        ({}, (), 1500),
        ({"ipipMode": "Always"}, ("ipip",), 1480),
        ({"vxlanMode": "Always"}, ("vxlan",), 1450),
    ],
)
def test_mtu_table(spec: dict[str, str], kinds: tuple[str, ...], expected: int) -> None:
    s = tunnel_settings(NODE, [mkpool("p", "10.1.0.0/16", **spec)])
    assert s.kinds == kinds
    assert pod_mtu(1500, s) == expected


def test_mtu_largest_overhead_wins_and_override() -> None:
    pools = [
        mkpool("a", "10.1.0.0/16", vxlanMode="Always"),
        mkpool("c", "fd01::/48", vxlanMode="Always"),
    ]
    s = tunnel_settings(NODE, pools)
    assert pod_mtu(9000, s) == 8930
    assert pod_mtu(9000, s, veth_mtu_override({"FELIX_VETHMTU": "1400"})) == 1400
    assert veth_mtu_override({"FELIX_VETHMTU": "0"}) is None
    with pytest.raises(InvalidInput, match="FELIX_VETHMTU"):
        veth_mtu_override({"FELIX_VETHMTU": "big"})
    assert host_mtu([("lo", 65536), ("eth0", 9000), ("ens3", 1460), ("cali1", 1500)]) == 1460
    assert host_mtu([("lo", 65536)]) == 1500


def test_published_mtu_round_trip_and_cni_placeholder(tmp_path: Path) -> None:
    run = RunDir(str(tmp_path / "run"))
    assert read_published_mtu(run) == 1500
    assert publish_mtu(run, 1450) is True
    assert publish_mtu(run, 1450) is False
    assert read_published_mtu(run) == 1450
    stock = '{"plugins": [{"type": "calico", "mtu": __CNI_MTU__}]}'
    assert json.loads(substitute_cni_mtu(stock, 1450))["plugins"][0]["mtu"] == 1450


def test_conflist_chains_portmap_and_bandwidth() -> None:
    conf = conflist("k8s-pod-network", "dual", "", "", mtu=1450)
    assert "mtu" not in conflist("k8s-pod-network", "dual", "", "")["plugins"][0]  # type: ignore[index]
    plugins = conf["plugins"]
    assert isinstance(plugins, list)
    assert [p["type"] for p in plugins] == ["calico", "portmap", "bandwidth"]
    assert plugins[0]["mtu"] == 1450
    assert plugins[1]["capabilities"] == {"portMappings": True} and plugins[1]["snat"] is True
    assert plugins[2]["capabilities"] == {"bandwidth": True}


def test_ipip_refused_with_one_line_naming_node_reason_and_fix() -> None:
    s = tunnel_settings(NODE, [mkpool("legacy", "10.1.0.0/16", ipipMode="Always")])
    with pytest.raises(InvalidInput) as err:
        check_ipip_supported(s, kernel_has_ipip=False)
    text = str(err.value)
    assert "\n" not in text
    assert "node node-a" in text and "legacy" in text
    assert "ipip module" in text and "vxlanMode" in text
    check_ipip_supported(s, kernel_has_ipip=True)
    check_ipip_supported(tunnel_settings(NODE, []), kernel_has_ipip=False)


def test_ipip_refused_on_this_kernel() -> None:
    if kernel_has_ipip():
        pytest.skip("this kernel has the ipip module; the refusal is for kernels without it")
    s = tunnel_settings(NODE, [mkpool("p", "10.1.0.0/16", ipipMode="CrossSubnet")])
    with pytest.raises(InvalidInput, match="lacks the ipip module"):
        check_ipip_supported(s, kernel_has_ipip())


def test_pool_mode_rules() -> None:
    with pytest.raises(InvalidInput, match="not supported for IPv6"):
        mkpool("p6", "fd01::/48", ipipMode="Always")
    with pytest.raises(InvalidInput):
        mkpool("p", "10.1.0.0/16", vxlanMode="Sometimes")
    assert mkpool("p", "10.1.0.0/16").vxlan_mode == "Never"


def test_new_node_fields_round_trip() -> None:
    node = Node(
        "node-a",
        ipv4_address="10.9.0.5/24",
        ipv6_address="fd09::5/64",
        ipv4_ipip_tunnel_addr="10.1.0.1",
        ipv4_vxlan_tunnel_addr="10.1.0.2",
        ipv6_vxlan_tunnel_addr="fd01::2",
        vxlan_tunnel_mac="66:00:00:00:00:01",
        vxlan_tunnel_mac_v6="66:00:00:00:00:02",
    )
    doc = node_to_dict(node)
    assert doc["spec"]["vxlanTunnelMACAddr"] == "66:00:00:00:00:01"
    assert doc["spec"]["vxlanTunnelMACAddrV6"] == "66:00:00:00:00:02"
    assert doc["spec"]["bgp"]["ipv4IPIPTunnelAddr"] == "10.1.0.1"
    assert node_from_dict(doc) == node
    doc["spec"]["vxlanTunnelMACAddr"] = "not-a-mac"
    with pytest.raises(InvalidInput, match=r"Node\(node-a\).*vxlanTunnelMACAddr"):
        node_from_dict(doc)


def test_default_pools_take_encapsulation_from_env() -> None:
    store = MemoryDatastore()
    env = {
        "NODENAME": "node-a",
        "CALICO_IPV4POOL_CIDR": "10.244.0.0/16",
        "CALICO_IPV6POOL_CIDR": "fd00:244::/48",
        "CALICO_IPV4POOL_VXLAN": "Always",
        "CALICO_IPV6POOL_VXLAN": "CrossSubnet",
        "CALICO_NETWORKING_BACKEND": "vxlan",
    }
    config = config_from_env(env)
    assert config.backend == "vxlan"
    ensure_default_pools(store, config, [], logging.getLogger("t"))
    modes = {p.version: (p.vxlan_mode, p.ipip_mode) for p in load_pools(store)}
    assert modes == {4: ("Always", "Never"), 6: ("CrossSubnet", "Never")}


def test_default_pools_default_to_never_and_ipip_env() -> None:
    store = MemoryDatastore()
    config = config_from_env(
        {"NODENAME": "n", "CALICO_IPV4POOL_CIDR": "10.244.0.0/16", "CALICO_IPV4POOL_IPIP": "always"}
    )
    assert config.backend == "bird"
    ensure_default_pools(store, config, [], logging.getLogger("t"), node_has_ipv6=False)
    (p,) = load_pools(store)
    assert (p.ipip_mode, p.vxlan_mode) == ("Always", "Never")
    with pytest.raises(InvalidInput, match="CALICO_NETWORKING_BACKEND"):
        config_from_env({"NODENAME": "n", "CALICO_NETWORKING_BACKEND": "gobgp"})
