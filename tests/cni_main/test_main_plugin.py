"""The main plugin (``calico`` / ``tortie-cni``) end to end: launchers run inside a
test-created host namespace, real pod namespaces, a SQLite store in tmp."""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from main_helpers import MODES, NODE, REF_CNI, Env

from netns import Netns, NetnsPool

HOST_LL = "fe80::ecee:eeff:feee:eeee"
POD4 = ipaddress.ip_network("10.70.0.0/16")
POD6 = ipaddress.ip_network("fd00:70::/48")


def pod_addrs(result: dict[str, Any]) -> list[str]:
    return [ip["address"] for ip in result["ips"]]


def ping(pod: Netns, addr: str) -> None:
    proc = pod.run("ping", "-c", "1", "-W", "2", addr, check=False)
    assert proc.returncode == 0, f"ping {addr} from {pod.name}: {proc.stdout} {proc.stderr}"


def host_name(container: str) -> str:
    return "cali" + container[:11]


# --- ADD / CHECK / DEL per family mode ----------------------------------------------------


@pytest.mark.root
@pytest.mark.parametrize("mode", list(MODES))
def test_add_check_del_ping(world: Env, namespaces: NetnsPool, mode: str) -> None:
    host = world.host
    assert host is not None
    has4, has6 = MODES[mode]
    conf = world.conf(mode, mtu=1450, container_settings={"allow_ip_forwarding": True})
    a, b = namespaces.new(), namespaces.new()
    ra = world.add_ok(conf, "containera0001", a.path)
    rb = world.add_ok(conf, "containerb0002", b.path)

    # result shape: host veth then pod eth0; ips -> interface 1, /32 and /128, no gateway
    podlink = a.link("eth0")
    assert podlink is not None
    assert ra["cniVersion"] == "1.0.0"
    assert ra["interfaces"] == [
        {"name": host_name("containera0001"), "mac": "ee:ee:ee:ee:ee:ee"},
        {"name": "eth0", "mac": podlink["address"], "sandbox": a.path},
    ]
    addrs = pod_addrs(ra)
    assert all(ip["interface"] == 1 and "gateway" not in ip for ip in ra["ips"])
    fams = [ipaddress.ip_interface(x) for x in addrs]
    assert [f.version for f in fams] == [4] * has4 + [6] * has6
    for f in fams:
        assert f.network.prefixlen == f.max_prefixlen
        assert f.ip in (POD4 if f.version == 4 else POD6)
    assert set(addrs).isdisjoint(pod_addrs(rb))

    # pod side: addresses, routes, sysctls, MTU
    global_addrs = {
        f"{x['local']}/{x['prefixlen']}" for x in podlink["addr_info"] if x["scope"] == "global"
    }
    assert global_addrs == set(addrs)
    assert podlink["mtu"] == 1450
    v4routes = {(r["dst"], r.get("gateway")) for r in a.routes("-4")}
    assert v4routes == ({("169.254.1.1", None), ("default", "169.254.1.1")} if has4 else set())
    v6default = [r for r in a.routes("-6") if r["dst"] == "default"]
    assert [r.get("gateway") for r in v6default] == ([HOST_LL] if has6 else [])
    assert a.sysctl("net/ipv4/ip_forward") == "1"  # allow_ip_forwarding
    if has6:
        assert a.sysctl("net/ipv6/conf/eth0/accept_dad") == "0"
        assert a.sysctl("net/ipv6/conf/all/disable_ipv6") == "0"

    # host side: veth, routes, sysctls
    hostlink = host.link(host_name("containera0001"))
    assert hostlink is not None and hostlink["address"] == "ee:ee:ee:ee:ee:ee"
    host4 = {(r["dst"], r["dev"]) for r in host.routes("-4")}
    host6 = {(r["dst"], r["dev"]) for r in host.routes("-6")}
    for x in addrs:
        ip = x.split("/")[0]
        assert (ip, host_name("containera0001")) in (host4 if ":" not in ip else host6)
    if has4:
        assert host.sysctl("net/ipv4/conf/calicontainera0/proxy_arp") == "1"
    if has6:
        assert host.sysctl("net/ipv6/conf/calicontainera0/proxy_ndp") == "1"

    # pod <-> pod over each family
    for x in pod_addrs(rb):
        ping(a, x.split("/")[0])
    for x in addrs:
        ping(b, x.split("/")[0])

    # WorkloadEndpoints via the CLI
    weps = {w["metadata"]["name"]: w for w in world.weps()}
    wname = f"{NODE.replace('-', '--')}-cni-containera0001-eth0"
    assert set(weps) == {wname, f"{NODE.replace('-', '--')}-cni-containerb0002-eth0"}
    w = weps[wname]
    assert w["apiVersion"] == "projectcalico.org/v3" and w["metadata"]["namespace"] == "default"
    spec = w["spec"]
    assert spec["orchestrator"] == "cni" and spec["node"] == NODE
    assert spec["endpoint"] == "eth0" and spec["containerID"] == "containera0001"
    assert spec["ipNetworks"] == addrs
    assert spec["interfaceName"] == host_name("containera0001")
    assert spec["mac"] == podlink["address"]

    # allocations recorded under the Calico handle
    allocs = world.allocations()
    assert {allocs[x.split("/")[0]] for x in addrs} == {"tortie-net.containera0001"}

    # CHECK passes; fails after a manual break, with a clear message
    check_conf = {**conf, "prevResult": ra}
    assert world.call("CHECK", check_conf, "containera0001", a.path) == (0, None)
    if has4:
        a.ip("route", "del", "default")
    else:
        a.ip("-6", "route", "del", "default")
    code, out = world.call("CHECK", check_conf, "containera0001", a.path)
    assert code == 1 and out is not None and out["code"] == 103
    assert "default route" in out["msg"], out

    # DEL twice for each; nothing left
    for container, ns in (("containera0001", a), ("containerb0002", b)):
        for _ in range(2):
            assert world.call("DEL", conf, container, ns.path) == (0, None)
        assert ns.link_names() == {"lo"}
    assert world.allocations() == {}
    assert world.weps() == []
    assert not [n for n in host.link_names() if n.startswith("cali")]
    assert not [r for r in host.routes("-4") if r["dev"].startswith("cali")]


