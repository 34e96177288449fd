"""Property test: every valid IPPool survives to_dict/from_dict unchanged."""

from __future__ import annotations

import ipaddress
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from tortie.model.ippool import IPPool, ippool_from_dict, ippool_to_dict

NAMES = st.from_regex(r"[a-z0-9]([-a-z0-9]{0,20}[a-z0-9])?(\.[a-z0-9]{1,5}){0,2}", fullmatch=True)
SELECTORS = st.sampled_from(["all()", "has(zone)", "zone == 'a'", "!has(edge) && rack != '1'"])
LINK_LOCAL = (ipaddress.ip_network("169.254.0.0/16"), ipaddress.ip_network("fe80::/10"))


@st.composite
def pool_dicts(draw: st.DrawFn) -> dict[str, Any]:
    version = draw(st.sampled_from([4, 6]))
    lo, hi = (20, 32) if version == 4 else (116, 128)
    block = draw(st.integers(lo, hi))
    bits = 32 if version == 4 else 128
    prefix = draw(st.integers(1 if version == 4 else 8, block))
    raw = draw(st.integers(0, 2**bits - 1))
    cls = ipaddress.IPv4Network if version == 4 else ipaddress.IPv6Network
    net: ipaddress.IPv4Network | ipaddress.IPv6Network = cls(
        (raw >> (bits - prefix) << (bits - prefix), prefix)
    )
    if any(net.overlaps(ll) for ll in LINK_LOCAL if ll.version == version):
        net = cls(("10.0.0.0" if version == 4 else "fd00::", prefix), strict=False)
    uses = draw(
        st.sampled_from([["Workload", "Tunnel"], ["Tunnel", "Workload"], ["Workload"], ["Tunnel"]])
    )
    encap = draw(st.sampled_from(["Always", "CrossSubnet", "Never"]))
    on_ipip = version == 4 and draw(st.booleans())
    spec: dict[str, Any] = {
        "cidr": str(net),
        "blockSize": block,
        "ipipMode": encap if on_ipip else "Never",
        "vxlanMode": "Never" if on_ipip else encap,
        "natOutgoing": draw(st.booleans()),
        "disabled": draw(st.booleans()),
        "disableBGPExport": draw(st.booleans()),
        "nodeSelector": draw(SELECTORS),
        "allowedUses": uses,
        "assignmentMode": draw(st.sampled_from(["Automatic", "Manual"])),
    }
    if draw(st.booleans()):
        spec = {"cidr": spec["cidr"], "blockSize": block, "allowedUses": ["LoadBalancer"]}
    metadata: dict[str, Any] = {"name": draw(NAMES)}
    if draw(st.booleans()):
        metadata["labels"] = draw(st.dictionaries(NAMES, NAMES, max_size=3))
        metadata["resourceVersion"] = str(draw(st.integers(1, 10**9)))
    return {
        "apiVersion": "projectcalico.org/v3",
        "kind": "IPPool",
        "metadata": metadata,
        "spec": spec,
    }


@given(pool_dicts())
def test_ippool_round_trip(d: dict[str, Any]) -> None:
    p = ippool_from_dict(d)
    out = ippool_to_dict(p)
    assert ippool_from_dict(out) == p
    assert ippool_to_dict(ippool_from_dict(out)) == out
    # every field the input gave comes back as given
    for key, value in d["spec"].items():
        assert out["spec"][key] == value
    assert out["metadata"]["name"] == d["metadata"]["name"]
    assert p.network.prefixlen <= p.block_size


@given(pool_dicts())
def test_ippool_fields_match_input(d: dict[str, Any]) -> None:
    p = ippool_from_dict(d)
    spec = d["spec"]
    assert isinstance(p, IPPool)
    assert p.cidr == spec["cidr"]
    assert p.version == ipaddress.ip_network(spec["cidr"]).version
    assert p.block_size == spec.get("blockSize", 26 if p.version == 4 else 122)
    assert list(p.allowed_uses) == spec["allowedUses"]
