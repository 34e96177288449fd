"""IPAMConfiguration, Node, WorkloadEndpoint and the kind registry."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tortie.errors import InvalidInput
from tortie.model.ippool import ippool_from_dict, ippool_to_dict
from tortie.model.resources import (
    IPNAT,
    KINDS,
    IPAMConfig,
    Node,
    OrchRef,
    WorkloadEndpoint,
    WorkloadEndpointPort,
    ipamconfig_from_dict,
    ipamconfig_from_v2,
    ipamconfig_to_dict,
    ipamconfig_to_v2,
    kind_for_cli_name,
    node_from_dict,
    node_to_dict,
    workloadendpoint_from_dict,
    workloadendpoint_to_dict,
)


def obj(kind: str, name: str, spec: dict[str, Any] | None, **meta: Any) -> dict[str, Any]:
    d: dict[str, Any] = {
        "apiVersion": "projectcalico.org/v3",
        "kind": kind,
        "metadata": {"name": name, **meta},
    }
    if spec is not None:
        d["spec"] = spec
    return d


def error(parse: Callable[[dict[str, Any]], object], d: dict[str, Any]) -> str:
    with pytest.raises(InvalidInput) as info:
        parse(d)
    assert "\n" not in str(info.value)
    return str(info.value)


# ---- IPAMConfiguration --------------------------------------------------------------


def ipam(**spec: Any) -> dict[str, Any]:
    return obj("IPAMConfiguration", "default", spec)


def test_ipamconfig_defaults() -> None:
    c = ipamconfig_from_dict(obj("IPAMConfiguration", "default", None))
    assert c == IPAMConfig(strict_affinity=False, auto_allocate_blocks=True, max_blocks_per_host=0)
    assert c.name == "default"
    assert ipamconfig_to_dict(c) == {
        "apiVersion": "projectcalico.org/v3",
        "kind": "IPAMConfiguration",
        "metadata": {"name": "default"},
        "spec": {"strictAffinity": False, "autoAllocateBlocks": True, "maxBlocksPerHost": 0},
    }


def test_ipamconfig_documented_sample_and_round_trip() -> None:
    c = ipamconfig_from_dict(ipam(strictAffinity=True, maxBlocksPerHost=4))
    assert (c.strict_affinity, c.auto_allocate_blocks, c.max_blocks_per_host) == (True, True, 4)
    assert ipamconfig_from_dict(ipamconfig_to_dict(c)) == c


def test_ipamconfig_crd_kind_alias() -> None:
    d = ipam(strictAffinity=True, autoAllocateBlocks=False)
    d["kind"] = "IPAMConfig"
    d["apiVersion"] = "crd.projectcalico.org/v1"
    c = ipamconfig_from_dict(d)
    assert (c.strict_affinity, c.auto_allocate_blocks) == (True, False)
    assert ipamconfig_to_dict(c)["kind"] == "IPAMConfiguration"


def test_ipamconfig_rules() -> None:
    assert "metadata.name is 'cluster'" in error(
        ipamconfig_from_dict, obj("IPAMConfiguration", "cluster", {})
    )
    message = error(ipamconfig_from_dict, ipam(strictAffinity=False, autoAllocateBlocks=False))
    assert "enable strictAffinity or autoAllocateBlocks" in message
    message = error(ipamconfig_from_dict, ipam(maxBlocksPerHost=3))
    assert "maxBlocksPerHost 3 needs strictAffinity" in message
    assert "out of range" in error(
        ipamconfig_from_dict, ipam(strictAffinity=True, maxBlocksPerHost=-1)
    )
    assert "must be an integer" in error(
        ipamconfig_from_dict, ipam(strictAffinity=True, maxBlocksPerHost="4")
    )
    assert "must be true or false" in error(ipamconfig_from_dict, ipam(strictAffinity=1))
    assert 'unknown field "spec.ipCooldown"' in error(ipamconfig_from_dict, ipam(ipCooldown=1))


def test_ipamconfig_v2_form() -> None:
    c = IPAMConfig(strict_affinity=True, auto_allocate_blocks=False, max_blocks_per_host=7)
    # Calico's Go struct: strict_affinity, auto_allocate_blocks, maxBlocksPerHost.
    assert ipamconfig_to_v2(c) == {
        "strict_affinity": True,
        "auto_allocate_blocks": False,
        "maxBlocksPerHost": 7,
    }
    assert ipamconfig_from_v2(ipamconfig_to_v2(c)) == c
    assert (
        ipamconfig_from_v2(
            {"strict_affinity": True, "auto_allocate_blocks": True, "max_blocks_per_host": 2}
        ).max_blocks_per_host
        == 2
    )


def test_ipamconfig_v2_missing_keys_are_go_zero_values() -> None:
    # Calico writes with omitempty: {"auto_allocate_blocks": true} is the default config.
    assert ipamconfig_from_v2({"auto_allocate_blocks": True}) == IPAMConfig()
    assert ipamconfig_from_v2({}) == IPAMConfig(auto_allocate_blocks=False)
    with pytest.raises(InvalidInput, match="strict_affinity must be true or false"):
        ipamconfig_from_v2({"strict_affinity": "yes"})


# ---- Node ------------------------------------------------------------------------------

FULL_NODE = {
    "apiVersion": "projectcalico.org/v3",
    "kind": "Node",
    "metadata": {
        "name": "node-1.example.com",
        "labels": {"kubernetes.io/hostname": "node-1", "zone": "a"},
        "resourceVersion": "99",
    },
    "spec": {
        "bgp": {
            "ipv4Address": "10.0.0.5/24",
            "ipv6Address": "fd00::5/64",
            "asNumber": 64512,
            "routerID": "10.0.0.5",
            "ipv4IPIPTunnelAddr": "192.168.3.1",
        },
        "ipv4VXLANTunnelAddr": "192.168.3.2",
        "ipv6VXLANTunnelAddr": "fd10::1",
        "orchRefs": [{"nodeName": "node-1", "orchestrator": "k8s"}],
    },
}


def test_node_full_round_trip() -> None:
    n = node_from_dict(FULL_NODE)
    assert n == Node(
        name="node-1.example.com",
        ipv4_address="10.0.0.5/24",
        ipv6_address="fd00::5/64",
        as_number=64512,
        router_id="10.0.0.5",
        ipv4_ipip_tunnel_addr="192.168.3.1",
        ipv4_vxlan_tunnel_addr="192.168.3.2",
        ipv6_vxlan_tunnel_addr="fd10::1",
        orch_refs=(OrchRef("k8s", "node-1"),),
        labels={"kubernetes.io/hostname": "node-1", "zone": "a"},
        resource_version="99",
    )
    assert node_to_dict(n) == FULL_NODE


def test_node_minimal() -> None:
    n = node_from_dict(obj("Node", "n1", None))
    assert n == Node(name="n1")
    assert node_to_dict(n)["spec"] == {}
    assert node_from_dict(node_to_dict(n)) == n


def test_node_addresses_canonicalised() -> None:
    n = node_from_dict(obj("Node", "n1", {"bgp": {"ipv6Address": "FD00:0::5/64"}}))
    assert n.ipv6_address == "fd00::5/64"


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("ipv4Address", "10.0.0.5", "has no prefix length"),
        ("ipv4Address", "fd00::5/64", "is not an IPv4 address"),
        ("ipv4Address", "10.0.0.5/33", "is not an IPv4 address"),
        ("ipv4Address", "10.0.0.5/255.255.255.0", "is not an IPv4 address"),
        ("ipv6Address", "10.0.0.5/24", "is not an IPv6 address"),
        ("ipv4IPIPTunnelAddr", "10.0.0.1/32", "is not an IPv4 address"),
        ("ipv4Address", 5, "must be a string"),
    ],
)
def test_node_bad_addresses(field: str, value: object, reason: str) -> None:
    message = error(node_from_dict, obj("Node", "n1", {"bgp": {field: value}}))
    assert message.startswith(f"Node(n1): spec.bgp.{field} ")
    assert reason in message


@pytest.mark.parametrize(
    ("value", "number"),
    [(1, 1), (64512, 64512), ("65000", 65000), ("1.10", 65546), (4294967295, 4294967295)],
)
def test_as_numbers(value: object, number: int) -> None:
    n = node_from_dict(obj("Node", "n1", {"bgp": {"asNumber": value}}))
    assert n.as_number == number
    assert node_to_dict(n)["spec"]["bgp"]["asNumber"] == number


@pytest.mark.parametrize("value", [0, -1, 4294967296, "65536.1", "as65000", True, "0.0"])
def test_bad_as_numbers(value: object) -> None:
    assert "is not an AS number" in error(
        node_from_dict, obj("Node", "n1", {"bgp": {"asNumber": value}})
    )


def test_unquoted_asdot_gets_a_hint() -> None:
    message = error(node_from_dict, obj("Node", "n1", {"bgp": {"asNumber": 1.1}}))
    assert 'quote an asdot number: "1.10"' in message


@pytest.mark.parametrize("value", ["0.0.0.0", "256.1.1.1", "fd00::1", "hash", 167772161])
def test_bad_router_ids(value: object) -> None:
    assert "spec.bgp.routerID" in error(
        node_from_dict, obj("Node", "n1", {"bgp": {"routerID": value}})
    )


def test_node_unknown_fields() -> None:
    assert 'unknown field "spec.bgp.asn"' in error(
        node_from_dict, obj("Node", "n1", {"bgp": {"asn": 1}})
    )
    assert 'unknown field "spec.orchRefs[0].name"' in error(
        node_from_dict, obj("Node", "n1", {"orchRefs": [{"orchestrator": "k8s", "name": "x"}]})
    )
    n = node_from_dict(obj("Node", "n1", {"wireguard": {}, "bgp": {"x": 1}}), strict=False)
    assert n == Node(name="n1")


def test_node_orch_ref_without_node_name() -> None:
    n = node_from_dict(obj("Node", "n1", {"orchRefs": [{"orchestrator": "openstack"}]}))
    assert n.orch_refs == (OrchRef("openstack"),)
    assert node_to_dict(n)["spec"]["orchRefs"] == [{"orchestrator": "openstack"}]
    assert "orchestrator is missing" in error(
        node_from_dict, obj("Node", "n1", {"orchRefs": [{"nodeName": "x"}]})
    )


# ---- WorkloadEndpoint ----------------------------------------------------------------

CNI_WEP = {
    "apiVersion": "projectcalico.org/v3",
    "kind": "WorkloadEndpoint",
    "metadata": {
        "name": "node--1-k8s-nginx-eth0",
        "namespace": "default",
        "labels": {"app": "nginx", "projectcalico.org/namespace": "default"},
    },
    "spec": {
        "orchestrator": "k8s",
        "node": "node-1",
        "pod": "nginx",
        "endpoint": "eth0",
        "containerID": "0123456789abcdef",
        "serviceAccountName": "default",
        "ipNetworks": ["192.168.3.7/32", "fd00:10::7/128"],
        "profiles": ["kns.default", "ksa.default.default"],
        "interfaceName": "calic440f455693",
        "mac": "0a:1b:2c:3d:4e:5f",
        "ipNATs": [{"internalIP": "192.168.3.7", "externalIP": "203.0.113.7"}],
        "ports": [{"name": "http", "protocol": "TCP", "port": 80, "hostPort": 8080}],
    },
}


def test_wep_full_round_trip() -> None:
    w = workloadendpoint_from_dict(CNI_WEP)
    assert w == WorkloadEndpoint(
        name="node--1-k8s-nginx-eth0",
        namespace="default",
        orchestrator="k8s",
        node="node-1",
        pod="nginx",
        endpoint="eth0",
        container_id="0123456789abcdef",
        service_account_name="default",
        ip_networks=("192.168.3.7/32", "fd00:10::7/128"),
        profiles=("kns.default", "ksa.default.default"),
        interface_name="calic440f455693",
        mac="0a:1b:2c:3d:4e:5f",
        ip_nats=(IPNAT("192.168.3.7", "203.0.113.7"),),
        ports=(WorkloadEndpointPort("http", "TCP", 80, 8080),),
        labels={"app": "nginx", "projectcalico.org/namespace": "default"},
    )
    assert workloadendpoint_to_dict(w) == CNI_WEP


def test_wep_defaults_and_normalisation() -> None:
    d = obj(
        "WorkloadEndpoint",
        "n1-cni-abc-eth0",
        {"ipNetworks": ["10.0.0.1", "FD00::1"], "mac": "EE:EE:EE:EE:EE:EE", "workload": "w"},
    )
    w = workloadendpoint_from_dict(d)
    assert w.namespace == "default"
    assert w.ip_networks == ("10.0.0.1/32", "fd00::1/128")
    assert w.mac == "ee:ee:ee:ee:ee:ee"
    assert w.workload == "w"
    out = workloadendpoint_to_dict(w)
    assert out["metadata"] == {"name": "n1-cni-abc-eth0", "namespace": "default"}
    assert workloadendpoint_from_dict(out) == w


@pytest.mark.parametrize(
    ("spec", "reason"),
    [
        ({"ipNetworks": ["10.0.0.0/24"]}, "spec.ipNetworks[0] 10.0.0.0/24 is not a single address"),
        ({"ipNetworks": ["fd00::1/64"]}, "use fd00::1/128"),
        ({"ipNetworks": ["nope"]}, "is not an IP address or CIDR"),
        ({"ipNetworks": "10.0.0.1/32"}, "spec.ipNetworks must be a list"),
        ({"mac": "ee:ee:ee"}, "spec.mac 'ee:ee:ee' is not a MAC address"),
        ({"interfaceName": "cali0123456789abc"}, "is not a Linux interface name"),
        ({"ipNATs": [{"internalIP": "x", "externalIP": "1.2.3.4"}]}, "internalIP 'x' is not"),
        ({"ports": [{"name": "p", "protocol": "HTTP", "port": 80}]}, "protocol 'HTTP'"),
        ({"ports": [{"name": "p", "port": 70000}]}, "port 70000 is out of range"),
        ({"profiles": [1]}, "spec.profiles item 1 is not a string"),
        ({"pod": 5}, "spec.pod must be a string"),
        ({"labels": {}}, 'unknown field "spec.labels"'),
    ],
)
def test_wep_errors(spec: dict[str, Any], reason: str) -> None:
    message = error(workloadendpoint_from_dict, obj("WorkloadEndpoint", "w1", spec, namespace="ns"))
    assert message.startswith("WorkloadEndpoint(ns/w1): ")
    assert reason in message


def test_wep_ports_protocol_forms() -> None:
    d = obj(
        "WorkloadEndpoint",
        "w1",
        {
            "ports": [
                {"name": "a", "protocol": "udp", "port": 53},
                {"name": "b", "protocol": 132, "port": 9},
            ]
        },
    )
    w = workloadendpoint_from_dict(d)
    assert [p.protocol for p in w.ports] == ["UDP", "132"]
    assert workloadendpoint_to_dict(w)["spec"]["ports"][1]["protocol"] == 132
    assert workloadendpoint_from_dict(workloadendpoint_to_dict(w)) == w


def test_wep_bad_namespace() -> None:
    d = obj("WorkloadEndpoint", "w1", {}, namespace="Bad_NS")
    assert "metadata.namespace 'Bad_NS' is not a valid DNS-1123 label" in error(
        workloadendpoint_from_dict, d
    )


# ---- registry -------------------------------------------------------------------------


def test_kinds_registry() -> None:
    assert {k: (i.plural, i.namespaced) for k, i in KINDS.items()} == {
        "IPPool": ("ippools", False),
        "IPAMConfiguration": ("ipamconfigurations", False),
        "IPAMConfig": ("ipamconfigurations", False),
        "Node": ("nodes", False),
        "WorkloadEndpoint": ("workloadendpoints", True),
        "BGPConfiguration": ("bgpconfigurations", False),
        "BGPPeer": ("bgppeers", False),
        "FelixConfiguration": ("felixconfigurations", False),
    }
    assert KINDS["IPAMConfig"] is KINDS["IPAMConfiguration"]
    assert KINDS["IPPool"].list_kind == "IPPoolList"
    d = {"apiVersion": "projectcalico.org/v3", "kind": "IPPool", "metadata": {"name": "p"}}
    d["spec"] = {"cidr": "10.0.0.0/16"}
    info = KINDS["IPPool"]
    assert info.from_dict is ippool_from_dict and info.to_dict is ippool_to_dict
    assert info.to_dict(info.from_dict(d))["spec"]["blockSize"] == 26
    assert KINDS["Node"].from_dict({"metadata": {"name": "n"}, "spec": {"x": 1}}, strict=False)


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("ippool", "IPPool"),
        ("ippools", "IPPool"),
        ("pool", "IPPool"),
        ("pools", "IPPool"),
        ("ipp", "IPPool"),
        ("IPPool", "IPPool"),
        ("node", "Node"),
        ("nodes", "Node"),
        ("no", "Node"),
        ("ipamconfig", "IPAMConfiguration"),
        ("ipamconfigs", "IPAMConfiguration"),
        ("ipamconfiguration", "IPAMConfiguration"),
        ("IPAMConfigurations", "IPAMConfiguration"),
        ("workloadendpoint", "WorkloadEndpoint"),
        ("workloadendpoints", "WorkloadEndpoint"),
        ("wep", "WorkloadEndpoint"),
        ("weps", "WorkloadEndpoint"),
    ],
)
def test_cli_names(name: str, kind: str) -> None:
    assert kind_for_cli_name(name).kind == kind


def test_unknown_cli_name_lists_valid_ones() -> None:
    with pytest.raises(InvalidInput) as info:
        kind_for_cli_name("networkpolicy")
    message = str(info.value)
    assert message.startswith("unknown resource type 'networkpolicy'; use one of: ")
    for name in ("ippool", "pools", "ipamconfig", "no", "wep", "bgppeers", "bgpconfig"):
        assert name in message


def test_ippool_to_dict_is_a_fresh_dict() -> None:
    p = ippool_from_dict(
        {"metadata": {"name": "p", "labels": {"a": "b"}}, "spec": {"cidr": "10.0.0.0/16"}}
    )
    out = ippool_to_dict(p)
    out["metadata"]["labels"]["a"] = "changed"
    out["spec"]["allowedUses"].append("LoadBalancer")
    assert p.labels == {"a": "b"}
    assert p.allowed_uses == ("Workload", "Tunnel")