@pytest.mark.root
def test_k8s_naming_and_old_versions(world: Env, namespaces: NetnsPool) -> None:
    pod = namespaces.new()
    conf = world.conf("dual", cniVersion="0.3.1")
    args = "IgnoreUnknown=1;K8S_POD_NAMESPACE=my-ns;K8S_POD_NAME=web-0;K8S_POD_INFRA_CONTAINER_ID=x"
    result = world.add_ok(conf, "k8scontainer1", pod.path, args=args)
    veth = "cali" + hashlib.sha1(b"my-ns.web-0").hexdigest()[:11]
    assert result["interfaces"][0]["name"] == veth
    assert [ip["version"] for ip in result["ips"]] == ["4", "6"]
    (wep,) = world.weps()
    assert wep["metadata"] == {**wep["metadata"], "name": "node--1-k8s-web--0-eth0"}
    assert wep["metadata"]["namespace"] == "my-ns"
    assert wep["spec"]["orchestrator"] == "k8s" and wep["spec"]["pod"] == "web-0"
    assert wep["spec"]["profiles"] == ["kns.my-ns"]
    assert wep["spec"]["interfaceName"] == veth
    # 0.2.0 result shape
    old = world.add_ok(world.conf("dual", cniVersion="0.2.0"), "k8scontainer1", pod.path, args=args)
    assert set(old) == {"cniVersion", "ip4", "ip6", "dns"}
    assert old["ip4"]["ip"].endswith("/32") and old["ip6"]["ip"].endswith("/128")
    assert world.call("DEL", conf, "k8scontainer1", pod.path, args=args) == (0, None)
    assert world.allocations() == {} and world.weps() == []


@pytest.mark.root
def test_del_with_netns_gone_or_empty(world: Env, namespaces: NetnsPool) -> None:
    conf = world.conf("dual")
    pod = namespaces.new()
    world.add_ok(conf, "gonecontainer1", pod.path)
    subprocess.run(["ip", "netns", "delete", pod.name], check=True)
    assert world.call("DEL", conf, "gonecontainer1", pod.path) == (0, None)
    assert world.call("DEL", conf, "gonecontainer1", "") == (0, None)
    assert world.allocations() == {} and world.weps() == []
    pod2 = namespaces.new()
    world.add_ok(conf, "emptycontain2", pod2.path)
    assert world.call("DEL", conf, "emptycontain2", "") == (0, None)
    assert world.allocations() == {} and world.weps() == []
    assert not [n for n in world.host.link_names() if n.startswith("cali")]  # type: ignore[union-attr]


