"""``tortie migrate ipv6-only``: the plan on a populated store changes nothing; --apply
creates the IPv6 pool and disables the IPv4 pools while existing addresses stay; a blocked
plan changes nothing; re-running is safe; bad input is refused with one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from rollout_cli import run

P6 = "fd00:10:244::/48"


def _pool(name: str, cidr: str, disabled: bool = False) -> str:
    return (
        f"apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata: {{name: {name}}}\n"
        f"spec: {{cidr: '{cidr}', disabled: {str(disabled).lower()}}}\n---\n"
    )


def _node(name: str, v4: str, v6: str = "", router_id: str = "") -> str:
    bgp = [f"ipv4Address: {v4}"] if v4 else []
    if v6:
        bgp.append(f"ipv6Address: '{v6}'")
    if router_id:
        bgp.append(f"routerID: {router_id}")
    return (
        f"apiVersion: projectcalico.org/v3\nkind: Node\nmetadata: {{name: {name}}}\n"
        f"spec: {{bgp: {{{', '.join(bgp)}}}}}\n---\n"
    )


def _apply(store_env: Path, text: str, capsys: pytest.CaptureFixture[str]) -> None:
    f = store_env / "objs.yaml"
    f.write_text(text)
    rc, _, err = run("apply", "-f", str(f), capsys=capsys)
    assert rc == 0, err


def _pools(capsys: pytest.CaptureFixture[str]) -> dict[str, dict[str, object]]:
    rc, out, _ = run("get", "ippools", "-o", "json", capsys=capsys)
    assert rc == 0
    return {p["metadata"]["name"]: p["spec"] for p in json.loads(out)["items"]}


def _dump(capsys: pytest.CaptureFixture[str]) -> str:
    """Every pool, node and allocation, to prove a plan-only run changed nothing."""
    parts = []
    for argv in (("get", "ippools", "-o", "yaml"), ("get", "nodes", "-o", "yaml")):
        parts.append(run(*argv, capsys=capsys)[1])
    parts.append(run("ipam", "show", "--show-blocks", capsys=capsys)[1])
    return "\n".join(parts)


def _allocated(ip: str, capsys: pytest.CaptureFixture[str]) -> bool:
    rc, out, _ = run("ipam", "show", f"--ip={ip}", capsys=capsys)
    assert rc == 0
    if f"{ip} is not assigned" in out:
        return False
    assert f"IP {ip} is in use" in out, out
    return True


def test_plan_then_apply_then_rerun(store_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _apply(
        store_env,
        _pool("v4", "10.244.0.0/16")
        + _pool("v4-b", "10.245.0.0/16")
        + _node("n1", "10.10.0.11/24", "fd10::11/64", "1.2.3.4")
        + _node("n2", "10.10.0.12/24", "fd10::12/64"),
        capsys,
    )
    rc, out, err = run("ipam", "assign", "--handle=h", "--node=n1", "-o", "json", capsys=capsys)
    assert rc == 0, err
    v4_addr = json.loads(out)["ipv4"][0].split("/")[0]
    assert _allocated(v4_addr, capsys)

    before = _dump(capsys)
    rc, out, _ = run("migrate", "ipv6-only", "--ipv6-pool", P6, capsys=capsys)
    assert rc == 0
    assert f"[to do] create IPv6 pool default-ipv6-ippool {P6}" in out
    assert "[to do] disable IPv4 pool v4 (10.244.0.0/16)" in out
    assert "[to do] disable IPv4 pool v4-b (10.245.0.0/16)" in out
    assert "[done] node n1: IPv6 fd10::11/64, router id 1.2.3.4" in out
    assert "[warning] node n2: no explicit router id" in out  # IP=none needs one
    assert "[to do by hand] manifest: tortie manifest rewrite --mode ipv6" in out
    assert "Nothing changed" in out
    assert _dump(capsys) == before  # the plan alone writes nothing

    rc, out, _ = run("migrate", "ipv6-only", "--ipv6-pool", P6, "--apply", capsys=capsys)
    assert rc == 0 and "IPPool(default-ipv6-ippool)" in out and "IPPool(v4-b)" in out
    pools = _pools(capsys)
    assert pools["v4"]["disabled"] is True and pools["v4-b"]["disabled"] is True
    assert pools["default-ipv6-ippool"]["cidr"] == P6
    assert not pools["default-ipv6-ippool"].get("disabled")
    # the existing pod keeps its IPv4 address until it restarts
    assert _allocated(v4_addr, capsys)
    # new pods get IPv6 only: an IPv4 request has no pool left, an IPv6 one comes from the new pool
    rc, _, err = run("ipam", "assign", "--handle=h2", "--node=n2", capsys=capsys)
    assert rc == 1 and "v4 is disabled" in err
    rc, out, err = run(
        "ipam", "assign", "--handle=h3", "--node=n2", "--ipv4=0", "--ipv6=1", "-o", "json",
        capsys=capsys,
    )  # fmt: skip
    assert rc == 0, err
    assert json.loads(out)["ipv6"][0].startswith("fd00:10:244:")

    after = _dump(capsys)
    rc, out, _ = run("migrate", "ipv6-only", "--apply", capsys=capsys)  # re-run, no --ipv6-pool
    assert rc == 0 and "[to do] " not in out
    assert "[done] IPv6 pool present: default-ipv6-ippool" in out
    assert "[done] IPv4 pool v4 already disabled" in out
    assert _dump(capsys) == after  # nothing changed the second time


def test_blocked_plan_changes_nothing(store_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _apply(store_env, _pool("v4", "10.244.0.0/16") + _node("n1", "10.10.0.11/24"), capsys)
    before = _dump(capsys)
    rc, out, _ = run("migrate", "ipv6-only", capsys=capsys)
    assert rc == 1
    assert "[BLOCKED] no IPv6 pool: give --ipv6-pool CIDR" in out
    assert "[BLOCKED] node n1: no IPv6 address" in out
    assert "no explicit router id" in out
    rc, out, err = run("migrate", "ipv6-only", "--ipv6-pool", P6, "--apply", capsys=capsys)
    assert rc == 2 and "blocked" in err and "nothing was changed" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert _dump(capsys) == before


def test_disabled_ipv6_pool_is_enabled(store_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _apply(
        store_env,
        _pool("v4", "10.244.0.0/16")
        + _pool("v6", "fd00:20::/48", disabled=True)
        + _node("n1", "10.10.0.11/24", "fd10::11/64", "1.2.3.4")
        + _node("n6", "", "fd10::16/64"),  # already IPv6-only, but no router id
        capsys,
    )
    rc, out, _ = run("migrate", "ipv6-only", "--ipv6-pool", P6, "--apply", capsys=capsys)
    assert rc == 0 and "enable the IPv6 pool v6 (fd00:20::/48)" in out
    assert f"(--ipv6-pool {P6} not used: an IPv6 pool exists)" in out
    assert "rewrite --mode ipv6 --ipv6-pool fd00:20::/48 " in out  # the pool really used
    assert "[warning] node n6: no explicit router id" in out
    assert "without an IPv4 address BGP has no router id" in out
    pools = _pools(capsys)
    assert pools["v6"]["disabled"] is False and pools["v4"]["disabled"] is True
    assert set(pools) == {"v4", "v6"}  # no second IPv6 pool


@pytest.mark.parametrize(
    ("pool", "message"),
    [("10.99.0.0/16", "IPv4 CIDR; give an IPv6 one"), ("fd00::zz/64", "is not a CIDR")],
)
def test_bad_ipv6_pool_refused(
    store_env: Path, capsys: pytest.CaptureFixture[str], pool: str, message: str
) -> None:
    _apply(store_env, _pool("v4", "10.244.0.0/16"), capsys)
    before = _dump(capsys)
    rc, _, err = run("migrate", "ipv6-only", "--ipv6-pool", pool, "--apply", capsys=capsys)
    assert rc == 2 and message in err and "--ipv6-pool" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert _dump(capsys) == before
