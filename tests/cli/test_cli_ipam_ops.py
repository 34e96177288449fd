"""ipam check, release, configure, split and assign, in-process."""

from __future__ import annotations

import ipaddress
import json

from .clihelp import STOCK_POOL, Cli, pool_yaml, wep_yaml


def _ip(cidr: str) -> str:
    return cidr.split("/")[0]


def _leaked(report_path: str) -> list[str]:
    with open(report_path, encoding="utf-8") as fh:
        return [x["ip"] for x in json.load(fh)["leakedIPs"]]


def _node_with_wep(cli: Cli) -> str:
    """A pod's address on node1, recorded by a WorkloadEndpoint; returns the address."""
    cli.apply(STOCK_POOL).ok()
    pod = _ip(
        cli.assign("--handle=k8s-pod-network.web", "--node=node1", "--attr=pod=web")["ipv4"][0]
    )
    cli.apply(wep_yaml("node1-k8s-web-eth0", "node1", "web", [f"{pod}/32"])).ok()
    return pod


def test_check_clean_and_report(cli: Cli) -> None:
    pod = _node_with_wep(cli)
    report = str(cli.tmp / "clean.json")
    out = cli("ipam", "check", "-o", report).ok().out
    lines = out.splitlines()
    assert "Found 1 IPAM allocations." in lines
    assert "Found 0 leaked addresses." in lines
    assert f"Report written to {report}" in lines
    assert lines[-1] == "Check complete; found 0 problems."
    with open(report, encoding="utf-8") as fh:
        data = json.load(fh)
    assert data["leakedIPs"] == [] and data["problemCount"] == 0
    assert isinstance(data["clusterGUID"], str) and data["clusterGUID"]
    assert pod not in out


def test_check_finds_leak_and_release_from_reports(cli: Cli) -> None:
    pod = _node_with_wep(cli)
    leak1 = _ip(cli.assign("--handle=leak1", "--node=node1", "--attr=pod=x")["ipv4"][0])
    r1 = str(cli.tmp / "r1.json")
    out = cli("ipam", "check", "-o", r1).found().out
    assert f"{leak1} (handle leak1, node node1)" in out
    assert out.splitlines()[-1] == "Check complete; found 1 problems."
    assert _leaked(r1) == [leak1]

    leak2 = _ip(cli.assign("--handle=leak2", "--node=node1", "--attr=pod=y")["ipv4"][0])
    r2 = str(cli.tmp / "r2.json")
    out = cli("ipam", "check", "-o", r2).found().out
    assert out.splitlines()[-1] == "Check complete; found 2 problems."
    assert sorted(_leaked(r2)) == sorted([leak1, leak2])

    # Another cluster's report is refused, and nothing is released.
    with open(r2, encoding="utf-8") as fh:
        foreign = json.load(fh)
    foreign["clusterGUID"] = "0123456789abcdef"
    r3 = cli.file(json.dumps(foreign), ".json")
    cli("ipam", "release", f"--from-report={r3}").fails(
        2, "another cluster", "0123456789abcdef", "ipam check -o"
    )
    assert "is in use" in cli("ipam", "show", f"--ip={leak1}").ok().out

    # Only what both reports list is released.
    out = cli("ipam", "release", f"--from-report={r1}", f"--from-report={r2}").ok().out
    assert f"Released leaked IP address {leak1}" in out
    assert leak2 not in out
    assert cli("ipam", "show", f"--ip={leak1}").ok().out == f"{leak1} is not assigned\n"
    assert "is in use" in cli("ipam", "show", f"--ip={leak2}").ok().out
    assert "is in use" in cli("ipam", "show", f"--ip={pod}").ok().out

    # A leak that was meanwhile released is skipped, not an error.
    out = cli("ipam", "release", f"--from-report={r2}").ok().out
    assert f"Released leaked IP address {leak2}" in out
    assert f"Skipped {leak1}" in out
    last = cli("ipam", "check").ok().out.splitlines()[-1]
    assert last == "Check complete; found 0 problems."


def test_release_from_bad_reports(cli: Cli) -> None:
    cli.apply(STOCK_POOL).ok()
    good = str(cli.tmp / "good.json")
    cli("ipam", "check", "-o", good).ok()
    with open(good, encoding="utf-8") as fh:
        guid = json.load(fh)["clusterGUID"]
    for body in (
        "not json",
        json.dumps({"hello": 1}),
        json.dumps({"clusterGUID": guid, "leakedIPs": 5}),
        json.dumps({"clusterGUID": guid, "leakedIPs": [{"foo": 1}]}),
    ):
        cli("ipam", "release", f"--from-report={cli.file(body, '.json')}").fails(
            2, "report", "tortie ipam check -o"
        )
    cli("ipam", "release", "--from-report=/nonexistent/r.json").fails(2, "cannot read it")
    cli("ipam", "check", "-o", "/proc/nope/r.json").fails(2, "/proc/nope/r.json", "writable")