# --- delegation and chaining ----------------------------------------------------------


@pytest.mark.root
def test_delegate_to_host_local(world: Env, namespaces: NetnsPool, tmp_path: Path) -> None:
    data_dir = tmp_path / "host-local"
    conf = world.conf(
        "dual",
        ipam={
            "type": "host-local",
            "dataDir": str(data_dir),
            "ranges": [[{"subnet": "10.71.0.0/24"}], [{"subnet": "fd00:71::/64"}]],
        },
    )
    a, b = namespaces.new(), namespaces.new()
    ra = world.add_ok(conf, "hl1container", a.path)
    rb = world.add_ok(conf, "hl2container", b.path)
    addrs = pod_addrs(ra)
    assert addrs[0].startswith("10.71.0.") and addrs[0].endswith("/32")
    assert addrs[1].startswith("fd00:71::") and addrs[1].endswith("/128")
    ping(a, pod_addrs(rb)[0].split("/")[0])
    ping(a, pod_addrs(rb)[1].split("/")[0])
    reserved = {
        p.name for p in (data_dir / "tortie-net").iterdir() if p.name[0].isdigit() or ":" in p.name
    }
    assert {x.split("/")[0] for x in addrs} <= reserved
    assert world.call("CHECK", {**conf, "prevResult": ra}, "hl1container", a.path) == (0, None)
    for cid, ns in (("hl1container", a), ("hl2container", b)):
        assert world.call("DEL", conf, cid, ns.path) == (0, None)
        assert world.call("DEL", conf, cid, ns.path) == (0, None)
    left = [
        p.name for p in (data_dir / "tortie-net").iterdir() if p.name[0].isdigit() or ":" in p.name
    ]
    assert left == []
    assert world.allocations() == {} and world.weps() == []


@pytest.mark.root
def test_conflist_with_tuning(world: Env, namespaces: NetnsPool) -> None:
    if not os.path.exists(f"{REF_CNI}/tuning"):
        pytest.skip(f"reference tuning plugin not installed in {REF_CNI}")
    base = world.conf("dual")
    first = {k: v for k, v in base.items() if k not in ("name", "cniVersion")}
    conflist = {
        "cniVersion": "1.0.0",
        "name": "tortie-net",
        "plugins": [
            first,
            {"type": "tuning", "sysctl": {"net.ipv4.conf.eth0.arp_ignore": "1"}},
        ],
    }
    pod = namespaces.new()
    result = world.conflist(conflist, "ADD", "tuningcont001", pod.path)
    assert result is not None
    assert result["interfaces"][1]["name"] == "eth0" and len(pod_addrs(result)) == 2
    assert pod.sysctl("net/ipv4/conf/eth0/arp_ignore") == "1"
    world.conflist(conflist, "CHECK", "tuningcont001", pod.path, prev=result)
    world.conflist(conflist, "DEL", "tuningcont001", pod.path, prev=result)
    world.conflist(conflist, "DEL", "tuningcont001", pod.path, prev=result)
    assert pod.link_names() == {"lo"}
    assert world.allocations() == {} and world.weps() == []


# --- failures after IPAM roll back ---------------------------------------------------


@pytest.mark.root
def test_dataplane_failure_rolls_back(world: Env, namespaces: NetnsPool) -> None:
    host = world.host
    assert host is not None
    host.ip("link", "add", "calibrokenxx01a", "type", "bridge")  # squats the host veth name
    pod = namespaces.new()
    conf = world.conf("dual")
    code, out = world.call("ADD", conf, "brokenxx01abc", pod.path)
    assert code == 1 and out is not None and out["code"] == 7, out
    assert "bridge" in out["msg"]
    assert world.allocations() == {} and world.weps() == []
    assert pod.link_names() == {"lo"}
    assert "calibrokenxx01a" in host.link_names()  # not ours: left alone


