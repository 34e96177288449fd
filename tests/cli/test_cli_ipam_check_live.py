"""``ipam check --live`` with allocations made by the real IPAM plugin (issue 10 defect
13), the input shapes and bad lists, a crash that lost a block write (defect 9) and
``install-cni --nodename`` under the shared name rule (defect 5).
Complements tests/regressions/test_probe_findings.py."""

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


def _handles(store: SqliteDatastore) -> set[str]:
    return {kv.key.rsplit("/", 1)[1] for kv in store.list(keys.handle_prefix())}


def test_live_list_finds_leaks_of_ipam_plugin_only_nodes(cli: Cli, store: SqliteDatastore) -> None:
    cli.apply(STOCK_POOL).ok()
    cli.apply(pool_yaml("v6", "fd00:66::/48")).ok()
    conf = netconf(ipam={"assign_ipv6": "true"})
    for cid in ("live1", "dead.1", "live.2"):  # container ids may contain '.'
        code, _ = call(store, "ADD", conf, container=cid)
        assert code == 0
    assert _handles(store) == {"net1.live1", "net1.dead.1", "net1.live.2"}
    # No WorkloadEndpoints: without the list nothing is verifiable, so no leak.
    assert "Found 0 leaked addresses." in cli("ipam", "check").ok().out

    attachments = [{"containerID": c, "ifname": "eth0"} for c in ("live1", "live.2")]
    report = str(cli.tmp / "r.json")
    for text in (
        json.dumps(attachments),
        json.dumps({"cni.dev/valid-attachments": attachments}),  # GC's own netconf
        "live1\nlive.2\n",
    ):
        live = cli.file(text, ".txt")
        out = cli("ipam", "check", f"--live={live}", f"--node={NODE}", "-o", report).found().out
        assert "Found 2 leaked addresses." in out
        with open(report, encoding="utf-8") as fh:
            leaked = json.load(fh)["leakedIPs"]
        assert [x["handle"] for x in leaked] == ["net1.dead.1", "net1.dead.1"]
    # Another node's list judges nothing here.
    cli("ipam", "check", f"--live={cli.file('[]', '.json')}", "--node=elsewhere").ok()
    # Releasing the report frees the dead container's two addresses only.
    cli("ipam", "release", f"--from-report={report}").ok()
    assert _handles(store) == {"net1.live1", "net1.live.2"}
    live = cli.file("live1\nlive.2\n", ".txt")
    cli("ipam", "check", f"--live={live}", f"--node={NODE}").ok()


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "is empty"),  # a failed listing must not make every allocation a leak
        ("\n  \n", "is empty"),
        ("[1]", "containerID"),
        ("{not json", "not valid JSON"),
        ('{"x": 1}', "expected a list"),
    ],
)
def test_bad_live_lists_are_refused(cli: Cli, text: str, fragment: str) -> None:
    cli.apply(STOCK_POOL).ok()
    cli("ipam", "check", f"--live={cli.file(text, '.txt')}", "--node=n").fails(2, fragment)


def test_show_refuses_a_prefix(cli: Cli) -> None:
    cli.apply(STOCK_POOL).ok()
    cli("ipam", "show", "--ip=192.168.0.0/24").fails(2, "is a prefix")


def test_release_from_report_after_a_lost_block_write(cli: Cli, store: SqliteDatastore) -> None:
    """The block lost the IPv6 address, the handle still counts it: releasing from the
    report frees the IPv4 address and leaves no handle."""
    cli.apply(STOCK_POOL).ok()
    cli.apply(pool_yaml("v6", "fd00:67::/48")).ok()
    pod = cli.assign("--handle=net.web", "--node=node1", "--attr=pod=web")["ipv4"][0]
    pod = pod.split("/")[0]
    cli.apply(wep_yaml("node1-k8s-web-eth0", "node1", "web", [f"{pod}/32"])).ok()
    got = cli.assign("--handle=net.gone", "--node=node1", "--ipv4=1", "--ipv6=1", "--attr=pod=x")
    six = parse_address(got["ipv6"][0])
    (kv,) = store.list(keys.block_prefix(6))
    block = decode_block(kv.key, kv.value)
    new, _ = release(block, [ordinal_of(block.network, six)])
    store.update(kv.key, encode_block(new), kv.revision)

    report = str(cli.tmp / "r.json")
    out = cli("ipam", "check", "-o", report).found().out
    assert "handle-count-mismatch: net.gone" in out
    cli("ipam", "release", f"--from-report={report}").ok()
    assert "net.gone" not in _handles(store)
    assert cli("ipam", "check").ok().out.splitlines()[-1] == "Check complete; found 0 problems."
    assert "is in use" in cli("ipam", "show", f"--ip={pod}").ok().out


def test_install_cni_refuses_a_node_name_that_breaks_the_key_layout(cli: Cli) -> None:
    conf_dir = cli.tmp / "net.d"
    cli(
        "install-cni", "--nodename=a/b", f"--bin-dir={cli.tmp / 'bin'}", f"--conf-dir={conf_dir}"
    ).fails(2, "--nodename", "'/'")
    assert not conf_dir.exists()  # nothing written
