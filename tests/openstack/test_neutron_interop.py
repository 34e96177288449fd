"""Endpoints Calico's Neutron driver wrote are read, guarded and deleted by tortie, and
tortie writes what the driver writes; against a real etcd.  See ``neutron_writer`` for
why the driver's documents are reproduced rather than written by the package itself."""

from __future__ import annotations

import copy
import io
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from neutron_writer import endpoint_name, endpoint_spec, get_raw, put_endpoint

from cli.clihelp import Cli
from etcd_cluster import EtcdCluster

PORT: dict[str, Any] = {
    "id": "8a7c1b2d-3e4f-5a6b-7c8d-9e0f1a2b3c4d",
    "device_id": "e1d2c3b4-a5f6-4789-8abc-def012345678",
    "device_owner": "compute:nova",
    "binding:host_id": "compute-1",
    "mac_address": "fa:16:3e:aa:bb:cc",
    "network_id": "net-1",
    "project_id": "proj-1",
    "fixed_ips": [
        {"subnet_id": "s4", "ip_address": "10.65.0.20", "gateway": "10.65.0.1"},
        {"subnet_id": "s6", "ip_address": "fd5f:65::20", "gateway": "fd5f:65::1"},
    ],
    "allowed_address_pairs": [{"ip_address": "10.65.0.99"}],
    "floating_ips": [{"int_ip": "10.65.0.20", "ext_ip": "172.16.1.20"}],
    "security_groups": ["sg-1"],
    "calico-sg-names": {"sg-1": "web"},
    "dns_assignment": [{"fqdn": "vm1.example.test."}],
}


@pytest.fixture
def ecli(
    etcd: EtcdCluster,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> Cli:
    etcd.wipe()
    monkeypatch.setenv("DATASTORE_TYPE", "etcdv3")
    monkeypatch.setenv("ETCD_ENDPOINTS", ",".join(etcd.endpoints))

    def set_stdin(text: str) -> None:
        monkeypatch.setattr(sys, "stdin", io.StringIO(text))

    return Cli(tmp_path, capsys, set_stdin)


def listed(cli: Cli) -> dict[str, dict[str, Any]]:
    data = cli("get", "wep", "-n", "openstack", "-o", "json").ok().json()
    return {d["metadata"]["name"]: d for d in data["items"]}


def test_a_driver_written_endpoint_is_read_with_every_field(ecli: Cli, etcd: EtcdCluster) -> None:
    key = put_endpoint(etcd, PORT)
    raw = get_raw(etcd, key)
    assert raw is not None
    found = listed(ecli)
    name = endpoint_name(PORT)
    assert list(found) == [name]
    doc = found[name]
    assert doc["spec"] == raw["spec"]
    assert doc["metadata"]["labels"] == raw["metadata"]["labels"]
    assert doc["metadata"]["annotations"] == raw["metadata"]["annotations"]
    assert doc["metadata"]["uid"] == raw["metadata"]["uid"]
    # Written back through 'tortie apply', nothing is lost.
    text = ecli("get", "wep", name, "-n", "openstack", "-o", "yaml").ok().out
    ecli("apply", "-f", ecli.file(text)).ok()
    after = get_raw(etcd, key)
    assert after is not None
    assert after["spec"] == raw["spec"]
    assert after["metadata"]["labels"] == raw["metadata"]["labels"]


def test_its_addresses_are_refused_to_other_endpoints_and_delete_removes_it(
    ecli: Cli, etcd: EtcdCluster
) -> None:
    key = put_endpoint(etcd, PORT)
    name = endpoint_name(PORT)
    for addr in ("fd5f:65::20", "10.65.0.99"):  # a fixed IP, an allowed address pair
        ecli(
            "endpoint",
            "create",
            "--node",
            "compute-2",
            "--workload",
            "vm2",
            "--endpoint",
            "p2",
            "--ip",
            addr,
        ).fails(1, addr, f"held by WorkloadEndpoint openstack/{name}")
    assert list(listed(ecli)) == [name]
    ecli("endpoint", "delete", name).ok()
    assert get_raw(etcd, key) is None


def test_tortie_writes_what_the_driver_writes(ecli: Cli, etcd: EtcdCluster) -> None:
    port = copy.deepcopy(PORT)
    port["allowed_address_pairs"] = []
    port["floating_ips"] = []
    ecli.apply(
        yaml.safe_dump(
            {
                "apiVersion": "projectcalico.org/v3",
                "kind": "IPPool",
                "metadata": {"name": "v4"},
                "spec": {"cidr": "10.65.0.0/24", "blockSize": 28},
            }
        )
    ).ok()
    ecli(
        "endpoint",
        "create",
        "--node",
        port["binding:host_id"],
        "--workload",
        port["device_id"],
        "--endpoint",
        port["id"],
        "--ip",
        "10.65.0.20",
        "--ip",
        "fd5f:65::20",
        "--mac",
        port["mac_address"],
        "--ipv4-gateway",
        "10.65.0.1",
        "--ipv6-gateway",
        "fd5f:65::1",
    ).ok()
    key = (
        f"/calico/resources/v3/projectcalico.org/workloadendpoints/openstack/{endpoint_name(port)}"
    )
    mine = get_raw(etcd, key)
    assert mine is not None
    theirs = endpoint_spec(port)
    assert theirs.pop("allowedIps") == []  # the driver writes it empty; Calico omits it
    assert mine["spec"] == theirs
    # The driver then rewrites the same endpoint (labels, annotations, its own spec):
    put_endpoint(etcd, port)
    ecli("endpoint", "delete", endpoint_name(port)).ok()
    assert get_raw(etcd, key) is None
    assert "is not assigned" in ecli("ipam", "show", "--ip", "10.65.0.20").ok().out


def test_an_update_by_tortie_keeps_the_drivers_labels_and_identity(
    ecli: Cli, etcd: EtcdCluster
) -> None:
    key = put_endpoint(etcd, PORT)
    raw = get_raw(etcd, key)
    assert raw is not None
    ecli(
        "endpoint",
        "create",
        "--node",
        PORT["binding:host_id"],
        "--workload",
        PORT["device_id"],
        "--endpoint",
        PORT["id"],
        "--ip",
        "10.65.0.21",
    ).ok()
    after = get_raw(etcd, key)
    assert after is not None
    assert after["spec"]["ipNetworks"] == ["10.65.0.21/32"]
    assert after["metadata"]["uid"] == raw["metadata"]["uid"]
    assert after["metadata"]["creationTimestamp"] == raw["metadata"]["creationTimestamp"]
    assert after["metadata"]["annotations"] == raw["metadata"]["annotations"]
    for k, v in raw["metadata"]["labels"].items():
        assert after["metadata"]["labels"][k] == v