@pytest.mark.root
def test_duplicate_route_rolls_back(world: Env, namespaces: NetnsPool) -> None:
    host = world.host
    assert host is not None
    conf = world.conf("v4")
    pod = namespaces.new()
    # the next address the allocator hands out is routed elsewhere on this host
    probe = world.add_ok(conf, "probe00000001", pod.path)
    assert world.call("DEL", conf, "probe00000001", pod.path) == (0, None)
    taken = probe["ips"][0]["address"].split("/")[0]
    block = ipaddress.ip_network(f"{taken}/26", strict=False)
    for addr in list(block.hosts())[:64]:
        host.ip("route", "add", f"{addr}/32", "dev", "uplink0")
    host.ip("route", "add", f"{block.network_address}/32", "dev", "uplink0")
    code, out = world.call("ADD", conf, "dupe000000001", pod.path)
    assert code == 1 and out is not None, out
    assert "already routed" in out["msg"], out
    assert world.allocations() == {} and world.weps() == []
    assert pod.link_names() == {"lo"}


# --- lean start-up -------------------------------------------------------------------


@pytest.mark.root
@pytest.mark.parametrize("world", ["in-process", "service"], indirect=True)
def test_plugin_path_imports_no_heavy_modules(world: Env, namespaces: NetnsPool) -> None:
    """A full ADD and DEL through the Python launcher's interpreter; then sys.modules (the
    compiled route has no interpreter to inspect: tests/cclient covers its fallback)."""
    assert Path(world.bin, "calico").read_bytes().startswith(b"#!")
    pod = namespaces.new()
    launcher = Path(world.bin, "calico").read_text().splitlines()
    interpreter = launcher[0][2:].split()
    root = next(line for line in launcher if line.startswith("sys.path.insert"))
    script = (
        "import sys, json\n"
        f"{root}\n"
        "from tortie.cni.plugin_main import main\n"
        "code = main()\n"
        "heavy = [m for m in ('yaml', 'pyroute2', 'argparse') if m in sys.modules]\n"
        "sys.stderr.write('HEAVY=' + json.dumps(heavy))\n"
        "sys.exit(code)\n"
    )
    conf = json.dumps(world.conf("dual")).encode()
    for command in ("ADD", "DEL"):
        proc = subprocess.run(
            ["nsenter", f"--net={world.host.path}", *interpreter, "-c", script],  # type: ignore[union-attr]
            input=conf,
            env=world.env(command, "leancontainer", pod.path),
            capture_output=True,
            check=False,
        )
        assert proc.returncode == 0, proc.stdout
        assert proc.stderr.decode().endswith("HEAVY=[]"), proc.stderr


@pytest.mark.root
def test_gc_releases_stale_attachments(world: Env, namespaces: NetnsPool) -> None:
    conf = world.conf("dual", cniVersion="1.1.0")
    keep, stale = namespaces.new(), namespaces.new()
    rk = world.add_ok(conf, "keepcontainer", keep.path)
    world.add_ok(conf, "stalecontain1", stale.path)
    gc = {
        **conf,
        "ipam": {**conf["ipam"], "leak_grace_period": "0s"},
        "cni.dev/valid-attachments": [{"containerID": "keepcontainer", "ifname": "eth0"}],
    }
    code, out, err = world.invoke("calico", gc, world.env("GC", "", ""))
    assert (code, out) == (0, None), err
    assert [w["spec"]["containerID"] for w in world.weps()] == ["keepcontainer"]
    assert set(world.allocations()) == {a.split("/")[0] for a in pod_addrs(rk)}
    assert world.call("CHECK", {**conf, "prevResult": rk}, "keepcontainer", keep.path) == (0, None)
    code, out, _ = world.invoke("calico", conf, world.env("STATUS", "", ""))
    assert (code, out) == (0, None)
    for cid, ns in (("keepcontainer", keep), ("stalecontain1", stale)):
        assert world.call("DEL", conf, cid, ns.path) == (0, None)
    assert world.allocations() == {} and world.weps() == []


@pytest.mark.root
def test_container_id_with_capitals_is_added_listed_and_deleted(
    world: Env, namespaces: NetnsPool
) -> None:
    """CNI allows capitals in a container id; the WorkloadEndpoint name is lower case, so
    listing and DEL work (they once failed on a name that was not DNS-1123)."""
    conf = world.conf("dual")
    pod = namespaces.new()
    world.add_ok(conf, "CafeBabe0001", pod.path)
    (wep,) = world.weps()
    assert wep["metadata"]["name"] == f"{NODE.replace('-', '--')}-cni-cafebabe0001-eth0"
    assert wep["spec"]["containerID"] == "CafeBabe0001"  # the runtime's id, as given
    code, _ = world.call("DEL", conf, "CafeBabe0001", pod.path)
    assert code == 0
    assert world.weps() == [] and world.allocations() == {}
