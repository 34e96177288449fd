"""Issue 10: defects an outside probe found in the CLI, the store and the allocator.
Each test fails on the code before its fix."""

from __future__ import annotations

import json
import re
import sys
import time
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cli_fixture import POOLS_YAML, Cli

from tortie.datastore import keys
from tortie.datastore.sqlite import SqliteDatastore
from tortie.model.ipam_records import Handle, decode_handle, encode_handle


def pools(cli: Cli, tmp_path: Path) -> None:
    f = tmp_path / "pools.yaml"
    f.write_text(POOLS_YAML)
    assert cli("apply", "-f", str(f))[0] == 0


def one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def store_of(tmp_path: Path) -> SqliteDatastore:
    return SqliteDatastore(str(tmp_path / "tortie.db"))


# 5 ------------------------------------------------------------- names in keys


@pytest.mark.parametrize(
    ("option", "value", "why"),
    [
        ("--node", "a/b", "contains '/'"),
        ("--node", "a b", "whitespace"),
        ("--handle", "h/../x", "contains '/'"),
        ("--handle", "h\x01", "control character"),
        ("--attr", "po/d=x", "contains '/'"),
    ],
)
def test_assign_refuses_names_that_break_the_key_layout(
    cli: Cli, tmp_path: Path, option: str, value: str, why: str
) -> None:
    pools(cli, tmp_path)
    args = {"--node": "n1", "--handle": "h1"}
    argv = ["ipam", "assign", *(f"{k}={v}" for k, v in args.items() if k != option)]
    argv.append(f"{option}={value}")
    rc, _, err = cli(*argv)
    assert rc == 2 and why in one_line(err)
    store = store_of(tmp_path)
    try:
        assert store.list("/calico/ipam/") == []  # nothing written
    finally:
        store.close()
    rc, out, _ = cli("ipam", "check")
    assert rc == 0 and out.splitlines()[-1] == "Check complete; found 0 problems."


# 14 ------------------------------------------------------------- --ip prefix


def test_assign_ip_refuses_a_prefix(cli: Cli, tmp_path: Path) -> None:
    pools(cli, tmp_path)
    rc, _, err = cli("ipam", "assign", "--handle=h", "--node=n1", "--ip=10.80.0.0/24")
    assert rc == 2 and "is a prefix, not an address" in one_line(err)
    rc, _, err = cli("ipam", "release", "--ip=10.80.0.5/32")
    assert rc == 2 and "is a prefix" in one_line(err)
    rc, _, _ = cli("ipam", "show", "--ip=10.80.0.0")
    assert rc == 0


# 6 ------------------------------------------------------------- deep nesting


@pytest.mark.parametrize("text", ["[" * 100_000, '{"a":' * 100_000, "- " * 100_000])
def test_deeply_nested_input_is_a_parse_error(cli: Cli, tmp_path: Path, text: str) -> None:
    f = tmp_path / "deep.txt"
    f.write_text(text)
    rc, _, err = cli("apply", "-f", str(f))
    assert rc == 2
    line = one_line(err)
    assert "internal error" not in line and ("nested" in line or "invalid YAML" in line)


# 7 ------------------------------------------------------------- bounded messages


def test_huge_value_gives_a_short_error(cli: Cli, tmp_path: Path) -> None:
    doc = {
        "apiVersion": "projectcalico.org/v3",
        "kind": "IPPool",
        "metadata": {"name": "p"},
        "spec": {"cidr": "x" * (4 << 20)},
    }
    f = tmp_path / "big.json"
    f.write_text(json.dumps(doc))
    rc, _, err = cli("apply", "-f", str(f))
    assert rc == 2
    line = one_line(err)
    assert len(line) < 1200 and "characters cut" in line and "IPPool(p)" in line


# 8 ------------------------------------------------------------- many pools


def test_many_pools_apply_in_n_log_n(cli: Cli, tmp_path: Path) -> None:
    docs = [
        f"apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata: {{name: p{i}}}\n"
        f"spec: {{cidr: 10.{i // 256}.{i % 256}.0/24, blockSize: 26}}\n"
        for i in range(5000)
    ]
    f = tmp_path / "many.yaml"
    f.write_text("---\n".join(docs))
    started = time.monotonic()
    rc, out, err = cli("apply", "-f", str(f))
    elapsed = time.monotonic() - started
    assert rc == 0, err
    assert out.count("Successfully applied") == 5000
    assert elapsed < 10, f"5,000 pools took {elapsed:.1f} s (quadratic checks?)"
    # the overlap check still works at that size
    clash = tmp_path / "clash.yaml"
    clash.write_text(
        "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata: {name: clash}\n"
        "spec: {cidr: 10.5.0.0/16}\n"
    )
    rc, _, err = cli("apply", "-f", str(clash))
    assert rc == 2 and re.search(r"overlaps with IPPool\(p1[2-5]\d\d\)", one_line(err))


