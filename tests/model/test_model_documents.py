"""Reading and writing YAML/JSON resource documents."""

from __future__ import annotations

import json

import pytest
import yaml

from tortie.errors import DecodeError, InvalidInput
from tortie.model.documents import dump, load_documents, parse_resource
from tortie.model.ippool import IPPool, ippool_from_dict, ippool_to_dict
from tortie.model.resources import IPAMConfig, Node, WorkloadEndpoint

STOCK_YAML = """\
apiVersion: projectcalico.org/v3
kind: IPPool
metadata:
  name: default-ipv4-ippool
spec:
  cidr: 192.168.0.0/16
  ipipMode: Always
  natOutgoing: true
"""


def test_single_yaml_document() -> None:
    docs = load_documents(STOCK_YAML, "pool.yaml")
    assert docs == [
        {
            "apiVersion": "projectcalico.org/v3",
            "kind": "IPPool",
            "metadata": {"name": "default-ipv4-ippool"},
            "spec": {"cidr": "192.168.0.0/16", "ipipMode": "Always", "natOutgoing": True},
        }
    ]
    p = parse_resource(docs[0])
    assert isinstance(p, IPPool) and p.ipip_mode == "Always" and p.block_size == 26


def test_json_document() -> None:
    text = json.dumps(
        {
            "apiVersion": "projectcalico.org/v3",
            "kind": "IPAMConfiguration",
            "metadata": {"name": "default"},
            "spec": {"strictAffinity": True},
        },
        indent=4,
    )
    [doc] = load_documents(text, "ipam.json")
    c = parse_resource(doc)
    assert isinstance(c, IPAMConfig) and c.strict_affinity


def test_multi_document_yaml_skips_empty_documents() -> None:
    text = f"""---
{STOCK_YAML}---
---
apiVersion: projectcalico.org/v3
kind: Node
metadata: {{name: node-1}}
spec:
  bgp: {{ipv4Address: 10.0.0.1/24, asNumber: "1.10"}}
---
apiVersion: projectcalico.org/v3
kind: WorkloadEndpoint
metadata: {{name: w1, namespace: ns}}
spec: {{ipNetworks: [10.1.0.1/32]}}
---
"""
    docs = load_documents(text, "all.yaml")
    assert [d["kind"] for d in docs] == ["IPPool", "Node", "WorkloadEndpoint"]
    node = parse_resource(docs[1])
    assert isinstance(node, Node) and node.as_number == 65546
    wep = parse_resource(docs[2])
    assert isinstance(wep, WorkloadEndpoint) and wep.namespace == "ns"


def test_list_kinds_are_unpacked() -> None:
    text = """\
apiVersion: projectcalico.org/v3
kind: IPPoolList
metadata:
  resourceVersion: "55"
items:
- apiVersion: projectcalico.org/v3
  kind: IPPool
  metadata: {name: a}
  spec: {cidr: 10.0.0.0/16}
- metadata: {name: b}
  spec: {cidr: 10.1.0.0/16}
"""
    docs = load_documents(text, "list.yaml")
    assert [d["metadata"]["name"] for d in docs] == ["a", "b"]
    assert docs[1]["kind"] == "IPPool"
    assert docs[1]["apiVersion"] == "projectcalico.org/v3"
    assert (
        load_documents("apiVersion: projectcalico.org/v3\nkind: NodeList\nitems: []\n", "x") == []
    )


def test_generic_list_and_list_item_errors() -> None:
    text = """\
apiVersion: v1
kind: List
items:
- {apiVersion: projectcalico.org/v3, kind: Node, metadata: {name: n1}}
- {kind: Node, metadata: {name: n2}}
"""
    with pytest.raises(InvalidInput, match=r"list.yaml \(List item 2\): Node has no apiVersion"):
        load_documents(text, "list.yaml")
    with pytest.raises(InvalidInput, match="unknown kind 'GlobalNetworkSetList'"):
        load_documents(
            "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkSetList\nitems: []\n", "x"
        )


def test_missing_and_unknown_kind_and_api_version() -> None:
    with pytest.raises(InvalidInput) as info:
        load_documents("apiVersion: projectcalico.org/v3\nmetadata: {name: a}\n", "a.yaml")
    assert str(info.value).startswith("a.yaml: kind is missing; add kind: (one of IPPool,")
    with pytest.raises(
        InvalidInput, match=r"a\.yaml: unknown kind 'GlobalNetworkSet'; use one of IPPool"
    ):
        load_documents("apiVersion: projectcalico.org/v3\nkind: GlobalNetworkSet\n", "a.yaml")
    with pytest.raises(InvalidInput, match="IPPool has no apiVersion; add apiVersion: project"):
        load_documents("kind: IPPool\n", "a.yaml")
    with pytest.raises(InvalidInput, match=r"Node apiVersion 'crd\.projectcalico\.org/v1' is not"):
        load_documents("apiVersion: crd.projectcalico.org/v1\nkind: Node\n", "a.yaml")
    [doc] = load_documents(
        STOCK_YAML.replace("projectcalico.org/v3", "crd.projectcalico.org/v1"), "a"
    )
    assert isinstance(parse_resource(doc), IPPool)


def test_document_number_named_in_multi_document_errors() -> None:
    text = f"{STOCK_YAML}---\n- just\n- a list\n"
    with pytest.raises(InvalidInput, match=r"^f.yaml: document 2 is a list, not a resource"):
        load_documents(text, "f.yaml")


