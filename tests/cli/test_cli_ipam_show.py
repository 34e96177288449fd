"""ipam show: pool/block table, exact JSON counts, --ip, --show-borrowed, configuration."""

from __future__ import annotations

import ipaddress

from .clihelp import STOCK_POOL, Cli, pool_yaml


def _rows(table: str) -> list[list[str]]:
    """The cells of a boxed table's body rows."""
    return [
        [c.strip() for c in line.strip("|").split("|")]
        for line in table.splitlines()
        if line.startswith("|")
    ]


def test_show_table_and_blocks(cli: Cli) -> None:
    cli.apply(STOCK_POOL).ok()
    cli.apply(pool_yaml("v6", "fd00:1::/48", blockSize=122)).ok()
    got = cli.assign("--handle=h1", "--node=n1", "--ipv4=2", "--ipv6=1")
    block4 = got["ipv4"][0].split("/")[0]

    rows = _rows(cli("ipam", "show").ok().out)
    assert rows[0] == ["GROUPING", "CIDR", "IPS TOTAL", "IPS IN USE", "IPS FREE"]
    assert rows[1] == ["IP Pool", "192.168.0.0/16", "65536", "2 (0%)", "65534 (100%)"]
    assert rows[2] == ["IP Pool", "fd00:1::/48", "1.2089e+24", "1 (0%)", "1.2089e+24 (100%)"]
    assert len(rows) == 3

    rows = _rows(cli("ipam", "show", "--show-blocks").ok().out)
    assert [r[0] for r in rows[1:]] == ["IP Pool", "Block", "IP Pool", "Block"]
    assert rows[2][0] == "Block"
    assert rows[2][1].startswith(block4.rsplit(".", 1)[0]) and rows[2][1].endswith("/26")
    assert rows[2][2:] == ["64", "2 (3%)", "62 (97%)"]
    assert rows[4][1].endswith("/122") and rows[4][2:] == ["64", "1 (2%)", "63 (98%)"]


def test_show_json_shape_and_exact_ipv6_counts(cli: Cli) -> None:
    cli.apply(STOCK_POOL).ok()
    cli.apply(pool_yaml("v6", "fd00:1::/48", blockSize=122)).ok()
    got = cli.assign("--handle=h1", "--node=n1", "--ipv4=2", "--ipv6=3")
    res = cli("ipam", "show", "-o", "json").ok()
    data = res.json()
    assert list(data) == ["pools"]
    v4, v6 = data["pools"]
    for pool in (v4, v6):
        assert list(pool) == ["name", "cidr", "total", "inUse", "free", "blocks"]
        for block in pool["blocks"]:
            assert list(block) == ["cidr", "affinity", "total", "inUse", "free"]
    assert v4 == {
        "name": "default-ipv4-ippool",
        "cidr": "192.168.0.0/16",
        "total": 65536,
        "inUse": 2,
        "free": 65534,
        "blocks": [
            {
                "cidr": str(ipaddress.ip_interface(got["ipv4"][0]).network),
                "affinity": "host:n1",
                "total": 64,
                "inUse": 2,
                "free": 62,
            }
        ],
    }
    assert v6["name"] == "v6" and v6["cidr"] == "fd00:1::/48"
    assert v6["total"] == 2**80 and type(v6["total"]) is int
    assert v6["inUse"] == 3 and v6["free"] == 2**80 - 3
    assert v6["blocks"] == [
        {
            "cidr": str(ipaddress.ip_interface(got["ipv6"][0]).network),
            "affinity": "host:n1",
            "total": 64,
            "inUse": 3,
            "free": 61,
        }
    ]
    # The JSON text carries the exact integer, not a float.
    assert str(2**80) in res.out and str(2**80 - 3) in res.out
    assert got["ipv6"][0].endswith("/122")
    # Every address assigned lies in the block the JSON names.
    net6 = ipaddress.ip_network(v6["blocks"][0]["cidr"])
    assert all(ipaddress.ip_interface(a).ip in net6 for a in got["ipv6"])
    net4 = ipaddress.ip_network(v4["blocks"][0]["cidr"])
    assert all(ipaddress.ip_interface(a).ip in net4 for a in got["ipv4"])


