"""Tunnel addresses through IPAM on SQLite and etcd: allocation, idempotency, release."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from etcd_cluster import EtcdCluster
from tortie.datastore.base import Datastore
from tortie.datastore.config import DatastoreSettings
from tortie.datastore.sqlite import SqliteDatastore
from tortie.errors import InvalidInput
from tortie.ipam.admin import Admin
from tortie.ipam.check import check
from tortie.ipam.nodes import NodeService
from tortie.ipam.service import Ipam
from tortie.model.node import Node
from tortie.node.tunnel import (
    derived_mac,
    ensure_tunnel_addresses,
    handle_for,
    release_tunnel_addresses,
)


@pytest.fixture(params=["sqlite", "etcd"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Datastore]:
    if request.param == "sqlite":
        ds: Datastore = SqliteDatastore(str(tmp_path / "s.db"))
        yield ds
        return
    cluster: EtcdCluster = request.getfixturevalue("etcd_single")
    cluster.wipe()
    from tortie.datastore.etcd import EtcdDatastore

    etcd = EtcdDatastore(
        DatastoreSettings(datastore_type="etcdv3", etcd_endpoints=cluster.endpoints)
    )
    yield etcd
    etcd.close()


def pool(store: Datastore, name: str, cidr: str, **spec: object) -> None:
    doc = {
        "apiVersion": "projectcalico.org/v3",
        "kind": "IPPool",
        "metadata": {"name": name},
        "spec": {"cidr": cidr, **spec},
    }
    admin = Admin(store)
    admin.execute(admin.plan("apply", [doc]))


def add_node(store: Datastore, name: str = "node-a") -> None:
    NodeService(store).update(
        name, lambda old: Node(name, ipv4_address="10.9.0.5/24", ipv6_address="fd09::5/64")
    )


def test_vxlan_both_families_allocated_written_and_idempotent(store: Datastore) -> None:
    pool(store, "v4", "10.244.0.0/16", vxlanMode="Always")
    pool(store, "v6", "fd00:244::/48", vxlanMode="CrossSubnet")
    add_node(store)
    node = ensure_tunnel_addresses(store, "node-a")
    assert node.ipv4_vxlan_tunnel_addr and node.ipv4_vxlan_tunnel_addr.startswith("10.244.")
    assert node.ipv6_vxlan_tunnel_addr and node.ipv6_vxlan_tunnel_addr.startswith("fd00:244:")
    assert node.ipv4_ipip_tunnel_addr is None
    assert node.vxlan_tunnel_mac == derived_mac("node-a", 4)
    assert node.vxlan_tunnel_mac_v6 == derived_mac("node-a", 6)
    ipam = Ipam(store)
    found = ipam.find_allocation(node.ipv4_vxlan_tunnel_addr)
    assert found is not None
    owner = found[0].owner(found[1])
    assert owner is not None and owner.handle_id == "vxlan-tunnel-addr-node-a"
    assert owner.secondary["type"] == "vxlanTunnelAddress"
    assert owner.secondary["node"] == "node-a"
    again = ensure_tunnel_addresses(store, "node-a")
    assert again.ipv4_vxlan_tunnel_addr == node.ipv4_vxlan_tunnel_addr
    assert again.ipv6_vxlan_tunnel_addr == node.ipv6_vxlan_tunnel_addr
    report = check(store)
    assert report.allocations == 2
    assert not report.leaks and not report.problems


def test_released_when_encapsulation_turned_off(store: Datastore) -> None:
    pool(store, "v4", "10.244.0.0/16", vxlanMode="Always")
    add_node(store)
    addr = ensure_tunnel_addresses(store, "node-a").ipv4_vxlan_tunnel_addr
    assert addr is not None
    pool(store, "v4", "10.244.0.0/16", vxlanMode="Never")
    node = ensure_tunnel_addresses(store, "node-a")
    assert node.ipv4_vxlan_tunnel_addr is None and node.vxlan_tunnel_mac is None
    assert Ipam(store).find_allocation(addr) is None
    assert check(store).allocations == 0


def test_ipip_pool_gets_ipip_address_and_lost_field_is_repaired(store: Datastore) -> None:
    pool(store, "v4", "10.244.0.0/16", ipipMode="Always")
    add_node(store)
    first = ensure_tunnel_addresses(store, "node-a").ipv4_ipip_tunnel_addr
    assert first is not None
    # Someone clears the Node's field: the handle's old address is not leaked.
    NodeService(store).update("node-a", lambda old: Node("node-a", ipv4_address="10.9.0.5/24"))
    again = ensure_tunnel_addresses(store, "node-a").ipv4_ipip_tunnel_addr
    assert again is not None
    report = check(store)
    assert report.allocations == 1 and not report.leaks and not report.problems
    assert release_tunnel_addresses(store, "node-a") == [again]
    assert Ipam(store).find_allocation(again) is None


def test_node_without_ipv6_gets_no_v6_tunnel(store: Datastore) -> None:
    pool(store, "v6", "fd00:244::/48", vxlanMode="Always")
    NodeService(store).update("n4", lambda old: Node("n4", ipv4_address="10.9.0.6/24"))
    node = ensure_tunnel_addresses(store, "n4")
    assert node.ipv6_vxlan_tunnel_addr is None and node.vxlan_tunnel_mac_v6 is None


def test_ipip_and_vxlan_on_one_pool_refused(store: Datastore) -> None:
    with pytest.raises(InvalidInput, match="cannot both be enabled"):
        pool(store, "v4", "10.244.0.0/16", ipipMode="Always", vxlanMode="Always")


def test_handle_names_match_calico() -> None:
    assert handle_for("vxlan", "n") == "vxlan-tunnel-addr-n"
    assert handle_for("vxlan-v6", "n") == "vxlan-v6-tunnel-addr-n"
    assert handle_for("ipip", "n") == "ipip-tunnel-addr-n"
