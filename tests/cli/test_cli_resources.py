"""create / apply / replace / delete -f and get, in-process."""

from __future__ import annotations

import json

import yaml

from .clihelp import STOCK_POOL, Cli, pool_doc, pool_yaml, wep_yaml


def test_stock_calico_pool_applies_unchanged(cli: Cli) -> None:
    res = cli.apply(STOCK_POOL).ok()
    assert res.out == ("Successfully applied 1 'IPPool' resource(s): IPPool(default-ipv4-ippool)\n")
    doc = yaml.safe_load(cli("get", "ippool", "default-ipv4-ippool", "-o", "yaml").ok().out)
    assert doc["kind"] == "IPPool"
    assert doc["metadata"]["name"] == "default-ipv4-ippool"
    spec = doc["spec"]
    assert spec["cidr"] == "192.168.0.0/16"
    assert spec["blockSize"] == 26
    assert spec["ipipMode"] == "Always"
    assert spec["vxlanMode"] == "Never"
    assert spec["natOutgoing"] is True
    assert spec["nodeSelector"] == "all()"
    assert spec["disabled"] is False
    # Applying the same file again is an update, not an error.
    cli.apply(STOCK_POOL).ok()
    assert cli.pools() == {"default-ipv4-ippool": "192.168.0.0/16"}


def test_json_multidoc_list_and_stdin_inputs(cli: Cli) -> None:
    cli.apply(json.dumps(pool_doc("j1", "10.1.0.0/24")), "create").ok()
    two = pool_yaml("m1", "10.2.0.0/24") + "---\n" + pool_yaml("m2", "10.3.0.0/24") + "---\n"
    res = cli.apply(two).ok()
    assert res.out.count("Successfully applied") == 2
    lst = {
        "apiVersion": "projectcalico.org/v3",
        "kind": "IPPoolList",
        "items": [
            {"metadata": {"name": "l1"}, "spec": {"cidr": "10.4.0.0/24"}},
            pool_doc("l2", "fd00:4::/64"),
        ],
    }
    cli.apply(yaml.safe_dump(lst)).ok()
    cli("create", "-f", "-", stdin=pool_yaml("s1", "10.5.0.0/24")).ok()
    cli("apply", "-f", "-", stdin=json.dumps([pool_doc("s2", "10.6.0.0/24")])).ok()
    assert cli.pools() == {
        "j1": "10.1.0.0/24",
        "m1": "10.2.0.0/24",
        "m2": "10.3.0.0/24",
        "l1": "10.4.0.0/24",
        "l2": "fd00:4::/64",
        "s1": "10.5.0.0/24",
        "s2": "10.6.0.0/24",
    }


def test_create_twice_and_replace_missing_fail(cli: Cli) -> None:
    doc = pool_yaml("p1", "10.1.0.0/24")
    cli.apply(doc, "create").ok()
    cli.apply(doc, "create").fails(1, "IPPool(p1)", "already exists", "tortie apply")
    cli.apply(pool_yaml("nope", "10.9.0.0/24"), "replace").fails(
        1, "IPPool(nope)", "does not exist", "create it first"
    )
    assert cli.pools() == {"p1": "10.1.0.0/24"}
    res = cli.apply(pool_yaml("p1", "10.1.0.0/24", natOutgoing=True), "replace").ok()
    assert "Successfully replaced 1 'IPPool' resource(s): IPPool(p1)" in res.out
    got = cli("get", "ippool", "p1", "-o", "json").ok().json()
    assert got["spec"]["natOutgoing"] is True


def test_cidr_and_block_size_cannot_change(cli: Cli) -> None:
    cli.apply(STOCK_POOL).ok()
    cli.apply(STOCK_POOL.replace("192.168.0.0/16", "192.168.0.0/17")).fails(
        2, "IPPool(default-ipv4-ippool)", "spec.cidr cannot be changed", "create a new pool"
    )
    cli.apply(STOCK_POOL.replace("blockSize: 26", "blockSize: 27"), "replace").fails(
        2, "IPPool(default-ipv4-ippool)", "spec.blockSize cannot be changed"
    )
    got = cli("get", "ippool", "default-ipv4-ippool", "-o", "json").ok().json()
    assert got["spec"]["cidr"] == "192.168.0.0/16" and got["spec"]["blockSize"] == 26