def test_show_empty_store(cli: Cli) -> None:
    assert cli("ipam", "show", "-o", "json").ok().json() == {"pools": []}
    assert _rows(cli("ipam", "show").ok().out) == [
        ["GROUPING", "CIDR", "IPS TOTAL", "IPS IN USE", "IPS FREE"]
    ]


def test_show_ip(cli: Cli) -> None:
    cli.apply(STOCK_POOL).ok()
    addr = cli.assign("--handle=pod-a", "--node=n1", "--attr=pod=a", "--attr=namespace=ns")["ipv4"][
        0
    ].split("/")[0]
    out = cli("ipam", "show", f"--ip={addr}").ok().out
    assert out.splitlines()[0] == f"IP {addr} is in use"
    assert "Handle: pod-a" in out and "host:n1" in out
    assert "pod: a" in out and "namespace: ns" in out
    data = cli("ipam", "show", f"--ip={addr}", "-o", "json").ok().json()
    assert data["ip"] == addr and data["inUse"] is True
    assert data["handle"] == "pod-a" and data["affinity"] == "host:n1"
    assert data["attributes"]["pod"] == "a" and data["attributes"]["node"] == "n1"
    assert isinstance(data["sequenceNumber"], int)

    assert cli("ipam", "show", "--ip=192.168.77.77").ok().out == "192.168.77.77 is not assigned\n"
    assert cli("ipam", "show", "--ip=10.0.0.1", "-o", "json").ok().json() == {
        "ip": "10.0.0.1",
        "inUse": False,
    }
    assert cli("ipam", "show", "--ip=fd00::1").ok().out == "fd00::1 is not assigned\n"


def test_show_borrowed(cli: Cli) -> None:
    cli.apply(pool_yaml("tiny", "10.5.0.0/30", blockSize=30)).ok()
    owner = cli.assign("--handle=a", "--node=na")["ipv4"]
    assert owner == ["10.5.0.0/30"]
    borrowed = cli.assign("--handle=b", "--node=nb", "--attr=pod=web", "--attr=namespace=ns")
    ip = borrowed["ipv4"][0].split("/")[0]
    rows = _rows(cli("ipam", "show", "--show-borrowed").ok().out)
    assert rows == [
        ["IP", "BORROWING-NODE", "BLOCK", "BLOCK OWNER", "TYPE", "ALLOCATED-TO"],
        [ip, "nb", "10.5.0.0/30", "na", "pod", "ns/web"],
    ]
    data = cli("ipam", "show", "--show-borrowed", "-o", "json").ok().json()
    assert data == {
        "borrowed": [
            {
                "ip": ip,
                "borrowingNode": "nb",
                "block": "10.5.0.0/30",
                "blockOwner": "na",
                "type": "pod",
                "allocatedTo": "ns/web",
            }
        ]
    }
    # With strict affinity nb may not borrow any more.
    cli("ipam", "configure", "--strictaffinity=true").ok()
    cli("ipam", "assign", "--handle=c", "--node=nb").fails(1, "nothing was kept")


def test_show_configuration(cli: Cli) -> None:
    rows = _rows(cli("ipam", "show", "--show-configuration").ok().out)
    assert rows == [
        ["PROPERTY", "VALUE"],
        ["StrictAffinity", "false"],
        ["AutoAllocateBlocks", "true"],
        ["MaxBlocksPerHost", "0"],
    ]
    cli("ipam", "configure", "--strictaffinity=true", "--max-blocks-per-host=5").ok()
    assert cli("ipam", "show", "--show-configuration", "-o", "json").ok().json() == {
        "strictAffinity": True,
        "autoAllocateBlocks": True,
        "maxBlocksPerHost": 5,
    }
