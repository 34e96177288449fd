"""Every WorkloadEndpointSpec field is carried; unknown fields survive a round trip."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from tortie.errors import InvalidInput
from tortie.model.workloadendpoint import workloadendpoint_from_dict, workloadendpoint_to_dict

FULL: dict[str, Any] = {
    "apiVersion": "projectcalico.org/v3",
    "kind": "WorkloadEndpoint",
    "metadata": {
        "name": "h-openstack-vm-p",
        "namespace": "openstack",
        "uid": "0b6f3d2e-1111-2222-3333-444455556666",
        "creationTimestamp": "2026-11-29T01:00:00Z",
        "labels": {"projectcalico.org/orchestrator": "openstack"},
        "annotations": {"openstack.projectcalico.org/network-id": "net-1"},
    },
    "spec": {
        "orchestrator": "openstack",
        "workload": "vm",
        "node": "h",
        "containerID": "c0ffee",
        "pod": "",
        "endpoint": "p",
        "serviceAccountName": "sa",
        "ipNetworks": ["10.65.0.5/32", "fd5f:65::5/128"],
        "ipNATs": [{"internalIP": "10.65.0.5", "externalIP": "172.16.0.5"}],
        "ipv4Gateway": "10.65.0.1",
        "ipv6Gateway": "fd5f:65::1",
        "allowedIps": ["10.65.0.99/32"],
        "allowSpoofedSourcePrefixes": ["10.99.0.0/16"],
        "profiles": ["openstack-sg-1"],
        "interfaceName": "tapp",
        "mac": "fa:16:3e:01:02:03",
        "ports": [{"name": "http", "protocol": "TCP", "port": 80, "hostPort": 8080}],
        "awsElasticIPs": ["3.3.3.3"],
        "qosControls": {"ingressBandwidth": 1000000, "egressPacketRate": 100},
    },
}


def test_every_calico_field_is_read_and_written_back() -> None:
    wep = workloadendpoint_from_dict(FULL)
    assert wep.ipv4_gateway == "10.65.0.1" and wep.ipv6_gateway == "fd5f:65::1"
    assert wep.allowed_ips == ("10.65.0.99/32",)
    assert wep.allow_spoofed_source_prefixes == ("10.99.0.0/16",)
    assert wep.service_account_name == "sa" and wep.container_id == "c0ffee"
    out = workloadendpoint_to_dict(wep)
    expected = copy.deepcopy(FULL["spec"])
    del expected["pod"]  # empty strings are omitted, as Calico's omitempty does
    assert out["spec"] == expected
    assert out["metadata"]["labels"] == FULL["metadata"]["labels"]
    assert out["metadata"]["annotations"] == FULL["metadata"]["annotations"]


def test_unknown_spec_fields_survive_a_datastore_round_trip() -> None:
    stored = copy.deepcopy(FULL)
    stored["spec"]["aFutureField"] = {"nested": [1, "two", None]}
    stored["spec"]["anotherOne"] = "x"
    wep = workloadendpoint_from_dict(json.loads(json.dumps(stored)), strict=False)
    back = workloadendpoint_to_dict(wep)
    assert back["spec"]["aFutureField"] == {"nested": [1, "two", None]}
    assert back["spec"]["anotherOne"] == "x"
    again = workloadendpoint_to_dict(workloadendpoint_from_dict(back, strict=False))
    assert again == back


def test_a_person_written_file_with_an_unknown_field_is_refused() -> None:
    doc = copy.deepcopy(FULL)
    doc["spec"]["ipv4Gatway"] = "10.65.0.1"
    with pytest.raises(InvalidInput, match="ipv4Gatway"):
        workloadendpoint_from_dict(doc)


@pytest.mark.parametrize(
    ("key", "value", "fragment"),
    [
        ("ipv4Gateway", "fd5f:65::1", "not an IPv4 address"),
        ("ipv6Gateway", "10.65.0.1", "not an IPv6 address"),
        ("ipv4Gateway", "gw", "not an IP address"),
        ("allowedIps", ["10.0.0.0/8"], "not a single address"),
        ("allowSpoofedSourcePrefixes", ["10.0.0.0/33"], "not a CIDR"),
    ],
)
def test_bad_new_fields_name_the_field(key: str, value: object, fragment: str) -> None:
    doc = copy.deepcopy(FULL)
    doc["spec"][key] = value
    with pytest.raises(InvalidInput, match=fragment) as info:
        workloadendpoint_from_dict(doc)
    assert f"spec.{key}" in str(info.value)