def test_check_reports_in_use_without_allocation(cli: Cli) -> None:
    cli.apply(STOCK_POOL).ok()
    cli.apply(wep_yaml("n1-k8s-ghost-eth0", "n1", "ghost", ["192.168.9.9/32"])).ok()
    cli.apply(wep_yaml("n1-k8s-out-eth0", "n1", "out", ["172.16.0.1/32"])).ok()
    out = cli("ipam", "check").found().out
    assert "in-use-not-allocated: 192.168.9.9" in out
    assert "in-use-outside-pools: 172.16.0.1" in out
    assert out.splitlines()[-1] == "Check complete; found 3 problems."


def test_release_by_ip_and_handle(cli: Cli) -> None:
    cli.apply(STOCK_POOL).ok()
    cli.apply(pool_yaml("v6", "fd00:1::/48")).ok()
    got = cli.assign("--handle=h1", "--node=n1", "--ipv4=2", "--ipv6=1")
    a, b = (_ip(x) for x in got["ipv4"])
    six = _ip(got["ipv6"][0])
    assert cli("ipam", "release", f"--ip={a}").ok().out == f"Successfully released IP address {a}\n"
    res = cli("ipam", "release", f"--ip={a}")
    res.fails(1, f"{a} is not assigned")
    out = cli("ipam", "release", "--handle=h1").ok().out
    assert out == "Successfully released 2 addresses of handle h1\n"
    for addr in (b, six):
        assert cli("ipam", "show", f"--ip={addr}").ok().out == f"{addr} is not assigned\n"
    cli("ipam", "release", "--handle=h1").fails(1, "handle h1 does not exist")
    usage = cli("ipam", "show", "-o", "json").ok().json()
    assert [p["inUse"] for p in usage["pools"]] == [0, 0]


def test_configure(cli: Cli) -> None:
    cli("ipam", "configure", "--max-blocks-per-host=3").fails(2, "needs strictAffinity")
    out = cli("ipam", "configure", "--strictaffinity=true", "--max-blocks-per-host=3").ok().out
    assert out.splitlines() == [
        "Successfully set StrictAffinity to: true",
        "Successfully set MaxBlocksPerHost to: 3",
    ]
    cfg = cli("get", "ipamconfig", "default", "-o", "json").ok().json()
    assert cfg["spec"]["strictAffinity"] is True and cfg["spec"]["maxBlocksPerHost"] == 3
    # Turning strict affinity off while a limit is set is refused; nothing changes.
    cli("ipam", "configure", "--strictaffinity=false").fails(2, "maxBlocksPerHost 3")
    out = cli("ipam", "configure", "--strictaffinity=no", "--max-blocks-per-host=0").ok().out
    assert "StrictAffinity to: false" in out
    cfg = cli("get", "ipamconfig", "-o", "json").ok().json()["items"][0]
    assert cfg["spec"] == {
        "strictAffinity": False,
        "autoAllocateBlocks": True,
        "maxBlocksPerHost": 0,
    }


def test_max_blocks_per_host_is_enforced(cli: Cli) -> None:
    cli.apply(pool_yaml("p", "10.8.0.0/24", blockSize=30)).ok()
    cli("ipam", "configure", "--strictaffinity=true", "--max-blocks-per-host=1").ok()
    cli.assign("--handle=h", "--node=n1", "--ipv4=4")
    cli("ipam", "assign", "--handle=h2", "--node=n1").fails(1, "nothing was kept")


