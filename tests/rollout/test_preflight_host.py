"""The host rows of ``tortie preflight`` read the current namespace and change nothing:
run inside namespaces this test creates (one prepared for IPv6, one bare), and the
machine's own namespace is the same before and after a read of it."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tortie.rollout import preflight, preflight_host

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/, for netns

from netns import IP, NetnsPool, require_root, run_python_in

READ = "import json; from tortie.rollout.preflight_host import read_host; print(json.dumps(read_host()))"


@pytest.fixture
def namespaces() -> Iterator[NetnsPool]:
    require_root()
    with NetnsPool() as pool:
        yield pool


def _snapshot(ns: str | None = None) -> tuple[str, str, str, str]:
    """Forwarding, addresses, IPv6 routes and links of a namespace (None: this one)."""
    prefix = [str(IP)] + (["-n", ns] if ns else [])

    def ip(*args: str) -> str:
        return subprocess.run([*prefix, *args], capture_output=True, text=True).stdout

    fwd = Path("/proc/sys/net/ipv6/conf/all/forwarding")
    return (
        fwd.read_text() if ns is None and fwd.exists() else "",
        ip("-j", "addr", "show"),
        ip("-j", "-6", "route", "show", "table", "all"),
        ip("-j", "link", "show"),
    )


def test_reads_a_prepared_and_a_bare_namespace(namespaces: NetnsPool) -> None:
    ready, bare = namespaces.new(), namespaces.new()
    ready.ip("link", "add", "eth0", "type", "veth", "peer", "name", "eth1")  # both inside
    ready.ip("link", "set", "eth0", "up")
    ready.ip("link", "set", "eth1", "up")
    ready.ip("-6", "addr", "add", "fd10:99::11/64", "dev", "eth0", "nodad")
    ready.ip("-6", "route", "add", "default", "via", "fd10:99::1", "dev", "eth0")
    ready.set_sysctl("net/ipv6/conf/all/forwarding", "1")
    before = _snapshot(ready.name)

    got = run_python_in(ready, sys.executable, READ)
    assert got.returncode == 0, got.stderr
    forwarding, addrs, default = json.loads(got.stdout)
    assert forwarding == "1" and default is True
    assert any("fd10:99::11" in a for a in addrs), addrs
    rows = preflight_host.check_host({6}, forwarding, addrs, default)
    assert [r.result for r in rows] == [preflight.PASS] * 3
    assert _snapshot(ready.name) == before  # reading changed nothing

    got = run_python_in(bare, sys.executable, READ)
    assert got.returncode == 0, got.stderr
    forwarding, addrs, default = json.loads(got.stdout)
    assert (forwarding, addrs, default) == ("0", [], False)
    rows = preflight_host.check_host({6}, forwarding, addrs, default)
    assert [r.result for r in rows] == [preflight.FAIL, preflight.FAIL, preflight.WARN]
    assert "sysctl -w net.ipv6.conf.all.forwarding=1" in rows[0].fix
    assert bare.sysctl("net/ipv6/conf/all/forwarding") == "0"  # a fix is printed, not made


def test_reading_this_namespace_changes_nothing() -> None:
    if IP is None:
        pytest.skip("needs iproute2: `ip` not found")
    before = _snapshot()
    forwarding, _addrs, default = preflight_host.read_host()
    assert forwarding in ("0", "1", None) and isinstance(default, bool)
    assert _snapshot() == before
