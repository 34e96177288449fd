"""Issue 10 defects 5, 9, 12, 13 and 14: each test failed before its fix.

5: node names, handles and attributes are validated as the CNI plugin does; 9: releasing
from a report leaves nothing the report named; 12: ``ipam check`` exits 1 on problems;
13: ``ipam check --live-containers`` finds leaks of IPAM-plugin-only nodes; 14: ``--ip``
refuses a prefix.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tortie.core.addr import ordinal_of, parse_address
from tortie.core.block import release
from tortie.datastore import keys
from tortie.datastore.sqlite import SqliteDatastore
from tortie.model.ipam_records import decode_block, encode_block

from .clihelp import STOCK_POOL, Cli, pool_yaml, wep_yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "cni"))
from cni_helpers import NODE, call, netconf  # type: ignore[import-not-found, unused-ignore]


@pytest.fixture
def store(cli: Cli) -> Iterator[SqliteDatastore]:
    """The CLI's SQLite file, opened directly (for CNI calls and fault injection)."""
    s = SqliteDatastore(str(cli.tmp / "tortie.db"))
    yield s
    s.close()


def _ipam_keys(store: SqliteDatastore) -> list[str]:
    return sorted(kv.key for kv in store.list("/calico/ipam/"))


# ------------------------------------------------------------------ defect 5


@pytest.mark.parametrize(
    ("option", "value", "fragment"),
    [
        ("--node", "a/b", "may not contain '/'"),
        ("--node", "..", "'.' or '..'"),
        ("--node", "has space", "may not contain ' '"),
        ("--node", "x" * 254, "longer than 253"),
        ("--handle", "h/../x", "may not contain '/'"),
        ("--handle", "tab\there", "may not contain '\\t'"),
        ("--attr", "k=v\nforged", "may not contain '\\n'"),
        ("--attr", "=v", "empty key"),
    ],
)
def test_assign_refuses_names_that_break_the_key_layout(
    cli: Cli, store: SqliteDatastore, option: str, value: str, fragment: str
) -> None:
    cli.apply(STOCK_POOL).ok()
    before = _ipam_keys(store)
    argv = {"--node": "n1", "--handle": "h1"}
    argv[option] = value
    flags = [f"{k}={v}" for k, v in argv.items()]
    cli("ipam", "assign", *flags).fails(2, option, fragment)
    assert _ipam_keys(store) == before  # nothing half-written
    cli("ipam", "check").ok()


def test_release_and_install_refuse_bad_names(cli: Cli) -> None:
    cli("ipam", "release", "--handle=a/b").fails(2, "--handle", "may not contain '/'")
    cli("install-cni", "--nodename=a/b", f"--bin-dir={cli.tmp}").fails(
        2, "--nodename", "may not contain '/'"
    )


def test_cni_plugin_and_cli_share_the_node_name_rules(store: SqliteDatastore) -> None:
    code, out = call(store, "ADD", netconf(nodename="a/b"))
    assert code == 1 and out is not None
    assert out["code"] == 7 and "may not contain '/'" in out["msg"]


# ------------------------------------------------------------------ defect 14


@pytest.mark.parametrize("command", ["assign", "release", "show"])
def test_ip_option_refuses_a_prefix(cli: Cli, store: SqliteDatastore, command: str) -> None:
    cli.apply(pool_yaml("p", "10.10.0.0/16")).ok()
    extra = ["--handle=h", "--node=n"] if command == "assign" else []
    cli("ipam", command, "--ip=10.10.0.0/24", *extra).fails(
        2, "'10.10.0.0/24' is a prefix", "'10.10.0.0'"
    )
    assert not store.list(keys.handle_prefix())
    cli("ipam", "assign", "--handle=h", "--node=n", "--ip=10.10.0.0").ok()


# ------------------------------------------------------------------ defect 12


def test_check_exits_1_on_problems_unless_exit_zero(cli: Cli) -> None:
    cli.apply(STOCK_POOL).ok()
    cli.apply(wep_yaml("n1-k8s-ghost-eth0", "n1", "ghost", ["192.168.9.9/32"])).ok()
    out = cli("ipam", "check").found_problems().out
    assert out.splitlines()[-1] == "Check complete; found 1 problems."
    assert cli("ipam", "check", "--exit-zero").ok().out == out
    cli("delete", "workloadendpoint", "n1-k8s-ghost-eth0").ok()
    cli("ipam", "check").ok()