def test_split_by_name_and_cidr(cli: Cli) -> None:
    cli.apply(
        pool_yaml("big", "10.10.0.0/22", natOutgoing=True, ipipMode="CrossSubnet", blockSize=26)
    ).ok()
    held = _ip(cli.assign("--handle=h", "--node=n1")["ipv4"][0])
    out = cli("ipam", "split", "4", "--name=big").ok().out
    assert out.splitlines() == [
        "Created IPPool(split-big-0) 10.10.0.0/24",
        "Created IPPool(split-big-1) 10.10.1.0/24",
        "Created IPPool(split-big-2) 10.10.2.0/24",
        "Created IPPool(split-big-3) 10.10.3.0/24",
    ]
    pools = cli("get", "ippools", "-o", "json").ok().json()["items"]
    assert [p["metadata"]["name"] for p in pools] == [f"split-big-{i}" for i in range(4)]
    for p in pools:
        assert p["metadata"]["uid"] and p["metadata"]["creationTimestamp"]
        assert p["spec"]["natOutgoing"] is True
        assert p["spec"]["ipipMode"] == "CrossSubnet"
        assert p["spec"]["blockSize"] == 26
    # The address still counts, now in the part that holds it.
    assert "is in use" in cli("ipam", "show", f"--ip={held}").ok().out
    usage = cli("ipam", "show", "-o", "json").ok().json()["pools"]
    assert sum(p["inUse"] for p in usage) == 1
    assert sum(p["total"] for p in usage) == 1024

    out = cli("ipam", "split", "2", "--cidr=10.10.3.0/24").ok().out
    assert out.splitlines() == [
        "Created IPPool(split-split-big-3-0) 10.10.3.0/25",
        "Created IPPool(split-split-big-3-1) 10.10.3.128/25",
    ]
    assert "split-big-3" not in cli.pools()

    cli("ipam", "split", "3", "--name=split-big-0").fails(2, "power of two")
    cli("ipam", "split", "1", "--name=split-big-0").fails(2, "power of two")
    cli("ipam", "split", "8", "--name=split-big-0").fails(2, "smaller than one block")
    cli("ipam", "split", "2", "--cidr=10.10.0.1/24").fails(2, "not strictly masked")
    assert "split-big-0" in cli.pools()
    # A part's name taken already: refused before anything changes.
    cli.apply(pool_yaml("keep", "10.11.0.0/24")).ok()
    cli.apply(pool_yaml("split-keep-1", "10.12.0.0/24")).ok()
    cli("ipam", "split", "2", "--name=keep").fails(1, "IPPool(split-keep-1) already exists")
    assert cli.pools()["keep"] == "10.11.0.0/24"


def test_split_ipv6(cli: Cli) -> None:
    cli.apply(pool_yaml("six", "fd00:1::/48")).ok()
    cli("ipam", "split", "2", "--cidr=fd00:1::/48").ok()
    assert cli.pools() == {"split-six-0": "fd00:1::/49", "split-six-1": "fd00:1:0:8000::/49"}


def test_assign_text_and_json(cli: Cli) -> None:
    cli.apply(STOCK_POOL).ok()
    cli.apply(pool_yaml("v6", "fd00:1::/48", blockSize=122)).ok()
    out = cli("ipam", "assign", "--handle=t", "--node=n1", "--ipv4=1", "--ipv6=1").ok().out
    lines = out.splitlines()
    assert lines[0] == "Assigned addresses:"
    assert lines[1].strip().endswith("/26") and lines[2].strip().endswith("/122")
    got = cli.assign("--handle=j", "--node=n1", "--ipv4=2", "--ipv6=2")
    assert list(got) == ["ipv4", "ipv6"]
    assert len(got["ipv4"]) == 2 and len(got["ipv6"]) == 2
    for a in got["ipv4"]:
        iface = ipaddress.ip_interface(a)
        assert iface.version == 4 and iface.network.prefixlen == 26
        assert iface.ip in ipaddress.ip_network("192.168.0.0/16")
    for a in got["ipv6"]:
        iface = ipaddress.ip_interface(a)
        assert iface.version == 6 and iface.network.prefixlen == 122
    # Default: one IPv4 address.
    only = cli.assign("--handle=d", "--node=n1")
    assert len(only["ipv4"]) == 1 and only["ipv6"] == []
    six_only = cli.assign("--handle=s", "--node=n1", "--ipv6=1")
    assert six_only["ipv4"] == [] and len(six_only["ipv6"]) == 1


def test_assign_pools_by_name_and_cidr(cli: Cli) -> None:
    cli.apply(STOCK_POOL).ok()
    cli.apply(pool_yaml("other", "10.7.0.0/24")).ok()
    cli.apply(pool_yaml("manual", "10.9.0.0/24", assignmentMode="Manual")).ok()
    cli.apply(pool_yaml("v6", "fd00:1::/48")).ok()
    by_name = cli.assign("--handle=a", "--node=n1", "--pool=other")
    assert ipaddress.ip_interface(by_name["ipv4"][0]).ip in ipaddress.ip_network("10.7.0.0/24")
    by_cidr = cli.assign("--handle=b", "--node=n1", "--pool=10.7.0.0/24")
    assert ipaddress.ip_interface(by_cidr["ipv4"][0]).ip in ipaddress.ip_network("10.7.0.0/24")
    manual = cli.assign("--handle=c", "--node=n1", "--pool=manual")
    assert ipaddress.ip_interface(manual["ipv4"][0]).ip in ipaddress.ip_network("10.9.0.0/24")
    dual = cli.assign(
        "--handle=d", "--node=n1", "--ipv4=1", "--ipv6=1", "--pool=other", "--pool=fd00:1::/48"
    )
    assert ipaddress.ip_interface(dual["ipv4"][0]).ip in ipaddress.ip_network("10.7.0.0/24")
    assert ipaddress.ip_interface(dual["ipv6"][0]).ip in ipaddress.ip_network("fd00:1::/48")
    # Automatic assignment never uses the Manual pool.
    for _ in range(3):
        auto = cli.assign("--handle=e", "--node=n2")
        assert ipaddress.ip_interface(auto["ipv4"][0]).ip not in ipaddress.ip_network("10.9.0.0/24")
    cli.apply(pool_yaml("other", "10.7.0.0/24", disabled=True)).ok()
    cli("ipam", "assign", "--handle=f", "--node=n1", "--pool=other").fails(2, "--pool other")


