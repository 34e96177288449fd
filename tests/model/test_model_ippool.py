"""IPPool: every field, default and validation rule of Calico's v3 IPPool."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest

from tortie.errors import InvalidInput
from tortie.model.ippool import (
    IPPool,
    check_overlap,
    check_pool_change,
    ippool_from_dict,
    ippool_to_dict,
)


def pool(name: str = "pool-a", /, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "projectcalico.org/v3",
        "kind": "IPPool",
        "metadata": {"name": name},
        "spec": spec,
    }


def error(d: dict[str, Any]) -> str:
    with pytest.raises(InvalidInput) as info:
        ippool_from_dict(d)
    message = str(info.value)
    assert "\n" not in message
    return message


# The IPPool of Calico's documentation/quickstart manifests, as users apply it.
STOCK = {
    "apiVersion": "projectcalico.org/v3",
    "kind": "IPPool",
    "metadata": {"name": "default-ipv4-ippool"},
    "spec": {
        "cidr": "192.168.0.0/16",
        "blockSize": 26,
        "ipipMode": "Always",
        "natOutgoing": True,
        "nodeSelector": "all()",
        "vxlanMode": "Never",
    },
}


def test_stock_manifest_applies_unchanged_and_fills_defaults() -> None:
    p = ippool_from_dict(STOCK)
    assert p == IPPool(
        name="default-ipv4-ippool",
        cidr="192.168.0.0/16",
        block_size=26,
        ipip_mode="Always",
        vxlan_mode="Never",
        nat_outgoing=True,
    )
    assert ippool_to_dict(p) == {
        "apiVersion": "projectcalico.org/v3",
        "kind": "IPPool",
        "metadata": {"name": "default-ipv4-ippool"},
        "spec": {
            "cidr": "192.168.0.0/16",
            "blockSize": 26,
            "ipipMode": "Always",
            "vxlanMode": "Never",
            "natOutgoing": True,
            "disabled": False,
            "disableBGPExport": False,
            "nodeSelector": "all()",
            "allowedUses": ["Workload", "Tunnel"],
            "assignmentMode": "Automatic",
        },
    }


def test_calicoctl_get_output_round_trips_with_metadata() -> None:
    d = {
        "apiVersion": "projectcalico.org/v3",
        "kind": "IPPool",
        "metadata": {
            "name": "default-ipv6-ippool",
            "labels": {"team": "net"},
            "annotations": {"note": "anything: goes here"},
            "uid": "5f1c8d52-1111-2222-3333-444455556666",
            "creationTimestamp": "2024-05-01T10:00:00Z",
            "resourceVersion": "1234",
        },
        "spec": {
            "cidr": "fd5e:1a2b:3c4d::/48",
            "blockSize": 122,
            "ipipMode": "Never",
            "vxlanMode": "CrossSubnet",
            "natOutgoing": False,
            "disabled": True,
            "disableBGPExport": True,
            "nodeSelector": "zone == 'a'",
            "allowedUses": ["Tunnel", "Workload"],
            "assignmentMode": "Manual",
        },
    }
    p = ippool_from_dict(d)
    assert p.labels == {"team": "net"}
    assert p.annotations == {"note": "anything: goes here"}
    assert p.uid == "5f1c8d52-1111-2222-3333-444455556666"
    assert p.creation_timestamp == "2024-05-01T10:00:00Z"
    assert p.resource_version == "1234"
    assert p.disabled and p.disable_bgp_export and not p.nat_outgoing
    assert p.allowed_uses == ("Tunnel", "Workload")
    assert p.assignment_mode == "Manual"
    assert ippool_to_dict(p) == d
    assert ippool_from_dict(ippool_to_dict(p)) == p


def test_ipv4_defaults() -> None:
    p = ippool_from_dict(pool(cidr="10.0.0.0/16"))
    assert (p.block_size, p.ipip_mode, p.vxlan_mode) == (26, "Never", "Never")
    assert (p.nat_outgoing, p.disabled, p.disable_bgp_export) == (False, False, False)
    assert p.node_selector == "all()"
    assert p.allowed_uses == ("Workload", "Tunnel")
    assert p.assignment_mode == "Automatic"
    assert p.labels == {} and p.uid is None and p.resource_version is None
    assert p.version == 4
    assert p.network == ipaddress.IPv4Network("10.0.0.0/16")


def test_ipv6_defaults_and_canonical_cidr() -> None:
    p = ippool_from_dict(pool(cidr="FD00:0:0:0::/48"))
    assert p.cidr == "fd00::/48"
    assert p.block_size == 122
    assert p.version == 6
    assert p.network == ipaddress.IPv6Network("fd00::/48")


def test_null_and_zero_values_mean_defaults() -> None:
    p = ippool_from_dict(
        pool(cidr="10.0.0.0/16", blockSize=0, ipipMode="", vxlanMode=None, nodeSelector="")
    )
    assert (p.block_size, p.ipip_mode, p.vxlan_mode, p.node_selector) == (
        26,
        "Never",
        "Never",
        "all()",
    )
    assert ippool_from_dict(pool(cidr="10.0.0.0/16", allowedUses=[])).allowed_uses == (
        "Workload",
        "Tunnel",
    )


# ---- cidr ---------------------------------------------------------------------------


def test_cidr_not_strictly_masked_message() -> None:
    assert error(pool("pool-b", cidr="10.0.0.1/16")) == (
        "IPPool(pool-b): spec.cidr 10.0.0.1/16 is not strictly masked; use 10.0.0.0/16"
    )
    assert "use fd00::/64" in error(pool(cidr="fd00::1/64"))


@pytest.mark.parametrize(
    ("cidr", "reason"),
    [
        (None, "spec.cidr is missing"),
        ("", "spec.cidr is missing"),
        (1234, "spec.cidr must be a string"),
        ("10.0.0.0", "is not a CIDR"),
        ("10.0.0.0/255.255.0.0", "is not a CIDR"),
        ("10.0.0.0/33", "is not a valid CIDR"),
        ("10.0.0.300/24", "is not a valid CIDR"),
        ("pool/16", "is not a valid CIDR"),
    ],
)
def test_bad_cidr(cidr: object, reason: str) -> None:
    message = error(pool(cidr=cidr))
    assert message.startswith("IPPool(pool-a): ")
    assert reason in message


def test_spec_missing_entirely() -> None:
    d = pool()
    del d["spec"]
    assert "spec.cidr is missing" in error(d)


@pytest.mark.parametrize(
    ("cidr", "reserved"),
    [
        ("169.254.0.0/16", "169.254.0.0/16"),
        ("169.254.10.0/24", "169.254.0.0/16"),
        ("169.0.0.0/8", "169.254.0.0/16"),
        ("fe80::/64", "fe80::/10"),
        ("fe00::/7", "fe80::/10"),
    ],
)
def test_cidr_may_not_overlap_link_local(cidr: str, reserved: str) -> None:
    message = error(pool(cidr=cidr, blockSize=26 if "." in cidr else 122))
    assert f"overlaps the link-local range {reserved}" in message
    assert f"choose a CIDR outside {reserved}" in message


def test_cidr_next_to_link_local_is_fine() -> None:
    assert ippool_from_dict(pool(cidr="169.255.0.0/16")).cidr == "169.255.0.0/16"
    assert ippool_from_dict(pool(cidr="fec0::/64")).cidr == "fec0::/64"


# ---- blockSize ----------------------------------------------------------------------


def test_block_size_out_of_range_message() -> None:
    assert error(pool(cidr="10.0.0.0/16", blockSize=19)) == (
        "IPPool(pool-a): spec.blockSize 19 is out of range for IPv4 (must be 20-32); "
        "choose a block size between 20 and 32"
    )


@pytest.mark.parametrize(
    ("cidr", "size", "ok"),
    [
        ("10.0.0.0/16", 20, True),
        ("10.0.0.0/16", 32, True),
        ("10.0.0.0/16", 33, False),
        ("10.0.0.0/16", 116, False),
        ("fd00::/48", 116, True),
        ("fd00::/48", 128, True),
        ("fd00::/48", 115, False),
        ("fd00::/48", 129, False),
        ("fd00::/48", 26, False),
    ],
)
def test_block_size_ranges(cidr: str, size: int, ok: bool) -> None:
    if ok:
        assert ippool_from_dict(pool(cidr=cidr, blockSize=size)).block_size == size
    else:
        assert f"spec.blockSize {size} is out of range" in error(pool(cidr=cidr, blockSize=size))


@pytest.mark.parametrize("size", [True, "26", 26.0])
def test_block_size_must_be_an_integer(size: object) -> None:
    assert "spec.blockSize must be an integer" in error(pool(cidr="10.0.0.0/16", blockSize=size))


def test_pool_must_hold_at_least_one_block() -> None:
    message = error(pool(cidr="10.0.0.0/28"))
    assert "spec.cidr 10.0.0.0/28 is smaller than one block of /26" in message
    assert "blockSize of at least 28" in message
    assert ippool_from_dict(pool(cidr="10.0.0.0/28", blockSize=28)).block_size == 28
    assert ippool_from_dict(pool(cidr="10.0.0.0/26")).block_size == 26
    assert "smaller than one block of /122" in error(pool(cidr="fd00::/123"))


# ---- encapsulation --------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["Always", "CrossSubnet", "Never"])
def test_encapsulation_modes(mode: str) -> None:
    assert ippool_from_dict(pool(cidr="10.0.0.0/16", ipipMode=mode)).ipip_mode == mode
    assert ippool_from_dict(pool(cidr="10.0.0.0/16", vxlanMode=mode)).vxlan_mode == mode


@pytest.mark.parametrize(
    ("value", "fix"),
    [("always", "use Always"), ("cross-subnet", "use CrossSubnet"), ("Sometimes", "one of")],
)
def test_bad_encapsulation_mode(value: str, fix: str) -> None:
    message = error(pool(cidr="10.0.0.0/16", vxlanMode=value))
    assert f"spec.vxlanMode {value!r} is not one of Always, CrossSubnet, Never" in message
    assert fix in message


def test_ipip_and_vxlan_not_both() -> None:
    message = error(pool(cidr="10.0.0.0/16", ipipMode="Always", vxlanMode="CrossSubnet"))
    assert "cannot both be enabled; set one of them to Never" in message
    p = ippool_from_dict(pool(cidr="10.0.0.0/16", ipipMode="CrossSubnet", vxlanMode="Never"))
    assert p.ipip_mode == "CrossSubnet"


def test_no_ipip_on_ipv6() -> None:
    message = error(pool(cidr="fd00::/48", ipipMode="Always"))
    assert "spec.ipipMode Always is not supported for IPv6 pools" in message
    assert ippool_from_dict(pool(cidr="fd00::/48", vxlanMode="Always")).vxlan_mode == "Always"


# ---- booleans -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "attr"),
    [
        ("natOutgoing", "nat_outgoing"),
        ("disabled", "disabled"),
        ("disableBGPExport", "disable_bgp_export"),
    ],
)
def test_booleans(key: str, attr: str) -> None:
    assert getattr(ippool_from_dict(pool(cidr="10.0.0.0/16", **{key: True})), attr) is True
    assert getattr(ippool_from_dict(pool(cidr="10.0.0.0/16", **{key: False})), attr) is False
    message = error(pool(cidr="10.0.0.0/16", **{key: "yes"}))
    assert f"spec.{key} must be true or false" in message


# ---- selectors ----------------------------------------------------------------------


def test_node_selector_kept_as_written() -> None:
    text = "zone in {'a', 'b'} && !has(edge)"
    assert ippool_from_dict(pool(cidr="10.0.0.0/16", nodeSelector=text)).node_selector == text


def test_invalid_node_selector_names_the_pool() -> None:
    message = error(pool("pool-z", cidr="10.0.0.0/16", nodeSelector="zone =="))
    assert message.startswith("IPPool(pool-z): spec.nodeSelector is invalid: ")
    assert "zone ==" in message
    assert "fix the selector" in message


def test_namespace_selector_optional_and_validated() -> None:
    p = ippool_from_dict(pool(cidr="10.0.0.0/16", namespaceSelector="team == 'x'"))
    assert p.namespace_selector == "team == 'x'"
    assert ippool_to_dict(p)["spec"]["namespaceSelector"] == "team == 'x'"
    assert "namespaceSelector" not in ippool_to_dict(ippool_from_dict(pool(cidr="10.0.0.0/16")))
    assert "spec.namespaceSelector is invalid" in error(
        pool(cidr="10.0.0.0/16", namespaceSelector="has(")
    )


# ---- allowedUses / assignmentMode -----------------------------------------------------


def test_load_balancer_pool_alone() -> None:
    p = ippool_from_dict(pool(cidr="10.0.0.0/16", allowedUses=["LoadBalancer"]))
    assert p.allowed_uses == ("LoadBalancer",)
    message = error(pool(cidr="10.0.0.0/16", allowedUses=["LoadBalancer", "Workload"]))
    assert "LoadBalancer cannot be combined with Workload or Tunnel" in message
    message = error(pool(cidr="10.0.0.0/16", allowedUses=["LoadBalancer"], vxlanMode="Always"))
    assert "LoadBalancer pool cannot have IPIP or VXLAN enabled" in message


def test_allowed_uses_single_values_and_errors() -> None:
    assert ippool_from_dict(pool(cidr="10.0.0.0/16", allowedUses=["Tunnel"])).allowed_uses == (
        "Tunnel",
    )
    assert "'Pods' is not one of" in error(pool(cidr="10.0.0.0/16", allowedUses=["Pods"]))
    assert "lists a value twice" in error(
        pool(cidr="10.0.0.0/16", allowedUses=["Workload", "Workload"])
    )
    assert "spec.allowedUses must be a list" in error(
        pool(cidr="10.0.0.0/16", allowedUses="Workload")
    )


def test_assignment_mode() -> None:
    p = ippool_from_dict(pool(cidr="10.0.0.0/16", assignmentMode="Manual"))
    assert p.assignment_mode == "Manual"
    assert "use Manual" in error(pool(cidr="10.0.0.0/16", assignmentMode="manual"))


# ---- metadata, unknown fields ----------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["Pool-A", "pool_a", "-pool", "pool-", "a" * 254, "pool a", "pool..a"]
)
def test_name_must_be_dns_subdomain(name: str) -> None:
    assert "is not a valid DNS-1123 subdomain" in error(pool(name, cidr="10.0.0.0/16"))


@pytest.mark.parametrize("name", ["a", "pool-1", "pool.v4.example", "a" * 253])
def test_valid_names(name: str) -> None:
    assert ippool_from_dict(pool(name, cidr="10.0.0.0/16")).name == name


def test_name_missing() -> None:
    d = pool(cidr="10.0.0.0/16")
    d["metadata"] = {}
    assert error(d) == "IPPool(<no name>): metadata.name is missing; give the resource a name"


def test_unknown_spec_field_message() -> None:
    message = error(pool(cidr="10.0.0.0/16", foo=1))
    assert message.startswith('IPPool(pool-a): unknown field "spec.foo"; remove it (known fields: ')
    assert "cidr, blockSize, ipipMode" in message


def test_unknown_metadata_and_top_level_fields() -> None:
    d = pool(cidr="10.0.0.0/16")
    d["metadata"]["generateName"] = "x"
    assert 'unknown field "metadata.generateName"' in error(d)
    d = pool(cidr="10.0.0.0/16")
    d["status"] = {}
    assert 'unknown field "status"' in error(d)


def test_calico_v1_fields_point_at_v3_names() -> None:
    message = error(pool(cidr="10.0.0.0/16", ipip={"enabled": True}))
    assert 'unknown field "spec.ipip"' in message and "use spec.ipipMode" in message
    assert "use spec.natOutgoing" in error(pool(cidr="10.0.0.0/16", **{"nat-outgoing": True}))


def test_non_strict_ignores_unknown_fields() -> None:
    d = pool(cidr="10.0.0.0/16", futureField=1)
    d["status"] = {"x": 1}
    assert ippool_from_dict(d, strict=False).cidr == "10.0.0.0/16"


def test_labels_must_be_valid() -> None:
    d = pool(cidr="10.0.0.0/16")
    d["metadata"]["labels"] = {"example.com/zone": "a-1", "empty": ""}
    assert ippool_from_dict(d).labels == {"example.com/zone": "a-1", "empty": ""}
    d["metadata"]["labels"] = {"bad key": "x"}
    assert "label key 'bad key' is invalid" in error(d)
    d["metadata"]["labels"] = {"zone": "a b"}
    assert "has an invalid value" in error(d)
    d["metadata"]["labels"] = {"zone": 5}
    assert "metadata.labels.zone must be a string" in error(d)


def test_unquoted_resource_version_becomes_text() -> None:
    d = pool(cidr="10.0.0.0/16")
    d["metadata"]["resourceVersion"] = 77
    assert ippool_from_dict(d).resource_version == "77"


def test_kind_and_api_version() -> None:
    d = pool(cidr="10.0.0.0/16")
    d["kind"] = "Node"
    assert "kind is 'Node', expected IPPool" in error(d)
    d = pool(cidr="10.0.0.0/16")
    d["apiVersion"] = "projectcalico.org/v2"
    assert "apiVersion 'projectcalico.org/v2' is not supported" in error(d)
    d["apiVersion"] = "crd.projectcalico.org/v1"
    assert ippool_from_dict(d).cidr == "10.0.0.0/16"


def test_not_a_mapping() -> None:
    assert "the resource must be a mapping, not a list" in error([1, 2])  # type: ignore[arg-type]
    d = pool()
    d["spec"] = ["cidr"]
    assert "spec must be a mapping, not a list" in error(d)


def test_pool_is_frozen() -> None:
    p = ippool_from_dict(pool(cidr="10.0.0.0/16"))
    with pytest.raises(AttributeError):
        p.cidr = "10.1.0.0/16"  # type: ignore[misc]


# ---- changes and overlaps ---------------------------------------------------------------


def test_cidr_and_block_size_cannot_change() -> None:
    old = ippool_from_dict(pool(cidr="10.0.0.0/16"))
    with pytest.raises(InvalidInput, match=r"spec.cidr cannot be changed \(from 10.0.0.0/16 to"):
        check_pool_change(old, ippool_from_dict(pool(cidr="10.1.0.0/16")))
    with pytest.raises(InvalidInput, match=r"spec.blockSize cannot be changed \(from 26 to 24\)"):
        check_pool_change(old, ippool_from_dict(pool(cidr="10.0.0.0/16", blockSize=24)))
    check_pool_change(
        old, ippool_from_dict(pool(cidr="10.0.0.0/16", disabled=True, natOutgoing=True))
    )
    with pytest.raises(InvalidInput, match="is not an update of IPPool"):
        check_pool_change(old, ippool_from_dict(pool("other", cidr="10.0.0.0/16")))


def test_overlap_uses_calicos_text() -> None:
    a = ippool_from_dict(pool("pool-a", cidr="10.0.0.0/16"))
    b = ippool_from_dict(pool("pool-b", cidr="10.0.128.0/20"))
    with pytest.raises(InvalidInput) as info:
        check_overlap(b, [a])
    assert str(info.value) == "IPPool(pool-b) CIDR overlaps with IPPool(pool-a) CIDR 10.0.0.0/16"


def test_no_overlap_cases() -> None:
    a = ippool_from_dict(pool("pool-a", cidr="10.0.0.0/16"))
    v6 = ippool_from_dict(pool("pool-6", cidr="fd00::/48"))
    adjacent = ippool_from_dict(pool("pool-c", cidr="10.1.0.0/16"))
    check_overlap(adjacent, [a, v6])
    check_overlap(ippool_from_dict(pool("pool-a", cidr="10.0.0.0/16", disabled=True)), [a])
    with pytest.raises(InvalidInput, match=r"IPPool\(big\) CIDR overlaps with IPPool\(pool-6\)"):
        check_overlap(ippool_from_dict(pool("big", cidr="fd00::/16")), [a, v6])
