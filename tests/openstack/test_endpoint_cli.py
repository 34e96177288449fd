"""``tortie endpoint create|delete`` for v4-only, v6-only and dual-stack VMs."""

from __future__ import annotations

from typing import Any

import pytest

from cli.clihelp import Cli, Result, pool_yaml

V4_POOL = "10.65.0.0/24"
V6_POOL = "fd5f:65::/112"


def create(cli: Cli, node: str, vm: str, port: str, *extra: str) -> Result:
    return cli("endpoint", "create", "--node", node, "--workload", vm, "--endpoint", port, *extra)


def weps(cli: Cli, *where: str) -> dict[str, dict[str, Any]]:
    data = cli("get", "workloadendpoints", *where, "-o", "json").ok().json()
    assert data["kind"] == "WorkloadEndpointList"
    return {d["metadata"]["name"]: d for d in data["items"]}


def in_use(cli: Cli, addr: str) -> str:
    return cli("ipam", "show", "--ip", addr).ok().out


@pytest.fixture
def pools(cli: Cli) -> Cli:
    cli.apply(pool_yaml("v4", V4_POOL, blockSize=28)).ok()
    cli.apply(pool_yaml("v6", V6_POOL, blockSize=124)).ok()
    return cli


def test_dual_stack_vm_is_named_as_calico_names_it_and_reserves_pool_addresses(
    pools: Cli,
) -> None:
    res = create(
        pools,
        "compute-1",
        "vm-a",
        "5e0c9b2a-11aa-4b5c",
        "--ip",
        "10.65.0.5",
        "--ip",
        "fd5f:65::5",
        "--mac",
        "FA:16:3E:01:02:03",
        "--ipv4-gateway",
        "10.65.0.1",
        "--ipv6-gateway",
        "fd5f:65::1",
    ).ok()
    name = "compute--1-openstack-vm--a-5e0c9b2a--11aa--4b5c"
    assert name in res.out and "reserved in IPAM" in res.out
    found = weps(pools, "-n", "openstack")
    assert list(found) == [name]
    doc = found[name]
    assert doc["metadata"]["namespace"] == "openstack"
    assert doc["spec"] == {
        "orchestrator": "openstack",
        "workload": "vm-a",
        "node": "compute-1",
        "endpoint": "5e0c9b2a-11aa-4b5c",
        "ipNetworks": ["10.65.0.5/32", "fd5f:65::5/128"],
        "ipv4Gateway": "10.65.0.1",
        "ipv6Gateway": "fd5f:65::1",
        "interfaceName": "tap5e0c9b2a-11",
        "mac": "fa:16:3e:01:02:03",
    }
    for addr in ("10.65.0.5", "fd5f:65::5"):
        assert f"openstack.openstack.{name}" in in_use(pools, addr)
    # Not in the default namespace: calicoctl's -n, and -A lists everything.
    assert weps(pools, "-n", "default") == {}
    assert list(weps(pools, "--all-namespaces")) == [name]
    # A pod cannot be given a reserved address.
    pools("ipam", "assign", "--handle", "pod", "--node", "n1", "--ip", "10.65.0.5").fails(
        2, "already assigned"
    )


def test_v4_only_and_v6_only_vms_and_addresses_outside_pools(pools: Cli) -> None:
    create(pools, "c1", "vm4", "p4", "--ip", "10.65.0.9").ok()
    res = create(pools, "c1", "vm6", "p6", "--ip", "fd5f:65::9", "--ip", "fd99::9").ok()
    assert "outside every pool, recorded as given: fd99::9/128" in res.out
    found = weps(pools, "-n", "openstack")
    assert found["c1-openstack-vm4-p4"]["spec"]["ipNetworks"] == ["10.65.0.9/32"]
    assert found["c1-openstack-vm6-p6"]["spec"]["ipNetworks"] == ["fd5f:65::9/128", "fd99::9/128"]
    assert "is in use" in in_use(pools, "fd5f:65::9")
    # Delete releases the pool addresses; the outside one was never in IPAM.
    out = pools("endpoint", "delete", "c1-openstack-vm6-p6").ok().out
    assert "released: fd5f:65::9" in out
    assert "is not assigned" in in_use(pools, "fd5f:65::9")
    assert list(weps(pools, "-n", "openstack")) == ["c1-openstack-vm4-p4"]
    pools("endpoint", "delete", "--node", "c1", "--workload", "vm4", "--endpoint", "p4").ok()
    assert weps(pools, "-A") == {}
    assert "is not assigned" in in_use(pools, "10.65.0.9")
    pools("endpoint", "delete", "c1-openstack-vm4-p4").fails(1, "does not exist")