def test_malformed_yaml_message() -> None:
    text = "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata:\n  name: a\n spec: x\n"
    with pytest.raises(DecodeError) as info:
        load_documents(text, "bad.yaml")
    message = str(info.value)
    assert message.startswith("bad.yaml: invalid YAML at line 5: ")
    assert message.endswith("; fix the syntax")
    assert "\n" not in message and "Traceback" not in message
    assert info.value.__suppress_context__


def test_unclosed_flow_and_tabs() -> None:
    with pytest.raises(
        DecodeError, match=r"^x\.yaml: invalid YAML at line \d+: .*; fix the syntax$"
    ):
        load_documents("spec: {cidr: 10.0.0.0/16\n", "x.yaml")
    with pytest.raises(DecodeError, match=r"^x.yaml: invalid YAML at line 2: "):
        load_documents("spec:\n\tcidr: 1\n", "x.yaml")


def test_malformed_json_message() -> None:
    text = '{\n  "apiVersion": "projectcalico.org/v3",\n  "kind": "IPPool",\n}\n'
    with pytest.raises(DecodeError) as info:
        load_documents(text, "bad.json")
    assert str(info.value) == (
        "bad.json: invalid JSON at line 4: Expecting property name enclosed in double quotes; "
        "fix the syntax"
    )


def test_duplicate_keys_are_refused() -> None:
    with pytest.raises(DecodeError, match=r"line 3: duplicate key 'cidr'"):
        load_documents("spec:\n  cidr: 10.0.0.0/16\n  cidr: 10.1.0.0/16\n", "d.yaml")
    with pytest.raises(DecodeError, match="duplicate key 'a'"):
        load_documents('{"a": 1, "a": 2}', "d.json")


def test_timestamps_and_ambiguous_scalars_stay_text() -> None:
    text = STOCK_YAML.replace(
        "  name: default-ipv4-ippool\n",
        "  name: default-ipv4-ippool\n  creationTimestamp: 2024-05-01T10:00:00Z\n",
    )
    [doc] = load_documents(text, "t.yaml")
    assert doc["metadata"]["creationTimestamp"] == "2024-05-01T10:00:00Z"
    p = parse_resource(doc)
    assert isinstance(p, IPPool) and p.creation_timestamp == "2024-05-01T10:00:00Z"


def test_parse_resource_dispatch_and_errors() -> None:
    c = parse_resource(
        {
            "apiVersion": "projectcalico.org/v3",
            "kind": "IPAMConfig",
            "metadata": {"name": "default"},
        }
    )
    assert c == IPAMConfig()
    with pytest.raises(InvalidInput, match="unknown kind 'Profile'"):
        parse_resource({"kind": "Profile"})
    d = {"kind": "IPPool", "metadata": {"name": "p"}, "spec": {"cidr": "10.0.0.0/16", "x": 1}}
    with pytest.raises(InvalidInput, match=r'unknown field "spec\.x"'):
        parse_resource(d)
    assert isinstance(parse_resource(d, strict=False), IPPool)


POOLS = [
    ippool_to_dict(ippool_from_dict({"metadata": {"name": n}, "spec": {"cidr": c}}))
    for n, c in [("a", "10.0.0.0/16"), ("b", "fd00::/48")]
]


def test_dump_yaml_list() -> None:
    text = dump(POOLS, "yaml", "IPPoolList", "42")
    assert text.startswith("apiVersion: projectcalico.org/v3\nkind: IPPoolList\nitems:\n- ")
    assert text.endswith("metadata:\n  resourceVersion: '42'\n")
    assert "  spec:\n    cidr: 10.0.0.0/16\n    blockSize: 26\n" in text  # insertion order
    assert "{" not in text  # block style
    assert [d["metadata"]["name"] for d in load_documents(text, "out")] == ["a", "b"]
    assert yaml.safe_load(text)["metadata"] == {"resourceVersion": "42"}


def test_dump_json_list() -> None:
    data = json.loads(dump(POOLS, "json", "IPPoolList", "7"))
    assert list(data) == ["apiVersion", "kind", "items", "metadata"]
    assert data["kind"] == "IPPoolList" and data["metadata"] == {"resourceVersion": "7"}
    assert data["items"] == POOLS


def test_dump_without_list_kind() -> None:
    one = dump(POOLS[:1], "yaml")
    assert not one.startswith("---") and yaml.safe_load(one) == POOLS[0]
    many = dump(POOLS, "yaml")
    assert list(yaml.safe_load_all(many)) == POOLS
    assert load_documents(many, "m") == POOLS
    assert json.loads(dump(POOLS[:1], "json")) == POOLS[0]
    assert json.loads(dump(POOLS, "json")) == POOLS
    assert load_documents(dump(POOLS, "json"), "j") == POOLS
    with pytest.raises(InvalidInput, match="unknown output format 'xml'"):
        dump(POOLS, "xml")  # type: ignore[arg-type]


def test_round_trip_through_text_is_stable() -> None:
    for fmt in ("yaml", "json"):
        text = dump(POOLS, fmt, "IPPoolList")
        again = [ippool_to_dict(ippool_from_dict(d)) for d in load_documents(text, "x")]
        assert dump(again, fmt, "IPPoolList") == text