def test_overlap_refused_with_calicos_text(cli: Cli) -> None:
    cli.apply(STOCK_POOL).ok()
    res = cli.apply(pool_yaml("inner", "192.168.4.0/24")).fails(2)
    assert (
        "IPPool(inner) CIDR overlaps with IPPool(default-ipv4-ippool) CIDR 192.168.0.0/16"
        in res.err
    )
    # Two new pools in one file that overlap each other.
    both = pool_yaml("o1", "10.20.0.0/24") + "---\n" + pool_yaml("o2", "10.20.0.0/25")
    cli.apply(both, "create").fails(2, "IPPool(o2) CIDR overlaps with IPPool(o1) CIDR 10.20.0.0/24")
    assert cli.pools() == {"default-ipv4-ippool": "192.168.0.0/16"}


def test_bad_second_document_writes_nothing(cli: Cli) -> None:
    bad = pool_yaml("good", "10.1.0.0/24") + "---\n" + pool_yaml("bad", "10.2.0.1/24")
    cli.apply(bad).fails(2, "IPPool(bad)", "not strictly masked", "10.2.0.0/24")
    assert cli.pools() == {}
    # Also when the first document updates an existing pool.
    cli.apply(pool_yaml("keep", "10.3.0.0/24")).ok()
    mixed = (
        pool_yaml("keep", "10.3.0.0/24", disabled=True)
        + "---\n"
        + pool_yaml("x", "10.4.0.0/24", blockSize=99)
    )
    cli.apply(mixed).fails(2, "IPPool(x)", "blockSize")
    got = cli("get", "ippool", "keep", "-o", "json").ok().json()
    assert got["spec"]["disabled"] is False
    assert cli.pools() == {"keep": "10.3.0.0/24"}


def test_get_output_shapes(cli: Cli) -> None:
    res = cli("get", "ippools", "-o", "yaml").ok()
    empty = yaml.safe_load(res.out)
    assert empty["kind"] == "IPPoolList" and empty["items"] == []
    cli.apply(STOCK_POOL).ok()
    cli.apply(pool_yaml("v6", "fd00:1::/48", blockSize=122)).ok()
    lst = yaml.safe_load(cli("get", "ippools", "-o", "yaml").ok().out)
    assert lst["apiVersion"] == "projectcalico.org/v3"
    assert lst["kind"] == "IPPoolList"
    assert [i["metadata"]["name"] for i in lst["items"]] == ["default-ipv4-ippool", "v6"]
    assert all(i["kind"] == "IPPool" for i in lst["items"])
    assert "resourceVersion" in lst["metadata"]
    js = cli("get", "ippools", "-o", "json").ok().json()
    assert js["kind"] == "IPPoolList" and len(js["items"]) == 2
    assert js["items"][1]["spec"]["blockSize"] == 122
    one = cli("get", "ippool", "v6", "-o", "json").ok().json()
    assert one["kind"] == "IPPool" and one["metadata"]["name"] == "v6"
    assert one["metadata"]["uid"] and one["metadata"]["creationTimestamp"]

    ps = cli("get", "ippools").ok().out.splitlines()
    assert ps[0].split() == ["NAME", "CIDR", "SELECTOR"]
    assert ps[1].split() == ["default-ipv4-ippool", "192.168.0.0/16", "all()"]
    wide = cli("get", "ippools", "-o", "wide").ok().out.splitlines()
    assert wide[0].split() == [
        "NAME",
        "CIDR",
        "NAT",
        "IPIPMODE",
        "VXLANMODE",
        "DISABLED",
        "DISABLEBGPEXPORT",
        "SELECTOR",
    ]
    assert wide[1].split() == [
        "default-ipv4-ippool",
        "192.168.0.0/16",
        "true",
        "Always",
        "Never",
        "false",
        "false",
        "all()",
    ]
    assert wide[2].split()[:3] == ["v6", "fd00:1::/48", "false"]


def test_get_output_round_trips_through_apply(cli: Cli) -> None:
    cli.apply(STOCK_POOL).ok()
    dumped = cli("get", "ippools", "-o", "yaml").ok().out
    cli("apply", "-f", "-", stdin=dumped).ok()
    dumped_json = cli("get", "ippools", "-o", "json").ok().out
    cli("replace", "-f", "-", stdin=dumped_json).ok()
    assert cli.pools() == {"default-ipv4-ippool": "192.168.0.0/16"}


