"""The netlink dataplane (tortie.dataplane.netlink_pod) beyond what test_pod.py checks for
both dataplanes: the same kernel state as ``ip``, threads, descriptors, imports.

As in test_pod.py, every call runs in a fresh Python process (pod_runner.py) inside a
"host" namespace made by the test, never in pytest's own namespace.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from netns import Netns, NetnsPool, list_netns, require_root, run_python_in

RUNNER = str(Path(__file__).with_name("pod_runner.py"))
SRC = str(Path(__file__).resolve().parents[2] / "src")
HOST_MAC = "ee:ee:ee:ee:ee:ee"
DUAL = ("10.65.0.5/32", "fd00:65::5/128")


@pytest.fixture
def namespaces() -> Iterator[NetnsPool]:
    require_root()
    with NetnsPool() as pool:
        yield pool
    assert not {ns.name for ns in pool.created} & list_netns()


def run(host: Netns, request: dict[str, Any], timeout: float = 120) -> Any:
    """One pod_runner request inside ``host``; its "ok" value."""
    proc = host.run(sys.executable, RUNNER, input=json.dumps(request), check=False, timeout=timeout)
    assert proc.returncode == 0, proc.stderr
    answer = json.loads(proc.stdout)
    assert "ok" in answer, answer
    return answer["ok"]


def spec(pod: Netns, *addrs: str, name: str = "calitest0", **kw: Any) -> dict[str, Any]:
    return {"host_ifname": name, "pod_ifname": "eth0", "netns": pod.path, "addresses": addrs, **kw}


# --- the same kernel state as `ip -batch` -------------------------------------------


def state(host: Netns, pod: Netns, pod_mac: str) -> dict[str, Any]:
    """Everything setup_pod leaves in both namespaces, minus what differs between any two
    runs (the pod's random MAC and link-local address, interface indexes, timers)."""
    (eth0,) = pod.ip_json("-6", "addr", "show", "dev", "eth0")
    (pod_ll,) = [a["local"] for a in eth0["addr_info"] if a.get("scope") == "link"]
    placeholders = {pod_mac: "<pod mac>", pod_ll: "<pod link-local>"}

    def scrub(value: Any) -> Any:
        if isinstance(value, dict):
            return {
                k: scrub(v)
                for k, v in value.items()
                if k not in {"ifindex", "link_index", "link_netnsid", "valid_life_time"}
                and not k.startswith(("preferred_life", "stats"))
            }
        if isinstance(value, list):
            return [scrub(v) for v in value]
        return placeholders.get(value, value) if isinstance(value, str) else value

    def side(ns: Netns, dev: str) -> dict[str, Any]:
        sysctls = ns.run(
            "sh",
            "-c",
            "grep -rs . /proc/sys/net/ipv4/conf/$1 /proc/sys/net/ipv6/conf/$1 "
            "/proc/sys/net/ipv4/neigh/$1 /proc/sys/net/ipv6/conf/all /proc/sys/net/ipv6/conf/lo "
            "/proc/sys/net/ipv6/conf/default /proc/sys/net/ipv4/ip_forward || true",
            "sh",
            dev,
        ).stdout
        scrubbed: dict[str, Any] = scrub(
            {
                "links": ns.ip_json("-d", "addr", "show"),
                "routes": [
                    ns.ip_json(family, "-d", "route", "show", "table", "all")
                    for family in ("-4", "-6")
                ],
                "neighbours": [
                    n for n in ns.ip_json("neigh", "show") if "PERMANENT" in n.get("state", [])
                ],
                "sysctls": sorted(sysctls.splitlines()),
            }
        )
        return scrubbed

    return {"host": side(host, "calitest0"), "pod": side(pod, "eth0")}


@pytest.mark.root
def test_same_kernel_state_as_ip(namespaces: NetnsPool) -> None:
    seen = {}
    for impl in ("ip", "netlink"):
        host, pod = namespaces.new(), namespaces.new()
        result = run(host, {"op": "setup", "impl": impl, "net": spec(pod, *DUAL, mtu=1400)})
        seen[impl] = state(host, pod, result["pod_mac"])
    assert seen["netlink"] == seen["ip"]
    pod_side = seen["ip"]["pod"]  # the comparison saw what matters
    assert len(pod_side["neighbours"]) == 2 and len(pod_side["sysctls"]) > 50
    assert any(r.get("protocol") == "boot" for r in pod_side["routes"][1])


# --- threads -------------------------------------------------------------------------


@pytest.mark.root
def test_eight_pods_from_eight_threads_land_in_their_namespaces(namespaces: NetnsPool) -> None:
    """One process, eight threads released together, each wiring its own pod (dual
    stack): every interface, address, route, neighbour and sysctl must be in the
    namespace it was meant for.  A ninth pod's address is already routed on the host: it
    fails in its thread and leaves nothing, while the others carry on."""
    host = namespaces.new()
    host.ip("link", "add", "other0", "up", "type", "bridge")
    host.ip("route", "add", "10.65.0.9/32", "dev", "other0")
    pods = [namespaces.new() for _ in range(9)]
    specs = [
        spec(pod, f"10.65.0.{i + 1}/32", f"fd00:65::{i + 1}/128", name=f"calithread{i + 1}")
        for i, pod in enumerate(pods)
    ]
    results = run(host, {"op": "parallel", "impl": "netlink", "nets": specs})

    assert results[8]["error"] == "InvalidInput", results[8]
    assert "10.65.0.9 is already routed via interface other0" in results[8]["message"]
    assert pods[8].link_names() == {"lo"}
    host_links = {lk["ifname"]: lk for lk in host.ip_json("-d", "link", "show")}
    assert "calithread9" not in host_links

    host4 = {(r["dst"], r["dev"]) for r in host.routes("-4")}
    host6 = {(r["dst"], r["dev"]) for r in host.routes("-6")}
    for i, (pod, result) in enumerate(zip(pods[:8], results[:8], strict=True)):
        n, hostname = i + 1, f"calithread{i + 1}"
        assert result.get("pod_ifname") == "eth0", result
        assert pod.link_names() == {"lo", "eth0"}
        eth0 = pod.link("eth0")
        assert eth0 is not None
        assert eth0["address"] == result["pod_mac"]
        assert eth0["link_index"] == host_links[hostname]["ifindex"]  # the right peer
        assert {a["local"] for a in eth0["addr_info"] if a["scope"] == "global"} == {
            f"10.65.0.{n}",
            f"fd00:65::{n}",
        }
        assert {r["dst"] for r in pod.routes("-4")} == {"default", "169.254.1.1"}
        assert [r["gateway"] for r in pod.routes("-6") if r["dst"] == "default"] == [
            "fe80::ecee:eeff:feee:eeee"
        ]
        neighbours = {(x["dst"], x["lladdr"]) for x in pod.ip_json("neigh", "show")}
        assert {("169.254.1.1", HOST_MAC), ("fe80::ecee:eeff:feee:eeee", HOST_MAC)} <= (neighbours)
        assert pod.sysctl("net/ipv6/conf/eth0/accept_dad") == "0"
        assert pod.sysctl("net/ipv6/conf/all/disable_ipv6") == "0"
        assert (f"10.65.0.{n}", hostname) in host4 and (f"fd00:65::{n}", hostname) in host6
        assert host.sysctl(f"net/ipv4/conf/{hostname}/proxy_arp") == "1"
        assert host.sysctl(f"net/ipv6/conf/{hostname}/proxy_ndp") == "1"
        assert host_links[hostname]["address"] == HOST_MAC
    assert len([name for name in host_links if name.startswith("cali")]) == 8


# --- descriptors ---------------------------------------------------------------------


@pytest.mark.root
def test_twenty_setups_and_teardowns_leak_no_descriptor(namespaces: NetnsPool) -> None:
    host, pod = namespaces.new(), namespaces.new()
    out = run(host, {"op": "cycles", "impl": "netlink", "net": spec(pod, *DUAL), "count": 20})
    assert out["fds"][1] == out["fds"][0], out["fds"]
    assert out["threads"][1] == out["threads"][0], out["threads"]
    assert pod.link_names() == {"lo"} and host.link_names() == {"lo"}


# --- imports -------------------------------------------------------------------------


def test_plugin_path_does_not_import_pyroute2() -> None:
    """Only netlink_pod.py imports pyroute2: the per-pod CNI plugin processes import
    tortie.cni.* and tortie.dataplane.pod and must not pay for it."""
    code = (
        "import importlib, pkgutil, sys, tortie.cni\n"
        "names = [m.name for m in pkgutil.iter_modules(tortie.cni.__path__, 'tortie.cni.')]\n"
        "for name in names + ['tortie.dataplane.pod', 'tortie.dataplane.check']:\n"
        "    importlib.import_module(name)\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'pyroute2'))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": SRC, "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


# --- where pyroute2 opens its socket -------------------------------------------------

SOCKET_PROBE = """
import json, sys, threading
from tortie.dataplane import netlink_pod
from tortie.dataplane.netns import entered, open_netns

fd = open_netns(sys.argv[1])
seen = {}


def probe():
    with entered(fd, sys.argv[1]):
        ipr = netlink_pod._open()  # made inside the pod namespace...
    with ipr:  # ...and used after the thread came back
        seen["threads"] = threading.active_count()
        seen["links"] = sorted(lk.get_attr("IFLA_IFNAME") for lk in ipr.link("dump"))


thread = threading.Thread(target=probe)
thread.start()
thread.join()
json.dump(seen, sys.stdout)
"""


@pytest.mark.root
def test_iproute_socket_belongs_to_the_namespace_its_thread_was_in(
    namespaces: NetnsPool,
) -> None:
    """What netlink_pod relies on (pyroute2 0.9): ``IPRoute()`` opens its socket in the
    constructing thread, synchronously, with no helper thread or process, so the socket
    stays in the namespace that thread was in."""
    host, pod = namespaces.new(), namespaces.new()
    pod.ip("link", "add", "probe0", "type", "bridge")
    proc = run_python_in(
        host,
        sys.executable,
        f"import sys; sys.path.insert(0, {SRC!r})\n" + SOCKET_PROBE,
        [pod.path],
    )
    assert proc.returncode == 0, proc.stderr
    seen = json.loads(proc.stdout)
    assert seen == {"threads": 2, "links": ["lo", "probe0"]}