def test_overlap_index_edges() -> None:
    from tortie.errors import InvalidInput
    from tortie.model.ippool import PoolIndex, ippool_from_dict

    def IPPool(name: str, cidr: str) -> Any:
        doc = {
            "apiVersion": "projectcalico.org/v3",
            "kind": "IPPool",
            "metadata": {"name": name},
            "spec": {"cidr": cidr},
        }
        return ippool_from_dict(doc)

    index = PoolIndex([IPPool(name="a", cidr="10.0.0.0/16"), IPPool(name="b", cidr="10.2.0.0/16")])
    for cidr in ("10.1.0.0/16", "10.3.0.0/24", "9.0.0.0/8", "fd00::/64"):
        index.check(IPPool(name="n", cidr=cidr))
    for cidr, other in (("10.0.5.0/24", "a"), ("10.0.0.0/8", "a|b"), ("10.2.255.0/24", "b")):
        with pytest.raises(InvalidInput, match=f"with IPPool\\(({other})\\)"):
            index.check(IPPool(name="n", cidr=cidr))
    index.check(IPPool(name="a", cidr="10.0.0.0/15"))  # itself, by name, excepted
    index.put(IPPool(name="a", cidr="10.0.0.0/15"))
    with pytest.raises(InvalidInput, match=r"IPPool\(a\)"):
        index.check(IPPool(name="n", cidr="10.1.0.0/24"))


# 9 ------------------------------------------------------------- release after a crash


def test_release_from_report_leaves_no_handle_behind(cli: Cli, tmp_path: Path) -> None:
    pools(cli, tmp_path)
    wep = (
        "apiVersion: projectcalico.org/v3\nkind: WorkloadEndpoint\n"
        "metadata: {name: n1-k8s-web-eth0, namespace: default}\n"
        "spec: {node: n1, orchestrator: k8s, pod: web, endpoint: eth0, interfaceName: caliweb,"
        " ipNetworks: []}\n"
    )
    f = tmp_path / "wep.yaml"
    f.write_text(wep)
    assert cli("apply", "-f", str(f))[0] == 0
    rc, out, _ = cli(
        "ipam", "assign", "--handle=k8s.crashed", "--node=n1", "--attr=pod=x", "-o", "json"
    )
    assert rc == 0
    # what a SIGKILLed dual-stack ADD can leave: the handle claims an IPv6 address no
    # block holds (the block write never happened)
    store = store_of(tmp_path)
    try:
        key = keys.handle_key("k8s.crashed")
        kv = store.get(key)
        assert kv is not None
        handle = decode_handle(key, kv.value)
        claim = {**handle.block, "fd00:80::-122": 1}
        store.update(key, encode_handle(Handle("k8s.crashed", claim)), kv.revision)
    finally:
        store.close()
    report = str(tmp_path / "r.json")
    rc, out, _ = cli("ipam", "check", "-o", report)
    assert rc == 1 and "handle-count-mismatch: k8s.crashed" in out
    rc, out, _ = cli("ipam", "release", f"--from-report={report}")
    assert rc == 0 and "Removed handle k8s.crashed" in out
    store = store_of(tmp_path)
    try:
        assert store.get(keys.handle_key("k8s.crashed")) is None
    finally:
        store.close()
    rc, out, _ = cli("ipam", "check")
    assert rc == 0 and out.splitlines()[-1] == "Check complete; found 0 problems."


# 12, 13 ------------------------------------------------------------- check


def test_check_exit_code_and_live_containers(cli: Cli, tmp_path: Path) -> None:
    from tortie.cli.main import main  # noqa: F401  (cli runs it)

    pools(cli, tmp_path)
    for cid in ("live1", "dead1"):
        rc, _, err = cli(
            "ipam",
            "assign",
            f"--handle=k8s-pod-network.{cid}",
            "--node=n1",
            "--attr=network=k8s-pod-network",
            "--attr=timestamp=x",
        )
        assert rc == 0, err
    # no WorkloadEndpoints: without the live list nothing is verifiable, so no leak
    rc, out, _ = cli("ipam", "check")
    assert rc == 0 and "not verifiable" in out
    live = tmp_path / "live.json"
    live.write_text(json.dumps([{"containerID": "live1", "ifname": "eth0"}]))
    report = str(tmp_path / "r.json")
    rc, out, _ = cli("ipam", "check", "--live", str(live), "--node", "n1", "-o", report)
    assert rc == 1 and "(handle k8s-pod-network.dead1, node n1)" in out
    assert "live1" not in out
    rc, out, _ = cli("ipam", "check", "--live", str(live), "--node", "n1", "--exit-zero")
    assert rc == 0 and out.splitlines()[-1] == "Check complete; found 1 problems."
    plain = tmp_path / "live.txt"
    plain.write_text("live1\ndead1\n")
    rc, out, _ = cli("ipam", "check", "--live", str(plain), "--node", "n1")
    assert rc == 0
    rc, _, err = cli("ipam", "check", "--live", str(plain))
    assert rc == 2 and "--node" in one_line(err)
    rc, out, _ = cli("ipam", "release", f"--from-report={report}")
    assert rc == 0
    rc, out, _ = cli("ipam", "check", "--live", str(live), "--node", "n1")
    assert rc == 0 and out.splitlines()[-1] == "Check complete; found 0 problems."