def test_nodes_weps_and_ipamconfig(cli: Cli) -> None:
    node = (
        "apiVersion: projectcalico.org/v3\nkind: Node\nmetadata: {name: node1}\n"
        "spec: {bgp: {ipv4Address: 10.0.0.1/24}}\n"
    )
    cli.apply(node).ok()
    assert cli("get", "nodes").ok().out.split() == ["NAME", "node1"]
    wide = cli("get", "nodes", "-o", "wide").ok().out.splitlines()
    assert wide[0].split() == ["NAME", "ASN", "IPV4", "IPV6"]
    assert wide[1].split() == ["node1", "(64512)", "10.0.0.1/24"]
    nodes = cli("get", "nodes", "-o", "json").ok().json()
    assert nodes["kind"] == "NodeList" and nodes["items"][0]["metadata"]["name"] == "node1"

    cli.apply(wep_yaml("node1-k8s-web-eth0", "node1", "web", ["10.1.0.5/32"])).ok()
    weps = cli("get", "workloadendpoints").ok().out.splitlines()
    assert weps[0].split() == ["NAMESPACE", "WORKLOAD", "NODE", "NETWORKS", "INTERFACE"]
    assert weps[1].split() == ["default", "web", "node1", "10.1.0.5/32", "caliweb"]
    wl = yaml.safe_load(cli("get", "workloadendpoints", "-o", "yaml").ok().out)
    assert wl["kind"] == "WorkloadEndpointList"
    assert wl["items"][0]["metadata"]["namespace"] == "default"

    cfg = cli("get", "ipamconfig", "-o", "json").ok().json()
    assert cfg["kind"] == "IPAMConfigurationList"
    assert cfg["items"][0]["spec"] == {
        "strictAffinity": False,
        "autoAllocateBlocks": True,
        "maxBlocksPerHost": 0,
    }
    table = cli("get", "ipamconfig").ok().out.splitlines()
    assert table[0].split() == ["NAME", "STRICTAFFINITY", "AUTOALLOCATEBLOCKS", "MAXBLOCKSPERHOST"]
    assert table[1].split() == ["default", "false", "true", "0"]

    res = cli("delete", "workloadendpoint", "node1-k8s-web-eth0", "-n", "default").ok()
    assert "WorkloadEndpoint(default/node1-k8s-web-eth0)" in res.out
    assert cli("get", "weps").ok().out.splitlines()[1:] == []
    cli("delete", "node", "node1").ok()
    cli("get", "node", "node1").fails(1, "Node(node1)", "does not exist")


def test_delete_by_file_and_by_name(cli: Cli) -> None:
    cli.apply(STOCK_POOL).ok()
    cli.apply(pool_yaml("p2", "10.1.0.0/24")).ok()
    res = cli.apply(STOCK_POOL, "delete").ok()
    assert res.out == ("Successfully deleted 1 'IPPool' resource(s): IPPool(default-ipv4-ippool)\n")
    cli("delete", "ippool", "p2").ok()
    assert cli.pools() == {}
    cli("delete", "ippool", "p2").fails(1, "IPPool(p2)", "does not exist")
    cli.apply(STOCK_POOL, "delete").fails(1, "IPPool(default-ipv4-ippool)", "does not exist")
    cli("delete").fails(2, "delete needs -f FILE or a KIND and NAME")


def test_config_file_selects_the_datastore(cli: Cli) -> None:
    other = cli.tmp / "other.db"
    cfg = cli.file(
        "apiVersion: projectcalico.org/v3\nkind: CalicoAPIConfig\nmetadata: {}\n"
        f"spec:\n  datastoreType: sqlite\n  sqlitePath: {other}\n"
    )
    cli("--config", cfg, "apply", "-f", cli.file(STOCK_POOL)).ok()
    assert other.exists()
    assert cli.pools() == {}  # the environment's store is untouched
    out = cli("-c", cfg, "get", "ippools").ok().out
    assert "default-ipv4-ippool" in out
    bad = cli.file("apiVersion: projectcalico.org/v3\nkind: CalicoAPIConfig\nspec: {bogus: 1}\n")
    cli("--config", bad, "get", "ippools").fails(2, "spec.bogus", "known fields")
    cli("--config", str(cli.tmp / "missing.yaml"), "get", "ippools").fails(
        2, "missing.yaml", "cannot read it", "--config"
    )


def test_recreated_pool_must_keep_the_block_size_of_live_blocks(cli: Cli) -> None:
    cli.apply(STOCK_POOL).ok()
    cli("ipam", "assign", "--handle=h", "--node=n1").ok()
    cli("delete", "ippool", "default-ipv4-ippool").ok()
    cli.apply(STOCK_POOL.replace("blockSize: 26", "blockSize: 28")).fails(
        2, "IPPool(default-ipv4-ippool)", "still holds 1 addresses", "blockSize 26"
    )
    cli.apply(STOCK_POOL).ok()
    assert cli("ipam", "check").ok().out.splitlines()[-1] == "Check complete; found 0 problems."
