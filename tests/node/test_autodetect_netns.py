"""Autodetection on a real kernel: ``tortie node startup`` run inside a namespace that
holds decoy interfaces (docker0, cali*, a /128 and /32 VIP, a link-local-only interface,
a deprecated address) next to the real uplink eth0."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/, for netns

from netns import Netns, NetnsPool, require_root

TORTIE = Path(sys.executable).with_name("tortie")


def _veth(ns: Netns, name: str, peer: str) -> None:
    ns.ip("link", "add", name, "type", "veth", "peer", "name", peer)
    ns.ip("link", "set", name, "up")
    ns.ip("link", "set", peer, "up")


@pytest.fixture(scope="module")
def host() -> Iterator[Netns]:
    require_root()
    if not TORTIE.exists():
        pytest.skip(f"{TORTIE} is not installed (pip install -e .)")
    with NetnsPool() as pool:
        ns = pool.new()
        ns.ip("link", "set", "lo", "up")
        # Created in this order, so the decoys come first in the kernel's order.
        _veth(ns, "docker0", "vethd0")
        ns.ip("addr", "add", "172.17.0.1/16", "dev", "docker0")
        ns.ip("addr", "add", "fd17::1/64", "dev", "docker0", "nodad")
        _veth(ns, "ens1", "vethv0")  # keepalived-style VIPs
        ns.ip("addr", "add", "10.99.0.1/32", "dev", "ens1")
        ns.ip("addr", "add", "fd99::1/128", "dev", "ens1", "nodad")
        _veth(ns, "eth1", "vethl0")  # link-local only
        _veth(ns, "eth2", "vethp0")  # a deprecated address
        ns.ip(
            "addr",
            "add",
            "fd30::5/64",
            "dev",
            "eth2",
            "nodad",
            "preferred_lft",
            "0",
            "valid_lft",
            "3600",
        )
        _veth(ns, "cali12345", "vethc0")
        ns.ip("addr", "add", "10.77.0.1/24", "dev", "cali12345")
        _veth(ns, "eth0", "vethu0")  # the real uplink
        ns.ip("addr", "add", "10.10.0.11/24", "dev", "eth0")
        ns.ip("addr", "add", "fd10::11/64", "dev", "eth0", "nodad")
        yield ns


def startup(ns: Netns, tmp: Path, **env: str) -> subprocess.CompletedProcess[str]:
    full = {
        "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
        "DATASTORE_TYPE": "sqlite",
        "SQLITE_PATH": str(tmp / "tortie.db"),
        "NODENAME": "host-1",
        "CALICO_NODENAME_FILE": str(tmp / "nodename"),
        "CALICO_IPV4POOL_CIDR": "10.244.0.0/16",
        "CALICO_IPV6POOL_CIDR": "fd00:244::/48",
        "FELIX_IPFORWARDING": "Disabled",
        **env,
    }
    return subprocess.run(
        [
            "ip",
            "netns",
            "exec",
            ns.name,
            "env",
            "-i",
            *(f"{k}={v}" for k, v in full.items()),
            str(TORTIE),
            "node",
            "startup",
            "-o",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def ok(ns: Netns, tmp: Path, **env: str) -> tuple[dict[str, Any], str]:
    proc = startup(ns, tmp, **env)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout), proc.stderr


@pytest.mark.parametrize(
    ("method4", "want4"),
    [
        ("first-found", "10.10.0.11/24"),  # docker0 excluded, the /32 VIP passed over
        ("interface=eth0", "10.10.0.11/24"),
        ("interface=cali.*", "10.77.0.1/24"),  # interface= has no default exclusions
        ("skip-interface=eth0", "10.99.0.1/32"),  # only a VIP left: taken, and said so
        ("cidr=10.77.0.0/16", "10.77.0.1/24"),
        ("can-reach=10.10.0.200", "10.10.0.11/24"),
    ],
)
def test_ipv4_methods(host: Netns, tmp_path: Path, method4: str, want4: str) -> None:
    result, log = ok(host, tmp_path, IP="autodetect", IP_AUTODETECTION_METHOD=method4, IP6="none")
    assert result["ipv4"] == want4
    assert f"IPv4 address {want4}" in log and "chosen" in log


@pytest.mark.parametrize(
    ("method6", "want6"),
    [
        ("first-found", "fd10::11/64"),  # /128 VIP and deprecated address passed over
        ("interface=eth.*", "fd10::11/64"),  # eth2's address is deprecated
        ("interface=eth2", "fd30::5/64"),  # the only candidate: deprecated, said so
        ("skip-interface=eth0,ens1", "fd30::5/64"),
        ("cidr=fd17::/16", "fd17::1/64"),
        ("can-reach=fd10::200", "fd10::11/64"),
    ],
)
def test_ipv6_methods(host: Netns, tmp_path: Path, method6: str, want6: str) -> None:
    result, log = ok(
        host,
        tmp_path,
        IP="none",
        IP6="autodetect",
        IP6_AUTODETECTION_METHOD=method6,
        CALICO_ROUTER_ID="hash",
    )
    assert result["ipv6"] == want6
    assert f"IPv6 address {want6}" in log


def test_first_found_says_what_it_passed_over(host: Netns, tmp_path: Path) -> None:
    _, log = ok(host, tmp_path, IP="autodetect", IP6="autodetect")
    assert "passed over fd99::1/128 on ens1 (a /128 (VIP-style))" in log
    assert "fd30::5/64 on eth2 (deprecated)" in log
    assert "passed over 10.99.0.1/32 on ens1" in log


def test_link_local_only_interface_finds_nothing(host: Netns, tmp_path: Path) -> None:
    proc = startup(
        host,
        tmp_path,
        IP="none",
        IP6="autodetect",
        CALICO_ROUTER_ID="hash",
        IP6_AUTODETECTION_METHOD="interface=eth1",
    )
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert "no IPv6 address found by IP6_AUTODETECTION_METHOD=interface=eth1" in lines[-1]
    assert "Traceback" not in proc.stderr


def test_kubernetes_internal_ip(host: Netns, tmp_path: Path) -> None:
    node = tmp_path / "node.json"
    node.write_text(
        json.dumps(
            {
                "kind": "Node",
                "status": {
                    "addresses": [
                        {"type": "Hostname", "address": "host-1"},
                        {"type": "InternalIP", "address": "10.10.0.11"},
                        {"type": "InternalIP", "address": "fd10::11"},
                    ]
                },
            }
        )
    )
    result, _ = ok(
        host,
        tmp_path,
        IP="autodetect",
        IP6="autodetect",
        IP_AUTODETECTION_METHOD="kubernetes-internal-ip",
        IP6_AUTODETECTION_METHOD="kubernetes-internal-ip",
        TORTIE_K8S_NODE_FILE=str(node),
    )
    assert (result["ipv4"], result["ipv6"]) == ("10.10.0.11/24", "fd10::11/64")
    proc = startup(
        host, tmp_path / "x", IP="autodetect", IP_AUTODETECTION_METHOD="kubernetes-internal-ip"
    )
    assert proc.returncode == 2 and "set TORTIE_K8S_NODE_FILE" in proc.stderr


@pytest.mark.parametrize(
    ("env", "code", "text"),
    [
        ({"IP": "none", "IP6": "none"}, 2, "no IPv4 or IPv6 addresses configured or detected"),
        ({"IP": "none", "IP6": "autodetect"}, 2, "set CALICO_ROUTER_ID=hash"),
        ({"IP6_AUTODETECTION_METHOD": "nic=eth0"}, 2, "Invalid IP autodetection method: nic=eth0"),
        ({"NO_DEFAULT_POOLS": "true"}, 2, "NO_DEFAULT_POOLS=true and CALICO_IPV4POOL_CIDR"),
        ({"IP": "autodetect"}, 2, "IP6 is empty but CALICO_IPV6POOL_CIDR is set"),
    ],
)
def test_startup_errors(
    host: Netns, tmp_path: Path, env: dict[str, str], code: int, text: str
) -> None:
    proc = startup(host, tmp_path, **env)
    assert proc.returncode == code, proc.stderr
    assert text in proc.stderr.strip().splitlines()[-1]
    assert not (tmp_path / "nodename").exists()  # nothing written


def test_forwarding_enabled_inside_the_namespace_only(host: Netns, tmp_path: Path) -> None:
    host.set_sysctl("net/ipv4/ip_forward", "0")
    host.set_sysctl("net/ipv6/conf/all/forwarding", "0")
    ok(host, tmp_path, IP="autodetect", IP6="autodetect", FELIX_IPFORWARDING="Enabled")
    assert host.sysctl("net/ipv4/ip_forward") == "1"
    assert host.sysctl("net/ipv6/conf/all/forwarding") == "1"