def test_assign_specific_addresses(cli: Cli) -> None:
    cli.apply(STOCK_POOL).ok()
    cli.apply(pool_yaml("v6", "fd00:1::/48")).ok()
    got = cli.assign("--handle=s", "--node=n1", "--ip=192.168.5.5", "--ip=fd00:1::5")
    assert got == {"ipv4": ["192.168.5.5/32"], "ipv6": ["fd00:1::5/128"]}
    out = cli("ipam", "show", "--ip=192.168.5.5").ok().out
    assert "Handle: s" in out
    cli("ipam", "assign", "--handle=t", "--node=n1", "--ip=192.168.5.5").fails(
        2, "Address already assigned in block", "192.168.5.5"
    )
    # One bad address: the good one asked with it is not kept.
    cli("ipam", "assign", "--handle=u", "--node=n1", "--ip=192.168.5.6", "--ip=172.16.0.1").fails(
        2, "The provided IP address is not in a configured pool", "172.16.0.1"
    )
    assert cli("ipam", "show", "--ip=192.168.5.6").ok().out == "192.168.5.6 is not assigned\n"


def test_assign_exhaustion_keeps_nothing(cli: Cli) -> None:
    cli.apply(pool_yaml("tiny", "10.5.0.0/30", blockSize=30)).ok()
    cli.apply(pool_yaml("v6", "fd00:1::/120", blockSize=122)).ok()
    cli.assign("--handle=first", "--node=n1")
    before = cli("ipam", "show", "-o", "json").ok().json()
    cli("ipam", "assign", "--handle=big", "--node=n1", "--ipv4=4").fails(
        1, "assigned only 3 of 4 IPv4 addresses", "No IPs available in pools", "nothing was kept"
    )
    # Dual stack: IPv6 runs dry after IPv4 succeeded; the IPv4 address is returned too.
    cli("ipam", "assign", "--handle=dual", "--node=n1", "--ipv4=1", "--ipv6=300").fails(
        1, "IPv6", "nothing was kept"
    )
    # Nothing is in use beyond the first address (claimed blocks stay, empty, with the node).
    after = cli("ipam", "show", "-o", "json").ok().json()
    assert [p["inUse"] for p in after["pools"]] == [p["inUse"] for p in before["pools"]]
    assert all(b["inUse"] == 0 for b in after["pools"][1]["blocks"])
    assert cli("ipam", "check").ok().out.splitlines()[-1] == "Check complete; found 0 problems."
    cli("ipam", "release", "--handle=big").fails(1, "handle big does not exist")
    cli("ipam", "release", "--handle=dual").fails(1, "handle dual does not exist")
    got = cli.assign("--handle=rest", "--node=n1", "--ipv4=3")
    assert len(got["ipv4"]) == 3


def test_check_counts_node_tunnel_addresses(cli: Cli) -> None:
    _node_with_wep(cli)
    tunnel = _ip(cli.assign("--handle=ipip-tunnel-addr-node1", "--node=node1")["ipv4"][0])
    out = cli("ipam", "check").found().out
    assert f"{tunnel} (handle ipip-tunnel-addr-node1, node node1)" in out  # not yet used
    node = (
        "apiVersion: projectcalico.org/v3\nkind: Node\nmetadata: {name: node1}\n"
        f"spec: {{bgp: {{ipv4Address: 10.0.0.1/24, ipv4IPIPTunnelAddr: {tunnel}}}}}\n"
    )
    cli.apply(node).ok()
    out = cli("ipam", "check").ok().out
    assert "Found 2 addresses in use by workload endpoints and node tunnels." in out
    assert out.splitlines()[-1] == "Check complete; found 0 problems."


def test_check_survives_a_corrupt_node_tunnel_address(cli: Cli) -> None:
    from tortie.datastore import keys
    from tortie.datastore.sqlite import SqliteDatastore

    cli.apply(STOCK_POOL).ok()
    store = SqliteDatastore(str(cli.tmp / "tortie.db"))
    try:
        doc = {"kind": "Node", "metadata": {"name": "n1"}, "spec": {"ipv4VXLANTunnelAddr": "x"}}
        store.create(keys.resource_key("nodes", "n1"), json.dumps(doc))
    finally:
        store.close()
    out = cli("ipam", "check").found().out
    assert "corrupt-value: /calico/resources/v3/projectcalico.org/nodes/n1" in out
    assert out.splitlines()[-1] == "Check complete; found 1 problems."
