"""``release_node`` (what ``tortie delete node`` does besides deleting the Node) on the
memory store, and ``tortie delete node NAME`` through the CLI on SQLite."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tortie.cli.main import main
from tortie.datastore import keys
from tortie.datastore.base import Datastore
from tortie.datastore.memory import MemoryDatastore
from tortie.datastore.sqlite import SqliteDatastore
from tortie.ipam.admin import Admin
from tortie.ipam.node_release import release_node
from tortie.ipam.requests import AutoAssignArgs
from tortie.ipam.service import Ipam
from tortie.ipam.usage import load_blocks


def pool(store: Datastore, name: str, cidr: str, block_size: int) -> None:
    admin = Admin(store)
    doc = {
        "apiVersion": "projectcalico.org/v3",
        "kind": "IPPool",
        "metadata": {"name": name},
        "spec": {"cidr": cidr, "blockSize": block_size},
    }
    admin.execute(admin.plan("create", [doc]))


def node(store: Datastore, name: str) -> None:
    doc = {"apiVersion": "projectcalico.org/v3", "kind": "Node", "metadata": {"name": name}}
    store.create(keys.resource_key("nodes", name), json.dumps(doc))


def wep(store: Datastore, name: str, on: str) -> str:
    doc = {
        "apiVersion": "projectcalico.org/v3",
        "kind": "WorkloadEndpoint",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"node": on, "pod": name, "endpoint": "eth0", "interfaceName": "cali0"},
    }
    key = keys.resource_key("workloadendpoints", name, "default")
    store.create(key, json.dumps(doc))
    return key


def allocated(store: Datastore) -> dict[str, str]:
    """Every allocated address -> its handle."""
    out = {}
    for block in load_blocks(store):
        for ordinal, attr in block.allocated():
            out[str(block.address(ordinal))] = attr.handle_id or ""
    return out


def affine(store: Datastore, name: str) -> set[str]:
    return {
        keys.cidr_from_key(kv.key)
        for v in (4, 6)
        for kv in store.list(keys.affinity_prefix(name, v))
    }


def world(store: Datastore) -> dict[str, list[str]]:
    """Two nodes, dual stack, addresses in own blocks, one borrowed each way."""
    pool(store, "p4", "10.20.0.0/24", 30)  # 4 addresses a block: borrowing is easy
    pool(store, "p6", "fd00:20::/120", 126)
    ipam = Ipam(store)
    got: dict[str, list[str]] = {}
    for name in ("n1", "n2"):
        node(store, name)
        r = ipam.auto_assign(AutoAssignArgs(node=name, handle_id=f"h-{name}", num4=2, num6=2))
        got[name] = r.ipv4.addresses + r.ipv6.addresses
    # n1 takes an address inside n2's block by name (the 'node' attribute says n1)
    n2_block = next(iter(b for b in affine(store, "n2") if "." in b))
    borrowed = str(n2_block).split("/")[0].rsplit(".", 1)
    address = f"{borrowed[0]}.{int(borrowed[1]) + 3}"
    got["n1"].append(ipam.assign_ip(address, "h-n1-borrow", {}, "n1"))
    wep(store, "pod-on-n1", "n1")
    wep(store, "pod-on-n2", "n2")
    return got


def bare(addresses: list[str]) -> set[str]:
    return {a.split("/")[0] for a in addresses}


def test_release_node_takes_everything_of_the_node_and_nothing_else() -> None:
    store = MemoryDatastore()
    got = world(store)
    n1_blocks = affine(store, "n1")
    n2_blocks = affine(store, "n2")
    assert len(n1_blocks) == 2 and len(n2_blocks) == 2
    before = allocated(store)
    assert bare(got["n1"]) | bare(got["n2"]) == set(before)

    done = release_node(store, "n1")

    assert bare(done.addresses) == bare(got["n1"])  # incl. the one in n2's block
    assert set(allocated(store)) == bare(got["n2"])
    assert done.endpoints == ["default/pod-on-n1"]
    assert store.get(keys.resource_key("workloadendpoints", "pod-on-n1", "default")) is None
    assert store.get(keys.resource_key("workloadendpoints", "pod-on-n2", "default"))
    assert set(done.blocks) == n1_blocks
    assert affine(store, "n1") == set()
    assert affine(store, "n2") == n2_blocks
    for name in ("h-n1", "h-n1-borrow"):
        assert Ipam(store).get_handle(name) is None
    assert Ipam(store).get_handle("h-n2") is not None


def test_address_in_the_nodes_block_without_node_attribute_goes_by_affinity() -> None:
    store = MemoryDatastore()
    world(store)
    n1_block4 = next(b for b in affine(store, "n1") if "." in b)
    base, last = n1_block4.split("/")[0].rsplit(".", 1)
    # an address recorded with an empty 'node' attribute: the block's affinity decides
    orphan = Ipam(store).assign_ip(f"{base}.{int(last) + 3}", "h-orphan", {"node": ""}, "")
    done = release_node(store, "n1")
    assert orphan.split("/")[0] in bare(done.addresses)
    assert orphan.split("/")[0] not in allocated(store)


def test_address_borrowed_by_another_node_stays() -> None:
    store = MemoryDatastore()
    world(store)
    n1_block4 = next(b for b in affine(store, "n1") if "." in b)
    base, last = n1_block4.split("/")[0].rsplit(".", 1)
    theirs = Ipam(store).assign_ip(f"{base}.{int(last) + 3}", "h-n2-borrow", {}, "n2")
    release_node(store, "n1")
    assert allocated(store)[theirs.split("/")[0]] == "h-n2-borrow"
    kept = {b.cidr: b.host() for b in load_blocks(store)}
    assert kept[n1_block4] is None  # kept for n2's address, no longer n1's
    assert len(kept) == 3  # n1's IPv6 block was empty and went


def test_release_of_unknown_node_changes_nothing() -> None:
    store = MemoryDatastore()
    world(store)
    before = {kv.key: kv.value for kv in store.list("/")}
    done = release_node(store, "nobody")
    assert (done.addresses, done.endpoints, done.blocks) == ([], [], [])
    assert {kv.key: kv.value for kv in store.list("/")} == before


def test_delete_node_through_the_cli_on_sqlite(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "tortie.db"
    store = SqliteDatastore(str(path))
    got = world(store)
    n2_blocks = affine(store, "n2")
    store.close()
    monkeypatch.setenv("DATASTORE_TYPE", "sqlite")
    monkeypatch.setenv("SQLITE_PATH", str(path))

    assert main(["delete", "node", "n1"]) == 0
    out, err = capsys.readouterr()
    assert "Node(n1)" in out and err == ""

    store = SqliteDatastore(str(path))
    assert store.get(keys.resource_key("nodes", "n1")) is None
    assert store.get(keys.resource_key("nodes", "n2")) is not None
    assert set(allocated(store)) == bare(got["n2"])
    assert affine(store, "n1") == set() and affine(store, "n2") == n2_blocks
    store.close()

    assert main(["delete", "node", "n1"]) == 1
    out, err = capsys.readouterr()
    assert out == "" and "Node(n1)" in err and len(err.splitlines()) == 1