# ------------------------------------------------------------------ defect 13


def test_check_with_live_containers_finds_ipam_only_leaks(cli: Cli, store: SqliteDatastore) -> None:
    cli.apply(STOCK_POOL).ok()
    cli.apply(pool_yaml("v6", "fd00:66::/48")).ok()
    conf = netconf(ipam={"assign_ipv6": "true"})
    for cid in ("live1", "dead.1", "live.2"):
        code, _ = call(store, "ADD", conf, container=cid)
        assert code == 0
    handles = {kv.key.rsplit("/", 1)[1] for kv in store.list(keys.handle_prefix())}
    assert handles == {"net1.live1", "net1.dead.1", "net1.live.2"}
    # Without the list nothing is verifiable (no WorkloadEndpoints): no leak, exit 0.
    assert "Found 0 leaked addresses." in cli("ipam", "check").ok().out

    attachments = [{"containerID": c, "ifname": "eth0"} for c in ("live1", "live.2")]
    for text in (
        json.dumps(attachments),
        json.dumps({"cni.dev/valid-attachments": attachments}),
        "live1\nlive.2\n",
    ):
        report = str(cli.tmp / "r.json")
        res = cli(
            "ipam",
            "check",
            f"--live-containers={cli.file(text, '.txt')}",
            f"--node={NODE}",
            "-o",
            report,
        ).found_problems()
        assert f"Found 4 allocations held by the 2 live containers of node {NODE}." in res.out
        with open(report, encoding="utf-8") as fh:
            leaked = json.load(fh)["leakedIPs"]
        assert sorted(x["handle"] for x in leaked) == ["net1.dead.1", "net1.dead.1"]
    # Another node's list judges nothing here.
    other = cli.file("[]", ".json")
    cli("ipam", "check", f"--live-containers={other}", "--node=elsewhere").ok()
    # Releasing the report frees the dead container's addresses only.
    cli("ipam", "release", f"--from-report={report}").ok()
    handles = {kv.key.rsplit("/", 1)[1] for kv in store.list(keys.handle_prefix())}
    assert handles == {"net1.live1", "net1.live.2"}
    live = cli.file("live1\nlive.2\n", ".txt")
    cli("ipam", "check", f"--live-containers={live}", f"--node={NODE}").ok()


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "is empty"),
        ("[1]", "item 0 names no container"),
        ("{not json", "not valid JSON"),
        ('{"x": 1}', "not a list of containers"),
        ("a b\n", "is not a container id"),
    ],
)
def test_check_refuses_a_bad_live_list(cli: Cli, text: str, fragment: str) -> None:
    cli.apply(STOCK_POOL).ok()
    path = cli.file(text, ".txt")
    cli("ipam", "check", f"--live-containers={path}", "--node=n").fails(2, fragment)
    cli("ipam", "check", f"--live-containers={path}").fails(2, "--node")


# ------------------------------------------------------------------- defect 9


def test_release_from_report_leaves_no_handle_behind(cli: Cli, store: SqliteDatastore) -> None:
    cli.apply(STOCK_POOL).ok()
    cli.apply(pool_yaml("v6", "fd00:67::/48")).ok()
    pod = cli.assign("--handle=net.web", "--node=node1", "--attr=pod=web")["ipv4"][0]
    pod = pod.split("/")[0]
    cli.apply(wep_yaml("node1-k8s-web-eth0", "node1", "web", [f"{pod}/32"])).ok()
    got = cli.assign("--handle=net.gone", "--node=node1", "--ipv4=1", "--ipv6=1", "--attr=pod=gone")
    # The crash: the IPv6 block lost the address, the handle still counts it.
    six = parse_address(got["ipv6"][0])
    (kv,) = store.list(keys.block_prefix(6))
    block = decode_block(kv.key, kv.value)
    new, _ = release(block, [ordinal_of(block.network, six)])
    assert new.in_use == block.in_use - 1
    store.update(kv.key, encode_block(new), kv.revision)

    report = str(cli.tmp / "r.json")
    out = cli("ipam", "check", "-o", report).out  # (its exit code is defect 12's test)
    assert "handle-count-mismatch: net.gone" in out
    cli("ipam", "release", f"--from-report={report}").ok()
    assert store.get(keys.handle_key("net.gone")) is None
    assert cli("ipam", "check").ok().out.splitlines()[-1] == "Check complete; found 0 problems."
    assert "is in use" in cli("ipam", "show", f"--ip={pod}").ok().out
