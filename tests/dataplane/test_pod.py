"""Pod dataplane (calico-behaviour.md §4) against real namespaces.

Each test makes a "host" namespace and pod namespaces; setup/teardown/check run in a
fresh Python process inside the host namespace (like the CNI plugin), never in pytest's.
Every test runs against both dataplanes: ``ip`` (tortie.dataplane.pod, ``ip -batch``
processes, the CNI plugin's) and ``netlink`` (tortie.dataplane.netlink_pod, the node
service's).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from netns import Netns, NetnsPool, list_netns, require_root
from tortie.dataplane import pod as ip_pod
from tortie.dataplane.pod import PodNetwork
from tortie.errors import InvalidInput

RUNNER = str(Path(__file__).with_name("pod_runner.py"))
HOST_LL = "fe80::ecee:eeff:feee:eeee"
V4, V6 = "10.65.0.5", "fd00:65::5"
IMPLS = ("ip", "netlink")


class Host(Netns):
    """The test's host namespace and the dataplane that the runner uses inside it."""

    def __init__(self, ns: Netns, impl: str) -> None:
        super().__init__(ns.name)
        self.impl = impl


@pytest.fixture(params=IMPLS)
def impl(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


def dataplane(impl: str) -> ModuleType:
    """The module of ``impl`` (for calls in pytest's own process: validation only)."""
    if impl == "netlink":
        from tortie.dataplane import netlink_pod

        return netlink_pod
    return ip_pod


@pytest.fixture
def namespaces() -> Iterator[NetnsPool]:
    require_root()
    with NetnsPool() as pool:
        yield pool
    leftovers = {ns.name for ns in pool.created} & list_netns()
    assert not leftovers


@pytest.fixture
def host(namespaces: NetnsPool, impl: str) -> Host:
    return Host(namespaces.new(), impl)


def call(host: Host, op: str, **req: Any) -> dict[str, Any]:
    """Run one call of ``host.impl`` in a fresh interpreter inside ``host``."""
    request = json.dumps({"op": op, "impl": host.impl, **req})
    proc = host.run(sys.executable, RUNNER, input=request, check=False)
    assert proc.returncode == 0, proc.stderr
    answer: dict[str, Any] = json.loads(proc.stdout)
    return answer


def net(pod: Netns, *addrs: str, name: str = "calitest0", **kw: Any) -> dict[str, Any]:
    return {
        "host_ifname": name,
        "pod_ifname": "eth0",
        "netns": pod.path,
        "addresses": list(addrs),
        **kw,
    }


def setup_ok(host: Host, spec: dict[str, Any]) -> dict[str, Any]:
    answer = call(host, "setup", net=spec)
    assert "ok" in answer, answer
    result: dict[str, Any] = answer["ok"]
    return result


def assert_clean(host: Netns, *pods: Netns, hostname: str = "calitest0") -> None:
    assert hostname not in host.link_names()
    assert not [r for r in host.routes("-4") if r.get("dev") == hostname]
    assert not [r for r in host.routes("-6") if r.get("dev") == hostname]
    for pod in pods:
        assert pod.link_names() == {"lo"}


# --- without root: naming and validation ------------------------------------------------


def test_host_veth_name_matches_calico(impl: str) -> None:
    host_veth_name = dataplane(impl).host_veth_name
    assert host_veth_name("ignored", "default", "nginx") == "calic440f455693"
    assert host_veth_name("0123456789abcdef", None, None) == "cali0123456789a"
    assert len(host_veth_name("x", "a-very-long-namespace", "a-very-long-pod")) == 15


@pytest.mark.parametrize(
    ("field", "value", "words"),
    [
        ("host_ifname", "cali0123456789abc", "1 to 15 bytes"),
        ("pod_ifname", "eth0-is-way-too-long", "1 to 15 bytes"),
        ("pod_ifname", "eth 0", "not a valid interface name"),
        ("addresses", ("10.0.0.5/24",), "pass 10.0.0.5/32"),
        ("addresses", ("nonsense",), "not an IP address"),
        ("addresses", (), "no addresses"),
        ("mtu", 20, "out of range"),
    ],
)
def test_bad_input_rejected_before_any_change(
    impl: str, field: str, value: Any, words: str
) -> None:
    fields: dict[str, Any] = {
        "host_ifname": "calitest0",
        "pod_ifname": "eth0",
        "netns": "/nonexistent/netns",
        "addresses": ("10.0.0.5/32",),
    }
    with pytest.raises(InvalidInput, match=words):
        dataplane(impl).setup_pod(PodNetwork(**{**fields, field: value}))


def test_teardown_rejects_long_name(impl: str) -> None:
    with pytest.raises(InvalidInput, match="15"):
        dataplane(impl).teardown_pod("cali0123456789abcdef", [], None)


# --- with namespaces -------------------------------------------------------------------


FAMILIES = {"v4": (f"{V4}/32",), "v6": (f"{V6}/128",), "dual": (f"{V4}/32", f"{V6}/128")}


@pytest.mark.root
@pytest.mark.parametrize("family", FAMILIES)
def test_setup_builds_calico_dataplane(namespaces: NetnsPool, host: Host, family: str) -> None:
    pod = namespaces.new()
    addrs = FAMILIES[family]
    has4, has6 = family != "v6", family != "v4"
    result = setup_ok(host, net(pod, *addrs, mtu=1400))

    hostlink, podlink = host.link("calitest0"), pod.link("eth0")
    assert hostlink is not None and podlink is not None
    assert result == {
        "host_ifname": "calitest0",
        "host_mac": "ee:ee:ee:ee:ee:ee",
        "pod_ifname": "eth0",
        "pod_mac": podlink["address"],
    }
    assert hostlink["address"] == "ee:ee:ee:ee:ee:ee"
    assert hostlink["linkinfo"]["info_kind"] == "veth"
    assert hostlink["link_index"] == podlink["ifindex"]
    assert hostlink["mtu"] == podlink["mtu"] == 1400
    assert "UP" in hostlink["flags"] and "UP" in podlink["flags"]
    assert "UP" in pod.link("lo")["flags"]  # type: ignore[index]

    # pod: /32 and /128 only, no subnet; Calico's routes
    global_addrs = {
        (a["local"], a["prefixlen"]) for a in podlink["addr_info"] if a.get("scope") == "global"
    }
    assert global_addrs == {(a.split("/")[0], int(a.split("/")[1])) for a in addrs}
    v4routes = {(r["dst"], r.get("gateway"), r.get("scope")) for r in pod.routes("-4")}
    v6default = [r for r in pod.routes("-6") if r["dst"] == "default"]
    if has4:
        assert v4routes == {("169.254.1.1", None, "link"), ("default", "169.254.1.1", None)}
    else:
        assert v4routes == set()
    if has6:
        assert [(r["gateway"], r["dev"]) for r in v6default] == [(HOST_LL, "eth0")]
        ll = [a for a in hostlink["addr_info"] if a["local"] == HOST_LL]
        assert ll and "tentative" not in ll[0]
        for dev in ("all", "default", "lo"):
            assert pod.sysctl(f"net/ipv6/conf/{dev}/disable_ipv6") == "0"
        assert pod.sysctl("net/ipv6/conf/eth0/accept_dad") == "0"
    else:
        assert v6default == []
    assert pod.sysctl("net/ipv4/ip_forward") == "0"  # allow_ip_forwarding off

    # host: /32 and /128 scope link routes
    host4 = {(r["dst"], r["dev"], r.get("scope")) for r in host.routes("-4")}
    host6 = {(r["dst"], r["dev"]) for r in host.routes("-6")}
    assert ((V4, "calitest0", "link") in host4) == has4
    assert ((V6, "calitest0") in host6) == has6

    conf4, conf6 = "net/ipv4/conf/calitest0", "net/ipv6/conf/calitest0"
    if has4:
        for key in ("proxy_arp", "forwarding", "route_localnet"):
            assert host.sysctl(f"{conf4}/{key}") == "1", key
        assert host.sysctl("net/ipv4/neigh/calitest0/proxy_delay") == "0"
    if has6:
        for key, want in (
            ("proxy_ndp", "1"),
            ("forwarding", "1"),
            ("accept_dad", "0"),
            ("disable_ipv6", "0"),
            ("accept_ra", "0"),
        ):
            assert host.sysctl(f"{conf6}/{key}") == want, key

    assert call(host, "check", net=net(pod, *addrs, mtu=1400))["ok"] is None


@pytest.mark.root
def test_two_pods_ping_each_other(namespaces: NetnsPool, host: Host) -> None:
    host.set_sysctl("net/ipv4/ip_forward", "1")  # inside the test's host namespace only
    host.set_sysctl("net/ipv6/conf/all/forwarding", "1")
    # Like a real node: an uplink with an address and a default route.  Proxy ARP answers
    # for 169.254.1.1 only when the host has a route to it through another interface.
    host.ip("link", "add", "uplink0", "type", "veth", "peer", "name", "uplink1")
    host.ip("link", "set", "uplink1", "up")
    host.ip("link", "set", "uplink0", "up")
    host.ip("addr", "add", "10.66.0.1/24", "dev", "uplink0")
    host.ip("route", "add", "default", "dev", "uplink0")
    a, b = namespaces.new(), namespaces.new()
    setup_ok(host, net(a, "10.65.0.1/32", "fd00:65::1/128", name="calia"))
    setup_ok(host, net(b, "10.65.0.2/32", "fd00:65::2/128", name="calib"))
    for src, dst in ((a, "10.65.0.2"), (b, "10.65.0.1"), (a, "fd00:65::2"), (b, "fd00:65::1")):
        proc = src.run("ping", "-c", "1", "-W", "2", dst, check=False)
        assert proc.returncode == 0, f"ping {dst}: {proc.stdout} {proc.stderr}"


@pytest.mark.root
def test_allow_ip_forwarding(namespaces: NetnsPool, host: Host) -> None:
    pod = namespaces.new()
    setup_ok(host, net(pod, f"{V4}/32", f"{V6}/128", allow_ip_forwarding=True))
    assert pod.sysctl("net/ipv4/ip_forward") == "1"
    assert pod.sysctl("net/ipv6/conf/all/forwarding") == "1"
    assert "ok" in call(
        host, "check", net=net(pod, f"{V4}/32", f"{V6}/128", allow_ip_forwarding=True)
    )


@pytest.mark.root
def test_proc_pid_netns_path(namespaces: NetnsPool, host: Host) -> None:
    pod = namespaces.new()
    holder = subprocess.Popen(["ip", "netns", "exec", pod.name, "sleep", "60"])
    try:
        spec = net(pod, f"{V4}/32")
        spec["netns"] = f"/proc/{holder.pid}/ns/net"
        setup_ok(host, spec)
        assert pod.link("eth0") is not None
    finally:
        holder.kill()
        holder.wait()


@pytest.mark.root
def test_teardown_is_idempotent(namespaces: NetnsPool, host: Host) -> None:
    pod = namespaces.new()
    addrs = [f"{V4}/32", f"{V6}/128"]
    setup_ok(host, net(pod, *addrs))
    for _ in range(2):
        answer = call(host, "teardown", host_ifname="calitest0", addresses=addrs, netns=pod.path)
        assert "ok" in answer, answer
        assert_clean(host, pod)


@pytest.mark.root
def test_teardown_when_netns_already_gone(namespaces: NetnsPool, host: Host) -> None:
    pod = namespaces.new()
    addrs = [f"{V4}/32", f"{V6}/128"]
    setup_ok(host, net(pod, *addrs))
    path = pod.path
    subprocess.run(["ip", "netns", "delete", pod.name], check=True)  # veth goes with it
    for netns in (path, None):
        assert "ok" in call(host, "teardown", host_ifname="calitest0", addresses=addrs, netns=netns)
    assert_clean(host)


@pytest.mark.root
def test_teardown_refuses_non_veth(host: Host) -> None:
    host.ip("link", "add", "calitest0", "type", "bridge")
    answer = call(host, "teardown", host_ifname="calitest0", addresses=[], netns=None)
    assert answer["error"] == "InvalidInput" and "bridge, not a pod veth" in answer["message"]
    assert "calitest0" in host.link_names()


@pytest.mark.root
def test_check_detects_breakage(namespaces: NetnsPool, host: Host) -> None:
    pod = namespaces.new()
    spec = net(pod, f"{V4}/32", f"{V6}/128")
    setup_ok(host, spec)
    assert "ok" in call(host, "check", net=spec)

    wrong_mtu = call(host, "check", net={**spec, "mtu": 9000})
    assert wrong_mtu["error"] == "InvalidInput" and "MTU 1500, not 9000" in wrong_mtu["message"]

    pod.ip("route", "del", "default", "via", "169.254.1.1")
    pod.ip("-6", "route", "del", "default")
    broken = call(host, "check", net=spec)
    assert broken["error"] == "InvalidInput"
    assert "default route via 169.254.1.1" in broken["message"]
    assert f"IPv6 default route via {HOST_LL}" in broken["message"]

    host.ip("route", "del", f"{V4}/32")
    assert f"host route {V4} dev calitest0 is missing" in call(host, "check", net=spec)["message"]

    call(host, "teardown", host_ifname="calitest0", addresses=spec["addresses"], netns=pod.path)
    gone = call(host, "check", net=spec)
    assert gone["error"] == "NotFound" and "calitest0 does not exist" in gone["message"]


@pytest.mark.root
@pytest.mark.parametrize("conflict", [f"{V4}/32", f"{V6}/128"])
def test_conflicting_host_route_rolls_back(
    namespaces: NetnsPool, host: Host, conflict: str
) -> None:
    pod = namespaces.new()
    host.ip("link", "add", "other0", "up", "type", "bridge")
    host.ip("route", "add", conflict, "dev", "other0")
    answer = call(host, "setup", net=net(pod, f"{V4}/32", f"{V6}/128"))
    assert answer["error"] == "InvalidInput", answer
    assert "other0" in answer["message"] and conflict.split("/")[0] in answer["message"]
    assert_clean(host, pod)
    family = "-6" if ":" in conflict else "-4"
    assert [r["dev"] for r in host.routes(family) if r["dst"] == conflict.split("/")[0]] == [
        "other0"
    ]


@pytest.mark.root
def test_host_link_local_timeout_rolls_back(namespaces: NetnsPool, host: Host) -> None:
    # Force DAD on the host side (all.accept_dad=1 wins) and make it long.
    host.set_sysctl("net/ipv6/conf/all/accept_dad", "1")
    host.set_sysctl("net/ipv6/conf/default/dad_transmits", "50")
    pod = namespaces.new()
    answer = call(host, "setup", net=net(pod, f"{V6}/128"), ll_timeout=0.3)
    assert answer.get("error") == "TortieError", answer
    assert "failed to get IPv6 addresses for host side of the pod interface" in answer["message"]
    assert_clean(host, pod)


@pytest.mark.root
def test_pod_ifname_taken_leaves_nothing(namespaces: NetnsPool, host: Host) -> None:
    pod = namespaces.new()
    pod.ip("link", "add", "eth0", "type", "bridge")
    answer = call(host, "setup", net=net(pod, f"{V4}/32"))
    assert answer["error"] == "InvalidInput" and "eth0 already exists" in answer["message"]
    assert "calitest0" not in host.link_names()


@pytest.mark.root
def test_stale_host_veth_is_replaced(namespaces: NetnsPool, host: Host) -> None:
    old, new = namespaces.new(), namespaces.new()
    setup_ok(host, net(old, f"{V4}/32"))
    setup_ok(host, net(new, f"{V4}/32"))
    assert old.link_names() == {"lo"}
    assert new.link("eth0") is not None
    assert "ok" in call(host, "check", net=net(new, f"{V4}/32"))


@pytest.mark.root
def test_missing_netns_is_not_found(host: Host) -> None:
    answer = call(host, "setup", net={**net(host, f"{V4}/32"), "netns": "/run/netns/tt-none"})
    assert answer["error"] == "NotFound" and "/run/netns/tt-none" in answer["message"]
    assert "calitest0" not in host.link_names()


@pytest.mark.root
def test_teardown_finds_pod_veth_when_host_end_renamed(namespaces: NetnsPool, host: Host) -> None:
    pod = namespaces.new()
    addrs = [f"{V4}/32", f"{V6}/128"]
    setup_ok(host, net(pod, *addrs))
    host.ip("link", "set", "calitest0", "name", "renamed0")
    assert "ok" in call(host, "teardown", host_ifname="calitest0", addresses=addrs, netns=pod.path)
    assert pod.link_names() == {"lo"}
    assert "renamed0" not in host.link_names()


@pytest.mark.root
def test_host_namespace_as_pod_rejected(host: Host) -> None:
    answer = call(host, "setup", net=net(host, f"{V4}/32"))
    assert answer["error"] == "InvalidInput" and "own namespace" in answer["message"]
    assert host.link_names() == {"lo"}