def test_conflicts_are_refused_and_nothing_is_written(pools: Cli) -> None:
    create(pools, "c1", "vm1", "p1", "--ip", "10.65.0.5", "--ip", "fd99::5").ok()
    # Held by another endpoint (outside a pool too): refused, the new v4 not reserved.
    create(pools, "c2", "vm2", "p2", "--ip", "10.65.0.6", "--ip", "fd99::5").fails(
        1, "fd99::5", "held by WorkloadEndpoint openstack/c1-openstack-vm1-p1"
    )
    # Held in IPAM by a pod: refused; the address reserved before it is released again.
    pools("ipam", "assign", "--handle", "pod1", "--node", "n1", "--ip", "10.65.0.7").ok()
    create(pools, "c2", "vm2", "p2", "--ip", "fd5f:65::6", "--ip", "10.65.0.7").fails(
        1, "10.65.0.7", "already allocated in IPAM"
    )
    assert list(weps(pools, "-A")) == ["c1-openstack-vm1-p1"]
    for addr in ("10.65.0.6", "fd5f:65::6"):
        assert "is not assigned" in in_use(pools, addr)
    # Once the holder is deleted, the address can be taken.
    pools("endpoint", "delete", "c1-openstack-vm1-p1").ok()
    create(pools, "c2", "vm2", "p2", "--ip", "10.65.0.5", "--ip", "fd99::5").ok()


def test_update_of_the_same_port_moves_the_reservation(pools: Cli) -> None:
    create(pools, "c1", "vm1", "p1", "--ip", "10.65.0.5").ok()
    res = create(pools, "c1", "vm1", "p1", "--ip", "10.65.0.8").ok()
    assert "released: 10.65.0.5" in res.out
    assert "is not assigned" in in_use(pools, "10.65.0.5")
    assert "is in use" in in_use(pools, "10.65.0.8")


@pytest.mark.parametrize(
    ("extra", "fragments"),
    [
        (("--ip", "10.65.0.5", "--ipv4-gateway", "fd5f:65::1"), ("ipv4Gateway", "not an IPv4")),
        (("--ip", "fd5f:65::5", "--ipv6-gateway", "10.65.0.1"), ("ipv6Gateway", "not an IPv6")),
        (("--ip", "fd5f:65::5", "--ipv4-gateway", "10.65.0.1"), ("no IPv4 --ip",)),
        (("--ip", "10.65.0.5", "--mac", "fa:16:3e:01:02"), ("spec.mac", "not a MAC")),
        (("--ip", "10.65.0.0/24"), ("not a single address", "10.65.0.0/32")),
        (("--ip", "10.65.0.300"), ("not an IP address",)),
        (("--ip", "10.65.0.5", "--ip", "10.65.0.5"), ("given twice",)),
        ((), ("no address",)),
    ],
)
def test_bad_input_is_refused_with_the_reason(
    pools: Cli, extra: tuple[str, ...], fragments: tuple[str, ...]
) -> None:
    create(pools, "c1", "vm1", "p1", *extra).fails(2, "c1-openstack-vm1-p1", *fragments)
    assert weps(pools, "-A") == {}
    assert "is not assigned" in in_use(pools, "10.65.0.5")


@pytest.mark.parametrize(
    ("node", "vm", "port", "fragment"),
    [("bad host", "vm", "p", "node 'bad host'"), ("c1", "vm/1", "p", "workload 'vm/1'")],
)
def test_malformed_names_are_refused(
    pools: Cli, node: str, vm: str, port: str, fragment: str
) -> None:
    create(pools, node, vm, port, "--ip", "10.65.0.5").fails(2, fragment, "give --")
    assert weps(pools, "-A") == {}


def test_missing_flags_and_mixed_forms(pools: Cli) -> None:
    pools("endpoint", "create", "--node", "c1", "--ip", "10.65.0.5").fails(
        2, "--workload, --endpoint"
    )
    path = pools.file("kind: IPPool\n")
    pools("endpoint", "create", "-f", path, "--node", "c1").fails(2, "not both")


def test_file_form_checks_every_document_before_writing(pools: Cli) -> None:
    good = (
        "apiVersion: projectcalico.org/v3\nkind: WorkloadEndpoint\n"
        "metadata: {name: h-openstack-vm-p, namespace: openstack}\n"
        "spec: {orchestrator: openstack, node: h, workload: vm, endpoint: p,"
        " ipNetworks: [10.65.0.5/32], interfaceName: tapp}\n"
    )
    bad = (
        good.replace("vm-p", "vm-q")
        .replace("10.65.0.5/32", "10.65.0.6/32")
        .replace("interfaceName: tapp}", "interfaceName: tapp, mac: nope}")
    )
    pools("endpoint", "create", "-f", pools.file(good + "---\n" + bad)).fails(2, "spec.mac")
    assert weps(pools, "-A") == {}
    assert "is not assigned" in in_use(pools, "10.65.0.5")
    pools("endpoint", "create", "-f", pools.file(good)).ok()
    assert list(weps(pools, "-n", "openstack")) == ["h-openstack-vm-p"]
